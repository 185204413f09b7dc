"""Evaluation: evaluation protocols (``decodingtrust``, reproducing DecodingTrust; ``codesign``, codesign's
own), each a task registry (MMLU and four trust dimensions) with its prompts, parsing and score formulas;
batched generation and log-likelihood scoring into the result store.

Public API (imported lazily, so ``import codesign.evaluate`` stays cheap):

- ``evaluate_variant(loaded, variant, store, tasks, mode, limit, seed, data_dir, batch_size, progress,
  policy, prepared, prefill, protocol)``
- ``evaluate_catalogue(specs, store, tasks, ..., protocol, prepared)``
- ``get_task(name, subtasks, protocol=...)``, ``TASKS`` (keyed by (protocol, name)), ``task_names(protocol)``
- ``score_task(task_name, items_df, pred, policy, protocol)``,
  ``variant_scores(store, variant_id, tasks, mode, policy, protocol)`` (a policy names its protocol)
- protocols: ``codesign.evaluate.protocols`` (``get_protocol``, ``resolve_scoring``)
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
