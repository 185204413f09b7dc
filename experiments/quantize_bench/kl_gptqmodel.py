"""GPTQModel's own GPTQ checkpoints end to end: KL divergence to the dense model and NLL on the same
held-out text as ``gptq_ablation.py`` (4,096 tokens of MMLU high-school-biology test questions),
so codesign's GPTQ defaults can be compared with GPTQModel's on the model's outputs, not only on
per-layer errors. Needs ``gptqmodel`` (7.6.0 on CPU, ``GPTQMODEL_CPU_WORKERS=2``).

    GPTQMODEL_CPU_WORKERS=2 python experiments/quantize_bench/kl_gptqmodel.py --bits 3,4

Adds ``gptqmodel-gptq`` rows to ``gptq_ablation_gptqmodel_g64.csv`` (replacing earlier ones).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="3,4")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--out", type=Path, default=HERE / "gptq_ablation_gptqmodel_g64.csv")
    args = ap.parse_args()

    import os

    sys.path.insert(0, str(HERE))
    from bench import run_gptqmodel_model

    from codesign.models import load_model
    from codesign.paths import data_dir
    from codesign.quantize.calibration import calibration_tokens

    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    dense = load_model("smollm2-135m-instruct")
    text = (data_dir() / "mmlu" / "test" / "high_school_biology_test.csv").read_text()
    ids = dense.tokenizer(text, return_tensors="pt").input_ids[:, : args.tokens]
    with torch.no_grad():
        ref = torch.log_softmax(dense.model(ids).logits.float(), -1)
    calib = calibration_tokens(dense.tokenizer, n_samples=32, seq_len=256, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for bits in [int(b) for b in args.bits.split(",")]:
            got = run_gptqmodel_model("gptq", bits, args.group_size, calib, Path(work))
            if got is None:
                raise SystemExit("gptqmodel is not importable (pip install gptqmodel==7.6.0)")
            q, wall = got
            with torch.no_grad():
                lp = torch.log_softmax(q(ids).logits.float(), -1)
            row = {"method": "gptqmodel-gptq", "bits": bits, "n_samples": 32, "seq_len": 256,
                   "kl_to_dense": float((ref.exp() * (ref - lp)).sum(-1).mean()),
                   "nll": float(-lp[0, :-1].gather(-1, ids[0, 1:, None]).mean()), "wall_s": wall,
                   "note": "GPTQModel 7.6.0 defaults (damping 0.05, group-aware order, true-sequential), "
                           "its checkpoint re-imported"}
            print(row, flush=True)
            rows.append(row)
    old = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame()
    if len(old):
        old = old[old["method"] != "gptqmodel-gptq"]
    df = pd.concat([old, pd.DataFrame(rows)], ignore_index=True)
    for c in ("n_samples", "seq_len"):
        df[c] = df[c].astype("Int64")
    df.to_csv(args.out, index=False, float_format="%.5g")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
