"""``codesign explore``: run a co-design study (the product's main command).

With no arguments it runs the embedded default study (``configs/explore_default.yaml``):
SmolLM2-135M-Instruct, RTN/GPTQ/AWQ at 3/4/8 bits, a small seeded subsample per task in
log-likelihood mode, built-in accelerator specs, BoTorch qLogNEHVI against trust / latency /
memory, then the exhaustive reference front, a Pareto CSV + PNG, and the HTML report.

:func:`explore` is the command as a plain function over :class:`ExploreOptions` (what
``experiments/`` call); :func:`register` binds it to the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from codesign.commands import CommandOptions, bind, option


class ExploreOptions(CommandOptions):
    config: Path | None = option(None, "--config", "-c", help="Study config YAML (default: the embedded "
                                                               "configs/explore_default.yaml).")
    store: Path = option(Path("results.db"), "--store", help="Result store (SQLite): member answers are read from "
                                                             "and written to it, and every evaluated configuration "
                                                             "and the study's result are kept there.")
    study: str | None = option(None, "--study", help="Study name in the store (default: the config's `name`). "
                                                     "Re-running the same name with the same config resumes.")
    out: Path = option(Path("explore"), "--out", help="Output folder: pareto.csv, points.csv, hypervolume.csv, "
                                                      "pareto.png (+ report.html).")
    executor: Literal["inprocess", "pool", "ray"] = option(
        "inprocess", "--executor", help="Where on-demand member evaluations run: inprocess, pool (two local "
                                        "processes, one thread each) or ray.")
    ray_address: str | None = option(None, "--ray-address", help="Ray cluster address for --executor ray "
                                                                 "(default: start a local Ray).")
    methods: list[Literal["bo", "random", "nsga2", "exhaustive"]] | None = option(
        None, "--methods", help="Comma-separated search methods overriding the config: bo, random, nsga2, exhaustive.")
    seed: int | None = option(None, "--seed", help="Seed of the search (default: the config's seed).")
    data_dir: Path | None = option(None, "--data-dir", help="Benchmark data folder (default: $CODESIGN_DATA or "
                                                            "../shared/data).")
    report: bool = option(True, "--report/--no-report", help="Also write the HTML report.")
    progress: bool = option(True, "--progress/--no-progress", help="Show progress bars.")


@dataclass
class ExploreOutcome:
    """What :func:`explore` did: the study's stored result, its points, catalogue and files written."""

    result: Any  # codesign.records.StudyResult
    points: list
    specs: dict
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def explore(opts: ExploreOptions, console=None) -> ExploreOutcome:
    """Run (or resume) the study, store its result, write its outputs (and the report)."""
    import time

    from codesign.explore.config import DEFAULT_CONFIG, load_study_config
    from codesign.explore.executor import get_executor

    overrides = dict(methods=opts.methods, seed=opts.seed,
                     data_dir=str(opts.data_dir) if opts.data_dir is not None else None)
    cfg = load_study_config(opts.config, **overrides)
    source = str(opts.config or DEFAULT_CONFIG)
    ex = get_executor(opts.executor, opts.ray_address)
    t0 = time.time()
    try:
        return _explore(opts, cfg, source, ex, console, t0)
    finally:
        if hasattr(ex, "close"):
            ex.close()  # the pool's worker processes


def _explore(opts: ExploreOptions, cfg, source: str, ex, console, t0: float) -> ExploreOutcome:
    import time

    from codesign.explore.outputs import write_outputs
    from codesign.explore.study import budget_of, build_context, plan, run_study
    from codesign.store import ResultStore

    with ResultStore(opts.store) as rs:
        ctx = build_context(cfg, rs, name=opts.study, executor=ex, progress=opts.progress, source=source)
        if console is not None:
            sp = ctx.space
            cached = [m for m in sp.members if ctx.evaluator.is_cached(m)]
            console.print(f"[bold]study[/] {ctx.name!r} from {source}: {sp.n_members} members, "
                          f"{sp.n_discrete()} discrete configurations"
                          + (f" x {len(sp.knobs)} knobs" if sp.knobs else "")
                          + f"; objectives {', '.join(f'{o.direction} {o.name}' for o in cfg.objectives)}; "
                          f"methods {', '.join(cfg.methods)} with {budget_of(cfg)} evaluations each")
            console.print(f"{len(cached)}/{sp.n_members} members already evaluated in {opts.store}; the rest are "
                          "quantized and evaluated on demand")
            what, seconds = plan(ctx)
            console.print(f"plan: {what}. Roughly {_duration(seconds)} on a 2-core CPU.")
        result = run_study(ctx)
        files = write_outputs(rs, result, ctx.specs, opts.out)
        if opts.report:
            from codesign.report import write_report

            files.append(write_report(rs, ctx.name, opts.out, progress=opts.progress))
        points = rs.study_points(ctx.name)
    return ExploreOutcome(result, points, ctx.specs, files, time.time() - t0)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return "a minute or less"
    return f"{max(2, round(seconds / 60))} minutes"


def show(opts: ExploreOptions, outcome: ExploreOutcome) -> None:
    """The front and each search's final hypervolume, for the terminal."""
    from rich.console import Console

    from codesign.explore.results import describe

    console = Console(stderr=True)
    console.print(describe(outcome.result, outcome.points, outcome.specs))
    for h in outcome.result.final_hypervolume():
        extra = f", {100 * h.hv_fraction:.1f}% of the exhaustive front's" if h.hv_fraction is not None else ""
        console.print(f"{h.method} (seed {h.seed}): {h.n_evals} configurations, hypervolume {h.hv:.4g}{extra}")
    console.print(f"done in {outcome.seconds:.0f} s; wrote " + ", ".join(str(f) for f in outcome.files))


def register(app) -> None:
    def run(opts: ExploreOptions) -> ExploreOutcome:
        import typer
        from rich.console import Console

        console = Console(stderr=True)
        try:
            return explore(opts, console)
        except KeyboardInterrupt:
            console.print(f"interrupted: evaluated points are stored in {opts.store}; re-run the same command to resume")
            raise typer.Exit(130) from None

    bind(app, "explore", ExploreOptions, run, show,
         doc="Explore ensembles x schedules x accelerator knobs with multi-objective BO; write the Pareto front.")
