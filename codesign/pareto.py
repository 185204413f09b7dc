"""Pareto fronts and hypervolumes: the one implementation explore computes with and the report reads.

Everything works on a matrix ``Y`` of shape ``(n_points, n_objectives)`` flipped so that *larger is
better* in every column (:func:`to_maximization`; BoTorch's convention). A missing objective value
(NaN) is filled with the worst observed value of its column (:func:`fill_missing`), so a point
without, say, an area estimate is neither dropped nor rewarded.

Hypervolume: exact for 2-4 objectives by dimension sweep (HSO). In 2-d the dominated region is a
staircase computed in one vectorized pass (sort, running max). In ``d > 2`` the points are sorted by the last objective
and the volume is a sum of slabs, each the ``(d-1)``-dimensional hypervolume of the points above
that slab. Cost ``O(n^(d-1) log n)``: fine for the fronts of a co-design study (hundreds of
points, up to 4 objectives). Checked against BoTorch's ``Hypervolume`` in the tests.
"""

from __future__ import annotations

import math
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


def fill_missing(Y: np.ndarray) -> np.ndarray:
    """NaN objectives (e.g. no answered item, no area data) -> the worst observed value of that
    column (0 where a column has no value at all). ``Y``: ``(n, m)`` maximised -> ``(n, m)``."""
    Y = np.asarray(Y, dtype=np.float64)
    if not np.isnan(Y).any():
        return Y
    worst = np.nanmin(np.where(np.isnan(Y), np.inf, Y), axis=0) if len(Y) else np.zeros(Y.shape[1])
    worst = np.where(np.isfinite(worst), worst, 0.0)
    return np.where(np.isnan(Y), worst, Y)


def _hv2(P: np.ndarray, ref: np.ndarray) -> float:
    order = np.argsort(-P[:, 0], kind="stable")
    x = P[order, 0]
    y = np.maximum.accumulate(P[order, 1])
    widths = x - np.append(x[1:], ref[0])
    return float(np.sum(widths * (y - ref[1])))


def _hv(P: np.ndarray, ref: np.ndarray) -> float:
    d = P.shape[1]
    if len(P) == 0:
        return 0.0
    if d == 1:
        return float(P[:, 0].max() - ref[0])
    if d == 2:
        return _hv2(P, ref)
    order = np.argsort(-P[:, -1], kind="stable")
    P = P[order]
    z = np.append(P[:, -1], ref[-1])
    total = 0.0
    for i in range(len(P)):
        depth = z[i] - z[i + 1]
        if depth <= 0:
            continue
        sub = P[: i + 1, :-1]
        if i > 8:  # dominated points of the projection add nothing; dropping them keeps recursion small
            sub = sub[pareto_mask(sub)]
        total += depth * _hv(sub, ref[:-1])
    return total


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume dominated by ``points`` above the reference point (maximisation).

    Args:
        points: ``(n, m)`` objective values, larger is better, ``1 <= m <= 4`` (any ``m`` works,
            the cost grows as ``n^(m-1)``).
        ref: ``(m,)`` reference point; only points strictly better in every objective count.

    Returns:
        The hypervolume (0.0 for an empty or fully dominated-by-ref set).
    """
    P = np.asarray(points, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    if P.ndim == 1:
        P = P[None, :]
    if P.size == 0:
        return 0.0
    if P.shape[1] != ref.size:
        raise ValueError(f"points have {P.shape[1]} objectives but ref has {ref.size}")
    P = P[np.isfinite(P).all(axis=1) & (P > ref).all(axis=1)]
    if len(P) == 0:
        return 0.0
    P = np.unique(P[pareto_mask(P)], axis=0)
    return _hv(P, ref)


def log_hv_difference(hv: float, hv_max: float, floor: float = 1e-12) -> float:
    """``log10(hv_max - hv)``, the usual BO convergence metric (floored so a match is finite)."""
    return math.log10(max(hv_max - hv, floor * max(abs(hv_max), 1.0)))


def nadir_reference(Y: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Reference point for comparing searches: just below the worst value of *every* point.

    BoTorch's ``infer_reference_point`` (the front's nadir) suits the acquisition function, but a
    front of two points gives a box so small that most searches score zero; comparing methods needs
    a reference every evaluated point can dominate.

    Args:
        Y: ``(n, m)`` objective values, larger is better (NaN ignored).
        margin: distance below the worst value, as a fraction of each column's range.

    Returns:
        ``(m,)`` reference point.
    """
    Y = np.asarray(Y, dtype=float)
    lo, hi = np.nanmin(Y, axis=0), np.nanmax(Y, axis=0)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(lo), 1.0))
    return lo - margin * span


def hypervolume_trace(Y: np.ndarray, feasible: np.ndarray, ref: np.ndarray,
                      steps: Sequence[int] | None = None) -> np.ndarray:
    """Hypervolume of the feasible points among the first ``k`` rows, for each ``k`` in ``steps``.

    Args:
        Y: ``(n, m)`` maximised objectives in evaluation order (no NaN: see :func:`fill_missing`).
        feasible: ``(n,)`` bool.
        ref: ``(m,)`` reference point.
        steps: increasing counts ``1 <= k <= n`` (default every ``k``).

    Returns:
        ``(len(steps),)`` hypervolumes (non-decreasing).
    """
    Y, feasible = np.asarray(Y, dtype=np.float64), np.asarray(feasible, dtype=bool)
    steps = range(1, len(Y) + 1) if steps is None else steps
    out = np.zeros(len(steps))
    front: list[int] = []
    hv, seen = 0.0, 0
    for j, k in enumerate(steps):
        changed = False
        for i in range(seen, k):
            if not feasible[i]:
                continue
            cand = front + [i]
            keep = pareto_mask(Y[cand])
            if keep[-1]:  # a point the front dominates leaves the hypervolume unchanged
                front = [c for c, kp in zip(cand, keep) if kp]
                changed = True
        seen = k
        if changed:
            hv = hypervolume(Y[front], ref)
        out[j] = hv
    return out
