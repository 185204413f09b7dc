"""What a study concludes from its points: the Pareto fronts, the hypervolume traces, the recommendations.

:func:`summarize` is the one place they are computed, on the study's own objective directions and
reference point; :func:`~codesign.explore.study.run_study` persists the resulting
:class:`~codesign.records.StudyResult` in the store, and the report reads it back and recomputes
nothing. The ``*_frame`` functions tabulate points and results the same way for explore's CSVs,
the report's tables and the experiments.

Missing objective values (a point without area data, a task with no answered item) are filled with
the worst value of that objective over the study's points (:func:`codesign.pareto.fill_missing`),
for fronts, hypervolumes and recommendations alike.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from codesign import objectives as registry
from codesign.pareto import (fill_missing, hypervolume, hypervolume_trace, log_hv_difference, nadir_reference,
                             pareto_mask, to_maximization)
from codesign.records import (BootstrapSettings, FrontPoint, HypervolumeStep, Interval, ParetoProbability,
                              Recommendation, StudyPoint, StudyResult, VariantSpec, ensemble_label)

Draws = dict[str, np.ndarray]  # quality objective -> (B,) bootstrap draws (codesign.explore.uncertainty)


def objective_matrix(points: Sequence[StudyPoint], names: Sequence[str]) -> np.ndarray:
    """``(n_points, n_objectives)`` values in their own units, NaN where a point has none."""
    return np.array([[p.value(n) for n in names] for p in points], dtype=np.float64).reshape(len(points), len(names))


def maximised(points: Sequence[StudyPoint], objectives: Sequence[tuple[str, str]]) -> np.ndarray:
    """``(n, m)`` objective values flipped to larger-is-better, missing values filled (module docstring)."""
    names, directions = zip(*objectives) if objectives else ((), ())
    return fill_missing(to_maximization(objective_matrix(points, names), directions))


def reference_point(Y: np.ndarray, feasible: np.ndarray, configured: Mapping[str, float] | None,
                    objectives: Sequence[tuple[str, str]]) -> np.ndarray:
    """The configured reference point (own units, flipped), else the nadir of every feasible point minus 10%."""
    if configured is not None:
        return to_maximization(np.array([[configured[n] for n, _ in objectives]]), [d for _, d in objectives])[0]
    return nadir_reference(Y[feasible] if feasible.any() else Y)


def _config_key(p: StudyPoint) -> tuple:
    c = p.config
    return (c.members, c.schedule, c.spec, c.knobs)


def distinct(points: Sequence[StudyPoint], feasible_only: bool = True, spec: str | None = None
             ) -> tuple[list[int], dict[int, tuple[str, ...]]]:
    """Indices of the first point of every distinct configuration (feasible only, of accelerator
    ``spec`` when given; points in stored order), and per such index the methods that evaluated it."""
    first: dict[tuple, int] = {}
    found: dict[int, set[str]] = {}
    for i, p in enumerate(points):
        if (feasible_only and not p.feasible) or (spec is not None and p.config.spec != spec):
            continue
        j = first.setdefault(_config_key(p), i)
        found.setdefault(j, set()).add(p.method)
    idx = list(first.values())
    return idx, {i: tuple(sorted(found[i])) for i in idx}


def pareto_front(points: Sequence[StudyPoint], Y: np.ndarray, spec: str | None = None) -> list[FrontPoint]:
    """Distinct feasible non-dominated configurations (of one accelerator when ``spec`` is given),
    best first in the first objective."""
    idx, found = distinct(points, True, spec)
    if not idx:
        return []
    on = np.array(idx)[pareto_mask(Y[idx])]
    on = on[np.argsort(-Y[on, 0], kind="stable")]
    return [FrontPoint(points[i].key, found[i], spec) for i in on]


def hypervolume_steps(points: Sequence[StudyPoint], Y: np.ndarray, ref: np.ndarray,
                      reference_hv: float | None) -> list[HypervolumeStep]:
    """The trace of every (method, seed): one step per evaluation; exhaustive enumeration, which is
    not iterative, one step per iteration (in practice only its final value)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault((p.method, p.seed), []).append(i)
    out = []
    for (method, seed), idx in sorted(groups.items()):
        idx = sorted(idx, key=lambda i: points[i].point_id)
        its = [points[i].iteration for i in idx]
        steps = [k for k in range(1, len(idx) + 1)
                 if method != "exhaustive" or k == len(idx) or its[k] != its[k - 1]]
        feas = np.array([points[i].feasible for i in idx], dtype=bool)
        for k, hv in zip(steps, hypervolume_trace(Y[idx], feas, ref, steps)):
            frac = log_diff = None
            if reference_hv:
                frac, log_diff = float(hv / reference_hv), log_hv_difference(hv, reference_hv)
            out.append(HypervolumeStep(method, int(seed), k, int(its[k - 1]), float(hv), frac, log_diff))
    return out


