"""Agreement-gated ensembles: run the cheapest members first, consult the rest only when needed.

Beyond the study (an option). Members are ordered by cost — by default their precision, lowest
first — and every item is answered by a *gate* of the cheapest members. Two escalation rules:

- ``unanimous``: when the gate members all give the same usable answer it stands; otherwise every
  remaining member is run and the full ensemble votes. With the default gate size (the smallest
  majority of the members) a unanimous gate already decides the full vote, so this rule returns
  exactly the full ensemble's answers; smaller gates trade accuracy for fewer runs.
- ``decisive``: members are consulted one at a time, cheapest first, until the full ensemble's
  majority can no longer change whatever the unconsulted members would answer (the leader's count
  exceeds the runner-up's plus the members left). Always identical to the full vote.

The fraction of items that needed each member feeds the cost model: a gated ensemble runs the
expensive members on only that fraction of the items (``hwmodels.estimate_ensemble(...,
gated_fraction=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from codesign.config import ConfigError
from codesign.records import INVALID, REFUSED
from codesign.voting import precision_ensemble_vote

ESCALATIONS = ("unanimous", "decisive")


@dataclass
class GateResult:
    """Outcome of a gated vote.

    Attributes:
        pred: ``(items,)`` ensemble answers (label ids or REFUSED).
        consulted: ``(members, items)`` bool, whether each member had to run on each item
            (members in the order given, not cost order).
        order: ``(members,)`` member indices, cheapest first.
        gate_size: number of members always run.
        full_pred: ``(items,)`` the answers of the full (ungated) ensemble, for comparison.
    """

    pred: np.ndarray
    consulted: np.ndarray
    order: np.ndarray
    gate_size: int
    full_pred: np.ndarray

    @property
    def escalated(self) -> np.ndarray:
        """``(items,)`` bool: items that needed any member beyond the gate."""
        beyond = self.order[self.gate_size:]
        if beyond.size == 0:
            return np.zeros(self.pred.shape, dtype=bool)
        return self.consulted[beyond].any(axis=0)

    @property
    def escalated_fraction(self) -> float:
        return float(self.escalated.mean()) if self.pred.size else 0.0

    @property
    def member_fraction(self) -> np.ndarray:
        """``(members,)`` share of items each member ran on."""
        return self.consulted.mean(axis=1) if self.pred.size else np.zeros(self.consulted.shape[0])

    @property
    def agreement_with_full(self) -> float:
        """Share of items where the gated answer equals the full ensemble's."""
        return float((self.pred == self.full_pred).mean()) if self.pred.size else 1.0

    def relative_cost(self, costs: Sequence[float]) -> float:
        """Cost of the gated ensemble over the full one, given ``(members,)`` per-item costs."""
        c = np.asarray(costs, dtype=np.float64)
        return float((self.member_fraction * c).sum() / c.sum())


def cost_order(bits: Sequence[int], costs: Sequence[float] | None = None) -> np.ndarray:
    """Member indices cheapest first: by ``costs`` if given, else by precision; ties keep list order."""
    key = np.asarray(costs if costs is not None else bits, dtype=np.float64)
    return np.lexsort((np.arange(key.size), key))


def _unanimous(labels: np.ndarray, keep_refusal: bool) -> np.ndarray:
    """``(items,)`` True where every row holds the same usable answer."""
    first = labels[0]
    usable = (first >= 0) | (keep_refusal & (first == REFUSED))
    return usable & (labels == first[None, :]).all(axis=0)


