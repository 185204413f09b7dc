"""``codesign eval``: evaluate variants on the trust suite into the result store and print a table.

torch/transformers are imported inside the command, so ``codesign --help`` stays fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from codesign.config import ConfigError

_SHORT = re.compile(r"^(?P<method>[a-z0-9_]+)-w(?P<bits>\d+)g(?P<group>\d+|pc)(?P<sym>-sym)?$")


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
        m = _SHORT.match(tok)
        if tok == "dense":
            specs.append(VariantSpec(model=model))
        elif m:
            group = -1 if m["group"] == "pc" else int(m["group"])
            # Built through the catalogue so a short name gets exactly the id (calibration source,
            # sample counts) that `codesign quantize --catalogue` gives the same variant.
            from codesign.quantize import Catalogue

            specs += Catalogue(model=model, methods=[m["method"]], bits=[int(m["bits"])], group_sizes=[group],
                               sym=bool(m["sym"]), include_dense=False).variants()
        elif store is not None:
            try:
                specs.append(store.variant_spec(tok))
            except KeyError:
                raise ConfigError(
                    f"--variants: {tok!r} is not 'dense', a short name like rtn-w4g128 / gptq-w3gpc-sym, "
                    f"a catalogue file, or a variant id in {store.path}") from None
        else:
            raise ConfigError(f"--variants: cannot read {tok!r}")
    if not specs:
        raise ConfigError("--variants: no variants given (e.g. dense,rtn-w4g128 or a catalogue.yaml)")
    return specs


def _fmt(v: float | None) -> str:
    if v is None or v != v:
        return "n/a"
    return f"{v:.1f}"


def render_table(results: dict, short_names: dict[str, str], policy: str, mode: str):
    """A rich table: one row per variant, 'score (refusal %)' per dimension."""
    from rich.table import Table

    from codesign.evaluate.tasks import get_task

    tasks = list(next(iter(results.values())).keys()) if results else []
    table = Table(title=f"codesign eval — score 0-100 (refusal rate %) · policy={policy} · mode={mode}")
    table.add_column("variant", style="bold")
    for t in tasks:
        table.add_column(get_task(t).dimension, justify="right")
    for vid, per_task in results.items():
        cells = []
        for t in tasks:
            r = per_task[t]
            cells.append(f"{_fmt(r.get('score'))} ({100 * r.get('refusal_rate', 0.0):.0f}%)  n={r.get('n', 0)}")
        table.add_row(short_names.get(vid, vid), *cells)
    return table


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        model: str = typer.Option("smollm2-135m-instruct", "--model", "-m",
                                  help="Base model: smollm2-135m-instruct, tiny-llama, a local HF folder, a .gguf file."),
        variants: str = typer.Option("dense", "--variants", "-v",
                                     help="Catalogue YAML, or comma list of 'dense', short names (rtn-w4g128, "
                                          "gptq-w3gpc-sym) or variant ids stored in --store."),
        tasks: str = typer.Option("all", "--tasks", "-t",
                                  help="Comma list of tasks (mmlu,advglue,fairness,ethics,ood) or 'all'."),
        limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1,
                                            help="Items per task: a seeded subsample, an equal share per subtask."),
        seed: int = typer.Option(0, "--seed", help="Seed of the --limit subsample."),
        store_path: Path = typer.Option(Path("results.db"), "--store", help="SQLite result store (created if missing)."),
        mode: str = typer.Option("generate", "--mode",
                                 help="generate: greedy answers parsed to labels; loglik: rank label options by likelihood."),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir",
                                                help="Benchmark data folder (default: $CODESIGN_DATA or ../shared/data)."),
        policy: str = typer.Option("decodingtrust", "--policy",
                                   help="Refusal policy: decodingtrust (metrics over answered items) or strict "
                                        "(refusals count as wrong)."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Prompts per batch."),
        device: str = typer.Option("auto", "--device", help="auto (CUDA if present, else CPU), cpu or cuda."),
        prefill: str = typer.Option("auto", "--prefill",
                                    help="tree: a batch's prompts packed as one prefix tree per call (each "
                                         "distinct prefix once, no padding; fastest on CPU); rows: prompts one "
                                         "at a time through a prefix KV cache; batch: padded batches after "
                                         "their common prefix (GPU); auto: tree on CPU, batch on GPU."),
        dtype: str = typer.Option("float32", "--dtype", help="Model dtype: float32, bfloat16 or float16."),
        packed: bool = typer.Option(False, "--packed/--dequantized",
                                    help="Run quantized variants on packed kernels (torch's int4/int8 ops on CPU in "
                                         "bfloat16, tinygemm/Marlin on CUDA; dequantize-per-call otherwise)."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per task."),
    ) -> None:
        """Evaluate variants on MMLU and the DecodingTrust trust dimensions; print score and refusal rate."""
        from rich.console import Console

        from codesign.evaluate.generation import PREFILL_MODES
        from codesign.evaluate.metrics import check_policy
        from codesign.evaluate.runner import check_mode, evaluate_catalogue
        from codesign.evaluate.tasks import parse_task_list
        from codesign.paths import data_dir as resolve_data
        from codesign.store import ResultStore

        check_policy(policy)
        check_mode(mode)
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device: {device!r} is not allowed (allowed: ['auto', 'cpu', 'cuda'])")
        if prefill not in PREFILL_MODES:
            raise ConfigError(f"--prefill: {prefill!r} is not allowed (allowed: {list(PREFILL_MODES)})")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"--dtype: {dtype!r} is not allowed (allowed: ['float32', 'bfloat16', 'float16'])")
        task_list = parse_task_list(tasks)
        data = resolve_data(data_dir)
        with ResultStore(store_path) as store:
            specs = parse_variants(variants, model, store)
            results = evaluate_catalogue(specs, store, task_list, mode=mode, limit=limit, seed=seed, data_dir=data,
                                         batch_size=batch_size, progress=progress,
                                         device=None if device == "auto" else device, dtype=dtype, policy=policy,
                                         packed=packed, prefill=prefill)
            names = {s.variant_id: s.short_name for s in specs}
            Console().print(render_table(results, names, policy, mode))
            typer.echo(f"answers stored in {store_path}")
