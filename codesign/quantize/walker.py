"""Finding a causal LM's decoder layers and the groups of linear layers inside each.

A *linear group* is a set of linears fed by the same input (``q/k/v`` after the attention norm,
``gate/up`` after the MLP norm, ...), together with the module that produces that input when a
per-channel scale can be folded into it (a norm, or a linear whose output feeds the group
directly). GPTQ shares one Hessian per group; AWQ searches one scale vector per group and folds
it into ``prev``.

Layouts are a registry keyed by ``config.model_type``; supporting a new architecture is one
:func:`register_layout` call. A model whose type is not registered fails with a clear error
before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from codesign.config import ConfigError


@dataclass(frozen=True)
class GroupSpec:
    """Linears (paths relative to a decoder layer) sharing one input; ``prev`` produces it."""

    linears: tuple[str, ...]
    prev: str | None = None  # norm or linear to fold AWQ scales into; None: not foldable
    prev_kind: str = "norm"  # "norm" or "linear"
    # The block (attention or MLP) whose output AWQ scores this group's scales on, as AutoAWQ's
    # and GPTQModel's ``module2inspect``: rounding error in q/k goes through the softmax and in
    # gate/up through the gated activation, which the group's own output does not show.
    # None: the group's own output (exact for o_proj/down_proj, the last linear of a block).
    block: str | None = None


@dataclass(frozen=True)
class Layout:
    """Where the decoder layers live and which linear groups each holds."""

    layers: str  # dotted path of the ModuleList of decoder layers
    groups: tuple[GroupSpec, ...]
    norms_with_offset: bool = False  # Gemma-style (1 + w) norms cannot absorb scales by division


LAYOUTS: dict[str, Layout] = {}


def register_layout(model_types: str | list[str], layout: Layout) -> None:
    for mt in [model_types] if isinstance(model_types, str) else model_types:
        LAYOUTS[mt] = layout


_LLAMA = Layout(
    layers="model.layers",
    groups=(
        GroupSpec(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "input_layernorm",
                  block="self_attn"),
        GroupSpec(("self_attn.o_proj",), "self_attn.v_proj", "linear"),
        GroupSpec(("mlp.gate_proj", "mlp.up_proj"), "post_attention_layernorm", block="mlp"),
        GroupSpec(("mlp.down_proj",), "mlp.up_proj", "linear"),
    ),
)
register_layout(["llama", "mistral", "qwen2", "qwen3"], _LLAMA)
register_layout("gpt2", Layout(
    layers="transformer.h",
    groups=(
        GroupSpec(("attn.c_attn",), "ln_1", block="attn"),
        GroupSpec(("attn.c_proj",), None),  # fed by attention over a fused qkv: nothing to fold into
        GroupSpec(("mlp.c_fc",), "ln_2", block="mlp"),
        GroupSpec(("mlp.c_proj",), None),  # behind a GELU
    ),
))
register_layout("gpt_neox", Layout(
    layers="gpt_neox.layers",
    groups=(
        GroupSpec(("attention.query_key_value",), "input_layernorm", block="attention"),
        GroupSpec(("attention.dense",), None),
        GroupSpec(("mlp.dense_h_to_4h",), "post_attention_layernorm", block="mlp"),
        GroupSpec(("mlp.dense_4h_to_h",), None),
    ),
))


def is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"


def get_weight(m: nn.Module) -> torch.Tensor:
    """The ``(out, in)`` weight of an ``nn.Linear`` or a GPT-2 ``Conv1D`` (stored ``(in, out)``)."""
    return m.weight.T if type(m).__name__ == "Conv1D" else m.weight


def set_weight(m: nn.Module, w: torch.Tensor) -> None:
    """Write an ``(out, in)`` weight back in the module's own orientation and dtype."""
    with torch.no_grad():
        m.weight.copy_((w.T if type(m).__name__ == "Conv1D" else w).to(m.weight.dtype))


def in_out(m: nn.Module) -> tuple[int, int]:
    o, i = get_weight(m).shape
    return i, o


@dataclass
class ResolvedGroup:
    spec: GroupSpec
    names: list[str]  # full dotted names in the model
    modules: list[nn.Module]
    prev: nn.Module | None
    block: nn.Module | None = None


@dataclass
class LayerHandle:
    index: int
    prefix: str  # e.g. "model.layers.3"
    module: nn.Module
    groups: list[ResolvedGroup] = field(default_factory=list)

    def linears(self) -> dict[str, nn.Module]:
        return {n: m for g in self.groups for n, m in zip(g.names, g.modules)}


