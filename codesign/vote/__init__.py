"""Precision-ensemble voting over stored answers: scoring ensembles, all subsets, bootstrap CIs.

The voting rule itself lives in :mod:`codesign.voting` (pure numpy); this package reads members'
answers from the :class:`~codesign.store.ResultStore` and scores ensembles with the evaluation
tasks' own ``score()`` so that an ensemble is one more "variant" to the metrics.
"""

from codesign.vote.ensemble import (
    MemberAnswers,
    bootstrap_indices,
    ensemble_predictions,
    load_answers,
    resolve_members,
    score_ensemble,
    score_members,
)
from codesign.vote.gating import GateResult, gated_scores, gated_vote
from codesign.vote.subsets import score_all_subsets, subset_accuracy, subset_predictions
from codesign.vote.weighted import accuracy_weights, member_accuracy, validation_split
from codesign.voting import precision_ensemble_vote, subset_votes, weighted_vote

__all__ = [
    "GateResult", "MemberAnswers", "accuracy_weights", "bootstrap_indices", "ensemble_predictions", "gated_scores",
    "gated_vote", "load_answers", "member_accuracy", "precision_ensemble_vote", "resolve_members",
    "score_all_subsets", "score_ensemble", "score_members", "subset_accuracy", "subset_predictions",
    "subset_votes", "validation_split", "weighted_vote",
]
