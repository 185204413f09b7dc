"""``codesign hw``: the analytical roofline / PPA model of one configuration (or a sweep, or a
precision ensemble) on an accelerator spec. numpy/pandas are imported inside the command."""

from __future__ import annotations

import json

import typer

from codesign.config import ConfigError, parse_int_list

DEFAULT_SPEC = "h100-sxm"
DEFAULT_SHAPE = "smollm2-135m"


def _fmt_bytes(x: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.0f} B"


def _fmt_time(ms: float) -> str:
    if ms >= 1e3:
        return f"{ms / 1e3:.3g} s"
    if ms >= 1:
        return f"{ms:.3g} ms"
    if ms >= 1e-3:
        return f"{ms * 1e3:.3g} us"
    return f"{ms * 1e6:.3g} ns"


def _print_estimate(est, show_ops: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    title = f"{est.model} on {est.spec}" + (f" ({est.runtime} stack)" if est.runtime else "")
    if est.schedule:
        title += f" - ensemble {{{','.join(str(m['bits']) for m in est.members)}}} ({est.schedule})"
    else:
        title += f" - w{est.wbits} g{est.group_size} a{est.abits} kv{est.kvbits}"
    title += f", batch {est.batch}, prompt {est.prompt_len}, gen {est.gen_len}"
    t = Table(title=title, show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("TTFT", f"{est.ttft_ms:.4g} ms"), ("time per output token", f"{est.tpot_ms:.4g} ms"),
        ("tokens/s (decode, whole batch)", f"{est.tokens_per_s:.4g}"), ("end-to-end", f"{est.e2e_ms:.4g} ms"),
        ("weight memory", _fmt_bytes(est.weight_bytes)), ("KV cache", _fmt_bytes(est.kv_bytes)),
        ("peak memory" + (" per device" if est.n_devices > 1 else ""), _fmt_bytes(est.peak_memory_bytes)),
        ("capacity", _fmt_bytes(est.capacity_bytes)), ("fits", "yes" if est.fits else "NO"),
        ("energy per token", f"{est.energy_per_token_j:.4g} J"), ("average power", f"{est.avg_power_w:.4g} W"),
        ("compute datatype", est.compute_dtype + (" (dequantized weights)" if est.dequantized else "")),
        ("decode bound", est.decode_bound), ("prefill bound", est.prefill_bound),
        ("compute-fabric area", "n/a (spec has no area data)" if est.area_mm2 is None else f"{est.area_mm2:.4g} mm2"),
    ]
    if est.n_devices > 1:
        rows.append(("devices", str(est.n_devices)))
    if est.gated_fraction is not None:
        rows.append(("gated fraction", f"{est.gated_fraction:g}"))
    for r in rows:
        t.add_row(*r)
    con.print(t)
    if est.members:
        m = Table(title="ensemble members")
        for c in ("bits", "runs on", "TTFT ms", "TPOT ms", "weights", "J/token", "dtype"):
            m.add_column(c, justify="right")
        for r in est.members:
            m.add_row(str(r["bits"]), f"{r['run_fraction']:.3g} of items", f"{r['ttft_ms']:.4g}",
                      f"{r['tpot_ms']:.4g}", _fmt_bytes(r["weight_bytes"]), f"{r['energy_per_token_j']:.4g}",
                      r["compute_dtype"] + ("*" if r["dequantized"] else ""))
        con.print(m)
    if show_ops and est.ops is not None and len(est.ops):
        o = Table(title="per operator (all layers)")
        for c in ("op", "dtype", "prefill", "bound", "decode", "bound ", "share"):
            o.add_column(c, justify="right" if c in ("prefill", "decode", "share") else "left", no_wrap=True)
        ops = est.ops
        pre = ops[ops.phase == "prefill"].set_index("op")
        dec = ops[ops.phase == "decode"].set_index("op")
        for op in dec.index:
            p = pre.loc[op] if op in pre.index else None
            d = dec.loc[op]
            o.add_row(op, str(d["dtype"]), "" if p is None else _fmt_time(p["time_ms"]),
                      "" if p is None else str(p["bound"]), _fmt_time(d["time_ms"]), str(d["bound"]),
                      f"{100 * d['share']:.1f}%")
        con.print(o)


#: Ranges of hw's integer flags: what a roofline can mean (bits as hwmodels.dtypes.MAX_BITS; batch, prompt and generation
#: lengths far beyond any deployment, so an overflow or a typo stops here, not in numpy).
_INT_FLAGS = {"wbits": (1, 32), "abits": (1, 32), "kvbits": (1, 32), "ensemble": (1, 32), "batch": (1, 1_000_000),
              "prompt-len": (1, 100_000_000), "gen-len": (1, 100_000_000), "group-size": (-1, 1_000_000)}


def _int_flags(**values) -> dict[str, list[int]]:
    """Every integer flag of ``hw`` parsed and range-checked before any spec or shape is read."""
    out = {}
    for key, text in values.items():
        name = key.replace("_", "-")
        lo, hi = _INT_FLAGS[name]
        out[name] = parse_int_list(None if text is None else str(text), name=name, lo=lo, hi=hi)
        if name == "group-size" and 0 in out[name]:
            raise ConfigError("--group-size: 0 is not allowed (allowed: -1 for per-channel scales, or 1 to 1,000,000)")
    return out


def register(app: typer.Typer) -> None:
    @app.command("hw")
    def hw_cmd(
        spec: str = typer.Option(DEFAULT_SPEC, "--spec", "-s",
                                 help="Accelerator spec: built-in name (see --list), user spec in "
                                      "$CODESIGN_CACHE/specs/, or a path to a YAML file."),
        model: str = typer.Option(DEFAULT_SHAPE, "--model", "-m",
                                  help="Model shape: built-in name (llama-2-7b, llama-2-13b, llama-3-8b, mistral-7b, "
                                       "qwen2.5-0.5b, smollm2-135m), a Hugging Face config.json path or folder."),
        wbits: str = typer.Option("4", "--wbits", "-w",
                                  help="Weight bits (16 = dense). A comma list (e.g. 2,3,4,8,16) evaluates a sweep."),
        group_size: str = typer.Option("128", "--group-size", "-g",
                                       help="Quantization group size (-1: per output channel). Comma list sweeps."),
        abits: int = typer.Option(16, "--abits", help="Activation bits (16 = fp16/bf16; 8 uses int8/fp8 units)."),
        kvbits: int = typer.Option(16, "--kvbits", help="KV-cache bits."),
        batch: str = typer.Option("1", "--batch", "-b", help="Batch size (sequences). Comma list sweeps."),
        prompt_len: str = typer.Option("512", "--prompt-len", help="Prompt tokens (prefill). Comma list sweeps."),
        gen_len: str = typer.Option("128", "--gen-len", help="Generated tokens (decode). Comma list sweeps."),
        ensemble: str | None = typer.Option(
            None, "--ensemble", "-e", help="Precision ensemble: member weight bits, e.g. 3,4,8 (overrides --wbits)."),
        schedule: str = typer.Option("sequential", "--schedule",
                                     help="Ensemble schedule: sequential, parallel, batched or sliced."),
        gated_fraction: float | None = typer.Option(
            None, "--gated-fraction",
            help="Agreement-gated ensemble: fraction (0..1) of items on which the members beyond the "
                 "low-precision quorum must also run."),
        runtime: str | None = typer.Option(
            None, "--runtime", "-r",
            help="Software-stack profile: built-in name (see --list; e.g. gpt-fast, tinychat-awq, hf-eager), user "
                 "profile in $CODESIGN_CACHE/runtimes/, or a YAML path. Default: no stack terms (spec alone)."),
        kernel: str | None = typer.Option(
            None, "--kernel", help="Kernel the linears run (e.g. aten-int4pack-cuda); default: the profile's choice "
                                   "for the weight format."),
        prefill_kernel: str | None = typer.Option(
            None, "--prefill-kernel",
            help="Kernel of the linears' prefill calls (e.g. aten-int4pack-cpu, as `measure --prefill packed` runs); "
                 "default: --kernel, or torch-matmul on a dense copy for the CPU packed kernels, as `measure "
                 "--prefill auto` runs."),
        sym: bool = typer.Option(False, "--sym", help="Symmetric quantization (no zero points stored)."),
        float_dtype: str | None = typer.Option(
            None, "--float-dtype", help="16-bit activation format: fp16 or bf16 (default: the spec's faster unit)."),
        ideal: bool = typer.Option(False, "--ideal",
                                   help="Roofline floor: peak rates, no efficiency factors, no fixed overheads."),
        ops: bool = typer.Option(True, "--ops/--no-ops", help="Show the per-operator table (time and bound)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
        schema: bool = typer.Option(False, "--schema", help="Print the JSON Schema of spec files and exit."),
        runtime_schema: bool = typer.Option(False, "--runtime-schema",
                                            help="Print the JSON Schema of runtime profile files and exit."),
        list_: bool = typer.Option(False, "--list",
                                   help="List available specs, runtime profiles, kernels, shapes and schedules and exit."),
    ):
        """Analytical cost of a model configuration on an accelerator (roofline per operator).

        Prints TTFT, time per output token, tokens/s, weight/KV/peak memory, whether it fits, energy
        per token, the bound of every operator and, for specs with area data, the compute-fabric area.
        """
        import hwmodels

        if schema or runtime_schema:
            typer.echo(json.dumps(hwmodels.json_schema() if schema else hwmodels.runtime_schema(), indent=2))
            return
        if list_:
            info = {"specs": hwmodels.list_specs(), "runtimes": hwmodels.list_runtimes(),
                    "kernels": list(hwmodels.KERNELS), "shapes": hwmodels.builtin_shapes(),
                    "schedules": list(hwmodels.SCHEDULES)}
            if as_json:
                typer.echo(json.dumps(info))
            else:
                for k, v in info.items():
                    typer.echo(f"{k}: {', '.join(v)}")
            return
        ints = _int_flags(wbits=wbits, group_size=group_size, batch=batch, prompt_len=prompt_len, gen_len=gen_len,
                          abits=abits, kvbits=kvbits, ensemble=ensemble)
        if gated_fraction is not None and not 0.0 <= gated_fraction <= 1.0:  # NaN too
            raise ConfigError(f"--gated-fraction: {gated_fraction!r} is not allowed (allowed: 0 to 1)")
        sp, sh, rt = hwmodels.load_spec(spec), hwmodels.load_shape(model), hwmodels.load_runtime(runtime)
        if ensemble:
            if kernel or prefill_kernel:
                raise ConfigError("--kernel: not with --ensemble (members run the profile's kernel for their bits)")
            members, g = ints["ensemble"], ints["group-size"]
            if len(g) != 1:
                raise ConfigError("--group-size: give one value with --ensemble")
            sweep = [(n, ints[n]) for n in ("batch", "prompt-len", "gen-len")]
            if any(len(v) != 1 for _, v in sweep):
                raise ConfigError("--batch/--prompt-len/--gen-len: give one value each with --ensemble")
            est = hwmodels.estimate_ensemble(sp, sh, members, group_size=g[0], schedule=schedule, abits=abits,
                                             kvbits=kvbits, batch=sweep[0][1][0], prompt_len=sweep[1][1][0],
                                             gen_len=sweep[2][1][0], gated_fraction=gated_fraction, sym=sym,
                                             ideal=ideal, float_dtype=float_dtype, runtime=rt)
            _emit(est, as_json, ops)
            return
        if gated_fraction is not None:
            raise ConfigError("--gated-fraction needs --ensemble")
        lists = {n: ints[n] for n in ("wbits", "group-size", "batch", "prompt-len", "gen-len")}
        for n, v in lists.items():
            if not v:
                raise ConfigError(f"--{n}: empty value")
        if all(len(v) == 1 for v in lists.values()):
            est = hwmodels.estimate(sp, sh, wbits=lists["wbits"][0], group_size=lists["group-size"][0], abits=abits,
                                    kvbits=kvbits, batch=lists["batch"][0], prompt_len=lists["prompt-len"][0],
                                    gen_len=lists["gen-len"][0], sym=sym, ideal=ideal,
                                    float_dtype=float_dtype, runtime=rt, kernel=kernel, prefill_kernel=prefill_kernel)
            _emit(est, as_json, ops)
            return
        grid = hwmodels.evaluate_grid([sp], [sh], wbits=lists["wbits"], group_size=lists["group-size"],
                                      abits=[abits], kvbits=[kvbits], batch=lists["batch"],
                                      prompt_len=lists["prompt-len"], gen_len=lists["gen-len"], sym=sym, ideal=ideal,
                                      float_dtype=float_dtype, runtime=rt, kernel=kernel, prefill_kernel=prefill_kernel)
        df = grid.to_frame()
        cols = ["wbits", "group_size", "batch", "prompt_len", "gen_len", "ttft_ms", "tpot_ms", "tokens_per_s",
                "weight_bytes", "kv_bytes", "peak_memory_bytes", "fits", "energy_per_token_j", "compute_dtype",
                "dequantized", "area_mm2"]
        if as_json:
            rows = json.loads(df[cols].to_json(orient="records"))
            typer.echo(json.dumps({"spec": sp.name, "model": sh.name, "runtime": rt.name, "abits": abits,
                                   "kvbits": kvbits, "rows": rows}))
            return
        from rich.console import Console
        from rich.table import Table

        axes = {"wbits": "w", "group_size": "g", "batch": "B", "prompt_len": "P", "gen_len": "G"}
        fixed = [f"{short}={df[c].iloc[0]}" for c, short in axes.items() if df[c].nunique() == 1]
        t = Table(title=f"{sh.name} on {sp.name} ({rt.name} stack) - a{abits} kv{kvbits} {' '.join(fixed)} "
                        f"({len(df)} configurations)")
        shown = {c: short for c, short in axes.items() if df[c].nunique() > 1}
        shown.update({"ttft_ms": "TTFT", "tpot_ms": "TPOT", "tokens_per_s": "tok/s", "peak_memory_bytes": "peak",
                      "fits": "fits", "energy_per_token_j": "J/tok", "compute_dtype": "dtype"})
        for c in shown.values():
            t.add_column(c, justify="right", no_wrap=True)
        for r in df[list(shown)].itertuples(index=False):
            cells = []
            for c, v in zip(shown, r):
                if c == "peak_memory_bytes":
                    cells.append(_fmt_bytes(v))
                elif c in ("ttft_ms", "tpot_ms"):
                    cells.append(_fmt_time(v))
                elif c == "fits":
                    cells.append("yes" if v else "NO")
                elif isinstance(v, float):
                    cells.append(f"{v:.3g}")
                else:
                    cells.append(str(v))
            t.add_row(*cells)
        Console().print(t)


def _emit(est, as_json: bool, show_ops: bool) -> None:
    if as_json:
        typer.echo(json.dumps(est.to_dict(ops=show_ops)))
    else:
        _print_estimate(est, show_ops)
