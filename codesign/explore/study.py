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

    def observation_variance(self, configs: Sequence[Configuration]) -> np.ndarray:
        """``(n, m)`` sampling variances of the configurations' objectives: a quality objective's
        squared paired-bootstrap standard error (:mod:`codesign.explore.uncertainty`), 0 for exact
        costs. Computed once per member set (quality depends on the members only)."""
        from codesign.explore.uncertainty import quality_draws
        from codesign.objectives import objectives as registered
        from codesign.records import BootstrapSettings

        names = [n for n, _ in self.objectives if n in registered() and registered()[n].source == "quality"]
        out = np.zeros((len(configs), len(self.objectives)))
        u = self.cfg.uncertainty
        if not names or u.resamples <= 0 or not configs:
            return out
        cache = self.__dict__.setdefault("_variance", {})
        new = [m for m in dict.fromkeys(c.members for c in configs) if m not in cache]
        if new:
            draws = quality_draws(self.evaluator.quality, new, names, BootstrapSettings(u.resamples, u.level,
                                                                                         self.cfg.seed))
            for m in new:
                cache[m] = {n: float(np.nanvar(d, ddof=1)) if np.isfinite(d).sum() > 1 else math.nan
                            for n, d in draws[m].items()}
        for j, (n, _) in enumerate(self.objectives):
            if n in names:
                out[:, j] = [cache[c.members].get(n, math.nan) for c in configs]
        return out

    def exact_objectives(self):
        """The cost objectives as :class:`~codesign.explore.bo.ExactObjectives`: the analytical model
        gives their values for any configuration before it is evaluated (the same numbers
        :meth:`ObjectiveEvaluator.evaluate` reports)."""
        from codesign.explore.bo import ExactObjectives
        from codesign.objectives import objectives as registered
        from codesign.pareto import to_maximization

        names, directions = zip(*self.objectives)
        cols = tuple(j for j, n in enumerate(names) if n in registered() and registered()[n].source == "cost")

        def values(configs: Sequence[Configuration]) -> np.ndarray:
            vals = np.array([[_num(self.evaluator.costs.costs(c).get(names[j])) for j in cols] for c in configs],
                            dtype=np.float64)
            return to_maximization(vals.reshape(len(configs), len(cols)), [directions[j] for j in cols])

        return ExactObjectives(cols, values)

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
        # one bar for the stage (per member), not a bar per quantization and task of each member
        jobs = [MemberJob(by_id[m].to_dict(), tuple(cfg.tasks), cfg.mode, cfg.limit, cfg.seed, cfg.data_dir,
                          False, subtasks, cfg.protocol) for m in missing]
        evaluate_members(executor, jobs, [by_id[m].short_name for m in missing], store, progress)

    evaluator = ObjectiveEvaluator(quality, costs, cfg.constraints, ensure)
    return StudyContext(cfg, store, name or cfg.name, space, evaluator, members, progress)


def evaluate_members(executor, jobs: list, names: list[str], store, progress: bool) -> None:
    """Run on-demand member evaluations under one progress bar: in-process one job at a time
    (the bar names the member being quantized and evaluated), else all jobs at once on the executor (Ray: in parallel)."""
    from tqdm.auto import tqdm

    from codesign.explore.executor import InProcessExecutor, PoolExecutor

    with _quiet_libraries(), tqdm(total=len(jobs), desc="quantize + evaluate members", unit="member",
                                  disable=not progress, leave=False) as bar:
        if isinstance(executor, PoolExecutor):
            executor.run(jobs, store, on_done=lambda: bar.update(1))
            return
        if not isinstance(executor, InProcessExecutor):
            executor.run(jobs, store)  # workers return rows; this process alone writes them
            bar.update(len(jobs))
            return
        for job, name in zip(jobs, names):
            bar.set_postfix_str(name)
            executor.run([job], store)
            bar.update(1)


class _quiet_libraries:
    """transformers' own per-model progress bars (weight loading) off while a stage bar runs."""

    def __enter__(self):
        try:
            from transformers.utils import logging as hf_logging

            self._was = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - transformers is a dependency
            self._was = None
        return self

    def __exit__(self, *exc):
        if self._was:
            from transformers.utils import logging as hf_logging

            hf_logging.enable_progress_bar()


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
                        seed=seed, exact=ctx.exact_objectives() if opt.exact_costs else None)
    if method == "random":
        return RandomSearch(sp, ev.cost_feasible, seed=seed)
    if method == "nsga2":
        init = RandomSearch(sp, ev.cost_feasible, seed=seed).take(opt.n_init)
        return NSGA2Search(sp, ev.cost_feasible, len(ctx.cfg.objectives), seed=seed, pop_size=opt.n_init,
                           initial=init)
    if method == "exhaustive":
        return Exhaustive(sp, ev.cost_feasible)
    raise ConfigError(f"unknown search method {method!r} (allowed: bo, random, nsga2, exhaustive)")


