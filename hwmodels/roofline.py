"""Per-operator roofline model of decoder-only LLM inference, vectorized over configurations.

One implementation: :func:`evaluate_points` computes every output for arrays of configurations
(numpy broadcasting, configurations x operators), :func:`evaluate_grid` runs it on the outer product
of axes (specs x models x bits x group sizes x batch x lengths), and :func:`hwmodels.estimate` calls
it for a single configuration and keeps the per-operator table.

Model (all documented in hwmodels/README.md):

- Operators per forward pass: embedding rows, per layer {attn_norm, q/k/v/o projections, attention
  scores QK^T (with GQA: K read once per KV head), softmax, A.V, KV-cache write, mlp_norm,
  gate/up/down, activation}, final norm, lm head (last position only). Prefill processes ``B*P``
  tokens with causal attention over ``P(P+1)/2`` query-key pairs per sequence; decode processes ``B``
  tokens attending to the mean context ``P + G/2`` (time per output token, TPOT).
- Each operator takes ``max(compute time, memory time)``: matrix FLOPs at the peak of the unit the
  (weight bits, activation bits) pair dispatches to (:mod:`hwmodels.dtypes`), vector FLOPs at
  ``vector_tflops``, each divided by the spec's efficiency for that datatype; bytes over
  ``bandwidth_gbs`` times memory efficiency. Weights and the KV cache stream from DRAM; an operator's
  activations stay on chip when they fit in ``sram_mb``.
- Quantized linears store ``wbits`` per weight plus a 16-bit scale and (asymmetric) a ``wbits``
  zero point per group of ``group_size`` inputs (4-bit at g128: 4.156 bits/weight). Embeddings,
  norms, biases and the lm head stay dense (16-bit, or 32-bit with fp32 weights/activations). When the unit
  cannot take ``wbits`` weights natively, each weight costs ``dequant_ops_per_weight`` vector ops
  per forward pass. KV-cache entries below 16 bits carry a 16-bit scale and zero per head vector.
- Fixed overheads: ``overhead_us.per_forward + n_layers * overhead_us.per_layer`` per forward.
- Kernels per phase: prefill runs the decode kernel, except quantized weights on a kernel of
  :data:`hwmodels.runtime.PREFILL_ON_DENSE_COPY`, whose prefill runs the dense matmul on a 16-bit
  dequantized copy (``codesign measure --prefill auto``); the copy counts in weight memory.
- Energy: ops x pJ/op of their datatype + DRAM bytes x pJ/byte + on-chip bytes x SRAM pJ/byte +
  ``idle_w`` x time; per output token = decode step energy / B.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Sequence

import numpy as np

from codesign.config import ConfigError
from hwmodels.dtypes import MAX_BITS, candidate_cost, converts, parse_dtype
from hwmodels.runtime import (DENSE_KERNEL, KERNELS, NONE, PER_PASS, PER_TILE, RuntimeProfile, RuntimeTable,
                              load_runtime, runtime_table)
from hwmodels.shapes import ModelShape, load_shape
from hwmodels.spec import AcceleratorSpec, load_spec

OPS = ["embed", "attn_norm", "q_proj", "k_proj", "v_proj", "attn_qk", "attn_softmax", "attn_av", "kv_write",
       "o_proj", "mlp_norm", "gate_proj", "up_proj", "mlp_act", "down_proj", "final_norm", "lm_head"]
QLINEAR, ATTENTION, DENSE, VECTOR_ONLY = 0, 1, 2, 3
_CLS = np.array([QLINEAR if op.endswith("_proj") else ATTENTION if op in ("attn_qk", "attn_av")
                 else DENSE if op == "lm_head" else VECTOR_ONLY for op in OPS])
_IS_LAST = np.array([op == "lm_head" for op in OPS])
_LIN, _ATT = _CLS == QLINEAR, _CLS == ATTENTION
_WEIGHTS = _LIN | _IS_LAST  # operators that multiply by a weight matrix (the kernels a runtime profile prices)
_FUSED_AWAY = np.array([op in ("attn_softmax", "attn_av") for op in OPS])  # inside attn_qk's kernel when fused
_ATTN_GROUP, _QK = np.array([op in ("attn_qk", "attn_softmax", "attn_av") for op in OPS]), OPS.index("attn_qk")
SCALE_BITS = 16  # one fp16 scale per quantization group
KV_QUANT_OPS = 3.0  # ops per KV element to quantize it on write (scale, round, clamp)
CHUNK = 4096  # configurations per vectorized block: temporaries stay cache-sized (2x faster than 32k)


# ---------------------------------------------------------------------------------------------
# Tables: specs and shapes turned into arrays once
# ---------------------------------------------------------------------------------------------
@dataclass
class SpecTable:
    """Arrays of ``n_specs`` specs; datatype axis = ``dtypes`` + a last 'vector' column."""

    names: list[str]
    dtypes: list[str]
    bw: np.ndarray  # (n_s,) bytes/s
    capacity: np.ndarray  # (n_s,) bytes
    sram: np.ndarray  # (n_s,) bytes
    rate: np.ndarray  # (n_s, n_dt+1) ops/s, 0 where unsupported
    eff_c: np.ndarray  # (n_s, n_dt+1)
    eff_m: np.ndarray  # (n_s, n_dt+1)
    pj: np.ndarray  # (n_s, n_dt+1) pJ per op
    pj_dram: np.ndarray  # (n_s,)
    pj_sram: np.ndarray  # (n_s,)
    lut: np.ndarray  # (n_s, 33, 33) datatype index for (weight bits, activation bits)
    deq: np.ndarray  # (n_s, 33, 33) weights need conversion on that unit
    ovh_layer: np.ndarray  # (n_s,) seconds
    ovh_fwd: np.ndarray  # (n_s,) seconds
    idle_w: np.ndarray  # (n_s,)
    dq_ops: np.ndarray  # (n_s,)
    unit_area: np.ndarray  # (n_s, n_dt+1) mm^2 (NaN unknown; vector column 0)
    base_area: np.ndarray  # (n_s,) mm^2 (NaN without area data)

    @property
    def vec(self) -> int:
        return len(self.dtypes)


# Tables are cached by content; bounded because exploration creates a spec per knob setting.
_CACHE_SIZE = 512
_SPEC_CACHE: OrderedDict[str, SpecTable] = OrderedDict()
_SHAPE_CACHE: OrderedDict[tuple, ShapeTable] = OrderedDict()


def _remember(cache: OrderedDict, key, value):
    cache[key] = value
    if len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


FLOAT16 = ("fp16", "bf16")


def spec_table(specs: Sequence[AcceleratorSpec], float_dtype: str | None = None) -> SpecTable:
    """Arrays of ``specs`` (cached). ``float_dtype`` ('fp16' or 'bf16') pins the float format of 16-bit
    activations: other float units (the other 16-bit one, tf32, fp32) are not used for them (default:
    the fastest unit that takes the operands, fp16 on ties). Specs without that unit ignore it."""
    if float_dtype is not None and float_dtype not in FLOAT16:
        raise ConfigError(f"float_dtype = {float_dtype!r} is not allowed (allowed: {', '.join(FLOAT16)})")
    key = json.dumps([s.model_dump(mode="json") for s in specs] + [float_dtype], sort_keys=True)
    hit = _SPEC_CACHE.get(key)
    if hit is not None:
        _SPEC_CACHE.move_to_end(key)
        return hit
    dtypes = sorted({d for s in specs for d in s.compute_tflops})
    n, k = len(specs), len(dtypes)
    tab = SpecTable(
        names=[s.name for s in specs], dtypes=dtypes,
        bw=np.array([s.memory.bandwidth_gbs * 1e9 for s in specs]),
        capacity=np.array([s.memory.capacity_gb * 1e9 for s in specs]),
        sram=np.array([(s.sram_mb or 0.0) * 1e6 for s in specs]),
        rate=np.zeros((n, k + 1)), eff_c=np.ones((n, k + 1)), eff_m=np.ones((n, k + 1)), pj=np.zeros((n, k + 1)),
        pj_dram=np.array([s.pj_per_byte_dram for s in specs]), pj_sram=np.array([s.pj_per_byte_sram for s in specs]),
        lut=np.zeros((n, MAX_BITS + 1, MAX_BITS + 1), dtype=np.int64),
        deq=np.zeros((n, MAX_BITS + 1, MAX_BITS + 1), dtype=bool),
        ovh_layer=np.array([s.overhead_us.per_layer * 1e-6 for s in specs]),
        ovh_fwd=np.array([s.overhead_us.per_forward * 1e-6 for s in specs]),
        idle_w=np.array([s.idle_w or 0.0 for s in specs]),
        dq_ops=np.array([s.dequant_ops_per_weight for s in specs]),
        unit_area=np.zeros((n, k + 1)), base_area=np.full(n, np.nan))
    parsed = [parse_dtype(d) for d in dtypes]
    for i, s in enumerate(specs):
        for j, d in enumerate(dtypes + ["vector"]):
            if d == "vector":
                tab.rate[i, j] = s.vector_tflops_eff * 1e12
                eff = s.efficiency.get("vector") or s.efficiency["default"]
                tab.pj[i, j] = s.pj_per_op("vector")
            else:
                tab.rate[i, j] = s.compute_tflops.get(d, 0.0) * 1e12
                eff = s.efficiency_for(d)
                tab.pj[i, j] = s.pj_per_op(d)
                ua = s.unit_area_mm2(d) if d in s.compute_tflops else 0.0
                tab.unit_area[i, j] = np.nan if ua is None else ua
            tab.eff_c[i, j], tab.eff_m[i, j] = eff.compute, eff.memory
        base = s.base_area_mm2()
        tab.base_area[i] = np.nan if base is None else base
        pinned = float_dtype is not None and float_dtype in s.compute_tflops
        for w in range(1, MAX_BITS + 1):
            for a in range(1, MAX_BITS + 1):
                best, best_key = k, None  # fallback: the vector unit
                for j, dt in enumerate(parsed):
                    r = s.compute_tflops.get(dt.name)
                    if not r or (pinned and a <= 16 and dt.kind == "float" and dt.weight_bits >= 16
                                 and dt.name != float_dtype):
                        continue  # 16-bit activations run on the pinned float unit only
                    key_ = candidate_cost(dt, w, a, r)
                    if key_ is not None and (best_key is None or key_ < best_key):
                        best, best_key = j, key_
                tab.lut[i, w, a] = best
                tab.deq[i, w, a] = converts(parsed[best], w) if best < k else w < 16
        tab.lut[i, 0, :], tab.lut[i, :, 0] = tab.lut[i, 16, 16], tab.lut[i, 16, 16]
    return _remember(_SPEC_CACHE, key, tab)


@dataclass
class ShapeTable:
    """Per-operator coefficients of ``n_models`` shapes, each ``(n_models, n_ops)`` unless noted.

    Coefficients are summed over layers (``count`` = layers or 1): ``mat_tok`` matrix FLOPs per token,
    ``mat_pair`` per query-key pair, ``vec_tok`` / ``vec_pair`` vector FLOPs, ``act_tok`` activation
    elements read+written per token, ``w_elems`` weight elements, ``small`` 16-bit parameter elements
    (norms, biases), ``emb_tok`` embedding elements read per token, ``kv_read`` KV elements read per
    cached position, ``kv_write`` KV elements written per token.
    """

    names: list[str]
    count: np.ndarray
    in_f: np.ndarray
    out_f: np.ndarray
    w_elems: np.ndarray
    small: np.ndarray
    mat_tok: np.ndarray
    mat_pair: np.ndarray
    vec_tok: np.ndarray
    vec_pair: np.ndarray
    act_tok: np.ndarray
    emb_tok: np.ndarray
    kv_read: np.ndarray
    kv_write: np.ndarray
    n_layers: np.ndarray  # (n_m,)
    head_dim: np.ndarray  # (n_m,)
    vocab: np.ndarray  # (n_m,)
    resident_emb: np.ndarray  # (n_m,) embedding-table (+positions) elements not shared with the lm head
    tied_emb: np.ndarray  # (n_m,) elements of an embedding table shared with the lm head (else 0)
    gqa_group: np.ndarray  # (n_m,) query heads per key/value head


def _shape_rows(s: ModelShape) -> dict[str, np.ndarray]:
    L, h, i, q, kvd, hd = s.n_layers, s.hidden, s.intermediate, s.q_dim, s.kv_dim, s.head_dim
    rows = {k: np.zeros(len(OPS)) for k in ("count", "in_f", "out_f", "small", "mat_pair", "vec_tok", "vec_pair",
                                            "act_tok", "emb_tok", "kv_read", "kv_write")}
    norm_w = h * (2 if s.layernorm else 1)
    norm_ops = 7 if s.layernorm else 4
    lin = {"q_proj": (h, q, s.qkv_bias), "k_proj": (h, kvd, s.qkv_bias), "v_proj": (h, kvd, s.qkv_bias),
           "o_proj": (q, h, s.out_bias), "up_proj": (h, i, s.out_bias), "down_proj": (i, h, s.out_bias)}
    if s.gated_mlp:
        lin["gate_proj"] = (h, i, s.out_bias)
    for j, op in enumerate(OPS):
        c = L
        if op in lin:
            fi, fo, bias = lin[op]
            rows["in_f"][j], rows["out_f"][j] = fi, fo
            rows["small"][j] = fo * bias
            rows["vec_tok"][j] = fo * bias
            rows["act_tok"][j] = fi + fo
        elif op == "embed":
            c = 1
            rows["emb_tok"][j] = h * (2 if s.learned_positions else 1)
            rows["vec_tok"][j] = h if s.learned_positions else 0
            rows["act_tok"][j] = h
        elif op in ("attn_norm", "mlp_norm", "final_norm"):
            c = 1 if op == "final_norm" else L
            rows["small"][j], rows["vec_tok"][j], rows["act_tok"][j] = norm_w, norm_ops * h, 2 * h
        elif op == "attn_qk":
            rows["mat_pair"][j] = 2 * hd * s.n_heads
            rows["vec_tok"][j] = 0 if s.learned_positions else 3 * (q + kvd)  # rotary embedding
            rows["act_tok"][j] = q
            rows["kv_read"][j] = kvd
        elif op == "attn_softmax":
            rows["vec_pair"][j] = 5 * s.n_heads
        elif op == "attn_av":
            rows["mat_pair"][j] = 2 * hd * s.n_heads
            rows["act_tok"][j] = q
            rows["kv_read"][j] = kvd
        elif op == "kv_write":
            rows["kv_write"][j] = 2 * kvd
        elif op == "mlp_act":
            rows["vec_tok"][j] = 5 * i if s.gated_mlp else 8 * i
            rows["act_tok"][j] = 3 * i if s.gated_mlp else 2 * i
        elif op == "lm_head":
            c = 1
            rows["in_f"][j], rows["out_f"][j] = h, s.vocab
            rows["act_tok"][j] = h + s.vocab
        elif op == "gate_proj":
            c = 0  # 2-matrix MLP: no gate
        rows["count"][j] = c
    for k in ("small", "mat_pair", "vec_tok", "vec_pair", "act_tok", "emb_tok", "kv_read", "kv_write"):
        rows[k] = rows[k] * rows["count"]
    rows["w_elems"] = rows["in_f"] * rows["out_f"] * rows["count"]
    rows["mat_tok"] = 2 * rows["w_elems"]
    return rows


def shape_table(shapes: Sequence[ModelShape]) -> ShapeTable:
    key = tuple(shapes)
    hit = _SHAPE_CACHE.get(key)
    if hit is not None:
        _SHAPE_CACHE.move_to_end(key)
        return hit
    rows = [_shape_rows(s) for s in shapes]
    stack = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    tab = ShapeTable(
        names=[s.name for s in shapes], **stack,
        n_layers=np.array([s.n_layers for s in shapes], dtype=float),
        head_dim=np.array([s.head_dim for s in shapes], dtype=float),
        vocab=np.array([s.vocab for s in shapes], dtype=float),
        resident_emb=np.array([s.vocab * s.hidden * (0 if s.tied_embeddings else 1) + s.learned_positions * s.hidden
                               for s in shapes], dtype=float),
        tied_emb=np.array([s.vocab * s.hidden * bool(s.tied_embeddings) for s in shapes], dtype=float),
        gqa_group=np.array([s.n_heads / s.n_kv_heads for s in shapes], dtype=float))
    return _remember(_SHAPE_CACHE, key, tab)


# ---------------------------------------------------------------------------------------------
# The vectorized core
# ---------------------------------------------------------------------------------------------
OUTPUTS = ["ttft_ms", "tpot_ms", "e2e_ms", "tokens_per_s", "weight_bytes", "weight_meta_bytes", "kv_bytes",
           "workspace_bytes", "peak_memory_bytes", "fits", "energy_per_token_j", "prefill_energy_j", "avg_power_w",
           "area_mm2", "prefill_compute_ms", "prefill_memory_ms", "prefill_ops_ms", "decode_compute_ms",
           "decode_memory_ms", "decode_ops_ms", "overhead_ms", "prefill_floor_ms", "decode_floor_ms",
           "prefill_host_ms", "decode_host_ms", "framework_ms", "fixed_ms", "host_overlaps", "decode_energy_j",
           "decode_memory_bound",
           "prefill_memory_bound", "compute_dtype", "attn_dtype", "head_dtype", "dequantized"]


def _check_int(name: str, arr: np.ndarray, lo: int, hi: int | None = None, extra: str = "") -> None:
    bad = (arr < lo) | ((arr > hi) if hi is not None else False)
    if np.any(bad):
        v = arr[bad].flat[0].item()
        allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name} = {v!r} is not allowed (allowed: {allowed}{extra})")


@dataclass
class _Ops:
    """Per-operator choices of a block of configurations, each ``(N, n_ops)``: datatype index ``dt``,
    weight bits ``wop``, kernel index ``k`` (weight matmuls), whether the unit converts the weights
    (``deq``) and whether they are stored quantized (``qw``); ``qhead`` (N,): lm head quantized."""

    dt: np.ndarray
    wop: np.ndarray
    k: np.ndarray
    deq: np.ndarray
    qw: np.ndarray
    qhead: np.ndarray
    dt_lin: np.ndarray
    dt_att: np.ndarray
    dt_head: np.ndarray
    deq_lin: np.ndarray


def _operators(S: SpecTable, R: RuntimeTable, si, w, a, kv, dense_bits, kern) -> _Ops:
    """Which unit, kernel and weight format every operator of every configuration uses."""
    e = (..., None)
    db = dense_bits.astype(np.int64)
    qhead = R.qhead & (w < 16)
    hbits = np.where(qhead, R.head_bits if R.head_bits else w, db)
    dt_lin, dt_att, dt_dense = S.lut[si, w, a], S.lut[si, kv, a], S.lut[si, db, a]
    dt_head = np.where(qhead, S.lut[si, hbits, a], dt_dense)
    deq_lin, deq_att = S.deq[si, w, a], S.deq[si, kv, a]
    deq_head = qhead & S.deq[si, hbits, a]
    dt = np.where(_LIN, dt_lin[e], np.where(_ATT, dt_att[e], np.where(_IS_LAST, dt_head[e], S.vec)))
    deq = (_LIN & deq_lin[e]) | (_ATT & deq_att[e]) | (_IS_LAST & deq_head[e])
    wop = np.where(_LIN, w[e], np.where(_IS_LAST, hbits[e], db[e]))
    kq = np.where(kern >= 0, kern, R.fmt[w])  # a measured row's kernel, else the profile's choice
    kh = np.where(qhead & (hbits == w), kq, R.fmt[hbits])
    k = np.where(_LIN, kq[e], kh[e])
    qw = _WEIGHTS & (wop < 16)
    return _Ops(dt, wop, k, deq, qw, qhead, dt_lin, dt_att, dt_head, deq_lin)


def _efficiencies(S: SpecTable, R: RuntimeTable, si, o: _Ops, ideal: bool):
    """Compute and memory efficiency per operator ``(N, n_ops)`` and of vector work ``(N, 1)``:
    a kernel's own (weight matmuls) or the profile's ``other_efficiency``, else the spec's."""
    if ideal:
        return 1.0, 1.0, 1.0
    s2 = si[..., None]
    ec, em = S.eff_c[s2, o.dt], S.eff_m[s2, o.dt]
    kc, km = R.comp_eff[o.k, o.wop], R.mem_eff[o.k, o.wop]
    ec = np.where(_WEIGHTS & np.isfinite(kc), kc, ec)
    em = np.where(_WEIGHTS & np.isfinite(km), km, em)
    if np.isfinite(R.other_c):
        ec = np.where(_WEIGHTS, ec, R.other_c)
    if np.isfinite(R.other_m):
        em = np.where(_WEIGHTS, em, R.other_m)
    ecv = R.other_c if np.isfinite(R.other_c) else S.eff_c[si, S.vec][..., None]
    return ec, em, ecv


