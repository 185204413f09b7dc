"""Runtime (software-stack) profiles: every term against a hand-computed case on a tiny spec and shape,
profile files validated like specs, lookup, and the default profile adding nothing."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

import hwmodels
from codesign.config import ConfigError
from hwmodels.roofline import evaluate_points
from hwmodels.runtime import KERNELS, RuntimeProfile, list_runtimes, load_runtime
from hwmodels.shapes import ModelShape
from hwmodels.spec import AcceleratorSpec

# 1 GB/s, 1 TFLOPS fp16, 1 TFLOPS vector, efficiencies 1: times are bytes / 1e9 and flops / 1e12
SPEC = AcceleratorSpec.model_validate(dict(
    name="tiny", memory=dict(capacity_gb=8, bandwidth_gbs=1.0), compute_tflops=dict(fp16=1.0), vector_tflops=1.0,
    dequant_ops_per_weight=4, efficiency={"default": {"compute": 1.0, "memory": 1.0}}))
# two layers, hidden 64, MHA 4 x 16, MLP 128, vocab 256
SHAPE = ModelShape(name="tiny2", arch="llama", n_layers=2, hidden=64, n_heads=4, n_kv_heads=4, head_dim=16,
                   intermediate=128, vocab=256)
L, H, I, V = 2, 64, 128, 256


def profile(**over) -> RuntimeProfile:
    return RuntimeProfile.model_validate({"name": "t", **over})


def est(rt=None, **kw):
    args = dict(wbits=4, group_size=64, batch=1, prompt_len=8, gen_len=8) | kw
    return hwmodels.estimate(SPEC, SHAPE, runtime=rt, **args)


def dec_ops(e):
    return e.ops[e.ops.phase == "decode"].set_index("op")


def pre_ops(e):
    return e.ops[e.ops.phase == "prefill"].set_index("op")


def test_default_profile_adds_nothing_and_is_the_default():
    assert "default" in list_runtimes()
    base = est()
    assert base.runtime == "default"
    same = est(profile())
    assert (same.tpot_ms, same.ttft_ms, same.weight_bytes) == (base.tpot_ms, base.ttft_ms, base.weight_bytes)


def test_launch_floor_counts_one_kernel_per_operator_per_layer():
    floor_us = 1e5  # 0.1 s: far above every operator's real time on this shape
    e = est(profile(launch_floor_us=floor_us))
    # per layer: attn_norm, q, k, v, attention (fused: one kernel), kv_write, o, mlp_norm, gate, up, act,
    # down = 12 kernels; plus embed, final_norm, lm_head
    assert e.tpot_ms == pytest.approx((12 * L + 3) * floor_us / 1e3)
    unfused = est(profile(launch_floor_us=floor_us, fused_attention=False))  # + softmax and A.V kernels
    assert unfused.tpot_ms == pytest.approx((14 * L + 3) * floor_us / 1e3)
    # a kernel's own floor replaces the profile's for the operators it runs (7 linears x 2 layers)
    own = est(profile(launch_floor_us=floor_us, kernels={"dequant-matmul": {"launch_floor_us": 2 * floor_us}}))
    assert own.tpot_ms == pytest.approx(((12 * L + 3) + 7 * L) * floor_us / 1e3)


def test_framework_overhead_async_serial_and_cuda_graphs():
    base = est()
    dev = base.tpot_ms  # tiny shape: device time is far below 2 x 400 us
    fw = dict(per_forward_us=50.0, per_layer_us=400.0)
    serial = est(profile(framework=fw | {"async_launch": False}))
    assert serial.tpot_ms == pytest.approx(dev + (50 + L * 400) / 1e3)
    assert dev < L * 0.4
    overlapped = est(profile(framework=fw | {"async_launch": True}))
    assert overlapped.tpot_ms == pytest.approx((50 + L * 400) / 1e3)  # max(device, host) + per forward
    graphs = est(profile(framework=fw | {"cuda_graphs": True}))
    assert graphs.tpot_ms == pytest.approx(dev + 50 / 1e3)  # decode replays a graph: no per-layer host time
    assert graphs.ttft_ms == pytest.approx(max(base.ttft_ms, L * 0.4) + 0.05)  # prefill stays eager
    assert graphs.extra["overhead_ms"] == pytest.approx(0.05)


def test_dequantization_per_pass_per_tile_and_none():
    q_w = H * H * L  # q_proj weights over both layers
    per_pass = dec_ops(est(profile(kernels={"dequant-matmul": {"dequant": "per_pass"}}), batch=8))
    per_tile = dec_ops(est(profile(kernels={"dequant-matmul": {"dequant": "per_tile", "tile_m": 3}}), batch=8))
    free = dec_ops(est(profile(kernels={"dequant-matmul": {"dequant": "none"}}), batch=8))
    assert per_pass.loc["q_proj", "vec_flops"] == 4 * q_w
    assert per_tile.loc["q_proj", "vec_flops"] == 4 * q_w * math.ceil(8 / 3)  # 3 tiles of 3 rows for 8 tokens
    assert free.loc["q_proj", "vec_flops"] == 0
    ops8 = dec_ops(est(profile(kernels={"dequant-matmul": {"dequant_ops_per_weight": 8}}), batch=8))
    assert ops8.loc["q_proj", "vec_flops"] == 8 * q_w
    # prefill of 8 x 8 tokens: per tile dequantizes ceil(64 / 3) times
    pre = est(profile(kernels={"dequant-matmul": {"dequant": "per_tile", "tile_m": 3}}), batch=8).ops
    pre = pre[pre.phase == "prefill"].set_index("op")
    assert pre.loc["q_proj", "vec_flops"] == 4 * q_w * math.ceil(64 / 3)


def test_dense_copy_of_dequantize_then_matmul():
    plain = dec_ops(est())
    copy = dec_ops(est(profile(kernels={"dequant-matmul": {"writes_dense_weights": True}})))
    # the fp16 copy (2 bytes per weight) is written and read back once per pass
    assert copy.loc["q_proj", "bytes"] - plain.loc["q_proj", "bytes"] == 2 * 2 * H * H * L
    assert copy.loc["lm_head", "bytes"] == plain.loc["lm_head", "bytes"]  # dense head: no copy


def test_lm_head_bits():
    dense = est(wbits=8)
    q = est(profile(quantize_lm_head=True), wbits=8)
    q4 = est(profile(quantize_lm_head=True, lm_head_bits=4), wbits=8)
    head_dense = V * H * 2
    head8 = V * H * 8 / 8 + V * (H // 64) * (16 + 8) / 8  # 8-bit weights + a 16-bit scale and 8-bit zero per group
    head4 = V * H * 4 / 8 + V * (H // 64) * (16 + 4) / 8
    assert dense.weight_bytes - q.weight_bytes == pytest.approx(head_dense - head8)
    assert dense.weight_bytes - q4.weight_bytes == pytest.approx(head_dense - head4)
    assert dec_ops(q4).loc["lm_head", "bytes"] < dec_ops(q).loc["lm_head", "bytes"] < dec_ops(dense).loc["lm_head",
                                                                                                          "bytes"]
    assert est(profile(quantize_lm_head=True), wbits=16).weight_bytes == est(wbits=16).weight_bytes  # dense model
    # a tied embedding table stays dense for lookups: quantizing the head adds a quantized copy
    tied = ModelShape(**{**SHAPE.to_dict(), "name": "tied", "tied_embeddings": True})
    t0 = hwmodels.estimate(SPEC, tied, wbits=4, group_size=64)
    t1 = hwmodels.estimate(SPEC, tied, wbits=4, group_size=64, runtime=profile(quantize_lm_head=True))
    assert t1.weight_bytes - t0.weight_bytes == pytest.approx(V * H * 4 / 8 + V * (H // 64) * (16 + 4) / 8)


def test_partial_overlap_of_compute_and_memory():
    for ov in (1.0, 0.5, 0.0):
        d = dec_ops(est(profile(overlap=ov), batch=4))
        tc, tm = d["compute_ms"].to_numpy(), d["memory_ms"].to_numpy()
        assert d["time_ms"].to_numpy() == pytest.approx(np.maximum(tc, tm) + (1 - ov) * np.minimum(tc, tm))


def test_kernel_efficiency_per_format_and_other_efficiency():
    base = dec_ops(est())
    slow = dec_ops(est(profile(kernels={"dequant-matmul": {"memory_efficiency": {"w4": 0.5, "default": 0.9}},
                                        "torch-matmul": {"memory_efficiency": 0.25}},
                               other_efficiency={"memory": 0.8})))
    assert slow.loc["q_proj", "memory_ms"] == pytest.approx(2 * base.loc["q_proj", "memory_ms"])  # w4 entry
    assert slow.loc["lm_head", "memory_ms"] == pytest.approx(4 * base.loc["lm_head", "memory_ms"])  # dense kernel
    assert slow.loc["attn_norm", "memory_ms"] == pytest.approx(base.loc["attn_norm", "memory_ms"] / 0.8)
    w8 = dec_ops(est(profile(kernels={"dequant-matmul": {"memory_efficiency": {"w4": 0.5, "default": 0.9}}}),
                     wbits=8))
    w8_base = dec_ops(est(wbits=8))
    assert w8.loc["q_proj", "memory_ms"] == pytest.approx(w8_base.loc["q_proj", "memory_ms"] / 0.9)  # default
    comp = dec_ops(est(profile(kernels={"dequant-matmul": {"compute_efficiency": 0.5}}), batch=4))
    base4 = dec_ops(est(batch=4))
    assert comp.loc["q_proj", "compute_ms"] > base4.loc["q_proj", "compute_ms"]


def test_formats_choose_kernels_and_rows_can_name_theirs():
    rt = profile(formats={"w4": "aten-int4pack-cuda", "default": "dequant-matmul"},
                 kernels={"aten-int4pack-cuda": {"memory_efficiency": 0.5, "dequant": "none"}})
    w4 = dec_ops(est(rt))
    base = dec_ops(est())
    assert w4.loc["q_proj", "memory_ms"] == pytest.approx(2 * base.loc["q_proj", "memory_ms"])
    assert w4.loc["q_proj", "vec_flops"] == 0
    w8 = dec_ops(est(rt, wbits=8))  # no w8 entry: the default kernel (spec's efficiency)
    assert w8.loc["q_proj", "memory_ms"] == pytest.approx(dec_ops(est(wbits=8)).loc["q_proj", "memory_ms"])
    # a measured row names the kernel that ran; it wins over the format map
    res = evaluate_points([SPEC], [SHAPE], wbits=np.array([4, 4]), group_size=64, runtime=rt,
                          kernel=np.array(["aten-int4pack-cuda", "dequant-matmul"], dtype=object))
    assert res["decode_memory_ms"][0] > res["decode_memory_ms"][1]
    with pytest.raises(ConfigError, match="kernel 'warp-gemm' is not allowed"):
        evaluate_points([SPEC], [SHAPE], wbits=4, runtime=rt, kernel="warp-gemm")


def test_ideal_ignores_the_runtime():
    rt = profile(launch_floor_us=1e5, framework={"per_forward_us": 1e3})
    assert est(rt, ideal=True).tpot_ms == est(ideal=True).tpot_ms


def test_ensemble_members_run_under_the_profile():
    rt = profile(framework={"per_forward_us": 1e3, "async_launch": False})
    seq = hwmodels.estimate_ensemble(SPEC, SHAPE, [4, 8], group_size=64, runtime=rt)
    base = hwmodels.estimate_ensemble(SPEC, SHAPE, [4, 8], group_size=64)
    assert seq.runtime == "t" and seq.tpot_ms == pytest.approx(base.tpot_ms + 2 * 1.0)  # one forward per member


# -- files: validated like specs -------------------------------------------------------------------------
GOOD = {"name": "my-stack", "launch_floor_us": 3, "framework": {"per_forward_us": 20},
        "formats": {"w4": "marlin-torchao"}, "kernels": {"marlin-torchao": {"memory_efficiency": {"w4": 0.7}}}}


def write(tmp_path, data, name="stack.yaml"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("name", ["default"] + [n for n in list_runtimes() if n != "default"])
def test_builtin_profiles_load(name):
    rt = load_runtime(name)
    assert rt.name
    if name != "default":
        assert rt.sources and rt.calibration, name  # fitted to published or measured points, with sources
        for k in rt.kernels:
            assert k in KERNELS or rt.kernels[k].description


@pytest.mark.parametrize("patch, needle", [
    ({"launch_floor_us": float("nan")}, "launch_floor_us = nan"),
    ({"launch_floor_us": float("inf")}, "allowed: a finite number >= 0.0 and <= 1000000.0"),
    ({"launch_floor_us": -1}, "launch_floor_us = -1"),
    ({"overlap": 1.5}, "overlap = 1.5"),
    ({"framework": {"per_layer_us": float("nan")}}, "framework.per_layer_us = nan"),
    ({"kernels": {"marlin-torchao": {"memory_efficiency": {"w4": 1.2}}}}, "allowed: a finite number > 0.0"),
    ({"kernels": {"marlin-torchao": {"memory_efficiency": {"w4": 0}}}}, "memory_efficiency"),
    ({"kernels": {"marlin-torchao": {"dequant": "sometimes"}}}, "'none', 'per_pass' or 'per_tile'"),
    ({"kernels": {"marlin-torchao": {"memory_efficiency": {"int4": 0.5}}}}, "key 'int4' is not allowed"),
    ({"kernels": {"warp-gemm": {"tile_m": 8}}}, "unknown kernel 'warp-gemm'"),
    ({"formats": {"w4": "nope"}}, "formats.w4 = 'nope': no such kernel"),
    ({"lanch_floor_us": 3}, "lanch_floor_us"),
])
def test_bad_profile_files_name_file_field_value_and_allowed(tmp_path, patch, needle):
    data = {**GOOD, **patch}
    p = write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_runtime(p)
    msg = str(e.value)
    assert str(p) in msg and needle in msg, msg


def test_declared_kernel_with_description_and_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path / "cache"))
    ok = load_runtime(write(tmp_path, {**GOOD, "kernels": {"warp-gemm": {"description": "my kernel"}},
                                       "formats": {"w4": "warp-gemm"}}))
    assert ok.format_kernel(4) == "warp-gemm" and ok.format_kernel(8) == "dequant-matmul"
    user = tmp_path / "cache" / "runtimes"
    user.mkdir(parents=True)
    (user / "mine.yaml").write_text(yaml.safe_dump({**GOOD, "name": "my-stack"}))
    assert load_runtime("mine").name == "my-stack" and load_runtime("my-stack").name == "my-stack"
    with pytest.raises(ConfigError, match=r"unknown runtime profile 'nope' \(available: .*default"):
        load_runtime("nope")


def test_cli_bad_profile_exits_2_with_one_error(tmp_path):
    p = write(tmp_path, {**GOOD, "overlap": float("nan")})
    r = subprocess.run([sys.executable, "-m", "codesign", "hw", "--runtime", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "overlap = nan" in r.stderr and str(p) in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "codesign", "hw", "--runtime", "no-such-stack"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "unknown runtime profile 'no-such-stack'" in r.stderr


def test_expanded_gqa_reads_the_cache_once_per_query_head():
    gqa = ModelShape(**{**SHAPE.to_dict(), "name": "gqa", "n_kv_heads": 1})  # 4 query heads share one K/V head
    kw = dict(wbits=16, batch=1, prompt_len=64, gen_len=8)
    plain = dec_ops(hwmodels.estimate(SPEC, gqa, **kw))
    expanded = dec_ops(hwmodels.estimate(SPEC, gqa, runtime=profile(expands_gqa=True), **kw))
    ctx = 64 + 8 / 2
    kv_bytes = ctx * 16 * L * 2  # one K (or V) head of 16 per position per layer, 2 bytes each
    assert plain.loc["attn_qk", "bytes"] - expanded.loc["attn_qk", "bytes"] == pytest.approx(-3 * kv_bytes)
    assert expanded.loc["q_proj", "bytes"] == plain.loc["q_proj", "bytes"]


def test_small_m_compute_efficiency():
    base = dec_ops(est(wbits=16, batch=4))
    half = dec_ops(est(profile(kernels={"torch-matmul": {"compute_m_half": 4}}), wbits=16, batch=4))
    # M = 4 rows at m_half = 4: half the compute efficiency, so matrix compute time doubles (no vector work)
    assert half.loc["q_proj", "compute_ms"] == pytest.approx(2 * base.loc["q_proj", "compute_ms"])
    assert half.loc["attn_norm", "compute_ms"] == pytest.approx(base.loc["attn_norm", "compute_ms"])


def test_decode_half_point_acts_on_decode_steps_of_its_kernel_only():
    kw = dict(wbits=16, batch=4, prompt_len=8)  # decode: M = 4 rows; prefill: M = 32 rows (lm head: 4)
    base_dec, base_pre = dec_ops(est(**kw)), pre_ops(est(**kw))
    shared = est(profile(kernels={"torch-matmul": {"compute_m_half": 4}}), **kw)
    split = est(profile(kernels={"torch-matmul": {"compute_m_half": 4, "compute_m_half_decode": 12}}), **kw)
    # decode: efficiency x 4 / (4 + 12), so matrix compute time is 4x the flat one (2x with the shared 4)
    for op in ("q_proj", "lm_head"):
        assert dec_ops(split).loc[op, "compute_ms"] == pytest.approx(4 * base_dec.loc[op, "compute_ms"])
        assert dec_ops(shared).loc[op, "compute_ms"] == pytest.approx(2 * base_dec.loc[op, "compute_ms"])
    # prefill keeps compute_m_half: 32 rows -> x (1 + 4 / 32); the lm head's 4 last positions -> x 2
    for e in (shared, split):
        assert pre_ops(e).loc["q_proj", "compute_ms"] == pytest.approx(1.125 * base_pre.loc["q_proj", "compute_ms"])
        assert pre_ops(e).loc["lm_head", "compute_ms"] == pytest.approx(2 * base_pre.loc["lm_head", "compute_ms"])
    assert split.ttft_ms == shared.ttft_ms
    assert dec_ops(split).loc["attn_norm", "compute_ms"] == base_dec.loc["attn_norm", "compute_ms"]
    # unset: decode uses compute_m_half; another kernel's linears (dequant-matmul for w4) are untouched
    same = est(profile(kernels={"torch-matmul": {"compute_m_half": 4, "compute_m_half_decode": 4}}), **kw)
    assert (same.tpot_ms, same.ttft_ms) == (shared.tpot_ms, shared.ttft_ms)
    w4 = [dec_ops(est(p, **(kw | {"wbits": 4}))) for p in
          (profile(kernels={"torch-matmul": {"compute_m_half": 4}}),
           profile(kernels={"torch-matmul": {"compute_m_half": 4, "compute_m_half_decode": 12}}))]
    assert w4[0].loc["q_proj", "compute_ms"] == w4[1].loc["q_proj", "compute_ms"]
    assert w4[1].loc["lm_head", "compute_ms"] == pytest.approx(2 * w4[0].loc["lm_head", "compute_ms"])


def test_prefill_is_priced_on_the_kernel_measure_runs_it_on():
    """Quantized weights on a kernel of PREFILL_ON_DENSE_COPY: prefill runs (as `codesign measure --prefill
    auto` does, PackedLinear.copies_for_prefill) the dense GEMM on a 16-bit dequantized copy, decode the
    packed kernel; the copy's bytes count in memory. An explicit prefill kernel prices prefill on it."""
    from hwmodels.runtime import PREFILL_ON_DENSE_COPY

    assert "aten-int4pack-cpu" in PREFILL_ON_DENSE_COPY
    rt = profile(formats={"w4": "aten-int4pack-cpu"},
                 kernels={"aten-int4pack-cpu": {"dequant": "none", "memory_efficiency": 0.5, "compute_efficiency": 0.1},
                          "torch-matmul": {"compute_m_half": 4}})
    kw = dict(batch=2, prompt_len=8, gen_len=8)
    q4, dense = est(rt, **kw), est(rt, **(kw | {"wbits": 16}))
    packed = hwmodels.estimate(SPEC, SHAPE, runtime=rt, wbits=4, group_size=64, prefill_kernel="aten-int4pack-cpu",
                               **kw)
    assert q4.ttft_ms == pytest.approx(dense.ttft_ms)  # the same dense GEMM on 16-bit weights
    # reads the 16-bit copy (2 bytes per weight) and its activations (no on-chip memory on this spec)
    act = 2 * H * 2 * kw["batch"] * kw["prompt_len"] * L
    assert pre_ops(q4).loc["q_proj", "bytes"] == pytest.approx(2 * H * H * L + act)
    assert q4.tpot_ms == pytest.approx(packed.tpot_ms) and q4.tpot_ms != pytest.approx(dense.tpot_ms)
    assert packed.ttft_ms != pytest.approx(q4.ttft_ms)
    lin = L * (4 * H * H + 3 * H * I)  # linear weights of the two layers
    assert q4.weight_bytes - packed.weight_bytes == pytest.approx(2 * lin)  # + the dense copy, 2 bytes/weight
    assert q4.peak_memory_bytes - packed.peak_memory_bytes == pytest.approx(2 * lin)
    # kernels outside the set run both phases on themselves (dequant-matmul: the default profile's w4)
    plain = est(profile(), **kw)
    assert pre_ops(plain).loc["q_proj", "bytes"] < 2 * H * H * L + act


