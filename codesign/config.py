"""Typed configuration files: YAML/JSON validated into pydantic models with readable errors.

Every config file in codesign (accelerator specs, catalogues, explore studies) goes through
:func:`load_config`, so a wrong file always fails the same way: one message naming the file,
the field path, the bad value and what is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file or value is invalid. The message is meant for the user as is."""


class StrictModel(BaseModel):
    """Base for config records: unknown keys are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


def _allowed_hint(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"allowed: {ctx['expected']}"
    for key, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            return f"allowed: {word} {ctx[key]}"
    if err.get("type") == "extra_forbidden":
        return "this key is not part of the schema"
    if err.get("type") == "missing":
        return "this field is required"
    return ""


def format_validation_error(exc: ValidationError, source: str | Path | None) -> str:
    """Render a pydantic error as ``file: field: bad value: problem (allowed ...)`` lines."""
    where = str(source) if source is not None else "<config>"
    lines = [f"invalid configuration in {where}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        value = err.get("input")
        shown = "" if err.get("type") == "missing" else f" = {value!r}"
        hint = _allowed_hint(err)
        lines.append(f"  - {loc}{shown}: {err.get('msg')}" + (f" ({hint})" if hint else ""))
    return "\n".join(lines)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file that must hold a mapping at its top level."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def validate_config(model: type[M], data: dict[str, Any], source: str | Path | None = None) -> M:
    """Validate ``data`` into ``model``; raise :class:`ConfigError` with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(model: type[M], path: str | Path) -> M:
    """Load a YAML/JSON file into a pydantic model with file/field/value errors."""
    return validate_config(model, read_mapping(path), path)


def parse_int_list(text: str | None, *, name: str, allowed: set[int] | None = None) -> list[int]:
    """Parse ``"3,4,8"`` from a CLI flag, naming the flag and allowed values on error."""
    if text is None or text == "":
        return []
    out = []
    for tok in str(text).split(","):
        tok = tok.strip()
        try:
            v = int(tok)
        except ValueError:
            raise ConfigError(f"--{name}: {tok!r} is not an integer (expected a comma-separated list like 3,4,8)") from None
        if allowed is not None and v not in allowed:
            raise ConfigError(f"--{name}: {v} is not allowed (allowed: {sorted(allowed)})")
        out.append(v)
    return out