def _step(R: RuntimeTable, device_s, n_layers, decode: bool, ideal: bool):
    """(time of one forward pass, its host time): the profile's host time per layer (none in decode
    under CUDA graphs) overlaps the device (async launch) or adds to it, plus per-forward time."""
    if ideal:
        return device_s, np.zeros_like(device_s)
    host = n_layers * (0.0 if decode and R.graphs else R.per_layer)
    busy = np.maximum(device_s, host) if R.async_launch else device_s + host
    return busy + R.per_forward, host + np.zeros_like(device_s)


def _apply_floor(t, floor, fused: bool):
    """Every kernel takes at least its launch floor; fused attention (QK^T, softmax, A.V) is one kernel,
    so the three operators together take at least one floor (the shortfall is booked on attn_qk)."""
    if not fused:
        return np.maximum(t, floor)
    t = np.where(_FUSED_AWAY, t, np.maximum(t, np.where(_ATTN_GROUP, 0.0, floor)))
    short = np.maximum(floor[..., _QK] - t[..., _ATTN_GROUP].sum(-1), 0.0)
    t[..., _QK] += short
    return t


def _core(S: SpecTable, M: ShapeTable, R: RuntimeTable, si, mi, w, g, a, kv, b, p, gen, sym, kern, ideal: bool,
          want_ops: bool):
    """All inputs are 1-D arrays of the same length N. Returns dict of (N,) arrays (+ per-op (N, n_ops))."""
    e = (..., None)  # append the operator axis
    count = M.count[mi]
    in_f, out_f, w_elems = M.in_f[mi], M.out_f[mi], M.w_elems[mi]
    hd = M.head_dim[mi]
    # unquantized tensors (embeddings, norms, biases, lm head; all weights when w >= 16) are stored in
    # the activation float format, at least 16-bit: fp32 inference keeps them 4 bytes wide
    dense_bits = np.where(w >= 16, np.maximum(w, np.maximum(a, 16)), np.maximum(a, 16)).astype(float)
    o = _operators(S, R, si, w, a, kv, dense_bits, kern)
    dt, deq = o.dt, o.deq
    s2 = si[e]
    r_mat, pj_mat = S.rate[s2, dt], S.pj[s2, dt]
    r_vec, pj_vec = S.rate[si, S.vec][e], S.pj[si, S.vec][e]
    ec, em, ecv = _efficiencies(S, R, si, o, ideal)
    mat_rate, vec_rate, bw = r_mat * ec, r_vec * ecv, (S.bw[si])[e] * em

    # bytes that do not depend on the phase: weights (+ group scales/zeros) and 16-bit small params
    g_eff = np.where(g[e] <= 0, in_f, np.minimum(g[e], np.maximum(in_f, 1)))
    groups = count * out_f * np.ceil(in_f / np.maximum(g_eff, 1))
    zbits = np.where(sym[e], 0.0, o.wop)
    meta = np.where(o.qw, groups * (SCALE_BITS + zbits) / 8, 0.0)
    wbits_op = np.where(o.qw, o.wop, dense_bits[e])
    w_bytes = w_elems * wbits_op / 8 + meta + M.small[mi] * dense_bits[e] / 8
    kv_bits = kv + np.where(kv < 16, 2 * SCALE_BITS / hd, 0.0)
    sram = S.sram[si][e]
    cnt = np.maximum(count, 1)

    # dequantization of weights: per pass, per output tile, or free, as the op's kernel does it
    rt = R if not ideal else None
    wdeq = _WEIGHTS & deq
    mode = R.dq_mode[o.k] if rt else np.full(o.k.shape, PER_PASS)
    dq_w = np.where(np.isfinite(R.dq_ops[o.k]), R.dq_ops[o.k], S.dq_ops[si][e]) if rt else S.dq_ops[si][e]
    deq_elems = np.where(wdeq & (mode != NONE), w_elems, 0.0) * dq_w
    tile = R.tile_m[o.k]
    m_half_pre = np.where(_WEIGHTS, R.m_half[o.k], 0.0) if rt and R.m_half.any() else None
    m_half_dec = np.where(_WEIGHTS, R.m_half_dec[o.k], 0.0) if rt and R.m_half_dec.any() else None
    dense_copy = np.where(wdeq & R.dense_copy[o.k], 2 * w_elems * dense_bits[e] / 8, 0.0) if rt else 0.0
    floor = np.where(_WEIGHTS, R.floor[o.k], R.floor_other) * count if rt and (R.floor.any() or R.floor_other) else None
    fused = bool(rt and R.fused_attention)
    overlap = R.overlap if rt else 1.0

    # per-operator coefficients gathered once for both phases
    mat_tok, mat_pair, vec_tok, vec_pair = M.mat_tok[mi], M.mat_pair[mi], M.vec_tok[mi], M.vec_pair[mi]
    act_tok, emb_tok, kv_read = M.act_tok[mi], M.emb_tok[mi], M.kv_read[mi]
    if rt and R.expand_gqa:  # K/V repeated to every query head before attention: reads grow by the group
        kv_read = kv_read * M.gqa_group[mi][e]
    dq_att, pj_dram, pj_sram = S.dq_ops[si][e], S.pj_dram[si][e], S.pj_sram[si][e]
    kv_write = M.kv_write[mi]
    kv_quant = np.where(kv[e] < 16, KV_QUANT_OPS, 0.0) * kv_write
    att_deq = _ATT & deq
    emb_bytes_tok = emb_tok * dense_bits[e] / 8
    act_bytes_tok = act_tok * a[e] / 8
    kv_bytes_el = kv_bits[e] / 8

    def phase(T, T_last, pairs, kvpos, m_half):
        T, pairs, kvpos = T[e], pairs[e], kvpos[e]
        tok = np.where(_IS_LAST, T_last[e], T)
        mat = mat_tok * tok + mat_pair * pairs
        kv_read_el = kv_read * kvpos
        passes = np.where(mode == PER_TILE, np.ceil(tok / tile), 1.0)
        vec = vec_tok * tok + vec_pair * pairs + deq_elems * passes + dq_att * np.where(att_deq, kv_read_el, 0.0) \
            + kv_quant * T
        act = act_bytes_tok * tok
        onchip = (act / cnt <= sram) & (sram > 0)
        act_on = np.where(onchip, act, 0.0)
        dram = w_bytes + dense_copy + emb_bytes_tok * tok + (kv_read_el + kv_write * T) * kv_bytes_el + act - act_on
        t_c = mat / mat_rate * (1.0 if m_half is None else 1.0 + m_half / tok) + vec / vec_rate
        t_m = dram / bw
        t = np.maximum(t_c, t_m)
        if overlap < 1.0:
            t = t + (1.0 - overlap) * np.minimum(t_c, t_m)
        t_free = t
        if floor is not None:
            t = _apply_floor(t.copy(), floor, fused)
        energy = (mat * pj_mat + vec * pj_vec + dram * pj_dram + act_on * pj_sram) * 1e-12
        t_sum = t.sum(-1)
        out = {"t": t_sum, "tc": t_c.sum(-1), "tm": t_m.sum(-1), "energy": energy.sum(-1),
               "floor": t_sum - t_free.sum(-1),
               "mem_bound": np.where(t_m >= t_c, t, 0.0).sum(-1) / np.maximum(t_sum, 1e-30)}
        if want_ops:
            out["ops"] = {"flops": mat + vec, "mat_flops": mat, "vec_flops": vec, "bytes": dram,
                          "onchip_bytes": act_on, "t_compute": t_c, "t_memory": t_m, "time": t, "energy": energy,
                          "dtype": dt, "act": act, "count": np.broadcast_to(count, t.shape)}
        return out

    bf, pf, gf = b.astype(float), p.astype(float), gen.astype(float)
    pre = phase(bf * pf, bf, bf * pf * (pf + 1) / 2, bf * pf, m_half_pre)
    ctx = pf + gf / 2
    dec = phase(bf, bf, bf * ctx, bf * ctx, m_half_dec)
    L = M.n_layers[mi]
    ovh = np.zeros_like(bf) if ideal else S.ovh_fwd[si] + L * S.ovh_layer[si]
    (ttft, host_pre), (tpot, host_dec) = _step(R, pre["t"], L, False, ideal), _step(R, dec["t"], L, True, ideal)
    ttft, tpot = ttft + ovh, tpot + ovh
    weight = (w_bytes.sum(-1) + M.resident_emb[mi] * dense_bits / 8
              + np.where(o.qhead, M.tied_emb[mi], 0.0) * dense_bits / 8)  # a tied table stays dense for lookups
    kv_total = bf * (pf + gf) * kv_write.sum(-1) * kv_bits / 8
    act_pre = M.act_tok[mi] * np.where(_IS_LAST, bf[e], (bf * pf)[e]) * a[e] / 8 / cnt
    workspace = act_pre.max(-1) + bf * M.vocab[mi] * 4
    peak = weight + kv_total + workspace
    idle = S.idle_w[si]
    e_tok = (dec["energy"] + idle * tpot) / bf
    ua = S.unit_area
    dt_lin, dt_att, dt_head = o.dt_lin, o.dt_att, o.dt_head
    area = (S.base_area[si] + ua[si, dt_lin] + np.where(dt_att != dt_lin, ua[si, dt_att], 0.0)
            + np.where((dt_head != dt_lin) & (dt_head != dt_att), ua[si, dt_head], 0.0))
    res = {
        "ttft_ms": ttft * 1e3, "tpot_ms": tpot * 1e3, "e2e_ms": _e2e(ttft, tpot, gf) * 1e3,
        "tokens_per_s": bf / tpot, "weight_bytes": weight, "weight_meta_bytes": meta.sum(-1), "kv_bytes": kv_total,
        "workspace_bytes": workspace, "peak_memory_bytes": peak, "fits": peak <= S.capacity[si],
        "energy_per_token_j": e_tok, "prefill_energy_j": pre["energy"] + idle * ttft,
        "avg_power_w": e_tok * bf / tpot, "area_mm2": area,
        "prefill_compute_ms": pre["tc"] * 1e3, "prefill_memory_ms": pre["tm"] * 1e3,
        "prefill_ops_ms": pre["t"] * 1e3, "decode_compute_ms": dec["tc"] * 1e3,
        "decode_memory_ms": dec["tm"] * 1e3, "decode_ops_ms": dec["t"] * 1e3,
        "overhead_ms": (tpot - dec["t"]) * 1e3, "prefill_floor_ms": pre["floor"] * 1e3,
        "decode_floor_ms": dec["floor"] * 1e3, "prefill_host_ms": host_pre * 1e3, "decode_host_ms": host_dec * 1e3,
        "framework_ms": np.full_like(bf, 0.0 if ideal else R.per_forward * 1e3), "fixed_ms": ovh * 1e3,
        "host_overlaps": np.full(bf.shape, ideal or R.async_launch),
        "decode_energy_j": dec["energy"], "decode_memory_bound": dec["mem_bound"],
        "prefill_memory_bound": pre["mem_bound"], "compute_dtype": dt_lin, "attn_dtype": dt_att,
        "head_dtype": dt_head,
        "dequantized": o.deq_lin & (w < 16),
    }
    res["_linear_bytes"] = np.where(_LIN, w_bytes, 0.0).sum(-1)
    if want_ops:
        res["ops_prefill"], res["ops_decode"] = pre["ops"], dec["ops"]
    return res


