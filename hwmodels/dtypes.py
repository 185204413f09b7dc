"""Datatype vocabulary of compute units, and which unit a (weight bits, activation bits) matmul runs on.

A datatype names what a compute unit multiplies natively:

- floats ``fp32, tf32, fp16, bf16, fp8, fp6, fp4`` (both operands in that format);
- integers ``int8, int4, int3, int2, int1`` (both operands integers of that width);
- mixed weight-only units ``w{W}a{A}`` (e.g. ``w4a16``: W-bit integer weights times A-bit activations,
  as in bit-serial / LUT-based multi-precision accelerators).

A spec lists the datatypes its units support in ``compute_tflops``. A datatype missing there means
the hardware cannot multiply in it: a weight-only quantized matmul then runs on a wider unit and the
weights are converted (dequantized) first, which :mod:`hwmodels.roofline` charges as vector work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FLOAT_BITS = {"fp32": 32, "tf32": 19, "fp16": 16, "bf16": 16, "fp8": 8, "fp6": 6, "fp4": 4}
INT_BITS = {"int8": 8, "int4": 4, "int3": 3, "int2": 2, "int1": 1}
_MIXED = re.compile(r"^w(\d{1,2})a(\d{1,2})$")

#: Tie-break order when two units are equally fast (earlier wins).
PREFERENCE = ["fp16", "bf16", "int8", "int4", "int3", "int2", "int1", "fp8", "fp6", "fp4", "tf32", "fp32"]

#: Largest bit width the lookup tables cover (fp32 weights / activations).
MAX_BITS = 32


@dataclass(frozen=True)
class DType:
    """A compute datatype: ``kind`` in {'float', 'int', 'mixed'}; operand widths in bits."""

    name: str
    kind: str
    weight_bits: int
    act_bits: int


def allowed_dtypes_text() -> str:
    return ", ".join(list(FLOAT_BITS) + list(INT_BITS)) + ", or w<W>a<A> (weight-only units, e.g. w4a16, w3a16, w8a8)"


def parse_dtype(name: str) -> DType:
    """Parse a datatype name; raise ``ValueError`` naming the allowed ones."""
    key = str(name).strip().lower()
    if key in FLOAT_BITS:
        return DType(key, "float", FLOAT_BITS[key], FLOAT_BITS[key])
    if key in INT_BITS:
        return DType(key, "int", INT_BITS[key], INT_BITS[key])
    m = _MIXED.match(key)
    if m:
        w, a = int(m.group(1)), int(m.group(2))
        if 1 <= w <= 16 and 1 <= a <= 32:
            return DType(key, "mixed", w, a)
    raise ValueError(f"unknown datatype {name!r} (allowed: {allowed_dtypes_text()})")


def candidate_cost(dt: DType, wbits: int, abits: int, tflops: float) -> tuple | None:
    """Sort key of unit ``dt`` for a matmul of ``wbits`` weights and ``abits`` activations.

    ``None`` when the unit cannot take the operands. Lower keys are better: native weight format
    first (no conversion), then throughput, then :data:`PREFERENCE`.
    """
    if dt.weight_bits < wbits or dt.act_bits < abits:
        return None
    needs_conversion = converts(dt, wbits)
    pref = PREFERENCE.index(dt.name) if dt.name in PREFERENCE else len(PREFERENCE)
    return (needs_conversion, -tflops, pref, dt.name)


def converts(dt: DType, wbits: int) -> bool:
    """Whether ``wbits``-bit weights must be converted before unit ``dt`` can multiply them.

    Float weights (>= 16 bits) feed any float unit at least as wide; integer weights are native only
    on integer/mixed units of exactly their width.
    """
    if wbits >= 16:
        return not (dt.kind == "float" and dt.weight_bits >= min(wbits, 16))
    return not (dt.kind in ("int", "mixed") and dt.weight_bits == wbits)
