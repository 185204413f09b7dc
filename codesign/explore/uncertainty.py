"""How sure a study is of its trust numbers: a paired bootstrap over items.

Trust scores are estimates from a finite sample of benchmark items; costs come from the analytical
hardware model and are exact. Every configuration of a study is scored on the *same* items, so
the bootstrap is paired: per task one matrix of resampled item indices (``B`` resamples of the
``n`` items, drawn with replacement) is shared by every configuration, and each task scores every
configuration on every resample at once (:meth:`~codesign.evaluate.tasks.base.Task.bootstrap_scores`).
From the draws come, per configuration and quality objective, a standard error and a percentile
interval (:func:`summarize_draws`); per configuration the share of resamples in which it is on the
Pareto front (:func:`pareto_probability`); and between two configurations whether their difference
is distinguishable from zero (:func:`indistinguishable`).

Quality depends only on an ensemble's member set (schedule and accelerator change costs, not
answers), so draws are computed once per member set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from codesign import objectives as registry
from codesign.pareto import fill_missing
from codesign.records import BootstrapSettings

DEFAULT_LEVEL = BootstrapSettings().level

Draws = dict[str, np.ndarray]  # quality objective -> (B,) values on each resample (as explore.results)


def resample_indices(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(B, n)`` item indices drawn with replacement: one row per resample."""
    return rng.integers(0, n, size=(n_resamples, n))


def index_counts(index: np.ndarray, n: int) -> np.ndarray:
    """``(B, n)`` resample indices -> ``(B, n)`` counts of each item in each resample."""
    B = index.shape[0]
    counts = np.zeros((B, n), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(B), index.shape[1]), index.reshape(-1)), 1)
    return counts


def quality_draws(quality, member_sets: Sequence[tuple[str, ...]], names: Sequence[str],
                  settings: BootstrapSettings) -> dict[tuple[str, ...], Draws]:
    """Bootstrap draws of the quality objectives ``names`` for every member set.

    Args:
        quality: the study's :class:`~codesign.explore.evaluator.QualityTable` (answers, items, votes).
        member_sets: distinct ensembles (variant ids).
        names: quality objectives to draw (``trust`` and/or dimension objectives such as ``adv``).
        settings: resamples, seed.

    Returns:
        member set -> objective -> ``(B,)`` draws (on task ``t`` every member set sees the same resamples).
    """
    sets = list(dict.fromkeys(tuple(s) for s in member_sets))
    rng = np.random.default_rng(settings.seed)
    by_task: dict[str, np.ndarray] = {}  # task -> (C, B) scores
    need = {t for n in names for t in _tasks_of(n, quality)}
    for t in quality.tasks:  # fixed task order: the same seed draws the same indices whichever objectives
        items = quality.items(t)
        counts = index_counts(resample_indices(len(items), settings.n_resamples, rng), len(items))
        if t not in need or not sets or len(items) == 0:
            continue
        preds = np.stack([quality.predictions(t, list(s)) for s in sets])
        by_task[t] = quality.task(t).bootstrap_scores(items, preds, counts, quality.policy)
    out: dict[tuple[str, ...], Draws] = {s: {} for s in sets}
    for name in names:
        tasks = [t for t in _tasks_of(name, quality) if t in by_task]
        if not tasks:
            continue
        vals = np.stack([by_task[t] for t in tasks])  # (T, C, B)
        mean = _nanmean0(vals) if name == "trust" else vals[0]  # trust: the mean of the dimensions present
        for c, s in enumerate(sets):
            out[s][name] = mean[c]
    return out


def _tasks_of(name: str, quality) -> list[str]:
    if name == "trust":
        return list(quality.trust_tasks)
    task = registry.objectives().get(name)
    return [task.task] if task is not None and task.task else []