def _e2e(ttft, tpot, gen):
    """End-to-end time of a request: the prompt pass gives the first token, then ``gen - 1`` decode
    steps (any time unit)."""
    return ttft + (gen - 1) * tpot


def _phase_kernels(R: RuntimeTable, w, kern, pkern):
    """(prefill weight bits, prefill kernel index) per configuration: a given prefill kernel (``pkern``
    >= 0), else the decode kernel, except that quantized weights on a kernel of
    :data:`~hwmodels.runtime.PREFILL_ON_DENSE_COPY` run prefill on the dense kernel; prefill on the dense
    kernel of quantized weights reads their 16-bit dequantized copy."""
    kq = np.where(kern >= 0, kern, R.fmt[w])
    dense = R.kernels.index(DENSE_KERNEL)  # what the copy runs: F.linear, priced as the profile's dense matmul
    pk = np.where(pkern >= 0, pkern, np.where(R.copy_prefill[kq] & (w < 16), dense, kq))
    copy = (pk != kq) & (pk == dense) & (w < 16)
    return np.where(copy, 16, w), np.where(pk == kq, kern, pk), copy


def _merge_prefill(dec: dict, pre: dict, copy, gen, capacity) -> dict:
    """Decode outputs of ``dec`` with the prefill outputs of ``pre`` (the prefill kernel's pass);
    a dense copy (``copy``) adds its bytes to weight and peak memory."""
    out = dict(dec)
    for k in pre:
        if k.startswith("prefill_") or k in ("ttft_ms", "ops_prefill"):
            out[k] = pre[k]
    out["e2e_ms"] = _e2e(out["ttft_ms"], out["tpot_ms"], gen)
    extra = np.where(copy, pre["_linear_bytes"], 0.0)
    out["weight_bytes"] = dec["weight_bytes"] + extra
    out["peak_memory_bytes"] = dec["peak_memory_bytes"] + extra
    out["fits"] = out["peak_memory_bytes"] <= capacity
    return out


