"""Quantization: native RTN, GPTQ and AWQ in plain torch, a variant catalogue, a checkpoint cache, and import of AutoGPTQ/AutoAWQ checkpoints.

Public API (imported lazily, so ``import codesign.quantize`` does not pull in torch):

- :func:`get_method` / :func:`method_names` — the method registry (``rtn``, ``gptq``, ``awq``);
- :func:`quantize_variant` — quantize a :class:`~codesign.records.VariantSpec` into the cache;
- :func:`load_variant` — a model carrying a variant's weights (dequantized, or packed);
- :class:`Catalogue` — a YAML grid of variants;
- :func:`import_checkpoint` — AutoGPTQ / AutoAWQ checkpoint folders as variants;
- :mod:`codesign.quantize.qlinear` — ``QuantLinear`` and ``replace_linears`` (fast RTN for timing);
- :mod:`codesign.quantize.kernels` — the kernels quantized linears run on, chosen by device, dtype, format.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "get_method": "codesign.quantize.registry",
    "method_names": "codesign.quantize.registry",
    "register_method": "codesign.quantize.registry",
    "QuantMethod": "codesign.quantize.registry",
    "QuantConfig": "codesign.quantize.registry",
    "quantize_variant": "codesign.quantize.variant",
    "load_variant": "codesign.quantize.variant",
    "validate_spec": "codesign.quantize.variant",
    "Catalogue": "codesign.quantize.catalogue",
    "import_checkpoint": "codesign.quantize.formats",
    "QuantLinear": "codesign.quantize.qlinear",
    "replace_linears": "codesign.quantize.qlinear",
    "QuantizedWeight": "codesign.quantize.grid",
    "quantize_model": "codesign.quantize.sequential",
    "calibration_tokens": "codesign.quantize.calibration",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codesign.quantize' has no attribute {name!r}")
