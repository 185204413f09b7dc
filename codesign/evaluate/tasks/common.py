"""Helpers shared by the task modules' ``score`` functions."""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.evaluate import metrics


def aligned(items, pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subtask, y_true, pred) arrays of equal length n from ``ResultStore.items`` and answers."""
    pred = np.asarray(pred, dtype=np.int64).reshape(-1)
    if len(items) != len(pred):
        raise ValueError(f"score: {len(items)} items but {len(pred)} predictions")
    return items["subtask"].to_numpy().astype(str), items["label"].to_numpy().astype(np.int64), pred


def base_record(pred: np.ndarray) -> dict[str, Any]:
    return {"n": int(len(pred)), "refusal_rate": metrics.refusal_rate(pred), "invalid_rate": metrics.invalid_rate(pred)}


def mean_or_nan(values) -> float:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")
