"""Loading causal LMs: real checkpoints from disk (HF folders, GGUF), the offline SmolLM2, tiny
random-weight models built from a config, and built-in shapes with random weights for timing."""

from codesign.models.loading import (  # noqa: F401
    DEFAULT_MODEL,
    LoadedModel,
    builtin_shape_names,
    load_model,
    model_config,
    resolve_model,
)
