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

app = typer.Typer(
    name="codesign",
    help="Hardware-software co-design for trustworthy low-precision LLM inference: "
         "data -> quantize -> eval -> vote -> measure/hw -> explore -> report -> export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Pipeline order; the order of --help's command list follows it.
STAGES = [
    "codesign.data.cli",
    "codesign.quantize.cli",
    "codesign.evaluate.cli",
    "codesign.vote.cli",
    "codesign.cost.hw_cli",
    "codesign.cost.cli",
    "codesign.explore.cli",
    "codesign.report.cli",
    "codesign.export.cli",
]

for _mod in STAGES:
    importlib.import_module(_mod).register(app)


def main() -> None:
    """Console entry point: user errors print one readable message and exit 2, no traceback."""
    try:
        app()
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
