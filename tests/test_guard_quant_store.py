"""Quantization error reporting, the RTN grid, the hypervolume reference and the store's resume key,
pinned by hand-computed cases (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codesign.pareto import hypervolume, nadir_reference
from codesign.quantize.grid import contiguous_g_idx, group_view, n_groups, rtn_params
from codesign.quantize.registry import GroupStats, QuantConfig
from codesign.quantize.rtn import RTN, relative_error, rtn_quantize
from codesign.store import ItemRow, OutputRow


# -- quantization error --------------------------------------------------------------------------
def test_relative_error_normalises_by_the_original_weight():
    w, w_hat = torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 3.0]])  # |w|^2 = 25, |w_hat|^2 = 18
    assert relative_error(w, w_hat) == pytest.approx(1 / 25)
    H = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert relative_error(w, w_hat, H) == pytest.approx(4 / (9 + 64))  # dHd / wHw
    H2 = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    # d = (0, 1): dHd = 2; wHw = 2*9 + 2*12 + 2*16 = 74
    assert relative_error(w, w_hat, H2) == pytest.approx(2 / 74)
    assert relative_error(torch.zeros(1, 2), torch.zeros(1, 2)) == 0.0


def _layer(weight: torch.Tensor):
    from codesign.quantize.walker import LayerHandle, ResolvedGroup

    lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    lin.weight.data.copy_(weight)
    group = ResolvedGroup(spec=None, names=["l.0.q"], modules=[lin], prev=None)
    return LayerHandle(0, "l.0", torch.nn.Module(), [group]), lin


def test_rtn_reports_the_hessian_weighted_error_per_linear():
    torch.manual_seed(0)
    w = torch.randn(4, 8)
    layer, lin = _layer(w)
    H = torch.diag(torch.tensor([100.0, 1, 1, 1, 1, 1, 1, 0.01]))  # input 0 matters most
    stats = {"l.0.q": GroupStats(hessian=H, act_abs_mean=torch.ones(8), n_tokens=16)}
    res = RTN().quantize_layer(layer, stats, QuantConfig(3, 4))
    q = rtn_quantize(w, 3, 4, False)
    assert torch.equal(res.weights["l.0.q"].qint, q.qint)
    with_h, without_h = relative_error(w, q.dequantize(), H), relative_error(w, q.dequantize())
    assert with_h != pytest.approx(without_h, rel=0.05)  # the case tells them apart
    assert res.errors["l.0.q"] == pytest.approx(with_h)
    # without statistics: the weight error
    assert RTN().quantize_layer(layer, None, QuantConfig(3, 4)).errors["l.0.q"] == pytest.approx(without_h)


def test_rtn_grid_hand_computed():
    w = torch.tensor([[-1.0, 0.0, 0.6, 2.0]])
    q = rtn_quantize(w, 2, 4, sym=False)  # scale (2 - -1) / 3 = 1, zero round(1 / 1) = 1
    assert q.scales.tolist() == [[1.0]] and q.zeros.tolist() == [[1]]
    assert q.qint.tolist() == [[0, 1, 2, 3]]
    assert q.dequantize().tolist() == [[-1.0, 0.0, 1.0, 2.0]]
    s = rtn_quantize(w, 2, 4, sym=True)  # range +-2: scale 4/3 (fp16), zero 2; 2/s = 1.5 -> 2 + 2 clamps to 3
    scale = float(torch.tensor(4 / 3).half())
    assert s.scales.tolist() == [[pytest.approx(scale)]] and s.zeros.tolist() == [[2]]
    assert s.qint.tolist() == [[1, 2, 2, 3]]
    # all-positive row: the grid still covers 0 (min clamped to 0), 3 bits: scale 7/7 = 1, zero 0
    p = rtn_quantize(torch.tensor([[1.0, 3.0, 5.0, 7.0]]), 3, 4, sym=False)
    assert p.zeros.tolist() == [[0]] and p.qint.tolist() == [[1, 3, 5, 7]]


def test_groups_run_along_inputs_with_a_short_last_group():
    assert (n_groups(6, 4), n_groups(8, 4), n_groups(6, -1), n_groups(3, 4)) == (2, 2, 1, 1)
    assert contiguous_g_idx(6, 4).tolist() == [0, 0, 0, 0, 1, 1]
    assert contiguous_g_idx(3, -1).tolist() == [0, 0, 0]
    w = torch.tensor([[0.0, 1, 2, 3, 10, -20]])
    v = group_view(w, 4)
    assert v.shape == (1, 2, 4) and v[0, 1].tolist() == [10.0, -20.0, -20.0, -20.0]  # padded with the last column
    scales, zeros = rtn_params(w, 4, 4, sym=False)
    assert scales.shape == (2, 1)
    assert scales[0, 0] == pytest.approx(float(torch.tensor(3 / 15).half()))  # [0, 3]
    assert scales[1, 0] == pytest.approx(float(torch.tensor(30 / 15).half()))  # [-20, 10]
    q = rtn_quantize(w, 4, 4, False)
    assert torch.allclose(q.dequantize(), w, atol=float(scales.max()) / 2 + 1e-6)


# -- hypervolume reference ----------------------------------------------------------------------
def test_nadir_reference_lies_below_every_point():
    Y = np.array([[0.0, 10.0], [4.0, 2.0], [1.0, 6.0]])
    np.testing.assert_allclose(nadir_reference(Y), [0 - 0.4, 2 - 0.8])
    np.testing.assert_allclose(nadir_reference(Y, margin=0.5), [-2.0, -2.0])
    # a constant column: the margin is a fraction of |value| (at least 1)
    np.testing.assert_allclose(nadir_reference(np.array([[-3.0, 5.0], [-3.0, 7.0]])), [-3.3, 4.8])
    np.testing.assert_allclose(nadir_reference(np.array([[0.5, np.nan], [0.5, 1.0]])), [0.4, 0.9])
    ref = nadir_reference(Y)
    # every point dominates the reference, so every point adds volume
    # staircase from x = 4 down to ref x: widths 3, 1, 0.4 at heights 2, 6, 10 (above ref y 1.2)
    assert hypervolume(Y, ref) == pytest.approx(3 * 0.8 + 1 * 4.8 + 0.4 * 8.8)


def test_hypervolume_hand_computed_2d_and_3d():
    assert hypervolume(np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]), np.zeros(2)) == pytest.approx(6.0)
    assert hypervolume(np.array([[1.0, 3.0], [2.0, 2.0]]), np.array([0.5, 1.0])) == pytest.approx(0.5 * 2 + 1 * 1)
    pts = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 3.0]])
    # boxes 2 + 2 + 3 minus pairwise overlaps 1 + 1 + 1 plus the triple overlap 1
    assert hypervolume(pts, np.zeros(3)) == pytest.approx(2 + 2 + 3 - 3 + 1)
    assert hypervolume(np.array([[1.0, 1.0], [-1.0, 5.0]]), np.zeros(2)) == pytest.approx(1.0)  # only > ref counts


# -- store resume key ---------------------------------------------------------------------------
def test_generate_and_loglik_answers_are_kept_and_resumed_separately(store):
    store.add_items([ItemRow("mmlu", f"q{k}", "0shot", k % 4) for k in range(3)])
    assert store.add_outputs([OutputRow("v", "mmlu", "q0", 1, mode="generate"),
                              OutputRow("v", "mmlu", "q1", 2, mode="generate")]) == 2
    assert store.done_item_ids("v", "mmlu", "loglik") == set()  # a generate run does not resume loglik
    assert store.add_outputs([OutputRow("v", "mmlu", "q0", 3, mode="loglik")]) == 1  # same item, other mode
    assert store.add_outputs([OutputRow("v", "mmlu", "q0", 0, mode="loglik")]) == 0  # same key: kept once
    assert store.done_item_ids("v", "mmlu", "generate") == {"q0", "q1"}
    assert store.done_item_ids("v", "mmlu", "loglik") == {"q0"}
    ids, gen = store.label_matrix("mmlu", ["v"], "generate")
    _, ll = store.label_matrix("mmlu", ["v"], "loglik")
    assert ids == ["q0", "q1", "q2"]
    assert gen.tolist() == [[1, 2, -1]] and ll.tolist() == [[3, -1, -1]]
    assert store.evaluated_variants("mmlu", "loglik") == ["v"]
    assert store.done_item_ids("v", "mmlu", "generate", "codesign") == set()  # protocols never mix (default: decodingtrust)


# -- Pareto machinery (edges found by mutation testing) ----------------------------------------
def _grid_hv(P: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of integer points by counting the unit cells they dominate."""
    import itertools

    hi = P.max(axis=0).astype(int)
    lo = ref.astype(int)
    count = 0
    for cell in itertools.product(*(range(a, b) for a, b in zip(lo, hi))):
        upper = np.array(cell) + 1  # the cell [c, c+1) is dominated when some point >= its upper corner
        count += bool((P >= upper).all(axis=1).any())
    return float(count)