def primary_objective(objectives: Sequence[tuple[str, str]]) -> int:
    """Index of the objective recommendations and plots lead with: ``trust``, else the first maximised one."""
    names = [n for n, _ in objectives]
    if "trust" in names:
        return names.index("trust")
    return next((j for j, (_, d) in enumerate(objectives) if d == "max"), 0)


def recommend(points: Sequence[StudyPoint], Y: np.ndarray, objectives: Sequence[tuple[str, str]],
              draws: Mapping[tuple[str, ...], Draws] | None = None, level: float = 0.95) -> list[Recommendation]:
    """A few configurations of the feasible front (every constraint is in ``feasible`` already):
    the best in the primary objective (``trust`` if present), the best in the first minimised one,
    and the knee, the front point nearest the ideal point with each objective scaled to [0, 1].
    A configuration filling several roles is listed once, with its roles joined. With bootstrap
    ``draws`` (member set -> objective -> resampled values), each recommendation lists the other
    front configurations statistically indistinguishable from it (:func:`~codesign.explore.uncertainty.indistinguishable`)."""
    idx, _ = distinct(points)
    if not idx:
        return []
    front = np.array(idx)[pareto_mask(Y[idx])]
    Yf = Y[front]
    picks: list[tuple[int, str, str]] = []

    def add(i: int, role: str, reason: str) -> None:
        for k, (j, r, why) in enumerate(picks):
            if j == i:
                picks[k] = (j, f"{r} · {role}", why)
                return
        picks.append((i, role, reason))

    def word(j: int) -> tuple[str, str]:
        name, direction = objectives[j]
        what = registry.objectives()[name].label.lower() if name in registry.objectives() else name
        return ("Highest" if direction == "max" else "Lowest"), what

    p = primary_objective(objectives)
    how, what = word(p)
    add(int(front[np.argmax(Yf[:, p])]), f"{how} {what}",
        f"best {what} among configurations meeting every constraint")
    cost = next((j for j, (_, d) in enumerate(objectives) if d == "min" and j != p), None)
    if cost is not None:
        how, what = word(cost)
        add(int(front[np.argmax(Yf[:, cost])]), f"{how} {what}", f"best {what} on the Pareto front")
    if len(Yf) >= 3:
        lo, hi = Yf.min(0), Yf.max(0)
        norm = (Yf - lo) / np.where(hi > lo, hi - lo, 1.0)
        add(int(front[np.argmin(np.linalg.norm(1.0 - norm, axis=1))]), "Balanced (knee)",
            "closest to the ideal point with every objective scaled to [0, 1]")
    if not draws:
        return [Recommendation(role, why, points[i].key) for i, role, why in picks]
    from codesign.explore.uncertainty import indistinguishable

    order = front[np.argsort(-Y[front, p], kind="stable")]
    out = []
    for i, role, why in picks:
        mine = draws.get(points[i].config.members, {})
        alts = tuple(points[j].key for j in order if j != i
                     and indistinguishable(mine, draws.get(points[j].config.members, {}), level))
        out.append(Recommendation(role, why, points[i].key, alts))
    return out


