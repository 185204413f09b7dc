"""Every roofline term, per operator and phase, against a hand-written reference on a tiny shape
whose sizes are not multiples of each other (issue 21): GQA (3 query heads, 1 KV head), hidden 48
and MLP 80 with group size 32 (48/32 and 80/32 round up), batch 2, prompt 5, 4 generated tokens.

The spec has round numbers (1 GB/s, 1 TFLOPS fp16 and vector, no on-chip memory) so each operator's
time is bytes / 1e9 or flops / 1e12; energy uses distinct pJ per op / byte so no term can stand in
for another."""

from __future__ import annotations

import numpy as np
import pytest

import hwmodels
from hwmodels.roofline import OPS, evaluate_points
from hwmodels.shapes import ModelShape
from hwmodels.spec import AcceleratorSpec

L, H, NH, NKV, HD, I, V = 2, 48, 3, 1, 16, 80, 100
Q, KVD = NH * HD, NKV * HD
B, P, G = 2, 5, 4
SHAPE = ModelShape(name="guard", arch="llama", n_layers=L, hidden=H, n_heads=NH, n_kv_heads=NKV, head_dim=HD,
                   intermediate=I, vocab=V)
PJ = dict(fp16=2.0, int8=1.5, vector=3.0)
PJ_DRAM, IDLE_W = 5.0, 0.5


def spec(**over) -> AcceleratorSpec:
    d = dict(name="guard", memory=dict(capacity_gb=1, bandwidth_gbs=1.0), compute_tflops=dict(fp16=1.0, int8=2.0),
             vector_tflops=1.0, dequant_ops_per_weight=4, idle_w=IDLE_W,
             energy=dict(pj_per_op=PJ, pj_per_byte_dram=PJ_DRAM, pj_per_byte_sram=7.0),
             efficiency={"default": {"compute": 1.0, "memory": 1.0}})
    return AcceleratorSpec.model_validate(d | over)


# (in, out) of the linears and the lm head
LINEARS = {"q_proj": (H, Q), "k_proj": (H, KVD), "v_proj": (H, KVD), "o_proj": (Q, H), "gate_proj": (H, I),
           "up_proj": (H, I), "down_proj": (I, H)}


def reference(T: float, T_last: float, pairs: float, kvpos: float) -> dict[str, dict[str, float]]:
    """Per-operator matrix flops, vector flops and DRAM bytes of one pass, fp16 everywhere (2 bytes)."""
    ops = {}
    for op, (fi, fo) in LINEARS.items():
        ops[op] = dict(mat=2 * fi * fo * L * T, vec=0.0, bytes=2 * (fi * fo * L + (fi + fo) * L * T))
    ops["embed"] = dict(mat=0.0, vec=0.0, bytes=2 * (H * T + H * T))  # table rows read + activations written
    for op, n in (("attn_norm", L), ("mlp_norm", L), ("final_norm", 1)):  # RMSNorm: 4 ops / element
        ops[op] = dict(mat=0.0, vec=4 * H * n * T, bytes=2 * (H * n + 2 * H * n * T))
    ops["attn_qk"] = dict(mat=2 * HD * NH * L * pairs, vec=3 * (Q + KVD) * L * T,  # + rotary on q and k
                          bytes=2 * (Q * L * T + KVD * L * kvpos))  # K read once per KV head (GQA)
    ops["attn_softmax"] = dict(mat=0.0, vec=5 * NH * L * pairs, bytes=0.0)
    ops["attn_av"] = dict(mat=2 * HD * NH * L * pairs, vec=0.0, bytes=2 * (Q * L * T + KVD * L * kvpos))
    ops["kv_write"] = dict(mat=0.0, vec=0.0, bytes=2 * (2 * KVD * L * T))
    ops["mlp_act"] = dict(mat=0.0, vec=5 * I * L * T, bytes=2 * 3 * I * L * T)  # SiLU(gate) * up
    ops["lm_head"] = dict(mat=2 * H * V * T_last, vec=0.0, bytes=2 * (H * V + (H + V) * T_last))
    return ops


PHASES = {"prefill": (B * P, B, B * P * (P + 1) / 2, B * P),  # causal: P(P+1)/2 pairs per sequence
          "decode": (B, B, B * (P + G / 2), B * (P + G / 2))}  # mean context P + G/2


@pytest.fixture  # per test, not per module: mutmut maps a test to what its own call runs
def dense():
    return evaluate_points([spec()], [SHAPE], wbits=16, abits=16, kvbits=16, batch=B, prompt_len=P, gen_len=G,
                           ideal=True, want_ops=True)


def check_terms(result: dict, ref: dict, phase: str):
    """Every operator's FLOPs and bytes against the hand reference; returns (ops arrays, op -> ref row)
    for the caller's own timing checks."""
    got = {k: np.asarray(v).reshape(len(OPS)) for k, v in result[f"ops_{phase}"].items()}
    assert set(ref) == set(OPS)
    for j, op in enumerate(OPS):
        r = ref[op]
        assert got["mat_flops"][j] == pytest.approx(r["mat"]), (phase, op)
        assert got["vec_flops"][j] == pytest.approx(r["vec"]), (phase, op)
        assert got["bytes"][j] == pytest.approx(r["bytes"]), (phase, op)
    return got


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_every_operator_term_matches_the_hand_reference(dense, phase):
    ref = reference(*PHASES[phase])
    got = check_terms(dense, ref, phase)
    for j, op in enumerate(OPS):
        r = ref[op]
        t_c, t_m = (r["mat"] + r["vec"]) / 1e12, r["bytes"] / 1e9
        assert got["t_compute"][j] == pytest.approx(t_c) and got["t_memory"][j] == pytest.approx(t_m), (phase, op)
        assert got["time"][j] == pytest.approx(max(t_c, t_m)), (phase, op)
        e = (r["mat"] * PJ["fp16"] + r["vec"] * PJ["vector"] + r["bytes"] * PJ_DRAM) * 1e-12
        assert got["energy"][j] == pytest.approx(e), (phase, op)


