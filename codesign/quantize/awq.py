"""AWQ (Lin et al. 2024, "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration").

For each linear group whose input comes from a module that can absorb a per-channel scale (a
norm, or a linear feeding the group directly: ``v_proj → o_proj``, ``up_proj → down_proj``):

1. grid search ``s = E|x|^α / sqrt(max·min)`` for ``α ∈ {0, 1/n, ..., (n-1)/n}`` (and, with
   ``duo_scaling``, also ``s = E|x|^α / w_mean^(1-α)`` as AutoAWQ does), minimising the
   group's output error ``||(W - Q(W·diag(s))·diag(s)⁻¹) X||²`` (computed exactly from
   ``H = E[x xᵀ]``, so no extra forward passes); ``α = 0`` is plain RTN, so the search never does
   worse than RTN on the calibration data. With ``block_loss`` (the default), a group feeding an
   attention or MLP block (q/k/v, gate/up) then re-ranks its ``block_topk`` best candidates by
   the block's output error on ``block_tokens`` replayed calibration tokens, as the reference
   implementation scores every candidate (its ``module2inspect``): the softmax and the gated
   activation weigh q/k and gate/up errors unlike a linear's own output;
2. fold: ``W ← W·diag(s)`` for the group, ``prev ← prev / s`` (norm weight and bias, or the
   producing linear's output rows) — the float model is unchanged;
3. optional clipping search: per output row and group, shrink the max |w| by up to
   ``max_shrink`` on a grid, keeping the value with the lowest output error for that group's
   input block of ``H`` (skipped for q/k, whose errors are amplified by the attention softmax);
4. round to nearest on the per-group grid.

Difference from the reference implementation: the block output scores only the candidates the
exact ``H`` loss ranks best, so a layer costs a few block replays instead of one per candidate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from codesign.quantize.grid import all_threads, fake_quantize, find_params, group_view
from codesign.quantize.options import BUILTIN
from codesign.quantize.registry import LayerResult, QuantConfig, QuantMethod, register_method
from codesign.quantize.rtn import relative_error, rtn_quantize
from codesign.quantize.walker import get_weight, set_weight

_NO_CLIP = ("q_proj", "k_proj", "query_key_value", "c_attn")


def fake_rtn(w: torch.Tensor, bits: int, group_size: int, sym: bool) -> torch.Tensor:
    """RTN-quantize-dequantize ``w`` ``(out, in)`` (vectorized over groups)."""
    g = group_view(w, group_size)
    scale, zero = find_params(g, bits, sym)
    q = fake_quantize(g, scale[..., None], zero[..., None], bits)
    return q.reshape(w.shape[0], -1)[:, : w.shape[1]]


def _output_err(d: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    return ((d @ H) * d).sum()


def weight_mean(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """Per-input-channel mean of ``|w|`` normalised by each group's max ``(in,)``: the weight side
    of AutoAWQ's "duo" scales ``E|x|^α / w_mean^(1-α)``."""
    g = group_view(w.abs().float(), group_size)
    g = g / g.amax(-1, keepdim=True).clamp(min=1e-12)
    return g.reshape(w.shape[0], -1)[:, : w.shape[1]].mean(0)


def scale_candidates(w: torch.Tensor, act: torch.Tensor, group_size: int, n_grid: int = 20,
                     duo: bool = True) -> torch.Tensor:
    """Candidate per-input-channel scales ``(k, in)`` for ``w`` ``(out, in)`` and ``act`` = ``E|x|``
    ``(in,)``: ``E|x|^α`` and, with ``duo``, ``E|x|^α / w_mean^(1-α)`` (AutoAWQ's and GPTQModel's
    default family), ``α`` on an ``n_grid`` grid, each normalised to ``max·min = 1``."""
    act = act.float()
    families = [torch.ones_like(act)] + ([weight_mean(w.float(), group_size) + 1e-4] if duo else [])
    a = (torch.arange(n_grid, device=act.device, dtype=torch.float32) / n_grid)[:, None]
    s = torch.cat([(act.pow(a) / wm.pow(1 - a)).clamp(min=1e-4) for wm in families])
    return s / (s.amax(1, keepdim=True) * s.amin(1, keepdim=True)).sqrt()


