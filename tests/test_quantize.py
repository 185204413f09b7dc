"""Quantization on tiny random-weight models: packing, grids, GPTQ/AWQ mechanics, the cache,
loading, checkpoint import, catalogue and CLI. Real-weight accuracy checks live in
test_quantize_smollm2.py."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from codesign.config import ConfigError
from codesign.quantize import cache
from codesign.quantize.grid import QuantizedWeight, contiguous_g_idx, rtn_params
from codesign.quantize.packing import SUPPORTED_BITS, pack, unpack
from codesign.records import VariantSpec

TINY_CALIB = (("n_samples", 4), ("seq_len", 32))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE_VARIANTS_TEST", "1")
    monkeypatch.setattr(cache, "default_root", lambda: tmp_path / "variants")


# -- packing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", SUPPORTED_BITS)
@pytest.mark.parametrize("dim", [0, 1])
def test_pack_roundtrip(bits, dim):
    g = torch.Generator().manual_seed(bits)
    q = torch.randint(0, 2**bits, (64, 96) if dim == 0 else (5, 96), generator=g)
    p = pack(q, bits, dim=dim)
    assert p.dtype == torch.int32 and p.shape[dim] == q.shape[dim] * bits // 32
    assert torch.equal(unpack(p, bits, dim=dim), q.to(torch.int32))


def _autogptq_reference_pack(intweight: np.ndarray, bits: int) -> np.ndarray:
    """AutoGPTQ's own packing loop (QuantLinear.pack, cuda_old), rows = input features."""
    intweight = intweight.astype(np.uint32)
    qweight = np.zeros((intweight.shape[0] // 32 * bits, intweight.shape[1]), dtype=np.uint32)
    i = row = 0
    while row < qweight.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                qweight[row] |= intweight[j] << (bits * (j - i))
            i += 32 // bits
            row += 1
        else:  # 3 bits: values straddle words
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i))
            i += 10
            qweight[row] |= intweight[i] << 30
            row += 1
            qweight[row] |= (intweight[i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 1)
            i += 10
            qweight[row] |= intweight[i] << 31
            row += 1
            qweight[row] |= (intweight[i] >> 1) & 0x3
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 2)
            i += 10
            row += 1
    return qweight.view(np.int32)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_pack_matches_autogptq_layout(bits):
    q = torch.randint(0, 2**bits, (64, 7), generator=torch.Generator().manual_seed(0))
    ref = _autogptq_reference_pack(q.numpy(), bits)
    assert np.array_equal(pack(q, bits, dim=0).numpy(), ref)


# -- grid and RTN ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sym", [False, True])
@pytest.mark.parametrize("group_size", [32, -1, 48])
def test_rtn_error_within_half_step(sym, group_size):
    from codesign.quantize.rtn import rtn_quantize

    w = torch.randn(24, 96, generator=torch.Generator().manual_seed(1))
    qw = rtn_quantize(w, 4, group_size, sym)
    step = qw.scales[qw.g_idx.long()].T
    err = (qw.dequantize() - w).abs()
    assert (err <= step * 0.51 + 1e-6).all()  # half a step (+ float16 rounding of the scale)
    assert qw.scales.shape == ((96 + 47) // 48 if group_size == 48 else (3 if group_size == 32 else 1), 24)
    if sym:
        assert (qw.zeros == 8).all()
    assert qw.qint.min() >= 0 and qw.qint.max() <= 15


def test_more_bits_less_error():
    from codesign.quantize.rtn import rtn_quantize

    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(2))
    errs = [float((rtn_quantize(w, b, 32, False).dequantize() - w).pow(2).mean()) for b in SUPPORTED_BITS]
    assert all(a > b for a, b in zip(errs, errs[1:]))


def test_quantized_weight_tensor_roundtrip():
    w = torch.randn(16, 64)
    s, z = rtn_params(w, 3, 32, False)
    qw = QuantizedWeight.from_weight(w, s, z, contiguous_g_idx(64, 32), 3, 32, False)
    back = QuantizedWeight.from_tensors(qw.to_tensors("x"), "x", 3, 32, False)
    assert torch.equal(back.dequantize(), qw.dequantize())