def uncertainty(points: Sequence[StudyPoint], Y: np.ndarray, objectives: Sequence[tuple[str, str]],
                draws: Mapping[tuple[str, ...], Draws], level: float) -> tuple[list[Interval], list[ParetoProbability]]:
    """Intervals of the bootstrapped objectives and the probability of being on the front, for every
    distinct feasible configuration (its first point). ``Y``: maximised objectives of ``points``."""
    from codesign.explore.uncertainty import pareto_probability, summarize_draws

    idx, _ = distinct(points)
    if not idx or not draws:
        return [], []
    B = max((len(v) for d in draws.values() for v in d.values()), default=0)
    if B == 0:
        return [], []
    Yb = np.repeat(Y[idx][None], B, axis=0)  # (B, n, m): exact objectives repeat along B
    intervals = []
    for k, i in enumerate(idx):
        mine = draws.get(points[i].config.members, {})
        for j, (name, direction) in enumerate(objectives):
            if name not in mine:
                continue
            se, lo, hi = summarize_draws(mine[name], level)
            intervals.append(Interval(points[i].key, name, points[i].value(name), se, lo, hi))
            Yb[:, k, j] = mine[name] * (1.0 if direction == "max" else -1.0)
    probs = pareto_probability(Yb)
    return intervals, [ParetoProbability(points[i].key, float(pr)) for i, pr in zip(idx, probs)]


def summarize(study: str, points: Sequence[StudyPoint], objectives: Sequence[tuple[str, str]],
              ref_point: Mapping[str, float] | None = None, draws: Mapping[tuple[str, ...], Draws] | None = None,
              bootstrap: BootstrapSettings | None = None) -> StudyResult:
    """The study's result from its stored points (``points`` in store order: method, seed, point id).

    Args:
        objectives: ``(name, direction)`` of the study's objectives, directions as configured.
        ref_point: the configured reference point in own units (``None``: inferred).
        draws: bootstrap draws of the quality objectives per member set
            (:func:`codesign.explore.uncertainty.quality_draws`); ``None``: no uncertainty.
        bootstrap: the settings the draws were made with.
    """
    objectives = tuple((str(n), str(d)) for n, d in objectives)
    points = list(points)
    Y = maximised(points, objectives)
    feasible = np.array([p.feasible for p in points], dtype=bool)
    ref = reference_point(Y, feasible, ref_point, objectives)
    ex = np.array([p.method == "exhaustive" for p in points], dtype=bool)
    reference_hv = hypervolume(Y[ex & feasible], ref) if ex.any() else None
    specs = list(dict.fromkeys(p.config.spec for p in points))
    front = pareto_front(points, Y)
    if len(specs) > 1:
        for s in specs:
            front += pareto_front(points, Y, s)
    level = bootstrap.level if bootstrap is not None else 0.95
    intervals, probs = uncertainty(points, Y, objectives, draws, level) if draws else ([], [])
    return StudyResult(study, objectives, tuple(float(v) for v in ref), reference_hv, len(points), tuple(front),
                       tuple(hypervolume_steps(points, Y, ref, reference_hv)),
                       tuple(recommend(points, Y, objectives, draws, level)),
                       bootstrap if intervals else None, tuple(intervals), tuple(probs))


# -- tables ---------------------------------------------------------------------------------------

def points_frame(points: Sequence[StudyPoint], specs: Mapping[str, VariantSpec]):
    """One row per point: method, seed, point_id, iteration, ensemble (:func:`~codesign.records.ensemble_label`),
    configuration (label with schedule, and accelerator when the study has several), n_members,
    schedule, spec, knob_<name>..., every objective, feasible, members (variant ids)."""
    import pandas as pd

    several = len({p.config.spec for p in points}) > 1
    rows = []
    for p in points:
        c = p.config
        rows.append(dict(method=p.method, seed=p.seed, point_id=p.point_id, iteration=p.iteration,
                         ensemble=_ensemble(c.members, specs), configuration=c.label(specs, several),
                         n_members=len(c.members), schedule=c.schedule, spec=c.spec,
                         **{f"knob_{k}": v for k, v in c.knobs}, **dict(p.objectives), feasible=bool(p.feasible),
                         members=" ".join(c.members)))
    return pd.DataFrame(rows)