#: Rough wall-clock costs on a quiet 2-core box (SmolLM2-135M, log-likelihood scoring), for the
#: start-of-run estimate only: the issue-22 report timed the earlier default (9 members x 60 items,
#: GPTQ/AWQ calibration) at 7 min 41 s from an empty cache, i.e. <= 0.85 s per member-item with
#: quantization included; RTN needs no calibration. Seconds to quantize one member by method,
#: seconds per evaluated item, seconds per BO proposal batch.
QUANTIZE_S = {"rtn": 3.0, "gptq": 20.0, "awq": 20.0, "dense": 0.0}
ITEM_S = 0.8
BO_BATCH_S = 4.0


def plan(ctx: StudyContext) -> tuple[str, float]:
    """What the study will do, in one paragraph, and a rough duration in seconds (2-core CPU)."""
    cfg, sp = ctx.cfg, ctx.space
    todo = [m for m in ctx.members if not ctx.evaluator.is_cached(m.variant_id)]
    items = sum(ctx.evaluator.quality.n_items(t) or (cfg.limit or 0) for t in cfg.tasks)
    searches = [m for m in cfg.methods if m != "exhaustive"]
    small = not sp.knobs and sp.n_discrete() <= cfg.exhaustive_max
    seconds = sum(QUANTIZE_S.get(m.method, 20.0) + ITEM_S * items for m in todo)
    seconds += BO_BATCH_S * cfg.optimizer.iterations * searches.count("bo")
    text = (f"quantize + evaluate {len(todo)} of {sp.n_members} members on {items} items each "
            f"({', '.join(cfg.tasks)}); search {sp.n_discrete()} configurations with "
            f"{', '.join(searches) or 'no search'} ({budget_of(cfg)} evaluations each)"
            + ("; then the exhaustive front as reference" if small or "exhaustive" in cfg.methods else "")
            + (f"; trust intervals from {cfg.uncertainty.resamples} paired item resamples"
               if cfg.uncertainty.resamples else ""))
    return text, seconds


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

    def method_bar():
        return tqdm(total=budget, initial=min(len(configs), budget), desc=f"{method} (seed {seed})",
                    disable=not ctx.progress, leave=False)

    bar = method_bar()
    iteration = last_it + 1
    stalls = 0
    while len(configs) < budget:
        room = budget - len(configs)
        if method == "bo" and len(configs) < len(init or []) and any(c not in set(configs) for c in init):
            batch = [c for c in init if c not in set(configs)]
        elif method == "exhaustive":
            batch = searcher.propose(configs, None, q=room)
        elif method == "bo":  # trust enters the GP with its observed sampling variance (fixed-noise GP)
            Y = fill_missing(ctx.to_max(objs))
            batch = searcher.propose(configs, Y, q=min(cfg.optimizer.q, room), Yvar=ctx.observation_variance(configs))
        else:
            Y = fill_missing(ctx.to_max(objs)) if objs else np.zeros((0, len(cfg.objectives)))
            batch = searcher.propose(configs, Y, q=min(cfg.optimizer.q, room))
        batch = [c for c in dict.fromkeys(batch) if c not in set(configs)][:room]
        if not batch:
            stalls += 1
            if stalls > 2:
                break  # space exhausted (or the searcher converged onto evaluated points)
            continue
        if ctx.progress and any(not ctx.evaluator.is_cached(m) for c in batch for m in c.members):
            # the member stage shows its own bar: close this one meanwhile (one bar at a time, not nested)
            bar.close()
            results: list[PointResult] = ctx.evaluator.evaluate(batch)
            bar = method_bar()
        else:
            results = ctx.evaluator.evaluate(batch)
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
    """Summarise the study's stored points (:func:`codesign.explore.results.summarize`), with the
    paired item bootstrap of its quality objectives, and store the result."""
    from codesign.explore.results import summarize

    points = ctx.store.study_points(ctx.name)
    draws, settings = study_draws(ctx, points)
    result = summarize(ctx.name, points, ctx.objectives, ctx.cfg.ref_point, draws, settings)
    ctx.store.save_study_result(result)
    return result


def study_draws(ctx: StudyContext, points: Sequence[StudyPoint]):
    """Bootstrap draws of the study's quality objectives for every feasible evaluated member set
    (``(None, None)`` when the config turns the bootstrap off or no quality objective is studied)."""
    from codesign.explore.uncertainty import quality_draws
    from codesign.objectives import objectives as registered
    from codesign.records import BootstrapSettings

    u = ctx.cfg.uncertainty
    names = [n for n, _ in ctx.objectives if n in registered() and registered()[n].source == "quality"]
    if u.resamples <= 0 or not names:
        return None, None
    settings = BootstrapSettings(u.resamples, u.level, ctx.cfg.seed)
    sets = list(dict.fromkeys(p.config.members for p in points if p.feasible))
    missing = [m for s in sets for m in s if not ctx.evaluator.is_cached(m)]
    if missing:  # points stored by an earlier run whose members lost their answers: no intervals
        return None, None
    return quality_draws(ctx.evaluator.quality, sets, names, settings), settings
