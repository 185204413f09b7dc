"""The layer-by-layer driver shared by every method.

Calibration tokens go through the model once, up to the first decoder layer; from then on only
one decoder layer runs at a time on the cached hidden states: a first pass with hooks collects
each linear group's input statistics (``H = E[x xᵀ]``, ``E|x|``), the method quantizes the layer,
and a second pass through the now-quantized layer produces the next layer's inputs. A method run
with ``true_sequential`` (a GPTQ option) instead takes one group at a time, each group's pass
stopping at its input, so a group is calibrated on what the already-quantized groups before it
produce. So every layer is calibrated on activations that went through the already-quantized
layers before it, and the model is never re-run from the start.
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


class _Captured(Exception):
    """Raised by a hook once the only statistics wanted are taken: the rest of the layer is skipped."""


def call_tokens(args: tuple, kwargs: dict) -> int:
    """Tokens in one block call: its hidden states ``(..., hidden)``, positional or by keyword."""
    hs = args[0] if args else kwargs["hidden_states"]
    return hs.shape[:-1].numel()


def collect_stats(layer: LayerHandle, inputs: LayerInputs, need_outputs: bool = True,
                  block_tokens: int = 0) -> tuple[dict[str, GroupStats], list[torch.Tensor]]:
    """Run ``layer`` on the cached inputs with hooks on each group's first linear.

    Returns per-group stats keyed by the group's first linear name, and the layer's outputs
    (an empty list with ``need_outputs=False`` and a single group: the pass then stops at that
    group's input, which saves most of the layer for early groups such as q/k/v). With
    ``block_tokens > 0`` each group that names a block also keeps that block's first calls, whole
    batches until at least ``block_tokens`` tokens are held.
    """
    acc: dict[str, list] = {}
    calls: dict[str, list] = {}
    handles = []
    stop = not need_outputs and len(layer.groups) == 1
    for g in layer.groups:
        name = g.names[0]
        acc[name] = [None, None, 0]
        calls[name] = []
        if block_tokens > 0 and g.block is not None:
            def block_hook(_mod, args, kwargs, _name=name):
                if sum(call_tokens(*c) for c in calls[_name]) < block_tokens:
                    calls[_name].append((tuple(args), dict(kwargs)))

            handles.append(g.block.register_forward_pre_hook(block_hook, with_kwargs=True))

        def hook(_mod, args, _name=name):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            a = acc[_name]
            xtx, s = x.T @ x, x.abs().sum(0)
            a[0] = xtx if a[0] is None else a[0] + xtx
            a[1] = s if a[1] is None else a[1] + s
            a[2] += x.shape[0]
            if stop:
                raise _Captured

        handles.append(g.modules[0].register_forward_pre_hook(hook))
    try:
        if stop:
            outs = []
            for hs, kw in zip(inputs.hidden, inputs.kwargs):
                try:
                    run_layer(layer.module, LayerInputs([hs], [kw]))
                except _Captured:
                    pass
        else:
            outs = run_layer(layer.module, inputs)
    finally:
        for h in handles:
            h.remove()
    stats = {}
    for name, (xtx, s, n) in acc.items():
        if xtx is None:
            raise RuntimeError(f"linear {name} received no input during the calibration pass")
        stats[name] = GroupStats(hessian=xtx / n, act_abs_mean=s / n, n_tokens=n, block_calls=calls[name])
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
        # True-sequential (AutoGPTQ's and GPTQModel's default; an option here): each group's statistics
        # come from a pass in which the groups before it in the layer are already quantized, so
        # o_proj compensates q/k/v's error and down_proj gate/up's. Otherwise one pass serves all.
        steps = [LayerHandle(layer.index, layer.prefix, layer.module, [g]) for g in layer.groups] \
            if inputs is not None and method.sequential_groups else [layer]
        errors: dict[str, float] = {}
        for step in steps:
            stats = (collect_stats(step, inputs, need_outputs=False, block_tokens=method.block_tokens)[0]
                     if inputs is not None else None)
            with single_thread():  # small-op loops: see single_thread's docstring
                out = method.quantize_layer(step, stats, cfg)
                for name, mod in step.linears().items():
                    set_weight(mod, out.weights[name].dequantize())
                    if getattr(mod, "bias", None) is not None:
                        res.float_params[f"{name}.bias"] = mod.bias.detach().clone()
            res.weights.update(out.weights)
            res.float_params.update(out.float_params)
            errors.update(out.errors)
        res.errors.update(errors)
        if inputs is not None and layer.index + 1 < len(handles):
            inputs = LayerInputs(run_layer(layer.module, inputs), inputs.kwargs)
        res.layer_seconds.append(time.perf_counter() - tl)
        if errors:
            bar.set_postfix(err=f"{sum(errors.values()) / len(errors):.2e}")
    res.seconds = time.perf_counter() - t0
    return res
