"""``QuantLinear``: a linear layer holding packed integer weights that it dequantizes on the fly,
and :func:`replace_linears`, a fast RTN pass that swaps a model's decoder linears for them
(for timing real-shape models with random weights, where calibration would be meaningless)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codesign.quantize.grid import QuantizedWeight
from codesign.quantize.packing import unpack


class QuantLinear(nn.Module):
    """``y = x Ŵᵀ + b`` with ``Ŵ`` stored packed: ``qweight`` ``(in*bits/32, out)`` int32,
    ``scales`` ``(n_groups, out)`` float16, ``zeros`` ``(n_groups, out)`` uint8, ``g_idx`` ``(in,)``.

    Forward unpacks and dequantizes the weight each call (memory-light, not a fused kernel).
    """

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int, ngroups: int,
                 bias: bool = False, sym: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.sym = bits, group_size, sym
        self.register_buffer("qweight", torch.zeros(in_features * bits // 32, out_features, dtype=torch.int32))
        self.register_buffer("scales", torch.zeros(ngroups, out_features, dtype=torch.float16))
        self.register_buffer("zeros", torch.zeros(ngroups, out_features, dtype=torch.uint8))
        self.register_buffer("g_idx", torch.zeros(in_features, dtype=torch.int32))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def from_quantized(cls, qw: QuantizedWeight, bias: torch.Tensor | None = None) -> "QuantLinear":
        out, width = qw.shape
        m = cls(width, out, qw.bits, qw.group_size, qw.scales.shape[0], bias is not None, qw.sym)
        t = qw.to_tensors("w")
        m.qweight.copy_(t["w.qweight"])
        m.scales.copy_(t["w.scales"])
        m.zeros.copy_(t["w.qzeros_u8"])
        m.g_idx.copy_(t["w.g_idx"])
        if bias is not None:
            m.bias.data = bias.detach().float().clone()
        return m

    def quantized(self) -> QuantizedWeight:
        q = unpack(self.qweight, self.bits, dim=0).T
        return QuantizedWeight(q, self.scales.float(), self.zeros.to(torch.int32), self.g_idx, self.bits,
                               self.group_size, self.sym)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The ``(out, in)`` float weight."""
        q = unpack(self.qweight, self.bits, dim=0)  # (in, out)
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


def replace_linears(model: nn.Module, bits: int, group_size: int, sym: bool = False,
                    progress: bool = False) -> nn.Module:
    """Swap every decoder linear of ``model`` for an RTN-quantized :class:`QuantLinear` (in place).

    Checks bits, group size and layout for the whole model before changing anything.
    """
    from tqdm.auto import tqdm

    from codesign.quantize.registry import check_bits, check_group_size
    from codesign.quantize.rtn import rtn_quantize
    from codesign.quantize.walker import get_weight, linear_widths, walk

    check_bits(bits)
    check_group_size(group_size, linear_widths(model))
    for layer in tqdm(walk(model), desc=f"rtn w{bits}", unit="layer", disable=not progress):
        for name, mod in layer.linears().items():
            w = get_weight(mod).detach()
            dev = w.device
            qw = rtn_quantize(w, bits, group_size, sym)
            bias = getattr(mod, "bias", None)
            new = QuantLinear.from_quantized(qw, bias).to(dev)
            set_module(model, name, new)
    return model
