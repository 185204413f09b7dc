"""Adaptive item budget: spend member x item evaluations only where the front is still uncertain.

Evaluation cost is member x item. Every member starts on a small seeded sample of each task's
items (a prefix of one seeded order per task, so two members' samples are nested and an ensemble
is scored on the items all its members answered: the shortest prefix). Each round the paired item
bootstrap (:mod:`codesign.explore.uncertainty`) gives every configuration its probability of being
on the Pareto front, ``P``. A configuration is a *contender* while ``1 - confidence < P < confidence``;
the members of contenders that have the fewest items (they limit the ensemble's item set) get
``step`` more items per task, and so do those of each contender's *rivals* (the configurations
that knock it off the front in at least ``1 - confidence`` of the resamples: a cheap member settled
on the front on a few items would otherwise keep its dearer neighbours uncertain forever).

Stopping rule (the front is *stable at* ``confidence``): the run stops after the first round in which
no configuration is a contender (every one is on the front with ``P >= confidence`` or off it with
``P <= 1 - confidence``), or in which

1. the point-estimate front (the set of configurations on the front of the current estimates) is
   the same set as in each of the previous ``patience`` rounds, each of which added items to
   contenders, and
2. every configuration on that front has ``P >= front_level`` (default ``1 - confidence``: none is
   confidently off the front; near-ties, whose ``P`` never leaves ``(1 - c, c)`` however many items,
   do not hold the run forever);

or when no contender can get more items (all have every item), or when ``budget`` member-item
evaluations are spent. :attr:`AdaptiveOutcome.stopped` says which (``settled``, ``stable``,
``exhausted``, ``budget``).

Indifference zone (``tolerance`` > 0, in trust points): the question becomes whether the
point-estimate front is within ``tolerance`` of every configuration, not whether each
configuration is on the front. A configuration off the front is *covered* when some front member
is at most as costly in every cost and at most ``tolerance`` below it in trust; the contenders are
the configurations covered in fewer than ``confidence`` of the resamples
(:func:`~codesign.explore.uncertainty.coverage_share`), their rivals the front members that could
cover them. A front member is a contender while others beat it by more than the tolerance in at
least ``1 - confidence`` of the resamples (a lucky estimate on a few items; its rivals: those
others). Near-ties within the tolerance of the front are covered at once and stop drawing items;
the run stops as ``settled`` once nothing is a contender (or by the same ``stable``, ``exhausted``
and ``budget`` rules). Fronts are then compared by :func:`covers`: a front reaches a target when,
on every item, each target point has a front point at most as costly and at most ``tolerance``
below it in trust.

The resamples carry a finite-population correction: the target is each member set's score on all
of a task's ``n`` items, of which ``k`` are known, so the bootstrap spread around the estimate is
scaled by ``sqrt((n - k) / (n - 1))`` and vanishes once every item is in.

A limit of the bootstrap: two members that answer the start items identically have no paired
variance between them, so the dearer one is settled off the front on no evidence; ``start`` must
be large enough for the catalogue's closest pairs to differ on some item.

The fixed-limit run it is compared with (:func:`fixed_limit_front`) scores every member on the
same first ``limit`` items of each task's seeded order; :func:`smallest_fixed_limit` finds the
fewest items per member whose fixed-limit front equals a given front.

:func:`adaptive_front` runs this bookkeeping over a store that already holds every answer (the
synthetic catalogue of ``experiments/explore_bench``), counting the evaluations an on-demand run
would have paid for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from codesign.explore.uncertainty import coverage_share, domination_share, pareto_probability
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
        uncertain: contenders left at the end (``1 - confidence < P < confidence``).
        stopped: ``"settled"`` (no contender), ``"stable"`` (the front unchanged over ``patience``
            rounds, every member with ``P >= front_level``), ``"exhausted"`` (contenders have every
            item) or ``"budget"``.
        history: per round ``(evaluations, contenders, front size, min P over the front)``.
        fronts: per round the point-estimate front.
    """

    items: dict[str, int]
    evaluations: int
    fixed_evaluations: int
    front: list[Configuration]
    rounds: int
    uncertain: int
    stopped: str = "stable"
    history: list[tuple[int, int, int, float]] = field(default_factory=list)
    fronts: list[frozenset[Configuration]] = field(default_factory=list)


