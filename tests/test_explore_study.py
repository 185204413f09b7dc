"""Studies end to end on a synthetic catalogue (real items, real SQLite store, real voting, real
hardware model, real BoTorch), resume after interruption, bad configs, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from codesign.config import ConfigError
from codesign.explore.config import StudyConfig
from codesign.explore.synthetic import fill_synthetic_store, synthetic_catalogue

TASKS = ["advglue", "fairness", "ethics", "ood"]


def make_cfg(**over) -> StudyConfig:
    data = dict(
        name="t", catalogue={"methods": ["rtn", "gptq"], "bits": [3, 4, 8]}, tasks=TASKS, items="stored",
        mode="loglik", objectives=["trust", "tpot_ms", "peak_memory_gb"], specs=["h100-sxm"],
        schedules=["sequential", "parallel"], max_members=3,
        optimizer={"q": 2, "n_init": 4, "iterations": 2, "mc_samples": 32},
    )
    data.update(over)
    return StudyConfig.model_validate(data)


@pytest.fixture(scope="module")
def synth_template(tmp_path_factory, data_dir):
    """A store with 6 members' answers, written once per module and copied for each test."""
    from codesign.store import ResultStore

    path = tmp_path_factory.mktemp("synth") / "template.db"
    members = synthetic_catalogue(methods=("rtn", "gptq"), bits=(3, 4, 8))
    with ResultStore(path) as s:
        fill_synthetic_store(s, members, TASKS, data_dir=data_dir, limit=24, seed=0)
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path, members


@pytest.fixture()
def synth(synth_template, tmp_path):
    import shutil

    from codesign.store import ResultStore

    path, members = synth_template
    shutil.copy(path, tmp_path / "results.db")
    with ResultStore(tmp_path / "results.db") as s:
        yield s, members


def ctx_for(store, members, **over):
    from codesign.explore.study import build_context

    return build_context(make_cfg(**over), store, members=members, progress=False)


def test_quality_equals_the_vote_stage(synth):
    """Ensemble trust in the explorer is exactly what the voting stage reports for the same members."""
    from codesign.vote import score_ensemble

    store, members = synth
    ctx = ctx_for(store, members)
    ens = [members[0].variant_id, members[2].variant_id, members[4].variant_id]
    mine = ctx.evaluator.quality.scores(ens)
    theirs = score_ensemble(store, ens, tasks=TASKS, mode="loglik", n_boot=0)
    for _, row in theirs.iterrows():
        assert mine[row["task"]]["score"] == pytest.approx(row["score"])
    # and a different ensemble scores differently (the objective is not constant)
    other = ctx.evaluator.quality.quality([members[0].variant_id])["trust"]
    assert other != pytest.approx(ctx.evaluator.quality.quality(ens)["trust"])