def distinct_frame(points: Sequence[StudyPoint], specs: Mapping[str, VariantSpec], result: StudyResult | None = None):
    """One :func:`points_frame` row per distinct configuration (its first point), with ``found_by``
    (and, given the study's ``result``, its uncertainty columns: :func:`add_uncertainty`)."""
    idx, found = distinct(points, feasible_only=False)
    df = points_frame([points[i] for i in idx], specs)
    if not df.empty:
        df["found_by"] = [",".join(found[i]) for i in idx]
        if result is not None:
            add_uncertainty(df, result, [points[i].key for i in idx])
    return df


def add_uncertainty(df, result: StudyResult, keys: Sequence[tuple[str, int, int]]) -> None:
    """Add ``<objective>_se``, ``<objective>_low``, ``<objective>_high`` for every bootstrapped
    objective and ``p_pareto`` to rows of configurations ``keys`` (in place; nothing without a bootstrap)."""
    if result.bootstrap is None:
        return
    for name in dict.fromkeys(i.objective for i in result.intervals):
        ivs = [result.interval(k, name) for k in keys]
        for col in ("se", "low", "high"):
            df[f"{name}_{col}"] = [getattr(iv, col) if iv is not None else np.nan for iv in ivs]
    df["p_pareto"] = [result.p_pareto(k) if result.p_pareto(k) is not None else np.nan for k in keys]


def _ensemble(members: Sequence[str], specs: Mapping[str, VariantSpec]) -> str:
    if all(m in specs for m in members):
        return ensemble_label([specs[m] for m in members])
    return "+".join(m.split("--")[-1] for m in members)


def front_frame(result: StudyResult, points: Sequence[StudyPoint], specs: Mapping[str, VariantSpec],
                spec: str | None = None):
    """The persisted front (the study's, or one accelerator's) as :func:`points_frame` rows plus ``found_by``."""
    import pandas as pd

    by_key = {p.key: p for p in points}
    front = [f for f in result.front_of(spec) if f.point in by_key]
    df = points_frame([by_key[f.point] for f in front], specs)
    if df.empty:
        return pd.DataFrame()
    df["found_by"] = [",".join(f.found_by) for f in front]
    add_uncertainty(df, result, [f.point for f in front])
    return df


def recommendations_frame(result: StudyResult, points: Sequence[StudyPoint], specs: Mapping[str, VariantSpec]):
    """The persisted recommendations as :func:`points_frame` rows led by ``role`` and ``reason``."""
    import pandas as pd

    by_key = {p.key: p for p in points}
    recs = [r for r in result.recommendations if r.point in by_key]
    df = points_frame([by_key[r.point] for r in recs], specs)
    if df.empty:
        return pd.DataFrame()
    idx, found = distinct(points, feasible_only=False)
    methods = {points[i].key: found[i] for i in idx}
    df["found_by"] = [",".join(methods.get(r.point, (r.point[0],))) for r in recs]
    add_uncertainty(df, result, [r.point for r in recs])
    if result.bootstrap is not None:
        several = len({p.config.spec for p in points}) > 1
        df["alternatives"] = ["; ".join(by_key[a].config.label(specs, several) for a in r.alternatives if a in by_key)
                              for r in recs]
    df.insert(0, "reason", [r.reason for r in recs])
    df.insert(0, "role", [r.role for r in recs])
    return df


def hypervolume_frame(result: StudyResult, final: bool = False):
    """The persisted hypervolume trace (``final``: the last step of each method and seed) as a frame:
    method, seed, n_evals, iteration, hv, hv_fraction, log_hv_diff."""
    import pandas as pd
    from dataclasses import asdict

    steps = result.final_hypervolume() if final else result.hypervolume
    cols = ["method", "seed", "n_evals", "iteration", "hv", "hv_fraction", "log_hv_diff"]
    return pd.DataFrame([asdict(s) for s in steps], columns=cols)


