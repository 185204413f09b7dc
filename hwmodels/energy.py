"""Default energy and area per operation: Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014, 45 nm table, with a stated rule to scale it to a spec's process node.

Table (45 nm, 0.9 V), energy in pJ and area in um^2 per operation:

=================  ========  =========
operation          energy    area
=================  ========  =========
8b int add         0.03      36
32b int add        0.1       137
8b int mult        0.2       282
32b int mult       3.1       3495
16b fp add         0.4       1360
16b fp mult        1.1       1640
32b fp add         0.9       4184
32b fp mult        3.7       7700
SRAM 64b read      10 (8 KB), 20 (32 KB), 100 (1 MB)
DRAM 64b access    1300-2600
=================  ========  =========

One *op* is one FLOP (a multiply-accumulate is two ops), so per-op energy is half a MAC:
``(mult + add) / 2``. Integer MACs accumulate in 32 bits. Multipliers narrower than the table's scale
with the product of operand widths (array multiplier): ``int-n mult = 0.2 pJ * (n/8)^2``; a mixed
``w{W}a16`` unit multiplies a W-bit integer by an fp16 value at ``1.1 pJ * W/16`` and adds in fp16.
Vector work (norms, softmax, dequantization) is charged at fp16 op cost.

Process scaling rule: dynamic energy is C*V^2 and below 45 nm supply voltage barely scales, so
energy per op and per SRAM byte scale linearly with the feature size, ``E(node) = E45 * node/45``;
logic area scales with its square, ``A(node) = A45 * (node/45)^2``. DRAM energy per byte is
interface-dominated and is not scaled: specs give ``energy.pj_per_byte_dram`` for their memory
technology (HBM ~3.9 pJ/bit, GDDR6 ~7 pJ/bit, LPDDR5 ~5 pJ/bit) or get the table's 250 pJ/byte
(2 nJ per 64-bit access). A spec without ``process_nm`` is taken at 45 nm (no scaling).
"""

from __future__ import annotations

from hwmodels.dtypes import DType, parse_dtype

REFERENCE_NM = 45.0

# Horowitz ISSCC 2014, 45 nm (pJ).
_INT8_ADD, _INT32_ADD, _INT8_MULT = 0.03, 0.1, 0.2
_FP16_ADD, _FP16_MULT, _FP32_ADD, _FP32_MULT = 0.4, 1.1, 0.9, 3.7
# um^2 at 45 nm.
_A_INT8_MULT, _A_INT32_ADD, _A_FP16_ADD, _A_FP16_MULT = 282.0, 137.0, 1360.0, 1640.0
_A_FP32_ADD, _A_FP32_MULT = 4184.0, 7700.0

DRAM_PJ_PER_BYTE = 2000.0 / 8  # 1.3-2.6 nJ per 64-bit access; midpoint ~2 nJ
SRAM_PJ_PER_BYTE = 100.0 / 8  # 1 MB array: 100 pJ per 64-bit read (on-chip buffers are MB-scale)
VECTOR_PJ_PER_OP = (_FP16_MULT + _FP16_ADD) / 2


def _mult_add(dt: DType) -> tuple[float, float, float, float]:
    """(mult pJ, add pJ, mult um^2, add um^2) at 45 nm for one MAC of datatype ``dt``."""
    if dt.kind == "float":
        if dt.name == "fp32":
            return _FP32_MULT, _FP32_ADD, _A_FP32_MULT, _A_FP32_ADD
        if dt.name == "tf32":  # fp16-class mantissa multiplier, fp32 accumulate
            return _FP16_MULT, _FP32_ADD, _A_FP16_MULT, _A_FP32_ADD
        if dt.weight_bits >= 16:
            return _FP16_MULT, _FP16_ADD, _A_FP16_MULT, _A_FP16_ADD
        s = (dt.weight_bits / 8) ** 2  # fp8/6/4: int8-class multiplier, fp16 accumulate
        return _INT8_MULT * s, _FP16_ADD, _A_INT8_MULT * s, _A_FP16_ADD
    if dt.kind == "int":
        s = (dt.weight_bits / 8) ** 2
        return _INT8_MULT * s, _INT32_ADD, _A_INT8_MULT * s, _A_INT32_ADD
    # mixed w{W}a{A}
    if dt.act_bits >= 16:
        s = dt.weight_bits / 16
        return _FP16_MULT * s, _FP16_ADD, _A_FP16_MULT * s, _A_FP16_ADD
    s = dt.weight_bits * dt.act_bits / 64
    return _INT8_MULT * s, _INT32_ADD, _A_INT8_MULT * s, _A_INT32_ADD


def energy_scale(process_nm: float | None) -> float:
    return 1.0 if not process_nm else float(process_nm) / REFERENCE_NM


def area_scale(process_nm: float | None) -> float:
    return 1.0 if not process_nm else (float(process_nm) / REFERENCE_NM) ** 2


def default_pj_per_op(dtype: str, process_nm: float | None = None) -> float:
    """Energy of one op (half a MAC) in ``dtype`` at ``process_nm`` (see module rule)."""
    mult, add, _, _ = _mult_add(parse_dtype(dtype))
    return (mult + add) / 2 * energy_scale(process_nm)


def default_mm2_per_mac(dtype: str, process_nm: float | None = None) -> float:
    """Arithmetic area of one MAC unit in ``dtype`` (multiplier + adder, no wiring), mm^2."""
    _, _, am, aa = _mult_add(parse_dtype(dtype))
    return (am + aa) * 1e-6 * area_scale(process_nm)
