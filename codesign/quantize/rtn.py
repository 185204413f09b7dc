"""RTN: round-to-nearest per group, symmetric or asymmetric. No calibration data needed."""

from __future__ import annotations

import torch

from codesign.quantize.grid import QuantizedWeight, contiguous_g_idx, rtn_params
from codesign.quantize.registry import LayerResult, QuantConfig, QuantMethod, register_method
from codesign.quantize.walker import get_weight


def rtn_quantize(w: torch.Tensor, bits: int, group_size: int, sym: bool) -> QuantizedWeight:
    """Round an ``(out, in)`` weight to the nearest point of its per-group min/max grid."""
    w = w.detach().float()
    scales, zeros = rtn_params(w, bits, group_size, sym)
    return QuantizedWeight.from_weight(w, scales, zeros, contiguous_g_idx(w.shape[1], group_size, w.device), bits,
                                       group_size, sym)


def relative_error(w: torch.Tensor, w_hat: torch.Tensor, hessian: torch.Tensor | None = None) -> float:
    """``||(W - Ŵ) X||² / ||W X||²`` from ``H = E[x xᵀ]`` ``(in, in)``, or the relative weight error
    ``||W - Ŵ||² / ||W||²`` when no ``H`` is given."""
    w, w_hat = w.detach(), w_hat.detach()
    d = w.float() - w_hat.float()
    if hessian is None:
        return float(d.pow(2).sum() / w.float().pow(2).sum().clamp(min=1e-30))
    num = ((d @ hessian) * d).sum()
    den = ((w.float() @ hessian) * w.float()).sum().clamp(min=1e-30)
    return float(num / den)


@register_method
class RTN(QuantMethod):
    name = "rtn"
    needs_calibration = False
    defaults = {}

    def quantize_layer(self, layer, stats, cfg: QuantConfig) -> LayerResult:
        res = LayerResult()
        for g in layer.groups:
            st = stats.get(g.names[0]) if stats else None
            for name, mod in zip(g.names, g.modules):
                w = get_weight(mod)
                qw = rtn_quantize(w, cfg.bits, cfg.group_size, cfg.sym)
                res.weights[name] = qw
                res.errors[name] = relative_error(w, qw.dequantize(), st.hessian if st else None)
        return res
