"""Reproduce the trust study end to end (issue 9) and write its tables and figures here.

    python experiments/trust_study/run.py [--store runs/trust_study.db] [--config config.yaml]
    python experiments/trust_study/run.py --store runs/trust_study.db --tables-only   # regenerate, no model

A full run (resumable: re-run the same command after an interruption):

1. quantizes the catalogue (RTN/GPTQ/AWQ x 2/3/4/8 bits) and evaluates every member and the dense
   model on the seeded subsample (log-likelihood mode), then runs the study through ``codesign
   explore``'s own function (BoTorch and random search against the exhaustive front on the H100 and
   the multi-precision accelerator), which stores the study's result in the store;
2. answers a smaller seeded subsample in free generation, to measure refusals.

Then, reading the store only (``--tables-only`` does just this, and fails if the store lacks a
part; it never loads a model):

3. per-variant scores and refusal rates per dimension (``variants.csv``);
4. precision ensembles vs their best single member and vs dense, bootstrap 95% CIs over items
   (``ensembles.csv``; fairness is reported but not compared, as in the study);
5. the Pareto front per accelerator (``recommendations.csv``) and explore's files (``explore/``),
   from the study's stored result;
6. the HTML report (``report/``), ``findings.json`` (``findings.py``), ``summary.json`` — whose
   hypervolumes and evaluation counts are the stored result's, the same records the report's
   optimizer table shows (checked: a mismatch is an error) — and ``FINDINGS.md``, every number of the
   study in tables and sentences (``findings_md.py``), which README.md points to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from findings import findings  # noqa: E402
from findings_md import write_findings_md  # noqa: E402


def study_ensembles(specs) -> list[list]:
    """The study's ensembles: per method {3,4,8}, {2,3,4} and {2,4,8}, and the three methods at 4 bits."""
    by = {(s.method, s.bits): s for s in specs}
    out = []
    for method in ("rtn", "gptq", "awq"):
        for bits in ((3, 4, 8), (2, 3, 4), (2, 4, 8)):
            if all((method, b) in by for b in bits):
                out.append([by[(method, b)] for b in bits])
    if all((m, 4) in by for m in ("rtn", "gptq", "awq")):
        out.append([by[(m, 4)] for m in ("rtn", "gptq", "awq")])
    return out


def run(cfg, config_path: Path, store_path: Path, out: Path, generate_limit: int) -> None:
    """The computing part: every member evaluated, the study explored (result stored), free generation."""
    from codesign.evaluate import evaluate_catalogue, get_task
    from codesign.explore.cli import ExploreOptions, explore
    from codesign.explore.study import build_context
    from codesign.store import ResultStore

    with ResultStore(store_path) as store:
        # every member up front, so the per-variant tables cover the whole catalogue
        ctx = build_context(cfg, store, progress=True, source=str(config_path))
        missing = [m for m in ctx.space.members if not ctx.evaluator.is_cached(m)]
        if missing:
            ctx.evaluator.ensure_members(missing)
    explore(ExploreOptions(config=config_path, store=store_path, out=out / "explore", report=False))
    if generate_limit:
        # log-likelihood ranking cannot refuse (except choosing "I don't know"); free generation shows how
        # often each precision abstains or answers off-format, on a smaller seeded subsample
        with ResultStore(store_path) as store:
            tasks = [get_task(t, subtasks=cfg.subtasks.get(t), protocol=cfg.protocol) for t in cfg.tasks]
            evaluate_catalogue(list(ctx.members), store, tasks, mode="generate", limit=generate_limit, seed=cfg.seed,
                               batch_size=8, progress=True)


def variant_table(store, cfg, specs, item_ids) -> pd.DataFrame:
    """Score, refusal and invalid rate of every variant on every task, on exactly the study's subsample."""
    from codesign.evaluate import get_task
    from codesign.evaluate.scoring import score_items

    rows = []
    for s in specs:
        for t in cfg.tasks:
            r = score_items(store, s.variant_id, t, item_ids[t], cfg.mode, cfg.policy, cfg.protocol)
            rows.append({"variant": s.short_name, "method": s.method, "bits": s.bits, "task": t,
                         "dimension": get_task(t, protocol=cfg.protocol).dimension, "score": r["score"], "refusal_rate": r["refusal_rate"],
                         "invalid_rate": r["invalid_rate"], "n": r["n"]})
    return pd.DataFrame(rows)


def ensemble_table(store, cfg, specs, variants: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """Each study ensemble per task beside its best member and dense (comparisons blank where the task
    is not compared with members)."""
    from codesign.vote import score_ensemble

    dense = variants[variants.variant == "dense"].set_index("task")["score"]
    rows = []
    for members in study_ensembles(specs):
        df = score_ensemble(store, [m.variant_id for m in members], list(cfg.tasks), cfg.mode, cfg.policy,
                            n_boot=n_boot, seed=cfg.seed, protocol=cfg.protocol)
        for r in df.itertuples():
            compared = bool(r.compared_with_members)
            rows.append({
                "ensemble": r.ensemble, "task": r.task, "dimension": r.dimension, "n": r.n, "score": r.score,
                "ci_low": r.ci_low, "ci_high": r.ci_high, "refusal_rate": r.refusal_rate,
                "best_member": store.variant_spec(r.best_member).short_name if compared else None,
                "best_member_score": r.best_member_score, "delta_vs_best": r.delta_vs_best,
                "delta_ci_low": r.delta_ci_low, "delta_ci_high": r.delta_ci_high,
                "dense_score": float(dense[r.task]) if compared and r.task in dense else np.nan,
            })
    return pd.DataFrame(rows)


def front_table(store, result, cfg, specs) -> pd.DataFrame:
    """The study's stored Pareto front on each accelerator."""
    from codesign.explore.results import front_frame

    points = store.study_points(result.study)
    by_id = {s.variant_id: s for s in specs}
    scopes = cfg.specs if len(cfg.specs) > 1 else [None]
    frames = [front_frame(result, points, by_id, s) for s in scopes]
    df = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) \
        else pd.DataFrame(columns=["spec", "schedule", "ensemble"])
    return df[["spec", "schedule", "ensemble"] + [n for n in result.objective_names if n in df]]


