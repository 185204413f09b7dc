"""``codesign quantize``: quantize a model to one or more variants (or a catalogue of them), or
import an AutoGPTQ/AutoAWQ checkpoint, into the variant cache. torch is imported inside."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from codesign.config import ConfigError


def register(app: typer.Typer) -> None:
    def parse_method_option(text: str) -> tuple[str, str, object]:
        """``METHOD.KEY=VALUE`` -> (method, key, value), the value read as YAML (numbers, true/false)."""
        import yaml

        from codesign.quantize.registry import method_names

        target, sep, raw = text.partition("=")
        m, dot, key = target.partition(".")
        if not sep or not dot or not key:
            raise ConfigError(f"--option {text!r}: expected METHOD.KEY=VALUE, e.g. gptq.mse=2.4")
        if m not in method_names():
            raise ConfigError(f"--option {text!r}: unknown method {m!r} (allowed: {method_names()})")
        return m, key, yaml.safe_load(raw) if raw else raw

    @app.command("quantize")
    def quantize(
        model: str = typer.Option("smollm2-135m-instruct", "--model", "-m",
                                  help="Model name or path: smollm2-135m-instruct, tiny-llama, a HF folder, a .gguf file."),
        method: str = typer.Option("gptq", "--method", help="Quantization method(s), comma-separated: rtn, gptq, awq."),
        bits: str = typer.Option("4", "--bits", "-b", help="Bit width(s), comma-separated, from 2,3,4,5,6,8."),
        group_size: int = typer.Option(128, "--group-size", "-g",
                                       help="Input columns per scale/zero group; -1 for per output channel."),
        sym: bool = typer.Option(False, "--sym/--asym", help="Symmetric (zero point fixed mid-range) or asymmetric grid."),
        calib: str = typer.Option("default", "--calib",
                                  help="Calibration text: 'default' (ETHICS ambiguous + MMLU dev), a .txt file, "
                                       "a .csv/.json/.jsonl data set, or a folder."),
        n_samples: int = typer.Option(32, "--n-samples", help="Calibration samples (sequences)."),
        seq_len: int = typer.Option(256, "--seq-len", help="Tokens per calibration sample."),
        seed: int = typer.Option(0, "--seed", help="Seed for calibration sampling."),
        act_order: bool = typer.Option(True, "--act-order/--no-act-order",
                                       help="GPTQ: quantize columns by decreasing Hessian diagonal (default on)."),
        no_clip: bool = typer.Option(False, "--no-clip", help="AWQ: skip the weight clipping search."),
        option: list[str] = typer.Option([], "--option", "-O",
                                         help="A method option as METHOD.KEY=VALUE, repeatable: gptq.mse=2.4, "
                                              "gptq.hessian_range=false, awq.block_loss=false, awq.block_topk=40."),
        catalogue: Optional[Path] = typer.Option(None, "--catalogue", "-c",
                                                 help="Catalogue YAML: quantize every variant it lists (overrides the flags above)."),
        import_dir: Optional[Path] = typer.Option(None, "--import",
                                                  help="Import an AutoGPTQ or AutoAWQ checkpoint folder instead of quantizing."),
        out: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Folder for the variant entries (default: $CODESIGN_CACHE/variants)."),
        store: Optional[Path] = typer.Option(None, "--store", help="Also register the variants in this result store (SQLite)."),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Benchmark data folder (for the default calibration)."),
        force: bool = typer.Option(False, "--force", help="Redo variants that are already cached."),
        list_only: bool = typer.Option(False, "--list", help="List the variants that would be made (and whether cached), then exit."),
    ) -> None:
        """Quantize a model with RTN/GPTQ/AWQ into cached variants (per-layer progress bar)."""
        from rich.console import Console
        from rich.table import Table

        from codesign.config import load_config, parse_int_list, validate_config
        from codesign.quantize import cache
        from codesign.quantize.catalogue import Catalogue
        from codesign.quantize.packing import SUPPORTED_BITS
        from codesign.quantize.registry import method_names
        from codesign.quantize.variant import validate_spec

        console = Console()
        if import_dir is not None:
            from codesign.quantize.formats import import_checkpoint

            spec, path = import_checkpoint(import_dir, root=out)
            specs_paths = [(spec, path)]
        else:
            if catalogue is not None:
                cat = load_config(Catalogue, catalogue)
            else:
                methods = [m.strip() for m in method.split(",") if m.strip()]
                bad = [m for m in methods if m not in method_names()]
                if bad:
                    raise ConfigError(f"--method: unknown method(s) {bad} (allowed: {method_names()})")
                opts = {}
                if not act_order:
                    opts["gptq"] = {"act_order": False}
                if no_clip:
                    opts["awq"] = {"clip": False}
                for m, key, val in map(parse_method_option, option):
                    opts.setdefault(m, {})[key] = val
                if group_size != -1 and group_size < 1:
                    raise ConfigError(f"--group-size: {group_size} is not allowed (allowed: -1 or a positive size)")
                cat = validate_config(Catalogue, dict(
                    model=model, methods=methods, bits=parse_int_list(bits, name="bits", allowed=set(SUPPORTED_BITS)),
                    group_sizes=[group_size], seeds=[seed], sym=sym, calib=calib, n_samples=n_samples,
                    seq_len=seq_len, include_dense=False, options=opts), "the command-line flags")
            specs = [s for s in cat.variants() if not s.is_dense]
            for s in specs:  # every check that can fail runs before the first variant starts
                validate_spec(s, check_model=True)
            if calib not in ("default", "none") and not Path(calib).exists():
                raise ConfigError(f"--calib: {calib} not found (allowed: 'default', a file or a folder)")
            if list_only:
                t = Table("variant id", "cached")
                for s in specs:
                    t.add_row(s.variant_id, "yes" if cache.lookup(s.variant_id, out) else "no")
                console.print(t)
                return
            from codesign.quantize.variant import quantize_variant

            specs_paths = []
            for i, s in enumerate(specs):
                console.print(f"[bold]({i + 1}/{len(specs)})[/bold] {s.variant_id}")
                specs_paths.append((s, quantize_variant(s, out=out, data_dir=data_dir, force=force)))
        if store is not None:
            from codesign.store import ResultStore

            with ResultStore(store) as st:
                for s, _ in specs_paths:
                    st.add_variant(s)
        t = Table("variant id", "mean layer error", "seconds", "path")
        for s, p in specs_paths:
            rec = cache.read_record(p)
            err = rec.get("mean_error")
            t.add_row(s.variant_id, "n/a" if err is None else f"{err:.3e}", f"{rec.get('seconds', 0):.1f}", str(p))
        console.print(t)
