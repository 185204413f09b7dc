"""Evaluation tasks: MMLU plus one task per DecodingTrust trust dimension.

``get_task(name)`` returns a task object with ``name``, ``dimension``, ``load``, ``parse``,
``keeps_refusal`` and ``score`` (see :mod:`codesign.evaluate.tasks.base`).
"""

from codesign.evaluate.tasks.base import Item, Task, stratified_subsample  # noqa: F401
from codesign.evaluate.tasks.registry import TASKS, get_task, parse_task_list, register, task_names  # noqa: F401
from codesign.evaluate.tasks.registry import _load_builtin as _load

_load()
