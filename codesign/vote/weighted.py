"""Weighted precision-ensemble votes: a member's vote weighs its validation accuracy.

Beyond the study's rule (an option, never the default). Weights must not be fitted on the items
they are then scored on, so each task's items are split once, deterministically and per subtask,
into a validation slice (weights) and the rest (reported numbers — for the ensemble and for every
member alike, so the comparison stays fair).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

from codesign.config import ConfigError
from codesign.records import INVALID

if TYPE_CHECKING:
    from codesign.vote.ensemble import MemberAnswers

#: ``none`` = the study's unweighted rule; ``accuracy`` = weight by validation accuracy.
WEIGHTINGS = ("none", "accuracy")


def validation_split(item_ids, subtasks, fraction: float = 0.3, seed: int = 0) -> np.ndarray:
    """Seeded validation mask, stratified by subtask and stable across runs and stores.

    Items are ranked by a CRC32 of ``(seed, item_id)`` within their subtask; the first
    ``round(fraction * size)`` of each subtask (at least one, and never all when a subtask has
    two or more items) are validation items.

    Args:
        item_ids: ``(items,)`` item ids.
        subtasks: ``(items,)`` subtask names.

    Returns:
        ``(items,)`` bool array, True for validation items.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"--val-fraction: {fraction} is not allowed (allowed: 0 < fraction < 1)")
    item_ids = np.asarray(item_ids).astype(str)
    subtasks = np.asarray(subtasks).astype(str)
    keys = np.array([zlib.crc32(f"{seed}|{i}".encode()) for i in item_ids], dtype=np.int64)
    mask = np.zeros(item_ids.size, dtype=bool)
    for sub in np.unique(subtasks):
        idx = np.flatnonzero(subtasks == sub)
        k = int(round(fraction * idx.size))
        k = min(max(k, 1), max(idx.size - 1, 1))
        mask[idx[np.argsort(keys[idx], kind="stable")[:k]]] = True
    return mask


def member_accuracy(labels: np.ndarray, gold: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Share of items each member answered correctly (refusals and invalid answers are wrong).

    Args:
        labels: ``(members, items)`` outcome codes.
        gold: ``(items,)`` gold label ids.
        mask: ``(items,)`` bool, items to count (default all).

    Returns:
        ``(members,)`` float accuracy in [0, 1] (0 where no item is counted).
    """
    labels = np.asarray(labels)
    gold = np.asarray(gold)
    mask = np.ones(gold.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    if n == 0:
        return np.zeros(labels.shape[0])
    correct = (labels[:, mask] == gold[mask][None, :]) & (labels[:, mask] != INVALID)
    return correct.mean(axis=1)


def accuracy_weights(ans: "MemberAnswers", fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Vote weights of the members of ``ans`` and the validation mask they were fitted on.

    Returns:
        ``(weights (members,), val_mask (items,))``; score on ``~val_mask`` only.
    """
    val = validation_split(ans.items["item_id"], ans.items["subtask"], fraction, seed)
    if val.all():
        raise ConfigError(f"task {ans.task!r}: too few items ({val.size}) to hold out a validation slice")
    w = member_accuracy(ans.labels, ans.items["label"].to_numpy(), val)
    return w, val
