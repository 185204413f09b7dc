"""Running a study: search methods in one harness, every point stored, resume after interruption.

:func:`build_context` turns a :class:`~codesign.explore.config.StudyConfig` into a search space
and an objective evaluator over the result store. :func:`run_method` runs one search method with
one seed against a budget of distinct configurations; each evaluated batch goes to the store's
``study_points`` (``config`` = members/schedule/spec/knobs, ``objectives`` = every objective the
study can compute, ``feasible``) before the next proposal, so an interrupted study resumes from
the stored history (points already stored are never re-evaluated). :func:`run_study` runs the
config's methods, the exhaustive reference front where the space is small, and summarises
hypervolumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from codesign.config import ConfigError
from codesign.explore.config import StudyConfig, study_config_dict
from codesign.explore.hypervolume import hypervolume, log_hv_difference
from codesign.explore.objectives import CostTable, ObjectiveEvaluator, PointResult, QualityTable
from codesign.explore.pareto import pareto_mask
from codesign.explore.space import Configuration, Knob, Space
from codesign.records import VariantSpec


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
    def directions(self) -> list[str]:
        return [o.direction for o in self.cfg.objectives]

    def to_max(self, objectives: Sequence[dict[str, float]]) -> np.ndarray:
        """Objective dicts -> ``(n, m)`` maximised values (NaN where missing)."""
        names = self.cfg.objective_names
        sign = np.array([o.sign for o in self.cfg.objectives])
        vals = np.array([[_num(o.get(n)) for n in names] for o in objectives], dtype=np.float64)
        return vals.reshape(len(objectives), len(names)) * sign

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

    from codesign.explore.executor import InProcessExecutor, MemberJob, evaluate_member

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
    costs = CostTable(shape, bits, groups, cfg.workload)
    for s in cfg.specs:
        try:
            costs.spec(s)
        except (FileNotFoundError, KeyError) as exc:
            raise ConfigError(f"explore config: specs: unknown accelerator spec {s!r} "
                              f"(allowed: {', '.join(hwmodels.list_specs())} or a YAML path): {exc}") from exc
    space = Space(ids, list(cfg.schedules), list(cfg.specs), _knobs(cfg, costs), cfg.min_members, cfg.max_members)
    quality = QualityTable(store, cfg.tasks, cfg.mode, cfg.policy, bits, study_item_ids(cfg, cfg.tasks),
                           protocol=cfg.protocol)
    executor = executor or InProcessExecutor()
    by_id = {m.variant_id: m for m in members}

    def ensure(missing: list[str]) -> None:
        subtasks = tuple((t, tuple(s)) for t, s in sorted(cfg.subtasks.items()))
        jobs = [MemberJob(str(store.path), by_id[m].to_dict(), tuple(cfg.tasks), cfg.mode, cfg.limit, cfg.seed,
                          cfg.data_dir, progress, subtasks, cfg.protocol) for m in missing]
        if progress:
            print(f"evaluating {len(jobs)} member(s) on demand: {', '.join(by_id[m].short_name for m in missing)}")
        executor.map(evaluate_member, jobs)

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
    df = ctx.store.study_points(ctx.name, method=method, seed=seed)
    if df.empty:
        return [], [], [], -1
    configs = [ctx.space.canonical(Configuration.from_dict(c)) for c in df["config"]]
    return configs, list(df["objectives"]), [bool(f) for f in df["feasible"]], int(df["iteration"].max())


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


def _fill_nan(Y: np.ndarray) -> np.ndarray:
    """NaN objectives (e.g. no answered item) -> the worst observed value of that objective."""
    if not np.isnan(Y).any():
        return Y
    worst = np.nanmin(np.where(np.isnan(Y), np.inf, Y), axis=0)
    worst = np.where(np.isfinite(worst), worst, 0.0)
    return np.where(np.isnan(Y), worst, Y)


def run_method(ctx: StudyContext, method: str, seed: int = 0, budget: int | None = None) -> pd.DataFrame:
    """Run one search method (resuming stored progress) until ``budget`` distinct configurations.

    Returns:
        The method's stored points (``ResultStore.study_points`` frame).
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
            Y = _fill_nan(ctx.to_max(objs)) if objs else np.zeros((0, len(cfg.objectives)))
            batch = searcher.propose(configs, Y, q=min(cfg.optimizer.q, room))
        batch = [c for c in dict.fromkeys(batch) if c not in set(configs)][:room]
        if not batch:
            stalls += 1
            if stalls > 2:
                break  # space exhausted (or the searcher converged onto evaluated points)
            continue
        results: list[PointResult] = ctx.evaluator.evaluate(batch)
        for r in results:
            ctx.store.add_study_point(ctx.name, method, seed, len(configs), iteration, r.config.to_dict(),
                                      r.objectives, r.feasible)
            configs.append(r.config)
            objs.append(r.objectives)
            feas.append(r.feasible)
        bar.update(len(results))
        iteration += 1
    bar.close()
    return ctx.store.study_points(ctx.name, method=method, seed=seed)