def _as_specs(specs) -> list[AcceleratorSpec]:
    if isinstance(specs, (str, AcceleratorSpec)) or not isinstance(specs, Sequence):
        specs = [specs]
    return [load_spec(s) for s in specs]


def _as_shapes(shapes) -> list[ModelShape]:
    if isinstance(shapes, (str, ModelShape)) or not isinstance(shapes, Sequence):
        shapes = [shapes]
    return [load_shape(s) for s in shapes]


def _validate(w, g, a, kv, b, p, gen) -> None:
    _check_int("wbits", w, 1, MAX_BITS)
    _check_int("abits", a, 1, MAX_BITS)
    _check_int("kvbits", kv, 1, MAX_BITS)
    _check_int("batch", b, 1)
    _check_int("prompt_len", p, 1)
    _check_int("gen_len", gen, 1)
    if np.any((g == 0) | (g < -1)):
        raise ConfigError(f"group_size = {g[(g == 0) | (g < -1)].flat[0].item()!r} is not allowed "
                          "(allowed: a positive group size, or -1 for per-output-channel scales)")


def evaluate_points(specs, shapes, *, spec_index=0, model_index=0, wbits=16, group_size=128, abits=16, kvbits=16,
                    batch=1, prompt_len=512, gen_len=128, sym=False, ideal=False, want_ops=False,
                    float_dtype: str | None = None, runtime=None, kernel=None,
                    prefill_kernel=None) -> dict[str, np.ndarray]:
    """Evaluate configurations given as broadcastable arrays (one configuration per element).

    Args:
        specs: accelerator specs (objects, names or paths); ``spec_index`` indexes this list.
        shapes: model shapes (objects, names or config paths); ``model_index`` indexes this list.
        wbits, group_size, abits, kvbits, batch, prompt_len, gen_len, sym: integer (bool for ``sym``)
            arrays broadcastable to a common shape ``X``.
        ideal: peak rates (efficiency 1) and no fixed overheads: the roofline floor.
        want_ops: also return per-operator arrays under ``ops_prefill``/``ops_decode`` (``X + (n_ops,)``).
        float_dtype: 'fp16' or 'bf16' to pin the 16-bit activation format (default: the faster unit).
        runtime: software-stack profile (object, name or path; ``None``: ``default``, no terms), applied
            to every configuration; ignored with ``ideal``.
        kernel: kernel names broadcastable to ``X`` (e.g. measured rows' ``kernel``); ``None``/'' entries
            (or ``kernel=None``) take the kernel the profile runs for that weight format.
        prefill_kernel: the kernel of the prefill phase, like ``kernel``; ``None``/'' entries: the decode
            kernel, or for quantized weights on a kernel of :data:`hwmodels.runtime.PREFILL_ON_DENSE_COPY`
            the dense kernel on a 16-bit dequantized copy (``codesign measure --prefill auto``), whose bytes
            count in ``weight_bytes`` and ``peak_memory_bytes``.

    Returns:
        dict of arrays of shape ``X`` keyed by :data:`OUTPUTS` (``compute_dtype``/``attn_dtype`` are
        indices into ``dtypes``; the dict also holds ``dtypes``, ``spec_names``, ``model_names`` and
        ``runtime``).
    """
    S, M = spec_table(_as_specs(specs), float_dtype), shape_table(_as_shapes(shapes))
    profile = load_runtime(None if ideal else runtime)
    R, (kern, pkern) = _kernels(profile, kernel, prefill_kernel)
    args = [np.asarray(x) for x in (spec_index, model_index, wbits, group_size, abits, kvbits, batch, prompt_len,
                                    gen_len, sym, kern, pkern)]
    shape = np.broadcast_shapes(*(x.shape for x in args))
    flat = [np.broadcast_to(x, shape).reshape(-1) for x in args]
    si, mi = flat[0].astype(np.int64), flat[1].astype(np.int64)
    ints = [x.astype(np.int64) for x in flat[2:9]]
    sym_, kern_, pkern_ = flat[9].astype(bool), flat[10].astype(np.int64), flat[11].astype(np.int64)
    if np.any((si < 0) | (si >= len(S.names))) or np.any((mi < 0) | (mi >= len(M.names))):
        raise ConfigError("spec_index/model_index out of range of the specs/shapes given")
    _validate(*ints)
    w_pre, kern_pre, copy = _phase_kernels(R, ints[0], kern_, pkern_) if not ideal else (ints[0], kern_, None)
    split = not ideal and (np.any(w_pre != ints[0]) or np.any(kern_pre != kern_))
    n = si.size
    parts = []
    for lo in range(0, max(n, 1), CHUNK):
        sl = slice(lo, lo + CHUNK)
        rest = [x[sl] for x in ints[1:]]
        part = _core(S, M, R, si[sl], mi[sl], ints[0][sl], *rest, sym_[sl], kern_[sl], ideal, want_ops)
        if split:
            pre = _core(S, M, R, si[sl], mi[sl], w_pre[sl], *rest, sym_[sl], kern_pre[sl], ideal, want_ops)
            part = _merge_prefill(part, pre, copy[sl], ints[6][sl].astype(float), S.capacity[si[sl]])
        part.pop("_linear_bytes")
        parts.append(part)
    out: dict[str, Any] = {}
    for k in parts[0]:
        if isinstance(parts[0][k], dict):
            out[k] = {kk: np.concatenate([pp[k][kk] for pp in parts]).reshape(shape + (len(OPS),))
                      for kk in parts[0][k]}
        else:
            out[k] = np.concatenate([pp[k] for pp in parts]).reshape(shape)
    out["dtypes"] = S.dtypes + ["vector"]
    out["spec_names"], out["model_names"], out["runtime"] = S.names, M.names, profile.name
    return out