def _nanmean0(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def summarize_draws(draws: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float, float]:
    """Standard error and percentile interval ``(se, low, high)`` of ``(B,)`` draws (NaN draws ignored)."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size < 2:
        return float("nan"), float("nan"), float("nan")
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(d, [alpha, 1.0 - alpha])
    return float(d.std(ddof=1)), float(lo), float(hi)


def pareto_probability(Y_draws: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Share of resamples in which each point is on the Pareto front.

    Args:
        Y_draws: ``(B, n, m)`` maximised objectives of ``n`` points on each of ``B`` resamples
            (exact objectives repeat along ``B``; NaN: the worst value of its column in that resample).
        chunk: resamples compared per broadcast block (memory ``chunk * n * n`` booleans).

    Returns:
        ``(n,)`` probabilities in [0, 1]; on each resample the front is :func:`~codesign.pareto.pareto_mask`'s.
    """
    Y_draws = np.asarray(Y_draws, dtype=np.float64)
    B, n, _ = Y_draws.shape
    if B == 0 or n == 0:
        return np.zeros(n)
    Y_draws = np.stack([fill_missing(Yb) for Yb in Y_draws])
    # costs are exact (the same on every resample): their part of the pairwise dominance test is
    # computed once, and only the resampled (quality) columns are compared per resample
    exact = (Y_draws == Y_draws[:1]).all(axis=(0, 1))
    Ye, Yv = Y_draws[0][:, exact], Y_draws[:, :, ~exact]  # (n, me), (B, n, mv)
    ge_e = (Ye[None, :, :] >= Ye[:, None, :]).all(axis=2)  # (n, n): j >= i in every exact column
    gt_e = (Ye[None, :, :] > Ye[:, None, :]).any(axis=2)
    on = np.zeros(n)
    for start in range(0, B, chunk):
        V = Yv[start: start + chunk]  # (b, n, mv)
        ge = ge_e[None] & (V[:, None, :, :] >= V[:, :, None, :]).all(axis=3)  # (b, i, j)
        gt = gt_e[None] | (V[:, None, :, :] > V[:, :, None, :]).any(axis=3)
        on += (~(ge & gt).any(axis=2)).sum(axis=0)
    return on / B


def domination_share(Y_draws: np.ndarray, rows: np.ndarray, tolerance: np.ndarray | None = None) -> np.ndarray:
    """``(len(rows), n)``: share of resamples in which point ``j`` dominates point ``rows[i]``
    (by at least ``tolerance`` in every column when given: ``Y_j >= Y_i + tolerance``, ``>`` in one).

    Args:
        Y_draws: ``(B, n, m)`` as :func:`pareto_probability` (NaN: its column's worst value).
        rows: indices of the points whose rivals are wanted.
        tolerance: ``(m,)`` margins ``>= 0`` (None: zeros, plain dominance).
    """
    Y_draws = np.stack([fill_missing(Yb) for Yb in np.asarray(Y_draws, dtype=np.float64)])
    rows = np.asarray(rows, dtype=np.int64)
    margin = 0.0 if tolerance is None else np.asarray(tolerance, dtype=np.float64)
    target = Y_draws[:, rows, None, :] + margin  # (B, r, 1, m)
    ge = (Y_draws[:, None, :, :] >= target).all(axis=3)  # (B, r, n)
    gt = (Y_draws[:, None, :, :] > target).any(axis=3)
    return (ge & gt).mean(axis=0) if len(Y_draws) else np.zeros((len(rows), Y_draws.shape[1]))


def coverage_share(Y_draws: np.ndarray, front: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """``(n,)``: share of resamples in which some point of ``front`` *covers* each point: is at least
    as good in every column up to the column's margin (``Y_f >= Y_j - tolerance``).

    Args:
        Y_draws: ``(B, n, m)`` as :func:`pareto_probability`.
        front: indices of the covering points.
        tolerance: ``(m,)`` margins ``>= 0`` (0 in exact cost columns: no cost slack).
    """
    Y_draws = np.stack([fill_missing(Yb) for Yb in np.asarray(Y_draws, dtype=np.float64)])
    F = Y_draws[:, np.asarray(front, dtype=np.int64), :]  # (B, f, m)
    ok = (F[:, None, :, :] >= Y_draws[:, :, None, :] - np.asarray(tolerance, dtype=np.float64)).all(axis=3)
    return ok.any(axis=2).mean(axis=0) if len(Y_draws) else np.zeros(Y_draws.shape[1])


def indistinguishable(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], level: float = DEFAULT_LEVEL) -> bool:
    """Whether two configurations' paired draws differ by an amount whose ``level`` interval
    contains zero in every objective both have (a configuration against itself: True)."""
    for name in set(a) & set(b):
        diff = np.asarray(b[name]) - np.asarray(a[name])
        diff = diff[~np.isnan(diff)]
        if diff.size < 2:
            continue
        alpha = (1.0 - level) / 2
        lo, hi = np.quantile(diff, [alpha, 1.0 - alpha])
        if lo > 0 or hi < 0:
            return False
    return True
