"""The analytical roofline model against hand-computed numbers (no mocks: the real model on real shapes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwmodels
from codesign.config import ConfigError
from hwmodels.energy import default_mm2_per_mac, default_pj_per_op
from hwmodels.roofline import evaluate_grid, evaluate_points
from hwmodels.spec import AcceleratorSpec


def make_spec(**over) -> AcceleratorSpec:
    d = dict(name="test-3350", memory=dict(capacity_gb=80, bandwidth_gbs=3350),
             compute_tflops=dict(fp16=989.4, int8=1979.0),
             efficiency={"default": {"compute": 1.0, "memory": 1.0}})
    d.update(over)
    return AcceleratorSpec.model_validate(d)


@pytest.mark.parametrize("name, expected", [
    ("llama-2-7b", 6_738_415_616), ("llama-2-13b", 13_015_864_320), ("llama-3-8b", 8_030_261_248),
    ("mistral-7b", 7_241_732_096), ("qwen2.5-0.5b", 494_032_768), ("smollm2-135m", 134_515_008)])
def test_shape_parameter_counts_match_published_models(name, expected):
    assert hwmodels.load_shape(name).n_params == expected


def test_gpt2_and_neox_key_names():
    gpt2 = hwmodels.shape_from_config(dict(model_type="gpt2", n_embd=768, n_layer=12, n_head=12, vocab_size=50257,
                                           n_positions=1024))
    assert gpt2.n_params == 124_439_808  # GPT-2 small, tied embeddings, learned positions
    assert (gpt2.gated_mlp, gpt2.tied_embeddings, gpt2.intermediate) == (False, True, 3072)
    neox = hwmodels.shape_from_config(dict(model_type="gpt_neox", hidden_size=768, num_hidden_layers=12,
                                           num_attention_heads=12, intermediate_size=3072, vocab_size=50304))
    assert neox.n_params == 162_322_944  # Pythia-160m
    qwen = hwmodels.load_shape("qwen2.5-0.5b")
    assert qwen.qkv_bias and qwen.tied_embeddings and qwen.n_kv_heads == 2


def test_13b_fp16_decode_floor_is_7_8_ms_and_memory_bound():
    shape = hwmodels.load_shape("llama-2-13b")
    est = hwmodels.estimate(make_spec(), shape, wbits=16, batch=1, prompt_len=512, gen_len=128, ideal=True)
    # by hand: every weight except the embedding table is read once per token (2 bytes each), plus
    # the KV cache at the mean context 512 + 128/2 = 576 positions (K and V, 40 layers x 5120, fp16)
    L, h, i, V = 40, 5120, 13824, 32000
    weights = L * (4 * h * h + 3 * h * i) + V * h
    kv = 576 * 2 * L * h * 2
    hand_ms = (2 * weights + kv) / 3.35e12 * 1e3
    assert hand_ms == pytest.approx(7.81, abs=0.01)
    assert est.tpot_ms == pytest.approx(hand_ms, rel=0.01)
    assert est.decode_bound == "memory"
    assert est.weight_bytes == 2 * shape.n_params
    assert est.kv_bytes == 1 * (512 + 128) * 2 * L * h * 2
    assert est.fits
    # efficiency and overheads only ever slow it down, by the stated amounts
    slow = hwmodels.estimate(make_spec(efficiency={"default": {"compute": 0.5, "memory": 0.5}},
                                       overhead_us={"per_layer": 10, "per_forward": 100}), shape, wbits=16)
    assert slow.tpot_ms == pytest.approx(2 * est.tpot_ms + (40 * 10 + 100) / 1e3, rel=0.01)


def test_prefill_is_compute_bound_at_hand_computed_rate():
    shape = hwmodels.load_shape("llama-2-13b")
    # activations kept on chip (large SRAM): only matmul FLOPs and weight reads remain
    est = hwmodels.estimate(make_spec(sram_mb=1000), shape, wbits=16, prompt_len=2048, gen_len=1, ideal=True)
    L, h, i = 40, 5120, 13824
    linear = 2 * 2048 * L * (4 * h * h + 3 * h * i)
    attn = 2 * (2 * 128 * 40 * L) * (2048 * 2049 / 2)  # QK^T and AV over causal pairs
    lm_head = 2 * 32000 * h  # last position only
    assert est.prefill_bound == "compute"
    assert est.ttft_ms == pytest.approx((linear + attn + lm_head) / 989.4e12 * 1e3, rel=0.02)
    # without on-chip memory the elementwise operators stream their activations through DRAM:
    # 2 norms x (read + write) + 3 MLP-activation tensors per layer, fp16 (their vector work hides under it)
    off = hwmodels.estimate(make_spec(), shape, wbits=16, prompt_len=2048, gen_len=1, ideal=True)
    streamed = 2048 * L * (2 * 2 * h + 3 * i) * 2 / 3.35e12 * 1e3
    assert off.ttft_ms - est.ttft_ms == pytest.approx(streamed, rel=0.05)


def test_group_size_scale_and_zero_bytes_are_counted():
    shape = hwmodels.load_shape("llama-2-7b")
    lin = shape.n_layers * shape.linear_params_per_layer
    dense16 = 2 * (shape.n_params - lin)  # embeddings, lm head, norms stay 16-bit
    asym = hwmodels.estimate(make_spec(), shape, wbits=4, group_size=128)
    sym = hwmodels.estimate(make_spec(), shape, wbits=4, group_size=128, sym=True)
    assert (asym.weight_bytes - dense16) * 8 / lin == pytest.approx(4 + (16 + 4) / 128)  # 4.156 bits
    assert (sym.weight_bytes - dense16) * 8 / lin == pytest.approx(4.125)
    pc = hwmodels.estimate(make_spec(), shape, wbits=4, group_size=-1)
    g32 = hwmodels.estimate(make_spec(), shape, wbits=4, group_size=32)
    assert pc.weight_bytes < asym.weight_bytes < g32.weight_bytes
    assert (g32.weight_bytes - dense16) * 8 / lin == pytest.approx(4 + 20 / 32)


def test_quantized_decode_scales_with_bits_and_batch_turns_compute_bound():
    shape = hwmodels.load_shape("llama-2-7b")
    t = {b: hwmodels.estimate(make_spec(), shape, wbits=b, ideal=True).tpot_ms for b in (2, 3, 4, 8, 16)}
    assert t[2] < t[3] < t[4] < t[8] < t[16]
    assert t[16] / t[4] == pytest.approx(16 / 4.156, rel=0.12)  # KV and 16-bit parts dilute the ratio
    big = hwmodels.estimate(make_spec(), shape, wbits=16, batch=1024, prompt_len=128, gen_len=16, ideal=True)
    ops = big.ops[big.ops.phase == "decode"].set_index("op")
    assert ops.loc["gate_proj", "bound"] == "compute"
    assert ops.loc["attn_qk", "bound"] == "memory"  # KV reads do not amortize over the batch


def test_gqa_shrinks_kv_cache_by_head_ratio():
    s8 = hwmodels.load_shape("llama-3-8b")
    mha = hwmodels.shape_from_config(dict(model_type="llama", hidden_size=4096, intermediate_size=14336,
                                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                          vocab_size=128256), name="llama-3-8b-mha")
    a = hwmodels.estimate(make_spec(), s8, batch=4, prompt_len=1000, gen_len=24)
    b = hwmodels.estimate(make_spec(), mha, batch=4, prompt_len=1000, gen_len=24)
    assert a.kv_bytes == 4 * 1024 * 2 * 32 * 8 * 128 * 2
    assert b.kv_bytes == 4 * a.kv_bytes


def test_kv_bits_with_per_head_scales():
    shape = hwmodels.load_shape("llama-2-7b")
    e16 = hwmodels.estimate(make_spec(), shape, kvbits=16)
    e8 = hwmodels.estimate(make_spec(), shape, kvbits=8)
    assert e8.kv_bytes / e16.kv_bytes == pytest.approx((8 + 32 / 128) / 16)


def test_dequantization_term_when_unit_lacks_weight_datatype():
    shape = hwmodels.load_shape("llama-2-7b")
    gpu = make_spec(vector_tflops=100.0)
    native = make_spec(vector_tflops=100.0, compute_tflops=dict(fp16=989.4, w4a16=989.4))
    g = hwmodels.estimate(gpu, shape, wbits=4, ideal=True)
    n = hwmodels.estimate(native, shape, wbits=4, ideal=True)
    assert (g.compute_dtype, g.dequantized) == ("fp16", True)
    assert (n.compute_dtype, n.dequantized) == ("w4a16", False)
    lin = shape.n_layers * shape.linear_params_per_layer
    # the converted weights cost dequant_ops_per_weight (4) vector ops each, per forward pass
    vec_g = g.ops[(g.ops.phase == "decode") & g.ops.op.str.endswith("_proj")].flops.sum()
    vec_n = n.ops[(n.ops.phase == "decode") & n.ops.op.str.endswith("_proj")].flops.sum()
    assert vec_g - vec_n == pytest.approx(4 * lin)
    assert g.extra["decode_compute_ms"] - n.extra["decode_compute_ms"] == pytest.approx(
        4 * lin / 100e12 * 1e3, rel=1e-6)
    assert g.ttft_ms > n.ttft_ms  # prefill also pays it
    # compute-bound decode (large batch): weight-only 4-bit loses its edge over fp16 on the GPU-like
    # spec (dequantization on top of fp16 math) but not with a native w4a16 unit
    big = {(sp, w): hwmodels.estimate(s, shape, wbits=w, batch=512, ideal=True).tpot_ms
           for sp, s in (("gpu", gpu), ("native", native)) for w in (4, 16)}
    assert big["gpu", 4] > big["gpu", 16] and big["native", 4] <= big["native", 16]
    # W8A8 runs natively on int8 units; W8A16 cannot (int8 units take 8-bit activations only)
    assert hwmodels.estimate(gpu, shape, wbits=8, abits=8).compute_dtype == "int8"
    assert hwmodels.estimate(gpu, shape, wbits=8, abits=16).compute_dtype == "fp16"


def test_energy_is_ops_times_pj_plus_bytes_times_pj():
    spec = make_spec(energy=dict(pj_per_op={"fp16": 1.0, "vector": 2.0}, pj_per_byte_dram=10.0))
    est = hwmodels.estimate(spec, "smollm2-135m", wbits=16, batch=2)
    dec = est.ops[est.ops.phase == "decode"]
    assert set(dec.dtype) == {"fp16", "vector"}
    hand = (dec.mat_flops.sum() * 1.0 + dec.vec_flops.sum() * 2.0 + dec.bytes.sum() * 10.0) * 1e-12
    assert est.energy_per_token_j == pytest.approx(hand / 2, rel=1e-9)
    idle = hwmodels.estimate(make_spec(energy=spec.energy.model_dump(), idle_w=50.0), "smollm2-135m", batch=2)
    assert idle.energy_per_token_j - est.energy_per_token_j == pytest.approx(50.0 * est.tpot_ms / 1e3 / 2)


def test_horowitz_defaults_and_process_scaling():
    assert default_pj_per_op("fp16") == pytest.approx((1.1 + 0.4) / 2)
    assert default_pj_per_op("fp32") == pytest.approx((3.7 + 0.9) / 2)
    assert default_pj_per_op("int8") == pytest.approx((0.2 + 0.1) / 2)
    assert default_pj_per_op("fp16", process_nm=7) == pytest.approx(0.75 * 7 / 45)
    assert default_mm2_per_mac("int8", 7) == pytest.approx((282 + 137) * 1e-6 * (7 / 45) ** 2)
    s = make_spec(process_nm=7)
    assert s.pj_per_op("fp16") == pytest.approx(0.75 * 7 / 45)
    assert make_spec().pj_per_byte_dram == 250.0  # 2 nJ per 64-bit DRAM access


def test_area_for_precision_sets_on_multi_precision_accelerator():
    spec = hwmodels.load_spec("mpu-hypo")
    a = spec.area
    unit = {d: spec.mac_units[d] * a.mm2_per_mac[d] for d in spec.mac_units}
    base = a.fixed_mm2 + spec.sram_mb * a.mm2_per_mb_sram
    assert spec.area_for({"w3a16", "w4a16", "w8a16"}) == pytest.approx(base + unit["w3a16"] + unit["w4a16"]
                                                                        + unit["w8a16"])
    e4 = hwmodels.estimate(spec, "llama-2-7b", wbits=4)
    assert (e4.compute_dtype, e4.dequantized) == ("w4a16", False)
    assert e4.area_mm2 == pytest.approx(base + unit["w4a16"] + unit["fp16"])  # attention + lm head on fp16
    ens = hwmodels.estimate_ensemble(spec, "llama-2-7b", [3, 4, 8])
    assert ens.area_mm2 == pytest.approx(base + unit["w3a16"] + unit["w4a16"] + unit["w8a16"] + unit["fp16"])
    assert hwmodels.estimate(make_spec(), "llama-2-7b").area_mm2 is None  # no area data


def test_with_knobs_changes_the_design_and_checks_ranges():
    spec = hwmodels.load_spec("mpu-hypo")
    fast = spec.with_knobs(bandwidth_gbs=1638.4)
    assert fast.memory.bandwidth_gbs == 1638.4 and fast.applied_knobs == {"bandwidth_gbs": 1638.4}
    e0, e1 = (hwmodels.estimate(s, "llama-2-7b", wbits=4) for s in (spec, fast))
    assert e1.tpot_ms < e0.tpot_ms
    no3 = spec.with_knobs(mac_units_w3a16=0)
    assert "w3a16" not in no3.compute_tflops
    e3 = hwmodels.estimate(no3, "llama-2-7b", wbits=3)
    assert (e3.compute_dtype, e3.dequantized) == ("w4a16", True)
    doubled = spec.with_knobs(clock_ghz=1.5)
    assert doubled.compute_tflops["w4a16"] == pytest.approx(1.5 * spec.compute_tflops["w4a16"])
    with pytest.raises(ConfigError, match="not declared"):
        spec.with_knobs(capacity_gb=64)
    with pytest.raises(ConfigError, match=r"out of range.*204.8 \.\. 3276.8"):
        spec.with_knobs(bandwidth_gbs=10)
    with pytest.raises(ConfigError, match="not allowed"):
        spec.with_knobs(mac_units_w4a16=1000)


def test_ensemble_schedules_combine_members():
    spec, shape = make_spec(), "llama-2-7b"
    m = {b: hwmodels.estimate(spec, shape, wbits=b) for b in (3, 4, 8)}
    seq = hwmodels.estimate_ensemble(spec, shape, [3, 4, 8], schedule="sequential")
    par = hwmodels.estimate_ensemble(spec, shape, [3, 4, 8], schedule="parallel")
    bat = hwmodels.estimate_ensemble(spec, shape, [3, 4, 8], schedule="batched")
    sli = hwmodels.estimate_ensemble(spec, shape, [3, 4, 8], schedule="sliced")
    assert seq.tpot_ms == pytest.approx(sum(e.tpot_ms for e in m.values()))
    assert par.tpot_ms == pytest.approx(max(e.tpot_ms for e in m.values())) and par.n_devices == 3
    assert max(e.tpot_ms for e in m.values()) <= bat.tpot_ms <= seq.tpot_ms
    assert sli.tpot_ms == pytest.approx(seq.tpot_ms)
    assert seq.weight_bytes == pytest.approx(sum(e.weight_bytes for e in m.values()))
    assert sli.weight_bytes == pytest.approx(m[8].weight_bytes + m[3].extra["weight_meta_bytes"]
                                             + m[4].extra["weight_meta_bytes"])
    assert par.peak_memory_bytes == pytest.approx(m[8].peak_memory_bytes)
    assert seq.energy_per_token_j == pytest.approx(sum(e.energy_per_token_j for e in m.values()))
    assert set(hwmodels.SCHEDULES) >= {"sequential", "parallel", "batched", "sliced"}
    # static power: every device idles for the ensemble's whole time per token
    hot = make_spec(idle_w=100.0)
    dyn = sum(hwmodels.estimate(spec, shape, wbits=b).extra["decode_energy_j"] for b in (3, 4, 8))
    p = hwmodels.estimate_ensemble(hot, shape, [3, 4, 8], schedule="parallel")
    assert p.energy_per_token_j == pytest.approx(dyn + 3 * 100.0 * p.tpot_ms / 1e3)
    q = hwmodels.estimate_ensemble(hot, shape, [3, 4, 8], schedule="sequential")
    assert q.energy_per_token_j == pytest.approx(dyn + 100.0 * q.tpot_ms / 1e3)


def test_agreement_gating_runs_the_rest_on_a_fraction_of_items():
    spec, shape = make_spec(), "llama-2-7b"
    m = {b: hwmodels.estimate(spec, shape, wbits=b) for b in (3, 4, 8)}
    g = hwmodels.estimate_ensemble(spec, shape, [8, 3, 4], gated_fraction=0.25)
    assert g.tpot_ms == pytest.approx(m[3].tpot_ms + m[4].tpot_ms + 0.25 * m[8].tpot_ms)
    assert [x["gated"] for x in g.members] == [True, False, False]
    full = hwmodels.estimate_ensemble(spec, shape, [3, 4, 8], gated_fraction=1.0)
    assert full.tpot_ms == pytest.approx(hwmodels.estimate_ensemble(spec, shape, [3, 4, 8]).tpot_ms)
    par = hwmodels.estimate_ensemble(spec, shape, [3, 4, 8], schedule="parallel", gated_fraction=0.5)
    assert par.tpot_ms == pytest.approx(0.5 * m[4].tpot_ms + 0.5 * m[8].tpot_ms)
    assert g.weight_bytes == pytest.approx(sum(e.weight_bytes for e in m.values()))  # all stay resident
    with pytest.raises(ConfigError, match="gated_fraction"):
        hwmodels.estimate_ensemble(spec, shape, [3, 4, 8], gated_fraction=1.5)


def test_fits_depends_on_capacity():
    l4 = hwmodels.load_spec("l4")
    assert not hwmodels.estimate(l4, "llama-2-13b", wbits=16).fits
    assert hwmodels.estimate(l4, "llama-2-13b", wbits=4).fits


def test_grid_matches_single_estimates_and_has_grid_shape():
    specs = [hwmodels.load_spec(n) for n in ("h100-sxm", "mpu-hypo", "jetson-orin")]
    shapes = ["smollm2-135m", "llama-2-7b", "qwen2.5-0.5b"]
    grid = evaluate_grid(specs, shapes, wbits=[2, 3, 4, 8, 16], group_size=[64, 128, -1], abits=[8, 16],
                         kvbits=[8, 16], batch=[1, 16], prompt_len=[128, 2048], gen_len=[1, 256])
    assert grid.data["tpot_ms"].shape == (3, 3, 5, 3, 2, 2, 2, 2, 2) == grid.shape
    rng = np.random.default_rng(0)
    for _ in range(25):
        idx = tuple(int(rng.integers(n)) for n in grid.shape)
        cfg = {k: v[i] for (k, v), i in zip(grid.axes.items(), idx)}
        est = hwmodels.estimate(specs[idx[0]], shapes[idx[1]], wbits=cfg["wbits"], group_size=cfg["group_size"],
                                abits=cfg["abits"], kvbits=cfg["kvbits"], batch=cfg["batch"],
                                prompt_len=cfg["prompt_len"], gen_len=cfg["gen_len"])
        for k in ("ttft_ms", "tpot_ms", "weight_bytes", "kv_bytes", "peak_memory_bytes", "energy_per_token_j"):
            assert grid.data[k][idx] == pytest.approx(getattr(est, k), rel=1e-9), k
        assert bool(grid.data["fits"][idx]) == est.fits
    df = grid.to_frame()
    assert len(df) == grid.size and {"spec", "model", "wbits", "tpot_ms", "compute_dtype"} <= set(df.columns)


def test_points_broadcast_and_bad_values():
    res = evaluate_points([make_spec()], ["llama-2-7b"], wbits=np.array([[4], [8]]), batch=np.array([1, 2, 4]))
    assert res["tpot_ms"].shape == (2, 3)
    with pytest.raises(ConfigError, match=r"wbits = 0 is not allowed \(allowed: 1..32\)"):
        hwmodels.estimate(make_spec(), "llama-2-7b", wbits=0)
    with pytest.raises(ConfigError, match="group_size = 0"):
        hwmodels.estimate(make_spec(), "llama-2-7b", wbits=4, group_size=0)
    with pytest.raises(ConfigError, match="batch"):
        hwmodels.estimate(make_spec(), "llama-2-7b", batch=0)
    with pytest.raises(ConfigError, match="unknown model shape 'gpt-17'"):
        hwmodels.load_shape("gpt-17")


def test_float_dtype_pins_the_16_bit_unit_and_fp32_weights_are_4_bytes():
    cpu = make_spec(compute_tflops=dict(fp32=0.2, bf16=0.9, fp16=0.01))
    assert hwmodels.estimate(cpu, "smollm2-135m").compute_dtype == "bf16"  # fastest by default
    pinned = hwmodels.estimate(cpu, "smollm2-135m", float_dtype="fp16")
    assert pinned.compute_dtype == "fp16" and pinned.ttft_ms > 10 * hwmodels.estimate(cpu, "smollm2-135m").ttft_ms
    assert hwmodels.estimate(cpu, "smollm2-135m", abits=32, float_dtype="fp16").compute_dtype == "fp32"
    shape = hwmodels.load_shape("smollm2-135m")
    assert hwmodels.estimate(cpu, shape, wbits=32, abits=32).weight_bytes == 4 * shape.n_params
    assert hwmodels.estimate(cpu, shape, wbits=16, abits=32).weight_bytes == 4 * shape.n_params
    w4_32, w4_16 = (hwmodels.estimate(cpu, shape, wbits=4, abits=a).weight_bytes for a in (32, 16))
    w4 = w4_32 - w4_16
    assert w4 == 2 * (shape.n_params - shape.n_layers * shape.linear_params_per_layer)  # fp32 embeddings/norms
    with pytest.raises(ConfigError, match="float_dtype"):
        hwmodels.estimate(cpu, shape, float_dtype="fp8")


@settings(max_examples=40, deadline=None)
@given(wbits=st.sampled_from([2, 3, 4, 8]), batch=st.integers(1, 256), prompt=st.integers(1, 8192),
       gen=st.integers(1, 2048), bw=st.floats(50, 5000), shape=st.sampled_from(["smollm2-135m", "llama-3-8b"]))
def test_monotonic_in_bandwidth_bits_and_lengths(wbits, batch, prompt, gen, bw, shape):
    spec, faster = make_spec(memory=dict(capacity_gb=80, bandwidth_gbs=bw)), make_spec(
        memory=dict(capacity_gb=80, bandwidth_gbs=bw * 2))
    res = evaluate_points([spec, faster], [shape], spec_index=np.array([0, 1, 0, 0, 0]),
                          wbits=np.array([wbits, wbits, 16, wbits, wbits]), batch=batch,
                          prompt_len=np.array([prompt, prompt, prompt, prompt * 2, prompt]),
                          gen_len=np.array([gen, gen, gen, gen, gen * 2]))
    t, m = res["tpot_ms"], res["peak_memory_bytes"]
    assert t[1] <= t[0]  # more bandwidth is never slower
    # fewer weight bits always read fewer bytes; at large batch the dequantization work can make a
    # weight-only format slower than fp16 (as W4A16 kernels are in practice), so time is not monotonic
    assert res["decode_memory_ms"][0] < res["decode_memory_ms"][2]
    if batch == 1:
        assert t[0] <= t[2]
    assert m[0] < m[2] and m[3] > m[0] and m[4] > m[0]
    assert res["ttft_ms"][3] > res["ttft_ms"][0] and t[4] >= t[0]
    assert np.all(res["energy_per_token_j"] > 0) and np.all(np.isfinite(t))


def test_unit_dispatch_on_builtin_gpus():
    a100, h100 = hwmodels.load_spec("a100-80gb"), hwmodels.load_spec("h100-sxm")
    cases = [(a100, 4, 4, "int4", False), (a100, 8, 8, "int8", False), (a100, 4, 8, "int8", True),
             (h100, 4, 4, "int8", True), (h100, 4, 16, "fp16", True), (h100, 16, 16, "fp16", False),
             (h100, 16, 32, "fp32", False)]
    for spec, w, a, dtype, deq in cases:
        est = hwmodels.estimate(spec, "llama-2-7b", wbits=w, abits=a)
        assert (est.compute_dtype, est.dequantized) == (dtype, deq), (spec.name, w, a)
