"""CPU kernels: torch's packed weight-only matmuls (``aten._weight_int4pack_mm_for_cpu`` and
``aten._weight_int8pack_mm``).

Both ops are vectorized for bfloat16 activations only; in float32 and float16 they run scalar
loops, 5-20x slower than a dense matmul, yet still 5-8x faster than dequantizing the whole weight
per call (``experiments/kernel_speed/bench.py``), so ``auto`` uses them in every dtype.

``_weight_int8pack_mm`` takes one scale per output channel. A grouped 8-bit variant (``w8g128``)
runs on ``aten-int4pack-x2-cpu`` (``auto``): each 8-bit weight split into two 4-bit halves,
``q = 16·hi + lo``, two int4 calls that read the same 8 bits per weight; the zero terms are rounded
to the activation dtype like the scales, and the outputs match the dequantized reference as closely
as the exact path (relative error ~3e-3 in bfloat16, the output's own rounding). Or, forced, on
``aten-int8pack-grouped-cpu``: one ``_weight_int8pack_mm`` call per group with that group's scales,
partial products summed in float32 (exact per-group execution), as fast on one thread but 32-86
parallel regions per linear, which collapse when other processes hold a core (0.03x dense on
2 busy cores, ``experiments/kernel_speed``). Neither re-quantizes the weight to per-channel scales.

All four are GEMV kernels: at 128 rows and more they are 2.5-5x slower than a dense bf16 GEMM (they
re-expand the weight per block of rows), so ``prefill='auto'`` runs prefill calls on a dense copy of the
dequantized weight (:data:`hwmodels.runtime.PREFILL_ON_DENSE_COPY`).
"""

from __future__ import annotations

import torch

from codesign.quantize.grid import QuantizedWeight
from codesign.quantize.kernels.base import (PackedLinear, WeightLayout, per_tile, register_kernel, tile_group,
                                            tinygemm_scales_zeros)

#: Group sizes ``_weight_int4pack_mm_for_cpu`` accepts.
INT4_GROUPS = (32, 64, 128, 256)


def _int4_unsupported(cls, layout: WeightLayout) -> str | None:
    if tile_group(layout, INT4_GROUPS) is None:
        return (f"{cls.name} needs a group size in {list(INT4_GROUPS)} dividing both the group width "
                f"{layout.group_width} and the input width {layout.in_features}")
    return None


def _int4_pack_cpu(q: torch.Tensor) -> torch.Tensor:
    """``(out, in)`` integers in [0, 16) -> the op's packed layout."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 2)


@register_kernel
class Int4PackCpu(PackedLinear):
    """4-bit weights, groups of 32-256 (larger groups and per-channel scales repeat per 256 columns)."""

    name = "aten-int4pack-cpu"
    op = "torch.ops.aten._weight_int4pack_mm_for_cpu"
    device, bits, priority = "cpu", (4,), 10

    @classmethod
    def unsupported(cls, layout, dtype, device):
        return super().unsupported(layout, dtype, device) or _int4_unsupported(cls, layout)

    def _pack(self, qw: QuantizedWeight, layout: WeightLayout) -> None:
        self.tile = tile_group(layout, INT4_GROUPS)
        self.register_buffer("packed", _int4_pack_cpu(qw.qint))
        self.register_buffer("scales_zeros", tinygemm_scales_zeros(*per_tile(qw, self.tile), self.dtype))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, self.tile, self.scales_zeros)


def _int8_offsets(qw: QuantizedWeight, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``q - 128`` as int8 ``(out, in)``, the scales ``(n_groups, out)`` in ``dtype`` and the zero
    correction ``s * (128 - zero)`` ``(n_groups, out)`` in float32 (None when every zero is 128):
    ``s * (q - zero) = s * (q - 128) + s * (128 - zero)``, so ``y = int8mm(x, q - 128, s) +
    (Σ_group x) · s (128 - zero)`` exactly."""
    q8 = (qw.qint - 128).to(torch.int8)
    s = qw.scales.float()
    corr = s * (128 - qw.zeros.float())
    return q8, s.to(dtype), None if bool((corr == 0).all()) else corr