def search_scale(w: torch.Tensor, H: torch.Tensor, act: torch.Tensor, bits: int, group_size: int, sym: bool,
                 n_grid: int = 20, duo: bool = True, block_err: Callable[[torch.Tensor], float] | None = None,
                 topk: int = 8) -> tuple[torch.Tensor, float]:
    """Best per-input-channel scale ``(in,)`` for ``w`` ``(out, in)`` given ``H`` ``(in, in)`` and
    ``act`` = ``E|x|`` ``(in,)``; returns (scale, relative output error at that scale).

    Candidates come from :func:`scale_candidates`; the one with the lowest output error
    ``dᵀHd`` wins, or, given ``block_err`` (a scale's error on the block output), the one of the
    ``topk`` best by ``dᵀHd`` with the lowest ``block_err``.
    """
    w = w.float()
    cands = scale_candidates(w, act, group_size, n_grid, duo)
    with all_threads():  # (out, in) @ (in, in) per candidate: large matmuls, unlike GPTQ's column loop
        errs = torch.stack([_output_err(w - fake_rtn(w * s, bits, group_size, sym) / s, H) for s in cands])
    k = int(errs.argmin())
    if block_err is not None and topk > 1:
        ranked = torch.argsort(errs)[:topk].tolist()
        k = min(ranked, key=lambda i: block_err(cands[i]))
    den = float(_output_err(w, H)) or 1e-30
    return cands[k], float(errs[k]) / den


def block_error(group, calls: list[tuple[tuple, dict]], bits: int, group_size: int,
                sym: bool) -> Callable[[torch.Tensor], float]:
    """A function of a scale ``s`` ``(in,)``: the squared error of ``group.block``'s output on the
    replayed ``calls`` when the group's linears hold ``Q(W·diag(s))·diag(s)⁻¹`` (what the folded,
    rounded group computes) instead of ``W``; the weights are restored after each call."""
    ws = [get_weight(m).detach().float().clone() for m in group.modules]

    def run() -> list[torch.Tensor]:
        with torch.no_grad(), all_threads():
            outs = [group.block(*a, **kw) for a, kw in calls]
        return [o[0] if isinstance(o, (tuple, list)) else o for o in outs]

    ref = run()

    def err(s: torch.Tensor) -> float:
        try:
            for m, w in zip(group.modules, ws):
                set_weight(m, fake_rtn(w * s, bits, group_size, sym) / s)
            return sum(float((o - r).float().pow(2).sum()) for o, r in zip(run(), ref))
        finally:
            for m, w in zip(group.modules, ws):
                set_weight(m, w)

    return err


def search_clip(w: torch.Tensor, H: torch.Tensor, bits: int, group_size: int, sym: bool, *,
                n_grid: int = 20, max_shrink: float = 0.5) -> torch.Tensor:
    """Clip ``w`` ``(out, in)`` per (row, group) to the max |w| that minimises that group's
    output error ``dᵀ H_gg d`` (``H_gg`` the group's diagonal block of ``H`` ``(in, in)``)."""
    out, width = w.shape
    wg = group_view(w.float(), group_size)  # (out, ng, gs)
    ng, gs = wg.shape[1:]
    dev = w.device
    mask = (torch.arange(ng * gs, device=dev) < width).float().reshape(ng, gs)
    Hp = torch.zeros(ng * gs, ng * gs, device=dev)
    Hp[:width, :width] = H
    idx = torch.arange(ng, device=dev)
    Hb = Hp.reshape(ng, gs, ng, gs)[idx, :, idx, :]  # (ng, gs, gs) diagonal blocks
    org_max = wg.abs().amax(-1, keepdim=True)
    best_max = org_max.clone()
    best = torch.full((out, ng), float("inf"), device=dev)
    for k in range(int(max_shrink * n_grid)):
        mv = org_max * (1 - k / n_grid)
        cw = torch.clamp(wg, -mv, mv)
        scale, zero = find_params(cw, bits, sym)
        d = (fake_quantize(cw, scale[..., None], zero[..., None], bits) - wg) * mask
        err = torch.einsum("ogi,gij,ogj->og", d, Hb, d)
        better = err < best
        best = torch.where(better, err, best)
        best_max = torch.where(better[..., None], mv, best_max)
    return torch.clamp(wg, -best_max, best_max).reshape(out, -1)[:, :width]


