"""On-disk cache of quantized variants: ``<root>/<variant_id>/``.

Each entry holds ``weights.safetensors`` (per linear: ``qweight`` int32 packed along the input
axis, ``scales`` float16, ``qzeros_u8``, ``g_idx``; plus ``float.<param>`` for float tensors a
method changed, e.g. AWQ-scaled norms, and linear biases), ``variant.json`` (the spec, per-linear
reconstruction errors, timings, versions) and a ``.complete`` marker.

Writes are atomic: the entry is built in a temporary sibling folder, the marker written last,
and the folder renamed into place. A folder without the marker (a killed process, a copy that
broke off) is never read: it is removed and the variant redone. The marker records the weights
file's size and a checksum of its first and last MiB (cheap at any size); an entry whose weights
no longer match (truncated or overwritten after the fact) is reported, removed and redone too.
Entries from before the marker held these (``ok``) are checked against the sizes the
safetensors header itself declares.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codesign.paths import cache_dir
from codesign.store import pid_alive

if TYPE_CHECKING:  # torch only for annotations: reading markers and records must not import it
    import torch

FORMAT = "codesign-quant/1"
MARKER = ".complete"
WEIGHTS = "weights.safetensors"
RECORD = "variant.json"
FLOAT_PREFIX = "float."


def default_root() -> Path:
    return cache_dir() / "variants"


def is_complete(path: Path) -> bool:
    return (path / MARKER).exists() and (path / WEIGHTS).exists() and (path / RECORD).exists()


_CHUNK = 1 << 20


def weights_fingerprint(path: Path) -> dict[str, Any]:
    """Size and sha256 of the first and last MiB of a weights file: a truncated, extended or
    partly overwritten file changes one of them, and computing it reads at most 2 MiB."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_CHUNK))
        if size > _CHUNK:
            f.seek(max(_CHUNK, size - _CHUNK))
            h.update(f.read(_CHUNK))
    return {"weights_bytes": size, "weights_head_tail_sha256": h.hexdigest()}


def _safetensors_size(path: Path) -> int | None:
    """The file size a safetensors header declares (8 + header + the end of the last tensor), or
    None if the header itself is unreadable."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < (1 << 30):
                return None
            header = json.loads(f.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return 8 + n + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def damage(path: Path) -> str | None:
    """Why a complete-looking entry cannot be trusted (its weights do not match its marker, or
    the safetensors header for an old marker), or None when it is intact."""
    weights = path / WEIGHTS
    try:
        marker = json.loads((path / MARKER).read_text())
    except ValueError:
        marker = None  # an entry written before markers recorded the weights ("ok")
    if isinstance(marker, dict) and "weights_bytes" in marker:
        now = weights_fingerprint(weights)
        if now["weights_bytes"] != marker["weights_bytes"]:
            return f"weights file has {now['weights_bytes']:,} bytes, its marker recorded {marker['weights_bytes']:,}"
        if now["weights_head_tail_sha256"] != marker.get("weights_head_tail_sha256"):
            return "weights file's checksum differs from the one its marker recorded"
        return None
    declared, size = _safetensors_size(weights), weights.stat().st_size
    if declared is None:
        return "weights file has no readable safetensors header"
    if declared != size:
        return f"weights file has {size:,} bytes, its safetensors header declares {declared:,}"
    return None


def entry_path(variant_id: str, root: Path | None = None) -> Path:
    return Path(root or default_root()) / variant_id


def lookup(variant_id: str, root: Path | None = None) -> Path | None:
    """The complete entry for ``variant_id``, or None. Removes a half-written one."""
    p = entry_path(variant_id, root)
    if is_complete(p):
        why = damage(p)
        if why is None:
            return p
        print(f"cache: {p}: {why}; removing the entry, the variant is redone", file=sys.stderr)
    if p.exists():
        shutil.rmtree(p, ignore_errors=True)
    return None


def clean_stale(root: Path | None = None) -> list[Path]:
    """Remove temporary folders left by processes that died mid-write."""
    root = Path(root or default_root())
    removed = []
    for p in root.glob(".*.tmp-*"):
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def write_entry(variant_id: str, tensors: dict[str, torch.Tensor], record: dict[str, Any],
                root: Path | None = None) -> Path:
    """Atomically write an entry; if another process finished the same variant first, keep theirs."""
    from safetensors.torch import save_file

    root = Path(root or default_root())
    root.mkdir(parents=True, exist_ok=True)
    final = root / variant_id
    tmp = root / f".{variant_id}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS))
        record = {"format": FORMAT, "variant_id": variant_id, "created": time.time(), **record}
        (tmp / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
        (tmp / MARKER).write_text(json.dumps(weights_fingerprint(tmp / WEIGHTS)) + "\n")
        if final.exists() and not is_complete(final):
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_record(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / RECORD).read_text())


def read_entry(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and record of a complete entry (raises if it is not complete)."""
    from safetensors.torch import load_file

    from codesign.config import ConfigError

    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(f"{path}: not a complete quantized-variant entry (missing {MARKER})")
    why = damage(path)
    if why is not None:
        raise ConfigError(f"{path}: damaged quantized-variant entry: {why} (remove it, or rerun codesign quantize, "
                          "which redoes it)")
    return load_file(str(path / WEIGHTS)), read_record(path)


def list_entries(root: Path | None = None) -> list[dict[str, Any]]:
    root = Path(root or default_root())
    if not root.exists():
        return []
    return [read_record(p) for p in sorted(root.iterdir()) if p.is_dir() and is_complete(p)]
