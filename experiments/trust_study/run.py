"""Reproduce the trust study end to end (issue 9) and write its tables and figures here.

    python experiments/trust_study/run.py [--store runs/trust_study.db] [--config config.yaml]

1. ``codesign explore`` on ``config.yaml``: quantizes the catalogue (RTN/GPTQ/AWQ x 2/3/4/8 bits),
   evaluates every member and the dense model on the seeded subsample, runs BoTorch and random
   search against the exhaustive front on the H100 and the multi-precision accelerator.
2. Per-variant scores and refusal rates per dimension (``variants.csv``).
3. Precision ensembles vs their best single member and vs dense, bootstrap 95% CIs over items
   (``ensembles.csv``).
4. The recommended configurations per accelerator (``recommendations.csv``).
5. The HTML report with every figure (``report/``), ``summary.json``, and ``findings.json`` (the
   numbers README.md quotes; ``findings.py``).

Everything is seeded; the store makes it resumable (re-run the same command after an interruption).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from findings import findings  # noqa: E402


def ensembles_to_score(specs) -> dict[str, list]:
    """The study's ensembles: per method {3,4,8} and {2,3,4}, and the three methods at 4 bits."""
    by = {(s.method, s.bits): s for s in specs}
    out = {}
    for method in ("rtn", "gptq", "awq"):
        for bits in ((3, 4, 8), (2, 3, 4), (2, 4, 8)):
            if all((method, b) in by for b in bits):
                out[f"{method}-{{{','.join(map(str, bits))}}}"] = [by[(method, b)] for b in bits]
    if all((m, 4) in by for m in ("rtn", "gptq", "awq")):
        out["{rtn,gptq,awq}-w4"] = [by[(m, 4)] for m in ("rtn", "gptq", "awq")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=HERE / "config.yaml")
    ap.add_argument("--store", type=Path, default=Path("runs/trust_study.db"))
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--generate-limit", type=int, default=10,
                    help="items per task answered in free generation, to measure refusals (0 = skip)")
    args = ap.parse_args()

    from codesign.evaluate import get_task
    from codesign.evaluate.scoring import score_items, variant_scores
    from codesign.explore.config import load_study_config
    from codesign.explore.outputs import write_outputs
    from codesign.explore.pareto import pareto_mask, to_maximization
    from codesign.explore.study import build_context, run_study, study_item_ids
    from codesign.report import write_report
    from codesign.store import ResultStore
    from codesign.vote import score_ensemble

    t0 = time.time()
    cfg = load_study_config(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    with ResultStore(args.store) as store:
        ctx = build_context(cfg, store, progress=True, source=str(args.config))
        # Every member is evaluated up front so per-variant tables cover the whole catalogue.
        missing = [m for m in ctx.space.members if not ctx.evaluator.is_cached(m)]
        if missing:
            ctx.evaluator.ensure_members(missing)
        result = run_study(ctx)
        write_outputs(ctx, result, args.out / "explore")
        specs = list(ctx.members)

        # -- per-variant scores ------------------------------------------------------------
        # Scored on exactly the study's subsample, whatever else the store holds for a variant.
        item_ids = study_item_ids(cfg, cfg.tasks)
        rows = []
        for s in specs:
            for t in cfg.tasks:
                r = score_items(store, s.variant_id, t, item_ids[t], cfg.mode, cfg.policy)
                rows.append({"variant": s.short_name, "method": s.method, "bits": s.bits, "task": t,
                             "dimension": get_task(t, protocol=cfg.protocol).dimension, "score": r["score"],
                             "refusal_rate": r["refusal_rate"], "invalid_rate": r["invalid_rate"], "n": r["n"]})
        variants = pd.DataFrame(rows)
        variants.to_csv(args.out / "variants.csv", index=False, float_format="%.4f")

        # -- ensembles vs best single member vs dense ----------------------------------------
        dense = next((s for s in specs if s.is_dense), None)
        ens_rows = []
        for name, members in ensembles_to_score(specs).items():
            df = score_ensemble(store, [m.variant_id for m in members], list(cfg.tasks), cfg.mode, cfg.policy,
                                n_boot=args.n_boot, seed=cfg.seed)
            for _, r in df.iterrows():
                d = variants[(variants.variant == "dense") & (variants.task == r["task"])]
                ens_rows.append({
                    "ensemble": name, "task": r["task"], "dimension": r["dimension"], "n": r["n"],
                    "score": r["score"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                    "refusal_rate": r["refusal_rate"],
                    "best_member": store.variant_spec(r["best_member"]).short_name,
                    "best_member_score": r["best_member_score"], "delta_vs_best": r["delta_vs_best"],
                    "delta_ci_low": r["delta_ci_low"], "delta_ci_high": r["delta_ci_high"],
                    "dense_score": float(d["score"].iloc[0]) if dense is not None and len(d) else np.nan,
                })
        ensembles = pd.DataFrame(ens_rows)
        ensembles.to_csv(args.out / "ensembles.csv", index=False, float_format="%.4f")

        # -- recommendations per accelerator -------------------------------------------------
        pts = store.study_points(ctx.name)
        pts = pts[pts.feasible.astype(bool)]
        names = [o.name for o in cfg.objectives]
        directions = [o.direction for o in cfg.objectives]
        rec_rows = []
        seen = set()
        for _, p in pts.iterrows():
            key = json.dumps(p["config"], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            short = {m.variant_id: m.short_name for m in specs}
            rec_rows.append({"spec": p["config"]["spec"], "schedule": p["config"]["schedule"],
                             "ensemble": "+".join(short.get(v, v) for v in p["config"]["members"]),
                             **{n: p["objectives"].get(n) for n in names}})
        front = pd.DataFrame(rec_rows)
        keep = []
        for spec, g in front.groupby("spec"):
            Y = to_maximization(g[names].to_numpy(float), directions)
            keep.append(g[pareto_mask(Y)].sort_values(names[0], ascending=False))
        recs = pd.concat(keep) if keep else front
        recs.to_csv(args.out / "recommendations.csv", index=False, float_format="%.5g")

        # -- refusals in free generation ----------------------------------------------------
        # Log-likelihood ranking cannot refuse (except choosing "I don't know"); free generation shows
        # how often each precision abstains or answers off-format, on a smaller seeded subsample.
        if args.generate_limit:
            from codesign.evaluate import evaluate_catalogue

            tasks = [get_task(t, subtasks=cfg.subtasks.get(t), protocol=cfg.protocol) for t in cfg.tasks]
            evaluate_catalogue(specs, store, tasks, mode="generate", limit=args.generate_limit, seed=cfg.seed,
                               batch_size=8, progress=True)
            gen = []
            for s in specs:
                df = variant_scores(store, s.variant_id, list(cfg.tasks), "generate", cfg.policy)
                for _, r in df.iterrows():
                    gen.append({"variant": s.short_name, "method": s.method, "bits": s.bits, "task": r["task"],
                                "score": r["score"], "refusal_rate": r["refusal_rate"],
                                "invalid_rate": r["invalid_rate"], "n": r["n"]})
            pd.DataFrame(gen).to_csv(args.out / "refusals_generate.csv", index=False, float_format="%.4f")

        html = write_report(store, ctx.name, args.out / "report", cfg.specs[0], mode=cfg.mode, policy=cfg.policy,
                            progress=True)
        findings(store, specs, item_ids, cfg.mode, args.out)  # findings.json: the numbers README.md quotes
        summary = {
            "config": str(args.config.name), "model": cfg.model, "mode": cfg.mode, "limit_per_task": cfg.limit,
            "seed": cfg.seed, "n_variants": len(specs), "wall_s": round(time.time() - t0, 1),
            "hypervolume": result.summary.to_dict(orient="records"),
            "report": str(Path(html).relative_to(args.out)) if Path(html).is_relative_to(args.out) else str(html),
        }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(variants.pivot_table(index="variant", columns="task", values="score").round(1).to_string())
    print(ensembles[["ensemble", "task", "score", "ci_low", "ci_high", "best_member", "best_member_score",
                     "delta_vs_best", "dense_score"]].round(1).to_string())
    print(recs.to_string())
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
