"""Uncertainty of trust numbers: the paired item bootstrap, its intervals, Pareto probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from codesign.evaluate.tasks import get_task
from codesign.evaluate.tasks.base import Task
from codesign.explore.uncertainty import (index_counts, indistinguishable, pareto_probability, resample_indices,
                                          summarize_draws)
from codesign.records import INVALID, REFUSED


def items_frame(its):
    return pd.DataFrame({"item_id": [i.item_id for i in its], "subtask": [i.subtask for i in its],
                         "label": [i.label for i in its], "meta": [i.meta for i in its]})


@pytest.mark.parametrize("name", ["advglue", "ethics", "ood"])
def test_vectorized_bootstrap_equals_the_tasks_own_score_on_each_resample(name, data_dir):
    task = get_task(name, protocol="decodingtrust")
    its = task.load(data_dir, limit=40, seed=0)
    items = items_frame(its)
    rng = np.random.default_rng(1)
    n = len(items)
    n_opt = np.array([len(it.options) for it in its])
    preds = np.stack([np.where(rng.random(n) < 0.2, rng.choice([REFUSED, INVALID], n),
                               rng.integers(0, n_opt)) for _ in range(3)])
    counts = index_counts(resample_indices(n, 12, rng), n)
    fast = task.bootstrap_scores(items, preds, counts, "decodingtrust")
    slow = Task.bootstrap_scores(task, items, preds, counts, "decodingtrust")  # the task's own score per resample
    assert fast.shape == (3, 12)
    np.testing.assert_allclose(fast, slow, rtol=1e-10, equal_nan=True)
    # a resample that draws every item once is the plain score
    ones = np.ones((1, n), dtype=np.int64)
    assert task.bootstrap_scores(items, preds[:1], ones, "decodingtrust")[0, 0] == pytest.approx(
        task.score(items, preds[0], "decodingtrust")["score"])


def test_intervals_cover_a_known_binomial_rate_at_the_nominal_level():
    """Items answered correctly with probability 0.7: the 95% percentile interval of the accuracy
    covers 70 in about 95% of replicated studies (binomial SE at n=60: 5.9 points)."""
    task = get_task("advglue", protocol="decodingtrust")
    n, reps, rate = 60, 400, 0.7
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "subtask": "sst2", "label": 1,
                          "meta": [{"scored": True}] * n})
    rng = np.random.default_rng(0)
    counts = index_counts(resample_indices(n, 400, rng), n)  # the same resamples serve every replicate
    preds = (rng.random((reps, n)) < rate).astype(np.int64)  # 1 = the gold label
    draws = task.bootstrap_scores(items, preds, counts, "decodingtrust")  # (reps, B), one call
    cover, ses = 0, []
    for d in draws:
        se, lo, hi = summarize_draws(d, 0.95)
        cover += lo <= 100 * rate <= hi
        ses.append(se)
    assert 0.91 <= cover / reps <= 0.98
    assert np.mean(ses) == pytest.approx(100 * np.sqrt(rate * (1 - rate) / n), rel=0.1)


def test_pareto_probability_far_dominating_and_identical_configurations():
    rng = np.random.default_rng(0)
    B = 400
    # objective 0: trust (noisy), objective 1: -latency (exact)
    far = np.stack([90 + rng.normal(0, 2, B), np.full(B, -1.0)], axis=-1)
    dominated = np.stack([40 + rng.normal(0, 2, B), np.full(B, -5.0)], axis=-1)
    assert pareto_probability(np.stack([far, dominated], axis=1)).tolist() == [1.0, 0.0]
    # two configurations of equal cost and equal expected trust, each scored on its own answers
    a = np.stack([60 + rng.normal(0, 3, B), np.full(B, -2.0)], axis=-1)
    b = np.stack([60 + rng.normal(0, 3, B), np.full(B, -2.0)], axis=-1)
    p = pareto_probability(np.stack([far * [1, 0] + [0, -9.0], a, b], axis=1))  # far: best trust, slowest
    assert p[0] == 1.0
    assert p[1] == pytest.approx(0.5, abs=0.08) and p[2] == pytest.approx(0.5, abs=0.08)


def test_indistinguishable_uses_the_paired_difference():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 5, 300)  # item-sample noise both configurations share
    a = {"trust": 60 + shared}
    assert indistinguishable(a, {"trust": 61 + shared + rng.normal(0, 0.2, 300)}) is False  # small but consistent
    assert indistinguishable(a, {"trust": 60 + shared + rng.normal(0, 2, 300)}) is True
    assert indistinguishable(a, a) is True


TASKS = ["advglue", "ethics", "ood"]


@pytest.fixture(scope="module")
def study_store(tmp_path_factory, data_dir):
    """A synthetic catalogue (RTN+GPTQ at 3/4/8 bits, real items and store) and its exhaustive study."""
    from codesign.explore.config import StudyConfig
    from codesign.explore.study import build_context, run_study
    from codesign.explore.synthetic import fill_synthetic_store, synthetic_catalogue
    from codesign.store import ResultStore

    members = synthetic_catalogue(methods=("rtn", "gptq"), bits=(3, 4, 8))
    store = ResultStore(tmp_path_factory.mktemp("unc") / "results.db")
    fill_synthetic_store(store, members, TASKS, data_dir=data_dir, limit=24, seed=0)
    cfg = StudyConfig.model_validate(dict(
        name="u", catalogue={"methods": ["rtn", "gptq"], "bits": [3, 4, 8]}, tasks=TASKS, items="stored",
        objectives=["trust", "tpot_ms"], specs=["h100-sxm"], schedules=["sequential"], max_members=2,
        methods=["exhaustive"], uncertainty={"resamples": 100}))
    ctx = build_context(cfg, store, members=members, progress=False)
    result = run_study(ctx)
    yield store, ctx, result
    store.close()


def test_study_result_carries_intervals_pareto_probabilities_and_alternatives(study_store):
    from codesign.explore.results import distinct

    store, ctx, result = study_store
    points = store.study_points("u")
    idx, _ = distinct(points)
    assert result.bootstrap is not None and result.bootstrap.n_resamples == 100
    assert len(result.intervals) == len(idx) == 6 + 15  # every feasible member set of size 1-2, trust only
    for i in idx:
        iv = result.interval(points[i].key, "trust")
        assert iv.estimate == pytest.approx(points[i].value("trust"))
        assert iv.low <= iv.estimate <= iv.high and 0 < iv.se < 20
    probs = {p.point: p.probability for p in result.pareto_probability}
    front = [f.point for f in result.front_of(None)]
    assert all(probs[k] > 0 for k in front) and max(probs.values()) == 1.0  # the fastest config is always on it
    off = [k for k in probs if k not in front]
    assert off and np.mean([probs[k] for k in off]) < np.mean([probs[k] for k in front])
    for r in result.recommendations:
        assert r.point not in r.alternatives and set(r.alternatives) <= set(front)
    # what explore stored is what the report reads back
    assert store.study_result("u") == result
    with type(store)(store.path, read_only=True) as ro:
        assert ro.study_result("u").intervals == result.intervals


def test_paired_draws_are_shared_across_member_sets_and_reproducible(study_store):
    from codesign.explore.uncertainty import quality_draws
    from codesign.records import BootstrapSettings

    _, ctx, _ = study_store
    q = ctx.evaluator.quality
    a, b = ctx.space.members[:2]
    s = BootstrapSettings(50, 0.95, 3)
    d1 = quality_draws(q, [(a,), (a, b)], ["trust"], s)
    d2 = quality_draws(q, [(a, b), (a,)], ["trust"], s)
    np.testing.assert_array_equal(d1[(a,)]["trust"], d2[(a,)]["trust"])
    # a two-member vote of a member with itself would be itself: same answers -> identical draws
    assert np.isfinite(d1[(a, b)]["trust"]).all()
    assert abs(d1[(a,)]["trust"].mean() - q.quality([a])["trust"]) < 4


def test_outputs_and_report_show_intervals(study_store, tmp_path):
    from codesign.explore.outputs import write_outputs
    from codesign.report.data import collect
    from codesign.report.tables import pareto_table, recommendation_table

    store, ctx, result = study_store
    files = write_outputs(store, result, ctx.specs, tmp_path)
    front = pd.read_csv(files[0])
    assert {"trust_low", "trust_high", "trust_se", "p_pareto"} <= set(front.columns)
    assert (front["trust_low"] <= front["trust"]).all() and (front["trust"] <= front["trust_high"]).all()
    with type(store)(store.path, read_only=True) as ro:
        data = collect(ro, "u")
    t = pareto_table(data)
    assert "trust 95% interval" in t and "P(on front)" in t and t["trust 95% interval"].str.startswith("[").all()
    rec = recommendation_table(data)
    assert "statistically indistinguishable alternatives" in rec


def test_bo_gp_receives_trust_variances_as_fixed_noise(study_store):
    import dataclasses

    import torch

    from codesign.explore.bo import observation_noise
    from codesign.explore.study import make_searcher
    from codesign.explore.uncertainty import quality_draws
    from codesign.records import BootstrapSettings

    _, ctx, _ = study_store
    configs = ctx.space.enumerate()[:10]
    Y = ctx.to_max([r.objectives for r in ctx.evaluator.evaluate(configs)])
    Yvar = ctx.observation_variance(configs)
    # trust: the squared bootstrap SE of each configuration's member set; tpot_ms: exact
    se = quality_draws(ctx.evaluator.quality, [configs[3].members], ["trust"],
                       BootstrapSettings(100, 0.95, ctx.cfg.seed))[configs[3].members]["trust"].std(ddof=1)
    assert Yvar[3, 0] == pytest.approx(se ** 2) and (Yvar[:, 0] > 1).all() and (Yvar[:, 1] == 0).all()
    bo = make_searcher(ctx, "bo", 0)
    assert len(bo.propose(configs, Y, 2, Yvar)) == 2
    # the GP models trust only (tpot_ms is looked up exactly), with trust's variances as its noise
    model = bo.last_model
    noise = model.likelihood.noise_covar.noise.reshape(-1, 1) * model.outcome_transform.stdvs ** 2
    expected = observation_noise(torch.as_tensor(Y[:, :1]), torch.as_tensor(Yvar[:, :1]))
    torch.testing.assert_close(noise, expected)
    assert torch.allclose(noise[:, 0], torch.as_tensor(Yvar[:, 0]))  # trust's variances themselves (above the floor)
    # with exact_costs off, one GP of both objectives: tpot_ms gets the floor only
    opt = ctx.cfg.optimizer.model_copy(update={"exact_costs": False})
    bo = make_searcher(dataclasses.replace(ctx, cfg=ctx.cfg.model_copy(update={"optimizer": opt})), "bo", 0)
    assert len(bo.propose(configs, Y, 2, Yvar)) == 2
    model = bo.last_model
    noise = model.likelihood.noise_covar.noise.T * model.outcome_transform.stdvs ** 2
    torch.testing.assert_close(noise, observation_noise(torch.as_tensor(Y), torch.as_tensor(Yvar)))


def test_same_config_and_seed_evaluate_the_same_configurations(study_store, tmp_path):
    import shutil

    import torch

    from codesign.explore.study import build_context, run_method
    from codesign.store import ResultStore

    store, ctx, _ = study_store
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the copies must hold every stored answer
    runs = []
    for k in range(2):
        shutil.copy(store.path, tmp_path / f"r{k}.db")
        torch.manual_seed(100 + k)  # a different global random state each time must not matter
        np.random.seed(100 + k)
        with ResultStore(tmp_path / f"r{k}.db") as s:
            c = build_context(ctx.cfg.model_copy(update={"optimizer": ctx.cfg.optimizer.model_copy(
                update={"n_init": 4, "q": 2, "mc_samples": 16})}), s, name="repro", members=ctx.members, progress=False)
            s.create_study("repro", {"repro": True})
            runs.append([p.config for p in run_method(c, "bo", seed=5, budget=10)])
    assert len(runs[0]) == 10 and runs[0] == runs[1]


def test_terminal_summary_fits_80_columns_with_intervals(study_store):
    from codesign.explore.results import describe

    store, ctx, result = study_store
    text = describe(result, store.study_points("u"), ctx.specs)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert lines[0].split()[:3] == ["#", "ensemble", "schedule"] and "P(front)" in lines[0]
    assert any("(" in line and "-" in line for line in lines[1:])  # trust as estimate (low-high)
    assert any(line.startswith("Highest trust score: #1") for line in lines), text


def test_adaptive_item_budget_spends_less_and_full_items_reproduce_the_fixed_front(study_store):
    from codesign.explore.adaptive import adaptive_front
    from codesign.explore.results import distinct, maximised
    from codesign.pareto import pareto_mask

    store, ctx, _ = study_store
    pts = [p for p in store.study_points("u") if p.method == "exhaustive"]
    idx, _ = distinct(pts)
    configs = [pts[i].config for i in idx]
    Y = maximised([pts[i] for i in idx], ctx.objectives)
    fixed_front = [c for c, on in zip(configs, pareto_mask(Y)) if on]
    q = ctx.evaluator.quality
    full = adaptive_front(q, configs, Y, ctx.objectives, start=10_000, n_resamples=50)
    assert full.evaluations == full.fixed_evaluations and full.rounds == 1
    assert set(full.front) == set(fixed_front)  # every item: exactly the fixed-limit front
    ad = adaptive_front(q, configs, Y, ctx.objectives, start=4, step=4, n_resamples=60)
    assert ad.evaluations <= ad.fixed_evaluations and ad.rounds > 1
    assert ad.history[0][0] == 4 * len(ad.items) * 3  # every member starts on 4 items of each of 3 tasks
    spent = [h[0] for h in ad.history]
    assert spent == sorted(spent) and ad.evaluations == spent[-1]
    capped = adaptive_front(q, configs, Y, ctx.objectives, start=4, step=4, n_resamples=60, budget=spent[1])
    assert capped.evaluations == spent[1] and capped.rounds == 2  # stops when the budget is spent


def test_member_stage_runs_with_the_method_bar_closed(study_store, monkeypatch):
    """One progress bar at a time: the search's bar is closed while members are quantized and
    evaluated (their stage has its own bar), then reopened where it was."""
    import tqdm.auto

    from codesign.explore.study import build_context, run_method

    open_bars: list = []

    class Bar:
        def __init__(self, *args, desc=None, initial=0, **kwargs):
            self.desc, self.n = desc, initial
            open_bars.append(self)

        def update(self, n=1):
            self.n += n

        def close(self):
            if self in open_bars:
                open_bars.remove(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    store, ctx, _ = study_store
    c = build_context(ctx.cfg, store, name="bars", members=ctx.members, progress=True)
    store.create_study("bars", {"bars": True})
    late = set(ctx.members[i].variant_id for i in (0, 1))  # these two "have no answers yet"
    real = c.evaluator.quality.is_cached
    monkeypatch.setattr(c.evaluator.quality, "is_cached", lambda m: m not in late and real(m))
    during: list = []

    def ensure(missing):
        during.append([(b.desc, b.n) for b in open_bars])
        late.difference_update(missing)

    c.evaluator.ensure_members = ensure
    run_method(c, "random", 0, budget=12)
    assert during and all(bars == [] for bars in during)  # no method bar open while members run
    assert open_bars == []
