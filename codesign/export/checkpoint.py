"""Write one variant as a Hugging Face checkpoint folder.

The quantized linears go out in the chosen layout from the variant's stored integers (never
re-quantized, so the export dequantizes to exactly the weights codesign evaluated); every other
tensor (embeddings, norms, head, biases, AWQ-scaled norms) comes from :func:`load_variant`, the same
code that applies a variant's float tensors for evaluation. A dense member is written in float.

Folder contents: ``model.safetensors``, ``config.json`` (with ``quantization_config``),
``quantize_config.json`` (GPTQ) or ``quant_config.json`` (AWQ), tokenizer files,
``generation_config.json``, ``codesign_variant.json`` (the cache record: spec, calibration,
per-layer errors, versions) and ``README.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from codesign.export.formats import ExportFormat
from codesign.export.resolve import Member
from codesign.quantize import cache
from codesign.quantize.grid import QuantizedWeight

FLOAT_DTYPES = ("float16", "bfloat16", "float32")


class StoredWeights(Mapping):
    """``{linear: QuantizedWeight}`` of a cache entry, unpacked on access and not kept: a writer
    going through the linears holds one unpacked weight at a time, whatever the model's size."""

    def __init__(self, spec, tensors: dict[str, torch.Tensor], record: dict):
        self.spec, self.tensors, self.names = spec, tensors, list(record["linears"])

    def __getitem__(self, name: str) -> QuantizedWeight:
        s = self.spec
        return QuantizedWeight.from_tensors(self.tensors, name, s.bits, s.group_size, s.sym)

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def stored_grids(member: Member) -> dict[str, QuantizedWeight]:
    """The grids of a cached variant (shapes, scales, zero points, group index) with its integers
    left packed: all the format checks read."""
    s = member.spec
    tensors, record = cache.read_entry(member.entry)
    return {n: QuantizedWeight.from_tensors(tensors, n, s.bits, s.group_size, s.sym, ints=False)
            for n in record["linears"]}


def float_tensors(model, quantized: set[str], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every saved tensor of ``model`` except the weights of ``quantized`` linears, floats cast to
    ``dtype``; a tensor tied to an earlier one (the head tied to the embeddings) is left out, as
    ``save_pretrained`` does."""
    out, seen = {}, set()
    for name, t in model.state_dict().items():
        if name.endswith(".weight") and name[: -len(".weight")] in quantized:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen.add(key)
        out[name] = (t.to(dtype) if t.is_floating_point() else t).detach().clone().contiguous()
    return out


def hf_config(model, dtype: str) -> dict:
    """``config.json`` of ``model`` with the export dtype and without a quantization config."""
    d = model.config.to_dict()
    d.pop("quantization_config", None)
    d["architectures"] = [type(model).__name__]
    d["dtype"] = d["torch_dtype"] = dtype
    return d


def _save_side_files(lm, folder: Path) -> list[str]:
    """Tokenizer and generation config; returns notes for what could not be saved."""
    notes = []
    if lm.tokenizer is not None:
        lm.tokenizer.save_pretrained(str(folder))
    else:
        notes.append("the source checkpoint had no tokenizer files; copy them from the base model")
    if getattr(lm.model, "generation_config", None) is not None:
        lm.model.generation_config.save_pretrained(str(folder))
    return notes


def serving_notes(weights: dict[str, QuantizedWeight]) -> list[str]:
    """Loader limits the checkpoint is within the format but outside of (shown in README and CLI)."""
    short = sorted({q.shape[1] for q in weights.values() if q.group_size != -1 and q.shape[1] % q.group_size})
    if short:
        gs = next(iter(weights.values())).group_size
        return [f"input widths {short} are not multiples of group_size {gs}: the last group of those "
                "linears is shorter, which AutoGPTQ and GPTQModel read and vLLM refuses "
                "(quantize with a group size dividing every width to serve with vLLM)"]
    return []


def write_quantized(member: Member, fmt: ExportFormat, folder: Path, dtype: str) -> tuple[dict, list[str]]:
    """Write a quantized member; returns its cache record and the serving notes."""
    from codesign.quantize.variant import load_base

    lm, tensors, record = load_base(member.spec, member.entry)
    weights = StoredWeights(member.spec, tensors, record)
    floats = float_tensors(lm.model, set(weights), getattr(torch, dtype))
    ex = dict(member.spec.extra)
    damp = float(ex.get("damp", 0.05)) if member.spec.method == "gptq" else 0.1
    meta = {"quantizer": ["codesign:0.1.0"], "codesign_variant_id": member.spec.variant_id}
    fmt.write(folder, weights, floats, hf_config(lm.model, dtype), meta, damp)
    notes = _save_side_files(lm, folder) + serving_notes(stored_grids(member))
    (folder / "codesign_variant.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    return record, notes


def write_dense(member: Member, folder: Path, dtype: str) -> list[str]:
    """Write the unquantized model of an ensemble as a float checkpoint."""
    from codesign.models import load_model
    from codesign.quantize.formats import save_tensors

    lm = load_model(member.spec.model, dtype="float32")
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(float_tensors(lm.model, set(), getattr(torch, dtype)), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(hf_config(lm.model, dtype), indent=2))
    return _save_side_files(lm, folder)
