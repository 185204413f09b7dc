"""The integer grid every method quantizes onto: per-group scale and zero point, and the
:class:`QuantizedWeight` record (integers + scales + zeros + group index) that methods return,
the cache stores and :class:`~codesign.quantize.qlinear.QuantLinear` executes.

Conventions (those of GPTQ/AutoGPTQ): a weight is ``(out, in)``; groups run along ``in``; a
group of ``group_size`` input columns shares one scale and zero per output row, so
``scales``/``zeros`` are ``(n_groups, out)``; ``g_idx[j]`` is the group of input column ``j``
(a permutation of the contiguous layout under act-order). The last group may be shorter when the
group size does not divide the width (AutoGPTQ does the same). Dequantization is
``w = scale * (q - zero)``. Scales are rounded to float16 when they are chosen, so the stored
checkpoint dequantizes to exactly the weights the method evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codesign.quantize.packing import pack, unpack


def n_groups(width: int, group_size: int) -> int:
    return 1 if group_size == -1 else -(-width // group_size)


def contiguous_g_idx(width: int, group_size: int, device=None) -> torch.Tensor:
    """Group of each input column for the plain (no act-order) layout; shape ``(width,)``."""
    if group_size == -1:
        return torch.zeros(width, dtype=torch.int32, device=device)
    return (torch.arange(width, device=device) // group_size).to(torch.int32)


def row_range(w: torch.Tensor, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``w`` ``(..., rows, cols)`` the range the grid must cover, ``(..., rows)`` each:
    ``[min(w, 0), max(w, 0)]``, made symmetric for ``sym``."""
    xmin = w.amin(-1).clamp(max=0)
    xmax = w.amax(-1).clamp(min=0)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = -xmax
    return xmin, xmax


