"""``codesign eval``: evaluate variants on the trust suite into the result store and print a table.

:func:`evaluate` is the command as a plain function over :class:`EvalOptions`; :func:`register`
binds it to the command line. torch/transformers are imported inside, so ``codesign --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from codesign.commands import Mode, Policy, ScoringOptions, bind, option
from codesign.config import ConfigError
from codesign.records import DEFAULT_PROTOCOL


def parse_variants(text: str, model: str, store=None) -> list:
    """``--variants``: a catalogue YAML/JSON path, or a comma list of ``dense``, short names such as
    ``rtn-w4g128`` / ``gptq-w3gpc-sym``, or variant ids already in the store."""
    from codesign.records import VariantSpec

    path = Path(text)
    if path.suffix in (".yaml", ".yml", ".json"):
        if not path.exists():
            raise ConfigError(f"--variants: catalogue file {path} not found")
        try:
            from codesign.quantize import Catalogue
        except ImportError as exc:  # quantization stage not installed
            raise ConfigError(f"--variants: reading catalogues needs codesign.quantize.Catalogue ({exc})") from exc
        from codesign.config import load_config

        return list(load_config(Catalogue, path).variants())
    specs = []
    for tok in [t.strip() for t in text.split(",") if t.strip()]:
        try:
            named = VariantSpec.parse(tok, model)
        except ValueError:
            named = None
        if named is not None and named.is_dense:
            specs.append(named)
        elif named is not None:
            # Built through the catalogue so a short name gets exactly the id (calibration source,
            # sample counts) that `codesign quantize --catalogue` gives the same variant.
            from codesign.config import validate_config
            from codesign.quantize import Catalogue

            cat = validate_config(Catalogue, dict(model=model, methods=[named.method], bits=[named.bits],
                                                  group_sizes=[named.group_size], sym=named.sym, include_dense=False),
                                  f"--variants {tok!r}")
            specs += cat.variants()
        elif store is not None:
            try:
                specs.append(store.variant_spec(tok))
            except KeyError:
                raise ConfigError(
                    f"--variants: {tok!r} is not 'dense', a short name like rtn-w4g128 / gptq-w3gpc-sym, "
                    f"a catalogue file, or a variant id in {store.path}") from None
        else:
            raise ConfigError(f"--variants: {tok!r} is not 'dense', a short name like rtn-w4g128 / gptq-w3gpc-sym or "
                              "a catalogue file (variant ids are looked up in --store, which does not exist yet)")
    if not specs:
        raise ConfigError("--variants: no variants given (e.g. dense,rtn-w4g128 or a catalogue.yaml)")
    return specs


def _fmt(v: float | None) -> str:
    if v is None or v != v:
        return "n/a"
    return f"{v:.1f}"


def render_table(results: dict, short_names: dict[str, str], policy: str, mode: str, protocol: str | None = None):
    """A rich table: one row per variant, 'score (refusal %)' per dimension."""
    from rich.table import Table

    from codesign.evaluate.tasks import get_task

    tasks = list(next(iter(results.values())).keys()) if results else []
    title = f"codesign eval — score 0-100 (refusal rate %) · protocol={protocol} · policy={policy} · mode={mode}"
    if protocol == "decodingtrust" and mode == "loglik":
        title += " (codesign's log-likelihood approximation: DecodingTrust generates)"
    table = Table(title=title)
    table.add_column("variant", style="bold")
    for t in tasks:
        table.add_column(get_task(t, protocol=protocol).dimension, justify="right")
    for vid, per_task in results.items():
        cells = []
        for t in tasks:
            r = per_task[t]
            cells.append(f"{_fmt(r.get('score'))} ({100 * r.get('refusal_rate', 0.0):.0f}%)  n={r.get('n', 0)}")
        table.add_row(short_names.get(vid, vid), *cells)
    return table


class EvalOptions(ScoringOptions):
    model: str = option("smollm2-135m-instruct", "--model", "-m", help="Base model: smollm2-135m-instruct, "
                                                                       "tiny-llama, a local HF folder, a .gguf file.")
    variants: str = option("dense", "--variants", "-v", help="Catalogue YAML, or comma list of 'dense', short names "
                                                             "(rtn-w4g128, gptq-w3gpc-sym) or variant ids stored in "
                                                             "--store.")
    tasks: str = option("all", "--tasks", "-t", help="Comma list of tasks (mmlu,advglue,fairness,ethics,ood) or 'all'.")
    limit: int | None = option(None, "--limit", "-n", help="Items per task: a seeded subsample, an equal share per "
                                                           "subtask.", ge=1)
    seed: int = option(0, "--seed", help="Seed of the --limit subsample.")
    store: Path = option(Path("results.db"), "--store", help="SQLite result store (created if missing).")
    mode: Mode = option("generate", "--mode", help="generate: greedy answers parsed to labels; loglik: rank label "
                                                   "options by likelihood.")
    data_dir: Path | None = option(None, "--data-dir", help="Benchmark data folder (default: $CODESIGN_DATA or "
                                                            "../shared/data).")
    protocol: str = option(DEFAULT_PROTOCOL, "--protocol", help="Evaluation protocol: decodingtrust (DecodingTrust's "
                                                                "prompts, budgets, parsing and formulas, as the "
                                                                "study) or codesign (codesign's prompts, stricter "
                                                                "parser).")
    policy: Policy | None = option(None, "--policy", help="Scoring policy of the protocol: decodingtrust (its only "
                                                          "one); codesign: answered (metrics over items not refused, "
                                                          "the default) or strict (refusals count as wrong).")
    batch_size: int = option(16, "--batch-size", help="Prompts per batch.", ge=1)
    device: Literal["auto", "cpu", "cuda"] = option("auto", "--device", help="auto (CUDA if present, else CPU), cpu "
                                                                             "or cuda.")
    prefill: str = option("auto", "--prefill", help="tree: a batch's prompts packed as one prefix tree per call "
                                                    "(each distinct prefix once, no padding; fastest on CPU); rows: "
                                                    "prompts one at a time through a prefix KV cache; batch: padded "
                                                    "batches after their common prefix (GPU); auto: tree on CPU, "
                                                    "batch on GPU.")
    dtype: Literal["float32", "bfloat16", "float16"] = option("float32", "--dtype", help="Model dtype: float32, "
                                                                                         "bfloat16 or float16.")
    packed: bool = option(False, "--packed/--dequantized", help="Run quantized variants on packed kernels "
                                                                "(torch's int4/int8 ops on CPU in bfloat16, "
                                                                "tinygemm/Marlin on CUDA; dequantize-per-call "
                                                                "otherwise).")
    progress: bool = option(True, "--progress/--no-progress", help="Show a progress bar per task.")
    executor: Literal["inprocess", "ray"] = option("inprocess", "--executor", help="Where variants without stored "
                                                                                    "answers are evaluated: "
                                                                                    "inprocess, or ray (one task "
                                                                                    "per variant; this process "
                                                                                    "alone writes the store).")
    ray_address: str | None = option(None, "--ray-address", help="Ray cluster address for --executor ray "
                                                                 "(default: start a local Ray).")

    @field_validator("prefill")
    @classmethod
    def _prefill(cls, v: str) -> str:
        from codesign.evaluate.generation import check_prefill

        return check_prefill(v)


@dataclass
class EvalResult:
    """What :func:`evaluate` scored: variant id -> task -> score dict, and the variants' short names."""

    scores: dict
    names: dict[str, str]


