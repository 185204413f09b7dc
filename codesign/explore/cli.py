"""``codesign explore``: run a co-design study (the product's main command).

With no arguments it runs the embedded default study (``configs/explore_default.yaml``):
SmolLM2-135M-Instruct, RTN/GPTQ/AWQ at 3/4/8 bits, a small seeded subsample per task in
log-likelihood mode, built-in accelerator specs, BoTorch qLogNEHVI against trust / latency /
memory, then the exhaustive reference front, a Pareto CSV + PNG, and the HTML report when the
report stage is installed.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("explore")
    def explore(
        config: Path = typer.Option(None, "--config", "-c", help="Study config YAML (default: the embedded "
                                                                  "configs/explore_default.yaml)."),
        store: Path = typer.Option(Path("results.db"), "--store", help="Result store (SQLite): member answers are "
                                                                        "read from and written to it, and every "
                                                                        "evaluated configuration is kept there."),
        study: str = typer.Option(None, "--study", help="Study name in the store (default: the config's `name`). "
                                                        "Re-running the same name with the same config resumes."),
        out: Path = typer.Option(Path("explore"), "--out", help="Output folder: pareto.csv, points.csv, "
                                                                 "hypervolume.csv, pareto.png (+ report.html)."),
        executor: str = typer.Option("inprocess", "--executor", help="Where on-demand member evaluations run: "
                                                                      "inprocess or ray."),
        ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address for --executor ray "
                                                                    "(default: start a local Ray)."),
        methods: str = typer.Option(None, "--methods", help="Comma-separated search methods overriding the "
                                                            "config: bo, random, nsga2, exhaustive."),
        seed: int = typer.Option(None, "--seed", help="Seed of the search (default: the config's seed)."),
        data_dir: Path = typer.Option(None, "--data-dir", help="Benchmark data folder (default: $CODESIGN_DATA or "
                                                               "../shared/data)."),
        report: bool = typer.Option(True, "--report/--no-report", help="Also write the HTML report "
                                                                      "(when codesign.report is available)."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    ) -> None:
        """Explore ensembles x schedules x accelerator knobs with multi-objective BO; write the Pareto front."""
        import time

        from rich.console import Console

        from codesign.explore.config import DEFAULT_CONFIG, load_study_config
        from codesign.explore.executor import get_executor
        from codesign.explore.outputs import describe_front, write_outputs
        from codesign.explore.study import budget_of, build_context, run_study
        from codesign.store import ResultStore

        console = Console(stderr=True)
        overrides = {}
        if methods:
            overrides["methods"] = [m.strip() for m in methods.split(",") if m.strip()]
        if data_dir is not None:
            overrides["data_dir"] = str(data_dir)
        if seed is not None:
            overrides["seed"] = seed
        cfg = load_study_config(config, **overrides)
        source = str(config or DEFAULT_CONFIG)
        ex = get_executor(executor, ray_address)
        t0 = time.time()
        with ResultStore(store) as rs:
            ctx = build_context(cfg, rs, name=study, executor=ex, progress=progress, source=source)
            sp = ctx.space
            console.print(f"[bold]study[/] {ctx.name!r} from {source}: {sp.n_members} members, "
                          f"{sp.n_discrete()} discrete configurations"
                          + (f" x {len(sp.knobs)} knobs" if sp.knobs else "")
                          + f"; objectives {', '.join(f'{o.direction} {o.name}' for o in cfg.objectives)}; "
                          f"methods {', '.join(cfg.methods)} with {budget_of(cfg)} evaluations each")
            cached = [m for m in sp.members if ctx.evaluator.is_cached(m)]
            console.print(f"{len(cached)}/{sp.n_members} members already evaluated in {store}; the rest are "
                          "quantized and evaluated on demand")
            try:
                result = run_study(ctx)
            except KeyboardInterrupt:
                console.print(f"interrupted: evaluated points are stored in {store}; re-run the same command "
                              "to resume")
                raise typer.Exit(130)
            files = write_outputs(ctx, result, out)
            if report:
                from codesign.report import write_report

                files.append(write_report(rs, ctx.name, out, cfg.specs[0], mode=cfg.mode, policy=cfg.policy,
                                          progress=progress))
        console.print(describe_front(ctx, result))
        for _, r in result.summary.iterrows():
            extra = f", {100 * r['hv_fraction']:.1f}% of the exhaustive front's" if "hv_fraction" in r and \
                r.get("hv_fraction") == r.get("hv_fraction") else ""
            console.print(f"{r['method']} (seed {r['seed']}): {r['n_evals']} configurations, "
                          f"hypervolume {r['hv']:.4g}{extra}")
        console.print(f"done in {time.time() - t0:.0f} s; wrote " + ", ".join(str(f) for f in files))