def test_bo_study_stores_every_point_and_resumes_after_interrupt(synth):
    from codesign.explore.study import run_method

    store, members = synth
    ctx = ctx_for(store, members)
    store.create_study("t", {"x": 1})
    calls = {"n": 0}
    real = ctx.evaluator.evaluate

    def interrupt_on_third_batch(batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(batch)

    ctx.evaluator.evaluate = interrupt_on_third_batch
    with pytest.raises(KeyboardInterrupt):
        run_method(ctx, "bo", seed=0, budget=8)
    before = store.study_points("t", method="bo", seed=0)
    assert 0 < len(before) < 8
    # a fresh process: new context over the same store picks up where it stopped
    ctx2 = ctx_for(store, members)
    n_eval = {"configs": 0}
    real2 = ctx2.evaluator.evaluate

    def count(batch):
        n_eval["configs"] += len(batch)
        return real2(batch)

    ctx2.evaluator.evaluate = count
    pts = run_method(ctx2, "bo", seed=0, budget=8)
    assert len(pts) == 8 and n_eval["configs"] == 8 - len(before)
    assert [p.point_id for p in pts] == list(range(8))
    assert len({p.config for p in pts}) == 8  # distinct configurations
    # earlier points are kept as they were
    assert pts[: len(before)] == before
    assert {"trust", "tpot_ms", "peak_memory_gb", "adv", "fairness", "ethics", "ood"} <= set(pts[0].objectives)
    assert set(pts[0].config.to_dict()) == {"members", "schedule", "spec", "knobs"}


def test_methods_share_harness_and_exhaustive_front_bounds_them(synth):
    from codesign.explore.study import run_study

    store, members = synth
    ctx = ctx_for(store, members, methods=["bo", "random", "nsga2"])
    res = run_study(ctx)
    from collections import Counter

    by = Counter(p.method for p in store.study_points("t"))
    budget = 4 + 2 * 2
    assert by["bo"] == by["random"] == by["nsga2"] == budget
    assert by["exhaustive"] == ctx.space.n_discrete()  # everything fits on an H100
    assert res.reference_hv and res.reference_hv > 0
    final = {h.method: h for h in res.final_hypervolume()}
    assert final["exhaustive"].n_evals == ctx.space.n_discrete()
    for m in ("bo", "random", "nsga2"):
        assert final[m].n_evals == budget
        assert 0 < final[m].hv <= res.reference_hv + 1e-9
        assert final[m].hv_fraction <= 1 + 1e-9
    front = res.front_of(None)
    assert front and any("exhaustive" in f.found_by for f in front)
    assert store.study_result("t") == res  # the result is stored for the report


def test_bo_with_parego_starts_from_the_random_design_and_proposes_new_points(synth):
    from codesign.explore.study import run_method

    store, members = synth
    ctx = ctx_for(store, members, optimizer={"algorithm": "qlognparego", "q": 3, "n_init": 4, "iterations": 1})
    store.create_study("t", {})
    pts = run_method(ctx, "bo", seed=1)
    assert len(pts) == 7 and max(p.iteration for p in pts) == 1
    configs = [p.config for p in pts]
    assert len(set(configs)) == 7  # BO never re-proposes an evaluated configuration
    # the initial design is random search's first points (common random numbers), then one batch of q = 3
    init = [p for p in pts if p.iteration == 0]
    assert len(init) == 4 and [p.iteration for p in pts].count(1) == 3
    rand = run_method(ctx, "random", seed=1, budget=4)
    assert {p.config for p in init} == {p.config for p in rand}
    # stored objectives are the evaluator's for each configuration, and every proposal is in the space
    space = set(ctx.space.enumerate())
    for p, r in zip(pts, ctx.evaluator.evaluate(configs)):
        assert p.config in space
        assert p.objectives == pytest.approx(r.objectives) and p.feasible == r.feasible
    assert [p.config for p in store.study_points("t", "bo", 1)] == configs


def test_bo_looks_up_exact_costs_and_models_quality_over_the_members_only(synth):
    import numpy as np
    import torch
    from botorch.models.model import ModelList

    from codesign.explore.study import make_searcher

    store, members = synth
    ctx = ctx_for(store, members)
    configs = ctx.space.enumerate()[:12:2]
    results = ctx.evaluator.evaluate(configs)
    Y = ctx.to_max([r.objectives for r in results])
    bo = make_searcher(ctx, "bo", 0)
    picks = bo.propose(configs, Y, 2, ctx.observation_variance(configs))
    assert len(picks) == 2 and not set(picks) & set(configs)
    surrogate = bo.last_surrogate
    assert isinstance(surrogate, ModelList) and surrogate.models[0] is bo.last_model
    # the GP: trust only, on the member dimensions of the encoding
    assert bo.last_model.num_outputs == 1
    assert bo.last_model.covar_module.active_dims.tolist() == list(range(ctx.space.n_members))
    # the lookup: the evaluator's own tpot_ms and peak_memory_gb (maximised) for any configuration
    others = ctx.space.enumerate()[-5:]
    X = torch.as_tensor(ctx.space.encode(others), dtype=torch.double)
    looked_up = surrogate.models[1].posterior(X).mean.squeeze(0).numpy()
    truth = ctx.to_max([r.objectives for r in ctx.evaluator.evaluate(others)])[:, 1:]
    np.testing.assert_allclose(looked_up.reshape(truth.shape), truth)


def test_exact_model_rejects_an_encoding_outside_its_table():
    import torch

    from codesign.explore.bo import exact_model

    X = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.double)
    model = exact_model(X, torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.double))
    assert model.posterior(X[[1, 0, 1]]).mean.squeeze(0).tolist() == [[3.0, 4.0], [1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(KeyError):
        model.posterior(torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.double))


def test_constraints_filter_and_infeasible_everywhere_is_a_clear_error(synth):
    from codesign.explore.study import check_feasible, run_method

    store, members = synth
    ctx = ctx_for(store, members, constraints={"max_tpot_ms": 1e-6})
    with pytest.raises(ConfigError) as e:
        check_feasible(ctx)
    msg = str(e.value)
    assert "no configuration is feasible" in msg and "max_tpot_ms=1e-06" in msg and "tpot_ms=" in msg
    # a binding SLO: only single members and small ensembles pass; BO proposes feasible ones only
    costs = [ctx.evaluator.costs.costs(c)["tpot_ms"] for c in ctx.space.enumerate()]
    slo = float(np.quantile(costs, 0.4))
    ctx = ctx_for(store, members, constraints={"max_tpot_ms": slo})
    store.create_study("t", {})
    pts = run_method(ctx, "bo", seed=0, budget=6)
    assert all(p.feasible for p in pts)
    assert all(p.objectives["tpot_ms"] <= slo for p in pts)


def test_empty_catalogue_and_unknown_spec_are_clear_errors(store):
    from codesign.explore.study import build_context

    with pytest.raises(ConfigError, match="catalogue yields no variants"):
        build_context(make_cfg(), store, members=[], progress=False)
    with pytest.raises(ConfigError, match="unknown accelerator spec 'nope'"):
        build_context(make_cfg(specs=["nope"]), store, members=synthetic_catalogue(), progress=False)


def test_knobs_mixed_space(synth):
    """A spec knob explored continuously: proposals stay in range and costs respond to it."""
    import hwmodels

    from codesign.explore.study import run_method

    store, members = synth
    spec = hwmodels.load_spec("mpu-hypo")
    if "bandwidth_gbs" not in spec.knobs:
        pytest.skip("mpu-hypo declares no bandwidth_gbs knob")
    lo, hi = spec.knobs["bandwidth_gbs"].bounds
    # three members keep the pool small; mixed_max_combos=1 forces the pool + gradient-refine path
    ctx = ctx_for(store, members[:3], specs=["mpu-hypo"], knobs={"bandwidth_gbs": None},
                  optimizer={"q": 2, "n_init": 4, "iterations": 1, "mc_samples": 16, "knob_samples": 4,
                             "mixed_max_combos": 1})
    store.create_study("t", {})
    pts = run_method(ctx, "bo", seed=0)
    assert len(pts) == 6
    bws = [dict(p.config.knobs)["bandwidth_gbs"] for p in pts]
    assert all(lo - 1e-6 <= b <= hi + 1e-6 for b in bws)
    c0 = ctx.space.enumerate()[0]
    from dataclasses import replace

    slow = ctx.evaluator.costs.costs(replace(c0, knobs=(("bandwidth_gbs", lo),)))["tpot_ms"]
    fast = ctx.evaluator.costs.costs(replace(c0, knobs=(("bandwidth_gbs", hi),)))["tpot_ms"]
    assert fast < slow


# the rounded random inputs repeat: their joint posterior is singular and gpytorch adds jitter
@pytest.mark.filterwarnings("ignore::linear_operator.utils.warnings.NumericalWarning")
def test_cost_aware_acquisition_penalises_unevaluated_members():
    import torch

    from codesign.explore.bo import CostAwareAcquisition, fit_model
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement

    torch.manual_seed(0)
    X = torch.rand(8, 4, dtype=torch.double).round()
    Y = torch.stack([X.sum(-1), -X[:, 0]], -1) + 0.01 * torch.randn(8, 2, dtype=torch.double)
    model = fit_model(X, Y)
    base = qLogNoisyExpectedHypervolumeImprovement(model, ref_point=[-1.0, -2.0], X_baseline=X)
    uncached = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.double)
    acq = CostAwareAcquisition(base, uncached, penalty=2.0)
    cand = torch.tensor([[[1, 1, 1, 0]], [[1, 0, 0, 1]]], dtype=torch.double)
    diff = (base(cand) - acq(cand)).tolist()
    assert diff == pytest.approx([4.0, 0.0])
    # pending points already pay for their members
    acq.set_X_pending(torch.tensor([[0, 1, 0, 0]], dtype=torch.double))
    assert (base(cand[:1]) - acq(cand[:1])).item() == pytest.approx(2.0, abs=0.5)