@pytest.mark.parametrize("d, n, seed", [(2, 15, 0), (3, 14, 1), (3, 25, 2), (4, 12, 3)])
def test_hypervolume_equals_cell_count_on_integer_points(d, n, seed):
    P = np.random.default_rng(seed).integers(1, 7, size=(n, d)).astype(float)
    assert hypervolume(P, np.zeros(d)) == pytest.approx(_grid_hv(P, np.zeros(d)))
    ref = -np.arange(d, dtype=float)  # a different floor per objective: 0, -1, -2, ...
    assert hypervolume(P, ref) == pytest.approx(_grid_hv(P, ref))
    assert hypervolume(P, ref[None, :]) == pytest.approx(_grid_hv(P, ref))  # a (1, m) reference works too


def test_pareto_helpers_edges():
    from codesign.pareto import fill_missing, log_hv_difference, pareto_front, pareto_mask, to_maximization

    np.testing.assert_array_equal(to_maximization([[1.0, 2.0]], ["max", "min"]), [[1.0, -2.0]])
    with pytest.raises(ValueError, match=r"values must have shape \(n, 2\), got \(1, 3\)"):
        to_maximization([[1.0, 2.0, 3.0]], ["max", "min"])
    Y = np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 1.0], [1.0, 2.0], [np.nan, 9.0], [0.0, 3.0]])
    assert pareto_mask(Y).tolist() == [True, True, False, True, False, True]  # equal rows kept, NaN never
    assert pareto_mask(Y, chunk=1).tolist() == pareto_mask(Y).tolist()
    assert pareto_mask(Y, maximize=False).tolist() == [False, False, True, False, False, True]
    assert pareto_mask(np.array([[np.nan, 1.0], [np.nan, 2.0]])).tolist() == [False, False]  # only NaN rows
    np.testing.assert_array_equal(pareto_front(Y, maximize=False), [[0.0, 3.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"Y must have shape \(n, m\)"):
        pareto_mask(np.zeros(3))
    np.testing.assert_array_equal(pareto_front(Y), [[0.0, 3.0], [1.0, 2.0], [2.0, 1.0]])  # duplicates removed
    assert pareto_front(np.zeros((0, 2))).shape == (0, 2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-NaN column is filled without a numpy warning
        filled = fill_missing(np.array([[np.nan, 1.0, np.nan], [2.0, np.nan, np.nan], [3.0, 0.5, np.nan]]))
    np.testing.assert_array_equal(filled, [[2.0, 1.0, 0.0], [2.0, 0.5, 0.0], [3.0, 0.5, 0.0]])
    assert log_hv_difference(0.9, 1.9) == pytest.approx(0.0)
    assert log_hv_difference(5.0, 5.0) == pytest.approx(-12 + np.log10(5.0))  # floored, scaled by |hv_max|
    assert log_hv_difference(0.5, 0.5) == pytest.approx(-12.0)
    assert hypervolume(np.array([3.0]), np.array([1.0])) == pytest.approx(2.0)  # one objective, 1-D input
    assert hypervolume(np.array([[1.0, np.inf], [2.0, 2.0]]), np.zeros(2)) == pytest.approx(4.0)  # non-finite dropped
    assert hypervolume(np.zeros((0, 2)), np.zeros(2)) == 0.0
    with pytest.raises(ValueError, match="points have 2 objectives but ref has 3"):
        hypervolume(np.ones((1, 2)), np.zeros(3))


def test_hypervolume_trace_skips_infeasible_points_and_reuses_the_front():
    from codesign.pareto import hypervolume_trace

    Y = np.array([[1.0, 1.0], [3.0, 3.0], [2.0, 0.5], [0.5, 2.0], [0.9, 0.9]])
    feasible = np.array([True, False, True, True, True])
    trace = hypervolume_trace(Y, feasible, np.zeros(2))
    want = [hypervolume(Y[:k][feasible[:k]], np.zeros(2)) for k in range(1, 6)]
    np.testing.assert_allclose(trace, want)
    np.testing.assert_allclose(trace, [1.0, 1.0, 1.5, 2.0, 2.0])
    np.testing.assert_allclose(hypervolume_trace(Y, feasible, np.zeros(2), steps=[2, 4]), [1.0, 2.0])
    # an infeasible point inside a step does not stop the points after it; nothing feasible yet: 0
    np.testing.assert_allclose(hypervolume_trace(Y, feasible, np.zeros(2), steps=[3, 5]), [1.5, 2.0])
    np.testing.assert_allclose(hypervolume_trace(Y[1:], feasible[1:], np.zeros(2)), [0.0, 1.0, 1.75, 1.91])


# -- quantization grid records (edges found by mutation testing) --------------------------------
def test_from_weight_with_permuted_groups_by_hand():
    from codesign.quantize.grid import QuantizedWeight, find_params

    w = torch.tensor([[0.1, -0.5, 0.9, 0.3], [1.0, 2.0, -1.0, 0.0]])
    g_idx = torch.tensor([1, 0, 1, 0], dtype=torch.int32)  # act-order: columns interleave two groups
    scales = torch.tensor([[0.25, 0.5], [0.125, 1.0]])  # (group, out row)
    zeros = torch.tensor([[2, 1], [3, 0]])
    q = QuantizedWeight.from_weight(w, scales, zeros, g_idx, 3, 2, False)
    # row 0: 0.1/0.125 -> 1 + 3; -0.5/0.25 -> -2 + 2; 0.9/0.125 -> 7 + 3 clamps to 7; 0.3/0.25 -> 1 + 2
    assert q.qint.tolist() == [[4, 0, 7, 3], [1, 5, 0, 1]] and q.shape == (2, 4)
    np.testing.assert_allclose(q.dequantize()[0].numpy(), [0.125, -0.5, 0.5, 0.25])
    # a dead (all-zero) row still gets a usable grid: range [-1, 1]
    s, z = find_params(torch.zeros(1, 4), 2, False)
    assert s.tolist() == [pytest.approx(float(torch.tensor(2 / 3).half()))] and z.tolist() == [2.0]


def test_quantized_weight_tensors_round_trip_and_grid_only():
    from codesign.quantize.grid import QuantizedWeight

    torch.manual_seed(1)
    q = rtn_quantize(torch.randn(3, 64), 4, 32, False)
    t = q.to_tensors("l")
    assert set(t) == {"l.qweight", "l.scales", "l.qzeros_u8", "l.g_idx"}
    assert t["l.qweight"].shape == (64 * 4 // 32, 3) and t["l.scales"].dtype == torch.float16
    back = QuantizedWeight.from_tensors(t, "l", 4, 32, False)
    assert torch.equal(back.qint, q.qint) and torch.equal(back.zeros, q.zeros) and torch.equal(back.g_idx, q.g_idx)
    grid = QuantizedWeight.from_tensors(t, "l", 4, 32, False, ints=False)
    assert grid.shape == (3, 64) and not grid.qint.any() and torch.equal(grid.scales, q.scales)
    assert t["l.qzeros_u8"].dtype == torch.uint8 and t["l.g_idx"].dtype == torch.int32
    assert grid.qint.dtype == torch.int32 and back.qint.dtype == torch.int32
    # a half-precision weight is rounded in float32, as the float32 copy is
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(3))
    w16 = w.half()
    a = QuantizedWeight.from_weight(w16, q.scales[:, :1].expand(2, 4), q.zeros[:, :1].expand(2, 4), q.g_idx, 4, 32, False)
    b = QuantizedWeight.from_weight(w16.float(), q.scales[:, :1].expand(2, 4), q.zeros[:, :1].expand(2, 4), q.g_idx, 4,
                                    32, False)
    assert torch.equal(a.qint, b.qint)


def test_single_thread_blocks_nest_and_restore():
    from codesign.quantize.grid import all_threads, single_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_thread():
            assert torch.get_num_threads() == 1
            with all_threads():
                assert torch.get_num_threads() == 2  # the outermost block's count comes back
            with single_thread():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with all_threads():  # outside any single_thread block: unchanged
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# -- store: studies (edges found by mutation testing) -------------------------------------------
def test_study_points_round_trip_filters_and_keep_first(store):
    from codesign.records import Configuration, StudyPoint

    store.create_study("s", {"b": 2, "a": 1})
    store.create_study("s", {"a": 1, "b": 2})  # same config (key order aside): resume, no error
    with pytest.raises(ValueError, match="study 's' exists with a different config"):
        store.create_study("s", {"a": 2})
    assert store.study_config("s") == {"a": 1, "b": 2} and store.studies() == ["s"]
    with pytest.raises(KeyError, match=r"no study named 'x' \(studies in this store: \['s'\]\)"):
        store.study_config("x")

    def point(method, seed, pid, it, tpot, feasible=True):
        cfg = Configuration(("m4", "m8"), "parallel", "h100", (("bw", 2.0),))
        return StudyPoint("s", method, seed, pid, it, cfg, {"tpot_ms": tpot, "trust": 50.0}, feasible)

    for p in (point("bo", 1, 1, 0, 2.0), point("bo", 0, 0, 0, 1.0, False), point("random", 0, 0, 0, 3.0),
              point("bo", 1, 0, 1, 4.0)):
        store.add_study_point(p)
    store.add_study_point(point("bo", 1, 0, 9, 99.0))  # same key: the first one is kept
    got = store.study_points("s")
    assert [(p.method, p.seed, p.point_id) for p in got] == [("bo", 0, 0), ("bo", 1, 0), ("bo", 1, 1),
                                                             ("random", 0, 0)]
    assert got[1].iteration == 1 and got[1].objectives == {"tpot_ms": 4.0, "trust": 50.0}
    assert got[0].feasible is False and got[1].feasible is True
    assert got[1].config == Configuration(("m4", "m8"), "parallel", "h100", (("bw", 2.0),))
    assert [p.point_id for p in store.study_points("s", "bo", 1)] == [0, 1]
    assert [p.method for p in store.study_points("s", "random")] == ["random"]
    assert store.study_points("s", seed=0)[0].method == "bo" and len(store.study_points("s", seed=0)) == 2
    assert store.study_result("s") is None


def test_rtn_records_and_small_or_negative_errors():
    w = torch.tensor([[0.3, 0.4]])  # |w|^2 = 0.25 < 1: no clamp may hide it
    assert relative_error(w, torch.tensor([[0.3, 0.5]])) == pytest.approx(0.01 / 0.25)
    assert relative_error(w, torch.tensor([[0.3, 0.3]])) == pytest.approx(0.01 / 0.25)  # squared: sign-free
    assert relative_error(w, torch.tensor([[0.3, 0.5]]), torch.eye(2) * 0.5) == pytest.approx(0.01 / 0.25)
    q = rtn_quantize(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)), 3, 4, sym=True)
    assert (q.bits, q.group_size, q.sym) == (3, 4, True)
    assert rtn_quantize(torch.ones(1, 4), 2, -1, sym=False).group_size == -1
    layer, lin = _layer(torch.randn(4, 8, generator=torch.Generator().manual_seed(2)))
    res = RTN().quantize_layer(layer, None, QuantConfig(3, 4, sym=True))
    ref = rtn_quantize(lin.weight, 3, 4, True)
    assert res.weights["l.0.q"].sym is True and torch.equal(res.weights["l.0.q"].qint, ref.qint)


def test_grid_dtypes_defaults_and_the_per_channel_index():
    from codesign.quantize.grid import QuantizedWeight, search_params

    assert contiguous_g_idx(5, 2).tolist() == [0, 0, 1, 1, 2] and contiguous_g_idx(5, 2).dtype == torch.int32
    assert contiguous_g_idx(3, -1).tolist() == [0, 0, 0] and contiguous_g_idx(3, -1).dtype == torch.int32
    w = torch.randn(6, 64, generator=torch.Generator().manual_seed(0))
    a = search_params(w, 3, False, 2.4)
    b = search_params(w, 3, False, 2.4, grid=100, maxshrink=0.8, coarse=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # the documented defaults
    scales, zeros = rtn_params(w, 4, 32, False)
    qw = QuantizedWeight.from_weight(w, scales, zeros, contiguous_g_idx(64, 32), 4, 32, False)
    assert qw.dequantize(torch.float16).dtype == torch.float16 and qw.dequantize().dtype == torch.float32
    back = QuantizedWeight.from_tensors(qw.to_tensors("p"), "p", 4, 32, False)
    assert (back.group_size, back.sym, back.zeros.dtype, back.g_idx.dtype) == (32, False, torch.int32, torch.int32)