class _ItemSample:
    """Seeded item orders and bootstrap uniforms shared by every prefix length, and the member
    sets' predictions: estimates and Pareto probabilities of ``configs`` for any items-per-member."""

    def __init__(self, quality, configs, Y, objectives, n_resamples: int, seed: int, tolerance: float = 0.0):
        self.quality, self.configs, self.Y = quality, list(configs), np.asarray(Y, dtype=np.float64)
        self.tasks = list(quality.trust_tasks)
        self.quality_cols = [j for j, (n, _) in enumerate(objectives) if n == "trust"]
        self.tolerance = trust_margins(objectives, tolerance)
        rng = np.random.default_rng(seed)
        self.n_items = {t: quality.n_items(t) for t in self.tasks}
        self.order = {t: rng.permutation(self.n_items[t]) for t in self.tasks}
        self.uniform = {t: rng.random((n_resamples, self.n_items[t])) for t in self.tasks}
        self.sets = list(dict.fromkeys(c.members for c in self.configs))
        self.members = list(dict.fromkeys(m for s in self.sets for m in s))
        self.preds = {t: np.stack([quality.predictions(t, list(s)) for s in self.sets]) for t in self.tasks}
        row = {s: i for i, s in enumerate(self.sets)}
        self.idx = np.array([row[c.members] for c in self.configs], dtype=np.int64)
        self.max_items = max(self.n_items.values())

    def spent(self, k: dict[str, int]) -> int:
        """Member-item evaluations of ``k`` (member -> items per task)."""
        return int(sum(min(v, n) for v in k.values() for n in self.n_items.values()))

    def estimate(self, k: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(Ye, P)``: objectives on the items of ``k`` ``(n, m)`` and P(front) ``(n,)``."""
        est, draws = _scores(self.quality, self.tasks, self.sets, k, self.preds, self.order, self.uniform,
                             self.n_items)
        Yb = np.repeat(self.Y[None], draws.shape[1], axis=0)
        Ye = self.Y.copy()
        for j in self.quality_cols:
            Yb[:, :, j] = draws[self.idx].T
            Ye[:, j] = est[self.idx]
        self.last_draws = Yb
        return Ye, pareto_probability(Yb)

    def contenders(self, p: np.ndarray, on: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """``(unsure, rivals)`` boolean ``(n,)`` masks for the latest :meth:`estimate`: without a
        tolerance, contenders by P(front) and the configurations dominating one of them in at least
        ``1 - confidence`` of the resamples; with one, the configurations the front does not cover
        at ``confidence`` and the front members beaten by more than the tolerance in at least
        ``1 - confidence`` of them, and as rivals the front members at most as costly as an
        uncovered configuration and those beating an unsure front member (module docstring).
        ``on``: ``(n,)`` the point-estimate front."""
        n = len(self.configs)
        if not self.tolerance.any():
            unsure = (p > 1 - confidence) & (p < confidence)
            dom = domination_share(self.last_draws, np.flatnonzero(unsure))
            return unsure, (dom >= 1 - confidence).any(axis=0) if unsure.any() else np.zeros(n, bool)
        # off the front: not covered at `confidence`; on it: beaten by more than the tolerance in
        # at least 1 - confidence of the resamples (a lucky estimate on a few items)
        front_rows = np.flatnonzero(on)
        beaten = domination_share(self.last_draws, front_rows, self.tolerance)  # (f, n)
        unsure = coverage_share(self.last_draws, front_rows, self.tolerance) < confidence
        unsure[front_rows] = (beaten >= 1 - confidence).any(axis=1)
        cost = [j for j in range(self.Y.shape[1]) if j not in self.quality_cols]
        cheap = (self.Y[None, :, cost] >= self.Y[np.flatnonzero(unsure & ~on)][:, None, cost]).all(axis=2)  # (u, n)
        rivals = on & cheap.any(axis=0)
        rivals |= (beaten[unsure[front_rows]] >= 1 - confidence).any(axis=0)
        return unsure, rivals

    def front(self, Ye: np.ndarray) -> frozenset[Configuration]:
        return frozenset(c for c, on in zip(self.configs, pareto_mask(fill_missing(Ye))) if on)


def adaptive_front(quality, configs: Sequence[Configuration], Y: np.ndarray, objectives: Sequence[tuple[str, str]],
                   *, start: int = 8, step: int = 8, confidence: float = 0.95, patience: int = 2,
                   front_level: float | None = None, budget: int | None = None, n_resamples: int = 200,
                   tolerance: float = 0.0, seed: int = 0) -> AdaptiveOutcome:
    """Adaptive item allocation over ``configs`` (the stopping rule: module docstring).

    Args:
        quality: the study's :class:`~codesign.explore.evaluator.QualityTable` (every answer stored).
        configs: the feasible configurations competing for the front.
        Y: ``(n, m)`` maximised objectives of ``configs`` on every item (the costs are used as they
            are; the quality columns are re-estimated on each member's items).
        objectives: ``(name, direction)`` of the columns of ``Y``.
        start, step: items per task a member starts with / gets per round.
        confidence: contenders are the configurations with ``1 - confidence < P(front) < confidence``.
        patience: rounds with added items the point-estimate front must survive unchanged.
        front_level: the least P(front) of every front member at the stop (None: ``1 - confidence``).
        budget: the most member-item evaluations to spend (None: no cap).
        tolerance: the indifference zone in trust points (module docstring; 0: exact fronts).
    """
    level = 1 - confidence if front_level is None else front_level
    sample = _ItemSample(quality, configs, Y, objectives, n_resamples, seed, tolerance)
    k = {m: start for m in sample.members}
    fronts: list[frozenset[Configuration]] = []
    history: list[tuple[int, int, int, float]] = []
    while True:
        Ye, p = sample.estimate(k)
        front = sample.front(Ye)
        fronts.append(front)
        on = np.array([c in front for c in sample.configs])
        unsure, rivals = sample.contenders(p, on, confidence)
        spent = sample.spent(k)
        history.append((spent, int(unsure.sum()), len(front), float(p[on].min()) if on.any() else float("nan")))
        stable = (len(fronts) > patience and all(f == front for f in fronts[-patience - 1:])
                  and bool((p[on] >= level).all()))
        # an ensemble is scored on the items all its members answered: only its members with the
        # fewest items limit it, so only they get more
        grow = {m for i in np.flatnonzero(unsure | rivals) for m in sample.configs[i].members
                if k[m] == min(k[x] for x in sample.configs[i].members) and k[m] < sample.max_items}
        stopped = ("settled" if not unsure.any() else "stable" if stable else "exhausted" if not grow
                   else "budget" if budget is not None and spent >= budget else "")
        if stopped:
            break
        for m in grow:
            k[m] += step
    fixed = len(sample.members) * sum(sample.n_items.values())
    return AdaptiveOutcome({m: k[m] for m in sample.members}, spent, fixed, sorted(front, key=configs.index),
                           len(history), int(unsure.sum()), stopped, history, fronts)


def fixed_limit_fronts(quality, configs: Sequence[Configuration], Y: np.ndarray,
                       objectives: Sequence[tuple[str, str]], limits: Sequence[int], *, seed: int = 0
                       ) -> dict[int, tuple[frozenset[Configuration], int]]:
    """limit -> (front, member-item evaluations) when every member is scored on the first ``limit``
    items of each task's seeded order (the orders :func:`adaptive_front` uses with the same ``seed``)."""
    sample = _ItemSample(quality, configs, Y, objectives, 1, seed)
    out = {}
    for limit in sorted(limits):
        k = {m: int(limit) for m in sample.members}
        out[int(limit)] = (sample.front(sample.estimate(k)[0]), sample.spent(k))
    return out


def covers(front, target, configs: Sequence[Configuration], Y: np.ndarray, objectives: Sequence[tuple[str, str]],
           tolerance: float = 0.0) -> bool:
    """Whether ``front`` reaches ``target`` within ``tolerance`` trust points: every target
    configuration has a front configuration at least as good in every cost and at most
    ``tolerance`` below it in trust, both valued by ``Y`` ``(n, m)`` (maximised, every item).
    With ``tolerance=0`` and fronts of non-dominated points this is the two fronts' equality of values."""
    row = {c: i for i, c in enumerate(configs)}
    need = [row[c] for c in target]
    if not need:
        return True
    if not front:
        return False
    # one "resample" (every item's values); 1e-12: equal values cover each other despite rounding
    share = coverage_share(np.asarray(Y, dtype=np.float64)[None], [row[c] for c in front],
                           trust_margins(objectives, tolerance) + 1e-12)
    return bool((share[need] == 1.0).all())


def trust_margins(objectives: Sequence[tuple[str, str]], tolerance: float) -> np.ndarray:
    """``(m,)`` indifference margins: ``tolerance`` on trust, 0 on every other (exact cost) column."""
    return np.array([tolerance if n == "trust" else 0.0 for n, _ in objectives])


def fixed_limit_baseline(fronts: dict[int, tuple[frozenset[Configuration], int]], target,
                         reaches=None) -> dict[str, tuple[int, int] | None]:
    """The fixed-limit runs that reach ``target`` (from :func:`fixed_limit_fronts`):

    - ``first``: the fewest items per member whose front reaches ``target`` (possibly by luck: a
      larger limit may not);
    - ``stable``: the fewest items per member from which every larger limit reaches ``target`` too
      (what a fixed-limit run needs to reach it reliably).

    ``reaches(front) -> bool`` (None: the front is the set ``target``; e.g. :func:`covers` with a
    tolerance). Each is ``(limit, member-item evaluations)``, None when no limit reaches ``target``.
    """
    target = frozenset(target)
    reaches = reaches or (lambda front: front == target)
    limits = sorted(fronts)
    hits = [L for L in limits if reaches(fronts[L][0])]
    first = (hits[0], fronts[hits[0]][1]) if hits else None
    stable = None
    for L in reversed(limits):
        if not reaches(fronts[L][0]):
            break
        stable = (L, fronts[L][1])
    return {"first": first, "stable": stable}


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
            est = task.bootstrap_scores(items, preds[t][rows], point, quality.policy)[:, 0]
            draws = task.bootstrap_scores(items, preds[t][rows], counts, quality.policy)
            # finite-population correction: the target is the score on all n items, of which kk are
            # known, so the spread shrinks by sqrt((n - kk) / (n - 1)) and vanishes with every item
            fpc = np.sqrt((n - kk) / max(n - 1, 1))
            per_task_est[ti, rows] = est
            per_task_draw[ti, rows] = est[:, None] + fpc * (draws - est[:, None])
    return _nanmean(per_task_est), _nanmean(per_task_draw)


def _nanmean(x: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
