"""Scores from stored answers: one entry point for single variants and (via ``pred``) ensembles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from codesign.evaluate.metrics import check_policy
from codesign.evaluate.tasks import get_task
from codesign.store import ResultStore


def score_task(task_name: str, items_df, pred: np.ndarray, policy: str = "decodingtrust") -> dict[str, Any]:
    """Score aligned answers: ``items_df`` as ``ResultStore.items(task)`` (or a row subset of it),
    ``pred`` int (n_items,) label ids / INVALID / REFUSED. Returns ``score`` (0-100),
    ``refusal_rate``, ``invalid_rate``, ``n`` and the task's sub-metrics."""
    check_policy(policy)
    return get_task(task_name).score(items_df.reset_index(drop=True), np.asarray(pred), policy)


def score_items(store: ResultStore, variant_id: str, task: str, item_ids: Sequence[str] | None = None,
                mode: str = "generate", policy: str = "decodingtrust") -> dict[str, Any]:
    """Score one variant's stored answers on ``item_ids`` (default: the items it has answered)."""
    items = store.items(task)
    if item_ids is None:
        item_ids = store.done_item_ids(variant_id, task, mode)
    items = items[items["item_id"].isin(set(item_ids))].reset_index(drop=True)
    _, labels = store.label_matrix(task, [variant_id], mode, items["item_id"].tolist())
    return score_task(task, items, labels[0], policy)


def variant_scores(store: ResultStore, variant_id: str, tasks: Sequence[str] | None = None,
                   mode: str = "generate", policy: str = "decodingtrust") -> "pandas.DataFrame":
    """One row per task the variant has answers for: task, dimension, score, refusal_rate,
    invalid_rate, n, plus the task's sub-metrics (columns differ per task; NaN elsewhere)."""
    import pandas as pd

    tasks = tasks or [t for t in store.tasks() if variant_id in store.evaluated_variants(t, mode)]
    rows = []
    for t in tasks:
        if not store.done_item_ids(variant_id, t, mode):
            continue
        rec = score_items(store, variant_id, t, None, mode, policy)
        rows.append({"variant_id": variant_id, "task": t, "dimension": get_task(t).dimension, **rec})
    return pd.DataFrame(rows)