def _fold_into_prev(prev, prev_kind: str, s: torch.Tensor) -> None:
    with torch.no_grad():
        if prev_kind == "norm":
            prev.weight.div_(s.to(prev.weight.dtype))
            if getattr(prev, "bias", None) is not None:
                prev.bias.div_(s.to(prev.bias.dtype))
        else:
            set_weight(prev, get_weight(prev).float() / s[:, None])
            if getattr(prev, "bias", None) is not None:
                prev.bias.div_(s.to(prev.bias.dtype))


@register_method
class AWQ(QuantMethod):
    name = "awq"
    needs_calibration = True
    defaults = BUILTIN["awq"].defaults  # declared torch-free in codesign.quantize.options
    ranges = BUILTIN["awq"].ranges

    @property
    def block_tokens(self) -> int:
        return int(self.options["block_tokens"]) if self.options["block_loss"] else 0

    def quantize_layer(self, layer, stats, cfg: QuantConfig) -> LayerResult:
        res = LayerResult()
        o = self.options
        hess = {}
        # Phase 1: search and fold every group's scales (float model unchanged), so that a linear
        # touched twice (v_proj: columns by the norm's scales, rows by o_proj's) is final before rounding.
        for g in layer.groups:
            st = stats[g.names[0]]
            H = st.hessian
            if g.prev is not None:
                w = torch.cat([get_weight(m).detach().float() for m in g.modules], 0)
                berr = (block_error(g, st.block_calls, cfg.bits, cfg.group_size, cfg.sym)
                        if o["block_loss"] and g.block is not None and st.block_calls else None)
                s, _ = search_scale(w, H, st.act_abs_mean, cfg.bits, cfg.group_size, cfg.sym, int(o["n_grid"]),
                                    duo=bool(o["duo_scaling"]), block_err=berr, topk=int(o["block_topk"]))
                _fold_into_prev(g.prev, g.spec.prev_kind, s)
                for m in g.modules:
                    set_weight(m, get_weight(m).float() * s[None, :])
                H = H / (s[:, None] * s[None, :])  # inputs are now x / s
                prefix = g.names[0].rsplit(".", len(g.spec.linears[0].split(".")))[0]
                if g.spec.prev_kind == "norm":
                    for pname, p in g.prev.named_parameters(recurse=False):
                        res.float_params[f"{prefix}.{g.spec.prev}.{pname}"] = p.detach().clone()
            hess[g.names[0]] = H
        # Phase 2: clip and round.
        for g in layer.groups:
            H = hess[g.names[0]]
            for name, m in zip(g.names, g.modules):
                w = get_weight(m).detach().float()
                wc = w
                if o["clip"] and not name.endswith(_NO_CLIP):
                    wc = search_clip(w, H, cfg.bits, cfg.group_size, cfg.sym, n_grid=int(o["n_grid"]),
                                     max_shrink=float(o["max_shrink"]))
                qw = rtn_quantize(wc, cfg.bits, cfg.group_size, cfg.sym)
                res.weights[name] = qw
                res.errors[name] = relative_error(w, qw.dequantize(), H)
        return res
