"""Evaluation tasks: MMLU plus one task per DecodingTrust trust dimension, per evaluation protocol.

``get_task(name, protocol=...)`` returns a task object with ``name``, ``dimension``, ``protocol``,
``load``, ``parse``, ``keeps_refusal`` and ``score`` (see :mod:`codesign.evaluate.tasks.base`).
The ``codesign`` protocol's tasks live in this package's modules, the ``decodingtrust``
protocol's in :mod:`codesign.evaluate.tasks.decodingtrust`.
"""

from codesign.evaluate.tasks.base import Item, Task, stratified_subsample  # noqa: F401
from codesign.evaluate.tasks.registry import TASKS, get_task, parse_task_list, register, task_names  # noqa: F401
