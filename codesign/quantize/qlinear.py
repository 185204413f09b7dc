"""``QuantLinear``: a linear layer holding a variant's packed checkpoint weights that it
dequantizes on every call (the ``dequant-matmul`` kernel, which runs every width on every
device), and :func:`replace_linears`, a fast RTN pass that swaps a model's decoder linears for
packed modules on the kernel :mod:`codesign.quantize.kernels` selects (for timing real-shape
models with random weights, where calibration would be meaningless)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codesign.config import ConfigError
from codesign.quantize.grid import QuantizedWeight, contiguous_g_idx
from codesign.quantize.kernels.base import PackedLinear, register_kernel
from codesign.quantize.packing import unpack


@register_kernel
class QuantLinear(PackedLinear):
    """``y = x Ŵᵀ + b`` with ``Ŵ`` stored packed: ``qweight`` ``(in*bits/32, out)`` int32,
    ``scales`` ``(n_groups, out)`` float16, ``zeros`` ``(n_groups, out)`` uint8, ``g_idx`` ``(in,)``.

    Forward unpacks and dequantizes the whole weight in the activations' dtype on every call, then
    runs ``F.linear`` (memory-light, not a fused kernel): the honest path for widths no kernel has.
    """

    name = "dequant-matmul"
    op = "unpack + dequantize per call, then torch.nn.functional.linear"
    device, bits, priority, handles_act_order = "any", (2, 3, 4, 5, 6, 8), 100, True

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int, ngroups: int,
                 bias: bool = False, sym: bool = False):
        nn.Module.__init__(self)
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.sym = bits, group_size, sym
        self.register_buffer("qweight", torch.zeros(in_features * bits // 32, out_features, dtype=torch.int32))
        self.register_buffer("scales", torch.zeros(ngroups, out_features, dtype=torch.float16))
        self.register_buffer("zeros", torch.zeros(ngroups, out_features, dtype=torch.uint8))
        self.register_buffer("g_idx", torch.zeros(in_features, dtype=torch.int32))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @property
    def prefill_kernel(self) -> str:
        return self.name  # every call dequantizes: prefill already runs a dense GEMM

    @classmethod
    def from_quantized(cls, qw: QuantizedWeight, bias: torch.Tensor | None = None, *, dtype: torch.dtype | None = None,
                       device: str | torch.device | None = None, prefill: str = "packed") -> "QuantLinear":
        """``dtype`` is unused (the weight is dequantized in each call's dtype); buffers go to ``device``;
        ``prefill`` changes nothing (every call already multiplies a dense weight)."""
        from codesign.quantize.kernels.base import PREFILL_PATHS

        if prefill not in PREFILL_PATHS:
            raise ConfigError(f"--prefill: {prefill!r} (allowed: {', '.join(PREFILL_PATHS)})")
        out, width = qw.shape
        m = cls(width, out, qw.bits, qw.group_size, qw.scales.shape[0], bias is not None, qw.sym)
        t = qw.to_tensors("w")
        m.qweight.copy_(t["w.qweight"])
        m.scales.copy_(t["w.scales"])
        m.zeros.copy_(t["w.qzeros_u8"])
        m.g_idx.copy_(t["w.g_idx"])
        if bias is not None:
            m.bias.data = bias.detach().float().clone()
        return m if device is None else m.to(device)

    def quantized(self) -> QuantizedWeight:
        q = unpack(self.qweight, self.bits, dim=0).T
        return QuantizedWeight(q, self.scales.float(), self.zeros.to(torch.int32), self.g_idx, self.bits,
                               self.group_size, self.sym)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The ``(out, in)`` float weight."""
        q = unpack(self.qweight, self.bits, dim=0)  # (in, out)
        ng, gs = self.scales.shape[0], self.in_features // self.scales.shape[0]
        if ng * gs == self.in_features and torch.equal(self.g_idx, contiguous_g_idx(self.in_features, gs, q.device)):
            # Contiguous equal groups: broadcast each group's scale and zero (no (in, out) gathers).
            s, z = self.scales.to(dtype)[:, None], self.zeros.to(dtype)[:, None]
            return ((q.view(ng, gs, -1).to(dtype) - z) * s).view(self.in_features, -1).T
        g = self.g_idx.long()
        s = self.scales[g].to(dtype)
        z = self.zeros[g].to(dtype)
        return ((q.to(dtype) - z) * s).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, bias={self.bias is not None}")


def set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def replace_linears(model: nn.Module, bits: int, group_size: int, sym: bool = False, progress: bool = False, *,
                    kernel: str = "auto", prefill: str = "packed"):
    """Swap every decoder linear of ``model`` for an RTN-quantized module on ``kernel`` (in place;
    ``auto``: the kernel :func:`~codesign.quantize.kernels.select_kernel` picks for the weight's
    device and the model's dtype), prefill calls on ``prefill``
    (:data:`~codesign.quantize.kernels.PREFILL_PATHS`). Returns the
    :class:`~codesign.quantize.kernels.KernelPlan`.

    Checks bits, group size and layout for the whole model before changing anything.
    """
    from tqdm.auto import tqdm

    from codesign.quantize.kernels import KernelPlan, WeightLayout, select_kernel
    from codesign.quantize.registry import check_bits, check_group_size
    from codesign.quantize.rtn import rtn_quantize
    from codesign.quantize.walker import get_weight, linear_widths, walk

    check_bits(bits)
    check_group_size(group_size, linear_widths(model))
    plan = KernelPlan()
    for layer in tqdm(walk(model), desc=f"rtn w{bits}", unit="layer", disable=not progress):
        for name, mod in layer.linears().items():
            w = get_weight(mod).detach()
            qw = rtn_quantize(w, bits, group_size, sym)
            k, why = select_kernel(WeightLayout.of(qw), w.device, w.dtype, kernel)
            new = k.from_quantized(qw, getattr(mod, "bias", None), dtype=w.dtype, device=w.device, prefill=prefill)
            set_module(model, name, new)
            plan.kernels[name] = k.name
            plan.prefill[name] = new.prefill_kernel
            if why:
                plan.reasons[name] = why
    return plan
