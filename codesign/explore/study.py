"""Running a study: search methods in one harness, every point stored, resume after interruption.

:func:`build_context` turns a :class:`~codesign.explore.config.StudyConfig` into a search space
and an objective evaluator over the result store. :func:`run_method` runs one search method with
one seed against a budget of distinct configurations; each evaluated batch goes to the store's
``study_points`` (``config`` = members/schedule/spec/knobs, ``objectives`` = every objective the
study can compute, ``feasible``) before the next proposal, so an interrupted study resumes from
the stored history (points already stored are never re-evaluated). :func:`run_study` runs the
config's methods, the exhaustive reference front where the space is small, then summarises the
study once (:func:`codesign.explore.results.summarize`: fronts, hypervolume traces,
recommendations) and stores that :class:`~codesign.records.StudyResult` for the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codesign.config import ConfigError
from codesign.explore.config import StudyConfig, study_config_dict
from codesign.explore.evaluator import CostTable, ObjectiveEvaluator, PointResult, QualityTable
from codesign.explore.space import Knob, Space
from codesign.pareto import fill_missing
from codesign.records import Configuration, StudyPoint, StudyResult, VariantSpec


@dataclass
class StudyContext:
    """A study ready to run: config, store, space and objective evaluator."""

    cfg: StudyConfig
    store: Any
    name: str
    space: Space
    evaluator: ObjectiveEvaluator
    members: list[VariantSpec]
    progress: bool = True

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """``(name, direction)`` of the study's objectives, directions as configured."""
        return [(o.name, str(o.direction)) for o in self.cfg.objectives]

    @property
    def specs(self) -> dict[str, VariantSpec]:
        """Catalogue members by variant id (for labels)."""
        return {m.variant_id: m for m in self.members}

    def to_max(self, objectives: Sequence[dict[str, float]]) -> np.ndarray:
        """Objective dicts -> ``(n, m)`` maximised values (NaN where missing)."""
        from codesign.pareto import to_maximization

        names, directions = zip(*self.objectives)
        vals = np.array([[_num(o.get(n)) for n in names] for o in objectives], dtype=np.float64)
        return to_maximization(vals.reshape(len(objectives), len(names)), directions)

    def ref_point(self) -> np.ndarray | None:
        """The configured reference point in the maximised space (``None``: infer)."""
        if self.cfg.ref_point is None:
            return None
        return np.array([self.cfg.ref_point[o.name] * o.sign for o in self.cfg.objectives])


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _knobs(cfg: StudyConfig, costs: CostTable) -> list[Knob]:
    """Knob ranges: explicit in the config, or (``null``) read from the first spec that declares the knob."""
    out = []
    for name, rng in cfg.knobs.items():
        if rng is None:
            found = None
            for s in cfg.specs:
                declared = getattr(costs.spec(s), "knobs", None) or {}
                if isinstance(declared, dict) and name in declared:
                    found = declared[name]
                    break
            if found is None:
                raise ConfigError(f"explore config: knob {name!r} has no range and no spec in {cfg.specs} declares it; "
                                  "give `knobs: {" + name + ": {low: ..., high: ...}}`")
            lo, hi = _range(found, name)
            out.append(Knob(name, lo, hi, bool(getattr(found, "log_scale", False)),
                            bool(getattr(found, "integer", False))))
        else:
            out.append(Knob(name, rng.low, rng.high, rng.log, rng.integer))
    return out


def _range(found: Any, name: str) -> tuple[float, float]:
    if isinstance(found, dict):
        for lo_k, hi_k in (("low", "high"), ("min", "max")):
            if lo_k in found and hi_k in found:
                return float(found[lo_k]), float(found[hi_k])
    if hasattr(found, "bounds"):
        return tuple(float(x) for x in found.bounds)  # hwmodels.spec.Knob
    if hasattr(found, "low") and hasattr(found, "high"):
        return float(found.low), float(found.high)
    if hasattr(found, "min") and hasattr(found, "max"):
        return float(found.min), float(found.max)
    if isinstance(found, (list, tuple)) and len(found) >= 2:
        return float(min(found)), float(max(found))
    raise ConfigError(f"knob {name!r}: cannot read a range from the spec's value {found!r}")


