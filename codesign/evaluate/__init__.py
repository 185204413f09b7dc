"""Evaluation: a task registry (MMLU and four DecodingTrust-style trust dimensions), answer parsing with refusals, batched generation and log-likelihood scoring into the result store.

Public API (imported lazily, so ``import codesign.evaluate`` stays cheap):

- ``evaluate_variant(loaded, variant, store, tasks, mode, limit, seed, data_dir, batch_size, progress)``
- ``evaluate_catalogue(specs, store, tasks, ...)``
- ``get_task(name)``, ``TASKS``, ``task_names()``
- ``score_task(task_name, items_df, pred, policy)``, ``variant_scores(store, variant_id, tasks, mode, policy)``
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "evaluate_variant": "codesign.evaluate.runner",
    "evaluate_catalogue": "codesign.evaluate.runner",
    "prepare_tasks": "codesign.evaluate.runner",
    "get_task": "codesign.evaluate.tasks",
    "TASKS": "codesign.evaluate.tasks",
    "task_names": "codesign.evaluate.tasks",
    "score_task": "codesign.evaluate.scoring",
    "score_items": "codesign.evaluate.scoring",
    "variant_scores": "codesign.evaluate.scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codesign.evaluate' has no attribute {name!r}")
