"""Score all ``2**m - 1`` ensembles of a catalogue at once, for exhaustive comparison.

The votes of every subset come from :func:`codesign.voting.subset_votes` (vectorized over subsets
and items). Two ways to turn them into numbers:

- ``metric="task"`` (default): the task's own ``score()`` per subset, the same metric code as
  single variants (identical answer vectors are scored once);
- ``metric="accuracy"``: a vectorized accuracy / refusal / invalid rate for all subsets in a few
  array operations — for catalogues too large for one ``score()`` call per subset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from codesign.records import REFUSED
from codesign.voting import subset_masks, subset_votes

METRICS = ("task", "accuracy")


def subset_predictions(labels: np.ndarray, bits: Sequence[int], keep_refusal: np.ndarray | None = None,
                       masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Answers of every subset, with the per-item refusal rule.

    Args:
        labels: ``(members, items)`` outcome codes.
        bits: ``(members,)`` precisions.
        keep_refusal: ``(items,)`` bool, REFUSED is a label for these items (default none).
        masks: ``(subsets, members)`` membership; default all non-empty subsets.

    Returns:
        ``(masks (subsets, members), pred (subsets, items))``; a one-member subset holds the
        member's own answers (the voting rule keeps INVALID and REFUSED as they are).
    """
    labels = np.asarray(labels)
    m, n = labels.shape
    masks = subset_masks(m) if masks is None else np.asarray(masks, dtype=bool)
    keep = np.zeros(n, dtype=bool) if keep_refusal is None else np.asarray(keep_refusal, dtype=bool)
    parts = {flag: subset_votes(labels[:, keep == flag], bits, masks, keep_refusal=flag)
             for flag in (False, True) if (keep == flag).any()}
    if len(parts) == 1:
        return masks, next(iter(parts.values()))
    pred = np.full((masks.shape[0], n), REFUSED, dtype=np.result_type(*parts.values()) if parts else np.int8)
    for flag, part in parts.items():
        pred[:, keep == flag] = part
    return masks, pred


def subset_accuracy(pred: np.ndarray, gold: np.ndarray, policy: str = "decodingtrust",
                    subtasks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Vectorized accuracy of many answer vectors at once.

    The outcome classes and denominators are :mod:`codesign.evaluate.metrics`' (the ones single
    variants and ensembles are scored with): ``answered`` counts accuracy over items not refused
    (an invalid answer is wrong), ``strict`` and ``decodingtrust`` over all items. With
    ``subtasks`` the accuracy is the unweighted mean over subtasks (as DecodingTrust averages its
    settings).

    Args:
        pred: ``(subsets, items)`` answers.
        gold: ``(items,)`` gold labels.

    Returns:
        ``score`` (0-100), ``refusal_rate``, ``invalid_rate``: each ``(subsets,)``.
    """
    from codesign.evaluate import metrics

    metrics.check_policy(policy)
    pred = np.asarray(pred)
    gold = np.asarray(gold)
    inv = np.zeros(gold.size, dtype=np.int64) if subtasks is None else np.unique(np.asarray(subtasks),
                                                                                return_inverse=True)[1]
    groups = np.unique(inv)
    acc = np.zeros((pred.shape[0], max(groups.size, 1)))
    for j, g in enumerate(groups):  # loop over subtasks (few), vectorized over subsets and items
        gm = inv == g
        acc[:, j] = metrics.accuracy(gold[gm], pred[:, gm], policy)
    score = 100 * acc.mean(axis=1) if groups.size else np.full(pred.shape[0], np.nan)
    return {
        "score": score,
        "refusal_rate": np.asarray(metrics.refusal_rate(pred), dtype=float).reshape(-1),
        "invalid_rate": np.asarray(metrics.invalid_rate(pred), dtype=float).reshape(-1),
    }


def score_all_subsets(store, variant_ids: Sequence[str], task: str, mode: str = "generate",
                      policy: str | None = None, metric: str = "task", min_size: int = 1,
                      max_size: int | None = None, progress: bool = True,
                      protocol: str | None = None) -> pd.DataFrame:
    """Score every ensemble of ``variant_ids`` (sizes ``min_size..max_size``) on ``task`` (answers
    stored under ``protocol``).

    Returns:
        One row per subset, sorted by score (best first): ``members`` (tuple of variant ids),
        ``names`` (short names joined with ``+``), ``size``, ``bits`` (tuple), ``score``,
        ``refusal_rate``, ``invalid_rate``, ``n``, and with ``metric="task"`` the task's other
        scalar metrics.
    """
    from codesign.evaluate.protocols import resolve_scoring
    from codesign.vote.ensemble import _flat, check_choice, load_answers, score_predictions

    protocol, policy = resolve_scoring(protocol, policy)
    check_choice(metric, METRICS, "metric")
    ids = list(variant_ids)
    ans = load_answers(store, task, ids, mode, protocol=protocol)
    masks = subset_masks(len(ids), min_size, max_size)
    masks, pred = subset_predictions(ans.labels, ans.bits, ans.keep_refusal, masks)
    names = []
    for v in ids:
        try:
            names.append(store.variant_spec(v).short_name)
        except KeyError:
            names.append(v)
    base = pd.DataFrame({
        "members": [tuple(np.asarray(ids)[mk]) for mk in masks],
        "names": ["+".join(np.asarray(names)[mk]) for mk in masks],
        "size": masks.sum(axis=1),
        "bits": [tuple(int(b) for b in ans.bits[mk]) for mk in masks],
        "n": len(ans.items),
    })
    if metric == "accuracy":
        m = subset_accuracy(pred, ans.items["label"].to_numpy(), policy, ans.items["subtask"].to_numpy())
        for k, v in m.items():
            base[k] = v
    else:
        rows, cache = [], {}
        it = range(pred.shape[0])
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"score subsets ({task})", unit="subset", leave=False)
        for s in it:
            key = pred[s].tobytes()
            if key not in cache:  # different subsets often vote identically (e.g. pairs)
                cache[key] = _flat(score_predictions(task, ans.items, pred[s], policy, protocol=protocol))
            rows.append(cache[key])
        extra = pd.DataFrame(rows)
        base = pd.concat([base, extra.drop(columns=[c for c in extra.columns if c in base.columns])], axis=1)
    base.insert(0, "task", task)
    return base.sort_values(["score", "size"], ascending=[False, True], kind="stable").reset_index(drop=True)
