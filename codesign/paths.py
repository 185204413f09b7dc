"""Where codesign finds data and keeps its caches.

Data is never copied into the project: the benchmark files are found through a data directory
(``--data-dir`` flags, else ``CODESIGN_DATA``, else a ``shared/data`` folder beside or inside the
working directory). The value ``hub`` selects the public sources instead, downloaded once into
the cache (:mod:`codesign.data.hub`). Quantized checkpoints and converted models go to
``CODESIGN_CACHE`` (default ``~/.cache/codesign``).
"""

from __future__ import annotations

import os
from pathlib import Path

from codesign.config import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir(explicit: str | Path | None = None, *, required: bool = True) -> Path | None:
    """Resolve the benchmark data directory (see module docstring for the search order)."""
    chosen = explicit or os.environ.get("CODESIGN_DATA")
    if chosen is not None and str(chosen) == "hub":
        from codesign.data.hub import materialise

        return materialise()
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("CODESIGN_DATA"):
        candidates.append(Path(os.environ["CODESIGN_DATA"]))
    else:
        for base in (Path.cwd(), PROJECT_ROOT):
            candidates += [base / "shared" / "data", base.parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if not required:
        return None
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"benchmark data directory not found (tried: {tried}). Pass --data-dir or set CODESIGN_DATA "
        "to a folder holding mmlu/, advglue/, adult/, ethics/, decodingtrust/ (see README), or to 'hub' "
        "to download them (codesign data fetch)."
    )


def cache_dir(explicit: str | Path | None = None) -> Path:
    """Root of codesign's on-disk caches (quantized variants, converted models)."""
    root = Path(explicit or os.environ.get("CODESIGN_CACHE") or Path.home() / ".cache" / "codesign")
    root.mkdir(parents=True, exist_ok=True)
    return root
