"""Scores from stored answers: one entry point for single variants and (via ``pred``) ensembles.

The protocol picks the task (its own formulas); the policy must be one of that protocol's
(:func:`codesign.evaluate.protocols.resolve_scoring`): a policy alone names its protocol.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from codesign.evaluate.protocols import resolve_scoring
from codesign.evaluate.tasks import get_task
from codesign.store import ResultStore


@functools.lru_cache(maxsize=None)
def _task(name: str, protocol: str):
    return get_task(name, protocol=protocol)


def score_task(task_name: str, items_df, pred: np.ndarray, policy: str | None = None,
               protocol: str | None = None) -> dict[str, Any]:
    """Score aligned answers: ``items_df`` as ``ResultStore.items(task, protocol)`` (or a row
    subset of it), ``pred`` int (n_items,) label ids / INVALID / REFUSED. Returns ``score``
    (0-100), ``refusal_rate``, ``invalid_rate``, ``n`` and the task's sub-metrics."""
    protocol, policy = resolve_scoring(protocol, policy)
    return _task(task_name, protocol).score(items_df.reset_index(drop=True), np.asarray(pred), policy)


def score_items(store: ResultStore, variant_id: str, task: str, item_ids: Sequence[str] | None = None,
                mode: str = "generate", policy: str | None = None, protocol: str | None = None) -> dict[str, Any]:
    """Score one variant's stored answers on ``item_ids`` (default: the items it has answered)."""
    protocol, policy = resolve_scoring(protocol, policy)
    items = store.items(task, protocol)
    if item_ids is None:
        item_ids = store.done_item_ids(variant_id, task, mode, protocol)
    items = items[items["item_id"].isin(set(item_ids))].reset_index(drop=True)
    _, labels = store.label_matrix(task, [variant_id], mode, items["item_id"].tolist(), protocol)
    return score_task(task, items, labels[0], policy, protocol)


def variant_scores(store: ResultStore, variant_id: str, tasks: Sequence[str] | None = None,
                   mode: str = "generate", policy: str | None = None,
                   protocol: str | None = None) -> "pandas.DataFrame":
    """One row per task the variant has answers for (under ``protocol``): task, dimension, score,
    refusal_rate, invalid_rate, n, plus the task's sub-metrics (columns differ per task; NaN elsewhere)."""
    import pandas as pd

    protocol, policy = resolve_scoring(protocol, policy)
    tasks = tasks or [t for t in store.tasks(protocol) if variant_id in store.evaluated_variants(t, mode, protocol)]
    rows = []
    for t in tasks:
        if not store.done_item_ids(variant_id, t, mode, protocol):
            continue
        rec = score_items(store, variant_id, t, None, mode, policy, protocol)
        rows.append({"variant_id": variant_id, "protocol": protocol, "task": t,
                     "dimension": _task(t, protocol).dimension, **rec})
    return pd.DataFrame(rows)
