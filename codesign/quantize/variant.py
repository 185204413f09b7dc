"""Quantized variants end to end: :func:`quantize_variant` (quantize a :class:`VariantSpec`, or
return its cached checkpoint at once) and :func:`load_variant` (a model with that variant's
weights, either dequantized to float or as packed :class:`QuantLinear` modules)."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from codesign.config import ConfigError
from codesign.records import VariantSpec
from codesign.quantize import cache

DEFAULT_N_SAMPLES = 32
DEFAULT_SEQ_LEN = 256
IMPORTED = "imported"  # VariantSpec.calib of checkpoints imported from other tools


def method_options(spec: VariantSpec) -> dict[str, Any]:
    return {k: v for k, v in dict(spec.extra).items() if k not in ("n_samples", "seq_len", "source")}


def model_widths(model: str) -> dict[str, int]:
    """Input width of every quantizable linear of ``model``, from its config alone: the model is
    built on the ``meta`` device (no weights, no memory), which also checks that its layout walks."""
    import torch
    from transformers import AutoModelForCausalLM

    from codesign.models import model_config
    from codesign.quantize.walker import linear_widths

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_config(model))
    return linear_widths(skeleton)


def validate_spec(spec: VariantSpec, check_model: bool = False) -> None:
    """Every check that can fail before work starts: method name and options, bits, group size,
    and with ``check_model`` the model's layout and widths (from its config, no weights loaded)."""
    from codesign.quantize.registry import check_bits, check_group_size, get_method

    if spec.is_dense:
        return
    if spec.calib == IMPORTED:
        return
    get_method(spec.method, **method_options(spec))
    check_bits(spec.bits)
    check_group_size(spec.group_size)
    ex = dict(spec.extra)
    for k in ("n_samples", "seq_len"):
        if k in ex and (not isinstance(ex[k], int) or ex[k] < 1):
            raise ConfigError(f"variant {spec.short_name}: {k} = {ex[k]!r} must be a positive integer")
    if check_model:
        check_group_size(spec.group_size, model_widths(spec.model))


