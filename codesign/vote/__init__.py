"""Precision-ensemble voting over stored answers: scoring ensembles, all subsets, bootstrap CIs.

The voting rule itself lives in :mod:`codesign.voting` (pure numpy); this package reads members'
answers from the :class:`~codesign.store.ResultStore` and scores ensembles with the evaluation
tasks' own ``score()`` so that an ensemble is one more "variant" to the metrics.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported lazily (pandas, numpy): ``codesign --help`` and early argument errors stay fast.
_EXPORTS = {
    **{n: "codesign.vote.ensemble" for n in ("MemberAnswers", "bootstrap_indices", "ensemble_predictions",
                                              "load_answers", "resolve_members", "score_ensemble", "score_members")},
    **{n: "codesign.vote.gating" for n in ("GateResult", "gated_scores", "gated_vote")},
    **{n: "codesign.vote.subsets" for n in ("score_all_subsets", "subset_accuracy", "subset_predictions")},
    **{n: "codesign.vote.weighted" for n in ("accuracy_weights", "member_accuracy", "validation_split")},
    **{n: "codesign.voting" for n in ("precision_ensemble_vote", "subset_votes", "weighted_vote")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codesign.vote' has no attribute {name!r}")
