"""What every kernel shares: the layout of a quantized weight, the :class:`PackedLinear` base class
and the registry.

A kernel is a :class:`PackedLinear` subclass decorated with :func:`register_kernel`. It states the
device it runs on, the widths it executes, the activation dtypes it runs (and those where it is
fast enough to be chosen automatically), its tolerance against the dequantized reference, and
why it cannot run a given layout (:meth:`PackedLinear.unsupported`). It converts a
:class:`~codesign.quantize.grid.QuantizedWeight` into its own buffers once
(:meth:`PackedLinear.from_quantized`) and runs ``(M, in) -> (M, out)`` (:meth:`PackedLinear.matmul`).

Every kernel computes ``y = x Ŵᵀ + b`` with ``Ŵ = scale * (q - zero)`` per group: the variant's
own integers, scales and zeros. No kernel re-quantizes a weight to a grid it happens to support.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from codesign.config import ConfigError
from codesign.quantize.grid import QuantizedWeight, contiguous_g_idx
from hwmodels.runtime import DENSE_KERNEL, PREFILL_ON_DENSE_COPY

_KERNELS: dict[str, type["PackedLinear"]] = {}
# DENSE_KERNEL (hwmodels.runtime): the dense path (``F.linear`` in the row's dtype), for rows of unquantized
# models and prefill on a dense copy.


@dataclass(frozen=True)
class WeightLayout:
    """What a kernel must know about a quantized ``(out, in)`` weight to say whether it runs it.

    ``act_order``: ``g_idx`` is not the contiguous layout (GPTQ's act-order permutes columns);
    ``equal_groups``: every group but the last holds ``group_size`` columns, so sorting the
    columns by group gives the contiguous layout (true for every layout codesign writes).
    """

    bits: int
    group_size: int  # -1: one group per output channel
    sym: bool
    in_features: int
    out_features: int
    act_order: bool = False
    equal_groups: bool = True

    @classmethod
    def of(cls, qw: QuantizedWeight) -> "WeightLayout":
        out, width = qw.shape
        plain = contiguous_g_idx(width, qw.group_size, qw.g_idx.device)
        act_order = not torch.equal(qw.g_idx.to(torch.int32), plain)
        equal = True
        if act_order:
            equal = torch.equal(torch.sort(qw.g_idx.to(torch.int32)).values, plain)
        return cls(qw.bits, qw.group_size, qw.sym, width, out, act_order, equal)

    @property
    def name(self) -> str:
        """The weight format, as ``codesign measure --variant`` spells it (``w4g128``)."""
        return f"w{self.bits}g{'pc' if self.group_size == -1 else self.group_size}" + ("-sym" if self.sym else "")

    @property
    def group_width(self) -> int:
        """Columns per group (the input width for per-channel scales)."""
        return self.in_features if self.group_size == -1 else self.group_size


def sorted_by_group(qw: QuantizedWeight, layout: WeightLayout | None = None) -> tuple[QuantizedWeight, torch.Tensor | None]:
    """``qw`` with its input columns sorted by group (the contiguous layout) and the permutation
    ``perm`` ``(in,)`` such that ``x[:, perm] @ Ŵ_sortedᵀ == x @ Ŵᵀ``; ``perm`` is None when the
    layout is already contiguous. Kernels that need contiguous groups run act-order weights so."""
    if not (layout or WeightLayout.of(qw)).act_order:
        return qw, None
    perm = torch.argsort(qw.g_idx.to(torch.int64), stable=True)
    return QuantizedWeight(qw.qint[:, perm].contiguous(), qw.scales, qw.zeros, qw.g_idx[perm].contiguous(),
                           qw.bits, qw.group_size, qw.sym), perm


def tile_group(layout: WeightLayout, allowed: tuple[int, ...]) -> int | None:
    """The largest group size in ``allowed`` that divides both the layout's group width and the
    input width: a kernel with a fixed set of group sizes runs a layout exactly by giving each of
    its sub-groups the scale and zero of the group it lies in (per-channel scales repeat along the
    row; SmolLM2's 576-wide layers at group 128 run as groups of 64). None when none fits."""
    for g in sorted(allowed, reverse=True):
        if layout.group_width % g == 0 and layout.in_features % g == 0:
            return g
    return None


def per_tile(qw: QuantizedWeight, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales and zeros ``(in / tile, out)`` (float32) of every ``tile``-column sub-group of a
    contiguous layout: each sub-group lies inside one group and takes that group's parameters."""
    g = qw.g_idx[::tile].long()
    return qw.scales.float()[g], qw.zeros.float()[g]


class PackedLinear(nn.Module):
    """A linear layer whose matmul runs on one kernel (see module docstring).

    Subclasses set the class attributes, implement :meth:`_pack` (buffers from a contiguous
    :class:`QuantizedWeight`) and :meth:`matmul`, and may extend :meth:`unsupported`.
    """

    #: Registry name (the ``kernel`` column of measurement rows).
    name: ClassVar[str] = ""
    #: What it calls, for the README and ``--help``.
    op: ClassVar[str] = ""
    #: ``cpu``, ``cuda`` or ``any``.
    device: ClassVar[str] = "any"
    #: Weight widths it executes.
    bits: ClassVar[tuple[int, ...]] = ()
    #: Activation dtypes it runs.
    dtypes: ClassVar[tuple[torch.dtype, ...]] = (torch.float32, torch.bfloat16, torch.float16)
    #: ``auto`` tries kernels of a device in increasing priority.
    priority: ClassVar[int] = 50
    #: Kernels that need contiguous groups get act-order weights with sorted columns and permute
    #: the input (:func:`sorted_by_group`); those that handle ``g_idx`` themselves set this.
    handles_act_order: ClassVar[bool] = False

    @classmethod
    def copies_for_prefill(cls) -> bool:
        """``prefill='auto'`` gives this kernel a dequantized dense copy for prefill: it is in
        :data:`hwmodels.runtime.PREFILL_ON_DENSE_COPY` (its op is a GEMV that gets slower than a dense
        GEMM once a call carries many rows), the set the analytical model prices prefill from."""
        return cls.name in PREFILL_ON_DENSE_COPY

    @classmethod
    def tolerance(cls, dtype: torch.dtype) -> float:
        """Largest ``max|y - y_ref| / max|y_ref|`` against ``x @ Ŵᵀ`` computed in float32 from the
        same (dtype-rounded) activations; tests hold every kernel to it."""
        return 1e-4 if dtype == torch.float32 else 2e-2

    @classmethod
    def unsupported(cls, layout: WeightLayout, dtype: torch.dtype, device: str | torch.device) -> str | None:
        """Why this kernel cannot run ``layout`` with ``dtype`` activations on ``device``; None if it can."""
        kind = torch.device(device).type
        if cls.device != "any" and kind != cls.device:
            return f"{cls.name} runs on {cls.device}, not {kind}"
        if layout.bits not in cls.bits:
            return f"{cls.name} runs {'/'.join(map(str, cls.bits))}-bit weights, not {layout.bits}-bit"
        if dtype not in cls.dtypes:
            return f"{cls.name} runs {_dtype_names(cls.dtypes)} activations, not {_dtype_names((dtype,))}"
        if layout.act_order and not layout.equal_groups and not cls.handles_act_order:
            return f"{cls.name} needs groups of equal size (this g_idx has unequal groups)"
        return None

    def __init__(self, in_features: int, out_features: int, dtype: torch.dtype):
        super().__init__()
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self.register_buffer("perm", None)  # input permutation for act-order weights
        self.register_buffer("bias", None)
        self.register_buffer("prefill_weight", None)  # (out, in) dequantized copy for the prefill phase

    @classmethod
    def from_quantized(cls, qw: QuantizedWeight, bias: torch.Tensor | None = None, *,
                       dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                       prefill: str = "packed") -> "PackedLinear":
        """A module running ``qw`` (+ ``bias``) on this kernel, its buffers on ``device``.

        ``prefill`` (see :data:`PREFILL_PATHS`): ``dequantized`` also keeps ``Ŵ`` as a dense
        ``(out, in)`` tensor in ``dtype``, dequantized once here, that calls carrying several
        positions per sequence (prefill) multiply with a dense GEMM; decode steps (one position)
        stay on the kernel. It costs the dense weight's memory (counted in a row's weight bytes).
        ``auto``: ``dequantized`` where :meth:`copies_for_prefill`, else ``packed``."""
        if prefill not in PREFILL_PATHS:
            raise ConfigError(f"--prefill: {prefill!r} (allowed: {', '.join(PREFILL_PATHS)})")
        out, width = qw.shape
        m, layout = cls(width, out, dtype), WeightLayout.of(qw)
        qw = QuantizedWeight(qw.qint.to(device), qw.scales.to(device), qw.zeros.to(device), qw.g_idx.to(device),
                             qw.bits, qw.group_size, qw.sym)
        if prefill == "dequantized" or (prefill == "auto" and cls.copies_for_prefill()):
            m.prefill_weight = dequantize_fast(qw, layout, dtype)
        if not cls.handles_act_order and layout.act_order:
            qw, m.perm = sorted_by_group(qw, layout)
            layout = dataclasses.replace(layout, act_order=False)
        m._pack(qw, layout)
        if bias is not None:
            m.bias = bias.detach().to(device=device, dtype=dtype).clone()
        return m

    def _pack(self, qw: QuantizedWeight, layout: WeightLayout) -> None:
        """Register the kernel's buffers for ``qw`` (on its device; contiguous groups unless
        :attr:`handles_act_order`), described by ``layout``."""
        raise NotImplementedError

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, in)`` contiguous activations in ``self.dtype`` -> ``(M, out)``."""
        raise NotImplementedError

    @property
    def prefill_kernel(self) -> str:
        """What multiplies a prefill call: the dense GEMM on the dequantized copy, or this kernel."""
        return self.name if self.prefill_weight is None else DENSE_KERNEL

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.dtype:
            raise TypeError(f"{self.name} was packed for {self.dtype} activations, got {x.dtype}")
        if self.prefill_weight is not None and x.dim() >= 3 and x.shape[-2] > 1:
            # (batch, positions, in) with several positions: prefill. One GEMM on the dense copy.
            return torch.nn.functional.linear(x, self.prefill_weight, self.bias)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.perm is not None:
            x2 = x2.index_select(1, self.perm)
        y = self.matmul(x2.contiguous())
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.name}, "
                f"prefill={self.prefill_kernel}, dtype={self.dtype}, act_order={self.perm is not None}, "
                f"bias={self.bias is not None}")


#: How quantized linears run prefill calls: ``packed`` (the decode kernel), ``dequantized`` (a dense
#: GEMM on a dequantized copy kept for it), ``auto`` (``dequantized`` for kernels whose op is slow
#: at many rows, see :meth:`PackedLinear.copies_for_prefill`).
PREFILL_PATHS = ("auto", "packed", "dequantized")


def dequantize_fast(qw: QuantizedWeight, layout: WeightLayout, dtype: torch.dtype) -> torch.Tensor:
    """``Ŵ = s (q - zero)`` ``(out, in)`` in ``dtype``, computed in float32 and rounded once (the
    reference the kernels are tested against). Contiguous layouts broadcast each group's scale and
    zero over its columns, 64 rows at a time (no ``(out, in)`` float32 temporaries)."""
    if layout.act_order or layout.in_features % layout.group_width:
        return qw.dequantize(dtype)
    out, width = qw.shape
    ng, gw = width // layout.group_width, layout.group_width
    w = torch.empty(out, width, dtype=dtype, device=qw.qint.device)
    s, z = qw.scales.float().T, qw.zeros.float().T  # (out, n_groups)
    for r in range(0, out, 64):
        q = qw.qint[r:r + 64].float().view(-1, ng, gw)
        w[r:r + 64] = ((q - z[r:r + 64, :, None]) * s[r:r + 64, :, None]).view(-1, width).to(dtype)
    return w


def _dtype_names(dtypes) -> str:
    return "/".join(str(d).removeprefix("torch.") for d in dtypes)


def register_kernel(cls: type[PackedLinear]) -> type[PackedLinear]:
    """Class decorator: make a kernel selectable by name and by ``auto``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no kernel name")
    _KERNELS[cls.name] = cls
    return cls


def tinygemm_scales_zeros(scales: torch.Tensor, zeros: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(n_tiles, out, 2)`` scales and zeros in tinygemm's convention ``w = (q - 8) * s + z_f``
    (torch's int4pack ops) for codesign's ``w = s * (q - zero)``: ``z_f = s * (8 - zero)``,
    computed in float32 and rounded once to ``dtype``. Inputs are ``(n_tiles, out)``."""
    s, z = scales.float(), zeros.float()
    return torch.stack([s, s * (8 - z)], dim=-1).to(dtype).contiguous()
