"""The trust study's headline numbers, derived from its store and tables (what README.md quotes).

    python experiments/trust_study/findings.py [--store runs/trust_study.db] [--dir experiments/trust_study]

Reads the store (per-item answers) and ``variants.csv``, ``ensembles.csv``, ``refusals_generate.csv``
written by ``run.py`` (which also calls this at its end), and writes ``findings.json``:

- ``agreement_with_dense``: per variant, the share of the study's items (log-likelihood mode, every
  task) on which it gives the dense model's answer;
- ``trust``: per variant, the mean score over the study's trust dimensions (its config's
  ``trust_dimensions``; by default adversarial robustness, machine ethics, OOD robustness), as the
  explorer's ``trust`` objective;
- ``generate_by_bits``: invalid and refusal rates in free generation, mean over methods and tasks;
- ``ensembles``: how many ensemble x dimension comparisons are significantly above / within /
  below the best single member (paired bootstrap 95% CI of the difference), and the list of those
  outside; dimensions not compared with members (fairness: group disparity, not correctness) are
  left out, as in the study.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from codesign import objectives

HERE = Path(__file__).resolve().parent


def agreement_with_dense(store, specs, tasks: dict[str, list[str]], mode: str,
                         protocol: str | None = None) -> dict[str, float]:
    """Share of items (all ``tasks``: name -> item ids) where each variant answers as the dense one
    (empty when the catalogue has no dense model)."""
    dense = next((s for s in specs if s.is_dense), None)
    if dense is None:
        return {}
    same = {s.short_name: 0 for s in specs if not s.is_dense}
    total = 0
    for task, ids in tasks.items():
        _, labels = store.label_matrix(task, [dense.variant_id] + [s.variant_id for s in specs if not s.is_dense],
                                       mode, ids, **({"protocol": protocol} if protocol else {}))
        total += labels.shape[1]
        for name, row in zip(same, labels[1:]):
            same[name] += int((row == labels[0]).sum())
    return {k: round(v / total, 4) for k, v in same.items()}


def findings(store, specs, item_ids: dict[str, list[str]], mode: str, out_dir: Path,
             trust_tasks: list[str] | None = None, protocol: str | None = None) -> dict:
    """Compute ``findings.json`` (module docstring); ``trust_tasks`` default: the default trust dimensions;
    answers of ``protocol`` (default: the default protocol)."""
    if trust_tasks is None:
        trust_tasks = [d.task for d in objectives.trust_dimensions()]
    variants = pd.read_csv(out_dir / "variants.csv")
    trust = {v: round(objectives.trust_score(dict(zip(g.task, g.score)), trust_tasks), 2)
             for v, g in variants.groupby("variant")}
    out = {"agreement_with_dense": agreement_with_dense(store, specs, item_ids, mode, protocol), "trust": trust}
    gen_path = out_dir / "refusals_generate.csv"
    if gen_path.exists():
        gen = pd.read_csv(gen_path)
        out["generate_by_bits"] = {
            int(b): {"invalid_rate": round(float(g.invalid_rate.mean()), 3),
                     "refusal_rate": round(float(g.refusal_rate.mean()), 3)}
            for b, g in gen.groupby("bits")}
    ens = pd.read_csv(out_dir / "ensembles.csv")
    ens = ens[ens.task.map(objectives.compared_with_members)]
    above = ens[ens.delta_ci_low > 0]
    below = ens[ens.delta_ci_high < 0]
    out["ensembles"] = {
        "comparisons": int(len(ens)), "above_best": int(len(above)), "below_best": int(len(below)),
        "within": int(len(ens) - len(above) - len(below)),
        "outside": [{"ensemble": r.ensemble, "task": r.task, "delta_vs_best": round(float(r.delta_vs_best), 1),
                     "ci": [round(float(r.delta_ci_low), 1), round(float(r.delta_ci_high), 1)],
                     "best_member": r.best_member}
                    for r in pd.concat([above, below]).itertuples()],
        "above_dense": int((ens.score > ens.dense_score).sum()),
    }
    (out_dir / "findings.json").write_text(json.dumps(out, indent=1, default=float))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=HERE / "config.yaml")
    ap.add_argument("--store", type=Path, default=Path("runs/trust_study.db"))
    ap.add_argument("--dir", type=Path, default=HERE, help="where run.py wrote its tables")
    args = ap.parse_args()

    from codesign.explore.config import load_study_config
    from codesign.explore.study import study_item_ids
    from codesign.store import ResultStore

    cfg = load_study_config(args.config)
    with ResultStore(args.store, read_only=True) as store:  # findings only read the store
        specs = list(dict.fromkeys(cfg.catalogue_obj(str(args.config)).variants()))
        print(json.dumps(findings(store, specs, study_item_ids(cfg, cfg.tasks), cfg.mode, args.dir,
                                  trust_tasks=cfg.trust_tasks(), protocol=cfg.protocol), indent=1, default=float))


if __name__ == "__main__":
    main()
