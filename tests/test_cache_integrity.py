"""The variant cache trusts an entry only when its weights match what its marker recorded: a
truncated or overwritten weights file is detected, reported and redone (never loaded)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codesign.config import ConfigError
from codesign.quantize import cache
from codesign.records import VariantSpec


SPEC = VariantSpec(model="tiny-llama", method="rtn", bits=4, group_size=32)


@pytest.fixture(scope="module")
def made_once(tmp_path_factory):
    from codesign.quantize import quantize_variant

    return quantize_variant(SPEC, out=tmp_path_factory.mktemp("variants"), progress=False)


@pytest.fixture()
def rtn_entry(made_once, tmp_path):
    """A fresh copy of one quantized entry (quantized once per module) in its own cache root."""
    root = tmp_path / "variants"
    path = Path(shutil.copytree(made_once, root / made_once.name))
    return SPEC, root, path


def test_marker_records_size_and_checksum(rtn_entry):
    _, _, path = rtn_entry
    marker = json.loads((path / cache.MARKER).read_text())
    assert marker == cache.weights_fingerprint(path / cache.WEIGHTS)
    assert marker["weights_bytes"] == (path / cache.WEIGHTS).stat().st_size
    assert cache.damage(path) is None


def test_truncated_weights_are_reported_and_redone(rtn_entry, capsys):
    from codesign.quantize import load_variant, quantize_variant

    spec, root, path = rtn_entry
    weights = path / cache.WEIGHTS
    full = weights.read_bytes()
    weights.write_bytes(full[: len(full) // 2])
    with pytest.raises(ConfigError, match="marker recorded"):
        cache.read_entry(path)  # never handed to safetensors
    assert cache.lookup(spec.variant_id, root) is None
    assert "removing the entry, the variant is redone" in capsys.readouterr().err
    again = quantize_variant(spec, out=root, progress=False)
    assert again == path and cache.damage(again) is None
    assert weights.read_bytes() == full  # RTN is deterministic: the redone entry is the same
    load_variant(spec, path=again, progress=False)


def test_overwritten_tail_is_detected(rtn_entry):
    _, _, path = rtn_entry
    weights = path / cache.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\x00" * 8 if data[-8:] != b"\x00" * 8 else b"\x01" * 8
    weights.write_bytes(bytes(data))
    assert "checksum" in cache.damage(path)


def test_old_marker_checked_against_safetensors_header(rtn_entry):
    """Entries written before markers held a fingerprint ("ok") are checked by the header's sizes."""
    spec, root, path = rtn_entry
    (path / cache.MARKER).write_text("ok\n")
    assert cache.damage(path) is None
    weights = path / cache.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "safetensors header declares" in cache.damage(path)
    assert cache.lookup(spec.variant_id, root) is None
    assert not path.exists()