def get_layout(model: nn.Module) -> Layout:
    mt = getattr(getattr(model, "config", None), "model_type", None)
    if mt not in LAYOUTS:
        raise ConfigError(
            f"cannot walk the decoder layers of model type {mt!r} ({type(model).__name__}): "
            f"supported model types: {sorted(LAYOUTS)}. Register a Layout in codesign/quantize/walker.py.")
    return LAYOUTS[mt]


def _get(root: nn.Module, path: str, what: str) -> nn.Module:
    m = root
    for part in path.split("."):
        if not hasattr(m, part):
            raise ConfigError(f"model layout mismatch: {what} has no submodule {path!r} "
                              f"({type(root).__name__}); this model cannot be walked")
        m = getattr(m, part)
    return m


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    layout = get_layout(model)
    layers = _get(model, layout.layers, type(model).__name__)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"{layout.layers} of {type(model).__name__} is not a list of decoder layers")
    return layout.layers, layers


def walk(model: nn.Module) -> list[LayerHandle]:
    """Every decoder layer with its resolved linear groups (checks the whole model up front)."""
    layout = get_layout(model)
    path, layers = decoder_layers(model)
    out = []
    for i, layer in enumerate(layers):
        h = LayerHandle(i, f"{path}.{i}", layer)
        for g in layout.groups:
            mods = [_get(layer, n, f"{path}.{i}") for n in g.linears]
            for n, m in zip(g.linears, mods):
                if not is_linear(m):
                    raise ConfigError(f"{path}.{i}.{n} is a {type(m).__name__}, not a linear layer")
            prev = _get(layer, g.prev, f"{path}.{i}") if g.prev else None
            if prev is not None and g.prev_kind == "linear":
                # v_proj -> o_proj only folds when v's outputs are o's inputs one to one (no GQA repeat).
                if in_out(prev)[1] != in_out(mods[0])[0]:
                    prev = None
            block = _get(layer, g.block, f"{path}.{i}") if g.block else None
            h.groups.append(ResolvedGroup(g, [f"{path}.{i}.{n}" for n in g.linears], mods, prev, block))
        out.append(h)
    return out


def linear_widths(model: nn.Module) -> dict[str, int]:
    """Input width of every quantizable linear, by full name."""
    return {n: in_out(m)[0] for h in walk(model) for n, m in h.linears().items()}


# -- running the model layer by layer ------------------------------------------------------------
class _Stop(Exception):
    pass


@dataclass
class LayerInputs:
    """Cached inputs of the current decoder layer for every calibration batch."""

    hidden: list[torch.Tensor]  # each (batch, seq, hidden)
    kwargs: list[dict]  # per batch: attention mask, position embeddings, ...


def capture_first_layer_inputs(model: nn.Module, input_ids: torch.Tensor, batch_size: int) -> LayerInputs:
    """Run the model up to its first decoder layer once per batch and keep that layer's inputs.

    Args:
        input_ids: ``(n_samples, seq_len)`` calibration tokens.
    """
    _, layers = decoder_layers(model)
    first = layers[0]
    hidden, kwargs = [], []

    def hook(_mod, args, kw):
        hs = args[0] if args else kw.pop("hidden_states")
        hidden.append(hs.detach())
        kw = {k: v for k, v in kw.items() if k not in ("past_key_values", "layer_past", "use_cache")}
        kwargs.append(dict(kw, **({"_args": args[1:]} if len(args) > 1 else {})))
        raise _Stop

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    dev = next(model.parameters()).device
    try:
        with torch.no_grad():
            for b in range(0, input_ids.shape[0], batch_size):
                try:
                    model(input_ids[b:b + batch_size].to(dev), use_cache=False)
                except _Stop:
                    pass
    finally:
        handle.remove()
    return LayerInputs(hidden, kwargs)


def run_layer(layer: nn.Module, inputs: LayerInputs) -> list[torch.Tensor]:
    """Apply one decoder layer to every cached batch; returns the next layer's hidden states."""
    outs = []
    with torch.no_grad():
        for hs, kw in zip(inputs.hidden, inputs.kwargs):
            kw = dict(kw)
            extra = kw.pop("_args", ())
            o = layer(hs, *extra, **kw)
            outs.append(o[0] if isinstance(o, (tuple, list)) else o)
    return outs


LinearFn = Callable[[nn.Module], None]