def evaluate(opts: EvalOptions) -> EvalResult:
    """Evaluate the variants on the tasks into the store (resuming what is stored) and score them."""
    from codesign.evaluate.runner import evaluate_catalogue, prepare_tasks
    from codesign.evaluate.tasks import parse_task_list
    from codesign.paths import data_dir as resolve_data
    from codesign.store import ResultStore

    task_list = parse_task_list(opts.tasks, opts.protocol)
    specs = _variants(opts)  # names, data and the store are checked before the store is written or a model loaded
    data = resolve_data(opts.data_dir)
    prepared = prepare_tasks(task_list, data, opts.limit, opts.seed, opts.protocol)  # bad data files fail here
    executor = None
    if opts.executor != "inprocess":  # a bad --ray-address fails before the store is created
        from codesign.explore.executor import get_executor

        executor = get_executor(opts.executor, opts.ray_address)
    with ResultStore(opts.store) as store:
        if executor is not None:  # variants without stored answers first, then scored below
            run_on_executor(opts, executor, specs, store, prepared, data)
        results = evaluate_catalogue(specs, store, task_list, mode=opts.mode, limit=opts.limit, seed=opts.seed,
                                     data_dir=data, batch_size=opts.batch_size, progress=opts.progress,
                                     device=None if opts.device == "auto" else opts.device, dtype=opts.dtype,
                                     policy=opts.policy, packed=opts.packed, prefill=opts.prefill,
                                     protocol=opts.protocol, prepared=prepared)
    return EvalResult(results, {s.variant_id: s.short_name for s in specs})


def _variants(opts: EvalOptions) -> list:
    """``--variants`` resolved before anything is written: variant ids are looked up in the store
    opened read-only (a new or empty store file has none)."""
    from codesign.store import ResultStore, check_store_file

    check_store_file(opts.store, read_only=False)
    if not (opts.store.is_file() and opts.store.stat().st_size > 0):
        return parse_variants(opts.variants, opts.model)
    with ResultStore(opts.store, read_only=True) as store:
        return parse_variants(opts.variants, opts.model, store)


def run_on_executor(opts: EvalOptions, executor, specs: list, store, prepared: dict, data) -> None:
    """Evaluate the variants that lack answers as jobs of ``executor`` (Ray: workers return rows,
    this process writes them, see :mod:`codesign.explore.executor`)."""
    from codesign.explore.executor import MemberJob

    missing = [s for s in specs if any({it.item_id for it in items} - store.done_item_ids(
        s.variant_id, name, opts.mode, task.protocol) for name, (task, items) in prepared.items())]
    if not missing:
        return
    device = opts.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    jobs = [MemberJob(s.to_dict(), tuple(prepared), opts.mode, opts.limit, opts.seed, str(data), opts.progress,
                      (), opts.protocol, opts.batch_size, device, opts.dtype, opts.packed, opts.prefill)
            for s in missing]
    executor.run(jobs, store)


def show(opts: EvalOptions, res: EvalResult) -> None:
    import typer
    from rich.console import Console

    Console().print(render_table(res.scores, res.names, opts.policy, opts.mode, opts.protocol))
    typer.echo(f"answers stored in {opts.store}")


def register(app) -> None:
    bind(app, "eval", EvalOptions, evaluate, show,
         doc="Evaluate variants on MMLU and the DecodingTrust trust dimensions; print score and refusal rate.")
