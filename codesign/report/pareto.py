"""Pareto fronts, hypervolume traces and recommended configurations from a study's points.

Objectives come in mixed senses (trust up, latency down). Everything here works on a matrix
``Y`` of shape ``(n_points, n_objectives)`` flipped so that *larger is better* in every column
(:func:`to_maximize`), the convention of BoTorch's multi-objective utilities.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Objectives that are maximized; every other objective is minimized.
MAXIMIZE = {"trust", "mmlu", "adv", "fairness", "ethics", "ood"}

#: Axis labels with units, for figures and table headers.
OBJECTIVE_LABELS = {
    "trust": "Trust score (mean of 4 dimensions, %)",
    "mmlu": "MMLU accuracy (%)",
    "adv": "Adversarial robustness (%)",
    "fairness": "Fairness score (%)",
    "ethics": "Machine ethics accuracy (%)",
    "ood": "OOD robustness (%)",
    "tpot_ms": "Time per output token (ms)",
    "peak_memory_gb": "Peak memory (GB)",
    "energy_per_token_j": "Energy per token (J)",
    "area_mm2": "Compute area (mm²)",
}

#: Objective display order (known names first, the rest alphabetically).
OBJECTIVE_ORDER = list(OBJECTIVE_LABELS)


def objective_label(name: str) -> str:
    return OBJECTIVE_LABELS.get(name, name)


def order_objectives(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: (OBJECTIVE_ORDER.index(n) if n in OBJECTIVE_ORDER else 99, n))


def sense(name: str) -> float:
    """+1 for maximized objectives, -1 for minimized ones."""
    return 1.0 if name in MAXIMIZE else -1.0


def to_maximize(values: np.ndarray, names: list[str]) -> np.ndarray:
    """Flip minimized columns. ``values``: (n, m) -> (n, m), larger is better everywhere."""
    return np.asarray(values, dtype=float) * np.array([sense(n) for n in names])


# One implementation of the front and its hypervolume for the whole tool: the explorer's
# (vectorized, tested against BoTorch). The report only re-exports them.
from codesign.explore.hypervolume import hypervolume  # noqa: E402,F401  (Y (n, m) maximized, ref (m,))
from codesign.explore.hypervolume import nadir_reference as reference_point  # noqa: E402,F401
from codesign.explore.pareto import pareto_mask  # noqa: E402,F401  (Y (n, m) maximized -> bool (n,))


def hv_trace(points: pd.DataFrame, objectives: list[str], ref: np.ndarray | None = None) -> pd.DataFrame:
    """Hypervolume of the feasible points found after each evaluation, per method and seed.

    ``points``: :meth:`ResultStore.study_points` frame. ``ref`` is in the maximized space; by
    default one reference point for all methods (from every point of the study), so the
    curves are comparable. Returns rows (method, seed, iteration, n_points, hv): one per evaluated
    point in ``point_id`` order, ``n_points`` evaluations so far, ``iteration`` the one it came from.
    """
    Y_all = objective_matrix(points, objectives)
    if ref is None:
        ref = reference_point(to_maximize(Y_all, objectives))
    rows = []
    for (method, seed), grp in points.groupby(["method", "seed"], sort=True):
        grp = grp.sort_values("point_id")
        Y = to_maximize(objective_matrix(grp, objectives), objectives)
        feas = grp["feasible"].to_numpy(bool)
        its = grp["iteration"].to_numpy()
        # one row per evaluation: optimizers that propose q points per iteration are compared with
        # the others at equal budget; the iteration of each evaluation is kept alongside
        front_idx: list[int] = []
        hv_prev = 0.0
        for k in range(len(grp)):
            if feas[k]:
                cand = front_idx + [k]
                keep = pareto_mask(Y[cand])
                if keep[-1]:  # a point that adds nothing to the front leaves the hypervolume unchanged
                    front_idx = [c for c, kp in zip(cand, keep) if kp]
                    hv_prev = hypervolume(Y[front_idx], ref)
            rows.append(dict(method=method, seed=int(seed), iteration=int(its[k]), n_points=k + 1, hv=hv_prev))
    return pd.DataFrame(rows, columns=["method", "seed", "iteration", "n_points", "hv"])


def objective_matrix(points: pd.DataFrame, objectives: list[str]) -> np.ndarray:
    """(n_points, n_objectives) raw objective values (NaN where a point lacks one)."""
    return np.array([[_num(o.get(k)) for k in objectives] for o in points["objectives"]], dtype=float).reshape(
        len(points), len(objectives))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def unique_points(points: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct configuration (several optimizers may evaluate the same one)."""
    if points.empty:
        return points
    keyed = points.assign(_key=points["config"].map(config_key))
    first = keyed.drop_duplicates("_key").copy()
    first["found_by"] = first["_key"].map(keyed.groupby("_key")["method"].agg(lambda s: ",".join(sorted(set(s)))))
    return first.drop(columns="_key").reset_index(drop=True)


# -- constraints and recommendations --------------------------------------------------------