def _kernels(profile: RuntimeProfile, *kernels) -> tuple[RuntimeTable, list[np.ndarray]]:
    """The profile's table and kernel indices of each array of kernel names in ``kernels`` (``None``, or
    ``None``/'' entries: -1, the profile's choice)."""
    arrays = [None if k is None else np.asarray(k, dtype=object) for k in kernels]
    uniq = sorted({str(n) for a in arrays if a is not None for n in a.reshape(-1) if isinstance(n, str) and n})
    for n in uniq:
        if n not in KERNELS and n not in profile.kernels:
            raise ConfigError(f"kernel {n!r} is not allowed (known: {', '.join(KERNELS)}; or declare it in the "
                              f"runtime profile {profile.name!r})")
    R = runtime_table(profile, tuple(n for n in uniq if n not in profile.kernels))
    return R, [np.asarray(-1) if a is None else R.kernel_index(list(a.reshape(-1))).reshape(a.shape)
               for a in arrays]


GRID_AXES = ["spec", "model", "wbits", "group_size", "abits", "kvbits", "batch", "prompt_len", "gen_len"]


@dataclass
class Grid:
    """Results of :func:`evaluate_grid`: ``data[name]`` has one axis per entry of ``axes`` (in order)."""

    axes: dict[str, list]
    data: dict[str, np.ndarray]
    dtypes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def to_frame(self):
        """One row per configuration (pandas DataFrame), axes as columns."""
        import pandas as pd

        idx = np.indices(self.shape).reshape(len(self.axes), -1)
        cols = {name: np.asarray(vals, dtype=object)[idx[i]] for i, (name, vals) in enumerate(self.axes.items())}
        for k, v in self.data.items():
            cols[k] = v.reshape(-1)
        df = pd.DataFrame(cols)
        names = np.asarray(self.dtypes, dtype=object)
        for k in ("compute_dtype", "attn_dtype", "head_dtype"):
            if k in df:
                df[k] = names[df[k].to_numpy(dtype=int)]
        return df


