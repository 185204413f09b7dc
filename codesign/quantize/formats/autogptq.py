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
    offset = 0 if str(qc.get("checkpoint_format", "gptq")).lower() == "gptq_v2" else 1
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


def write_autogptq(folder: Path, weights: dict[str, QuantizedWeight], floats: dict[str, torch.Tensor],
                   config: dict | None = None, checkpoint_format: str = "gptq") -> Path:
    """Write ``weights`` (all with the same bits/group size/symmetry) in the AutoGPTQ layout."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    first = next(iter(weights.values()))
    offset = 1 if checkpoint_format == "gptq" else 0
    mask = (1 << first.bits) - 1
    t = {k: v.contiguous() for k, v in floats.items()}
    for n, qw in weights.items():
        t[f"{n}.qweight"] = pack(qw.qint.T, qw.bits, dim=0)
        t[f"{n}.qzeros"] = pack((qw.zeros - offset) & mask, qw.bits, dim=1)
        t[f"{n}.scales"] = qw.scales.half()
        t[f"{n}.g_idx"] = qw.g_idx.to(torch.int32).clone()
    save_file(t, str(folder / "model.safetensors"))
    desc_act = any(not torch.equal(q.g_idx, contiguous_g_idx(q.shape[1], q.group_size)) for q in weights.values())
    qc = {"bits": first.bits, "group_size": first.group_size, "desc_act": desc_act, "sym": first.sym,
          "damp_percent": 0.01, "true_sequential": True, "quant_method": "gptq",
          "checkpoint_format": checkpoint_format}
    (folder / "quantize_config.json").write_text(json.dumps(qc, indent=2))
    if config is not None:
        (folder / "config.json").write_text(json.dumps({**config, "quantization_config": qc}, indent=2))
    return folder