def refusal_table(store, cfg, specs) -> pd.DataFrame:
    """Free-generation scores, refusal and invalid rates (empty when no generate answers are stored)."""
    from codesign.evaluate.scoring import variant_scores

    rows = []
    for s in specs:
        df = variant_scores(store, s.variant_id, list(cfg.tasks), "generate", cfg.policy, cfg.protocol)
        for r in df.itertuples():
            rows.append({"variant": s.short_name, "method": s.method, "bits": s.bits, "task": r.task,
                         "score": r.score, "refusal_rate": r.refusal_rate, "invalid_rate": r.invalid_rate, "n": r.n})
    return pd.DataFrame(rows)


def write_tables(cfg, config_path: Path, store_path: Path, out: Path, n_boot: int) -> dict:
    """Every output file, from the store alone (no model); returns ``summary.json``'s content."""
    from codesign.config import ConfigError
    from codesign.explore.outputs import write_outputs
    from codesign.explore.results import hypervolume_frame
    from codesign.explore.study import study_item_ids
    from codesign.report import write_report
    from codesign.store import ResultStore

    if not store_path.exists():
        raise ConfigError(f"--store: {store_path} does not exist (run without --tables-only first)")
    specs = list(dict.fromkeys(cfg.catalogue_obj(str(config_path)).variants()))
    item_ids = study_item_ids(cfg, cfg.tasks)
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore(store_path, read_only=True) as store:  # the tables only read the store
        result = store.study_result(cfg.name)
        if result is None:
            raise ConfigError(f"{store_path}: study {cfg.name!r} has no stored result (run without --tables-only)")
        write_outputs(store, result, {s.variant_id: s for s in specs}, out / "explore")
        variants = variant_table(store, cfg, specs, item_ids)
        variants.to_csv(out / "variants.csv", index=False, float_format="%.4f")
        ensemble_table(store, cfg, specs, variants, n_boot).to_csv(out / "ensembles.csv", index=False,
                                                                    float_format="%.4f")
        front_table(store, result, cfg, specs).to_csv(out / "recommendations.csv", index=False, float_format="%.5g")
        gen = refusal_table(store, cfg, specs)
        if not gen.empty:
            gen.to_csv(out / "refusals_generate.csv", index=False, float_format="%.4f")
        html = write_report(store, cfg.name, out / "report", progress=True)
        findings(store, specs, item_ids, cfg.mode, out, trust_tasks=cfg.trust_tasks(), protocol=cfg.protocol)
        runs = store.eval_runs()
        points = store.study_points(cfg.name)
    methods = sorted({p.method for p in points})
    summary = {
        "config": config_path.name, "model": cfg.model, "mode": cfg.mode, "limit_per_task": cfg.limit,
        "seed": cfg.seed, "n_variants": len(specs), "trust_dimensions": cfg.trust_tasks(),
        "points_per_method": {m: sum(p.method == m for p in points) for m in methods},
        "evaluation_wall_s": round(sum(r.wall_s for r in runs), 1),
        "hypervolume": hypervolume_frame(result, final=True).to_dict(orient="records"),
        "report": str(Path(html).relative_to(out)) if Path(html).is_relative_to(out) else str(html),
    }
    check_counts(out / "report" / "optimizer_hv.csv", summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_findings_md(out)
    return summary


def check_counts(optimizer_csv: Path, summary: dict) -> None:
    """The report's evaluation counts per optimizer must equal the stored result's (``summary``): both
    read the same records, so a mismatch is a bug (the pre-issue-17 report said 936 exhaustive and 93
    random evaluations against the result's 2,938 and 96)."""
    from codesign.config import ConfigError

    report = pd.read_csv(optimizer_csv).set_index("method")["points evaluated (mean)"]
    final = pd.DataFrame(summary["hypervolume"]).groupby("method")["n_evals"].mean()
    mismatch = {m: (report.get(m), n) for m, n in final.items() if report.get(m) != n}
    if mismatch:
        raise ConfigError(f"{optimizer_csv}: evaluation counts (report, stored result) differ: {mismatch}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=HERE / "config.yaml")
    ap.add_argument("--store", type=Path, default=Path("runs/trust_study.db"))
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--generate-limit", type=int, default=10,
                    help="items per task answered in free generation, to measure refusals (0 = skip)")
    ap.add_argument("--tables-only", action="store_true",
                    help="regenerate every output from the store, running no model")
    args = ap.parse_args(argv)

    from codesign.config import ConfigError
    from codesign.explore.config import load_study_config

    try:
        cfg = load_study_config(args.config)
        if not args.tables_only:
            run(cfg, args.config, args.store, args.out, args.generate_limit)
        summary = write_tables(cfg, args.config, args.store, args.out, args.n_boot)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(pd.read_csv(args.out / "variants.csv").pivot_table(index="variant", columns="task", values="score")
          .round(1).to_string())
    print(json.dumps(summary["hypervolume"], indent=1))


if __name__ == "__main__":
    main()