def evaluate_grid(specs, shapes, wbits=(16,), group_size=(128,), abits=(16,), kvbits=(16,), batch=(1,),
                  prompt_len=(512,), gen_len=(128,), *, sym=False, ideal=False, float_dtype: str | None = None,
                  runtime=None, kernel: str | None = None, prefill_kernel: str | None = None) -> Grid:
    """Evaluate the outer product specs x shapes x wbits x group_size x abits x kvbits x batch x
    prompt_len x gen_len in one vectorized pass under one runtime profile (``kernel``: the kernel of
    the linears; default: the profile's per format; ``prefill_kernel``: see :func:`evaluate_points`).
    Every output array has shape
    ``(n_specs, n_models, n_wbits, n_groups, n_abits, n_kvbits, n_batch, n_prompt, n_gen)``."""
    specs_l, shapes_l = _as_specs(specs), _as_shapes(shapes)
    values = [np.atleast_1d(np.asarray(v)).reshape(-1) for v in (wbits, group_size, abits, kvbits, batch,
                                                                   prompt_len, gen_len)]
    axes_vals = [np.arange(len(specs_l)), np.arange(len(shapes_l))] + values
    nd = len(axes_vals)
    shaped = [v.reshape([-1 if i == j else 1 for j in range(nd)]) for i, v in enumerate(axes_vals)]
    res = evaluate_points(specs_l, shapes_l, spec_index=shaped[0], model_index=shaped[1], wbits=shaped[2],
                          group_size=shaped[3], abits=shaped[4], kvbits=shaped[5], batch=shaped[6],
                          prompt_len=shaped[7], gen_len=shaped[8], sym=sym, ideal=ideal, float_dtype=float_dtype,
                          runtime=runtime, kernel=kernel, prefill_kernel=prefill_kernel)
    axes = {"spec": [s.name for s in specs_l], "model": [m.name for m in shapes_l]}
    axes.update({name: [int(x) for x in v] for name, v in zip(GRID_AXES[2:], values)})
    data = {k: np.broadcast_to(res[k], tuple(len(v) for v in axes.values())) for k in OUTPUTS}
    return Grid(axes=axes, data=data, dtypes=res["dtypes"])
