"""Exploration benchmark: BO (qLogNEHVI) vs random (Sobol) vs NSGA-II on a stored catalogue.

The catalogue is synthetic but realistic (codesign.explore.synthetic: real benchmark items, simulated
member answers with shared item difficulty, real SQLite store, real precision-ensemble voting, real
task scoring, real analytical hardware model): RTN/GPTQ/AWQ x 3/4/8 bits of SmolLM2-135M, every
member evaluated once. The space is every ensemble of 1-3 members x {sequential, parallel} x
{h100-sxm, mpu-hypo}; objectives: max trust, min time per output token, min peak memory.

For each of ``--seeds`` seeds each method gets the same budget (``--budget-frac`` of the exhaustive
evaluation count, distinct configurations) and the same initial design; we record the hypervolume
of the feasible points found after every evaluation, relative to the exhaustive front's
(one reference point for everything: the exhaustive front's nadir minus 10% of its range).

Target (issue 7): BO reaches >= 95% of the exhaustive hypervolume within 15% of the exhaustive
evaluation count, and beats random at equal budget.

    python experiments/explore_bench/bench.py            # 10 seeds, writes results.csv/summary.json/hv.png here
    python experiments/explore_bench/bench.py --seeds 2  # quick look
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


#: The two catalogues benchmarked: explore's default study and the trust study's (experiments/trust_study).
CATALOGUES = {
    "default": dict(methods=("rtn", "gptq", "awq"), bits=(3, 4, 8), dense=False,
                    schedules=["sequential", "parallel"]),
    "trust-study": dict(methods=("rtn", "gptq", "awq"), bits=(2, 3, 4, 8), dense=True,
                        schedules=["sequential", "parallel", "batched", "sliced"]),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalogue", choices=sorted(CATALOGUES), default="default")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget-frac", type=float, default=0.10)
    ap.add_argument("--q", type=int, default=4, help="BO batch size")
    ap.add_argument("--n-init", type=int, default=8)
    ap.add_argument("--limit", type=int, default=48, help="items per task in the synthetic catalogue")
    ap.add_argument("--methods", default="bo,random,nsga2")
    ap.add_argument("--no-exact-costs", action="store_true",
                    help="BO models the cost objectives with its GP too (optimizer.exact_costs: false)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: results/<catalogue> here)")
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (shards: run seeds in several processes)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="summarise the results.csv + shard.json of these shard folders into --out (no runs)")
    ap.add_argument("--skip-adaptive", action="store_true", help="leave out the adaptive item budget comparison")
    ap.add_argument("--adaptive-only", action="store_true",
                    help="only compare the adaptive item budget with the fixed-limit run (no searches)")
    ap.add_argument("--adaptive-tolerance", type=float, default=1.0,
                    help="indifference zone in trust points (0: exact fronts, compared as sets)")
    ap.add_argument("--adaptive-confidence", type=float, default=0.90,
                    help="the front is stable at this confidence (contenders: P(front) or coverage below it)")
    ap.add_argument("--adaptive-start", type=int, default=8, help="items per task each member starts with")
    ap.add_argument("--adaptive-step", type=int, default=4, help="items per task added per round")
    ap.add_argument("--adaptive-patience", type=int, default=2,
                    help="rounds the adaptive run's front must stay unchanged before it stops")
    args = ap.parse_args(argv)
    args.out = args.out or HERE / "results" / args.catalogue
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        return merge(args)

    from dataclasses import asdict

    import pandas as pd

    from codesign.explore.config import StudyConfig
    from codesign.explore.results import hypervolume_steps, maximised
    from codesign.explore.study import build_context, run_method
    from codesign.explore.synthetic import fill_synthetic_store, synthetic_catalogue
    from codesign.pareto import hypervolume
    from codesign.store import ResultStore

    tasks = ["advglue", "ethics", "ood"]  # the trust dimensions (fairness and MMLU are not in trust)
    cat = CATALOGUES[args.catalogue]
    tmp = Path(tempfile.mkdtemp(prefix="explore_bench_"))
    store = ResultStore(tmp / "bench.db")
    members = synthetic_catalogue(methods=cat["methods"], bits=cat["bits"], include_dense=cat["dense"])
    t0 = time.time()
    fill_synthetic_store(store, members, tasks, limit=args.limit, seed=0)
    cfg = StudyConfig.model_validate(dict(
        name="bench", catalogue={"methods": list(cat["methods"]), "bits": list(cat["bits"]),
                                 "include_dense": cat["dense"]}, tasks=tasks,
        items="stored", objectives=["trust", "tpot_ms", "peak_memory_gb"], specs=["h100-sxm", "mpu-hypo"],
        schedules=cat["schedules"], max_members=3,
        optimizer={"q": args.q, "n_init": args.n_init, "iterations": 0,
                   "exact_costs": not args.no_exact_costs}))
    ctx = build_context(cfg, store, members=members, progress=False)
    store.create_study("bench", {"bench": True})
    n_space = ctx.space.n_discrete()
    print(f"catalogue: {len(members)} members x {args.limit} items x {len(tasks)} tasks "
          f"(stored in {time.time() - t0:.1f} s); space: {n_space} configurations")

    t0 = time.time()
    ex = run_method(ctx, "exhaustive", 0)
    t_ex = time.time() - t0
    Y = maximised(ex, ctx.objectives)
    feas = np.array([p.feasible for p in ex], dtype=bool)
    from codesign.explore.bo import infer_ref_point

    ref = infer_ref_point(Y[feas])
    hv_ex = hypervolume(Y[feas], ref)
    budget = int(math.floor(args.budget_frac * len(ex)))
    print(f"exhaustive: {len(ex)} evaluations in {t_ex:.1f} s, hypervolume {hv_ex:.6g}; budget per method: "
          f"{budget} ({100 * budget / len(ex):.1f}%)")

    if not args.skip_adaptive:
        adaptive = compare_adaptive(ctx, ex, args)
        (args.out / "adaptive.json").write_text(json.dumps(adaptive, indent=2))
    if args.adaptive_only:
        store.close()
        return 0

    methods = [m.strip() for m in args.methods.split(",")]
    timing: dict[str, list[float]] = {m: [] for m in methods}
    meta = {"space": n_space, "exhaustive_evals": len(ex), "exhaustive_hv": hv_ex, "budget": budget,
            "ref_point_max_space": ref.tolist(), "methods": methods, "timing": timing}
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        for m in methods:
            t = time.time()
            run_method(ctx, m, seed, budget=budget)
            timing[m].append(time.time() - t)
        print(f"seed {seed}: " + ", ".join(f"{m} {timing[m][-1]:.1f}s" for m in methods), flush=True)
        # the study's own trace (explore.results), on the exhaustive front's reference point; written
        # after every seed so an interrupted run keeps what it finished
        pts = [p for p in store.study_points("bench") if p.method != "exhaustive"]
        hv = pd.DataFrame([asdict(h) for h in hypervolume_steps(pts, maximised(pts, ctx.objectives), ref, hv_ex)])
        hv.to_csv(args.out / "results.csv", index=False)
        (args.out / "shard.json").write_text(json.dumps(meta, indent=2))
    store.close()
    return write_summary(hv, meta, args)


def merge(args) -> int:
    """Summarise shards (each a folder with results.csv and shard.json from the same catalogue)."""
    import pandas as pd

    metas = [json.loads((d / "shard.json").read_text()) for d in args.merge]
    hv = pd.concat([pd.read_csv(d / "results.csv") for d in args.merge], ignore_index=True)
    meta = dict(metas[0])
    meta["timing"] = {m: [t for x in metas for t in x["timing"].get(m, [])] for m in meta["methods"]}
    for x in metas[1:]:
        if x["budget"] != meta["budget"] or abs(x["exhaustive_hv"] - meta["exhaustive_hv"]) > 1e-12:
            raise SystemExit(f"error: shards differ in budget or exhaustive front: {args.merge}")
    hv.to_csv(args.out / "results.csv", index=False)
    args.seeds = int(hv["seed"].nunique())
    return write_summary(hv, meta, args)


def write_summary(hv, meta: dict, args) -> int:
    """summary.json, hv.png and the side-by-side table from the hypervolume traces of every run."""
    methods, timing, budget = meta["methods"], meta["timing"], meta["budget"]
    n_ex, hv_ex, n_space = meta["exhaustive_evals"], meta["exhaustive_hv"], meta["space"]
    ref = np.array(meta["ref_point_max_space"])
    ex = range(n_ex)
    args.seeds = int(hv["seed"].nunique())
    # a method may stop before the budget (NSGA-II whose population only revisits evaluated
    # configurations): its final value is its last one
    final = hv[hv["n_evals"] <= budget].sort_values("n_evals").groupby(["method", "seed"]).tail(1)
    summary = {"space": n_space, "exhaustive_evals": len(ex), "exhaustive_hv": hv_ex, "budget": budget,
               "budget_fraction": budget / len(ex), "seeds": args.seeds, "ref_point_max_space": ref.tolist(),
               "objectives": ["max trust", "min tpot_ms", "min peak_memory_gb"], "methods": {}}
    for m in methods:
        f = final[final["method"] == m]["hv_fraction"].to_numpy()
        first95 = []
        for _, g in hv[hv["method"] == m].groupby("seed"):
            hit = g[g["hv_fraction"] >= 0.95]["n_evals"]
            first95.append(int(hit.min()) if len(hit) else None)
        summary["methods"][m] = {
            "hv_fraction_mean": float(f.mean()), "hv_fraction_std": float(f.std()), "hv_fraction_min": float(f.min()),
            "seeds_reaching_95pct": int((f >= 0.95).sum()),
            "evals_to_95pct_median": (float(np.median([x for x in first95 if x is not None]))
                                      if any(x is not None for x in first95) else None),
            "wall_s_per_run_mean": float(np.mean(timing[m]))}
    if "bo" in methods and "random" in methods:
        # align on seed: the two selections come from different rows of `final` (different indexes)
        b, r = final[final["method"] == "bo"].set_index("seed")["hv"].align(
            final[final["method"] == "random"].set_index("seed")["hv"], join="inner")
        summary["bo_beats_random_seeds"] = int((b > r).sum())
        summary["bo_over_random_hv_ratio_mean"] = float((b / r).mean())
    bo = summary["methods"].get("bo", {})
    summary["target_met"] = bool(bo and bo["hv_fraction_mean"] >= 0.95 and
                                 summary.get("bo_beats_random_seeds", 0) > args.seeds / 2)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m in methods:
        g = hv[hv["method"] == m].groupby("n_evals")["hv_fraction"]
        mean, lo, hi = g.mean(), g.quantile(0.1), g.quantile(0.9)
        axes[0].plot(mean.index, mean.values, label=m)
        axes[0].fill_between(mean.index, lo.values, hi.values, alpha=0.2)
        d = hv[hv["method"] == m].groupby("n_evals")["log_hv_diff"].mean()
        axes[1].plot(d.index, d.values, label=m)
    axes[0].axhline(0.95, c="k", ls="--", lw=1, label="95% of exhaustive")
    axes[0].set_xlabel("configurations evaluated")
    axes[0].set_ylabel("HV / exhaustive HV (mean, 10-90% band)")
    axes[0].set_title(f"{len(ex)} configurations; budget {budget} ({100 * budget / len(ex):.0f}%)")
    axes[0].legend()
    axes[1].set_xlabel("configurations evaluated")
    axes[1].set_ylabel("log10(HV_exhaustive - HV)")
    axes[1].set_title("log hypervolume difference (mean over seeds)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(args.out / "hv.png", dpi=120)

    print(f"\n{'method':8s} {'HV/exhaustive at ' + str(budget) + ' evals':>28s} {'seeds >=95%':>12s} "
          f"{'median evals to 95%':>20s} {'s/run':>7s}")
    for m, s in summary["methods"].items():
        print(f"{m:8s} {s['hv_fraction_mean']:>20.4f} ± {s['hv_fraction_std']:.4f} "
              f"{s['seeds_reaching_95pct']:>9d}/{args.seeds} {str(s['evals_to_95pct_median']):>20s} "
              f"{s['wall_s_per_run_mean']:>7.1f}")
    if "bo_beats_random_seeds" in summary:
        print(f"BO beats random on {summary['bo_beats_random_seeds']}/{args.seeds} seeds "
              f"(mean HV ratio {summary['bo_over_random_hv_ratio_mean']:.4f}); target met: {summary['target_met']}")
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'summary.json'}, {args.out / 'hv.png'}")
    return 0


def compare_adaptive(ctx, points, args) -> dict:
    """The adaptive item budget (codesign.explore.adaptive) vs fixed-limit runs on the exhaustive
    configurations: member-item evaluations spent by the adaptive run, by the fixed-limit runs that
    reach its front (the first limit showing it, and the limit from which every larger one shows it)
    and by the full-item run; whether the adaptive front is the full-item front."""
    from codesign.explore.adaptive import adaptive_front, covers, fixed_limit_baseline, fixed_limit_fronts
    from codesign.explore.results import distinct, maximised

    idx, _ = distinct(points)
    configs = [points[i].config for i in idx]
    Y = maximised([points[i] for i in idx], ctx.objectives)
    q = ctx.evaluator.quality
    t = time.time()
    out = adaptive_front(q, configs, Y, ctx.objectives, start=args.adaptive_start, step=args.adaptive_step,
                         confidence=args.adaptive_confidence, patience=args.adaptive_patience,
                         tolerance=args.adaptive_tolerance,
                         seed=0)
    n_max = max(q.n_items(t) for t in q.trust_tasks)
    fronts = fixed_limit_fronts(q, configs, Y, ctx.objectives, range(1, n_max + 1), seed=0)
    full = fronts[n_max][0]
    tol = args.adaptive_tolerance
    if tol > 0:  # runs reaching the full-item front within the tolerance (covers), on every item's values
        def reaches(front):
            return covers(front, full, configs, Y, ctx.objectives, tol)

        base = fixed_limit_baseline(fronts, full, reaches)
        adaptive_reaches = reaches(out.front)
    else:  # runs showing the adaptive front itself, as a set
        base = fixed_limit_baseline(fronts, out.front)
        adaptive_reaches = full == set(out.front)

    def ratio(b):
        return None if b is None else out.evaluations / b[1]

    res = {"configurations": len(configs), "confidence": args.adaptive_confidence, "patience": args.adaptive_patience,
           "tolerance_trust_points": tol, "adaptive_reaches_full_front": adaptive_reaches,
           "start_items_per_task": args.adaptive_start, "step_items_per_task": args.adaptive_step,
           "stopped": out.stopped, "adaptive_evaluations": out.evaluations,
           "fixed_first": base["first"], "fixed_stable": base["stable"], "full_evaluations": out.fixed_evaluations,
           "ratio_vs_fixed_first": ratio(base["first"]), "ratio_vs_fixed_stable": ratio(base["stable"]),
           "ratio_vs_full": out.evaluations / out.fixed_evaluations, "rounds": out.rounds,
           "uncertain_at_end": out.uncertain, "front_adaptive": len(out.front), "front_full": len(full),
           "front_common": len(full & set(out.front)), "same_front_as_full": full == set(out.front),
           "items_per_member": out.items, "history": out.history, "seconds": time.time() - t}
    first = "none" if base["first"] is None else f"{base['first'][1]} ({base['first'][0]} items/task)"
    stable = "none" if base["stable"] is None else f"{base['stable'][1]} ({base['stable'][0]} items/task)"
    what = f"the full-item front within {tol:g} trust points" if tol > 0 else "its front"
    vs = "none" if res["ratio_vs_fixed_stable"] is None else f"{res['ratio_vs_fixed_stable']:.3f}"
    print(f"adaptive item budget: {out.evaluations} member-item evaluations ({out.stopped} after {out.rounds} "
          f"rounds); fixed-limit runs reaching {what}: first {first}, stable {stable}; ratio adaptive / "
          f"fixed stable {vs}; full {out.fixed_evaluations} (ratio {res['ratio_vs_full']:.3f}); adaptive reaches "
          f"it: {adaptive_reaches}; adaptive front = full front: {res['same_front_as_full']}", flush=True)
    return res


if __name__ == "__main__":
    sys.exit(main())
