"""Exploration core: hypervolume (against BoTorch), Pareto filtering, the search-space encoding, configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codesign.config import ConfigError
from codesign.explore.space import Configuration, Knob, Space
from codesign.pareto import hypervolume, log_hv_difference, pareto_front, pareto_mask, to_maximization


# -- hypervolume ----------------------------------------------------------------------------

@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 7, 60])
def test_hypervolume_matches_botorch_on_random_fronts(m, n):
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    rng = np.random.default_rng(100 * m + n)
    # points on a concave front (all non-dominated) plus dominated noise points
    d = rng.random((n, m))
    front = d / np.linalg.norm(d, axis=1, keepdims=True)
    pts = np.vstack([front, front * rng.uniform(0.3, 0.99, (n, 1))])
    ref = np.full(m, -0.01)
    ours = hypervolume(pts, ref)
    theirs = Hypervolume(torch.tensor(ref)).compute(torch.tensor(pareto_front(pts)))
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert ours > 0


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 4), st.integers(1, 25), st.integers(0, 10_000))
def test_hypervolume_matches_botorch_property(m, n, seed):
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    rng = np.random.default_rng(seed)
    pts = np.round(rng.normal(size=(n, m)), 1)  # rounding makes ties and duplicates
    ref = np.full(m, -1.5)
    better = pts[(pts > ref).all(axis=1)]
    theirs = Hypervolume(torch.tensor(ref)).compute(torch.tensor(pareto_front(better))) if len(better) else 0.0
    assert hypervolume(pts, ref) == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_hypervolume_known_values_and_edge_cases():
    # two boxes of area 2 overlapping in a unit square: 3
    assert hypervolume(np.array([[2.0, 1.0], [1.0, 2.0]]), np.zeros(2)) == pytest.approx(3.0)
    assert hypervolume(np.array([[1.0, 1.0, 1.0]]), np.zeros(3)) == pytest.approx(1.0)
    assert hypervolume(np.zeros((0, 3)), np.zeros(3)) == 0.0
    assert hypervolume(np.array([[-1.0, 5.0]]), np.zeros(2)) == 0.0  # not above the reference point
    # a dominated point adds nothing
    assert hypervolume(np.array([[2.0, 2.0], [1.0, 1.0]]), np.zeros(2)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="objectives"):
        hypervolume(np.ones((2, 3)), np.zeros(2))
    assert log_hv_difference(0.5, 1.5) == pytest.approx(0.0)
    assert np.isfinite(log_hv_difference(1.0, 1.0))


# -- Pareto ---------------------------------------------------------------------------------

def test_pareto_mask_against_brute_force():
    rng = np.random.default_rng(3)
    Y = np.round(rng.random((300, 3)), 1)
    brute = np.array([not any((Y[j] >= Y[i]).all() and (Y[j] > Y[i]).any() for j in range(len(Y)))
                      for i in range(len(Y))])
    assert np.array_equal(pareto_mask(Y, chunk=37), brute)
    assert np.array_equal(pareto_mask(-Y, maximize=False), brute)


def test_pareto_mask_duplicates_nan_and_directions():
    Y = np.array([[1.0, 1.0], [1.0, 1.0], [0.5, 0.5], [np.nan, 9.0]])
    assert pareto_mask(Y).tolist() == [True, True, False, False]
    mixed = to_maximization(np.array([[80.0, 2.0], [70.0, 1.0], [60.0, 3.0]]), ["max", "min"])
    assert pareto_mask(mixed).tolist() == [True, True, False]
    with pytest.raises(ValueError):
        to_maximization(np.ones((2, 3)), ["max", "min"])


# -- space ----------------------------------------------------------------------------------

def _space(knobs=()):
    return Space(members=[f"m{i}" for i in range(5)], schedules=["sequential", "parallel"],
                 specs=["a", "b"], knobs=list(knobs), max_members=3)


def test_space_enumeration_counts_and_canonical_singletons():
    sp = _space()
    configs = sp.enumerate()
    # 5 singles (schedule irrelevant) + (10 pairs + 10 triples) x 2 schedules, x 2 specs
    assert len(configs) == sp.n_discrete() == (5 + 20 * 2) * 2
    assert len(set(configs)) == len(configs)
    assert all(c.schedule == "sequential" for c in configs if len(c.members) == 1)
    assert sp.dim == 5 + 2 + 2


def test_space_encode_decode_roundtrip_and_repair():
    sp = _space([Knob("bandwidth_gbs", 100.0, 1000.0), Knob("mac_units_int4", 64, 4096, log=True, integer=True)])
    rng = np.random.default_rng(0)
    configs = sp.sample(50, seed=1)
    assert len(set(configs)) == 50
    back = sp.decode(sp.encode(configs))
    for a, b in zip(configs, back):
        assert a.members == b.members and a.schedule == b.schedule and a.spec == b.spec
        for (ka, va), (kb, vb) in zip(a.knobs, b.knobs):
            assert ka == kb and va == pytest.approx(vb, rel=1e-6)
    # any point of the cube decodes to a valid configuration
    for c in sp.decode(rng.random((200, sp.dim))):
        assert 1 <= len(c.members) <= 3
        kv = dict(c.knobs)
        assert 100.0 <= kv["bandwidth_gbs"] <= 1000.0
        assert kv["mac_units_int4"] == round(kv["mac_units_int4"])
    # all-zero membership still gives a one-member ensemble, too many ones are cut to max_members
    assert len(sp.decode(np.zeros((1, sp.dim)))[0].members) == 1
    assert len(sp.decode(np.ones((1, sp.dim)))[0].members) == 3
    d = configs[0].to_dict()
    assert Configuration.from_dict(d) == configs[0]


def test_space_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least one"):
        Space([], ["s"], ["a"])
    with pytest.raises(ValueError, match="width"):
        _space().decode(np.zeros((1, 3)))


# -- config ---------------------------------------------------------------------------------

def _cfg(tmp_path, text):
    from codesign.explore.config import load_study_config

    p = tmp_path / "study.yaml"
    p.write_text(text)
    return load_study_config(p)


BASE = """
catalogue: {methods: [rtn], bits: [4, 8]}
objectives: [trust, tpot_ms]
"""


def test_config_defaults_and_directions(tmp_path):
    cfg = _cfg(tmp_path, BASE)
    assert [(o.name, o.direction) for o in cfg.objectives] == [("trust", "max"), ("tpot_ms", "min")]
    assert cfg.resolve_shape() == "smollm2-135m"
    # trust averages adversarial robustness, machine ethics and OOD robustness by default (as the study);
    # fairness and MMLU are reported but not averaged
    assert cfg.needed_tasks() == ["advglue", "ethics", "ood"]


def test_trust_dimensions_are_configurable(tmp_path):
    cfg = _cfg(tmp_path, BASE + "trust_dimensions: [adv, fairness]\n")
    assert cfg.trust_tasks() == ["advglue", "fairness"] and cfg.needed_tasks() == ["advglue", "fairness"]
    assert _cfg(tmp_path, BASE + "trust_dimensions: [advglue]\n").trust_dimensions == ["adv"]  # task names too
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, BASE + "trust_dimensions: [mmlu]\n")
    assert "trust_dimensions" in str(e.value) and "'mmlu' is not a trust dimension" in str(e.value) \
        and "adv, fairness, ethics, ood" in str(e.value)
    with pytest.raises(ConfigError, match="needs task"):
        _cfg(tmp_path, BASE + "tasks: [advglue, ethics]\ntrust_dimensions: [adv, ood]\n")


def test_config_unknown_objective_names_file_field_value_and_allowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, BASE.replace("tpot_ms]", "latency]"))
    msg = str(e.value)
    assert "study.yaml" in msg and "objectives" in msg and "latency" in msg and "tpot_ms" in msg


@pytest.mark.parametrize("text, words", [
    ("catalogue: {}\nobjectives: [trust]\n", ["objectives", "at least 2"]),
    (BASE + "optimizer: {algorithm: qehvi}\n", ["optimizer.algorithm", "qehvi", "qlognehvi"]),
    (BASE + "knobs: {bandwidth_gbs: {low: 10, high: 1}}\n", ["knobs.bandwidth_gbs", "low=10"]),
    (BASE + "tasks: [mmlu]\n", ["trust", "needs task"]),
    (BASE + "ref_point: {trust: 0}\n", ["ref_point", "missing", "tpot_ms"]),
    (BASE + "colour: red\n", ["colour", "not part of the schema"]),
])
def test_config_errors(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, text)
    for w in words:
        assert w in str(e.value)


def test_default_config_is_valid_and_packaged_copy_matches():
    from codesign.explore.config import _PACKAGED_DEFAULT, DEFAULT_CONFIG, load_study_config

    cfg = load_study_config()
    assert cfg.mode == "loglik" and cfg.limit and cfg.limit <= 32
    assert DEFAULT_CONFIG.read_text() == _PACKAGED_DEFAULT.read_text()


def test_fused_kernel_is_used_when_built_and_never_built_by_a_study(monkeypatch, tmp_path):
    from botorch.acquisition.multi_objective import logei
    from torch.utils import cpp_extension

    from codesign.explore.bo import use_built_kernel_only

    monkeypatch.setattr(logei, "_C", None)
    monkeypatch.setattr(cpp_extension, "_get_build_directory", lambda name, verbose: str(tmp_path))
    monkeypatch.setattr(logei, "_load_attempted", False)
    use_built_kernel_only()
    assert logei._load_attempted is True  # not built: BoTorch will take its Python path, no compile
    (tmp_path / "logei_fused_ext.so").write_bytes(b"")
    monkeypatch.setattr(logei, "_load_attempted", False)
    use_built_kernel_only()
    assert logei._load_attempted is False  # built: BoTorch loads it as usual
