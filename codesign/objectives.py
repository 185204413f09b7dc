"""The one registry of objectives and trust dimensions: every stage reads it, none restates it.

- A **dimension** is an evaluation task scored 0-100. The task registry (:mod:`codesign.evaluate.tasks`)
  is the one list of tasks and their order; each task class says its objective name in study
  configs (``adv`` for ``advglue``), whether it is a trust dimension (MMLU is not) and whether
  ensemble-vs-member comparisons include it (fairness measures group disparity, not correctness:
  it is reported for ensembles but not compared, as in the study).
- ``trust`` is the mean of a configurable list of trust dimensions (the study config's
  ``trust_dimensions``), by default :data:`DEFAULT_TRUST_DIMENSIONS`: adversarial robustness,
  machine ethics and OOD robustness. Fairness and MMLU are reported but not in the default.
- **Cost** objectives come from the analytical hardware model (:data:`COST_OBJECTIVES`).

An objective has a default direction; a study config may override it, and whoever ranks points
(explore's fronts, hypervolumes, recommendations) uses the study's directions, which the report
then reads from the persisted result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min"]

#: The trust aggregate of a study unless its config says otherwise (objective names).
DEFAULT_TRUST_DIMENSIONS = ("adv", "ethics", "ood")


@dataclass(frozen=True)
class Objective:
    """An objective: ``source`` is ``quality`` (scored from stored answers) or ``cost`` (hardware model)."""

    name: str
    direction: Direction
    label: str  # what it is, e.g. "Time per output token"
    unit: str  # e.g. "ms", "%"
    source: Literal["quality", "cost"]
    task: str | None = None  # the evaluation task a dimension objective is scored on

    @property
    def axis_label(self) -> str:
        """Label with unit, for axes and table headers: ``Time per output token (ms)``."""
        return f"{self.label} ({self.unit})"


@dataclass(frozen=True)
class Dimension:
    """An evaluation task as a scored dimension (read from the task class)."""

    task: str
    objective: str
    label: str
    trust: bool
    compare_with_members: bool


#: Cost objectives of the analytical model, in display order.
COST_OBJECTIVES: tuple[Objective, ...] = (
    Objective("tpot_ms", "min", "Time per output token", "ms", "cost"),
    Objective("peak_memory_gb", "min", "Peak memory", "GB", "cost"),
    Objective("energy_per_token_j", "min", "Energy per token", "J", "cost"),
    Objective("area_mm2", "min", "Compute area", "mm²", "cost"),
)
TRUST = Objective("trust", "max", "Trust score", "%", "quality")


def dimensions() -> tuple[Dimension, ...]:
    """Every registered task as a dimension, in the task registry's (report) order (read afresh: a
    task registered later is a dimension too). A task name is one dimension whichever evaluation
    protocol implements it (the registry checks that the protocols' classes agree on it)."""
    from codesign.evaluate.protocols import protocol_names
    from codesign.evaluate.tasks import TASKS, task_names

    out: dict[str, Dimension] = {}
    for protocol in protocol_names():
        for name in task_names(protocol):
            if name not in out:
                out[name] = dimension_of(TASKS[(protocol, name)])
    return tuple(out.values())


def dimension_of(cls) -> Dimension:
    """The dimension a task class declares (its ``name``, ``objective``, ``dimension``, ``trust``,
    ``compare_with_members``)."""
    return Dimension(cls.name, cls.objective or cls.name, cls.dimension or cls.name, bool(cls.trust),
                     bool(cls.compare_with_members))


def dimension(name: str) -> Dimension:
    """The dimension of a task or of a dimension objective (``advglue`` or ``adv``)."""
    for d in dimensions():
        if name in (d.task, d.objective):
            return d
    raise KeyError(f"unknown dimension {name!r} (allowed: {', '.join(d.objective for d in dimensions())})")


def objectives() -> dict[str, Objective]:
    """Every objective by name: ``trust``, one per dimension, then the cost objectives."""
    out = {TRUST.name: TRUST}
    for d in dimensions():
        out[d.objective] = Objective(d.objective, "max", d.label, "%", "quality", d.task)
    out.update((o.name, o) for o in COST_OBJECTIVES)
    return out


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; an unknown name is a ``ValueError`` listing the allowed ones."""
    found = objectives().get(name)
    if found is None:
        raise ValueError(f"unknown objective {name!r} (allowed: {', '.join(objectives())})")
    return found


def label(name: str) -> str:
    """Axis label with unit of an objective (the name itself for anything unregistered)."""
    o = objectives().get(name)
    return o.axis_label if o else name


def order(names: Iterable[str]) -> list[str]:
    """Objective names in registry order (unregistered names last, alphabetically)."""
    known = list(objectives())
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def trust_dimensions(names: Sequence[str] | None = None) -> list[Dimension]:
    """The dimensions a ``trust`` aggregate averages: ``names`` (objective or task names) or the default.

    Raises:
        ValueError: a name that is not a trust dimension, with the allowed ones.
    """
    names = DEFAULT_TRUST_DIMENSIONS if names is None else names
    allowed = [d for d in dimensions() if d.trust]
    out = []
    for n in names:
        match = [d for d in allowed if n in (d.task, d.objective)]
        if not match:
            raise ValueError(f"{n!r} is not a trust dimension (allowed: {', '.join(d.objective for d in allowed)})")
        if match[0] not in out:
            out.append(match[0])
    return out


def trust_score(scores: Mapping[str, float], tasks: Sequence[str]) -> float:
    """``trust``: the mean score over ``tasks`` (the trust dimensions' tasks) that ``scores``
    (task -> score 0-100) holds; NaN when it holds none of them."""
    vals = [float(scores[t]) for t in tasks if t in scores and scores[t] is not None]
    vals = [v for v in vals if not math.isnan(v)]
    return float(sum(vals) / len(vals)) if vals else math.nan


def compared_with_members(task: str) -> bool:
    """Whether ensemble-vs-member comparisons include ``task`` (unregistered tasks: yes)."""
    try:
        return dimension(task).compare_with_members
    except KeyError:
        return True
