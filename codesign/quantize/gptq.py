"""GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers").

Per linear group (linears sharing an input, e.g. q/k/v), with ``H = E[x xᵀ]`` from calibration
activations that already passed through the quantized earlier layers:

1. damp ``H += λ·mean(diag H)·I``; dead input channels (zero activations) get ``H_jj = 1``, ``W_j = 0``;
2. optionally reorder columns by decreasing ``diag H`` (act-order; by default group-aware, so each
   quantization group stays whole and the checkpoint keeps a natural ``g_idx``); by default each
   linear group is calibrated on activations through the already quantized groups before it
   (true-sequential);
3. ``U = chol(H⁻¹)ᵀ`` (upper Cholesky factor of the inverse);
4. quantize columns left to right in blocks of ``block_size``: each column's rounding error is
   divided by ``U_jj`` and fed back to the columns still to come in the block (rank-1 updates),
   and the block's errors to all later columns at once (one matmul, "lazy batch" updates);
5. group scales/zeros are chosen when the quantizer reaches a group's first column, from the
   error-updated weights: min/max (``mse = 0``), or the shrunk min/max range that minimises
   ``Σ_j c_j |w_j - ŵ_j|^p`` (``mse = p``, GPTQ's reference code uses ``p = 2.4``). With
   ``hessian_range`` (the default, with ``p = 2``) ``c_j = 1/U_jj²``, which is what rounding
   column ``j`` adds to the layer's output error in step 4, so the range is the one that costs the
   output least instead of the one that fits the weights best; otherwise ``c_j = 1``.

The rows of all linears in a group are processed together (they share ``H``), which keeps the
per-column Python loop to one pass per group.
"""

from __future__ import annotations

import torch

from codesign.config import ConfigError
from codesign.quantize.grid import QuantizedWeight, find_params, n_groups, quantize_int, search_params, single_thread
from codesign.quantize.options import BUILTIN
from codesign.quantize.registry import LayerResult, QuantConfig, QuantMethod, register_method
from codesign.quantize.rtn import relative_error
from codesign.quantize.walker import get_weight


def group_aware_order(diag: torch.Tensor, group_size: int) -> torch.Tensor:
    """Group-aware act-order (GAR; Gafni et al. 2025, as in GPTQModel): a column order ``(in,)``
    that keeps every quantization group's columns together, takes groups by decreasing max
    ``diag H`` and, inside a group, columns by decreasing ``diag H``; a short last group stays last.

    Unlike plain act-order, groups stay the contiguous ones a standard ``g_idx`` describes.
    """
    cols = diag.numel()
    ng = cols // group_size
    full = diag[: ng * group_size].reshape(ng, group_size)
    local = torch.argsort(full, dim=1, descending=True, stable=True)
    ranked = torch.argsort(full.amax(1), descending=True, stable=True)
    order = (local + torch.arange(ng, device=diag.device)[:, None] * group_size)[ranked].reshape(-1)
    tail = torch.arange(ng * group_size, cols, device=diag.device)
    if tail.numel():
        tail = tail[torch.argsort(diag[tail], descending=True, stable=True)]
    return torch.cat([order, tail])


def gptq_quantize(w: torch.Tensor, hessian: torch.Tensor, bits: int, group_size: int, sym: bool, *,
                  damp: float = 0.05, act_order: bool = True, group_aware: bool = False,
                  block_size: int = 128, mse: float = 0.0, hessian_range: bool = False) -> QuantizedWeight:
    """Quantize ``w`` ``(out, in)`` with GPTQ given ``hessian`` ``(in, in)``.

    ``act_order``: process columns by decreasing ``diag H``; with groups and ``group_aware`` the
    order keeps groups intact (:func:`group_aware_order`), else columns are free to mix (a
    permuted ``g_idx``, as AutoGPTQ's ``desc_act``). ``mse > 0``: each group's range is chosen by
    :func:`~codesign.quantize.grid.search_params` with that norm (GPTQ's ``mse`` option, 2.4 in
    its paper's code) instead of min/max; ``hessian_range`` weighs each column's error there by
    ``1/U_jj²`` (see the module docstring). These keyword defaults are the plain algorithm; the
    registered method's defaults (:attr:`GPTQ.defaults`) add the group-aware order and the
    Hessian-weighted range search.
    """
    with single_thread():  # a loop of small vector ops: see single_thread
        return _gptq(w, hessian, bits, group_size, sym, damp, act_order, group_aware, block_size, mse, hessian_range)