@pytest.mark.parametrize("sym", [False, True])
def test_range_search_beats_min_max_and_matches_exhaustive_grid(sym):
    from codesign.quantize.grid import fake_quantize, find_params, search_params

    g = torch.Generator().manual_seed(4)
    w = torch.randn(256, 64, generator=g) * torch.rand(256, 1, generator=g)
    w[:, 7] *= 6  # an outlier column: clipping it buys finer steps for the rest
    w[3] = 0      # a dead row keeps its min/max params

    def err(p, bits):
        return (fake_quantize(w, p[0][:, None], p[1][:, None], bits) - w).abs().pow(2.4).sum(-1)

    for bits in (2, 3, 4):
        base = err(find_params(w, bits, sym), bits)
        fast = err(search_params(w, bits, sym, 2.4), bits)
        full = err(search_params(w, bits, sym, 2.4, coarse=1), bits)
        assert (fast <= base + 1e-6).all() and (full <= fast + 1e-6).all()  # never worse than min/max
        assert fast.sum() < 0.95 * base.sum()
        assert fast.sum() <= 1.01 * full.sum()  # coarse-to-fine finds (nearly) the exhaustive optimum
    s, z = search_params(w.view(4, 64, 64), 3, sym, 2.0)  # batched rows
    assert s.shape == z.shape == (4, 64) and (z >= 0).all() and (z <= 7).all()


def test_range_search_weighs_columns():
    """With column weights the search minimises the weighted error: a heavy column's own error
    drops below what the unweighted search leaves it."""
    from codesign.quantize.grid import fake_quantize, search_params

    g = torch.Generator().manual_seed(5)
    w = torch.randn(256, 64, generator=g)
    w[:, 7] *= 6
    cw = torch.ones(64)
    cw[7] = 50.0  # the outlier column's error counts most: clipping it is no longer cheap

    def err(p, weight):
        return ((fake_quantize(w, p[0][:, None], p[1][:, None], 3) - w).pow(2) * weight).sum(-1)

    plain, weighted = search_params(w, 3, False, 2.0), search_params(w, 3, False, 2.0, col_weight=cw)
    full = search_params(w, 3, False, 2.0, col_weight=cw, coarse=1)
    assert err(weighted, cw).sum() < 0.9 * err(plain, cw).sum()
    assert err(weighted, cw).sum() <= 1.01 * err(full, cw).sum()
    assert err(plain, 1.0).sum() < err(weighted, 1.0).sum()  # each search wins its own objective


