"""Packing b-bit integers into int32 words, for every b in 2..8 (3, 5, 6 included).

Values are laid out as one contiguous little-endian bit stream along the packed axis: value ``j``
occupies bits ``[j*b, (j+1)*b)`` of the stream, and word ``k`` holds stream bits ``[32k, 32k+32)``.
For b in {2, 4, 8} this is the usual "value j at shift (j % (32/b))*b" layout; for b = 3 it is the
layout AutoGPTQ uses (values straddle word boundaries), so AutoGPTQ checkpoints unpack with the
same code. 32 values always fill exactly b words, hence the packed length is ``n * b / 32``.
"""

from __future__ import annotations

import torch

from codesign.quantize.options import SUPPORTED_BITS  # noqa: E402  (one list, torch-free)


def packed_length(n: int, bits: int) -> int:
    """Number of int32 words holding ``n`` values of ``bits`` bits (``n`` must be a multiple of 32)."""
    if n % 32:
        raise ValueError(f"cannot pack {n} values: the packed axis must be a multiple of 32")
    return n * bits // 32


def _offsets(bits: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    start = torch.arange(32, device=device, dtype=torch.int64) * bits
    return start // 32, start % 32  # word within the 32-value block, shift within that word


def pack(q: torch.Tensor, bits: int, dim: int = 0) -> torch.Tensor:
    """Pack non-negative ints ``q`` (< 2**bits) along ``dim`` into int32.

    Args:
        q: integer tensor, size ``n`` (multiple of 32) along ``dim``.
        bits: bits per value.
        dim: axis to pack.

    Returns:
        int32 tensor with ``n * bits / 32`` along ``dim``; other axes unchanged.
    """
    q = q.to(torch.int64).movedim(dim, -1)
    lead, n = q.shape[:-1], q.shape[-1]
    nblk = packed_length(n, bits) // bits
    q = q.reshape(*lead, nblk, 32) & ((1 << bits) - 1)
    word, shift = _offsets(bits, q.device)
    out = torch.zeros(*lead, nblk, bits, dtype=torch.int64, device=q.device)
    # Low part of every value lands in its own word; the high part of a straddling value in the next.
    out.scatter_add_(-1, word.expand_as(q), (q << shift) & 0xFFFFFFFF)
    spill = (shift + bits) > 32
    if spill.any():
        hi = torch.where(spill, q >> (32 - shift), torch.zeros_like(q))
        out.scatter_add_(-1, (word + 1).clamp(max=bits - 1).expand_as(q), hi)
    # Bit fields never overlap, so the sums above are bitwise ORs; reinterpret as signed int32.
    out = out.reshape(*lead, nblk * bits)
    out = torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)
    return out.movedim(-1, dim).contiguous()


def unpack(packed: torch.Tensor, bits: int, dim: int = 0) -> torch.Tensor:
    """Inverse of :func:`pack`: int32 words along ``dim`` -> int32 values in ``[0, 2**bits)``."""
    if 32 % bits == 0:  # no value straddles a word: shift and mask in int32 (10x faster than the general path)
        p = packed.to(torch.int32).movedim(dim, 0)
        shifts = (torch.arange(32 // bits, dtype=torch.int32, device=p.device) * bits).view(1, -1, *[1] * (p.dim() - 1))
        q = (p.unsqueeze(1) >> shifts) & ((1 << bits) - 1)  # arithmetic shift: the mask drops the sign bits
        return q.reshape(-1, *p.shape[1:]).movedim(0, dim).contiguous()
    p = packed.to(torch.int64).movedim(dim, -1) & 0xFFFFFFFF
    lead, m = p.shape[:-1], p.shape[-1]
    if m % bits:
        raise ValueError(f"packed axis of length {m} is not a multiple of bits={bits}")
    nblk = m // bits
    p = p.reshape(*lead, nblk, bits)
    word, shift = _offsets(bits, p.device)
    lo = p.gather(-1, word.expand(*lead, nblk, 32)) >> shift
    hi_word = p.gather(-1, (word + 1).clamp(max=bits - 1).expand(*lead, nblk, 32))
    hi = torch.where((shift + bits) > 32, hi_word << (32 - shift), torch.zeros_like(hi_word))
    q = ((lo | hi) & ((1 << bits) - 1)).reshape(*lead, nblk * 32).to(torch.int32)
    return q.movedim(-1, dim).contiguous()
