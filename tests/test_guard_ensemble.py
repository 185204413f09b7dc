"""Precision ensembles (hwmodels/ensemble.py) against hand combinations of their members (issue 21).

The members' own costs are pinned by ``test_guard_roofline.py``; here each schedule's combination of
them is written out by hand: the interleaved (``batched``) step under a software-stack profile, the
quorum of agreement gating, energy and area per device, and every field of the result. The spec is
chosen so the members differ where a wrong index or a dropped argument would show: bits [8, 4, 16]
(the widest member is not the first), a w4a16 unit (two compute dtypes), 300 GB/s (the 16-bit member
is memory-bound in decode and compute-bound in prefill, the 8-bit one compute-bound in both)."""

from __future__ import annotations

import numpy as np
import pytest

import hwmodels
from codesign.config import ConfigError
from hwmodels.ensemble import SCHEDULES, Schedule, get_schedule, quorum_mask, register_schedule
from hwmodels.roofline import evaluate_points
from hwmodels.runtime import load_runtime
from hwmodels.shapes import ModelShape
from test_guard_roofline import SHAPE, B, P, G, IDLE_W, spec as base_spec

BITS = [8, 4, 16]
GS = 32
# 1 GHz clock: MAC counts are tflops * 1e3 / 2 (fp16 500, int8 1000, w4a16 2000)
AREA = dict(fixed_mm2=10.0, mm2_per_mb_sram=2.0, mm2_per_mac={"fp16": 0.01, "int8": 0.004, "w4a16": 0.002})
BASE_MM2, FP16_MM2, W4_MM2 = 10 + 3 * 2, 500 * 0.01, 2000 * 0.002


def spec(**over):
    d = dict(memory=dict(capacity_gb=1, bandwidth_gbs=300.0), compute_tflops=dict(fp16=1.0, int8=2.0, w4a16=4.0),
             overhead_us={"per_layer": 3, "per_forward": 7}, sram_mb=3.0, area=AREA, clock_ghz=1.0)
    return base_spec(**(d | over))


def members(s, bits=BITS, **kw):
    return {b: hwmodels.estimate(s, SHAPE, wbits=b, group_size=GS, batch=B, prompt_len=P, gen_len=G, **kw)
            for b in bits}


def ens(s, schedule="sequential", bits=BITS, **kw):
    return hwmodels.estimate_ensemble(s, SHAPE, bits, group_size=GS, schedule=schedule, batch=B, prompt_len=P,
                                      gen_len=G, **kw)


def test_every_field_of_a_sequential_ensemble():
    s = spec()
    one, e = members(s), ens(s)
    assert (e.spec, e.model, e.wbits, e.group_size, e.abits, e.kvbits) == ("guard", "guard", 16, GS, 16, 16)
    assert (e.batch, e.prompt_len, e.gen_len, e.schedule, e.gated_fraction, e.n_devices) == (B, P, G, "sequential",
                                                                                              None, 1)
    assert e.capacity_bytes == 1e9 and e.fits is True
    assert e.compute_dtype == "fp16,w4a16" and e.dequantized is True  # only the 8-bit member dequantizes
    # bounds are the widest (16-bit) member's: memory in decode, compute in prefill; the 8-bit one differs
    assert (e.decode_bound, e.prefill_bound) == ("memory", "compute") == (one[16].decode_bound, one[16].prefill_bound)
    assert one[8].decode_bound == "compute"
    # and the other way round: memory-bound prefill at 1 GB/s, compute-bound decode at 3 TB/s
    slow, fast = (ens(spec(memory=dict(capacity_gb=1, bandwidth_gbs=bw))) for bw in (1.0, 3000.0))
    assert (slow.prefill_bound, fast.decode_bound) == ("memory", "compute")
    assert e.area_mm2 == pytest.approx(BASE_MM2 + FP16_MM2 + W4_MM2)  # one device: each unit once
    assert e.runtime == "default" and e.ops is None
    for m, b in zip(e.members, BITS):
        x = one[b]
        assert m == dict(bits=b, gated=False, run_fraction=1.0, ttft_ms=pytest.approx(x.ttft_ms),
                         tpot_ms=pytest.approx(x.tpot_ms), weight_bytes=pytest.approx(x.weight_bytes),
                         kv_bytes=pytest.approx(x.kv_bytes), energy_per_token_j=pytest.approx(x.energy_per_token_j),
                         compute_dtype=x.compute_dtype, dequantized=x.dequantized)
    assert [m["dequantized"] for m in e.members] == [True, False, False]


