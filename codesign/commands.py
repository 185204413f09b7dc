"""Commands as plain functions over an options model, bound to the command line by typer.

A stage's command is a function ``run(options) -> result`` over a pydantic model of its options
(a :class:`CommandOptions`); experiments and tests build the options and call the same function
the CLI calls. :func:`bind` makes the typer command from the model: every field is an option
whose flags and help text are the field's (declared with :func:`option`), so an option is
described once. Values typer parsed are validated by the model before any work, so a bad value
is one ``error:`` line naming the flag, the value and what is allowed (:class:`ConfigError`, exit 2).

On the command line a list field is comma-separated text (``--methods bo,random``) and a choice
(``Literal``) field is plain text checked by the model.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Optional

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from codesign.config import ConfigError, StrictModel, _allowed_hint, echo


def option(default: Any, *flags: str, help: str, repeat: bool = False, **constraints: Any) -> Any:
    """A field of a :class:`CommandOptions` model that is also a command-line option.

    Args:
        default: the default (``...`` for a required option).
        flags: typer's flags, e.g. ``"--store"``, ``"--mode"``, ``"--report/--no-report"``, ``"-c"``.
        help: the option's help text (also the field's description).
        repeat: a list given by repeating the flag (``-O a=1 -O b=2``) rather than as ``a,b``.
        constraints: pydantic field constraints (``ge=1``, ...), checked before the command runs.
    """
    return Field(default, description=help, json_schema_extra={"flags": list(flags), "repeat": repeat},
                 **constraints)


def _policy(value: str) -> str:
    from codesign.evaluate.metrics import check_policy

    return check_policy(value)


def _mode(value: str) -> str:
    from codesign.records import ANSWER_MODES

    if value not in ANSWER_MODES:
        raise ConfigError(f"--mode: {value!r} is not allowed (allowed: {list(ANSWER_MODES)})")
    return value


#: A scoring policy, checked by the evaluation stage's own list.
Policy = Annotated[str, AfterValidator(_policy)]
#: An answer mode (``generate`` or ``loglik``).
Mode = Annotated[str, AfterValidator(_mode)]


def _is_list(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return typing.get_origin(annotation) in (list, tuple) or any(_is_list(a) for a in args)


class CommandOptions(StrictModel):
    """Base of the option models of ``codesign`` commands."""

    @field_validator("*", mode="before")
    @classmethod
    def _comma_lists(cls, v: Any, info) -> Any:
        # the command line gives lists as "a,b,c"
        field = cls.model_fields.get(info.field_name)
        repeat = field is not None and (field.json_schema_extra or {}).get("repeat")
        if isinstance(v, str) and field is not None and _is_list(field.annotation) and not repeat:
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @classmethod
    def flag(cls, name: str) -> str:
        """The long flag of field ``name`` (``--store``), for messages."""
        extra = cls.model_fields[name].json_schema_extra or {}
        flags = [f.split("/")[0] for f in extra.get("flags", []) if f.startswith("--")]
        return flags[0] if flags else "--" + name.replace("_", "-")

    @classmethod
    def parse(cls, values: dict[str, Any]):
        """Validate command-line values; errors name the flag, the value and what is allowed."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                cause = (err.get("ctx") or {}).get("error")
                if isinstance(cause, ConfigError):  # a check of the stage's own: its message says it all
                    lines.append(str(cause))
                    continue
                loc = err.get("loc") or ("",)
                name = str(loc[0])
                flag = cls.flag(name) if name in cls.model_fields else name
                hint = _allowed_hint(err, cls)
                lines.append(f"{flag}: {echo(err.get('input'))}: {err.get('msg')}" + (f" ({hint})" if hint else ""))
            raise ConfigError("\n".join(lines)) from None


class ScoringOptions(CommandOptions):
    """Options of a command that scores answers: an evaluation ``protocol`` and one of its scoring
    policies, ``policy`` (subclasses declare both fields), resolved together before any work by
    :func:`codesign.evaluate.protocols.resolve_scoring`: a missing policy is the protocol's default,
    a missing protocol the one the policy belongs to, and a policy of another protocol is an error.
    With ``scoring_from_store``, neither given stays ``None`` (the command reads them from the store)."""

    scoring_from_store: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _scoring(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from codesign.evaluate.protocols import resolve_scoring

        given = {k: data.get(k, cls.model_fields[k].default) for k in ("protocol", "policy")}
        if cls.scoring_from_store and given["protocol"] is None and given["policy"] is None:
            return data
        data = dict(data)
        data["protocol"], data["policy"] = resolve_scoring(given["protocol"], given["policy"])
        return data


def _cli_annotation(annotation: Any) -> Any:
    """The type typer parses a field as: lists and choices as text, the rest as declared."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)] if optional else [annotation]
    base = inner[0] if len(inner) == 1 else str
    if base in (bool, int, float, str, Path):
        cli = base
    else:  # list[...], Literal[...], unions: text, validated by the model
        cli = str
    return Optional[cli] if optional else cli


def bind(app, name: str, model: type[CommandOptions], run: Callable[[Any], Any],
         show: Callable[[Any, Any], None] | None = None, *, doc: str) -> None:
    """Add command ``name`` to the typer ``app``: parse ``model`` from the flags, call ``run(options)``,
    then ``show(options, result)`` (printing belongs there, so ``run`` stays a plain function)."""
    import typer

    params = []
    for field_name, field in model.model_fields.items():
        extra = field.json_schema_extra or {}
        flags = extra.get("flags") or ["--" + field_name.replace("_", "-")]
        default = ... if field.is_required() else field.default
        if isinstance(default, Path):
            default = str(default)
        elif isinstance(default, (list, tuple)) and not extra.get("repeat"):
            default = ",".join(map(str, default))  # shown and parsed as comma-separated text
        annotation = list[str] if extra.get("repeat") else _cli_annotation(field.annotation)
        params.append(inspect.Parameter(field_name, inspect.Parameter.KEYWORD_ONLY,
                                        default=typer.Option(default, *flags, help=field.description),
                                        annotation=annotation))

    def command(**values: Any) -> None:
        options = model.parse(values)
        result = run(options)
        if show is not None:
            show(options, result)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)


__all__ = ["CommandOptions", "Mode", "Policy", "ScoringOptions", "bind", "option"]