@register_kernel
class Int8PackCpu(PackedLinear):
    """8-bit weights with one scale per output channel (``w8gpc``, or a group as wide as the row)."""

    name = "aten-int8pack-cpu"
    op = "torch.ops.aten._weight_int8pack_mm"
    device, bits, priority = "cpu", (8,), 20

    @classmethod
    def unsupported(cls, layout, dtype, device):
        why = super().unsupported(layout, dtype, device)
        if why is None and layout.group_width < layout.in_features:
            why = (f"{cls.name} takes one scale per output channel; this layout has groups of "
                   f"{layout.group_width} (re-quantizing to per-channel scales would be another variant)")
        return why

    def _pack(self, qw: QuantizedWeight, layout: WeightLayout) -> None:
        q8, s, corr = _int8_offsets(qw, self.dtype)
        self.register_buffer("q8", q8.contiguous())
        self.register_buffer("scales", s[0].contiguous())
        self.register_buffer("corr", None if corr is None else corr[0].contiguous())

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.aten._weight_int8pack_mm(x, self.q8, self.scales)
        if self.corr is None:
            return y
        return (y.float() + x.float().sum(-1, keepdim=True) * self.corr).to(self.dtype)


@register_kernel
class Int8PackGroupedCpu(PackedLinear):
    """8-bit weights with grouped scales: ``_weight_int8pack_mm`` on each group's columns with that
    group's scales, the partial products summed in float32 (exact per-group execution)."""

    name = "aten-int8pack-grouped-cpu"
    op = "torch.ops.aten._weight_int8pack_mm (one call per group)"
    device, bits, priority = "cpu", (8,), 40

    def _pack(self, qw: QuantizedWeight, layout: WeightLayout) -> None:
        q8, s, corr = _int8_offsets(qw, self.dtype)
        out, width = q8.shape
        self.gs = layout.group_width
        self.full = width // self.gs  # whole groups; a shorter last group (576 = 4*128 + 64) is the tail
        body = q8[:, :self.full * self.gs].reshape(out, self.full, self.gs).transpose(0, 1).contiguous()
        self.register_buffer("blocks", body)  # (full, out, gs)
        self.register_buffer("tail", q8[:, self.full * self.gs:].contiguous() if width % self.gs else None)
        self.register_buffer("scales", s.contiguous())  # (n_groups, out)
        self.register_buffer("corr", corr)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        m, cut = x.shape[0], self.full * self.gs
        xb = x[:, :cut].reshape(m, self.full, self.gs).transpose(0, 1).contiguous()  # (full, M, gs)
        acc = torch.zeros(m, self.out_features, dtype=torch.float32, device=x.device)
        for j in range(self.full):
            acc += torch.ops.aten._weight_int8pack_mm(xb[j], self.blocks[j], self.scales[j])
        sums = [xb.float().sum(-1)]  # (full, M) per-group input sums, for the zero correction
        if self.tail is not None:
            xt = x[:, cut:].contiguous()
            acc += torch.ops.aten._weight_int8pack_mm(xt, self.tail, self.scales[self.full])
            sums.append(xt.float().sum(-1, keepdim=True).T)
        if self.corr is not None:
            acc += torch.cat(sums).T @ self.corr
        return acc.to(self.dtype)


@register_kernel
class Int4PackX2Cpu(PackedLinear):
    """8-bit weights as two 4-bit halves (``q = 16·hi + lo``, ``zero = 16·zh + zl``):
    ``s (q - zero) = 16s (hi - zh) + s (lo - zl)``, two ``_weight_int4pack_mm_for_cpu`` calls.
    Reads the same 8 bits per weight; the zero terms ``16s (8 - zh)`` are rounded to the activation
    dtype (up to ~s/4 per weight in bfloat16, within the stated tolerance)."""

    name = "aten-int4pack-x2-cpu"
    op = "torch.ops.aten._weight_int4pack_mm_for_cpu (x2, high and low nibbles)"
    device, bits, priority = "cpu", (8,), 30

    @classmethod
    def unsupported(cls, layout, dtype, device):
        return super().unsupported(layout, dtype, device) or _int4_unsupported(cls, layout)

    def _pack(self, qw: QuantizedWeight, layout: WeightLayout) -> None:
        self.tile = tile_group(layout, INT4_GROUPS)
        s, z = per_tile(qw, self.tile)
        self.register_buffer("hi", _int4_pack_cpu(qw.qint >> 4))
        self.register_buffer("lo", _int4_pack_cpu(qw.qint & 15))
        self.register_buffer("sz_hi", tinygemm_scales_zeros(16 * s, torch.div(z, 16, rounding_mode="floor"),
                                                            self.dtype))
        self.register_buffer("sz_lo", tinygemm_scales_zeros(s, z.remainder(16), self.dtype))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        hi = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.hi, self.tile, self.sz_hi)
        lo = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.lo, self.tile, self.sz_lo)
        return (hi.float() + lo.float()).to(self.dtype)