def _gptq(w, hessian, bits, group_size, sym, damp, act_order, group_aware, block_size, mse,
          hessian_range) -> QuantizedWeight:
    W = w.detach().float().clone()
    H = hessian.detach().float().clone()
    rows, cols = W.shape
    gs = cols if group_size == -1 else group_size

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    gar = act_order and group_aware and group_size != -1 and cols > group_size
    if gar:
        perm = group_aware_order(torch.diag(H), group_size)
    elif act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
    else:
        perm = torch.arange(cols, device=H.device)
    W, H = W[:, perm], H[perm][:, perm]

    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, device=H.device)
    try:
        L = torch.linalg.cholesky(H)
    except torch.linalg.LinAlgError:
        # Near-singular H (few calibration tokens): add more damping rather than fail.
        H += 0.1 * torch.mean(torch.diag(H)) * torch.eye(cols, device=H.device)
        L = torch.linalg.cholesky(H)
    # H⁻¹ = L⁻ᵀ L⁻¹ via a triangular solve: torch.cholesky_inverse is pathologically slow on some
    # CPU builds (seconds for 1536², measured), the solve takes a fraction of that.
    Linv = torch.linalg.solve_triangular(L, torch.eye(cols, dtype=L.dtype, device=L.device), upper=False)
    Hinv = torch.linalg.cholesky(Linv.T @ Linv, upper=True)

    inv_d2 = torch.diag(Hinv).pow(-2) if hessian_range else None
    Q = torch.zeros_like(W)
    ng = n_groups(cols, group_size)
    scales = torch.zeros(ng, rows, device=W.device)
    zeros = torch.zeros(ng, rows, device=W.device)
    scale = zero = None
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % gs == 0:
                # The group's columns as updated so far: this block's from W1, later blocks' from W.
                grp = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :gs]
                cw = None if inv_d2 is None else inv_d2[col:col + grp.shape[1]]
                scale, zero = (search_params(grp, bits, sym, mse, col_weight=cw) if mse > 0
                               else find_params(grp, bits, sym))
                scales[col // gs], zeros[col // gs] = scale, zero
            w_col = W1[:, i]
            d = Hinv1[i, i]
            q = quantize_int(w_col, scale, zero, bits)
            Q1[:, i] = q
            err = (w_col - scale * (q - zero)) / d
            W1[:, i:] -= err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]

    invperm = torch.argsort(perm)
    g_idx = (torch.arange(cols, device=W.device) // gs)[invperm].to(torch.int32)
    if gar:  # groups were processed out of order but kept whole: store them in natural order
        first = perm[torch.arange(0, cols, gs, device=W.device)] // gs  # natural group of each processed group
        scales[first], zeros[first] = scales.clone(), zeros.clone()
        g_idx = (torch.arange(cols, device=W.device) // gs).to(torch.int32)
    return QuantizedWeight(Q[:, invperm].to(torch.int32), scales, zeros.to(torch.int32), g_idx, bits,
                           group_size, sym)


@register_method
class GPTQ(QuantMethod):
    name = "gptq"
    needs_calibration = True
    # Defaults from measurements on SmolLM2-135M, KL to the dense model on held-out MMLU text
    # (experiments/quantize_bench/gptq_ablation*.csv). Act-order matters most (4-bit g128: 0.386 ->
    # 0.265; RTN 0.439). At group 64 (gptq_ablation_gptqmodel_g64.csv, 4,096 tokens), with
    # GPTQModel's choices (group-aware order, true-sequential: natural groups, a plain g_idx that
    # fast kernels want): the weight-space range search (mse = 2.4) cut the 3-bit KL from 0.97 to
    # 0.78 but raised the 4-bit layer error by a fifth; the Hessian-weighted search (mse = 2,
    # hessian_range) cut KL to 0.68 (3-bit) and 0.18 (4-bit, from 0.24) and the held-out layer
    # error by a quarter at both (bench.py), so it is on at every width.
    defaults = BUILTIN["gptq"].defaults  # declared torch-free in codesign.quantize.options
    ranges = BUILTIN["gptq"].ranges
    hints = BUILTIN["gptq"].hints

    def __init__(self, **options):
        super().__init__(**options)
        self.range_norm(self.options["mse"])  # a bad value fails here, before any work

    @staticmethod
    def range_norm(mse) -> float:
        """The ``mse`` option as a norm for :func:`~codesign.quantize.grid.search_params` (0: min/max)."""
        try:
            v = float(mse)
            if not 0 <= v < float("inf"):  # also NaN
                raise ValueError
            return v
        except (TypeError, ValueError):
            raise ConfigError(f"gptq option mse = {mse!r} is not allowed (allowed: 0 for min/max, "
                              "or a norm > 0 such as 2 or 2.4)") from None

    def quantize_layer(self, layer, stats, cfg: QuantConfig) -> LayerResult:
        res = LayerResult()
        o = self.options
        for g in layer.groups:
            H = stats[g.names[0]].hessian
            ws = [get_weight(m).detach().float() for m in g.modules]
            qw = gptq_quantize(torch.cat(ws, 0), H, cfg.bits, cfg.group_size, cfg.sym, damp=float(o["damp"]),
                               act_order=bool(o["act_order"]), group_aware=bool(o["group_aware"]),
                               block_size=int(o["block_size"]), mse=self.range_norm(o["mse"]),
                               hessian_range=bool(o["hessian_range"]))
            r0 = 0
            for name, w in zip(g.names, ws):
                r1 = r0 + w.shape[0]
                part = QuantizedWeight(qw.qint[r0:r1].contiguous(), qw.scales[:, r0:r1].contiguous(),
                                       qw.zeros[:, r0:r1].contiguous(), qw.g_idx, cfg.bits, cfg.group_size,
                                       cfg.sym)
                res.weights[name] = part
                res.errors[name] = relative_error(w, part.dequantize(), H)
                r0 = r1
        return res
