"""Adaptive item budget (codesign.explore.adaptive) on a small synthetic catalogue: single-member
configurations, one task, answers drawn so that the front is clear except one pair that needs items."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.explore.adaptive import adaptive_front, fixed_limit_baseline, fixed_limit_fronts
from codesign.records import Configuration

N_ITEMS = 96
OBJECTIVES = [("trust", "max"), ("cost", "min")]


class _Task:
    """Accuracy in percent on each resample: ``counts``-weighted share of correct answers."""

    def bootstrap_scores(self, items, preds, counts, policy):
        return 100.0 * (preds @ counts.T) / counts.sum(axis=1)  # (S, B)


class _Quality:
    """The slice of QualityTable the adaptive run reads: one trust task, a 0/1 answer per item."""

    trust_tasks = ("t",)
    policy = None

    def __init__(self, correct: dict[str, np.ndarray]):
        self.correct = correct

    def n_items(self, task):
        return N_ITEMS

    def items(self, task):
        return list(range(N_ITEMS))

    def task(self, task):
        return _Task()

    def predictions(self, task, members):
        (m,) = members
        return self.correct[m].astype(np.float64)


def _catalogue(seed: int = 0):
    """``a`` (cheapest, weak), ``b`` and ``x`` (x: b's answers plus 12 more right, dearer; the pair
    that needs items) and ten fillers clearly dominated by ``b``."""
    rng = np.random.default_rng(seed)
    b = rng.random(N_ITEMS) < 0.7
    x = b.copy()
    x[rng.choice(np.flatnonzero(~b), 12, replace=False)] = True
    correct = {"a": rng.random(N_ITEMS) < 0.3, "b": b, "x": x}
    cost = {"a": 1.0, "b": 2.0, "x": 3.0}
    for i in range(10):
        correct[f"f{i}"] = rng.random(N_ITEMS) < 0.2
        cost[f"f{i}"] = 2.5 + 0.1 * i
    configs = [Configuration((m,), "sequential", "h100-sxm") for m in correct]
    Y = np.array([[100 * correct[m].mean(), -cost[m]] for m in correct])
    return _Quality(correct), configs, Y


def test_adaptive_reaches_the_fixed_limit_front_with_fewer_member_item_evaluations():
    quality, configs, Y = _catalogue()
    out = adaptive_front(quality, configs, Y, OBJECTIVES, start=4, step=4, n_resamples=100)
    fronts = fixed_limit_fronts(quality, configs, Y, OBJECTIVES, range(1, N_ITEMS + 1))
    full_front = fronts[N_ITEMS][0]
    assert {c.members[0] for c in full_front} == {"a", "b", "x"}
    assert set(out.front) == full_front  # the same front as every member on every item
    base = fixed_limit_baseline(fronts, out.front)
    assert base["first"] is not None and base["stable"] is not None
    assert out.evaluations < base["stable"][1] < out.fixed_evaluations
    # items go to the contenders: x and b grow, most fillers stay on their first 4 items
    assert out.items["x"] > 4 and out.items["b"] > 4
    assert sum(out.items[f"f{i}"] == 4 for i in range(10)) >= 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adaptive_never_stops_before_its_criterion_holds(seed):
    quality, configs, Y = _catalogue(seed)
    patience = 2
    out = adaptive_front(quality, configs, Y, OBJECTIVES, start=2, step=2, patience=patience, n_resamples=100)
    contenders, last_front, min_p = out.history[-1][1], out.fronts[-1], out.history[-1][3]
    if out.stopped == "settled":
        assert contenders == 0
    elif out.stopped == "stable":
        assert len(out.fronts) > patience and all(f == last_front for f in out.fronts[-patience - 1:])
        assert min_p >= 0.05
    else:
        assert out.stopped == "exhausted" and out.evaluations == out.fixed_evaluations
    for i in range(len(out.fronts) - 1):  # no earlier round met it
        h = out.history[i]
        earlier = out.fronts[max(0, i - patience): i + 1]
        assert h[1] > 0 and not (i >= patience and all(f == out.fronts[i] for f in earlier) and h[3] >= 0.05)


def test_fixed_limit_baseline_first_and_stable_limits():
    fa, fb = frozenset({"a"}), frozenset({"b"})
    fronts = {1: (fb, 10), 2: (fa, 20), 3: (fb, 30), 4: (fa, 40), 5: (fa, 50)}
    assert fixed_limit_baseline(fronts, fa) == {"first": (2, 20), "stable": (4, 40)}
    assert fixed_limit_baseline(fronts, frozenset({"c"})) == {"first": None, "stable": None}


def _near_tie_catalogue(seed: int = 0):
    """``a`` (cheap, weak) and a near-tie at the same cost: ``y`` is ``b`` with one more item right
    (1.04 trust points apart), plus ten dominated fillers."""
    quality, configs, Y = _catalogue(seed)
    b = quality.correct["b"]
    y = b.copy()
    y[np.flatnonzero(~b)[0]] = True
    quality.correct = {"a": quality.correct["a"], "b": b, "y": y,
                       **{f"f{i}": quality.correct[f"f{i}"] for i in range(10)}}
    cost = {"a": 1.0, "b": 2.0, "y": 2.0, **{f"f{i}": 2.5 + 0.1 * i for i in range(10)}}
    configs = [Configuration((m,), "sequential", "h100-sxm") for m in quality.correct]
    Y = np.array([[100 * quality.correct[m].mean(), -cost[m]] for m in quality.correct])
    return quality, configs, Y


def test_tolerance_settles_a_near_tie_with_fewer_items_and_still_covers_the_full_front():
    from codesign.explore.adaptive import covers

    quality, configs, Y = _near_tie_catalogue()
    exact = adaptive_front(quality, configs, Y, OBJECTIVES, start=4, step=4, n_resamples=100)
    tol = adaptive_front(quality, configs, Y, OBJECTIVES, start=4, step=4, n_resamples=100, tolerance=2.0)
    fronts = fixed_limit_fronts(quality, configs, Y, OBJECTIVES, range(1, N_ITEMS + 1))
    full = fronts[N_ITEMS][0]
    assert {c.members[0] for c in full} == {"a", "y"}
    assert tol.evaluations < exact.evaluations and set(tol.front) <= {c for c in configs if c.members[0] in "aby"}
    assert covers(tol.front, full, configs, Y, OBJECTIVES, tolerance=2.0)
    # b stands for y within 2 trust points, not within 0.5 (they are 1.04 apart)
    front_b = frozenset(c for c in configs if c.members[0] in ("a", "b"))
    assert covers(front_b, full, configs, Y, OBJECTIVES, 2.0) and not covers(front_b, full, configs, Y, OBJECTIVES, 0.5)
    base = fixed_limit_baseline(fronts, full, lambda f: covers(f, full, configs, Y, OBJECTIVES, 2.0))
    exact_base = fixed_limit_baseline(fronts, full)
    assert base["stable"] is not None and (exact_base["stable"] is None or base["stable"][0] <= exact_base["stable"][0])


def test_coverage_and_domination_shares_with_a_tolerance():
    from codesign.explore.uncertainty import coverage_share, domination_share

    # (trust, -cost) on 2 resamples: b is 0.5 above a at the same cost (1 below on the second), c 1.5 below, d cheaper and weak
    Y = np.array([[[50.0, -1.0], [50.5, -1.0], [48.5, -1.0], [40.0, -0.5]],
                  [[50.0, -1.0], [49.0, -1.0], [48.5, -1.0], [40.0, -0.5]]])
    tol = np.array([1.0, 0.0])
    # a alone covers b within 1 point on both resamples, c always, d never (d is cheaper)
    assert coverage_share(Y, [0], tol).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert coverage_share(Y, [0], np.zeros(2)).tolist() == [1.0, 0.5, 1.0, 0.0]
    # who beats a: b on resample 0 without a margin, nobody by a full point
    assert domination_share(Y, [0]).tolist() == [[0.0, 0.5, 0.0, 0.0]]
    assert domination_share(Y, [0], tol).tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert domination_share(Y, [2], tol).tolist() == [[1.0, 0.5, 0.0, 0.0]]