def gated_vote(labels: np.ndarray, bits: Sequence[int], gate_size: int | None = None, keep_refusal: bool = False,
               escalation: str = "unanimous", costs: Sequence[float] | None = None) -> GateResult:
    """Precision-ensemble vote that runs expensive members only where the cheap ones need them.

    Args:
        labels: ``(members, items)`` outcome codes of all members (what each *would* answer).
        bits: ``(members,)`` precisions (tie rule; and cost order when ``costs`` is None).
        gate_size: members always run (``unanimous`` only); default ``members // 2 + 1``.
        keep_refusal: REFUSED is a label of its own.
        escalation: ``unanimous`` or ``decisive`` (module docstring).
        costs: ``(members,)`` optional per-item cost of each member, for the order.

    Returns:
        :class:`GateResult`.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (members, items), got {labels.shape}")
    bits = np.asarray(bits, dtype=np.int64)
    m, n = labels.shape
    if escalation not in ESCALATIONS:
        raise ConfigError(f"--escalation: {escalation!r} is not allowed (allowed: {list(ESCALATIONS)})")
    gate = m // 2 + 1 if gate_size is None else int(gate_size)
    if not 1 <= gate <= m:
        raise ConfigError(f"--gate: {gate} is not allowed (allowed: 1..{m}, the number of members)")
    order = cost_order(bits, costs)
    full = precision_ensemble_vote(labels, bits, keep_refusal)
    consulted = np.zeros((m, n), dtype=bool)
    if escalation == "unanimous":
        consulted[order[:gate]] = True
        agree = _unanimous(labels[order[:gate]], keep_refusal)
        consulted[order[gate:]] = ~agree[None, :]
        pred = np.where(agree, labels[order[0]], full)
    else:
        consulted[order[0]] = True
        decided = np.zeros(n, dtype=bool)
        for j in range(1, m + 1):  # consult member order[j-1]; loop over members, not items
            seen = labels[order[:j]]
            cols = np.where((seen >= 0) | (keep_refusal & (seen == REFUSED)), seen, INVALID)
            counts = _label_counts(cols)
            top2 = -np.sort(-counts, axis=1)[:, :2] if counts.shape[1] >= 2 else np.pad(counts, ((0, 0), (0, 1)))
            now = top2[:, 0] > top2[:, 1] + (m - j)
            decided |= now
            if j < m:
                consulted[order[j]] = ~decided
        pred = full  # every stop point is decisive, so the answer is the full vote's
    return GateResult(pred=pred, consulted=consulted, order=order, gate_size=gate if escalation == "unanimous" else 1,
                      full_pred=full)


def _label_counts(cols: np.ndarray) -> np.ndarray:
    """``(items, labels)`` vote counts of usable answers (INVALID = not usable) in ``cols``."""
    usable = cols != INVALID
    if not usable.any():
        return np.zeros((cols.shape[1], 1), dtype=np.int64)
    values, inv = np.unique(np.where(usable, cols, INVALID), return_inverse=True)
    inv = inv.reshape(cols.shape)
    counts = np.zeros((cols.shape[1], values.size), dtype=np.int64)
    for i in range(cols.shape[0]):
        np.add.at(counts, (np.arange(cols.shape[1]), inv[i]), 1)
    counts[:, values == INVALID] = 0
    return counts


def gated_scores(store, members: Sequence[str], tasks: Sequence[str] | None = None, mode: str = "generate",
                 policy: str | None = None, gate_size: int | None = None, escalation: str = "unanimous",
                 costs: Sequence[float] | None = None, protocol: str | None = None) -> pd.DataFrame:
    """Score the gated ensemble of ``members`` per task and report how often the rest were needed.

    Returns:
        One row per task: ``task, score, refusal_rate, full_score, agreement_with_full,
        escalated_fraction, relative_cost`` (precision-proportional cost when ``costs`` is None),
        ``member_fraction`` (dict variant id -> share of items it ran on).
    """
    from codesign.evaluate.protocols import resolve_scoring
    from codesign.vote.ensemble import _tasks, load_answers, score_predictions

    protocol, policy = resolve_scoring(protocol, policy)
    rows = []
    for task in _tasks(store, tasks, mode, members, protocol):
        ans = load_answers(store, task, members, mode, protocol=protocol)
        pred = np.full(len(ans.items), REFUSED, dtype=np.int64)
        full = pred.copy()
        consulted = np.zeros(ans.labels.shape, dtype=bool)
        for keep in (False, True):  # OOD knowledge items keep REFUSED as a label
            sel = ans.keep_refusal == keep
            if sel.any():
                res = gated_vote(ans.labels[:, sel], ans.bits, gate_size, keep, escalation, costs)
                pred[sel], full[sel], consulted[:, sel] = res.pred, res.full_pred, res.consulted
        order = cost_order(ans.bits, costs)
        gate = (len(members) // 2 + 1 if gate_size is None else gate_size) if escalation == "unanimous" else 1
        result = GateResult(pred, consulted, order, gate, full)
        g = score_predictions(task, ans.items, pred, policy, protocol)
        f = score_predictions(task, ans.items, full, policy, protocol)
        rows.append({
            "task": task, "escalation": escalation, "gate_size": gate, "n": len(ans.items),
            "score": g.get("score"), "refusal_rate": g.get("refusal_rate"), "full_score": f.get("score"),
            "agreement_with_full": result.agreement_with_full, "escalated_fraction": result.escalated_fraction,
            "relative_cost": result.relative_cost(costs if costs is not None else ans.bits),
            "member_fraction": {v: float(x) for v, x in zip(ans.members, result.member_fraction)},
        })
    return pd.DataFrame(rows)
