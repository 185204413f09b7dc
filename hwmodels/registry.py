"""Finding YAML files of one kind (accelerator specs, runtime profiles) by path, file stem or ``name:``.

Both kinds live in two folders, searched in order: the user's ``$CODESIGN_CACHE/<kind>/`` first (so a
measured or calibrated file overrides a built-in one of the same stem), then the built-in folder in
``hwmodels/``. One lookup serves both, so the two kinds resolve names the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BeforeValidator, ConfigDict

from codesign.config import ConfigError, StrictModel

SUFFIXES = (".yaml", ".yml", ".json")


class FiniteModel(StrictModel):
    """A strict config record whose float fields reject NaN and infinity."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True, allow_inf_nan=False)


def finite_in(lo: float, hi: float | None = None, lo_open: bool = False) -> BeforeValidator:
    """A validator that rejects NaN, infinity and values outside the range, naming the range.

    pydantic's own messages for NaN do not name the allowed range; this one always does.
    """
    allowed = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")

    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return v  # pydantic reports the type error
        if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
            raise ValueError(f"{v!r} is not allowed (allowed: a finite number {allowed})")
        return v

    return BeforeValidator(check)


@dataclass(frozen=True)
class YamlKind:
    """One kind of YAML file: ``word`` for messages, the user cache subfolder and the built-in folder."""

    word: str
    cache_sub: str
    builtin: Path

    def user_dir(self) -> Path:
        from codesign.paths import cache_dir

        return cache_dir() / self.cache_sub

    def files(self) -> list[Path]:
        out = []
        for d in (self.user_dir(), self.builtin):
            if d.is_dir():
                out += sorted(p for p in d.iterdir() if p.suffix in SUFFIXES)
        return out

    def names(self) -> list[str]:
        return sorted({p.stem for p in self.files()})

    def find(self, name_or_path: str | Path) -> Path:
        """The file for a path, a file stem or a ``name:`` field (see module docstring for the order)."""
        text = str(name_or_path)
        p = Path(text)
        if p.exists() or p.suffix in SUFFIXES or "/" in text:
            if p.is_dir():
                raise ConfigError(f"{p}: is a folder, expected a {self.word} file (YAML)")
            if not p.exists():
                raise ConfigError(f"{p}: file not found")
            return p
        files = self.files()
        for f in files:
            if f.stem == text:
                return f
        for f in files:  # by the `name:` field inside the file
            try:
                if re.search(rf"^name:\s*['\"]?{re.escape(text)}['\"]?\s*$", f.read_text(), re.M):
                    return f
            except OSError:
                continue
        raise ConfigError(f"unknown {self.word} {text!r} (available: {', '.join(self.names()) or 'none'}; "
                          f"user files go in {self.user_dir()}; or pass a path to a YAML file)")

    def calibrated_path(self, path: Path) -> Path:
        """``<stem>.calibrated.yaml`` beside ``path``, or in the user folder for built-in files."""
        stem = path.name.rsplit(".", 1)[0]
        if path.resolve().parent == self.builtin.resolve():
            return self.user_dir() / f"{stem}.calibrated.yaml"
        return path.with_name(f"{stem}.calibrated.yaml")
