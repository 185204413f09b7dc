"""Adaptive item budget: spend member x item evaluations only where the front is still uncertain.

Evaluation cost is member x item. Every member starts on a small seeded sample of each task's
items (a prefix of one seeded order per task, so two members' samples are nested and an ensemble
is scored on the items all its members answered: the shortest prefix). Each round, the paired item
bootstrap (:mod:`codesign.explore.uncertainty`) gives every configuration its probability of being
on the Pareto front; the members of configurations whose membership is still uncertain
(``1 - confidence < P < confidence``) that have the fewest items (they limit the ensemble's item
set) get ``step`` more items per task. It stops when no
configuration is uncertain (the front is stable at ``confidence``), when uncertain configurations
have every item already, or when ``budget`` member-item evaluations are spent.

:func:`adaptive_front` runs this bookkeeping over a store that already holds every answer (the
synthetic catalogue of ``experiments/explore_bench``), counting the evaluations an on-demand run
would have paid for; the fixed-limit run it is compared with scores every member on every item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from codesign.explore.uncertainty import pareto_probability
from codesign.pareto import fill_missing, pareto_mask
from codesign.records import Configuration


@dataclass
class AdaptiveOutcome:
    """What the adaptive run spent and found.

    Attributes:
        items: member -> items per task it was evaluated on (capped by each task's size).
        evaluations: member-item evaluations spent (sum over members and tasks).
        fixed_evaluations: what scoring every member on every item costs.
        front: configurations on the front of the final estimates.
        rounds: bootstrap rounds run.
        uncertain: configurations still uncertain at the end (0: stable at ``confidence``).
    """

    items: dict[str, int]
    evaluations: int
    fixed_evaluations: int
    front: list[Configuration]
    rounds: int
    uncertain: int
    history: list[tuple[int, int]] = field(default_factory=list)  # (evaluations, uncertain) per round


def adaptive_front(quality, configs: Sequence[Configuration], Y: np.ndarray, objectives: Sequence[tuple[str, str]],
                   *, start: int = 8, step: int = 8, confidence: float = 0.95, budget: int | None = None,
                   n_resamples: int = 200, seed: int = 0) -> AdaptiveOutcome:
    """Adaptive item allocation over ``configs`` (module docstring).

    Args:
        quality: the study's :class:`~codesign.explore.evaluator.QualityTable` (every answer stored).
        configs: the feasible configurations competing for the front.
        Y: ``(n, m)`` maximised objectives of ``configs`` on every item (the costs are used as they
            are; the quality columns are re-estimated on each member's items).
        objectives: ``(name, direction)`` of the columns of ``Y``.
        start, step: items per task a member starts with / gets per round.
        confidence: a configuration is settled when ``P(front) <= 1 - confidence`` or ``>= confidence``.
        budget: the most member-item evaluations to spend (None: no cap).
    """
    tasks = list(quality.trust_tasks)
    quality_cols = [j for j, (n, _) in enumerate(objectives) if n == "trust"]
    rng = np.random.default_rng(seed)
    n_items = {t: quality.n_items(t) for t in tasks}
    order = {t: rng.permutation(n_items[t]) for t in tasks}
    uniform = {t: rng.random((n_resamples, n_items[t])) for t in tasks}  # shared by every prefix length
    sets = list(dict.fromkeys(c.members for c in configs))
    members = list(dict.fromkeys(m for s in sets for m in s))
    preds = {t: np.stack([quality.predictions(t, list(s)) for s in sets]) for t in tasks}
    row = {s: i for i, s in enumerate(sets)}
    k = {m: start for m in members}
    fixed = len(members) * sum(n_items.values())
    history: list[tuple[int, int]] = []
    rounds = 0
    while True:
        rounds += 1
        est, draws = _scores(quality, tasks, sets, k, preds, order, uniform, n_items)
        Yb = np.repeat(Y[None], n_resamples, axis=0)
        Ye = Y.copy()
        idx = np.array([row[c.members] for c in configs])
        for j in quality_cols:
            Yb[:, :, j] = draws[idx].T
            Ye[:, j] = est[idx]
        p = pareto_probability(Yb)
        spent = _spent(k, n_items)
        unsure = (p > 1 - confidence) & (p < confidence)
        history.append((spent, int(unsure.sum())))
        # an ensemble is scored on the items all its members answered: only its members with the
        # fewest items limit it, so only they get more
        grow = {m for c, u in zip(configs, unsure) if u for m in c.members
                if k[m] == min(k[x] for x in c.members) and k[m] < max(n_items.values())}
        if not grow or (budget is not None and spent >= budget):
            break
        for m in grow:
            k[m] += step
    front = [c for c, on in zip(configs, pareto_mask(fill_missing(Ye))) if on]
    return AdaptiveOutcome({m: k[m] for m in members}, _spent(k, n_items), fixed, front, rounds, int(unsure.sum()),
                           history)


def _spent(k: dict[str, int], n_items: dict[str, int]) -> int:
    return int(sum(min(v, n) for v in k.values() for n in n_items.values()))


def _scores(quality, tasks, sets, k, preds, order, uniform, n_items):
    """Trust estimate ``(S,)`` and bootstrap draws ``(S, B)`` of every member set on its items: the
    prefix of each task's order that all its members answered, resampled with the shared uniforms."""
    B = next(iter(uniform.values())).shape[0]
    per_task_est = np.full((len(tasks), len(sets)), np.nan)
    per_task_draw = np.full((len(tasks), len(sets), B), np.nan)
    lengths = np.array([min(k[m] for m in s) for s in sets])
    for ti, t in enumerate(tasks):
        n = n_items[t]
        task = quality.task(t)
        items = quality.items(t)
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            kk = int(min(length, n))
            prefix = order[t][:kk]
            point = np.zeros((1, n), dtype=np.int64)
            point[0, prefix] = 1
            picks = prefix[np.minimum((uniform[t][:, :kk] * kk).astype(np.int64), kk - 1)]  # (B, kk)
            counts = np.zeros((B, n), dtype=np.int64)
            np.add.at(counts, (np.repeat(np.arange(B), kk), picks.reshape(-1)), 1)
            per_task_est[ti, rows] = task.bootstrap_scores(items, preds[t][rows], point, quality.policy)[:, 0]
            per_task_draw[ti, rows] = task.bootstrap_scores(items, preds[t][rows], counts, quality.policy)
    return _nanmean(per_task_est), _nanmean(per_task_draw)


def _nanmean(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