def test_phase_totals_end_to_end_energy_and_memory(dense):
    t = {ph: sum(max((r["mat"] + r["vec"]) / 1e12, r["bytes"] / 1e9) for r in reference(*PHASES[ph]).values())
         for ph in PHASES}
    e = {ph: sum((r["mat"] * PJ["fp16"] + r["vec"] * PJ["vector"] + r["bytes"] * PJ_DRAM) * 1e-12
                 for r in reference(*PHASES[ph]).values()) for ph in PHASES}
    f = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in dense.items() if k in (
        "ttft_ms", "tpot_ms", "e2e_ms", "tokens_per_s", "energy_per_token_j", "prefill_energy_j", "avg_power_w",
        "kv_bytes", "weight_bytes", "decode_energy_j", "workspace_bytes", "peak_memory_bytes")}
    assert f["ttft_ms"] == pytest.approx(t["prefill"] * 1e3)
    assert f["tpot_ms"] == pytest.approx(t["decode"] * 1e3)
    # the first token comes out of prefill: G tokens cost TTFT + (G - 1) decode steps
    assert f["e2e_ms"] == pytest.approx((t["prefill"] + (G - 1) * t["decode"]) * 1e3)
    assert f["tokens_per_s"] == pytest.approx(B / t["decode"])
    assert f["decode_energy_j"] == pytest.approx(e["decode"])
    assert f["energy_per_token_j"] == pytest.approx((e["decode"] + IDLE_W * t["decode"]) / B)
    assert f["prefill_energy_j"] == pytest.approx(e["prefill"] + IDLE_W * t["prefill"])
    assert f["avg_power_w"] == pytest.approx(e["decode"] / t["decode"] + IDLE_W)
    assert f["kv_bytes"] == pytest.approx(B * (P + G) * 2 * KVD * L * 2)
    lin = sum(fi * fo for fi, fo in LINEARS.values()) * L
    norms = (2 * L + 1) * H
    assert f["weight_bytes"] == pytest.approx(2 * (lin + H * V + norms + V * H))  # + the untied embedding table
    # workspace: the largest prefill activation of one layer (mlp_act: 3 * I per token) + fp32 logits
    assert f["workspace_bytes"] == pytest.approx(max(3 * I, H + V) * B * P * 2 + B * V * 4)
    assert f["peak_memory_bytes"] == pytest.approx(f["weight_bytes"] + f["kv_bytes"] + f["workspace_bytes"])


