"""``codesign quantize``: quantize a model to one or more variants (or a catalogue of them), or
import an AutoGPTQ/AutoAWQ checkpoint, into the variant cache. torch is imported inside.

:func:`quantize` is the command as a plain function over :class:`QuantizeOptions`; :func:`register`
binds it to the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codesign.commands import CommandOptions, bind, option
from codesign.config import ConfigError


class QuantizeOptions(CommandOptions):
    model: str = option("smollm2-135m-instruct", "--model", "-m", help="Model name or path: smollm2-135m-instruct, "
                                                                       "tiny-llama, a HF folder, a .gguf file.")
    method: list[str] = option(["gptq"], "--method", help="Quantization method(s), comma-separated: rtn, gptq, awq.")
    bits: list[int] = option([4], "--bits", "-b", help="Bit width(s), comma-separated, from 2,3,4,5,6,8.")
    group_size: int = option(128, "--group-size", "-g", help="Input columns per scale/zero group; -1 for per "
                                                             "output channel.")
    sym: bool = option(False, "--sym/--asym", help="Symmetric (zero point fixed mid-range) or asymmetric grid.")
    calib: str = option("default", "--calib", help="Calibration text: 'default' (ETHICS ambiguous + MMLU dev), a "
                                                   ".txt file, a .csv/.json/.jsonl data set, or a folder.")
    n_samples: int = option(32, "--n-samples", help="Calibration samples (sequences).")
    seq_len: int = option(256, "--seq-len", help="Tokens per calibration sample.")
    seed: int = option(0, "--seed", help="Seed for calibration sampling.")
    act_order: bool = option(True, "--act-order/--no-act-order", help="GPTQ: quantize columns by decreasing "
                                                                      "Hessian diagonal (default on).")
    no_clip: bool = option(False, "--no-clip", help="AWQ: skip the weight clipping search.")
    method_options: list[str] = option([], "--option", "-O", repeat=True,
                               help="A method option as METHOD.KEY=VALUE, repeatable: gptq.mse=2.4, "
                                    "gptq.hessian_range=false, awq.block_loss=false, awq.block_topk=40.")
    catalogue: Path | None = option(None, "--catalogue", "-c", help="Catalogue YAML: quantize every variant it lists "
                                                                    "(overrides the flags above).")
    import_dir: Path | None = option(None, "--import", help="Import an AutoGPTQ or AutoAWQ checkpoint folder instead "
                                                            "of quantizing.")
    out: Path | None = option(None, "--out", "-o", help="Folder for the variant entries (default: "
                                                        "$CODESIGN_CACHE/variants).")
    store: Path | None = option(None, "--store", help="Also register the variants in this result store (SQLite).")
    data_dir: Path | None = option(None, "--data-dir", help="Benchmark data folder (for the default calibration).")
    force: bool = option(False, "--force", help="Redo variants that are already cached.")
    list_only: bool = option(False, "--list", help="List the variants that would be made (and whether cached), "
                                                   "then exit.")


@dataclass
class QuantizeResult:
    """Variants made (or found cached) with their cache entries; with ``--list``, the plan instead."""

    made: list = field(default_factory=list)  # (VariantSpec, Path)
    planned: list = field(default_factory=list)  # (variant id, cached?)


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


def check_calib(calib: str) -> None:
    """``--calib`` names calibration text that exists and is text (its first MiB decodes as UTF-8)."""
    import codecs

    if calib in ("default", "none"):
        return
    path = Path(calib)
    if not path.exists():
        raise ConfigError(f"--calib: {calib} not found (allowed: 'default', a text or data-set file, or a folder)")
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--calib: {calib} is not UTF-8 text (byte {exc.start} is {head[exc.start:exc.start + 1]!r}; "
                              "allowed: a .txt, .csv, .json or .jsonl file)") from None


def catalogue_of(opts: QuantizeOptions):
    """The :class:`~codesign.quantize.Catalogue` the options describe (a file, or the flags)."""
    from codesign.config import load_config, validate_config
    from codesign.quantize.catalogue import Catalogue
    from codesign.quantize.options import SUPPORTED_BITS
    from codesign.quantize.registry import method_names

    if opts.catalogue is not None:
        return load_config(Catalogue, opts.catalogue)
    bad = [m for m in opts.method if m not in method_names()]
    if bad:
        raise ConfigError(f"--method: unknown method(s) {bad} (allowed: {method_names()})")
    bad_bits = [b for b in opts.bits if b not in SUPPORTED_BITS]
    if bad_bits:
        raise ConfigError(f"--bits: {bad_bits[0]} is not allowed (allowed: {sorted(SUPPORTED_BITS)})")
    if opts.group_size != -1 and opts.group_size < 1:
        raise ConfigError(f"--group-size: {opts.group_size} is not allowed (allowed: -1 or a positive size)")
    methods = {}
    if not opts.act_order:
        methods["gptq"] = {"act_order": False}
    if opts.no_clip:
        methods["awq"] = {"clip": False}
    for m, key, val in map(parse_method_option, opts.method_options):
        methods.setdefault(m, {})[key] = val
    return validate_config(Catalogue, dict(
        model=opts.model, methods=list(opts.method), bits=list(opts.bits), group_sizes=[opts.group_size],
        seeds=[opts.seed], sym=opts.sym, calib=opts.calib, n_samples=opts.n_samples, seq_len=opts.seq_len,
        include_dense=False, options=methods), "the command-line flags")


def quantize(opts: QuantizeOptions) -> QuantizeResult:
    """Quantize (or import) the variants into the cache, and register them in the store if given."""
    from codesign.quantize import cache

    res = QuantizeResult()
    if opts.import_dir is not None:
        from codesign.quantize.formats import import_checkpoint

        res.made = [import_checkpoint(opts.import_dir, root=opts.out)]
    else:
        from codesign.quantize.variant import quantize_variant, validate_spec

        specs = [s for s in catalogue_of(opts).variants() if not s.is_dense]
        check_calib(opts.calib)
        for s in specs:  # every check that can fail runs before the first variant starts
            try:
                validate_spec(s, check_model=True)
            except ConfigError as exc:
                where = opts.catalogue if opts.catalogue is not None else "the command-line flags"
                raise ConfigError(f"{where}: variant {s.short_name}: {exc}") from None
        if opts.list_only:
            res.planned = [(s.variant_id, bool(cache.lookup(s.variant_id, opts.out))) for s in specs]
            return res
        from rich.console import Console

        for i, s in enumerate(specs):
            Console().print(f"[bold]({i + 1}/{len(specs)})[/bold] {s.variant_id}")
            res.made.append((s, quantize_variant(s, out=opts.out, data_dir=opts.data_dir, force=opts.force)))
    if opts.store is not None:
        from codesign.store import ResultStore

        with ResultStore(opts.store) as st:
            for s, _ in res.made:
                st.add_variant(s)
    return res


def show(opts: QuantizeOptions, res: QuantizeResult) -> None:
    from rich.console import Console
    from rich.table import Table

    from codesign.quantize import cache

    if opts.list_only and opts.import_dir is None:
        t = Table("variant id", "cached")
        for vid, cached in res.planned:
            t.add_row(vid, "yes" if cached else "no")
        Console().print(t)
        return
    t = Table("variant id", "mean layer error", "seconds", "path")
    for s, p in res.made:
        rec = cache.read_record(p)
        err = rec.get("mean_error")
        t.add_row(s.variant_id, "n/a" if err is None else f"{err:.3e}", f"{rec.get('seconds', 0):.1f}", str(p))
    Console().print(t)


def register(app) -> None:
    bind(app, "quantize", QuantizeOptions, quantize, show,
         doc="Quantize a model with RTN/GPTQ/AWQ into cached variants (per-layer progress bar).")