def describe(result: StudyResult, points: Sequence[StudyPoint], specs: Mapping[str, VariantSpec],
             max_rows: int = 12, width: int = 80) -> str:
    """The front and the recommendations as plain text no wider than ``width`` (the terminal summary).

    One numbered row per front configuration (best first in the primary objective): a compact
    ensemble name, schedule, accelerator, each objective (a bootstrapped one as ``estimate
    (low-high)``) and the probability of being on the front; then each recommendation by row
    number with the rows statistically indistinguishable from it.
    """
    by_key = {p.key: p for p in points}
    front = [f for f in result.front_of(None) if f.point in by_key][:max_rows]
    if not front:
        return "no feasible configuration found"
    several = len({p.config.spec for p in points}) > 1
    head = ["#", "ensemble", "schedule"] + (["hw"] if several else [])
    head += [_short_objective(n) for n in result.objective_names]
    boot = result.bootstrap is not None
    head += ["P(front)"] if boot else []
    rows = []
    for k, f in enumerate(front):
        c = by_key[f.point].config
        row = [str(k + 1), _compact_ensemble(c.members, specs), c.schedule if len(c.members) > 1 else "-"]
        row += [c.spec] if several else []
        for n in result.objective_names:
            v, iv = by_key[f.point].value(n), result.interval(f.point, n)
            row.append(f"{v:.3g}" if iv is None or np.isnan(iv.low) else f"{v:.1f} ({iv.low:.0f}-{iv.high:.0f})")
        if boot:
            pr = result.p_pareto(f.point)
            row.append("" if pr is None else f"{pr:.2f}")
        rows.append(row)
    lines = _fit_columns(head, rows, width, shrink=1, text_cols=3 + several)
    if several:
        lines.append("hw: the accelerator spec")
    number = {f.point: k + 1 for k, f in enumerate(front)}
    if boot:
        lines.append(f"({100 * result.bootstrap.level:g}% intervals and P(front) from {result.bootstrap.n_resamples} "
                     "paired item resamples)"[:width])
    for r in result.recommendations:
        ref = f"#{number[r.point]}" if r.point in number else _compact_ensemble(by_key[r.point].config.members, specs)
        text = f"{r.role}: {ref}"
        if boot:
            alts = [f"#{number[a]}" for a in r.alternatives if a in number]
            more = len(r.alternatives) - len(alts)
            text += ("; indistinguishable: " + ", ".join(alts) + (f" +{more} more" if more else "")
                     if r.alternatives else "; no indistinguishable alternative")
        lines.extend(textwrap.wrap(text, width, subsequent_indent="  "))
    return "\n".join(lines)


def _short_objective(name: str) -> str:
    o = registry.objectives().get(name)
    if o is None:
        return name
    return {"trust": "trust %", "tpot_ms": "TPOT ms", "peak_memory_gb": "mem GB", "energy_per_token_j": "J/token",
            "area_mm2": "area mm2"}.get(name, f"{name} {o.unit}")


def _compact_ensemble(members: Sequence[str], specs: Mapping[str, VariantSpec]) -> str:
    """Members' short names with a group size they all share left out: ``rtn-w3+gptq-w8``."""
    known = [specs[m] for m in members if m in specs]
    if len(known) < len(members):
        return "+".join(m.split("--")[-1] for m in members)
    label = ensemble_label(known)
    groups = {s.group_size for s in known if not s.is_dense}
    return label.replace(f"g{groups.pop()}", "") if len(groups) == 1 else label


def _fit_columns(head: list[str], rows: list[list[str]], width: int, shrink: int, text_cols: int) -> list[str]:
    """Columns one space apart, the first ``text_cols`` left-aligned, the rest right-aligned; column
    ``shrink`` is cut (with ``~``) to fit ``width``."""
    cols = list(zip(head, *rows))
    w = [max(len(x) for x in col) for col in cols]
    over = sum(w) + (len(w) - 1) - width
    if over > 0:
        w[shrink] = max(len(head[shrink]), w[shrink] - over)

    def cell(x: str, j: int) -> str:
        x = x if len(x) <= w[j] else x[: w[j] - 1] + "~"
        return x.ljust(w[j]) if j < text_cols else x.rjust(w[j])

    return [" ".join(cell(x, j) for j, x in enumerate(r)).rstrip() for r in [head] + rows]
