"""Import of quantized checkpoints written by other tools (AutoGPTQ, AutoAWQ) as codesign variants.

:func:`import_checkpoint` detects the format, unpacks every quantized linear into a
:class:`~codesign.quantize.grid.QuantizedWeight`, keeps the float tensors (embeddings, norms,
head), and writes a regular cache entry, so the result loads with
:func:`codesign.quantize.load_variant` like any variant codesign quantized itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from codesign.config import ConfigError

FORMATS = ("autogptq", "autoawq")


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        bins = sorted(Path(folder).glob("*.bin"))
        if not bins:
            raise ConfigError(f"{folder}: no *.safetensors (or *.bin) weight files")
        out = {}
        for b in bins:
            out.update(torch.load(b, map_location="cpu", weights_only=True))
        return out
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """One safetensors file with the ``format: pt`` metadata transformers and vLLM check for."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # safetensors creates 0600; a serving container may run as another user


def layout_problems(weights: dict, fmt: str, bits: tuple[int, ...], group_sizes: tuple[int, ...],
                    divisible: bool) -> list[str]:
    """What keeps ``weights`` (``{name: QuantizedWeight}``) out of a checkpoint format that holds one
    bit width and group size from ``bits`` / ``group_sizes``, with every input and output width a
    multiple of 32 (the packed axes) and, if ``divisible``, of the group size (formats without a
    group index have no short last group). Empty when they fit."""
    settings = sorted({(q.bits, q.group_size, q.sym) for q in weights.values()})
    if len(settings) > 1:
        return [f"{fmt} holds one (bits, group size, sym) setting per checkpoint, the linears have {settings}"]
    b, gs, _ = settings[0]
    out = []
    if b not in bits:
        out.append(f"bits={b} (allowed in {fmt}: {list(bits)})")
    if gs not in group_sizes:
        out.append(f"group_size={gs} (allowed in {fmt}: {list(group_sizes)})")
    for n, q in weights.items():
        rows, width = q.shape
        if rows % 32 or width % 32:
            out.append(f"linear {n} has shape (out={rows}, in={width}) (allowed: both multiples of 32)")
            break
        if divisible and gs != -1 and width % gs:
            out.append(f"linear {n} has input width {width}, not a multiple of group_size {gs} "
                       f"(allowed in {fmt}: group sizes dividing every input width)")
            break
    return out


def quant_config(folder: Path) -> dict:
    """The quantization settings of a checkpoint folder (``quantize_config.json``,
    ``quant_config.json`` or ``config.json``'s ``quantization_config``)."""
    folder = Path(folder)
    for name in ("quantize_config.json", "quant_config.json"):
        if (folder / name).exists():
            return json.loads((folder / name).read_text())
    if (folder / "config.json").exists():
        qc = json.loads((folder / "config.json").read_text()).get("quantization_config")
        if qc:
            return qc
    raise ConfigError(f"{folder}: no quantize_config.json, quant_config.json or config.json "
                      "quantization_config: not a quantized checkpoint")


def detect_format(folder: Path) -> str:
    qc = quant_config(folder)
    qm = str(qc.get("quant_method", "")).lower()
    if qm == "awq" or "zero_point" in qc or str(qc.get("version", "")).lower() == "gemm":
        return "autoawq"
    if qm in ("gptq", "") and "bits" in qc:
        return "autogptq"
    raise ConfigError(f"{folder}: quantization method {qm!r} is not importable (allowed formats: {list(FORMATS)})")


def load_skeleton(folder: str, dtype: str = "float32"):
    """A float model built from a quantized checkpoint's config (weights set afterwards)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from codesign.models import LoadedModel

    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).eval()
    try:
        tok = AutoTokenizer.from_pretrained(folder)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
    except (OSError, ValueError, TypeError):
        tok = None
    return LoadedModel(model, tok, folder, folder)


def import_checkpoint(folder: str | Path, fmt: str | None = None, root: str | Path | None = None):
    """Convert an AutoGPTQ / AutoAWQ checkpoint folder into a cache entry.

    Returns:
        ``(VariantSpec, entry folder)``; ``load_variant(spec)`` then gives the model.
    """
    from codesign.quantize import cache
    from codesign.quantize.variant import IMPORTED
    from codesign.records import VariantSpec

    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: checkpoint folder not found")
    fmt = fmt or detect_format(folder)
    if fmt == "autogptq":
        from codesign.quantize.formats.autogptq import read_autogptq as reader
    elif fmt == "autoawq":
        from codesign.quantize.formats.autoawq import read_autoawq as reader
    else:
        raise ConfigError(f"unknown checkpoint format {fmt!r} (allowed: {list(FORMATS)})")
    qc, weights, floats = reader(folder)
    bits, gs, sym = int(qc["bits"]), int(qc["group_size"]), bool(qc["sym"])
    spec = VariantSpec(model=str(folder), method="gptq" if fmt == "autogptq" else "awq", bits=bits,
                       group_size=gs, sym=sym, calib=IMPORTED, seed=0, extra=(("source", fmt),))
    tensors = {}
    for name, qw in weights.items():
        tensors.update(qw.to_tensors(name))
    for name, t in floats.items():
        tensors[cache.FLOAT_PREFIX + name] = t.float()
    record = {"spec": spec.to_dict(), "short_name": spec.short_name, "model_source": str(folder),
              "linears": {n: list(q.shape) for n, q in weights.items()}, "imported_from": fmt,
              "quantize_config": qc, "errors": {}, "mean_error": None, "seconds": 0.0}
    return spec, cache.write_entry(spec.variant_id, tensors, record, Path(root) if root else None)
