"""The layer-by-layer driver shared by every method.

Calibration tokens go through the model once, up to the first decoder layer; from then on only
one decoder layer runs at a time on the cached hidden states: a first pass with hooks collects
each linear group's input statistics (``H = E[x xᵀ]``, ``E|x|``), the method quantizes the layer,
and a second pass through the now-quantized layer produces the next layer's inputs. So every
layer is calibrated on activations that went through the already-quantized layers before it,
and the model is never re-run from the start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from codesign.quantize.grid import QuantizedWeight, single_thread
from codesign.quantize.registry import GroupStats, QuantConfig, QuantMethod
from codesign.quantize.walker import (LayerHandle, LayerInputs, capture_first_layer_inputs, run_layer,
                                      set_weight, walk)


@dataclass
class QuantResult:
    """Everything a quantized variant consists of, ready for the cache."""

    weights: dict[str, QuantizedWeight] = field(default_factory=dict)
    float_params: dict[str, torch.Tensor] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    layer_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0


def collect_stats(layer: LayerHandle, inputs: LayerInputs) -> tuple[dict[str, GroupStats], list[torch.Tensor]]:
    """Run ``layer`` on the cached inputs with hooks on each group's first linear.

    Returns per-group stats keyed by the group's first linear name, and the layer's outputs.
    """
    acc: dict[str, list] = {}
    handles = []
    for g in layer.groups:
        name = g.names[0]
        acc[name] = [None, None, 0]

        def hook(_mod, args, _name=name):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            a = acc[_name]
            xtx, s = x.T @ x, x.abs().sum(0)
            a[0] = xtx if a[0] is None else a[0] + xtx
            a[1] = s if a[1] is None else a[1] + s
            a[2] += x.shape[0]

        handles.append(g.modules[0].register_forward_pre_hook(hook))
    try:
        outs = run_layer(layer.module, inputs)
    finally:
        for h in handles:
            h.remove()
    stats = {}
    for name, (xtx, s, n) in acc.items():
        if xtx is None:
            raise RuntimeError(f"linear {name} received no input during the calibration pass")
        stats[name] = GroupStats(hessian=xtx / n, act_abs_mean=s / n, n_tokens=n)
    return stats, outs


def quantize_model(model, method: QuantMethod, cfg: QuantConfig, calib_ids: torch.Tensor | None = None, *,
                   batch_size: int = 8, progress: bool = True, desc: str | None = None) -> QuantResult:
    """Quantize ``model`` in place (its linears end up holding the dequantized weights).

    Args:
        calib_ids: ``(n_samples, seq_len)`` token ids; required when ``method.needs_calibration``.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    handles = walk(model)
    res = QuantResult()
    inputs = None
    if calib_ids is not None:
        inputs = capture_first_layer_inputs(model, calib_ids, batch_size)
    elif method.needs_calibration:
        raise ValueError(f"method {method.name!r} needs calibration tokens")
    bar = tqdm(handles, desc=desc or f"{method.name} w{cfg.bits}", unit="layer", disable=not progress)
    for layer in bar:
        tl = time.perf_counter()
        stats = None
        if inputs is not None:
            stats, _ = collect_stats(layer, inputs)
        with single_thread():  # small-op loops: see single_thread's docstring
            out = method.quantize_layer(layer, stats, cfg)
            for name, mod in layer.linears().items():
                set_weight(mod, out.weights[name].dequantize())
                if getattr(mod, "bias", None) is not None:
                    res.float_params[f"{name}.bias"] = mod.bias.detach().clone()
        res.weights.update(out.weights)
        res.float_params.update(out.float_params)
        res.errors.update(out.errors)
        if inputs is not None and layer.index + 1 < len(handles):
            inputs = LayerInputs(run_layer(layer.module, inputs), inputs.kwargs)
        res.layer_seconds.append(time.perf_counter() - tl)
        if out.errors:
            bar.set_postfix(err=f"{sum(out.errors.values()) / len(out.errors):.2e}")
    res.seconds = time.perf_counter() - t0
    return res