def hv_table(ctx: StudyContext, points: pd.DataFrame, ref: np.ndarray | None = None,
             reference_hv: float | None = None) -> pd.DataFrame:
    """Hypervolume of the feasible points found after each evaluation, per (method, seed).

    Returns rows ``method, seed, n_evals, iteration, hv, hv_fraction, log_hv_diff`` (the last two
    relative to ``reference_hv``, the exhaustive front's, when given).
    """
    if ref is None:
        ref = reference_point(ctx, points)
    rows = []
    for (method, seed), grp in points.groupby(["method", "seed"], sort=True):
        grp = grp.sort_values("point_id")
        Y = _fill_nan(ctx.to_max(list(grp["objectives"])))
        feas = grp["feasible"].to_numpy(bool)
        its = grp["iteration"].to_numpy()
        for k in range(1, len(grp) + 1):
            if k < len(grp) and its[k] == its[k - 1] and method == "exhaustive":
                continue
            hv = hypervolume(Y[:k][feas[:k]], ref)
            row = dict(method=method, seed=int(seed), n_evals=k, iteration=int(its[k - 1]), hv=hv)
            if reference_hv:
                row["hv_fraction"] = hv / reference_hv
                row["log_hv_diff"] = log_hv_difference(hv, reference_hv)
            rows.append(row)
    return pd.DataFrame(rows)


def reference_point(ctx: StudyContext, points: pd.DataFrame) -> np.ndarray:
    """The configured reference point, else the nadir of every feasible point of the study (minus 10%)."""
    ref = ctx.ref_point()
    if ref is not None:
        return ref
    from codesign.explore.hypervolume import nadir_reference

    Y = _fill_nan(ctx.to_max(list(points["objectives"])))
    feas = points["feasible"].to_numpy(bool)
    return nadir_reference(Y[feas] if feas.any() else Y)


def pareto_table(ctx: StudyContext, points: pd.DataFrame) -> pd.DataFrame:
    """Distinct feasible non-dominated configurations over every method, with their objectives."""
    if points.empty:
        return pd.DataFrame()
    short = {m.variant_id: m.short_name for m in ctx.members}
    rows: dict[str, dict[str, Any]] = {}
    for _, p in points.iterrows():
        if not p["feasible"]:
            continue
        c = p["config"]
        key = repr((c["members"], c["schedule"], c["spec"], sorted(c["knobs"].items())))
        if key in rows:
            rows[key]["found_by"].add(p["method"])
            continue
        rows[key] = dict(ensemble="+".join(short.get(m, m) for m in c["members"]), n_members=len(c["members"]),
                         schedule=c["schedule"], spec=c["spec"],
                         **{f"knob_{k}": v for k, v in c["knobs"].items()},
                         **p["objectives"], members=" ".join(c["members"]), found_by={p["method"]})
    df = pd.DataFrame(list(rows.values()))
    if df.empty:
        return df
    Y = _fill_nan(ctx.to_max(df.to_dict("records")))
    df = df[pareto_mask(Y)].copy()
    df["found_by"] = df["found_by"].map(lambda s: ",".join(sorted(s)))
    first = ctx.cfg.objectives[0]
    return df.sort_values(first.name, ascending=first.direction == "min").reset_index(drop=True)


@dataclass
class StudyResult:
    """What :func:`run_study` produced."""

    name: str
    points: pd.DataFrame
    pareto: pd.DataFrame
    hv: pd.DataFrame
    summary: pd.DataFrame
    ref_point: np.ndarray
    reference_hv: float | None = None
    files: list[str] = field(default_factory=list)


def run_study(ctx: StudyContext, methods: Sequence[str] | None = None, seed: int | None = None) -> StudyResult:
    """Run the config's methods (same budget each), then the exhaustive reference front when small.

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
    points = ctx.store.study_points(ctx.name)
    ref = reference_point(ctx, points)
    ref_hv = None
    ex = points[points["method"] == "exhaustive"]
    if not ex.empty:
        Y = _fill_nan(ctx.to_max(list(ex["objectives"])))
        ref_hv = hypervolume(Y[ex["feasible"].to_numpy(bool)], ref)
    hv = hv_table(ctx, points, ref, ref_hv)
    summary = hv.sort_values("n_evals").groupby(["method", "seed"]).tail(1).reset_index(drop=True)
    return StudyResult(ctx.name, points, pareto_table(ctx, points), hv, summary, ref, ref_hv)