def test_default_group_size_is_128():
    # hidden 129: one group of 129 would be the only group per row, 128 gives two
    wide = ModelShape(name="wide", arch="llama", n_layers=1, hidden=129, n_heads=3, n_kv_heads=1, head_dim=16,
                      intermediate=80, vocab=100)
    s = spec()
    e = hwmodels.estimate_ensemble(s, wide, [4, 8])
    assert e.group_size == 128
    assert e.weight_bytes == pytest.approx(sum(hwmodels.estimate(s, wide, wbits=b, group_size=128).weight_bytes
                                               for b in (4, 8)))


def test_fits_at_exactly_the_capacity_and_not_a_byte_over():
    peak = ens(spec()).peak_memory_bytes
    cap = peak / 1e9
    assert cap * 1e9 == peak  # the boundary is representable: fits is peak <= capacity
    at = ens(spec(memory=dict(capacity_gb=cap, bandwidth_gbs=300.0)))
    assert at.fits is True and at.capacity_bytes == peak
    under = cap * (1 - 5e-10)  # capacity just below the peak (by less than one part in 1e9)
    over = ens(spec(memory=dict(capacity_gb=under, bandwidth_gbs=300.0)))
    assert over.fits is False and over.capacity_bytes == under * 1e9


def test_parallel_area_energy_and_devices():
    s = spec()
    one, par = members(s), ens(s, "parallel")
    # one device per member, each with its own units: 8-bit and 16-bit fp16 only, 4-bit w4a16 + fp16 (attention)
    assert par.area_mm2 == pytest.approx(3 * BASE_MM2 + 3 * FP16_MM2 + W4_MM2)
    assert ens(base_spec(), "parallel").area_mm2 is None  # no area data for a member: no total
    ttft = max(x.ttft_ms for x in one.values())
    dyn_pre = sum(x.prefill_energy_j - IDLE_W * x.ttft_ms / 1e3 for x in one.values())
    assert par.prefill_energy_j == pytest.approx(dyn_pre + 3 * IDLE_W * ttft / 1e3)  # three devices idle
    sl = ens(s, "sliced")
    assert sl.n_devices == 1
    assert sl.energy_per_token_j == pytest.approx((sum(x.extra["decode_energy_j"] for x in one.values())
                                                   + IDLE_W * sl.tpot_ms / 1e3) / B)


def test_ensemble_passes_every_setting_to_its_members():
    s = spec(efficiency={"default": {"compute": 0.5, "memory": 0.25}}, compute_tflops=dict(fp16=1.0, bf16=0.5,
                                                                                         int8=2.0, w4a16=4.0))
    kw = dict(abits=8, kvbits=8, sym=True, float_dtype="bf16")
    for ideal in (False, True):
        one = members(s, **kw, ideal=ideal)
        e = ens(s, **kw, ideal=ideal)
        assert e.tpot_ms == pytest.approx(sum(x.tpot_ms for x in one.values()))
        assert e.ttft_ms == pytest.approx(sum(x.ttft_ms for x in one.values()))
        assert e.weight_bytes == pytest.approx(sum(x.weight_bytes for x in one.values()))
        assert e.kv_bytes == pytest.approx(sum(x.kv_bytes for x in one.values()))
        assert (e.abits, e.kvbits) == (8, 8)
    # each setting changes the members, so a dropped one would show
    plain = ens(s)
    for change in (dict(abits=8), dict(kvbits=8), dict(sym=True), dict(ideal=True), dict(float_dtype="bf16")):
        assert ens(s, **change).tpot_ms != pytest.approx(plain.tpot_ms) or \
            ens(s, **change).weight_bytes != pytest.approx(plain.weight_bytes), change


def _step(r, mask, phase):
    """The interleaved step, written out: compute and memory overlap across members, floors add, host
    time overlaps the device only under asynchronous launch, each member's framework step adds, the
    fixed overhead is paid once."""
    def tot(k):
        return sum(r[f"{phase}_{k}_ms"][i] for i in range(len(mask)) if mask[i])
    device = max(tot("compute"), tot("memory")) + tot("floor")
    host = tot("host")
    busy = max(device, host) if all(r["host_overlaps"][i] for i in range(len(mask)) if mask[i]) else device + host
    return busy + sum(r["framework_ms"][i] for i in range(len(mask)) if mask[i]) + max(
        r["fixed_ms"][i] for i in range(len(mask)) if mask[i])