def test_ray_executor_without_ray_names_the_extra():
    pytest.importorskip  # noqa: B018
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ImportError:
        pass
    from codesign.explore.executor import get_executor

    with pytest.raises(ConfigError, match=r"pip install 'codesign\[ray\]'"):
        get_executor("ray")
    with pytest.raises(ConfigError, match="allowed: inprocess, pool, ray"):
        get_executor("dask")


def test_cli_explore_on_stored_catalogue(synth, tmp_path):
    store, members = synth
    cfg = tmp_path / "study.yaml"
    cfg.write_text(
        "name: cli\ncatalogue: {methods: [rtn, gptq], bits: [3, 4, 8], include_dense: false}\n"
        f"tasks: [{', '.join(TASKS)}]\nitems: stored\nmode: loglik\n"
        "objectives: [trust, tpot_ms]\nspecs: [h100-sxm]\nschedules: [sequential, parallel]\n"
        "optimizer: {q: 2, n_init: 4, iterations: 1, mc_samples: 32}\nmethods: [bo, random]\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "codesign", "explore", "--config", str(cfg), "--store", str(store.path),
                        "--out", str(out), "--no-report", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (out / "pareto.csv").stat().st_size > 0 and (out / "pareto.png").stat().st_size > 1000
    import pandas as pd

    front = pd.read_csv(out / "pareto.csv")
    assert {"ensemble", "schedule", "spec", "trust", "tpot_ms", "found_by"} <= set(front.columns)
    assert "0/6 members" not in r.stderr and "6/6 members already evaluated" in r.stderr
    # more iterations continue the same study: only the new points are evaluated
    cfg.write_text(cfg.read_text().replace("iterations: 1", "iterations: 2"))
    r = subprocess.run([sys.executable, "-m", "codesign", "explore", "--config", str(cfg), "--store", str(store.path),
                        "--out", str(out), "--no-report", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert len(store.study_points("cli", method="bo")) == 4 + 2 * 2
    # same study name with another config: clear error, exit 2
    cfg.write_text(cfg.read_text().replace("objectives: [trust, tpot_ms]", "objectives: [trust, peak_memory_gb]"))
    r = subprocess.run([sys.executable, "-m", "codesign", "explore", "--config", str(cfg), "--store", str(store.path),
                        "--out", str(out), "--no-report", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "error:" in r.stderr and "different config" in r.stderr


def test_cli_bad_config_exit_2(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("catalogue: {methods: [rtn], bits: [4]}\nobjectives: [trust, speed]\n")
    r = subprocess.run([sys.executable, "-m", "codesign", "explore", "--config", str(cfg), "--store",
                        str(tmp_path / "s.db")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "bad.yaml" in r.stderr and "speed" in r.stderr and "allowed" in r.stderr


def test_on_demand_quantize_and_evaluate_of_missing_members(store):
    """Members without answers are quantized and evaluated (real pipeline, tiny model) when first needed."""
    from codesign.explore.study import build_context, run_study

    cfg = StudyConfig.model_validate(dict(
        name="od", model="tiny-llama", shape="smollm2-135m",
        catalogue={"methods": ["rtn"], "bits": [4, 8], "group_sizes": [32], "include_dense": True},
        tasks=["advglue"], limit=3, objectives=["adv", "tpot_ms"], specs=["h100-sxm"], schedules=["sequential"],
        optimizer={"q": 2, "n_init": 2, "iterations": 1, "mc_samples": 16}))
    ctx = build_context(cfg, store, progress=False)
    assert not any(ctx.evaluator.is_cached(m) for m in ctx.space.members)
    res = run_study(ctx)
    assert all(ctx.evaluator.is_cached(m) for m in ctx.space.members)
    runs = store.frame("eval_runs")
    assert sorted(runs["variant_id"].unique()) == sorted(ctx.space.members)
    assert runs.groupby("variant_id").size().max() == 1  # each member evaluated once
    pts = store.study_points("od")
    assert {p.method for p in pts} == {"bo", "exhaustive"} and res.n_points == len(pts)
    assert all(0 <= p.objectives["adv"] <= 100 for p in pts)
