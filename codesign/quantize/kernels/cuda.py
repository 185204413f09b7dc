"""CUDA kernels: torch's tinygemm int4 matmul and GPTQModel's Marlin.

Written against the documented signatures (torch 2.5+ ``_convert_weight_to_int4pack`` takes
``(out, in/2)`` uint8 with two weights per byte, high nibble first, as torchao packs it; GPTQModel's
``MarlinLinear`` takes GPTQ-layout ``qweight``/``scales``/``g_idx`` and repacks in ``post_init``).
They need a GPU: tests skip them where CUDA is absent, and ``auto`` never picks them on CPU.

torchao's Marlin kernels were 2:4-sparse (``marlin_24_gemm``) or W4A8 (``marlin_qqq_gemm``), neither
runs a dense W4A16 variant exactly, and torchao 0.16+ ships none: there is no ``marlin-torchao``.
"""

from __future__ import annotations

import torch

from codesign.quantize.grid import QuantizedWeight
from codesign.quantize.kernels.base import (PackedLinear, WeightLayout, per_tile, register_kernel, tile_group,
                                            tinygemm_scales_zeros)
from codesign.quantize.packing import pack

#: Group sizes tinygemm accepts, and its inner K tiles (largest that divides the input width).
TINYGEMM_GROUPS = (32, 64, 128, 256)
TINYGEMM_K_TILES = (8, 4, 2)


def _capability(device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(torch.device(device))


def _k_tiles(in_features: int) -> int | None:
    return next((t for t in TINYGEMM_K_TILES if in_features % (16 * t) == 0), None)


@register_kernel
class Int4PackCuda(PackedLinear):
    """tinygemm: 4-bit weights, bfloat16 activations, groups of 32-256, compute capability 8.0+."""

    name = "aten-int4pack-cuda"
    op = "torch.ops.aten._weight_int4pack_mm"
    device, bits, priority = "cuda", (4,), 20
    dtypes = (torch.bfloat16,)

    @classmethod
    def unsupported(cls, layout, dtype, device):
        why = super().unsupported(layout, dtype, device)
        if why:
            return why
        if tile_group(layout, TINYGEMM_GROUPS) is None:
            return (f"{cls.name} needs a group size in {list(TINYGEMM_GROUPS)} dividing the group width "
                    f"{layout.group_width} and the input width {layout.in_features}")
        if _k_tiles(layout.in_features) is None or layout.out_features % 8:
            return f"{cls.name} needs the input width a multiple of 32 and the output width of 8"
        if _capability(device) < (8, 0):
            return f"{cls.name} needs compute capability 8.0+ (bfloat16 tensor cores)"
        return None

    def _pack(self, qw: QuantizedWeight, layout: WeightLayout) -> None:
        self.tile = tile_group(layout, TINYGEMM_GROUPS)
        q = qw.qint.to(torch.int32)
        u8 = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8).contiguous()  # (out, in/2), high nibble first
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack(u8, _k_tiles(self.in_features)))
        self.register_buffer("scales_zeros", tinygemm_scales_zeros(*per_tile(qw, self.tile), self.dtype))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm(x, self.packed, self.tile, self.scales_zeros)


def _marlin_class():
    """GPTQModel's Marlin linear (renamed across releases), or the ImportError."""
    try:
        from gptqmodel.nn_modules.qlinear import marlin
    except Exception as e:  # noqa: BLE001  any failure to import means "not available", with the reason
        return e
    cls = getattr(marlin, "MarlinLinear", None) or getattr(marlin, "MarlinQuantLinear", None)
    return cls or ImportError("gptqmodel.nn_modules.qlinear.marlin has no MarlinLinear")


@register_kernel
class MarlinGptqmodel(PackedLinear):
    """Marlin (GPTQModel): symmetric 4/8-bit weights (zero ``2**(bits-1)``), groups of 32/64/128
    or per channel, act-order handled by the kernel, float16/bfloat16 activations."""

    name = "marlin-gptqmodel"
    op = "gptqmodel MarlinLinear (gptq_marlin_gemm)"
    device, bits, priority, handles_act_order = "cuda", (4, 8), 10, True
    dtypes = (torch.float16, torch.bfloat16)
    GROUPS = (-1, 32, 64, 128)

    @classmethod
    def unsupported(cls, layout, dtype, device):
        why = super().unsupported(layout, dtype, device)
        if why:
            return why
        if not layout.sym:
            return f"{cls.name} runs symmetric weights only (this {layout.name} has zero points)"
        if layout.group_size not in cls.GROUPS:
            return f"{cls.name} runs group sizes {list(cls.GROUPS)}, not {layout.group_size}"
        if layout.in_features % 128 or layout.out_features % 64:
            return f"{cls.name} needs the input width a multiple of 128 and the output width of 64"
        if _capability(device) < (8, 0):
            return f"{cls.name} needs compute capability 8.0+"
        found = _marlin_class()
        if isinstance(found, Exception):
            return f"{cls.name} needs GPTQModel with its Marlin kernels (pip install gptqmodel): {found}"
        return None

    def _pack(self, qw: QuantizedWeight, layout: WeightLayout) -> None:
        dev = qw.qint.device
        inner = _marlin_class()(bits=qw.bits, group_size=qw.group_size, desc_act=layout.act_order, sym=True,
                                in_features=self.in_features, out_features=self.out_features, bias=False,
                                pack_dtype=torch.int32, dtype=self.dtype).to(dev)
        with torch.no_grad():
            inner.qweight.data = pack(qw.qint.T, qw.bits, dim=0).to(dev)  # GPTQ layout (in*bits/32, out)
            inner.scales.data = qw.scales.to(dev, self.dtype).contiguous()
            inner.g_idx.data = qw.g_idx.to(dev, torch.int32).contiguous()
            inner.qzeros.data = torch.zeros_like(inner.qzeros)  # symmetric: Marlin ignores zero points
        inner.post_init()  # repacks qweight and permutes scales into Marlin's tiles
        self.inner = inner

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)
