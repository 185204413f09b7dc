"""Non-dominated filtering (vectorized) and sign conventions for mixed min/max objectives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_maximization(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Flip minimised objectives so that larger is better everywhere.

    Args:
        values: ``(n, m)`` objective values in their own units.
        directions: ``m`` entries, each ``"max"`` or ``"min"``.

    Returns:
        ``(n, m)`` float64 array ``values * sign``.
    """
    values = np.asarray(values, dtype=np.float64)
    sign = np.array([1.0 if d == "max" else -1.0 for d in directions])
    if values.ndim != 2 or values.shape[1] != sign.size:
        raise ValueError(f"values must have shape (n, {sign.size}), got {values.shape}")
    return values * sign


def pareto_mask(Y: np.ndarray, maximize: bool = True, chunk: int = 1024) -> np.ndarray:
    """Which rows of ``Y`` are non-dominated.

    A row is dominated when another row is at least as good in every objective and strictly
    better in one. Equal rows do not dominate each other (both are kept). Rows holding NaN are
    never on the front.

    Args:
        Y: ``(n, m)`` objective values.
        maximize: larger is better (else smaller is better) in every column.
        chunk: rows compared per broadcast block (memory ``chunk * n * m`` booleans).

    Returns:
        ``(n,)`` bool mask of the non-dominated rows.
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"Y must have shape (n, m), got {Y.shape}")
    if not maximize:
        Y = -Y
    n = Y.shape[0]
    finite = ~np.isnan(Y).any(axis=1)
    Yf = np.where(finite[:, None], Y, -np.inf)
    mask = finite.copy()
    for start in range(0, n, chunk):
        block = Yf[start: start + chunk]  # (b, m)
        ge = (Yf[None, :, :] >= block[:, None, :]).all(axis=2)  # (b, n): row j >= row i everywhere
        gt = (Yf[None, :, :] > block[:, None, :]).any(axis=2)
        dominated = (ge & gt & finite[None, :]).any(axis=1)
        mask[start: start + chunk] &= ~dominated
    return mask


def pareto_front(Y: np.ndarray, maximize: bool = True) -> np.ndarray:
    """The non-dominated rows of ``Y`` (``(k, m)``), duplicates removed."""
    Y = np.asarray(Y, dtype=np.float64)
    front = Y[pareto_mask(Y, maximize)]
    return np.unique(front, axis=0) if len(front) else front
