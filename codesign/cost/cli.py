"""``codesign probe`` / ``codesign measure`` / ``codesign calibrate``: measured costs on the device at hand
and the analytical model fitted to them. Heavy imports live inside the commands (fast ``--help``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from codesign.config import ConfigError, parse_int_list


def _csv_list(text: str, name: str) -> list[str]:
    out = [t.strip() for t in str(text).split(",") if t.strip()]
    if not out:
        raise ConfigError(f"--{name}: empty list")
    return out


def _rows_table(rows, title: str):
    """Measured rows as a table that reads at 80 columns, then which kernel ran each variant."""
    from rich import box
    from rich.console import Group
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for c in ("variant", "dtype", "batch", "prompt", "prefill ms", "tpot ms", "tok/s", "peak MB"):
        table.add_column(c, justify="left" if c == "variant" else "right", min_width=13 if c == "variant" else None)
    kernels = {}
    for r in rows:
        name = r.variant if r.schedule == "single" else f"{r.variant}\n({r.schedule})"
        table.add_row(name, r.dtype.replace("bfloat", "bf").replace("float", "fp"), str(r.batch), str(r.prompt_len),
                      f"{r.prefill_ms:.1f}", f"{r.tpot_ms:.2f}", f"{r.batch * 1e3 / r.tpot_ms:.1f}",
                      f"{r.peak_mem_bytes / 2**20:.0f}")
        pre = r.extra.get("prefill_kernel") or r.kernel
        kernels[r.variant] = r.kernel if pre == r.kernel else f"{r.kernel}\n    (prefill: {pre})"
    return Group(table, *(f"  {v}: {k}" for v, k in kernels.items()))


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def probe_cmd(
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Spec YAML to write. Default: $CODESIGN_CACHE/specs/<name>.yaml, "
                                      "where `--spec <name>` finds it."),
        name: str = typer.Option("host-cpu", "--name", help="Spec name (file stem and `name:` field)."),
        device: str = typer.Option("cpu", "--device", help="Device to probe: cpu or cuda[:N]."),
        dtypes: str = typer.Option("fp32,bf16,fp16,int8", "--dtypes",
                                   help="Matmul datatypes to time (fp32, bf16, fp16, int8); unsupported ones are left out."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: all cores)."),
        quick: bool = typer.Option(False, "--quick", help="Small sizes, few repeats (seconds; rough numbers)."),
        clock: str = typer.Option("wall", "--clock", help="wall, or cpu (process CPU time; with --threads 1 on a busy box)."),
    ):
        """Measure this machine and write an accelerator spec for it.

        Copy bandwidth, vector throughput and matmul TFLOP/s per datatype, in the hwmodels schema.
        """
        import yaml

        from codesign.cost.probe import default_spec_path, probe, spec_dict, write_spec
        from codesign.cost.timers import device_kind

        device_kind(device)
        res = probe(device, dtypes=_csv_list(dtypes, "dtypes"), quick=quick, threads=threads, clock=clock)
        spec = spec_dict(res, name)
        path = write_spec(spec, out or default_spec_path(name))
        typer.echo(yaml.safe_dump(spec, sort_keys=False).rstrip())
        typer.echo(f"wrote {path}")

    @app.command("measure")
    def measure_cmd(
        model: str = typer.Option(
            "random:smollm2-135m", "--model", "-m",
            help="Model to time: random:<shape> (real shape, random weights, no download: llama-2-7b, "
                 "llama-2-13b, llama-3-8b, mistral-7b, qwen2.5-0.5b, smollm2-135m or a config.json), a tiny-* "
                 "model, or any name `codesign` can load."),
        variant: Optional[str] = typer.Option(
            None, "--variant", "-v",
            help="Comma-separated weight formats: dense, w<bits>g<group>[-sym] (RTN of the random weights, e.g. "
                 "w4g128, w8gpc), or variant ids of quantized variants in --store. Default: dense, or none with "
                 "--ensemble."),
        ensemble: Optional[str] = typer.Option(
            None, "--ensemble", "-e",
            help="Also run a precision ensemble's members for real: widths (4,8 -> w4g128,w8g128; 16 -> dense) or "
                 "formats, comma-separated."),
        schedule: str = typer.Option("sequential", "--schedule",
                                     help="Ensemble schedules, comma-separated: sequential (members one after "
                                          "another), batched (members' decode steps interleaved in one process)."),
        kernel: str = typer.Option(
            "auto", "--kernel",
            help="Kernel of the quantized linears: auto (by device, dtype and format) or one of "
                 "aten-int4pack-cpu, aten-int8pack-cpu, aten-int8pack-grouped-cpu, aten-int4pack-x2-cpu, "
                 "aten-int4pack-cuda, marlin-gptqmodel, dequant-matmul; rows name what ran."),
        prefill: str = typer.Option(
            "auto", "--prefill",
            help="How quantized linears run prefill: packed (the decode kernel), dequantized (a dense GEMM on a "
                 "dequantized copy of each weight, kept for it: costs its memory), auto (dequantized for torch's "
                 "CPU packed ops, whose GEMVs are slow at many rows; packed elsewhere). Rows record "
                 "extra.prefill_kernel and extra.decode_kernel."),
        spec: Optional[str] = typer.Option(
            None, "--spec", "-s",
            help="Accelerator spec rows are compared against (default: host-cpu if probed, else dev-cpu on CPU; "
                 "the GPU's built-in spec on CUDA)."),
        dtype: str = typer.Option("float32", "--dtype",
                                  help="Comma-separated runtime dtypes: float32, bfloat16, float16."),
        batch: str = typer.Option("1,4,16", "--batch", "-b", help="Comma-separated batch sizes."),
        prompt_len: str = typer.Option("128", "--prompt-len", help="Comma-separated prompt lengths (tokens)."),
        gen_len: int = typer.Option(16, "--gen-len", help="Decode steps timed after each prefill."),
        layers: Optional[int] = typer.Option(
            None, "--layers", help="Keep only the first N decoder layers (wide shapes on a small box); the stored "
                                   "config is truncated too, so calibration models the same shape."),
        repeats: int = typer.Option(3, "--repeats", help="Timed repeats per configuration (median is stored)."),
        warmup: int = typer.Option(1, "--warmup", help="Untimed warm-up runs per configuration."),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N (CUDA uses device events)."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: all cores)."),
        store: Path = typer.Option(Path("results.db"), "--store", help="Result store (SQLite) to add measurements to."),
        csv: Optional[Path] = typer.Option(None, "--csv", help="Also export every measurement of the store to this CSV."),
        force: bool = typer.Option(False, "--force", help="Re-measure configurations already in the store."),
        seed: int = typer.Option(0, "--seed", help="Seed of random weights and input tokens."),
        wait_quiet: Optional[float] = typer.Option(
            None, "--wait-quiet", help="On a shared machine: before each configuration wait until the CPUs are at most "
                                       "this busy (0-1, e.g. 0.2); the busy fraction is stored either way."),
        wait_timeout: float = typer.Option(120.0, "--wait-timeout", help="Seconds to wait for --wait-quiet at most."),
        max_other_load: Optional[float] = typer.Option(
            None, "--max-other-load", help="Discard a configuration's runs if other processes used more than this share "
                                           "of the CPUs meanwhile (0-1); retried, else left for a later resumed run."),
        clock: str = typer.Option(
            "wall", "--clock", help="wall (monotonic clock; CUDA events on GPU) or cpu (this process's CPU time: "
                                    "robust on a busy shared CPU; needs --threads 1)."),
    ):
        """Time real prefill and KV-cached decode on the device at hand.

        Median of repeats after warm-up (CUDA events on GPU, a monotonic clock on CPU), peak memory,
        stored in the result store with the kernel that ran, device name, spec and software versions.
        """
        from rich.console import Console

        from codesign.cost.measure import check_schedules, measure, parse_ensemble, parse_weight_format
        from codesign.store import ResultStore

        batches = parse_int_list(batch, name="batch")
        plens = parse_int_list(prompt_len, name="prompt-len")
        if not batches or min(batches) < 1:
            raise ConfigError(f"--batch: {batch!r} (allowed: positive integers like 1,4,16)")
        if not plens or min(plens) < 1:
            raise ConfigError(f"--prompt-len: {prompt_len!r} (allowed: positive integers like 128,512)")
        schedules = check_schedules(_csv_list(schedule, "schedule"))
        with ResultStore(store) as st:
            ens = [parse_ensemble(ensemble, st)] if ensemble else []
            formats = [parse_weight_format(v, st) for v in _csv_list(variant or "dense", "variant")] \
                if variant or not ens else []
            rows = measure(model, formats, ensembles=ens, schedules=schedules, dtypes=_csv_list(dtype, "dtype"),
                           batches=batches, prompt_lens=plens, store=st, gen_len=gen_len, layers=layers,
                           repeats=repeats, warmup=warmup, device=device, seed=seed, force=force, threads=threads,
                           wait_quiet=wait_quiet, wait_timeout_s=wait_timeout, max_other_load=max_other_load,
                           clock=clock, kernel=kernel, prefill=prefill, spec=spec)
            if csv:
                st.frame("measurements").to_csv(csv, index=False)
        Console().print(_rows_table(rows, f"{model}" + (f" (first {layers} layers)" if layers else "") + f" on {device}"))
        typer.echo(f"{len(rows)} measured ({'all' if rows else 'none'} new) -> {store}")

    @app.command("calibrate")
    def calibrate_cmd(
        spec: str = typer.Option(..., "--spec", "-s",
                                 help="Spec to calibrate: a name (built-in or in $CODESIGN_CACHE/specs) or a YAML path."),
        measurements: Path = typer.Option(..., "--measurements",
                                          help="Result store (.db) or CSV written by `codesign measure`."),
        device: Optional[str] = typer.Option(None, "--device", help="Use only measurements of this device (cpu, cuda)."),
        device_name: Optional[str] = typer.Option(None, "--device-name",
                                                  help="Use only measurements of this device name."),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="Use only measurements of this runtime dtype "
                                                                  "(float32, bfloat16, float16)."),
        test_frac: float = typer.Option(0.3, "--test-frac", help="Share of configurations held out for the error report."),
        seed: int = typer.Option(0, "--seed", help="Seed of the train/test split."),
        statistic: str = typer.Option("median", "--statistic",
                                      help="Per-configuration time: median of repeats, or min (robust on a busy machine)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Calibrated spec to write. Default: <spec>.calibrated.yaml next to the "
                                                "spec, or in $CODESIGN_CACHE/specs for built-in specs."),
        show: str = typer.Option("test", "--show", help="Configurations to list: test, train or all."),
        runtime: Optional[str] = typer.Option(
            None, "--runtime", "-r",
            help="Fit this runtime profile (name or YAML path) instead of the spec: per kernel and weight format "
                 "efficiencies, dequantization cost, launch floor, framework time. Writes <profile>.calibrated.yaml."),
        fit: Optional[str] = typer.Option(
            None, "--fit", help="With --runtime: comma-separated parameters to fit (e.g. framework.per_layer_us,"
                                "kernels.aten-int4pack-cpu.memory_efficiency.w4); default: every one the rows inform."),
        also_fit: Optional[str] = typer.Option(
            None, "--also-fit", help="With --runtime: comma-separated parameters fitted besides --fit's (or the "
                                     "default ones), e.g. kernels.torch-matmul.compute_m_half_decode."),
    ):
        """Fit a spec's efficiency factors and overheads (or a runtime profile) to measurements.

        Efficiency per datatype x {compute, memory} and overhead per layer / per forward, by least squares
        on train configurations; prints MAPE before/after on held-out ones (also per weight format and
        kernel); writes the calibrated spec, or with --runtime the calibrated runtime profile.
        """
        from codesign.cost.calibrate import calibrate, format_report, load_measurements

        if show not in ("test", "train", "all"):
            raise ConfigError(f"--show: {show!r} (allowed: test, train, all)")
        meas = load_measurements(measurements, device=device, device_name=device_name, statistic=statistic,
                                 dtype=dtype)
        res = calibrate(spec, meas, runtime=runtime, fit=_csv_list(fit, "fit") if fit else None, test_frac=test_frac,
                        seed=seed, out=out, statistic=statistic,
                        also_fit=_csv_list(also_fit, "also-fit") if also_fit else None)
        typer.echo(format_report(res, split=None if show == "all" else show))
