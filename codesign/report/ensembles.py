"""Report collector: precision ensembles beside their best member and the dense model, per dimension.

The ensemble's score, interval and best member are the voting stage's own
(:func:`codesign.vote.score_ensemble`). Dimensions whose task is not compared with members
(:func:`codesign.objectives.compared_with_members`: fairness measures group disparity, not
correctness) show the ensemble's score only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from codesign import objectives
from codesign.records import VariantSpec, ensemble_label

COLUMNS = ["ensemble", "task", "kind", "score", "ci_low", "ci_high", "variant"]


def ensemble_comparison(store, ensembles: list[list[str]], specs: dict[str, VariantSpec], scores: pd.DataFrame,
                        tasks: list[str], mode: str, policy: str, n_boot: int = 200, seed: int = 0,
                        protocol: str | None = None) -> pd.DataFrame:
    """Long frame (``COLUMNS``): per ensemble and task, rows of kind ``ensemble`` (with its bootstrap
    CI), ``best single`` (the vote stage's best member on the ensemble's items) and ``dense`` (the
    dense model of the same base model), the last two only where the task is compared."""
    from codesign.vote import score_ensemble

    rows = []
    sc = scores.set_index(["variant_id", "task"])["score"]
    dense_by_model = {s.model: vid for vid, s in specs.items() if s.is_dense}
    for members in ensembles:
        label = ensemble_label([specs[m] for m in members])
        dense = dense_by_model.get(specs[members[0]].model)
        res = score_ensemble(store, members, tasks=tasks, mode=mode, policy=policy, n_boot=n_boot, seed=seed,
                             protocol=protocol)
        for r in res.itertuples():
            rows.append(dict(ensemble=label, task=r.task, kind="ensemble", score=float(r.score),
                             ci_low=float(r.ci_low), ci_high=float(r.ci_high), variant="+".join(members)))
            if not objectives.compared_with_members(r.task):
                continue
            if pd.notna(r.best_member_score):
                rows.append(dict(ensemble=label, task=r.task, kind="best single", score=float(r.best_member_score),
                                 ci_low=np.nan, ci_high=np.nan, variant=specs[r.best_member].short_name))
            if dense is not None and (dense, r.task) in sc.index:
                rows.append(dict(ensemble=label, task=r.task, kind="dense", score=float(sc[(dense, r.task)]),
                                 ci_low=np.nan, ci_high=np.nan, variant="dense"))
    return pd.DataFrame(rows, columns=COLUMNS)


def default_ensembles(variants: pd.DataFrame, limit: int = 3) -> list[list[str]]:
    """Without a study: the quantized variants of one method and group size, across precisions."""
    q = variants[~variants["is_dense"]]
    out = []
    for _, grp in q.groupby(["model", "method", "group_size"]):
        by_bits = grp.sort_values("bits").drop_duplicates("bits")
        if len(by_bits) >= 2:
            out.append((len(by_bits), by_bits["variant_id"].tolist()))
    out.sort(key=lambda t: -t[0])
    return [m for _, m in out[:limit]]