def quantize_variant(spec: VariantSpec, *, calib=None, progress: bool = True, out: str | Path | None = None,
                     data_dir: str | Path | None = None, batch_size: int = 8, force: bool = False) -> Path | None:
    """Quantize ``spec`` into the cache (or ``out``) and return the entry's folder.

    Returns the cached entry at once when it exists (``force`` redoes it); ``None`` for dense.
    ``calib`` optionally gives the calibration tokens ``(n_samples, seq_len)`` directly instead
    of drawing them from ``spec.calib``.
    """
    import torch

    from codesign.models import load_model
    from codesign.quantize.calibration import DEFAULT_SOURCE, calibration_tokens
    from codesign.quantize.registry import QuantConfig, check_group_size, get_method
    from codesign.quantize.sequential import quantize_model
    from codesign.quantize.walker import linear_widths

    if spec.is_dense:
        return None
    validate_spec(spec, check_model=True)
    root = Path(out) if out else None
    cache.clean_stale(root)
    hit = None if force else cache.lookup(spec.variant_id, root)
    if hit is not None:
        return hit
    if spec.calib == IMPORTED:
        raise ConfigError(f"variant {spec.variant_id} was imported from a checkpoint and is no longer in the "
                          f"cache ({cache.entry_path(spec.variant_id, root)}); import it again")
    method = get_method(spec.method, **method_options(spec))
    lm = load_model(spec.model, dtype="float32")
    check_group_size(spec.group_size, linear_widths(lm.model))  # before any calibration work
    ex = dict(spec.extra)
    ids, calib_info = None, None
    if method.needs_calibration:
        if calib is not None:
            ids = torch.as_tensor(calib, dtype=torch.int64)
            calib_info = {"source": "tokens given by caller", "shape": list(ids.shape)}
        else:
            source = DEFAULT_SOURCE if spec.calib in ("none", "") else spec.calib
            n, L = int(ex.get("n_samples", DEFAULT_N_SAMPLES)), int(ex.get("seq_len", DEFAULT_SEQ_LEN))
            ids = calibration_tokens(lm.tokenizer, source, n, L, spec.seed, data_dir)
            calib_info = {"source": source, "n_samples": n, "seq_len": L, "seed": spec.seed}
    cfg = QuantConfig(spec.bits, spec.group_size, spec.sym)
    torch.manual_seed(spec.seed)
    res = quantize_model(lm.model, method, cfg, ids, batch_size=batch_size, progress=progress,
                         desc=spec.short_name)
    tensors = {}
    shapes = {}
    for name, qw in res.weights.items():
        tensors.update(qw.to_tensors(name))
        shapes[name] = list(qw.shape)
    for name, t in res.float_params.items():
        tensors[cache.FLOAT_PREFIX + name] = t.detach().float().contiguous()
    errs = list(res.errors.values())
    record = {
        "spec": spec.to_dict(),
        "short_name": spec.short_name,
        "model_source": lm.source,
        "linears": shapes,
        "error_metric": "relative output error ||(W-Q)X||^2/||WX||^2 on calibration activations"
        if ids is not None else "relative weight error ||W-Q||^2/||W||^2",
        "errors": res.errors,
        "mean_error": sum(errs) / max(len(errs), 1),
        "seconds": res.seconds,
        "layer_seconds": res.layer_seconds,
        "calibration": calib_info,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    return cache.write_entry(spec.variant_id, tensors, record, root)


def _base_model(spec: VariantSpec, record: dict, dtype: str):
    """The float model a variant's tensors apply to."""
    from codesign.models import load_model

    if spec.calib == IMPORTED:
        from codesign.quantize.formats import load_skeleton

        return load_skeleton(spec.model, dtype)
    return load_model(spec.model, dtype=dtype)


def load_base(spec: VariantSpec, entry: str | Path, dtype: str = "float32"):
    """``(LoadedModel, tensors, record)``: the float model a cached variant applies to, with the
    entry's float tensors (AWQ-scaled norms, biases, ...) applied; its quantized linears still hold
    the float weights (:func:`load_variant` replaces them, an export writes the integers)."""
    import torch

    tensors, record = cache.read_entry(Path(entry))
    lm = _base_model(spec, record, dtype)
    state = dict(lm.model.named_parameters())
    state.update(dict(lm.model.named_buffers()))
    with torch.no_grad():
        for key, t in tensors.items():
            if key.startswith(cache.FLOAT_PREFIX):
                name = key[len(cache.FLOAT_PREFIX):]
                if name not in state:
                    raise ConfigError(f"{entry}: tensor {name} does not exist in model {spec.model}")
                state[name].copy_(t.to(state[name].dtype).reshape(state[name].shape))
    return lm, tensors, record


def load_variant(spec: VariantSpec, *, device: str = "cpu", dtype: str = "float32", packed: bool = False,
                 path: str | Path | None = None, progress: bool = True):
    """A :class:`~codesign.models.LoadedModel` with ``spec``'s weights (quantizing it first if needed).

    ``packed=False``: plain linears holding the dequantized weights (fastest on CPU).
    ``packed=True``: :class:`QuantLinear` modules that keep packed ints and dequantize on the fly.
    """
    import torch

    from codesign.models import load_model
    from codesign.quantize.grid import QuantizedWeight
    from codesign.quantize.qlinear import QuantLinear, set_module
    from codesign.quantize.walker import set_weight

    if spec.is_dense:
        return load_model(spec.model, dtype=dtype, device=device)
    entry = Path(path) if path else quantize_variant(spec, progress=progress)
    lm, tensors, record = load_base(spec, entry, dtype)
    model = lm.model
    with torch.no_grad():
        for name in record["linears"]:
            qw = QuantizedWeight.from_tensors(tensors, name, spec.bits, spec.group_size, spec.sym)
            mod = model.get_submodule(name)
            if packed:
                q = QuantLinear.from_quantized(qw, getattr(mod, "bias", None))
                set_module(model, name, q)
            else:
                set_weight(mod, qw.dequantize(getattr(torch, dtype)))
    model.to(device).eval()
    lm.source = f"{lm.source} + {entry}"
    return lm
