"""The AutoGPTQ checkpoint format, read and written without AutoGPTQ.

Per quantized linear ``<name>``: ``qweight`` ``(in*bits/32, out)`` int32 packed along the input
axis (bit stream, so 3-bit values straddle words), ``qzeros`` ``(n_groups, out*bits/32)`` int32
packed along the output axis, ``scales`` ``(n_groups, out)`` float16, ``g_idx`` ``(in,)`` int32
(group of each input column; a permutation under ``desc_act``), optional ``bias``. Settings in
``quantize_config.json`` (``bits``, ``group_size``, ``desc_act``, ``sym``, ``checkpoint_format``).

In the original (``checkpoint_format: gptq``, "v1") layout the stored zero points are
``zero - 1`` and readers add 1 back; ``gptq_v2`` stores them as is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from codesign.quantize.grid import QuantizedWeight, contiguous_g_idx
from codesign.quantize.packing import pack, unpack

SUFFIXES = ("qweight", "qzeros", "scales", "g_idx", "bias")


def read_autogptq(folder: Path):
    """``(quantize_config, {name: QuantizedWeight}, {name: float tensor})`` of a checkpoint folder."""
    from codesign.quantize.formats import quant_config, read_tensors

    qc = dict(quant_config(folder))
    bits, gs = int(qc["bits"]), int(qc.get("group_size", -1))
    qc.setdefault("sym", True)
    offset = 0 if str(qc.get("checkpoint_format", qc.get("format", "gptq"))).lower() == "gptq_v2" else 1
    t = read_tensors(folder)
    names = sorted(k[: -len(".qweight")] for k in t if k.endswith(".qweight"))
    weights = {}
    for n in names:
        qint = unpack(t[f"{n}.qweight"], bits, dim=0).T.contiguous()  # (out, in)
        zeros = unpack(t[f"{n}.qzeros"], bits, dim=1) + offset
        width = qint.shape[1]
        g_idx = t.get(f"{n}.g_idx")
        g_idx = contiguous_g_idx(width, gs) if g_idx is None else g_idx.to(torch.int32)
        weights[n] = QuantizedWeight(qint.to(torch.int32), t[f"{n}.scales"].float(), zeros.to(torch.int32),
                                     g_idx, bits, gs, bool(qc["sym"]))
    quantized = {f"{n}.{s}" for n in names for s in SUFFIXES[:4]}
    floats = {k: v for k, v in t.items() if k not in quantized}
    return {**qc, "bits": bits, "group_size": gs}, weights, floats


#: Widths every GPTQ loader reads: transformers' ``GPTQConfig`` accepts only these, as do AutoGPTQ and
#: vLLM's GPTQ kernels (GPTQModel's torch kernel also reads 5-7 bits, nothing else does).
WRITE_BITS = (2, 3, 4, 8)
#: Group sizes of GPTQModel's kernels (transformers loads GPTQ checkpoints through GPTQModel); -1 is
#: one group per output row. A size that does not divide a width leaves a short last group, which
#: AutoGPTQ and GPTQModel read (``ceil(in / group_size)`` groups) and vLLM refuses.
WRITE_GROUP_SIZES = (-1, 16, 32, 64, 128, 256, 512, 1024)
#: ``gptq`` (v1: zero points stored minus one, read by every loader) or ``gptq_v2`` (as is: GPTQModel,
#: and vLLM since its GPTQv2 support, vllm-project/vllm#26092).
CHECKPOINT_FORMATS = ("gptq", "gptq_v2")


def writable_problems(weights: dict[str, QuantizedWeight], checkpoint_format: str = "gptq") -> list[str]:
    """Why ``weights`` cannot be written as a loadable GPTQ checkpoint (empty list: they can).

    Symmetric and asymmetric grids and act-order group indices all fit; the v1 layout cannot hold
    a zero point of 0 (it stores ``zero - 1``, and loaders add the 1 back in packed words, where
    the stored -1 carries into the neighbouring value), so such grids need ``gptq_v2``."""
    from codesign.quantize.formats import layout_problems

    out = layout_problems(weights, checkpoint_format, WRITE_BITS, WRITE_GROUP_SIZES, divisible=False)
    if checkpoint_format == "gptq":
        zero = sum(int((q.zeros == 0).sum()) for q in weights.values())
        if zero:
            out.append(f"{zero} groups have zero point 0, which the v1 layout cannot store (allowed there: "
                       f"zero points >= 1; write checkpoint format gptq_v2 instead)")
    return out


def quantization_config(first: QuantizedWeight, desc_act: bool, checkpoint_format: str = "gptq",
                        meta: dict | None = None, damp_percent: float = 0.01) -> dict:
    """The ``quantization_config`` GPTQModel saves and transformers' ``GPTQConfig`` / vLLM read, for
    weights with ``first``'s settings (``desc_act``: some group index is permuted).

    ``damp_percent`` and ``true_sequential`` describe how the weights were made (GPTQ's Hessian
    damping; transformers requires 0 < damp < 1 even for grids GPTQ did not make)."""
    return {"bits": first.bits, "group_size": first.group_size, "desc_act": desc_act, "sym": first.sym,
            "lm_head": False, "quant_method": "gptq", "checkpoint_format": checkpoint_format,
            "format": checkpoint_format, "pack_dtype": "int32", "damp_percent": damp_percent,
            "true_sequential": True, "static_groups": False, "meta": dict(meta or {})}


def write_autogptq(folder: Path, weights: dict[str, QuantizedWeight], floats: dict[str, torch.Tensor],
                   config: dict | None = None, checkpoint_format: str = "gptq", meta: dict | None = None,
                   damp_percent: float = 0.01) -> Path:
    """Write ``weights`` (all with the same bits/group size/symmetry) in the AutoGPTQ layout:
    ``model.safetensors``, ``quantize_config.json`` and, given the model ``config``, ``config.json``
    with the same settings under ``quantization_config``."""
    from codesign.config import ConfigError
    from codesign.quantize.formats import save_tensors

    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise ConfigError(f"checkpoint format {checkpoint_format!r} is not a GPTQ layout (allowed: {list(CHECKPOINT_FORMATS)})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    offset = 1 if checkpoint_format == "gptq" else 0
    t = dict(floats)
    desc_act, first = False, None
    for n, qw in weights.items():  # one pass: weights may be read from storage on access
        first = first or qw
        mask = (1 << qw.bits) - 1
        t[f"{n}.qweight"] = pack(qw.qint.T, qw.bits, dim=0)
        t[f"{n}.qzeros"] = pack((qw.zeros - offset) & mask, qw.bits, dim=1)
        t[f"{n}.scales"] = qw.scales.half()
        t[f"{n}.g_idx"] = qw.g_idx.to(torch.int32).clone()
        desc_act = desc_act or not torch.equal(qw.g_idx, contiguous_g_idx(qw.shape[1], qw.group_size))
    save_tensors(t, folder / "model.safetensors")
    qc = quantization_config(first, desc_act, checkpoint_format, meta, damp_percent)
    (folder / "quantize_config.json").write_text(json.dumps(qc, indent=2))
    if config is not None:
        (folder / "config.json").write_text(json.dumps({**config, "quantization_config": qc}, indent=2))
    return folder
