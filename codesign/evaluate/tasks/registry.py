"""The task registry: (protocol, task name) -> :class:`~codesign.evaluate.tasks.base.Task` class.

Add a task by subclassing ``Task`` (with ``protocol`` set) in a module that its protocol lists in
:mod:`codesign.evaluate.protocols`, decorated with :func:`register`; ``get_task(name, protocol=...)``
then finds it (and ``codesign eval --tasks`` accepts it).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from codesign.config import ConfigError
from codesign.evaluate.protocols import get_protocol
from codesign.evaluate.tasks.base import Task

TASKS: dict[tuple[str, str], type[Task]] = {}
#: Report order of the dimensions; other tasks follow alphabetically.
ORDER = ["mmlu", "advglue", "fairness", "ethics", "ood"]


def register(cls: type[Task]) -> type[Task]:
    """Class decorator adding a task to :data:`TASKS` under ``(cls.protocol, cls.name)``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    from codesign.objectives import dimension_of

    # a task name is one dimension (objective, trust, comparisons) under every protocol
    for (proto, name), other in TASKS.items():
        if name == cls.name and proto != cls.protocol and dimension_of(other) != dimension_of(cls):
            raise ValueError(f"{cls.__name__} ({cls.protocol}) declares dimension {dimension_of(cls)}, but "
                             f"{other.__name__} ({proto}) declares {dimension_of(other)} for task {name!r}")
    TASKS[(cls.protocol, cls.name)] = cls
    return cls


def get_task(name: str, subtasks: Sequence[str] | None = None, *, protocol: str | None = None,
             **options: Any) -> Task:
    """An instance of the task called ``name`` under ``protocol`` (default: the default protocol;
    options go to its constructor); ``subtasks`` restricts the items it loads to those subtasks
    (checked against the data when loading)."""
    proto = get_protocol(protocol).name
    _load(proto)
    if (proto, name) not in TASKS:
        raise ConfigError(f"--tasks: unknown task {name!r} (allowed: {task_names(proto)})")
    task = TASKS[(proto, name)](**options)
    if subtasks:
        task.only_subtasks = tuple(subtasks)
    return task


def task_names(protocol: str | None = None) -> list[str]:
    """Task names of ``protocol`` in pipeline-report order."""
    proto = get_protocol(protocol).name
    _load(proto)
    names = [n for p, n in TASKS if p == proto]
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


def parse_task_list(text: str | None, protocol: str | None = None) -> list[str]:
    """``"mmlu,ethics"`` (or ``"all"`` / empty) -> validated task names."""
    if not text or text.strip() == "all":
        return task_names(protocol)
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        get_task(n, protocol=protocol)
    return names


def _load(protocol: str) -> None:
    # Imported lazily: each module registers its tasks on import.
    for mod in get_protocol(protocol).task_modules:
        importlib.import_module(mod)