def find_params(w: torch.Tensor, bits: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Min/max scale and integer zero point per row of ``w`` ``(..., rows, cols)``.

    Returns:
        ``scale`` (float32, fp16-representable) and ``zero`` (float32 holding integers), both
        ``(..., rows)``.
    """
    maxq = 2**bits - 1
    w = w.float()
    xmin, xmax = row_range(w, sym)
    dead = (xmin == 0) & (xmax == 0)
    xmin = torch.where(dead, -torch.ones_like(xmin), xmin)
    xmax = torch.where(dead, torch.ones_like(xmax), xmax)
    scale = ((xmax - xmin) / maxq).half().float().clamp(min=torch.finfo(torch.float16).tiny)
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale).clamp(0, maxq)
    return scale, zero


def search_params(w: torch.Tensor, bits: int, sym: bool, norm: float, *, grid: int = 100,
                  maxshrink: float = 0.8, coarse: int = 4,
                  col_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`find_params`, but each row's range is shrunk to ``p·[min, max]`` for the ``p`` on
    the grid ``1, 1 - 1/grid, ..., 1 - maxshrink`` that minimises ``Σ|w - ŵ|^norm`` over the row
    (GPTQ's ``mse`` search: clipping a few outliers buys finer steps for the rest, which pays most
    at 2-4 bits).

    The grid is searched coarse to fine: every ``coarse``-th point, then the points around each
    row's best (``coarse = 1``: exhaustive). ``col_weight`` ``(cols,)`` weighs each column's error
    (GPTQ passes ``1/[U]_jj²``, what rounding column ``j`` costs in output error). ``w``
    ``(..., rows, cols)``; returns ``scale``, ``zero`` ``(..., rows)`` as :func:`find_params`.
    """
    maxq = 2**bits - 1
    w = w.float()
    xmin, xmax = row_range(w, sym)
    live = (xmax - xmin) > 0
    last = int(maxshrink * grid)
    best_s, best_z = find_params(w, bits, sym)
    cw = None if col_weight is None else col_weight.float()

    def loss(d: torch.Tensor) -> torch.Tensor:
        d = d.abs_().pow_(norm)
        return (d if cw is None else d.mul_(cw)).sum(-1)

    best = loss(fake_quantize(w, best_s[..., None], best_z[..., None], bits) - w)
    best_i = torch.zeros_like(best, dtype=torch.long)
    # Candidates in chunks: (chunk, ..., rows, cols) stays a few tens of MB for a 3072x128 group.
    chunk = max(1, int(2**23 // max(1, w.numel())))

    def scan(steps: torch.Tensor) -> None:  # steps (k, ...rows): grid indices, shrink p = 1 - i/grid
        nonlocal best, best_s, best_z, best_i
        for c0 in range(0, steps.shape[0], chunk):
            i = steps[c0:c0 + chunk]
            p = 1 - i.float() / grid
            lo, hi = p * xmin, p * xmax
            scale = ((hi - lo) / maxq).half().float().clamp(min=torch.finfo(torch.float16).tiny)
            zero = (torch.full_like(scale, (maxq + 1) / 2) if sym
                    else torch.round(-lo / scale).clamp(0, maxq))
            err = loss(fake_quantize(w, scale[..., None], zero[..., None], bits) - w)
            err = torch.where(live & (i > 0), err, torch.full_like(err, float("inf")))
            k = err.argmin(0, keepdim=True)
            e = err.gather(0, k).squeeze(0)
            better = e < best
            best = torch.where(better, e, best)
            best_s = torch.where(better, scale.gather(0, k).squeeze(0), best_s)
            best_z = torch.where(better, zero.gather(0, k).squeeze(0), best_z)
            best_i = torch.where(better, i.gather(0, k).squeeze(0), best_i)

    shape = (-1,) + (1,) * xmin.dim()
    scan(torch.arange(coarse, last + 1, coarse, device=w.device).view(shape).expand(-1, *xmin.shape))
    if coarse > 1:
        offsets = torch.tensor([d for d in range(1 - coarse, coarse) if d], device=w.device).view(shape)
        scan((best_i[None] + offsets).clamp(0, last))
    return best_s, best_z


def quantize_int(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Integers ``clamp(round(w / scale) + zero, 0, maxq)`` (broadcasting ``scale``/``zero``)."""
    return torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)


def fake_quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    return scale * (quantize_int(w, scale, zero, bits) - zero)


def group_view(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(out, in)`` -> ``(out, n_groups, gs)``; a short last group is padded with copies of its last
    column (which leaves every group's min and max unchanged)."""
    out, width = w.shape
    gs = width if group_size == -1 else group_size
    ng = n_groups(width, group_size)
    pad = ng * gs - width
    if pad:
        w = torch.cat([w, w[:, -1:].expand(out, pad)], dim=1)
    return w.reshape(out, ng, gs)


def rtn_params(w: torch.Tensor, bits: int, group_size: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group params of a contiguous layout: ``scales``, ``zeros`` ``(n_groups, out)``."""
    scale, zero = find_params(group_view(w, group_size), bits, sym)  # (out, ng)
    return scale.T.contiguous(), zero.T.contiguous()


@dataclass
class QuantizedWeight:
    """A quantized ``(out, in)`` weight: integers, per-group scales/zeros and the group index."""

    qint: torch.Tensor  # (out, in) int32 in [0, 2**bits)
    scales: torch.Tensor  # (n_groups, out) float32 (fp16-representable)
    zeros: torch.Tensor  # (n_groups, out) int32
    g_idx: torch.Tensor  # (in,) int32
    bits: int
    group_size: int
    sym: bool

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.qint.shape)  # type: ignore[return-value]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The ``(out, in)`` float weight this record stands for."""
        g = self.g_idx.long()
        s = self.scales.float()[g].T  # (out, in)
        z = self.zeros.float()[g].T
        return ((self.qint.float() - z) * s).to(dtype)

    @classmethod
    def from_weight(cls, w: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor,
                    bits: int, group_size: int, sym: bool) -> "QuantizedWeight":
        """Round ``w`` ``(out, in)`` onto the grid given by per-group ``scales``/``zeros`` ``(n_groups, out)``."""
        out, width = w.shape
        ng = scales.shape[0]
        if width % ng == 0 and torch.equal(g_idx.to(torch.int32), contiguous_g_idx(width, width // ng, w.device)):
            # Contiguous equal groups: quantize_int broadcast per group and in place (3x faster than
            # gathering (out, in) scales and zeros into temporaries).
            q = w.to(torch.float32, copy=True).view(out, ng, -1)
            q.div_(scales.T[..., None].float()).round_().add_(zeros.T[..., None].float()).clamp_(0, 2**bits - 1)
            q = q.view(out, width)
        else:
            g = g_idx.long()
            q = quantize_int(w.float(), scales[g].T, zeros[g].T, bits)
        return cls(q.to(torch.int32), scales.float(), zeros.to(torch.int32), g_idx.to(torch.int32), bits,
                   group_size, sym)

    # -- storage ---------------------------------------------------------------------------
    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors for a safetensors file: ``qweight`` is ``(in*bits/32, out)`` int32 packed along
        ``in`` (AutoGPTQ layout); scales float16; zeros uint8; g_idx int32."""
        return {
            f"{prefix}.qweight": pack(self.qint.T, self.bits, dim=0),
            f"{prefix}.scales": self.scales.half(),
            f"{prefix}.qzeros_u8": self.zeros.to(torch.uint8),
            f"{prefix}.g_idx": self.g_idx.to(torch.int32).clone(),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str, bits: int, group_size: int,
                     sym: bool, ints: bool = True) -> "QuantizedWeight":
        """Inverse of :meth:`to_tensors`. ``ints=False`` leaves the integers packed (``qint`` is then a
        zero-stride placeholder of the right shape), for checks that read only the grid."""
        if ints:
            qint = unpack(t[f"{prefix}.qweight"], bits, dim=0).T.contiguous()
        else:
            shape = (t[f"{prefix}.scales"].shape[1], t[f"{prefix}.g_idx"].shape[0])
            qint = torch.zeros((), dtype=torch.int32).expand(*shape)
        return cls(qint, t[f"{prefix}.scales"].float(), t[f"{prefix}.qzeros_u8"].to(torch.int32),
                   t[f"{prefix}.g_idx"].to(torch.int32), bits, group_size, sym)


class single_thread:
    """Run a block with one intra-op thread.

    The quantizers' inner loops are thousands of small vector ops; with several OpenMP threads
    each op pays a fork/join, and on a shared CPU a descheduled thread stalls the rest (measured
    on 2 busy cores: GPTQ of a 1536×576 weight takes 0.2 s on one thread, 9-12 s on two).
    """

    _outer: list[int] = []  # thread counts the open single_thread blocks replaced, outermost first

    def __enter__(self):
        self.prev = torch.get_num_threads()
        single_thread._outer.append(self.prev)
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        single_thread._outer.pop()
        torch.set_num_threads(self.prev)


class all_threads:
    """Inside :class:`single_thread`, give a block of large matmuls (a replayed attention or MLP
    block) back the threads the outermost ``single_thread`` took."""

    def __enter__(self):
        self.prev = torch.get_num_threads()
        torch.set_num_threads(single_thread._outer[0] if single_thread._outer else self.prev)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.prev)