@dataclass
class Constraint:
    """``objective op bound``, e.g. ``tpot_ms <= 20``."""

    objective: str
    op: str  # "<=" or ">="
    bound: float

    def holds(self, value: float) -> bool:
        if value is None or np.isnan(value):
            return False
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def __str__(self) -> str:
        return f"{self.objective} {self.op} {self.bound:g}"


_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
_PREFIX = {"max_": "<=", "min_": ">="}


def parse_constraints(study_config: dict[str, Any]) -> list[Constraint]:
    """Constraints from a study config, in any of the forms a user would write.

    Accepted under ``constraints``: a mapping ``{tpot_ms: 20}`` (an upper bound for minimized
    objectives, a lower bound for maximized ones), ``{tpot_ms: {max: 20}}`` / ``{trust: {min: 60}}``,
    ``{max_tpot_ms: 20}``, or a list of strings like ``"tpot_ms <= 20"``.
    """
    raw = study_config.get("constraints") if isinstance(study_config, dict) else None
    out: list[Constraint] = []
    if not raw:
        return out
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, (list, tuple)):
        for entry in raw:
            if isinstance(entry, str):
                m = _CONSTRAINT_RE.match(entry)
                if m:
                    op = "<=" if m.group(2) in ("<=", "<") else ">="
                    out.append(Constraint(m.group(1), op, float(m.group(3))))
            elif isinstance(entry, dict) and "objective" in entry:
                for key, op in (("max", "<="), ("le", "<="), ("min", ">="), ("ge", ">=")):
                    if entry.get(key) is not None:
                        out.append(Constraint(entry["objective"], op, float(entry[key])))
        return out
    if isinstance(raw, dict):
        for name, val in raw.items():
            if isinstance(val, dict):
                for key, op in (("max", "<="), ("le", "<="), ("min", ">="), ("ge", ">=")):
                    if val.get(key) is not None:
                        out.append(Constraint(name, op, float(val[key])))
                continue
            if val is None or isinstance(val, bool):
                continue  # booleans (e.g. ``fits: true``) are checked by the study itself: see ``feasible``
            for prefix, op in _PREFIX.items():
                if name.startswith(prefix):
                    out.append(Constraint(name[len(prefix):], op, float(val)))
                    break
            else:
                out.append(Constraint(name, ">=" if name in MAXIMIZE else "<=", float(val)))
    return out


@dataclass
class Recommendation:
    """One recommended configuration and why it was picked."""

    role: str  # e.g. "Most trustworthy"
    reason: str
    point: dict[str, Any] = field(default_factory=dict)  # a row of the unique points frame


def recommend(points: pd.DataFrame, objectives: list[str], constraints: list[Constraint],
              primary: str = "trust") -> tuple[list[Recommendation], pd.DataFrame]:
    """Pick a few configurations from the feasible Pareto front.

    Returns the recommendations (most trustworthy, cheapest, balanced knee) and the candidate
    frame (unique feasible points meeting every constraint, with an ``on_front`` column).
    The knee is the front point nearest to the ideal point after scaling each objective to [0, 1].
    """
    pts = unique_points(points)
    if pts.empty:
        return [], pts
    vals = objective_matrix(pts, objectives)
    ok = pts["feasible"].to_numpy(bool)
    for c in constraints:
        if c.objective in objectives:
            col = vals[:, objectives.index(c.objective)]
            ok &= np.array([c.holds(v) for v in col])
    cand = pts[ok].reset_index(drop=True)
    if cand.empty:
        return [], cand
    Y = to_maximize(vals[ok], objectives)
    front = pareto_mask(Y)
    cand["on_front"] = front
    Yf, idx = Y[front], np.flatnonzero(front)
    recs: list[Recommendation] = []
    chosen: set[int] = set()

    def add(i: int, role: str, reason: str) -> None:
        if i in chosen:
            # one configuration filling several roles is listed once, with both roles
            for r in recs:
                if r.point.get("_row") == i:
                    r.role += f" · {role}"
            return
        chosen.add(i)
        recs.append(Recommendation(role, reason, {**cand.iloc[i].to_dict(), "_row": i}))

    if primary not in objectives:
        primary = next((o for o in objectives if o in MAXIMIZE), objectives[0])
    p = objectives.index(primary)
    best = idx[np.argmax(Yf[:, p])]
    short = {o: objective_label(o).split(" (")[0] for o in objectives}
    add(int(best), f"Highest {short[primary].lower()}",
        f"best {short[primary].lower()} among configurations meeting every constraint")
    cost = [o for o in objectives if o not in MAXIMIZE]
    if cost:
        c = objectives.index(cost[0])
        cheap = idx[np.argmax(Yf[:, c])]
        add(int(cheap), f"Lowest {short[cost[0]].lower()}", f"lowest {short[cost[0]].lower()} on the Pareto front")
    if len(Yf) >= 3:
        lo, hi = Yf.min(0), Yf.max(0)
        norm = (Yf - lo) / np.where(hi > lo, hi - lo, 1.0)
        knee = idx[np.argmin(np.linalg.norm(1.0 - norm, axis=1))]
        add(int(knee), "Balanced (knee)", "closest to the ideal point with every objective scaled to [0, 1]")
    return recs, cand