@pytest.mark.parametrize("async_launch", [False, True])
def test_batched_step_under_a_runtime_profile(async_launch):
    base = load_runtime("torch-cpu")
    rt = base.model_copy(update={"framework": base.framework.model_copy(
        update={"async_launch": async_launch, "per_forward_us": 50.0})})
    s = spec()
    r = evaluate_points([s], [SHAPE], wbits=np.array(BITS), group_size=GS, batch=B, prompt_len=P, gen_len=G,
                        runtime=rt)
    assert (r["framework_ms"] > 0).all() and (r["fixed_ms"] > 0).all() and (r["decode_host_ms"] > 0).all()
    everyone, quorum = [True] * 3, [True, True, False]  # 8 and 4 bits always run, 16 on a fifth of items
    for kw, mix in ((dict(), lambda ph: _step(r, everyone, ph)),
                    (dict(gated_fraction=0.2), lambda ph: 0.8 * _step(r, quorum, ph) + 0.2 * _step(r, everyone, ph))):
        e = ens(s, "batched", runtime=rt, **kw)
        assert e.runtime == "torch-cpu"
        assert e.ttft_ms == pytest.approx(mix("prefill"), rel=1e-9)
        assert e.tpot_ms == pytest.approx(mix("decode"), rel=1e-9)
    # host time (per layer) exceeds the device time, so overlapping it or not changes the step
    dev = max(r["decode_compute_ms"].sum(), r["decode_memory_ms"].sum()) + r["decode_floor_ms"].sum()
    assert r["decode_host_ms"].sum() > dev


def test_gating_fraction_quorum_and_prefill_energy():
    s = spec()
    one = members(s)
    dyn_pre = {b: x.prefill_energy_j - IDLE_W * x.ttft_ms / 1e3 for b, x in one.items()}
    g = ens(s, gated_fraction=0.25)
    assert g.gated_fraction == 0.25
    assert g.prefill_energy_j == pytest.approx(dyn_pre[8] + dyn_pre[4] + 0.25 * dyn_pre[16] + IDLE_W * g.ttft_ms / 1e3)
    # f = 0: only the quorum runs
    z = ens(s, gated_fraction=0.0)
    assert z.tpot_ms == pytest.approx(one[8].tpot_ms + one[4].tpot_ms)
    # a quorum of one (the lowest precision) instead of k//2 + 1 = 2
    q1 = ens(s, gated_fraction=0.5, gated_always=1)
    assert [m["gated"] for m in q1.members] == [True, False, True]
    assert q1.tpot_ms == pytest.approx(one[4].tpot_ms + 0.5 * (one[8].tpot_ms + one[16].tpot_ms))


def test_quorum_mask_size_ties_and_range():
    assert quorum_mask([8, 3, 4]).tolist() == [False, True, True]
    assert quorum_mask([8, 3, 4, 16]).tolist() == [True, True, True, False]  # 4//2 + 1 = 3
    assert quorum_mask([8, 3, 4], 1).tolist() == [False, True, False]
    assert quorum_mask([8, 3, 4], 3).tolist() == [True, True, True]
    # ties keep member order: 18 members, the nine 3-bit ones and the first 4-bit one
    mask = quorum_mask([3, 4] * 9)
    assert np.flatnonzero(mask).tolist() == [0, 1, 2, 4, 6, 8, 10, 12, 14, 16]
    for bad in (0, 4):
        with pytest.raises(ConfigError, match=rf"^gated_always = {bad} is not allowed \(allowed: 1\.\.3\)$"):
            quorum_mask([8, 3, 4], bad)


def test_schedule_registry_and_messages():
    with pytest.raises(ConfigError, match=r"^--schedule: unknown schedule 'nope' \(allowed: sequential, parallel, "
                                          r"batched, sliced"):
        get_schedule("nope")
    with pytest.raises(ConfigError, match=r"^--ensemble: give at least one member bit-width, e\.g\. 3,4,8$"):
        ens(spec(), bits=[])
    # a schedule of one's own: the first member alone, its memory only
    first = Schedule("guard-first", "first member only", lambda m, mask: (float(m["ttft_ms"][0]),
                                                                           float(m["tpot_ms"][0])),
                     lambda m: (float(m["weight_bytes"][0]), float(m["kv_bytes"][0]),
                                float(m["peak_memory_bytes"][0]), 1))
    assert register_schedule(first) is first
    try:
        e = ens(spec(), "guard-first")
        x = members(spec(), [8])[8]
        assert (e.schedule, e.tpot_ms, e.weight_bytes) == ("guard-first", pytest.approx(x.tpot_ms),
                                                           pytest.approx(x.weight_bytes))
    finally:
        SCHEDULES.pop("guard-first")
