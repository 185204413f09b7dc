"""Quantization benchmark: SmolLM2-135M-Instruct with RTN, GPTQ and AWQ at 3/4/8 bits.

For every (method, bits) it prints and records:
- wall time of the whole quantization (calibration capture + all 30 layers), single process;
- ``calib_err``: mean relative output error ``||(W-Ŵ)X||²/||WX||²`` over all linears on the
  calibration activations (what the method optimised);
- ``heldout_layer_err``: mean over decoder layers of ``||Y - Ŷ||²/||Y||²`` where ``Y`` is the
  float layer's output and ``Ŷ`` the quantized layer's, both fed the float model's inputs for a
  held-out set of calibration windows (different seed);
- the same two figures for GPTQModel (same model, calibration tokens, bits, group size) when
  ``gptqmodel`` is importable, and the ratios codesign/GPTQModel side by side.

Usage::

    python experiments/quantize_bench/bench.py                       # full grid, ~minutes per run
    python experiments/quantize_bench/bench.py --methods gptq --bits 4 --layers 4   # quick look

Results go to ``results.json`` and ``results.csv`` next to this script (``--out`` to change).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def heldout_layer_error(fp_model, q_model, held_ids: torch.Tensor, n_layers: int | None) -> float:
    from codesign.quantize.walker import LayerInputs, capture_first_layer_inputs, run_layer, walk

    inp = capture_first_layer_inputs(fp_model, held_ids, 8)
    fp_layers, q_layers = walk(fp_model), walk(q_model)
    errs = []
    for fl, ql in list(zip(fp_layers, q_layers))[:n_layers]:
        ref = run_layer(fl.module, inp)
        out = run_layer(ql.module, inp)
        errs.append(sum(float((a - b).pow(2).sum()) for a, b in zip(out, ref))
                    / sum(float(b.pow(2).sum()) for b in ref))
        inp = LayerInputs(ref, inp.kwargs)
    return sum(errs) / len(errs)


def truncate(model, n_layers: int | None):
    """Keep the first ``n_layers`` decoder layers (quick runs)."""
    if n_layers:
        from codesign.quantize.walker import decoder_layers

        _, layers = decoder_layers(model)
        del layers[n_layers:]
        model.config.num_hidden_layers = n_layers
    return model


def run_codesign(method: str, bits: int, group_size: int, calib: torch.Tensor, held: torch.Tensor,
                 fp_model, n_layers: int | None, options: dict | None = None) -> dict:
    from codesign.models import load_model
    from codesign.quantize import get_method
    from codesign.quantize.registry import QuantConfig
    from codesign.quantize.sequential import quantize_model

    lm = load_model("smollm2-135m-instruct")
    truncate(lm.model, n_layers)
    t0 = time.perf_counter()
    res = quantize_model(lm.model, get_method(method, **(options or {})), QuantConfig(bits, group_size),
                         None if method == "rtn" else calib, desc=f"{method} w{bits}")
    wall = time.perf_counter() - t0
    calib_err = None
    if method == "rtn":  # RTN saw no activations; score it on the same calibration H as the others
        from codesign.quantize.sequential import collect_stats
        from codesign.quantize.walker import LayerInputs, capture_first_layer_inputs, walk

        inp = capture_first_layer_inputs(fp_model, calib, 8)
        from codesign.quantize.rtn import relative_error
        from codesign.quantize.walker import get_weight

        errs = []
        for fl in walk(fp_model):
            st, outs = collect_stats(fl, inp)
            for g in fl.groups:
                for n, m in zip(g.names, g.modules):
                    errs.append(relative_error(get_weight(m), res.weights[n].dequantize(), st[g.names[0]].hessian))
            inp = LayerInputs(outs, inp.kwargs)
        calib_err = sum(errs) / len(errs)
    else:
        calib_err = sum(res.errors.values()) / len(res.errors)
    return {"tool": "codesign", "method": method, "bits": bits, "group_size": group_size, "wall_s": wall,
            "options": json.dumps(options or {}, sort_keys=True), "calib_err": calib_err, "heldout_layer_err": heldout_layer_error(fp_model, lm.model, held, n_layers)}


def run_gptqmodel_model(method: str, bits: int, group_size: int, calib: torch.Tensor, workdir: Path):
    """GPTQModel on the same model folder and calibration tokens; its checkpoint read back with
    codesign's importer. Returns ``(model, wall_s)``, or ``None`` when ``gptqmodel`` is missing.
    Written against GPTQModel 7.x."""
    try:
        import gptqmodel  # noqa: F401
        from gptqmodel import GPTQModel, QuantizeConfig
    except ImportError:
        return None
    import os

    from codesign.models import load_model
    from codesign.paths import cache_dir
    from codesign.quantize.formats import import_checkpoint

    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    load_model("smollm2-135m-instruct")  # makes sure the converted HF folder exists
    src = cache_dir() / "models" / "smollm2-135m-instruct"
    # Same grid as codesign's run (asymmetric, same group size); everything else is GPTQModel's own
    # default (for GPTQ: damp 0.05, its group-aware activation reordering; for AWQ: GEMM format).
    kw = {"bits": bits, "group_size": group_size, "sym": False}
    if method == "awq":
        from gptqmodel.quantization import METHOD

        kw["quant_method"] = METHOD.AWQ
    qmodel = GPTQModel.load(str(src), QuantizeConfig(**kw))
    data = [{"input_ids": row.tolist(), "attention_mask": [1] * len(row)} for row in calib]
    t0 = time.perf_counter()
    if method == "awq":
        from gptqmodel.utils.backend import BACKEND

        qmodel.quantize(data, batch_size=8, backend=BACKEND.AWQ_TORCH)
    else:
        qmodel.quantize(data, batch_size=8)
    wall = time.perf_counter() - t0
    out = workdir / f"gptqmodel-{method}-w{bits}"
    qmodel.save(str(out))
    from codesign.quantize import load_variant

    spec, entry = import_checkpoint(out, root=workdir / "variants")
    return load_variant(spec, path=entry).model, wall


def run_gptqmodel(method: str, bits: int, group_size: int, calib: torch.Tensor, held: torch.Tensor, fp_model,
                  n_layers: int | None, workdir: Path) -> dict | None:
    got = run_gptqmodel_model(method, bits, group_size, calib, workdir)
    if got is None:
        return None
    q, wall = got
    return {"tool": "gptqmodel", "method": method, "bits": bits, "group_size": group_size, "wall_s": wall,
            "calib_err": None, "heldout_layer_err": heldout_layer_error(fp_model, q, held, n_layers)}


def method_options(method: str, spec: str) -> dict:
    """``key=value`` pairs from ``--options`` that ``method`` knows (its ``defaults``)."""
    from codesign.quantize import get_method

    known = get_method(method).defaults
    out = {}
    for pair in filter(None, spec.split(",")):
        key, _, raw = pair.partition("=")
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        if key in known:
            out[key] = type(known[key])(val) if known[key] is not None else val
    return out


def reused_gptqmodel_rows(args) -> dict[tuple[str, int], dict]:
    """GPTQModel's rows of ``--out``/results.json by (method, bits), when that run used this run's
    model, calibration and group size (anything else fails loudly rather than compare unlike runs)."""
    path = args.out / "results.json"
    if not path.exists():
        raise SystemExit(f"--reuse-gptqmodel: {path} does not exist; run once with gptqmodel installed")
    old = json.loads(path.read_text())
    want = {"n_samples": args.n_samples, "seq_len": args.seq_len, "group_size": args.group_size,
            "calib_seed": args.calib_seed, "layers": args.layers or 30}
    got = {k: old["meta"].get(k, 0 if k == "calib_seed" else None) for k in want}
    if got != want:
        raise SystemExit(f"--reuse-gptqmodel: {path} was made with {got}, this run is {want}")
    return {(r["method"], r["bits"]): r for r in old["rows"] if r.get("tool") == "gptqmodel"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="rtn,gptq,awq")
    ap.add_argument("--bits", default="3,4,8")
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--n-samples", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--calib-seed", type=int, default=0, help="calibration sampling seed (held-out text is seed 1)")
    ap.add_argument("--layers", type=int, default=None, help="only the first N decoder layers (quick runs)")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--options", default="", help="codesign method options, e.g. 'true_sequential=1,group_aware=1' "
                    "(applied to every method that has them; values parsed as JSON, else strings)")
    ap.add_argument("--no-gptqmodel", action="store_true", help="skip GPTQModel even when it is importable")
    ap.add_argument("--reuse-gptqmodel", action="store_true",
                    help="do not run GPTQModel: take its rows (deterministic, minutes per AWQ run) from the "
                         "results.json already in --out, when it was made with the same model, calibration and "
                         "group size, and compute the ratios against them")
    args = ap.parse_args()

    from codesign.models import load_model
    from codesign.quantize.calibration import calibration_tokens

    fp = load_model("smollm2-135m-instruct")
    truncate(fp.model, args.layers)
    calib = calibration_tokens(fp.tokenizer, n_samples=args.n_samples, seq_len=args.seq_len, seed=args.calib_seed)
    held = calibration_tokens(fp.tokenizer, n_samples=8, seq_len=args.seq_len, seed=1)
    reused = reused_gptqmodel_rows(args) if args.reuse_gptqmodel else {}
    try:
        import gptqmodel  # noqa: F401
        have_gptqmodel = not (args.no_gptqmodel or args.reuse_gptqmodel)
    except ImportError:
        have_gptqmodel = False
        if not args.reuse_gptqmodel:
            print("gptqmodel is not importable: GPTQModel columns are skipped (pip install gptqmodel==7.6.0 to compare)")
    rows = []
    for method in args.methods.split(","):
        for bits in [int(b) for b in args.bits.split(",")]:
            opts = method_options(method, args.options)
            r = run_codesign(method, bits, args.group_size, calib, held, fp.model, args.layers, opts)
            g = reused.get((method, bits))
            if g is not None:
                if "implausible" in g.get("note", "") or "heldout_layer_err" not in g:
                    rows.append(g)  # kept for the record, not compared
                    g = None
            elif have_gptqmodel and method != "rtn":
                try:
                    g = run_gptqmodel(method, bits, args.group_size, calib, held, fp.model, args.layers,
                                      args.out / "work")
                except Exception as exc:  # e.g. GPTQModel's AWQ needs group sizes that divide every width
                    msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    print(f"gptqmodel {method} w{bits} failed: {msg}", flush=True)
                    rows.append({"tool": "gptqmodel", "method": method, "bits": bits,
                                 "group_size": args.group_size, "error": msg})
            if g:
                r["time_ratio_vs_gptqmodel"] = r["wall_s"] / g["wall_s"]
                r["err_ratio_vs_gptqmodel"] = r["heldout_layer_err"] / g["heldout_layer_err"]
                rows.append(g)
            rows.append(r)
            print(f"{method:5s} w{bits}  wall {r['wall_s']:7.1f} s  calib err {r['calib_err']:.3e}  "
                  f"held-out layer err {r['heldout_layer_err']:.3e}"
                  + (f"  | gptqmodel wall {g['wall_s']:.1f} s err {g['heldout_layer_err']:.3e}" if g else ""),
                  flush=True)
    meta = {"model": "smollm2-135m-instruct", "layers": args.layers or 30, "n_samples": args.n_samples,
            "calib_seed": args.calib_seed,
            "seq_len": args.seq_len, "group_size": args.group_size, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(),
            "gptqmodel": "reused from the previous results.json" if reused else have_gptqmodel}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    keys = sorted({k for r in rows for k in r})
    with (args.out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out / 'results.json'} and results.csv")


if __name__ == "__main__":
    main()