def test_group_count_rounds_up_and_zero_points_follow_symmetry():
    def meta(g, sym):
        r = evaluate_points([spec()], [SHAPE], wbits=4, group_size=g, sym=sym, batch=1, prompt_len=4, gen_len=2,
                            ideal=True)
        return float(r["weight_meta_bytes"].reshape(-1)[0])

    def groups(g):  # ceil(in / g) groups per output row: 48 / 32 -> 2, 80 / 32 -> 3
        return sum(L * fo * -(-fi // min(g, fi)) for fi, fo in LINEARS.values())

    assert groups(32) == L * (48 * 2 + 16 * 2 + 16 * 2 + 48 * 2 + 80 * 2 + 80 * 2 + 48 * 3)
    assert meta(32, False) == pytest.approx(groups(32) * (16 + 4) / 8)  # 16-bit scale + 4-bit zero
    assert meta(32, True) == pytest.approx(groups(32) * 16 / 8)
    assert meta(-1, False) == pytest.approx(groups(10**6) * 20 / 8)  # per output channel: one group per row
    assert meta(64, False) == pytest.approx(groups(64) * 20 / 8)  # 48 / 64 -> 1, 80 / 64 -> 2
    assert groups(64) == L * (48 + 16 + 16 + 48 + 80 + 80 + 48 * 2)


def test_quantized_weights_and_kv_cache_bytes_per_operator():
    r = evaluate_points([spec()], [SHAPE], wbits=4, group_size=32, kvbits=8, batch=B, prompt_len=P, gen_len=G,
                        ideal=True, want_ops=True)
    dec = {k: np.asarray(v).reshape(len(OPS)) for k, v in r["ops_decode"].items()}
    T, _, pairs, kvpos = PHASES["decode"]
    j = OPS.index("down_proj")
    w_bytes = I * H * L * 4 / 8 + L * H * 3 * (16 + 4) / 8  # 4-bit weights + 3 groups per row of 80 inputs
    assert dec["bytes"][j] == pytest.approx(w_bytes + (I + H) * L * T * 2)
    # int4 weights run on the int8 unit? no: 16-bit activations -> fp16 unit, which converts them (4 ops each)
    assert dec["vec_flops"][j] == pytest.approx(4 * I * H * L)
    kv_el = (8 + 2 * 16 / HD) / 8  # 8-bit entries + a 16-bit scale and zero per head vector of 16
    jw = OPS.index("kv_write")
    assert dec["bytes"][jw] == pytest.approx(2 * KVD * L * T * kv_el)
    assert dec["vec_flops"][jw] == pytest.approx(3 * 2 * KVD * L * T)  # quantize on write: 3 ops per element
    jq = OPS.index("attn_qk")
    assert dec["bytes"][jq] == pytest.approx(Q * L * T * 2 + KVD * L * kvpos * kv_el)
    assert float(r["kv_bytes"].reshape(-1)[0]) == pytest.approx(B * (P + G) * 2 * KVD * L * kv_el)


def test_onchip_activations_leave_dram_and_cost_sram_energy():
    big = spec(sram_mb=1.0)
    r = evaluate_points([big], [SHAPE], wbits=16, batch=B, prompt_len=P, gen_len=G, ideal=True, want_ops=True)
    dec = {k: np.asarray(v).reshape(len(OPS)) for k, v in r["ops_decode"].items()}
    ref = reference(*PHASES["decode"])
    j = OPS.index("mlp_act")
    act = 3 * I * L * B * 2
    assert dec["onchip_bytes"][j] == pytest.approx(act)
    assert dec["bytes"][j] == pytest.approx(ref["mlp_act"]["bytes"] - act)
    assert dec["energy"][j] == pytest.approx((ref["mlp_act"]["vec"] * PJ["vector"] + act * 7.0) * 1e-12)


def test_overheads_and_efficiency_enter_once():
    s = spec(efficiency={"default": {"compute": 0.5, "memory": 0.25}}, overhead_us={"per_layer": 3, "per_forward": 7})
    ideal = hwmodels.estimate(s, SHAPE, batch=B, prompt_len=P, gen_len=G, ideal=True)
    real = hwmodels.estimate(s, SHAPE, batch=B, prompt_len=P, gen_len=G)
    ovh_ms = (7 + L * 3) / 1e3
    for phase, total in (("prefill", real.ttft_ms), ("decode", real.tpot_ms)):
        ops = ideal.ops[ideal.ops.phase == phase]
        slowed = np.maximum(ops.compute_ms / 0.5, ops.memory_ms / 0.25).sum()  # each op: its own bound
        assert total == pytest.approx(slowed + ovh_ms)
    assert real.e2e_ms == pytest.approx(real.ttft_ms + (G - 1) * real.tpot_ms)


def test_area_counts_each_unit_once():
    # 1 GHz: fp16 1 TFLOPS = 2 * 500 MACs * 1e9, int8 2 TFLOPS = 1000 MACs
    area = dict(fixed_mm2=10.0, mm2_per_mb_sram=2.0, mm2_per_mac={"fp16": 0.01, "int8": 0.004})
    s = spec(sram_mb=3.0, area=area, clock_ghz=1.0)
    base, fp16, int8 = 10 + 3 * 2, 500 * 0.01, 1000 * 0.004
    assert hwmodels.estimate(s, SHAPE, wbits=16).area_mm2 == pytest.approx(base + fp16)
    # int8 linears; attention (16-bit KV) and the dense lm head share the fp16 unit: counted once
    assert hwmodels.estimate(s, SHAPE, wbits=8, abits=8, kvbits=16).area_mm2 == pytest.approx(base + int8 + fp16)
    # fp16 linears and head, int8 attention
    assert hwmodels.estimate(s, SHAPE, wbits=16, abits=8, kvbits=8).area_mm2 == pytest.approx(base + fp16 + int8)
    assert hwmodels.estimate(spec(), SHAPE).area_mm2 is None


# -- ensembles: each schedule's combination of its members, by hand ---------------------------
def test_ensemble_schedules_combine_member_estimates():
    s, bits = spec(), [4, 8, 16]
    one = {b: hwmodels.estimate(s, SHAPE, wbits=b, group_size=32, batch=B, prompt_len=P, gen_len=G) for b in bits}
    dec_e = {b: one[b].extra["decode_energy_j"] for b in bits}
    dyn_pre = {b: one[b].prefill_energy_j - IDLE_W * one[b].ttft_ms / 1e3 for b in bits}

    def ens(schedule, **kw):
        return hwmodels.estimate_ensemble(s, SHAPE, bits, group_size=32, schedule=schedule, batch=B, prompt_len=P,
                                          gen_len=G, **kw)

    seq, par, sl = ens("sequential"), ens("parallel"), ens("sliced")
    ttft, tpot = sum(one[b].ttft_ms for b in bits), sum(one[b].tpot_ms for b in bits)
    assert (seq.ttft_ms, seq.tpot_ms) == (pytest.approx(ttft), pytest.approx(tpot))
    assert seq.e2e_ms == pytest.approx(ttft + (G - 1) * tpot) and seq.tokens_per_s == pytest.approx(B * 1e3 / tpot)
    w, kv = sum(one[b].weight_bytes for b in bits), sum(one[b].kv_bytes for b in bits)
    ws = max(one[b].extra["workspace_bytes"] for b in bits)
    assert (seq.weight_bytes, seq.kv_bytes) == (pytest.approx(w), pytest.approx(kv))
    assert seq.peak_memory_bytes == pytest.approx(w + kv + ws) and seq.n_devices == 1
    e_tok = (sum(dec_e.values()) + IDLE_W * tpot / 1e3) / B
    assert seq.energy_per_token_j == pytest.approx(e_tok)
    assert seq.prefill_energy_j == pytest.approx(sum(dyn_pre.values()) + IDLE_W * ttft / 1e3)
    assert seq.avg_power_w == pytest.approx(e_tok * B / tpot * 1e3)
    assert seq.wbits == 16 and [m["bits"] for m in seq.members] == bits
    # parallel: the slowest member, one device each (idle power of three devices)
    pt = max(one[b].tpot_ms for b in bits)
    assert par.tpot_ms == pytest.approx(pt) and par.ttft_ms == pytest.approx(max(one[b].ttft_ms for b in bits))
    assert par.n_devices == 3 and par.peak_memory_bytes == pytest.approx(max(one[b].peak_memory_bytes for b in bits))
    assert par.energy_per_token_j == pytest.approx((sum(dec_e.values()) + 3 * IDLE_W * pt / 1e3) / B)
    assert par.avg_power_w == pytest.approx(par.energy_per_token_j * B / pt * 1e3 / 3)
    # sliced: the widest member's weights plus the others' scales and zeros; time as sequential
    sliced_w = one[16].weight_bytes + one[4].extra["weight_meta_bytes"] + one[8].extra["weight_meta_bytes"]
    assert sl.weight_bytes == pytest.approx(sliced_w) and sl.tpot_ms == pytest.approx(tpot)
    assert sl.peak_memory_bytes == pytest.approx(sliced_w + kv + ws)
    # gated: the two lowest precisions always run, the 16-bit member on a quarter of the items
    g = ens("sequential", gated_fraction=0.25)
    q_tpot = one[4].tpot_ms + one[8].tpot_ms
    assert g.tpot_ms == pytest.approx(0.75 * q_tpot + 0.25 * tpot)
    assert g.ttft_ms == pytest.approx(0.75 * (one[4].ttft_ms + one[8].ttft_ms) + 0.25 * ttft)
    assert [m["run_fraction"] for m in g.members] == [1.0, 1.0, 0.25]
    assert [m["gated"] for m in g.members] == [False, False, True]
    assert g.energy_per_token_j == pytest.approx((dec_e[4] + dec_e[8] + 0.25 * dec_e[16] + IDLE_W * g.tpot_ms / 1e3)
                                                 / B)
    assert g.peak_memory_bytes == pytest.approx(seq.peak_memory_bytes)  # memory still holds every member


# -- a GPT-2-style layout: LayerNorm, learned positions, biases, 2-matrix MLP, tied embeddings ----
# Multi-head attention (3 heads of 16: kv = q = 48), hidden 48, MLP 80 (up, GELU, down), a 64-row
# position table. Each term written from the layout, independently of hwmodels' coefficient table.
NPOS = 64
GPT2 = ModelShape(name="guard-gpt2", arch="gpt2", n_layers=L, hidden=H, n_heads=NH, n_kv_heads=NH, head_dim=HD,
                  intermediate=I, vocab=V, gated_mlp=False, qkv_bias=True, out_bias=True, layernorm=True,
                  tied_embeddings=True, learned_positions=NPOS)
G2_LINEARS = {"q_proj": (H, Q), "k_proj": (H, Q), "v_proj": (H, Q), "o_proj": (Q, H), "up_proj": (H, I),
              "down_proj": (I, H)}  # every one with a bias; no gate_proj


def gpt2_reference(T: float, T_last: float, pairs: float, kvpos: float) -> dict[str, dict[str, float]]:
    ops = {"gate_proj": dict(mat=0.0, vec=0.0, bytes=0.0)}
    for op, (fi, fo) in G2_LINEARS.items():  # + the bias: fo 16-bit elements read, one add per output
        ops[op] = dict(mat=2 * fi * fo * L * T, vec=fo * L * T, bytes=2 * (fi * fo * L + fo * L + (fi + fo) * L * T))
    # token row + position row read, one add per element, the sum written
    ops["embed"] = dict(mat=0.0, vec=H * T, bytes=2 * (2 * H * T + H * T))
    for op, n in (("attn_norm", L), ("mlp_norm", L), ("final_norm", 1)):  # LayerNorm: weight + bias, 7 ops
        ops[op] = dict(mat=0.0, vec=7 * H * n * T, bytes=2 * (2 * H * n + 2 * H * n * T))
    ops["attn_qk"] = dict(mat=2 * HD * NH * L * pairs, vec=0.0,  # no rotary: positions were added at the input
                          bytes=2 * (Q * L * T + Q * L * kvpos))
    ops["attn_softmax"] = dict(mat=0.0, vec=5 * NH * L * pairs, bytes=0.0)
    ops["attn_av"] = dict(mat=2 * HD * NH * L * pairs, vec=0.0, bytes=2 * (Q * L * T + Q * L * kvpos))
    ops["kv_write"] = dict(mat=0.0, vec=0.0, bytes=2 * (2 * Q * L * T))
    ops["mlp_act"] = dict(mat=0.0, vec=8 * I * L * T, bytes=2 * 2 * I * L * T)  # GELU(up): read, write
    ops["lm_head"] = dict(mat=2 * H * V * T_last, vec=0.0, bytes=2 * (H * V + (H + V) * T_last))
    return ops


@pytest.fixture
def gpt2():
    return evaluate_points([spec()], [GPT2], wbits=16, abits=16, kvbits=16, batch=B, prompt_len=P, gen_len=G,
                           ideal=True, want_ops=True)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_gpt2_layout_every_operator_term(gpt2, phase):
    ref = gpt2_reference(*PHASES[phase])
    got = check_terms(gpt2, ref, phase)
    for j, op in enumerate(OPS):
        r = ref[op]
        assert got["time"][j] == pytest.approx(max((r["mat"] + r["vec"]) / 1e12, r["bytes"] / 1e9)), (phase, op)
        assert got["count"][j] == (0 if op == "gate_proj" else 1 if op in ("embed", "final_norm", "lm_head")
                                   else L), (phase, op)


def test_gpt2_layout_memory_and_totals(gpt2):
    f = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in gpt2.items() if k in (
        "ttft_ms", "tpot_ms", "kv_bytes", "weight_bytes", "workspace_bytes", "peak_memory_bytes")}
    for ph, key in (("prefill", "ttft_ms"), ("decode", "tpot_ms")):
        t = sum(max((r["mat"] + r["vec"]) / 1e12, r["bytes"] / 1e9) for r in gpt2_reference(*PHASES[ph]).values())
        assert f[key] == pytest.approx(t * 1e3)
    assert f["kv_bytes"] == pytest.approx(B * (P + G) * 2 * Q * L * 2)
    lin = sum(fi * fo for fi, fo in G2_LINEARS.values()) * L
    bias = L * (3 * Q + H + I + H)
    norms = (2 * L + 1) * 2 * H
    # the tied table is the lm head's weight (counted once); the position table is resident too
    assert f["weight_bytes"] == pytest.approx(2 * (lin + bias + norms + H * V + NPOS * H))
    # workspace: the largest prefill activation of one layer (GELU: 2 * I per token) + fp32 logits
    assert f["workspace_bytes"] == pytest.approx(max(2 * I, H + V) * B * P * 2 + B * V * 4)
    assert f["peak_memory_bytes"] == pytest.approx(f["weight_bytes"] + f["kv_bytes"] + f["workspace_bytes"])


def test_gpt2_quantized_head_keeps_the_tied_table_dense():
    base = hwmodels.load_runtime("default")
    qhead = base.model_copy(update={"quantize_lm_head": True})

    def weight(rt):
        r = evaluate_points([spec()], [GPT2], wbits=4, group_size=32, sym=True, batch=1, prompt_len=4, gen_len=2,
                            runtime=rt)
        return float(r["weight_bytes"].reshape(-1)[0])

    head_groups = V * 2  # 48 / 32 -> 2 groups per output row
    # with a 4-bit head the embedding lookups still need the dense table: 2 bytes per element stay
    assert weight(qhead) - weight(base) == pytest.approx((H * V * 4 / 8 + head_groups * 16 / 8 + 2 * H * V)
                                                         - 2 * H * V)


# -- the grid front end: every setting reaches the points, rows line up with their axes ---------
def test_grid_passes_every_setting_and_flattens_its_axes():
    s = spec(compute_tflops=dict(fp16=1.0, bf16=0.5, int8=2.0), efficiency={"default": {"compute": 0.5,
                                                                                        "memory": 0.25}})
    axes = dict(wbits=[4, 16], group_size=[32], abits=[8], kvbits=[8], batch=np.array([[1, 3]]), prompt_len=[5],
                gen_len=[4])
    rt = hwmodels.load_runtime("torch-cpu")
    for kw in (dict(sym=True, ideal=True, float_dtype="bf16"), dict(runtime=rt, kernel="dequant-matmul")):
        grid = hwmodels.evaluate_grid([s], [SHAPE, GPT2], **axes, **kw)
        assert grid.axes["batch"] == [1, 3] and grid.shape == (1, 2, 2, 1, 1, 1, 2, 1, 1)
        assert list(grid.axes) == hwmodels.roofline.GRID_AXES and grid.axes["model"] == ["guard", "guard-gpt2"]
        pts = evaluate_points([s], [SHAPE, GPT2], model_index=np.array([0, 1])[:, None, None],
                              wbits=np.array([4, 16])[:, None], batch=np.array([1, 3]), group_size=32, kvbits=8, abits=8,
                              prompt_len=5, gen_len=4, **kw)
        for k in ("ttft_ms", "tpot_ms", "weight_bytes", "energy_per_token_j"):
            assert grid.data[k].reshape(2, 2, 2) == pytest.approx(pts[k], rel=1e-12), (k, kw)
    # the settings matter for these points, so a dropped one shows
    def outputs(**kw):
        d = hwmodels.evaluate_grid([s], [SHAPE], **axes, **kw).data
        return np.concatenate([d[k].reshape(-1) for k in ("tpot_ms", "weight_bytes", "compute_dtype")])

    plain = outputs()
    for kw in (dict(sym=True), dict(ideal=True), dict(float_dtype="bf16"), dict(runtime=rt)):
        assert not np.allclose(outputs(**kw), plain), kw
    assert not np.allclose(outputs(runtime=rt, kernel="dequant-matmul"), outputs(runtime=rt))


def test_grid_frame_rows_match_their_axes_and_name_dtypes():
    s = spec(compute_tflops=dict(fp16=1.0, int8=2.0, w4a16=4.0))
    grid = hwmodels.evaluate_grid([s, spec(name="other")], [SHAPE], wbits=[4, 8, 16], group_size=[32],
                                  abits=[16], kvbits=[8, 16], batch=[1, 2], prompt_len=[5], gen_len=[4])
    df = grid.to_frame()
    assert len(df) == grid.size == 2 * 3 * 2 * 2
    for row, idx in zip(df.itertuples(index=False), np.ndindex(*grid.shape)):
        for name, i in zip(grid.axes, idx):
            assert getattr(row, name) == grid.axes[name][i]
        assert row.tpot_ms == grid.data["tpot_ms"][idx] and row.kv_bytes == grid.data["kv_bytes"][idx]
        for k in ("compute_dtype", "attn_dtype", "head_dtype"):
            assert getattr(row, k) == grid.dtypes[int(grid.data[k][idx])]
    assert set(df[(df.spec == "guard") & (df.wbits == 4)].compute_dtype) == {"w4a16"}
    assert set(df[(df.spec == "other") | (df.wbits == 8)].compute_dtype) == {"fp16"}  # no w4a16 unit there
    assert set(df.head_dtype) == {"fp16"}


def test_launch_floor_of_fused_attention_is_per_configuration():
    # hf-eager: a launch floor per kernel, fused attention. A tiny decode (attention far under one floor)
    # next to a long-context one (attention far over it): each configuration books its own shortfall.
    rt = hwmodels.load_runtime("hf-eager")
    kw = dict(wbits=16, gen_len=4, runtime=rt)
    both = evaluate_points([spec()], [SHAPE], batch=np.array([1, 64]), prompt_len=np.array([5, 2000]), **kw)
    for i, (b, p) in enumerate(((1, 5), (64, 2000))):
        one = evaluate_points([spec()], [SHAPE], batch=b, prompt_len=p, **kw)
        assert both["tpot_ms"][i] == pytest.approx(float(one["tpot_ms"]), rel=1e-12)
        assert both["decode_floor_ms"][i] == pytest.approx(float(one["decode_floor_ms"]), rel=1e-12)
    assert both["decode_floor_ms"][0] > 0  # the tiny one is floored


# -- software-stack terms on top of the hand reference (a profile built from 'default') ---------
from codesign.config import ConfigError  # noqa: E402
from hwmodels.runtime import PREFILL_ON_DENSE_COPY, Framework, KernelProfile, OtherEfficiency, load_runtime  # noqa: E402

COUNT = {op: (1 if op in ("embed", "final_norm", "lm_head") else L) for op in OPS}


def profile(**over):
    return load_runtime("default").model_copy(update=over)


def ref_times(phase):
    return {op: max((r["mat"] + r["vec"]) / 1e12, r["bytes"] / 1e9) for op, r in reference(*PHASES[phase]).items()}


def run(rt=None, **kw):
    args = dict(wbits=16, batch=B, prompt_len=P, gen_len=G, want_ops=True) | kw
    return evaluate_points([kw.pop("s", None) or spec()], [args.pop("shape", SHAPE)], runtime=rt,
                           **{k: v for k, v in args.items() if k != "s"})


@pytest.mark.parametrize("async_launch, graphs", [(False, False), (True, False), (True, True)])
def test_host_time_per_layer_and_per_forward(async_launch, graphs):
    rt = profile(framework=Framework(per_layer_us=100, per_forward_us=30, cuda_graphs=graphs,
                                     async_launch=async_launch))
    r = run(rt)
    for phase, key in (("prefill", "ttft_ms"), ("decode", "tpot_ms")):
        dev = sum(ref_times(phase).values())
        host = 0.0 if (graphs and phase == "decode") else L * 100e-6
        busy = max(dev, host) if async_launch else dev + host
        assert float(r[key]) == pytest.approx((busy + 30e-6) * 1e3, rel=1e-9), phase
        assert float(r[f"{phase}_host_ms"]) == pytest.approx(host * 1e3, rel=1e-12)
        assert float(r[f"{phase}_ops_ms"]) == pytest.approx(dev * 1e3, rel=1e-9)
    assert L * 100e-6 > sum(ref_times("decode").values())  # the host dominates: overlapping it matters
    assert float(r["framework_ms"]) == pytest.approx(0.03) and bool(r["host_overlaps"]) == async_launch
    assert float(r["overhead_ms"]) == pytest.approx(float(r["tpot_ms"]) - float(r["decode_ops_ms"]))


@pytest.mark.parametrize("fused", [False, True])
def test_launch_floor_per_kernel_and_fused_attention(fused):
    floor = 30e-6
    r = run(profile(launch_floor_us=30, fused_attention=fused))
    for phase in PHASES:
        free = ref_times(phase)
        want = {op: max(t, floor * COUNT[op]) for op, t in free.items()}
        if fused:  # QK^T, softmax and A.V: one kernel, one floor (booked on attn_qk)
            group = free["attn_qk"] + free["attn_softmax"] + free["attn_av"]
            want["attn_softmax"], want["attn_av"] = free["attn_softmax"], free["attn_av"]
            want["attn_qk"] = free["attn_qk"] + max(floor * L - group, 0.0)
            assert floor * L > group  # the floor binds
        got = np.asarray(r[f"ops_{phase}"]["time"]).reshape(len(OPS))
        for j, op in enumerate(OPS):
            assert got[j] == pytest.approx(want[op], rel=1e-9), (phase, op)
        assert float(r[f"{phase}_floor_ms"]) == pytest.approx((sum(want.values()) - sum(free.values())) * 1e3)


def test_kernel_and_other_efficiencies_and_partial_overlap():
    rt = profile(overlap=0.5, other_efficiency=OtherEfficiency(compute=0.5, memory=0.25),
                 kernels={"torch-matmul": KernelProfile(memory_efficiency={"dense": 0.8},
                                                        compute_efficiency={"dense": 0.4})})
    r = run(rt)
    for phase in PHASES:
        got = np.asarray(r[f"ops_{phase}"]["time"]).reshape(len(OPS))
        ref = reference(*PHASES[phase])
        for j, op in enumerate(OPS):
            x, weights = ref[op], op in LINEARS or op == "lm_head"
            c = x["mat"] / (1e12 * (0.4 if weights else 0.5)) + x["vec"] / (1e12 * 0.5)
            m = x["bytes"] / (1e9 * (0.8 if weights else 0.25))
            assert got[j] == pytest.approx(max(c, m) + 0.5 * min(c, m), rel=1e-9), (phase, op)


def test_quantized_lm_head_bits_unit_and_dequantization():
    def head(r, phase="decode"):
        j = OPS.index("lm_head")
        return {k: float(np.asarray(v).reshape(len(OPS))[j]) for k, v in r[f"ops_{phase}"].items() if k != "dtype"}

    meta = V * 2 * (16 + 8) / 8  # 48 / 32: two groups per row, 16-bit scale + 8-bit zero
    act = 2 * (H + V) * B  # decode: one token per sequence
    # an 8-bit head on a w8a16 unit: no conversion, its own unit
    s8 = spec(compute_tflops=dict(fp16=1.0, w8a16=2.0))
    r = run(profile(quantize_lm_head=True, lm_head_bits=8), s=s8, wbits=4, group_size=32)
    h = head(r)
    assert h["bytes"] == pytest.approx(H * V + meta + act) and h["vec_flops"] == 0.0
    assert r["dtypes"][int(r["head_dtype"])] == "w8a16"
    # on fp16 + int8 (16-bit activations) the 8-bit head is converted: 4 vector ops per weight
    r = run(profile(quantize_lm_head=True, lm_head_bits=8), wbits=4, group_size=32)
    assert head(r)["vec_flops"] == pytest.approx(4 * H * V) and head(r)["bytes"] == pytest.approx(H * V + meta + act)
    # without lm_head_bits the head takes the linears' bits
    r = run(profile(quantize_lm_head=True), wbits=4, group_size=32)
    assert head(r)["bytes"] == pytest.approx(H * V / 2 + V * 2 * (16 + 4) / 8 + act)
    # a 16-bit model under a quantizing profile: the head stays dense (and a tied table is not added)
    for shape in (SHAPE, GPT2):
        dense = [float(run(p, shape=shape)["weight_bytes"]) for p in (None, profile(quantize_lm_head=True))]
        assert dense[0] == dense[1]
    # a dense head on the int8 unit (8-bit activations) is not dequantized
    r = run(None, wbits=4, abits=8, group_size=32)
    assert head(r)["vec_flops"] == 0.0


def test_expanded_gqa_reads_the_cache_once_per_query_head():
    rt = profile(expands_gqa=True)
    for shape, group in ((SHAPE, NH // NKV), (GPT2, 1)):
        base, wide = run(None, shape=shape), run(rt, shape=shape)
        kvd = (NKV if shape is SHAPE else NH) * HD
        for phase, (T, _, _, kvpos) in PHASES.items():
            j = OPS.index("attn_av")
            extra = float(np.asarray(wide[f"ops_{phase}"]["bytes"]).reshape(-1)[j]) - \
                float(np.asarray(base[f"ops_{phase}"]["bytes"]).reshape(-1)[j])
            assert extra == pytest.approx(2 * kvd * L * kvpos * (group - 1), abs=1e-9), (shape.name, phase)


def test_measured_kernel_index_overrides_the_format_map():
    rt = load_runtime("torch-cpu")
    kw = dict(wbits=4, group_size=32)
    default, matmul = run(rt, **kw), run(rt, kernel="torch-matmul", **kw)
    assert matmul["runtime"] == "torch-cpu"
    assert float(matmul["tpot_ms"]) != pytest.approx(float(default["tpot_ms"]))
    assert float(run(rt, kernel="aten-int4pack-cpu", **kw)["tpot_ms"]) == pytest.approx(float(default["tpot_ms"]))
    # with a quantized head of the linears' bits, the head runs the row's kernel too
    qh = rt.model_copy(update={"quantize_lm_head": True})
    j = OPS.index("lm_head")
    heads = [float(np.asarray(run(qh, kernel=k, **kw)["ops_decode"]["bytes"]).reshape(-1)[j])
             for k in ("dequant-matmul", "aten-int4pack-cpu")]
    assert heads[0] - heads[1] == pytest.approx(2 * H * V * 2)  # dequant-matmul writes a dense copy


# -- inputs, caches and the spec table -----------------------------------------------------------
@pytest.mark.parametrize("arg, value, allowed", [
    ("wbits", 0, "1..32"), ("wbits", 33, "1..32"), ("abits", 0, "1..32"), ("abits", 33, "1..32"),
    ("kvbits", 0, "1..32"), ("kvbits", 33, "1..32"), ("batch", 0, ">= 1"), ("prompt_len", 0, ">= 1"),
    ("gen_len", 0, ">= 1"),
])
def test_bad_values_name_the_argument_the_first_bad_value_and_the_range(arg, value, allowed):
    ok = {"wbits": 4, "abits": 16, "kvbits": 16, "batch": 1, "prompt_len": 4, "gen_len": 2}[arg]
    with pytest.raises(ConfigError, match=rf"^{arg} = {value} is not allowed \(allowed: {allowed}\)$"):
        evaluate_points([spec()], [SHAPE], **{arg: np.array([ok, value, -5 if value == 0 else 40])})


def test_group_size_and_index_checks_and_the_edges_that_pass():
    msg = r"\(allowed: a positive group size, or -1 for per-output-channel scales\)$"
    for g, bad in (([32, 0, -3], 0), ([-1, -2], -2)):
        with pytest.raises(ConfigError, match=rf"^group_size = {bad} is not allowed " + msg):
            evaluate_points([spec()], [SHAPE], wbits=4, group_size=np.array(g))
    r = evaluate_points([spec()], [SHAPE], wbits=np.array([1, 32]), abits=np.array([1, 32]), kvbits=np.array([1, 32]),
                        group_size=np.array([1, -1]), prompt_len=1, gen_len=1)
    assert np.isfinite(r["tpot_ms"]).all()
    for si, mi in ((1, 0), (0, 1), (-1, 0), (0, -1)):
        with pytest.raises(ConfigError, match="^spec_index/model_index out of range of the specs/shapes given$"):
            evaluate_points([spec()], [SHAPE], spec_index=si, model_index=mi)
    with pytest.raises(ConfigError, match=r"^float_dtype = 'fp8' is not allowed \(allowed: fp16, bf16\)$"):
        evaluate_points([spec()], [SHAPE], float_dtype="fp8")


def test_defaults_names_and_caches():
    # defaults: batch 1, prompt 512, 128 generated, no per-operator arrays
    r = evaluate_points(spec(), SHAPE)  # one spec / one shape need no list
    x = evaluate_points([spec()], [SHAPE], wbits=16, abits=16, kvbits=16, batch=1, prompt_len=512, gen_len=128)
    assert float(r["tpot_ms"]) == float(x["tpot_ms"]) and float(r["e2e_ms"]) == float(x["e2e_ms"])
    assert "ops_prefill" not in r and r["runtime"] == "default"
    named = evaluate_points("h100-sxm", "llama-2-7b")
    assert named["spec_names"] == ["nvidia-h100-sxm"] and named["model_names"] == ["llama-2-7b"]
    # ideal ignores the profile
    rt = load_runtime("torch-cpu")
    assert evaluate_points([spec()], [SHAPE], ideal=True, runtime=rt)["runtime"] == "default"
    # tables are cached by content: two shapes and two specs in a row each get their own
    g1 = float(run(None, shape=GPT2)["weight_bytes"])
    l1 = float(run(None, shape=SHAPE)["weight_bytes"])
    assert g1 != l1 and g1 == float(run(None, shape=GPT2)["weight_bytes"])
    fast = spec(memory=dict(capacity_gb=1, bandwidth_gbs=2.0))
    t1, t2 = float(run(None)["decode_memory_ms"]), float(run(None, s=fast)["decode_memory_ms"])
    assert t2 == pytest.approx(t1 / 2, rel=1e-12)
    # a large block is split into chunks of configurations: same numbers
    many = evaluate_points([spec()], [SHAPE], batch=np.arange(1, 4100))
    assert many["tpot_ms"][4097] == pytest.approx(float(evaluate_points([spec()], [SHAPE], batch=4098)["tpot_ms"]))


def test_spec_units_are_exact_and_boundaries_hold():
    r = run(None, ideal=True)
    # 1 GB/s and 1 TFLOPS exactly: softmax is vector work only, embed is bytes only
    j_sm, j_emb = OPS.index("attn_softmax"), OPS.index("embed")
    ops = {k: np.asarray(v).reshape(len(OPS)) for k, v in r["ops_decode"].items()}
    assert ops["t_compute"][j_sm] == pytest.approx(ops["vec_flops"][j_sm] / 1e12, rel=1e-15, abs=0)
    assert ops["t_memory"][j_emb] == pytest.approx(ops["bytes"][j_emb] / 1e9, rel=1e-15, abs=0)
    j_q = OPS.index("q_proj")  # fp16 matrix work at exactly 1e12 / s
    assert ops["t_compute"][j_q] == pytest.approx(ops["mat_flops"][j_q] / 1e12, rel=1e-15, abs=0)
    # capacity: fits at exactly the peak, not one part in 1e9 below it
    peak = float(r["peak_memory_bytes"])
    cap = peak / 1e9
    assert cap * 1e9 == peak
    for c, fits in ((cap, True), (cap * (1 - 5e-10), False)):
        assert bool(run(None, s=spec(memory=dict(capacity_gb=c, bandwidth_gbs=1.0)))["fits"]) is fits
    # on-chip memory: an activation of exactly the SRAM size stays on chip, one part in 1e6 more does not
    act = float(ops["act"][OPS.index("mlp_act")]) / L
    for sram_mb, on in ((act / 1e6, True), (act / 1e6 * (1 - 5e-7), False)):
        o = run(None, s=spec(sram_mb=sram_mb))["ops_decode"]["onchip_bytes"]
        assert (float(np.asarray(o).reshape(-1)[OPS.index("mlp_act")]) > 0) is on
    # the spec's vector efficiency slows vector work only; no idle power without idle_w
    v = run(None, s=spec(efficiency={"default": {"compute": 1.0, "memory": 1.0},
                                     "vector": {"compute": 0.5, "memory": 1.0}}))
    assert float(np.asarray(v["ops_decode"]["t_compute"]).reshape(-1)[j_sm]) == pytest.approx(
        2 * ops["t_compute"][j_sm])
    quiet = run(None, s=spec(idle_w=None), ideal=True)
    assert float(quiet["prefill_energy_j"]) == pytest.approx(float(np.asarray(quiet["ops_prefill"]["energy"]).sum()))


def test_unit_choice_pins_converts_and_falls_back():
    def dtype(r, key="compute_dtype"):
        return r["dtypes"][int(r[key])]

    # float_dtype picks the pinned 16-bit unit even when another float unit is listed first
    s = spec(compute_tflops=dict(fp16=1.0, bf16=0.5, int8=2.0))
    assert dtype(run(None, s=s, float_dtype="bf16")) == "bf16" and dtype(run(None, s=s)) == "fp16"
    # pinning a format the spec lacks changes nothing
    assert dtype(run(None, float_dtype="bf16")) == "fp16"
    # 4-bit weights on a w4a16 unit: no conversion; 1-bit weights on fp16: converted
    w4 = run(None, s=spec(compute_tflops=dict(fp16=1.0, w4a16=4.0)), wbits=4, group_size=32)
    assert dtype(w4) == "w4a16" and not bool(w4["dequantized"])
    j_q = OPS.index("q_proj")
    assert float(np.asarray(w4["ops_decode"]["vec_flops"]).reshape(-1)[j_q]) == 0.0
    w1 = run(None, wbits=1, group_size=32)
    assert bool(w1["dequantized"]) and float(np.asarray(w1["ops_decode"]["vec_flops"]).reshape(-1)[j_q]) == \
        pytest.approx(4 * H * Q * L)
    # 32-bit weights and activations run on an fp32 unit
    assert dtype(run(None, s=spec(compute_tflops=dict(fp16=1.0, fp32=0.5)), wbits=32, abits=32)) == "fp32"
    # no unit takes 16-bit activations: the vector unit, and 16-bit weights are not "converted"
    vec = run(None, s=spec(compute_tflops=dict(int8=2.0)))
    assert dtype(vec) == "vector" and not bool(vec["dequantized"])
    assert float(np.asarray(vec["ops_decode"]["vec_flops"]).reshape(-1)[j_q]) == 0.0  # no conversion work
    assert float(np.asarray(vec["ops_decode"]["t_compute"]).reshape(-1)[j_q]) == pytest.approx(2 * H * Q * L * B / 1e12)


def test_group_size_one_and_a_vocabulary_sized_workspace():
    # group size 1: one scale and zero per weight
    r = run(None, wbits=4, group_size=1, ideal=True)
    assert float(r["weight_meta_bytes"]) == pytest.approx(sum(fi * fo for fi, fo in LINEARS.values()) * L * 20 / 8)
    # a vocabulary larger than every layer activation: the logits' input and output rows set the workspace
    big = ModelShape(name="bigvocab", arch="llama", n_layers=L, hidden=H, n_heads=NH, n_kv_heads=NKV, head_dim=HD,
                     intermediate=I, vocab=1000)
    w = float(run(None, shape=big, prompt_len=2, ideal=True)["workspace_bytes"])
    assert (H + 1000) * B > 3 * I * B * 2  # the lm head's activation (last token only) is the largest one
    assert w == pytest.approx((H + 1000) * B * 2 + B * 1000 * 4)


# -- kernel terms, KV conversion, the memory-bound share (added after the measured run) ------------
def _op(r, phase, key, op):
    return float(np.asarray(r[f"ops_{phase}"][key]).reshape(-1, len(OPS))[0, OPS.index(op)])


def test_small_m_compute_efficiency_and_other_efficiency():
    rt = load_runtime("torch-cpu")
    r = run(rt, wbits=4, group_size=32)  # w4: decode on aten-int4pack-cpu, prefill on the dense copy
    k, d = rt.kernels["aten-int4pack-cpu"], rt.kernels["torch-matmul"]  # fitted values, read not copied
    assert "aten-int4pack-cpu" in PREFILL_ON_DENSE_COPY and k.compute_m_half_decode is None
    other = rt.other_efficiency.compute
    for phase, (T, *_rest) in PHASES.items():
        eff, m_half = (d.compute_efficiency["dense"], d.compute_m_half) if phase == "prefill" else \
            (k.compute_efficiency["w4"], k.compute_m_half)
        mat = 2 * H * Q * L * T
        want = mat / (1e12 * eff) * (1 + m_half / T)  # efficiency x M / (M + m_half)
        assert _op(r, phase, "t_compute", "q_proj") == pytest.approx(want, rel=1e-9), phase
        # a non-weight operator: the profile's other compute efficiency, no small-M term
        vec = reference(*PHASES[phase])["attn_softmax"]["vec"]
        assert _op(r, phase, "t_compute", "attn_softmax") == pytest.approx(vec / (1e12 * other), rel=1e-9)


def test_per_tile_dequantization_with_the_kernels_own_op_count():
    rt = profile(kernels={"dequant-matmul": KernelProfile(dequant="per_tile", tile_m=4, dequant_ops_per_weight=3.0)})
    r = run(rt, wbits=4, group_size=32)
    for phase, (T, *_rest) in PHASES.items():
        tiles = -(-T // 4)  # ceil: prefill 10 rows -> 3 tiles, decode 2 -> 1
        assert _op(r, phase, "vec_flops", "q_proj") == pytest.approx(3.0 * H * Q * L * tiles), phase
    per_pass = run(profile(kernels={"dequant-matmul": KernelProfile(dequant_ops_per_weight=3.0)}), wbits=4,
                   group_size=32)
    assert _op(per_pass, "prefill", "vec_flops", "q_proj") == pytest.approx(3.0 * H * Q * L)
    assert _op(run(None, wbits=4, group_size=32), "prefill", "vec_flops", "q_proj") == pytest.approx(4.0 * H * Q * L)


def test_kernel_floor_without_a_profile_floor():
    r = run(profile(kernels={"torch-matmul": KernelProfile(launch_floor_us=30)}))
    free = ref_times("decode")
    for op in OPS:
        floor = 30e-6 * COUNT[op] if (op in LINEARS or op == "lm_head") else 0.0
        assert _op(r, "decode", "time", op) == pytest.approx(max(free[op], floor), rel=1e-9), op


def test_an_8_bit_kv_cache_is_converted_for_attention_and_quantized_on_write():
    r = run(None, kvbits=8)
    for phase, (T, _, pairs, kvpos) in PHASES.items():
        rotary = 3 * (Q + KVD) * L * T
        assert _op(r, phase, "vec_flops", "attn_qk") == pytest.approx(rotary + 4 * KVD * L * kvpos), phase
        assert _op(r, phase, "vec_flops", "attn_av") == pytest.approx(4 * KVD * L * kvpos), phase
        assert _op(r, phase, "vec_flops", "kv_write") == pytest.approx(3 * 2 * KVD * L * T), phase


def test_memory_bound_share_by_hand():
    r = evaluate_points([spec()], [SHAPE], batch=np.array([1, 2]), prompt_len=P, gen_len=G, ideal=True)
    for i, b in enumerate((1, 2)):
        for phase, args in (("prefill", (b * P, b, b * P * (P + 1) / 2, b * P)),
                            ("decode", (b, b, b * (P + G / 2), b * (P + G / 2)))):
            t = {op: ((x["mat"] + x["vec"]) / 1e12, x["bytes"] / 1e9) for op, x in reference(*args).items()}
            share = sum(max(c, m) for c, m in t.values() if m >= c) / sum(max(c, m) for c, m in t.values())
            assert 0 < share < 1
            assert r[f"{phase}_memory_bound"][i] == pytest.approx(share, rel=1e-12), (b, phase)


def test_efficiency_per_datatype_pins_and_wide_weights():
    slow16 = spec(efficiency={"default": {"compute": 1.0, "memory": 1.0}, "fp16": {"compute": 0.5, "memory": 1.0}})
    assert _op(run(None, s=slow16), "decode", "t_compute", "q_proj") == pytest.approx(2 * H * Q * L * B / 0.5e12)
    # the pinned unit is found even when another float unit is listed (and would be chosen) first
    s = spec(compute_tflops=dict(fp16=0.5, bf16=1.0))
    assert [run(None, s=s, **kw)["dtypes"][int(run(None, s=s, **kw)["compute_dtype"])]
            for kw in ({}, {"float_dtype": "fp16"})] == ["bf16", "fp16"]
    # 1-bit activations: the int8 unit takes them (the 4-bit weights are converted)
    r = run(None, wbits=4, abits=1, group_size=32)
    assert r["dtypes"][int(r["compute_dtype"])] == "int8" and bool(r["dequantized"])
    # fp32 weights with 16-bit activations: 4 bytes per weight, norms and tables stored as wide
    w32 = float(run(None, wbits=32, abits=16, ideal=True)["weight_bytes"])
    lin = sum(fi * fo for fi, fo in LINEARS.values()) * L
    assert w32 == pytest.approx(4 * (lin + H * V + (2 * L + 1) * H + V * H))


def test_a_dense_head_keeps_the_profiles_dense_kernel_when_rows_name_another():
    rt = load_runtime("torch-cpu")
    base, row = run(rt), run(rt, kernel="dequant-matmul")
    assert _op(row, "decode", "time", "lm_head") == pytest.approx(_op(base, "decode", "time", "lm_head"))
    # (compared on the memory term: with the fitted launch floors both decode times can sit on a floor)
    assert _op(row, "decode", "t_memory", "q_proj") != pytest.approx(_op(base, "decode", "t_memory", "q_proj"))


def test_phase_outputs_in_ms_and_what_ideal_leaves_out():
    s = spec(overhead_us={"per_layer": 3, "per_forward": 7})
    ideal, real = run(None, s=s, ideal=True), run(None, s=s)
    for ph in ("prefill", "decode"):
        ops = {k: np.asarray(v).reshape(len(OPS)) for k, v in ideal[f"ops_{ph}"].items()}
        assert float(ideal[f"{ph}_compute_ms"]) == pytest.approx(ops["t_compute"].sum() * 1e3, rel=1e-12)
        assert float(ideal[f"{ph}_memory_ms"]) == pytest.approx(ops["t_memory"].sum() * 1e3, rel=1e-12)
    assert float(ideal["tpot_ms"]) == pytest.approx(float(ideal["decode_ops_ms"]), rel=1e-12)  # no overhead
    assert float(ideal["framework_ms"]) == 0.0 and float(ideal["fixed_ms"]) == 0.0
    assert float(real["fixed_ms"]) == pytest.approx((7 + L * 3) / 1e3, rel=1e-12)


def test_kernel_names_per_configuration():
    rt = load_runtime("torch-cpu")
    names = np.array(["torch-matmul", None, "", np.nan, "aten-int4pack-cpu"], dtype=object)
    r = evaluate_points([spec()], [SHAPE], wbits=4, group_size=32, kernel=names, runtime=rt)
    alone = [float(evaluate_points([spec()], [SHAPE], wbits=4, group_size=32, runtime=rt,
                                   kernel=k)["tpot_ms"]) for k in ("torch-matmul", None, "aten-int4pack-cpu")]
    assert r["tpot_ms"].tolist() == pytest.approx([alone[0], alone[1], alone[1], alone[1], alone[2]])
    # a registered kernel the profile does not declare runs on the spec's values
    assert np.isfinite(evaluate_points([spec()], [SHAPE], wbits=4, kernel="aten-int8pack-cpu")["tpot_ms"]).all()
    with pytest.raises(ConfigError, match=r"^kernel 'warp-drive' is not allowed \(known: .*torch-matmul.*; or "
                                          r"declare it in the runtime profile 'default'\)$"):
        evaluate_points([spec()], [SHAPE], wbits=4, kernel="warp-drive")
