"""The ``codesign`` command line: one sub-command per pipeline stage.

Each stage keeps its own command in ``codesign/<stage>/cli.py``: a plain function over an options
model that experiments call too, bound to typer by ``register(app)`` (:mod:`codesign.commands`);
this module only assembles them. Stage CLI modules import torch & co. inside the command
functions, so ``codesign --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

# Before anything imports torch (its OpenMP runtime reads this once): idle OpenMP threads sleep
# instead of spinning. On a CPU shared by more runnable threads than cores, spinning made a
# 2-thread SmolLM2 forward pass cost 3x the CPU time of a 1-thread one and run 2-8x slower
# (experiments/eval_speed/README.md, "DecodingTrust throughput"). Set OMP_WAIT_POLICY=ACTIVE to undo.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from codesign.config import ConfigError  # noqa: E402  (after the OpenMP setting)

#: The stage module of each command: ``codesign <command> ...`` imports only that stage, so a
#: command (and an error in its arguments) does not pay for importing every other stage.
COMMANDS = {"data": "codesign.data.cli", "quantize": "codesign.quantize.cli", "eval": "codesign.evaluate.cli",
            "vote": "codesign.vote.cli", "hw": "codesign.cost.hw_cli", "probe": "codesign.cost.cli",
            "measure": "codesign.cost.cli", "calibrate": "codesign.cost.cli", "explore": "codesign.explore.cli",
            "report": "codesign.report.cli", "export": "codesign.export.cli"}
#: Every stage module once, in pipeline order (the order of --help's command list follows it).
STAGES = list(dict.fromkeys(COMMANDS.values()))


def make_app(stages: list[str] = STAGES) -> typer.Typer:
    """The typer app with the commands of ``stages`` (default: every stage)."""
    application = typer.Typer(
        name="codesign",
        help="Hardware-software co-design for trustworthy low-precision LLM inference: "
             "data -> quantize -> eval -> vote -> measure/hw -> explore -> report -> export.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @application.callback()
    def _group() -> None:
        """A group even with one stage loaded (typer would otherwise run a lone command directly)."""

    for mod in stages:
        importlib.import_module(mod).register(application)
    return application


def __getattr__(name: str):
    # ``from codesign.cli import app``: the app with every command, built on first use
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(f"module 'codesign.cli' has no attribute {name!r}")


def _app_for(argv: list[str]) -> typer.Typer:
    command = next((a for a in argv if not a.startswith("-")), None)
    return make_app([COMMANDS[command]]) if command in COMMANDS else make_app()


def main() -> None:
    """Console entry point: user errors print one readable message and exit 2, no traceback.

    typer runs outside its standalone mode so that its own usage errors (a flag that does not
    parse, an unknown option) take the same ``error:`` form as codesign's checks."""
    try:  # typer >= 0.20 vendors click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # pragma: no cover - older typer on click
        from click.exceptions import NoArgsIsHelpError, UsageError

    try:
        code = _app_for(sys.argv[1:])(standalone_mode=False)
    except ConfigError as exc:
        _fail(str(exc))
    except NoArgsIsHelpError as exc:  # bare `codesign`: the help, as before
        exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx is not None else "codesign"
        _fail(f"{exc.format_message()}{_given(exc)} (see `{cmd} --help`)")
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _given(exc: BaseException) -> str:
    """The value typer could not parse (its message leaves it out), e.g. ``: got 'abc'``."""
    errors = getattr(exc.__cause__, "errors", None)
    if callable(errors):
        try:
            return "".join(f": got {e['input']!r}" for e in errors()[:1] if "input" in e)
        except Exception:  # noqa: BLE001 - only a nicer message is at stake
            return ""
    return ""


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
