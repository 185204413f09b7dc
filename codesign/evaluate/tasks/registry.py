"""The task registry: task name -> :class:`~codesign.evaluate.tasks.base.Task` class.

Add a task by subclassing ``Task`` in a module of this package and decorating it with
:func:`register`; ``get_task(name)`` then finds it (and ``codesign eval --tasks`` accepts it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codesign.config import ConfigError
from codesign.evaluate.tasks.base import Task

TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator adding a task to :data:`TASKS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, subtasks: Sequence[str] | None = None, **options: Any) -> Task:
    """An instance of the task called ``name`` (options go to its constructor); ``subtasks``
    restricts the items it loads to those subtasks (checked against the data when loading)."""
    _load_builtin()
    if name not in TASKS:
        raise ConfigError(f"--tasks: unknown task {name!r} (allowed: {sorted(TASKS)})")
    task = TASKS[name](**options)
    if subtasks:
        task.only_subtasks = tuple(subtasks)
    return task


def task_names() -> list[str]:
    """Registered task names in pipeline-report order."""
    _load_builtin()
    order = ["mmlu", "advglue", "fairness", "ethics", "ood"]
    return [n for n in order if n in TASKS] + sorted(n for n in TASKS if n not in order)


def parse_task_list(text: str | None) -> list[str]:
    """``"mmlu,ethics"`` (or ``"all"`` / empty) -> validated task names."""
    if not text or text.strip() == "all":
        return task_names()
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        get_task(n)
    return names


def _load_builtin() -> None:
    # Imported lazily: each module registers itself on import.
    from codesign.evaluate.tasks import advglue, ethics, fairness, mmlu, ood  # noqa: F401
