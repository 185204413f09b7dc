"""Objective values of configurations: trust from stored answers, costs from the hardware model.

Two caches make one configuration cheap once its members have answers in the store:

- :class:`QualityTable` holds each member's answers per task (one row of a ``(members, items)``
  label matrix, read once) and memoises ensemble scores by member set. An ensemble's answers
  come from precision-ensemble voting (:func:`codesign.voting.precision_ensemble_vote`) and are
  scored by the task's own ``score`` (the same function single variants use).
- :class:`CostTable` memoises ``hwmodels.estimate_ensemble`` per (spec, knobs, schedule, bits).

:class:`ObjectiveEvaluator` combines them, checks the constraints, and, for members that have
no stored answers yet, asks its ``ensure_members`` callback (quantize + evaluate, see
:mod:`codesign.explore.executor`) before scoring. It also reports which members are cached,
which the optimizer uses to prefer configurations that need no new evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codesign import objectives
from codesign.explore.config import Constraints, Workload
from codesign.records import DENSE_BITS, Configuration

COST_KEYS = tuple(o.name for o in objectives.COST_OBJECTIVES)


@dataclass
class PointResult:
    """Objectives (own units) of one configuration, and whether it meets the constraints."""

    config: Configuration
    objectives: dict[str, float]
    feasible: bool
    violations: list[str] = field(default_factory=list)
    new_members: list[str] = field(default_factory=list)  # members evaluated on demand for it


class QualityTable:
    """Member answers per task and memoised ensemble scores.

    Args:
        store: the :class:`~codesign.store.ResultStore` holding the answers.
        tasks: task names to score.
        mode: ``"generate"`` or ``"loglik"`` answers.
        policy: scoring policy of ``protocol`` (``"decodingtrust"``; codesign: ``"answered"`` or ``"strict"``).
        bits: member variant id -> precision (tie-break order of the vote).
        item_ids: per task, the item ids of the study (a seeded subsample); ``None`` = every stored item.
        trust_tasks: the tasks the ``trust`` objective averages (default: the registry's default
            trust dimensions).
        protocol: evaluation protocol of the answers (default: the one ``policy`` belongs to).
    """

    def __init__(self, store, tasks: Sequence[str], mode: str, policy: str | None, bits: dict[str, int],
                 item_ids: dict[str, list[str]] | None = None, trust_tasks: Sequence[str] | None = None,
                 protocol: str | None = None):
        from codesign.evaluate.protocols import resolve_scoring
        from codesign.evaluate.tasks import get_task

        self.protocol, policy = resolve_scoring(protocol, policy)
        self.store, self.tasks, self.mode, self.policy, self.bits = store, list(tasks), mode, policy, dict(bits)
        self.trust_tasks = list(trust_tasks) if trust_tasks is not None else \
            [d.task for d in objectives.trust_dimensions()]
        self._task = {t: get_task(t, protocol=self.protocol) for t in self.tasks}
        self._items: dict[str, Any] = {}
        self._keep: dict[str, np.ndarray] = {}
        self._rows: dict[str, dict[str, np.ndarray]] = {t: {} for t in self.tasks}
        self._memo: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        self._item_ids = item_ids
        self.refresh_items()

    def refresh_items(self) -> None:
        """(Re)read the study's items of every task (after an on-demand evaluation stored new ones)."""
        for t in self.tasks:
            df = self.store.items(t, self.protocol)
            if self._item_ids is not None and self._item_ids.get(t) is not None:
                df = df[df["item_id"].isin(set(self._item_ids[t]))].reset_index(drop=True)
            self._items[t] = df
            task = self._task[t]
            self._keep[t] = np.array([bool(task.keeps_refusal(s)) for s in df["subtask"]], dtype=bool)
            self._rows[t].clear()
        self._memo.clear()

    def n_items(self, task: str) -> int:
        return len(self._items[task])

    def items(self, task: str):
        """The study's items of ``task`` (``ResultStore.items`` rows, in label-matrix column order)."""
        return self._items[task]

    def task(self, name: str):
        """The task object scoring ``name`` under the study's protocol."""
        return self._task[name]

    def is_cached(self, member: str) -> bool:
        """Whether the store holds this member's answer to every study item of every task."""
        for t in self.tasks:
            ids = self._items[t]["item_id"]
            if len(ids) == 0:
                return False
            done = self.store.done_item_ids(member, t, self.mode, self.protocol)
            if not set(ids).issubset(done):
                return False
        return True

    def forget(self, members: Sequence[str]) -> None:
        """Drop cached rows of members whose answers just changed."""
        for t in self.tasks:
            for m in members:
                self._rows[t].pop(m, None)
        self._memo = {k: v for k, v in self._memo.items() if not set(k) & set(members)}

    def _labels(self, task: str, members: Sequence[str]) -> np.ndarray:
        rows = self._rows[task]
        missing = [m for m in members if m not in rows]
        if missing:
            ids = self._items[task]["item_id"].tolist()
            _, mat = self.store.label_matrix(task, missing, self.mode, item_ids=ids, protocol=self.protocol)
            for m, r in zip(missing, mat):
                rows[m] = r
        return np.stack([rows[m] for m in members]) if members else np.zeros((0, self.n_items(task)), np.int64)

    def predictions(self, task: str, members: Sequence[str]) -> np.ndarray:
        """Ensemble answers ``(items,)`` on one task, by the voting stage's own rule
        (:meth:`codesign.vote.MemberAnswers.vote`; a single member: its own answers)."""
        from codesign.vote.ensemble import MemberAnswers

        bits = np.array([self.bits[m] for m in members], dtype=np.int64)
        ans = MemberAnswers(task, list(members), bits, self._items[task], self._labels(task, members), self._keep[task])
        return ans.vote()

    def scores(self, members: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Task -> score dict (``score`` 0-100, ``refusal_rate``, ...) of the ensemble ``members``."""
        key = tuple(members)
        if key not in self._memo:
            from codesign.evaluate.scoring import score_task

            self._memo[key] = {t: score_task(t, self._items[t], self.predictions(t, members), self.policy,
                                             self.protocol)
                               for t in self.tasks}
        return self._memo[key]

    def quality(self, members: Sequence[str]) -> dict[str, float]:
        """Quality objectives: one per scored dimension (``adv``, ``mmlu``, ...) and ``trust``, the
        mean of the trust tasks among them."""
        sc = self.scores(members)
        by_task = {t: float(r["score"]) for t, r in sc.items()}
        out = {objectives.dimension(t).objective: v for t, v in by_task.items()}
        if any(t in by_task for t in self.trust_tasks):
            out["trust"] = objectives.trust_score(by_task, self.trust_tasks)
        return out


class CostTable:
    """Memoised analytical costs of configurations on accelerator specs.

    Args:
        shape: ``hwmodels.ModelShape`` of the base model.
        bits, group_size: member variant id -> weight precision / group size.
        workload: batch, prompt and generation lengths, activation and KV precision.
        runtime: ``hwmodels`` runtime profile (software stack) to price under; ``None``: no stack terms.
    """

    def __init__(self, shape, bits: dict[str, int], group_size: dict[str, int], workload: Workload, runtime=None):
        import hwmodels

        self._hw = hwmodels
        self.shape, self.bits, self.group_size, self.workload = shape, dict(bits), dict(group_size), workload
        self.runtime = runtime
        self._specs: dict[tuple, Any] = {}
        self._memo: dict[tuple, dict[str, float]] = {}

    def spec(self, name: str, knobs: tuple[tuple[str, float], ...] = ()):
        key = (name, knobs)
        if key not in self._specs:
            spec = self._specs.get((name, ()))
            if spec is None:
                spec = self._hw.load_spec(name)
                self._specs[(name, ())] = spec
            if knobs:
                spec = spec.with_knobs(**_declared(spec, knobs))
            self._specs[key] = spec
        return self._specs[key]

    def costs(self, cfg: Configuration) -> dict[str, Any]:
        """``tpot_ms``, ``peak_memory_gb``, ``energy_per_token_j``, ``area_mm2`` (None without area data), ``fits``."""
        bits = tuple(sorted((self.bits[m] for m in cfg.members), reverse=True))
        groups = [self.group_size[m] for m in cfg.members if self.bits[m] < DENSE_BITS]
        # mixed group sizes: cost the finest one (most scale traffic), a conservative choice
        positive = [g for g in groups if g > 0]
        group = min(positive) if positive else (groups[0] if groups else 128)
        key = (cfg.spec, cfg.knobs, cfg.schedule if len(bits) > 1 else "", bits, group)
        if key not in self._memo:
            w = self.workload
            est = self._hw.estimate_ensemble(
                self.spec(cfg.spec, cfg.knobs), self.shape, list(bits), group_size=group, schedule=cfg.schedule,
                abits=w.abits, kvbits=w.kvbits, batch=w.batch, prompt_len=w.prompt_len, gen_len=w.gen_len,
                runtime=self.runtime)
            area = getattr(est, "area_mm2", None)
            self._memo[key] = {
                "tpot_ms": float(est.tpot_ms),
                "peak_memory_gb": float(est.peak_memory_bytes) / 1e9,
                "energy_per_token_j": float(est.energy_per_token_j) if est.energy_per_token_j is not None else math.nan,
                "area_mm2": float(area) if area is not None else None,
                "fits": bool(est.fits),
            }
        return self._memo[key]


def _declared(spec, knobs: tuple[tuple[str, float], ...]) -> dict[str, float]:
    """The knobs this spec declares (others belong to other specs of the study), snapped to the
    spec's allowed values where it lists discrete ones."""
    declared = getattr(spec, "knobs", None) or {}
    out = {}
    for name, v in knobs:
        k = declared.get(name)
        if k is None:
            continue
        values = getattr(k, "values", None)
        out[name] = float(min(values, key=lambda x: abs(x - v))) if values else float(v)
    return out


class ObjectiveEvaluator:
    """Objective values + feasibility of configurations (module docstring).

    Args:
        quality: member answers and ensemble scores.
        costs: analytical costs.
        constraints: feasibility constraints of the study.
        ensure_members: called with the list of not-yet-cached member ids before scoring a batch
            that needs them (quantize + evaluate); ``None`` makes missing members an error.
    """

    def __init__(self, quality: QualityTable, costs: CostTable, constraints: Constraints,
                 ensure_members: Callable[[list[str]], None] | None = None):
        self.quality, self.costs, self.constraints, self.ensure_members = quality, costs, constraints, ensure_members
        self._cached: dict[str, bool] = {}

    # -- member cache -----------------------------------------------------------------------
    def is_cached(self, member: str) -> bool:
        if not self._cached.get(member, False):
            self._cached[member] = self.quality.is_cached(member)
        return self._cached[member]

    def uncached(self, members: Sequence[str]) -> list[str]:
        return [m for m in members if not self.is_cached(m)]

    # -- constraints ------------------------------------------------------------------------
    def cost_violations(self, cfg: Configuration) -> list[str]:
        """Constraint violations known before any evaluation (all cost constraints)."""
        c, k = self.constraints, self.costs.costs(cfg)
        out = []
        if c.fits and not k["fits"]:
            out.append("does not fit in memory")
        for key, name in (("max_tpot_ms", "tpot_ms"), ("max_energy_per_token_j", "energy_per_token_j"),
                          ("max_area_mm2", "area_mm2"), ("max_peak_memory_gb", "peak_memory_gb")):
            limit = getattr(c, key)
            if limit is None:
                continue
            v = k[name]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                out.append(f"{name} unknown on spec {cfg.spec!r} (needed by {key})")
            elif v > limit:
                out.append(f"{name}={v:.4g} > {limit:g}")
        return out

    def cost_feasible(self, configs: Sequence[Configuration]) -> np.ndarray:
        """``(n,)`` bool: configurations meeting every cost constraint."""
        return np.array([not self.cost_violations(c) for c in configs], dtype=bool)

    # -- evaluation -------------------------------------------------------------------------
    def evaluate(self, configs: Sequence[Configuration]) -> list[PointResult]:
        """Objectives of a batch; members without stored answers are evaluated first (once)."""
        need: list[str] = []
        for c in configs:
            for m in self.uncached(c.members):
                if m not in need:
                    need.append(m)
        if need:
            if self.ensure_members is None:
                raise RuntimeError(f"members without stored answers and no evaluator to run them: {need}")
            self.ensure_members(need)
            self.quality.refresh_items()
            self.quality.forget(need)
            self._cached = {}
            still = self.uncached(need)
            if still:
                raise RuntimeError(f"on-demand evaluation did not store answers for {still}")
        out = []
        for c in configs:
            obj: dict[str, Any] = dict(self.quality.quality(c.members))
            cost = self.costs.costs(c)
            for key in COST_KEYS:
                if cost.get(key) is not None:
                    obj[key] = cost[key]
            viol = self.cost_violations(c)
            if self.constraints.min_trust is not None and obj.get("trust", math.inf) < self.constraints.min_trust:
                viol.append(f"trust={obj['trust']:.4g} < {self.constraints.min_trust:g}")
            out.append(PointResult(c, obj, not viol, viol, [m for m in need if m in c.members]))
        return out