# -- GPTQ / AWQ mechanics -------------------------------------------------------------------------
def _correlated_inputs(n=2048, d=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5
    return torch.randn(n, d, generator=g) @ mix + 0.1 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("act_order,group_aware,mse", [(False, False, 0), (True, False, 0), (True, True, 0),
                                                      (True, True, 2.4)])
def test_gptq_beats_rtn_on_output_error(act_order, group_aware, mse):
    from codesign.quantize.gptq import gptq_quantize, group_aware_order
    from codesign.quantize.rtn import relative_error, rtn_quantize

    X = _correlated_inputs()
    H = X.T @ X / X.shape[0]
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(3))
    qg = gptq_quantize(w, H, 3, 32, False, act_order=act_order, group_aware=group_aware, mse=mse)
    e_gptq = relative_error(w, qg.dequantize(), H)
    e_rtn = relative_error(w, rtn_quantize(w, 3, 32, False).dequantize(), H)
    assert e_gptq < 0.8 * e_rtn
    assert sorted(np.bincount(qg.g_idx.numpy()).tolist()) == [32] * 4  # groups of 32 columns each
    # Plain act-order mixes columns across groups; the group-aware order keeps natural groups.
    assert torch.equal(qg.g_idx, contiguous_g_idx(128, 32)) == (not act_order or group_aware)
    order = group_aware_order(torch.diag(H)[:120], 32)  # 3 whole groups and a short one of 24
    assert sorted(order.tolist()) == list(range(120)) and set(order[96:].tolist()) == set(range(96, 120))
    assert all(len({int(c) // 32 for c in order[k:k + 32]}) == 1 for k in (0, 32, 64))


def test_gptq_hessian_range_lowers_output_error():
    """Choosing each group's range by what rounding costs in output error (columns weighed by
    1/U_jj², GPTQ's own loss) beats min/max and the plain weight-space range search."""
    from codesign.quantize.gptq import gptq_quantize
    from codesign.quantize.rtn import relative_error

    X = _correlated_inputs(seed=1)
    X[:, :8] *= 8.0  # a few strong input channels, as in real activations
    H = X.T @ X / X.shape[0]
    w = torch.randn(96, 128, generator=torch.Generator().manual_seed(6))
    errs = {}
    for name, kw in {"minmax": {}, "mse": {"mse": 2.0}, "hessian": {"mse": 2.0, "hessian_range": True}}.items():
        q = gptq_quantize(w, H, 3, 32, False, group_aware=True, **kw)
        errs[name] = relative_error(w, q.dequantize(), H)
    assert errs["hessian"] < errs["mse"] and errs["hessian"] < errs["minmax"], errs


def test_true_sequential_calibrates_later_groups_on_quantized_earlier_ones():
    from codesign.models import load_model
    from codesign.quantize import get_method
    from codesign.quantize.registry import QuantConfig
    from codesign.quantize.sequential import collect_stats, quantize_model
    from codesign.quantize.walker import LayerHandle, capture_first_layer_inputs, walk

    ids = torch.randint(0, 250, (4, 32), generator=torch.Generator().manual_seed(0))
    # Stopping the pass at a group's input gives the same statistics as the full pass.
    lm = load_model("tiny-llama", seed=0)
    layer = walk(lm.model)[0]
    inputs = capture_first_layer_inputs(lm.model, ids, 2)
    full, outs = collect_stats(layer, inputs)
    for g in layer.groups:
        part, none = collect_stats(LayerHandle(layer.index, layer.prefix, layer.module, [g]), inputs, need_outputs=False)
        assert none == [] and torch.allclose(part[g.names[0]].hessian, full[g.names[0]].hessian, atol=1e-6)
    assert len(outs) == 2
    res = {}
    for ts in (False, True):
        m = load_model("tiny-llama", seed=0)
        res[ts] = quantize_model(m.model, get_method("gptq", true_sequential=ts), QuantConfig(3, 32), ids,
                                 progress=False)
    first = "model.layers.0.self_attn.q_proj"
    later = "model.layers.0.mlp.down_proj"
    assert torch.equal(res[False].weights[first].qint, res[True].weights[first].qint)  # same stats
    assert not torch.equal(res[False].weights[later].qint, res[True].weights[later].qint)


def test_awq_scale_search_helps_with_salient_channels():
    from codesign.quantize.awq import fake_rtn, search_scale
    from codesign.quantize.rtn import relative_error

    X = torch.randn(4096, 128, generator=torch.Generator().manual_seed(4))
    X[:, :4] *= 30.0  # a few salient input channels, as in real LLM activations
    H = X.T @ X / X.shape[0]
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(5))
    s, err = search_scale(w, H, X.abs().mean(0), 4, 32, False)
    e_rtn = relative_error(w, fake_rtn(w, 4, 32, False), H)
    assert err < 0.8 * e_rtn
    assert s[:4].mean() > s[4:].mean()  # salient channels scaled up


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-neox"])
def test_awq_block_error_replays_the_block(name):
    """The block calls kept during the statistics pass replay the block exactly; a 3-bit group errs
    more than an 8-bit one, the weights are restored after every call, and the search re-ranks
    its ``topk`` best candidates by the block error."""
    from codesign.models import load_model
    from codesign.quantize.awq import block_error, search_scale
    from codesign.quantize.sequential import call_tokens, collect_stats
    from codesign.quantize.walker import capture_first_layer_inputs, get_weight, walk

    lm = load_model(name)
    ids = torch.randint(0, 250, (6, 16), generator=torch.Generator().manual_seed(0))
    inputs = capture_first_layer_inputs(lm.model, ids, 2)
    layer = walk(lm.model)[0]
    blocked = [g for g in layer.groups if g.block is not None]
    assert len(blocked) == 2
    seen_out = {id(g.block): [] for g in blocked}
    hooks = [g.block.register_forward_hook(lambda m, a, o: seen_out[id(m)].append(o[0] if isinstance(o, tuple) else o))
             for g in blocked]
    stats, _ = collect_stats(layer, inputs, block_tokens=40)
    for h in hooks:
        h.remove()
    for g in blocked:
        with torch.no_grad():
            replay = [g.block(*a, **kw) for a, kw in stats[g.names[0]].block_calls]
        replay = [o[0] if isinstance(o, tuple) else o for o in replay]
        assert all(torch.equal(r, o) for r, o in zip(replay, seen_out[id(g.block)][:2]))
    for g in layer.groups:
        calls = stats[g.names[0]].block_calls
        if g.block is None:
            assert calls == []
            continue
        assert [call_tokens(*c) for c in calls] == [32, 32]  # whole batches until >= 40 tokens
        before = [get_weight(m).detach().clone() for m in g.modules]
        width = before[0].shape[1]
        e3, e8 = (block_error(g, calls, b, 32, False)(torch.ones(width)) for b in (3, 8))
        assert 0 < e8 < e3 / 100
        assert all(torch.equal(b, get_weight(m)) for b, m in zip(before, g.modules))
        w = torch.cat(before, 0).float()
        st = stats[g.names[0]]
        seen = []

        def scored(s, _f=block_error(g, calls, 3, 32, False)):
            seen.append(s)
            return _f(s)

        s, _ = search_scale(w, st.hessian, st.act_abs_mean, 3, 32, False, block_err=scored, topk=5)
        assert len(seen) == 5 and scored(s) == min(scored(c) for c in seen[:5])


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-neox", "tiny-qwen2"])
def test_awq_folding_keeps_the_float_model(name):
    """Scales folded into norms / producing linears leave every decoder layer's function unchanged."""
    from codesign.models import load_model
    from codesign.quantize.awq import _fold_into_prev
    from codesign.quantize.walker import capture_first_layer_inputs, get_weight, run_layer, set_weight, walk

    lm = load_model(name)
    ids = torch.randint(0, 250, (2, 16), generator=torch.Generator().manual_seed(0))
    inputs = capture_first_layer_inputs(lm.model, ids, 2)
    layer = walk(lm.model)[0]
    before = run_layer(layer.module, inputs)
    n_folded = 0
    for g in layer.groups:
        if g.prev is None:
            continue
        s = torch.rand(get_weight(g.modules[0]).shape[1]) + 0.5
        _fold_into_prev(g.prev, g.spec.prev_kind, s)
        for m in g.modules:
            set_weight(m, get_weight(m) * s)
        n_folded += 1
    after = run_layer(layer.module, inputs)
    assert n_folded >= 2
    assert torch.allclose(before[0], after[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-neox", "tiny-mistral"])
@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_quantize_model_all_layouts(name, method):
    from codesign.models import load_model
    from codesign.quantize import get_method
    from codesign.quantize.registry import QuantConfig
    from codesign.quantize.sequential import quantize_model
    from codesign.quantize.walker import get_weight, walk

    lm = load_model(name)
    ids = torch.randint(0, 250, (4, 32), generator=torch.Generator().manual_seed(0))
    res = quantize_model(lm.model, get_method(method), QuantConfig(4, 32), ids, progress=False)
    linears = {n: m for h in walk(lm.model) for n, m in h.linears().items()}
    assert set(res.weights) == set(linears)
    for n, m in linears.items():  # the model now holds exactly the stored integer weights
        assert torch.allclose(get_weight(m), res.weights[n].dequantize(), atol=1e-6)
    assert all(0 <= e < 0.05 for e in res.errors.values())


# -- bad input ------------------------------------------------------------------------------------
def test_registry_errors():
    from codesign.quantize import get_method

    with pytest.raises(ConfigError, match=r"unknown quantization method 'foo' \(allowed: \['awq', 'gptq', 'rtn'\]"):
        get_method("foo")
    with pytest.raises(ConfigError, match="unknown option"):
        get_method("gptq", dampp=0.1)
    for bad in ("auto", -1, "x", float("inf")):
        with pytest.raises(ConfigError, match=r"gptq option mse = .* \(allowed: 0 for min/max"):
            get_method("gptq", mse=bad)


@pytest.mark.parametrize("spec,match", [
    (VariantSpec("tiny-llama", "gptq", 1, 32), r"bits = 1 .*allowed: \[2, 3, 4, 5, 6, 8\]"),
    (VariantSpec("tiny-llama", "gptq", 9, 32), r"bits = 9"),
    (VariantSpec("tiny-llama", "zzz", 4, 32), r"unknown quantization method 'zzz'"),
    (VariantSpec("tiny-llama", "rtn", 4, 48), r"group_size = 48 does not divide the input width 64 of linear "
                                                r"model\.layers\.0\.self_attn\.q_proj"),
    (VariantSpec("tiny-llama", "rtn", 4, 0), r"group_size = 0 is not allowed"),
])
def test_bad_variant_fails_before_work(spec, match, tmp_path, monkeypatch):
    import codesign.quantize.sequential as seq
    from codesign.quantize import quantize_variant

    monkeypatch.setattr(seq, "quantize_model", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ConfigError, match=match):
        quantize_variant(spec, out=tmp_path / "v")
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").iterdir())


def test_unwalkable_layout_is_a_clear_error():
    from codesign.quantize.walker import walk

    model = torch.nn.Module()
    model.config = types.SimpleNamespace(model_type="mamba")
    with pytest.raises(ConfigError, match=r"cannot walk .*'mamba'.*supported model types: \[.*'llama'"):
        walk(model)


# -- cache, load, packed modules --------------------------------------------------------------------
def test_quantize_variant_caches_and_reloads(tmp_path):
    from codesign.models import load_model
    from codesign.quantize import load_variant, quantize_variant
    from codesign.quantize.walker import get_weight, walk

    spec = VariantSpec("tiny-llama", "gptq", 3, 32, calib="default", extra=TINY_CALIB)
    path = quantize_variant(spec, progress=False)
    rec = json.loads((path / "variant.json").read_text())
    assert rec["spec"] == spec.to_dict() and len(rec["errors"]) == 14 and rec["seconds"] > 0
    assert rec["calibration"]["n_samples"] == 4
    mtime = (path / "weights.safetensors").stat().st_mtime
    assert quantize_variant(spec) == path and (path / "weights.safetensors").stat().st_mtime == mtime

    plain, packed = load_variant(spec), load_variant(spec, packed=True)
    x = torch.randint(0, 250, (2, 12))
    with torch.no_grad():
        y_plain, y_packed = plain.model(x).logits, packed.model(x).logits
        y_dense = load_model("tiny-llama").model(x).logits
    assert torch.allclose(y_plain, y_packed, atol=1e-5)
    assert not torch.allclose(y_plain, y_dense, atol=1e-3)
    qls = [m for m in packed.model.modules() if type(m).__name__ == "QuantLinear"]
    assert len(qls) == 14 and qls[0].qweight.dtype == torch.int32
    for h in walk(plain.model):  # stored ints dequantize to the weights the model ran with
        for n, m in h.linears().items():
            assert torch.equal(get_weight(m), packed.model.get_submodule(n).dequantized_weight())


def test_half_written_entry_is_redone(tmp_path):
    from codesign.quantize import quantize_variant

    spec = VariantSpec("tiny-llama", "rtn", 4, 32)
    broken = cache.entry_path(spec.variant_id)
    broken.mkdir(parents=True)
    (broken / "weights.safetensors").write_bytes(b"truncated")
    stale = broken.parent / f".{spec.variant_id}.tmp-999999999-deadbeef"
    stale.mkdir()
    assert cache.lookup(spec.variant_id) is None and not broken.exists()
    broken.mkdir()
    path = quantize_variant(spec, progress=False)
    assert cache.is_complete(path) and not stale.exists()
    cache.read_entry(path)


def test_dense_variant_is_the_base_model():
    from codesign.quantize import load_variant, quantize_variant

    spec = VariantSpec("tiny-llama")
    assert quantize_variant(spec) is None
    assert load_variant(spec).tokenizer is not None


def test_replace_linears_packs_every_decoder_linear():
    from codesign.models import load_model
    from codesign.quantize import replace_linears
    from codesign.quantize.kernels import PackedLinear

    lm = load_model("tiny-llama")
    x = torch.randint(0, 250, (1, 10))
    with torch.no_grad():
        dense = lm.model(x).logits
        replace_linears(lm.model, 8, 32)
        quant = lm.model(x).logits
    assert sum(isinstance(m, PackedLinear) for m in lm.model.modules()) == 14  # on the kernel auto picks
    assert torch.allclose(dense, quant, atol=0.05)
    with pytest.raises(ConfigError, match="bits = 7"):
        replace_linears(load_model("tiny-llama").model, 7, 32)


# -- imported checkpoints ---------------------------------------------------------------------------
def _tiny_checkpoint(bits, group_size, sym, act_order=False):
    """RTN/GPTQ weights of tiny-llama plus its float tensors and config."""
    from codesign.models import load_model
    from codesign.quantize.gptq import gptq_quantize
    from codesign.quantize.rtn import rtn_quantize
    from codesign.quantize.walker import get_weight, walk

    lm = load_model("tiny-llama")
    weights = {}
    for h in walk(lm.model):
        for n, m in h.linears().items():
            w = get_weight(m).detach()
            if act_order:
                X = _correlated_inputs(256, w.shape[1])
                weights[n] = gptq_quantize(w, X.T @ X / 256, bits, group_size, sym, act_order=True)
            else:
                weights[n] = rtn_quantize(w, bits, group_size, sym)
    sd = lm.model.state_dict()
    floats = {k: v.clone() for k, v in sd.items() if k.rsplit(".", 1)[0] not in weights}
    return lm, weights, floats


def _check_imported(spec, weights, floats):
    from codesign.quantize import load_variant

    lm = load_variant(spec, packed=False)
    sd = lm.model.state_dict()
    for n, qw in weights.items():
        assert torch.equal(sd[f"{n}.weight"], qw.dequantize()), n
    for k, v in floats.items():
        assert torch.equal(sd[k], v.float()), k


@pytest.mark.parametrize("bits,sym,fmt,act_order", [
    (4, True, "gptq", False), (3, False, "gptq_v2", False), (8, True, "gptq", True), (2, True, "gptq_v2", True)])
def test_import_autogptq(tmp_path, bits, sym, fmt, act_order):
    from codesign.quantize import import_checkpoint
    from codesign.quantize.formats.autogptq import write_autogptq

    lm, weights, floats = _tiny_checkpoint(bits, 32, sym, act_order)
    if fmt == "gptq":  # v1 stores zero-1: AutoGPTQ's asymmetric zero 0 does not survive it; sym grids do
        assert all((q.zeros >= 1).all() for q in weights.values())
    folder = write_autogptq(tmp_path / "ckpt", weights, floats, lm.model.config.to_dict(), checkpoint_format=fmt)
    qc = json.loads((folder / "quantize_config.json").read_text())
    assert qc["desc_act"] == act_order and qc["bits"] == bits
    spec, entry = import_checkpoint(folder)
    assert spec.method == "gptq" and spec.bits == bits and spec.calib == "imported" and cache.is_complete(entry)
    _check_imported(spec, weights, floats)


def _autoawq_reference_pack(intweight: np.ndarray) -> np.ndarray:
    """AutoAWQ's WQLinear_GEMM.from_linear packing loop; intweight is (in, out)."""
    intweight = intweight.astype(np.uint32)
    qweight = np.zeros((intweight.shape[0], intweight.shape[1] // 8), dtype=np.uint32)
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    for col in range(intweight.shape[1] // 8):
        for i in range(8):
            qweight[:, col] |= intweight[:, col * 8 + order_map[i]] << (i * 4)
    return qweight.view(np.int32)


def test_autoawq_packing_matches_reference():
    from codesign.quantize.formats.autoawq import pack_awq, unpack_awq

    q = torch.randint(0, 16, (40, 64), generator=torch.Generator().manual_seed(0))
    p = pack_awq(q)
    assert np.array_equal(p.numpy(), _autoawq_reference_pack(q.numpy()))
    assert torch.equal(unpack_awq(p), q.to(torch.int32))


@pytest.mark.parametrize("bits", [4, 3, 8])
def test_import_autoawq(tmp_path, bits):
    from codesign.quantize import import_checkpoint
    from codesign.quantize.formats.autoawq import write_autoawq

    lm, weights, floats = _tiny_checkpoint(bits, 32, False)
    folder = write_autoawq(tmp_path / "awq", weights, floats, lm.model.config.to_dict())
    spec, _ = import_checkpoint(folder)
    assert spec.method == "awq" and spec.bits == bits and spec.group_size == 32
    _check_imported(spec, weights, floats)


def test_import_errors(tmp_path):
    from codesign.quantize import import_checkpoint

    with pytest.raises(ConfigError, match="not found"):
        import_checkpoint(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(ConfigError, match="not a quantized checkpoint"):
        import_checkpoint(tmp_path / "x")


# -- catalogue and CLI ------------------------------------------------------------------------------
def test_default_catalogue_file():
    from pathlib import Path

    from codesign.config import load_config
    from codesign.quantize import Catalogue

    cat = load_config(Catalogue, Path(__file__).parents[1] / "configs" / "catalogue_default.yaml")
    specs = cat.variants()
    assert len(specs) == 10 and specs[0].is_dense
    assert {(s.method, s.bits) for s in specs[1:]} == {(m, b) for m in ("rtn", "gptq", "awq") for b in (3, 4, 8)}
    assert all(s.group_size == 128 for s in specs[1:])
    assert len({s.variant_id for s in specs}) == 10
    # Options equal to the defaults do not change ids; the spec records them resolved, so a changed
    # default (or a changed option) gives a new id and never reuses a variant cached under the old one.
    plain = Catalogue(model="smollm2-135m-instruct", methods=["gptq"], bits=[3], include_dense=False).variants()[0]
    assert specs[4].variant_id == plain.variant_id
    assert dict(plain.extra)["act_order"] is True and dict(plain.extra)["damp"] == 0.05
    other = Catalogue(model="smollm2-135m-instruct", methods=["gptq"], bits=[3], include_dense=False,
                      options={"gptq": {"act_order": False}}).variants()[0]
    assert other.variant_id != plain.variant_id


@pytest.mark.parametrize("body,match", [
    ("methods: [rtn, foo]", r"methods = \['rtn', 'foo'\].*unknown method"),
    ("bits: [1, 4]", r"bits = \[1, 4\].*unsupported bits \[1\]"),
    ("group_sizes: [0]", r"group_sizes"),
    ("bitz: [4]", r"bitz.*not part of the schema"),
    ("options: {gptq: {dampp: 1}}", r"unknown option"),
])
def test_catalogue_errors_name_file_field_value(tmp_path, body, match):
    from codesign.config import load_config
    from codesign.quantize import Catalogue

    f = tmp_path / "cat.yaml"
    f.write_text(body + "\n")
    with pytest.raises(ConfigError, match=match) as exc:
        load_config(Catalogue, f)
    assert str(f) in str(exc.value)


def test_cli_quantize_and_errors(tmp_path):
    env_cache = tmp_path / "cache"
    import os

    env = dict(os.environ, CODESIGN_CACHE=str(env_cache))
    run = lambda *a: subprocess.run([sys.executable, "-m", "codesign", "quantize", *a], capture_output=True,
                                    text=True, env=env, timeout=300)
    r = run("--model", "tiny-llama", "--method", "rtn,gptq", "--bits", "4", "--group-size", "32",
            "--n-samples", "4", "--seq-len", "32", "--out", str(tmp_path / "out"), "--store", str(tmp_path / "r.db"))
    assert r.returncode == 0, r.stderr
    entries = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(entries) == 2 and entries[0].startswith("tiny-llama--gptq-w4g32")
    assert "layer" in r.stderr  # per-layer progress bar
    from codesign.store import ResultStore

    with ResultStore(tmp_path / "r.db") as st:
        assert st.variant_spec(entries[0]).method == "gptq"
    r = run("--model", "tiny-llama", "--group-size", "48", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "does not divide the input width 64" in r.stderr, r.stderr
    assert not (tmp_path / "bad").exists()


def test_cli_method_options_reach_the_variant(tmp_path):
    from typer.testing import CliRunner

    from codesign.cli import app

    ids = []
    for extra in ([], ["-O", "gptq.mse=0", "--option", "gptq.hessian_range=false"]):
        r = CliRunner().invoke(app, ["quantize", "--model", "tiny-llama", "--group-size", "32", *extra, "--list",
                                     "--out", str(tmp_path)], terminal_width=400)
        assert r.exit_code == 0, r.output
        ids.append([w for w in r.output.split() if w.startswith("tiny-llama--gptq")])
    assert len(ids[0]) == len(ids[1]) == 1 and ids[0] != ids[1]  # options are part of the variant id


@pytest.mark.parametrize("args,msg", [(("--bits", "9"), "--bits: 9 is not allowed"),
                                      (("--bits", "1"), "--bits: 1 is not allowed"),
                                      (("--method", "foo"), "unknown method(s) ['foo']"),
                                      (("--calib", "/no/such.txt"), "--calib: /no/such.txt not found"),
                                      (("--option", "gptq.dampp=0.1"), "unknown option(s) ['dampp']"),
                                      (("--option", "gptq.mse=auto"), "gptq option mse = 'auto'"),
                                      (("--option", "gptq"), "expected METHOD.KEY=VALUE"),
                                      (("--option", "foo.x=1"), "unknown method 'foo'")])
def test_cli_bad_flags(tmp_path, args, msg):
    from typer.testing import CliRunner

    from codesign.cli import app

    r = CliRunner().invoke(app, ["quantize", "--model", "tiny-llama", *args, "--out", str(tmp_path / "bad")])
    assert isinstance(r.exception, ConfigError) and msg in str(r.exception)
    assert not (tmp_path / "bad").exists()


def test_all_threads_gives_back_what_single_thread_took():
    from codesign.quantize.grid import all_threads, single_thread

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with single_thread():
            assert torch.get_num_threads() == 1
            with single_thread():  # nested: the outermost count is what comes back
                with all_threads():
                    assert torch.get_num_threads() == 2
                assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with all_threads():  # outside single_thread: unchanged
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# -- packing edges found by mutation testing (experiments/mutation) ----------------------------
@pytest.mark.parametrize("bits", [3, 4])
def test_pack_unpack_any_axis_of_3d_tensors_and_dtypes(bits):
    from codesign.quantize.packing import pack, unpack

    g = torch.Generator().manual_seed(bits)
    q = torch.randint(0, 2**bits, (2, 64, 3), generator=g, dtype=torch.int32)
    for dim in (0, 1, 2, -1):
        src = q.movedim(1, dim) if dim in (0, 2, -1) else q  # the 64-long axis at `dim`
        p = pack(src, bits, dim=dim)
        assert p.dtype == torch.int32 and p.shape[dim] == 64 * bits // 32
        back = unpack(p, bits, dim=dim)
        assert back.dtype == torch.int32 and torch.equal(back, src), dim
    assert torch.equal(pack(q.to(torch.int64), bits, dim=1), pack(q, bits, dim=1))  # input dtype free
    # values are masked to their bits (a stray high bit never leaks into the neighbour)
    assert torch.equal(unpack(pack(q + 2**bits, bits, dim=1), bits, dim=1), q)


def test_pack_errors_name_the_sizes():
    from codesign.quantize.packing import pack, unpack

    with pytest.raises(ValueError, match="cannot pack 40 values: the packed axis must be a multiple of 32"):
        pack(torch.zeros(40, 2, dtype=torch.int32), 4)
    with pytest.raises(ValueError, match="packed axis of length 4 is not a multiple of bits=3"):
        unpack(torch.zeros(4, 2, dtype=torch.int32), 3)
