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