def study_item_ids(cfg: StudyConfig, tasks: Sequence[str]) -> dict[str, list[str]] | None:
    """The seeded per-task subsample every member is scored on (``items: stored``: every stored item)."""
    if cfg.items == "stored":
        return None
    from codesign.evaluate.tasks import get_task
    from codesign.paths import data_dir

    root = data_dir(cfg.data_dir)
    return {t: [it.item_id for it in get_task(t, subtasks=cfg.subtasks.get(t), protocol=cfg.protocol)
                .load(root, limit=cfg.limit, seed=cfg.seed)]
            for t in tasks}


def build_context(cfg: StudyConfig, store, *, name: str | None = None, members: Sequence[VariantSpec] | None = None,
                  executor=None, progress: bool = True, source: str | None = None) -> StudyContext:
    """Space + evaluator for a study.

    Args:
        cfg: the study config.
        store: an open :class:`~codesign.store.ResultStore`.
        name: study name (default ``cfg.name``).
        members: catalogue variants (default: ``cfg.catalogue`` expanded); stored in ``variants``.
        executor: runs on-demand member evaluations (default in-process).
        progress: show progress bars.
        source: path of the config file, for relative catalogue paths and messages.
    """
    import hwmodels

    from codesign.explore.executor import InProcessExecutor, MemberJob

    if members is None:
        members = cfg.catalogue_obj(source).variants()
    members = list(dict.fromkeys(members))
    if not members:
        raise ConfigError(f"{source or 'explore config'}: catalogue: the catalogue yields no variants "
                          "(check methods, bits and group_sizes; include_dense adds the dense model)")
    for m in members:
        store.add_variant(m)
    ids = [m.variant_id for m in members]
    bits = {m.variant_id: m.bits for m in members}
    groups = {m.variant_id: m.group_size for m in members}
    shape_name = cfg.resolve_shape()
    try:
        shape = hwmodels.load_shape(shape_name)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise ConfigError(f"explore config: shape: cannot load {shape_name!r}: {exc}") from exc
    try:
        runtime = hwmodels.load_runtime(cfg.runtime)
    except ConfigError as exc:
        raise ConfigError(f"explore config: runtime: {exc}") from None
    costs = CostTable(shape, bits, groups, cfg.workload, runtime)
    for s in cfg.specs:
        try:
            costs.spec(s)
        except (FileNotFoundError, KeyError) as exc:
            raise ConfigError(f"explore config: specs: unknown accelerator spec {s!r} "
                              f"(allowed: {', '.join(hwmodels.list_specs())} or a YAML path): {exc}") from exc
    space = Space(ids, list(cfg.schedules), list(cfg.specs), _knobs(cfg, costs), cfg.min_members, cfg.max_members)
    quality = QualityTable(store, cfg.tasks, cfg.mode, cfg.policy, bits, study_item_ids(cfg, cfg.tasks),
                           trust_tasks=cfg.trust_tasks(), protocol=cfg.protocol)
    executor = executor or InProcessExecutor()
    by_id = {m.variant_id: m for m in members}

    def ensure(missing: list[str]) -> None:
        subtasks = tuple((t, tuple(s)) for t, s in sorted(cfg.subtasks.items()))
        jobs = [MemberJob(by_id[m].to_dict(), tuple(cfg.tasks), cfg.mode, cfg.limit, cfg.seed, cfg.data_dir,
                          progress, subtasks, cfg.protocol) for m in missing]
        if progress:
            print(f"evaluating {len(jobs)} member(s) on demand: {', '.join(by_id[m].short_name for m in missing)}")
        executor.run(jobs, store)

    evaluator = ObjectiveEvaluator(quality, costs, cfg.constraints, ensure)
    return StudyContext(cfg, store, name or cfg.name, space, evaluator, members, progress)


