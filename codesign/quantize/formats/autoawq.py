"""The AutoAWQ "GEMM" checkpoint format, read and written without AutoAWQ.

Per quantized linear ``<name>``: ``qweight`` ``(in, out*bits/32)`` int32 and ``qzeros``
``(n_groups, out*bits/32)`` int32, both packed along the *output* axis; ``scales``
``(n_groups, out)`` float16. At 4 bits (AutoAWQ's only width) eight values per word sit in the
interleaved order ``[0, 2, 4, 6, 1, 3, 5, 7]`` (nibble ``i`` holds column ``ORDER[i]`` of its
block of 8). Other widths (2-8 bits, as GPTQModel writes them) are a plain contiguous
little-endian bit stream, the layout of :mod:`codesign.quantize.packing`. Dequantization is
``w = (q - z) * s`` with contiguous groups along the input axis (``in % group_size == 0``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from codesign.config import ConfigError
from codesign.quantize.grid import QuantizedWeight, contiguous_g_idx
from codesign.quantize.packing import SUPPORTED_BITS, pack, unpack

ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def _perm(out: int) -> torch.Tensor:
    """Index turning the plain-unpacked columns into AWQ's interleaved ones (and back via argsort)."""
    base = torch.tensor(ORDER)
    return (torch.arange(out // 8)[:, None] * 8 + base[None, :]).reshape(-1)


def unpack_awq(packed: torch.Tensor) -> torch.Tensor:
    """``(rows, out/8)`` int32 -> ``(rows, out)`` values in AWQ's column order."""
    plain = unpack(packed, 4, dim=1)  # column 8c+i = nibble i of word c
    out = torch.empty_like(plain)
    out[:, _perm(plain.shape[1])] = plain
    return out


def pack_awq(values: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`unpack_awq`."""
    return pack(values[:, _perm(values.shape[1])], 4, dim=1)


def read_autoawq(folder: Path):
    from codesign.quantize.formats import quant_config, read_tensors

    qc = dict(quant_config(folder))
    bits = int(qc.get("bits", qc.get("w_bit", 4)))
    gs = int(qc.get("group_size", qc.get("q_group_size", 128)))
    version = str(qc.get("version", "gemm")).lower()
    if bits not in SUPPORTED_BITS or version != "gemm":
        raise ConfigError(f"{folder}: AutoAWQ checkpoint with bits={bits}, version={version!r}: only the "
                          f"GEMM format is supported (allowed: bits {list(SUPPORTED_BITS)}, version gemm)")
    unpack_out = unpack_awq if bits == 4 else (lambda packed: unpack(packed, bits, dim=1))
    t = read_tensors(folder)
    names = sorted(k[: -len(".qweight")] for k in t if k.endswith(".qweight"))
    weights = {}
    for n in names:
        q = unpack_out(t[f"{n}.qweight"])  # (in, out)
        z = unpack_out(t[f"{n}.qzeros"])  # (ng, out)
        width = q.shape[0]
        if width % gs:
            raise ConfigError(f"{folder}: {n} has input width {width}, not a multiple of group_size {gs}")
        weights[n] = QuantizedWeight(q.T.contiguous().to(torch.int32), t[f"{n}.scales"].float(),
                                     z.to(torch.int32), contiguous_g_idx(width, gs), bits, gs,
                                     not bool(qc.get("zero_point", True)))
    quantized = {f"{n}.{s}" for n in names for s in ("qweight", "qzeros", "scales")}
    floats = {k: v for k, v in t.items() if k not in quantized}
    return {**qc, "bits": bits, "group_size": gs, "sym": not bool(qc.get("zero_point", True))}, weights, floats


#: AutoAWQ, transformers' ``AwqConfig`` and vLLM's AWQ kernels read 4-bit GEMM checkpoints only (the
#: other widths :func:`write_autoawq` can write load in GPTQModel alone).
WRITE_BITS = (4,)
#: AutoAWQ's CUDA GEMM kernel takes groups of 64 or 128; vLLM and GPTQModel also 32. No act-order.
WRITE_GROUP_SIZES = (32, 64, 128)


def writable_problems(weights: dict[str, QuantizedWeight]) -> list[str]:
    """Why ``weights`` cannot be written as a loadable AutoAWQ GEMM checkpoint (empty: they can).

    The layout has no group index, so every group must be contiguous (GPTQ's act-order permutes
    them). Symmetric grids fit: their zero point is stored, and equals the implicit one."""
    from codesign.quantize.formats import layout_problems

    out = layout_problems(weights, "awq", WRITE_BITS, WRITE_GROUP_SIZES, divisible=True)
    permuted = [n for n, q in weights.items() if not torch.equal(q.g_idx, contiguous_g_idx(q.shape[1], q.group_size))]
    if permuted:
        out.append(f"{len(permuted)} linears (e.g. {permuted[0]}) have act-order (permuted) groups, which AWQ "
                   "cannot store (allowed: contiguous groups; write GPTQ instead)")
    return out


def quantization_config(first: QuantizedWeight) -> dict:
    """``config.json``'s ``quantization_config`` as AutoAWQ saves it for weights with ``first``'s
    settings (read by transformers' ``AwqConfig``, vLLM and GPTQModel; ``zero_point`` false marks a
    symmetric grid)."""
    return {"quant_method": "awq", "zero_point": not first.sym, "group_size": first.group_size,
            "bits": first.bits, "version": "gemm", "modules_to_not_convert": None}


def write_autoawq(folder: Path, weights: dict[str, QuantizedWeight], floats: dict[str, torch.Tensor],
                  config: dict | None = None) -> Path:
    """Write contiguous-group ``weights`` in the AutoAWQ GEMM layout (4-bit interleaved; other widths
    as GPTQModel writes them): ``model.safetensors``, ``quant_config.json`` (AutoAWQ's legacy file)
    and, given the model ``config``, ``config.json`` with ``quantization_config``."""
    from codesign.quantize.formats import save_tensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t = dict(floats)
    first = None
    for n, qw in weights.items():  # one pass: weights may be read from storage on access
        first = first or qw
        if qw.bits != first.bits:
            raise ConfigError("an AutoAWQ GEMM checkpoint holds one bit width")
        pack_out = pack_awq if qw.bits == 4 else (lambda values, b=qw.bits: pack(values, b, dim=1))
        t[f"{n}.qweight"] = pack_out(qw.qint.T.contiguous())
        t[f"{n}.qzeros"] = pack_out(qw.zeros)
        t[f"{n}.scales"] = qw.scales.half()
    save_tensors(t, folder / "model.safetensors")
    qc = quantization_config(first)
    bits = first.bits
    legacy = {"quant_method": "awq", "zero_point": qc["zero_point"], "q_group_size": qc["group_size"],
              "w_bit": bits, "version": "gemm"}
    (folder / "quant_config.json").write_text(json.dumps(legacy, indent=2))
    if config is not None:
        (folder / "config.json").write_text(json.dumps({**config, "quantization_config": qc}, indent=2))
    return folder