def test_batched_ensemble_overlaps_device_work_but_not_floors_or_host_time():
    bits = [4, 8]
    kw = dict(group_size=64, prompt_len=8, gen_len=8)
    base = hwmodels.estimate_ensemble(SPEC, SHAPE, bits, schedule="batched", **kw)
    members = [est(wbits=b) for b in bits]
    dev = max(sum(m.extra["decode_compute_ms"] for m in members), sum(m.extra["decode_memory_ms"] for m in members))
    assert base.tpot_ms == pytest.approx(dev)  # the default profile: the schedule as before profiles
    rt = profile(launch_floor_us=1e5, framework={"per_forward_us": 1e3, "per_layer_us": 5e4, "async_launch": False})
    e = hwmodels.estimate_ensemble(SPEC, SHAPE, bits, schedule="batched", runtime=rt, **kw)
    floors = 2 * (12 * L + 3) * 100.0  # every member's kernels, 100 ms each (far above their real time)
    assert e.tpot_ms == pytest.approx(floors + 2 * L * 50.0 + 2 * 1.0, rel=1e-3)
    seq = hwmodels.estimate_ensemble(SPEC, SHAPE, bits, schedule="sequential", runtime=rt, **kw)
    assert seq.tpot_ms == pytest.approx(e.tpot_ms, rel=1e-3)  # nothing left to overlap