def check_feasible(ctx: StudyContext, sample: int = 4096) -> int:
    """Count cost-feasible configurations (all, or a Sobol sample); none -> :class:`ConfigError`."""
    sp = ctx.space
    if sp.knobs:  # every knob setting is a new hardware-model call: a smaller sample plus the range corners
        configs = sp.sample(min(sample, 256), seed=ctx.cfg.seed)
        configs += sp.decode(np.hstack([sp.encode(configs[:1])[:, : sp.dim - len(sp.knobs)]
                                        .repeat(2, 0), np.array([[0.0] * len(sp.knobs), [1.0] * len(sp.knobs)])]))
    else:
        configs = sp.enumerate() if sp.n_discrete() <= sample else sp.sample(sample, seed=ctx.cfg.seed)
    ok = ctx.evaluator.cost_feasible(configs)
    if ok.any():
        return int(ok.sum())
    costs = [ctx.evaluator.costs.costs(c) for c in configs]
    best = {k: min((c[k] for c in costs if c.get(k) is not None), default=None)
            for k in ("tpot_ms", "peak_memory_gb", "energy_per_token_j", "area_mm2")}
    fits = sum(c["fits"] for c in costs)
    reasons = ctx.evaluator.cost_violations(configs[0])
    raise ConfigError(
        f"explore config: constraints: no configuration is feasible ({ctx.cfg.constraints.describe()}); "
        f"checked {len(configs)} configurations on specs {ctx.cfg.specs}. Best reachable: "
        + ", ".join(f"{k}={v:.4g}" for k, v in best.items() if v is not None and not math.isnan(v))
        + f"; {fits} fit in memory. First configuration fails with: {'; '.join(reasons)}. Relax the constraints.")


def stored_history(ctx: StudyContext, method: str, seed: int) -> tuple[list[Configuration], list[dict], list[bool], int]:
    """Points of (method, seed) already stored: configs, objective dicts, feasibility, last iteration."""
    pts = ctx.store.study_points(ctx.name, method=method, seed=seed)
    if not pts:
        return [], [], [], -1
    configs = [ctx.space.canonical(p.config) for p in pts]
    return configs, [dict(p.objectives) for p in pts], [p.feasible for p in pts], max(p.iteration for p in pts)


def make_searcher(ctx: StudyContext, method: str, seed: int):
    from codesign.explore.baselines import Exhaustive, NSGA2Search, RandomSearch
    from codesign.explore.bo import BayesOpt

    sp, ev, opt = ctx.space, ctx.evaluator, ctx.cfg.optimizer
    if method == "bo":
        return BayesOpt(sp, ev.cost_feasible, lambda m: not ev.is_cached(m), algorithm=opt.algorithm,
                        ref_point=ctx.ref_point(), penalty=opt.member_eval_penalty, discrete_max=opt.discrete_max,
                        mixed_max_combos=opt.mixed_max_combos, knob_samples=opt.knob_samples,
                        num_restarts=opt.num_restarts, raw_samples=opt.raw_samples, mc_samples=opt.mc_samples,
                        seed=seed)
    if method == "random":
        return RandomSearch(sp, ev.cost_feasible, seed=seed)
    if method == "nsga2":
        init = RandomSearch(sp, ev.cost_feasible, seed=seed).take(opt.n_init)
        return NSGA2Search(sp, ev.cost_feasible, len(ctx.cfg.objectives), seed=seed, pop_size=opt.n_init,
                           initial=init)
    if method == "exhaustive":
        return Exhaustive(sp, ev.cost_feasible)
    raise ConfigError(f"unknown search method {method!r} (allowed: bo, random, nsga2, exhaustive)")


