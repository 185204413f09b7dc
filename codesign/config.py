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

    # NaN and infinity are never a sensible setting: pydantic's default lets them through floats.
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True, allow_inf_nan=False)


#: Longest echo of a bad value in a message: an input can be huge (YAML anchors expand a few
#: hundred bytes into megabytes), the message must stay a line or two.
MAX_ECHO = 120


def echo(value: Any, limit: int = MAX_ECHO) -> str:
    """``repr(value)``, cut to ``limit`` characters (saying how long it was)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _bounds(metadata: Any) -> str:
    """``>= 0 and <= 1`` from a field's annotated-types constraints ('' if it has none)."""
    words = []
    for m in metadata or ():
        for key, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            v = getattr(m, key, None)
            if v is not None:
                words.append(f"{word} {v}")
    return " and ".join(words)


def field_range(model: Any, loc: tuple) -> str:
    """The declared range of the field at ``loc`` in ``model`` (nested models and dict values
    followed), or ''."""
    import typing

    from pydantic import BaseModel

    current: Any = model
    info = None
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            info = current.model_fields[part]
            current = info.annotation
        elif info is not None and isinstance(part, (str, int)):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else current  # a dict's value type, a list's item type
        else:
            return ""
        args = [a for a in typing.get_args(current) if a is not type(None)]
        if typing.get_origin(current) is typing.Union and len(args) == 1:
            current = args[0]
    if info is None:
        return ""
    return _bounds(info.metadata) or _bounds(getattr(current, "__metadata__", ()))


def _allowed_hint(err: dict[str, Any], model: Any = None) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"allowed: {ctx['expected']}"
    for key, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            return f"allowed: {word} {ctx[key]}"
    if err.get("type") in ("finite_number", "float_type", "float_parsing", "int_type", "int_parsing",
                           "int_from_float"):
        rng = field_range(model, tuple(err.get("loc", ()))) if model is not None else ""
        kind = "an integer" if err["type"].startswith("int") else "a finite number"
        return f"allowed: {kind}" + (f" {rng}" if rng else "")
    if err.get("type") == "extra_forbidden":
        return "this key is not part of the schema"
    if err.get("type") == "missing":
        return "this field is required"
    return ""


def format_validation_error(exc: ValidationError, source: str | Path | None, model: Any = None) -> str:
    """Render a pydantic error as ``file: field: bad value: problem (allowed ...)`` lines (values
    echoed at most :data:`MAX_ECHO` characters; ``model`` lets non-finite numbers name their range)."""
    where = str(source) if source is not None else "<config>"
    lines = [f"invalid configuration in {where}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        value = err.get("input")
        shown = "" if err.get("type") == "missing" else f" = {echo(value)}"
        hint = _allowed_hint(err, model)
        msg = str(err.get("msg"))
        msg = msg if len(msg) <= 4 * MAX_ECHO else msg[: 4 * MAX_ECHO] + "..."
        lines.append(f"  - {loc}{shown}: {msg}" + (f" ({hint})" if hint else ""))
    return "\n".join(lines)


def echo_text(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file that must hold a mapping at its top level."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file (expected a YAML or JSON file)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}; "
                          "expected a YAML or JSON file)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        what = "JSON" if path.suffix == ".json" else "YAML"
        raise ConfigError(f"{path}: not valid {what}: {echo_text(str(exc), 4 * MAX_ECHO)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def validate_config(model: type[M], data: dict[str, Any], source: str | Path | None = None) -> M:
    """Validate ``data`` into ``model``; raise :class:`ConfigError` with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model)) from None


def load_config(model: type[M], path: str | Path) -> M:
    """Load a YAML/JSON file into a pydantic model with file/field/value errors."""
    return validate_config(model, read_mapping(path), path)


def parse_int_list(text: str | None, *, name: str, allowed: set[int] | None = None, lo: int | None = None,
                   hi: int | None = None) -> list[int]:
    """Parse ``"3,4,8"`` from a CLI flag, naming the flag, the value and what is allowed on error
    (``allowed``: a set of values; ``lo``/``hi``: an inclusive range)."""
    if text is None or text == "":
        return []
    out = []
    for tok in str(text).split(","):
        tok = tok.strip()
        try:
            v = int(tok)
        except ValueError:
            raise ConfigError(f"--{name}: {echo_text(tok)!r} is not an integer (expected a comma-separated list like "
                              "3,4,8)") from None
        if allowed is not None and v not in allowed:
            raise ConfigError(f"--{name}: {v} is not allowed (allowed: {sorted(allowed)})")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo} to {hi:,}" if lo is not None and hi is not None else (f">= {lo}" if lo is not None
                                                                               else f"<= {hi:,}")
            raise ConfigError(f"--{name}: {v} is not allowed (allowed: {rng})")
        out.append(v)
    return out
