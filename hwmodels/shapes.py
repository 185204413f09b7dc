"""Model shapes for the cost model, read from a Hugging Face ``config.json`` (no weights, no download).

Handles the key names of llama / mistral / qwen2 (q/k/v bias) / gpt2 (``n_embd``, ``n_layer``, fused
c_attn, learned positions) / gpt_neox (parallel residual, biases), grouped-query attention
(``num_key_value_heads``), explicit ``head_dim``, tied embeddings, and multimodal configs that nest the
language model under ``text_config``. Unknown ``model_type`` values are read with the llama key names.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codesign.config import ConfigError, echo

SHAPES_DIR = Path(__file__).resolve().parent / "shapes"

#: Model names used elsewhere in codesign that have a built-in shape here.
ALIASES = {"smollm2-135m-instruct": "smollm2-135m", "smollm2": "smollm2-135m",
           "qwen2.5-0.5b-instruct": "qwen2.5-0.5b"}


@dataclass(frozen=True)
class ModelShape:
    """Dimensions of a decoder-only transformer, enough to count every operator."""

    name: str
    arch: str
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool = True  # SwiGLU (gate, up, down) vs. 2-matrix MLP (up, down)
    qkv_bias: bool = False
    out_bias: bool = False  # o_proj and MLP biases (gpt2, neox)
    layernorm: bool = False  # LayerNorm (weight+bias) vs RMSNorm (weight)
    tied_embeddings: bool = False
    learned_positions: int = 0  # rows of a learned position table (gpt2), else 0 (rotary)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def linear_params_per_layer(self) -> int:
        h, i = self.hidden, self.intermediate
        attn = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        mlp = (3 if self.gated_mlp else 2) * h * i
        return attn + mlp

    @property
    def n_params(self) -> int:
        """Total parameters (linears, embeddings, lm head unless tied, norms, biases, positions)."""
        h = self.hidden
        emb = self.vocab * h * (1 if self.tied_embeddings else 2)
        norms = (2 * self.n_layers + 1) * h * (2 if self.layernorm else 1)
        bias = self.n_layers * self.bias_per_layer
        return self.n_layers * self.linear_params_per_layer + emb + norms + bias + self.learned_positions * h

    @property
    def bias_per_layer(self) -> int:
        b = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        if self.out_bias:
            b += self.hidden + self.intermediate * (2 if self.gated_mlp else 1) + self.hidden
        return b

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Largest sensible value of each kind of dimension (far above any published model; a bigger value
#: is a typo or an overflow, and would make every derived number meaningless).
_MAX_DIM = {"layers": 10_000, "width": 1_000_000, "heads": 100_000, "vocab": 100_000_000, "positions": 100_000_000}


def _find(cfg: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    for k in keys:
        if cfg.get(k) is not None:
            return k, cfg[k]
    return keys[0], None


def _dim(cfg: dict[str, Any], *keys: str, source: str, kind: str, default: Any = ConfigError) -> int:
    """The first of ``keys`` present in ``cfg`` as a whole number in 1.._MAX_DIM[kind] (``default``
    when none is present; missing without a default, a fraction, text, NaN or out of range: an error
    naming the file, the field, the value and the allowed range)."""
    key, v = _find(cfg, keys)
    if v is None:
        if default is ConfigError:
            raise ConfigError(f"{source}: missing field {' / '.join(keys)} (needed for the model shape)")
        return default
    hi = _MAX_DIM[kind]
    whole = isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())
    if isinstance(v, bool) or not whole or not 1 <= v <= hi:
        raise ConfigError(f"{source}: {key} = {echo(v)} is not allowed (allowed: a whole number from 1 to {hi:,})")
    return int(v)


def shape_from_config(cfg: dict[str, Any], name: str = "model", source: str = "<config>") -> ModelShape:
    """Build a :class:`ModelShape` from a config.json mapping."""
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", cfg.get("model_type"))}
    mt = str(cfg.get("model_type", "llama")).lower()
    if mt == "gpt2":
        h = _dim(cfg, "n_embd", "hidden_size", source=source, kind="width")
        heads = _dim(cfg, "n_head", "num_attention_heads", source=source, kind="heads")
        _divides(heads, h, "n_embd / hidden_size", source)
        return ModelShape(
            name=name, arch=mt, n_layers=_dim(cfg, "n_layer", "num_hidden_layers", source=source, kind="layers"),
            hidden=h, n_heads=heads, n_kv_heads=heads, head_dim=h // heads,
            intermediate=_dim(cfg, "n_inner", source=source, kind="width", default=4 * h),
            vocab=_dim(cfg, "vocab_size", source=source, kind="vocab"), gated_mlp=False, qkv_bias=True,
            out_bias=True, layernorm=True, tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
            learned_positions=_dim(cfg, "n_positions", "max_position_embeddings", source=source, kind="positions",
                                   default=0))
    h = _dim(cfg, "hidden_size", "d_model", "n_embd", source=source, kind="width")
    heads = _dim(cfg, "num_attention_heads", "n_head", source=source, kind="heads")
    kv = _dim(cfg, "num_key_value_heads", source=source, kind="heads", default=heads)
    if cfg.get("head_dim") is None:
        _divides(heads, h, "hidden_size", source)
    hd = _dim(cfg, "head_dim", source=source, kind="width", default=h // heads)
    inter = _dim(cfg, "intermediate_size", "ffn_dim", source=source, kind="width", default=4 * h)
    layers = _dim(cfg, "num_hidden_layers", "n_layer", "num_layers", source=source, kind="layers")
    vocab = _dim(cfg, "vocab_size", source=source, kind="vocab")
    if heads % kv:
        raise ConfigError(f"{source}: num_key_value_heads = {kv} is not allowed (allowed: a divisor of "
                          f"num_attention_heads = {heads})")
    if mt == "gpt_neox":
        return ModelShape(name=name, arch=mt, n_layers=layers, hidden=h, n_heads=heads, n_kv_heads=kv, head_dim=hd,
                          intermediate=inter, vocab=vocab, gated_mlp=False, qkv_bias=True, out_bias=True,
                          layernorm=True, tied_embeddings=bool(cfg.get("tie_word_embeddings", False)))
    qkv_bias = mt in ("qwen2",) or bool(cfg.get("attention_bias", False)) or bool(cfg.get("qkv_bias", False))
    return ModelShape(name=name, arch=mt, n_layers=layers, hidden=h, n_heads=heads, n_kv_heads=kv, head_dim=hd,
                      intermediate=inter, vocab=vocab, gated_mlp=True, qkv_bias=qkv_bias,
                      out_bias=bool(cfg.get("mlp_bias", False)) and bool(cfg.get("attention_bias", False)),
                      layernorm=False, tied_embeddings=bool(cfg.get("tie_word_embeddings", False)))


def _divides(heads: int, width: int, field: str, source: str) -> None:
    if width % heads:
        raise ConfigError(f"{source}: num_attention_heads = {heads} does not divide {field} = {width} "
                          "(allowed: a divisor of the width, or give head_dim)")


def builtin_shapes() -> list[str]:
    return sorted(p.stem for p in SHAPES_DIR.glob("*.json"))


def load_shape(name_or_path: str | Path | ModelShape) -> ModelShape:
    """A shape from a built-in name, a ``config.json`` path (or a folder holding one), or a codesign
    model name (``random:<shape>``, ``tiny-llama``, ``smollm2-135m-instruct``, a local HF folder)."""
    if isinstance(name_or_path, ModelShape):
        return name_or_path
    text = str(name_or_path)
    if text.startswith("random:"):
        text = text.split(":", 1)[1]
    text = ALIASES.get(text.lower(), text)
    p = Path(text)
    if p.is_dir():
        p = p / "config.json"
    if p.suffix == ".json" or p.exists():
        if not p.exists():
            raise ConfigError(f"{p}: file not found")
        try:
            cfg = json.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not UTF-8 text (expected a JSON file, a Hugging Face config.json)") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON: {exc}") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"{p}: expected a JSON object (a Hugging Face config.json)")
        name = p.parent.name if p.name == "config.json" else p.stem
        return shape_from_config(cfg, name=name, source=str(p))
    builtin = SHAPES_DIR / f"{text}.json"
    if builtin.exists():
        return shape_from_config(json.loads(builtin.read_text()), name=text, source=str(builtin))
    if text.startswith("tiny-"):  # codesign's tiny test models: their config is built in code
        from codesign.models.loading import _TINY, model_config

        if text in _TINY:
            return shape_from_config(model_config(text).to_dict(), name=text, source=text)
    raise ConfigError(f"unknown model shape {text!r} (built-in: {', '.join(builtin_shapes())}; "
                      "or a path to a Hugging Face config.json)")


#: Suffixes of fine-tuned variants that share their base model's shape.
VARIANT_SUFFIXES = ("-instruct", "-chat", "-base", "-hf", "-chat-hf")


def shape_name(model: str) -> str:
    """The built-in shape name or ``config.json`` path a codesign model name resolves to.

    Accepts ``random:<shape>``, built-in names and their aliases, Hugging Face ids and local folders
    (``org/SmolLM2-135M-Instruct`` -> ``smollm2-135m``: the last path part, lower-cased, without a
    fine-tuning suffix such as ``-instruct``), ``tiny-*`` test models, and config.json paths.
    """
    from codesign.models.loading import _TINY

    text = str(model).removeprefix("random:")
    p = Path(text)
    if p.is_dir() and (p / "config.json").exists():
        return str(p / "config.json")
    if p.suffix == ".json":
        return text
    stem = text.rstrip("/").split("/")[-1].lower()
    candidates = [text, text.lower(), stem] + [stem[: -len(s)] for s in VARIANT_SUFFIXES if stem.endswith(s)]
    known = set(builtin_shapes()) | set(_TINY)
    for c in candidates:
        c = ALIASES.get(c, c)
        if c in known:
            return c
    raise ConfigError(f"cannot infer a model shape for {model!r} (built-in: {', '.join(builtin_shapes())}; "
                      "or a config.json path or model folder)")


def resolve_shape(model: str | ModelShape, config: dict[str, Any] | None = None,
                  layers: int | None = None) -> ModelShape:
    """The one way codesign turns a model into a :class:`ModelShape`.

    ``config``: the model's own config mapping (a measurement stores the config it ran, possibly
    truncated to ``layers`` decoder layers) wins over the name. Otherwise :func:`shape_name`; a name
    it cannot map (a local model folder without a built-in shape, a GGUF) is read through its
    transformers config, without weights.
    """
    if isinstance(model, ModelShape):
        return model
    text = str(model)
    if config:
        name = text.removeprefix("random:").rstrip("/").split("/")[-1] + (f"-L{int(layers)}" if layers else "")
        return shape_from_config(config, name=name, source=f"config of {text}")
    try:
        return load_shape(shape_name(text))
    except ConfigError:
        from codesign.models import model_config

        try:
            cfg = model_config(text).to_dict()
        except Exception as exc:  # noqa: BLE001 - any loader failure means: no shape for this name
            raise ConfigError(f"cannot infer a model shape for {text!r} (built-in: {', '.join(builtin_shapes())}; "
                              f"or a config.json path or model folder): {exc}") from None
        return shape_from_config(cfg, name=text.rstrip("/").split("/")[-1].lower(), source=text)