def budget_of(cfg: StudyConfig) -> int:
    """Distinct configurations each of bo/random/nsga2 evaluates."""
    return cfg.optimizer.n_init + cfg.optimizer.iterations * cfg.optimizer.q


def run_method(ctx: StudyContext, method: str, seed: int = 0, budget: int | None = None) -> list[StudyPoint]:
    """Run one search method (resuming stored progress) until ``budget`` distinct configurations.

    Returns:
        The method's stored points.
    """
    from tqdm.auto import tqdm

    cfg = ctx.cfg
    budget = budget_of(cfg) if budget is None else budget
    configs, objs, feas, last_it = stored_history(ctx, method, seed)
    searcher = make_searcher(ctx, method, seed)
    if method == "exhaustive":
        budget = len(searcher.order)
    init = None
    if method == "bo":
        # the same initial design as random search and NSGA-II (common random numbers)
        from codesign.explore.baselines import RandomSearch

        init = RandomSearch(ctx.space, ctx.evaluator.cost_feasible, seed=seed).take(cfg.optimizer.n_init)
    bar = tqdm(total=budget, initial=min(len(configs), budget), desc=f"{method} (seed {seed})",
               disable=not ctx.progress, leave=False)
    iteration = last_it + 1
    stalls = 0
    while len(configs) < budget:
        room = budget - len(configs)
        if method == "bo" and len(configs) < len(init or []) and any(c not in set(configs) for c in init):
            batch = [c for c in init if c not in set(configs)]
        elif method == "exhaustive":
            batch = searcher.propose(configs, None, q=room)
        else:
            Y = fill_missing(ctx.to_max(objs)) if objs else np.zeros((0, len(cfg.objectives)))
            batch = searcher.propose(configs, Y, q=min(cfg.optimizer.q, room))
        batch = [c for c in dict.fromkeys(batch) if c not in set(configs)][:room]
        if not batch:
            stalls += 1
            if stalls > 2:
                break  # space exhausted (or the searcher converged onto evaluated points)
            continue
        results: list[PointResult] = ctx.evaluator.evaluate(batch)
        for r in results:
            ctx.store.add_study_point(StudyPoint(ctx.name, method, seed, len(configs), iteration, r.config,
                                                 r.objectives, r.feasible))
            configs.append(r.config)
            objs.append(r.objectives)
            feas.append(r.feasible)
        bar.update(len(results))
        iteration += 1
    bar.close()
    return ctx.store.study_points(ctx.name, method=method, seed=seed)


def run_study(ctx: StudyContext, methods: Sequence[str] | None = None, seed: int | None = None) -> StudyResult:
    """Run the config's methods (same budget each), then the exhaustive reference front when small;
    summarise the study and store its result.

    The exhaustive front is computed when the discrete space has at most ``exhaustive_max``
    configurations and every member has stored answers by then (it never triggers member
    evaluations of its own unless ``exhaustive`` is among the methods).
    """
    cfg = ctx.cfg
    methods = list(methods or cfg.methods)
    seed = cfg.seed if seed is None else seed
    check_feasible(ctx)
    try:
        ctx.store.create_study(ctx.name, study_config_dict(cfg))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for m in methods:
        if m != "exhaustive":
            run_method(ctx, m, seed)
    small = not ctx.space.knobs and ctx.space.n_discrete() <= cfg.exhaustive_max
    if "exhaustive" in methods or (small and not ctx.evaluator.uncached(ctx.space.members)):
        run_method(ctx, "exhaustive", 0)
    return summarize_study(ctx)


def summarize_study(ctx: StudyContext) -> StudyResult:
    """Summarise the study's stored points (:func:`codesign.explore.results.summarize`) and store the result."""
    from codesign.explore.results import summarize

    result = summarize(ctx.name, ctx.store.study_points(ctx.name), ctx.objectives, ctx.cfg.ref_point)
    ctx.store.save_study_result(result)
    return result
