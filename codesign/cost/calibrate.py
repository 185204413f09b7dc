"""Calibrate the analytical model against measurements: an accelerator spec's efficiencies and
overheads, or a software stack's runtime profile.

The analytical model (:func:`hwmodels.estimate`) prices every operator at
``max(flops / (peak[dtype] * eff[dtype].compute), bytes / (bandwidth * eff[dtype].memory))`` plus
fixed ``overhead_us.per_layer`` per decoder layer and ``overhead_us.per_forward`` per forward pass.
Without a runtime profile, calibration fits those spec factors. With one (``runtime=``), the spec
stays what the silicon can do and the profile's parameters are fitted instead: each kernel's memory
and compute efficiency per weight format the measurements ran, its dequantization cost, the
efficiencies of the other operators, the launch floor and the framework's host time
(:mod:`hwmodels.runtime`). Only parameters the measurements are sensitive to are fitted, by least
squares on the log of predicted / measured prefill and decode times
(``scipy.optimize.least_squares``), so a 2x miss costs the same on a 1 ms step and on a 1 s prefill.

Configurations (shape x weight format x kernel x dtype x batch x prompt length) are split into train
and test, stratified by weight format, kernel and dtype so each one is fitted; the error before and
after is reported on the held-out ones as mean absolute percentage error (MAPE), also per format.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from codesign.config import ConfigError, read_mapping

#: Measured columns a measurements table or CSV must hold.
REQUIRED = ["model", "variant", "wbits", "group_size", "dtype", "device", "batch", "prompt_len", "gen_len",
            "prefill_ms", "tpot_ms"]
#: Activation bits of each measured runtime dtype (the analytical model's ``abits`` / ``kvbits``).
ACT_BITS = {"float32": 32, "bfloat16": 16, "float16": 16}
TARGETS = {"prefill_ms": "ttft_ms", "tpot_ms": "tpot_ms"}
EFF_BOUNDS = (1e-3, 1.0)
OVERHEAD_MAX_US = 1e5


# -- measurements -------------------------------------------------------------------------------
STATISTICS = ("median", "min")


def load_measurements(source, device: str | None = None, device_name: str | None = None,
                      statistic: str = "median", dtype: str | None = None) -> pd.DataFrame:
    """Measurements from a result store (``.db``), a CSV export, or a DataFrame.

    Keeps rows of ``device`` (``cpu`` / ``cuda``), ``device_name`` and runtime ``dtype`` when given. Adds
    ``config`` (the measured model's config dict, from ``extra_json``) and ``config_key``.
    ``statistic='min'`` replaces the stored medians by the best of the stored repeats — the
    robust choice on a machine shared with other work, where noise only ever adds time.

    A configuration is keyed by what ran, so rows of different kernels or schedules are never pooled:
    ``kernel`` (decode), ``prefill_kernel`` (``extra.prefill_kernel``; rows from before per-phase
    kernels ran prefill on ``kernel``), ``schedule`` (``single`` or an ensemble schedule, whose
    ``members`` — each member's bits, group size and kernels, from ``extra.members`` — the model
    combines with :mod:`hwmodels.ensemble`'s schedule formulas).
    """
    if statistic not in STATISTICS:
        raise ConfigError(f"--statistic: {statistic!r} is not supported (allowed: {list(STATISTICS)})")
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"--measurements: {path} not found (a result store .db or a CSV from `codesign measure`)")
        if path.suffix in (".db", ".sqlite", ".sqlite3"):
            from codesign.store import ResultStore

            with ResultStore(path, read_only=True) as st:  # calibration only reads the store
                df = st.frame("measurements")
        elif path.suffix == ".csv":
            df = pd.read_csv(path)
        else:
            raise ConfigError(f"--measurements: {path}: unknown file type {path.suffix!r} (allowed: .db, .csv)")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"--measurements: {source}: missing columns {missing} (required: {REQUIRED})")
    if device:
        df = df[df["device"] == device]
    if device_name:
        df = df[df["device_name"] == device_name]
    if dtype:
        if dtype not in ACT_BITS:
            raise ConfigError(f"--dtype: {dtype!r} is not allowed (allowed: {', '.join(ACT_BITS)})")
        df = df[df["dtype"] == dtype]
    if df.empty:
        raise ConfigError(f"--measurements: {source}: no measurements for device={device!r} "
                          f"device_name={device_name!r}" + (f" dtype={dtype!r}" if dtype else ""))
    extra = df["extra_json"] if "extra_json" in df.columns else pd.Series(["{}"] * len(df), index=df.index)
    extras = [json.loads(e) if isinstance(e, str) and e else {} for e in extra]
    df = df.assign(config=[e.get("config") for e in extras], layers=[e.get("layers") for e in extras],
                   sym=[bool(e.get("sym", False)) for e in extras],
                   members=[e.get("members") for e in extras], prefill_kernel=[e.get("prefill_kernel") for e in extras])
    if "schedule" not in df.columns:
        df["schedule"] = "single"
    df["schedule"] = df["schedule"].fillna("single")
    ens = df["schedule"] != "single"
    if ens.any() and any(not m for m in df.loc[ens, "members"]):
        raise ConfigError(f"--measurements: {source}: ensemble rows without extra.members (their members' "
                          "formats and kernels): re-measure them with `codesign measure --ensemble`")
    if statistic == "min":
        for col, runs in (("prefill_ms", "prefill_runs_ms"), ("tpot_ms", "tpot_runs_ms")):
            df[col] = [min(e[runs]) if e.get(runs) else v for e, v in zip(extras, df[col])]
    bad = df.loc[~df["dtype"].isin(ACT_BITS), "dtype"].unique().tolist()
    if bad:
        raise ConfigError(f"--measurements: {source}: dtype {bad} not supported (allowed: {list(ACT_BITS)})")
    df["group_size"] = df["group_size"].fillna(128).astype(int)
    df["kernel"] = row_kernels(df)
    df["prefill_kernel"] = [p if isinstance(p, str) and p else k for p, k in zip(df["prefill_kernel"], df["kernel"])]
    df["config_key"] = [
        f"{r.model}|L{'all' if pd.isna(r.layers) or r.layers is None else int(r.layers)}|{r.variant}|{r.kernel}"
        + ("" if r.prefill_kernel == r.kernel else f"|prefill={r.prefill_kernel}")
        + ("" if r.schedule == "single" else f"|{r.schedule}")
        + f"|{r.dtype}|b{int(r.batch)}|p{int(r.prompt_len)}|g{int(r.gen_len)}" for r in df.itertuples()]
    # Repeated measurements of one configuration: their median is the configuration's time.
    agg = {c: "first" for c in df.columns if c not in ("prefill_ms", "tpot_ms", "config_key")}
    agg.update(prefill_ms="median", tpot_ms="median")
    return df.groupby("config_key", sort=True).agg(agg).reset_index()


def row_kernels(df: pd.DataFrame) -> list[str]:
    """The kernel each measured row ran: its ``kernel`` column, else what rows measured before kernels were
    recorded ran (a dense matmul for 16/32-bit weights, dequantize-then-matmul for packed ones)."""
    given = df["kernel"] if "kernel" in df.columns else pd.Series([None] * len(df), index=df.index)
    return [k if isinstance(k, str) and k else ("torch-matmul" if int(w) >= 16 else "dequant-matmul")
            for k, w in zip(given, df["wbits"])]


def split_configs(df: pd.DataFrame, test_frac: float = 0.3, seed: int = 0) -> np.ndarray:
    """Boolean mask (len(df),) of held-out rows: ``test_frac`` of each (model, variant, kernel, dtype)
    stratum.

    The model (shape) is part of the stratum so that both halves see every shape: a half without one
    shape's rows of a format would test extrapolation to an unseen shape, a different question from
    the error on configurations like the fitted ones. A stratum with one configuration stays in train
    (its factors could not be fitted otherwise).
    """
    if not 0.0 <= test_frac < 1.0:
        raise ConfigError(f"--test-frac: {test_frac} is out of range (allowed: 0 <= x < 1)")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(df), dtype=bool)
    keys = [c for c in ("model", "variant", "kernel", "prefill_kernel", "schedule", "dtype") if c in df.columns]
    for _, idx in df.groupby(keys).indices.items():
        k = int(round(test_frac * len(idx)))
        k = min(k, len(idx) - 1)
        if k > 0:
            test[rng.choice(idx, size=k, replace=False)] = True
    return test


# -- files ----------------------------------------------------------------------------------------
def resolve_spec_path(spec: str | Path) -> Path:
    """A spec name (built-in or in ``$CODESIGN_CACHE/specs``) or YAML path -> its file."""
    from hwmodels.spec import spec_path

    try:
        return spec_path(spec)
    except ConfigError as exc:
        raise ConfigError(f"--spec: {exc}") from None


def calibrated_path(path: Path, kind: str = "spec") -> Path:
    """``<stem>.calibrated.yaml`` beside the original, or in the user folder for built-ins."""
    from hwmodels.runtime import RUNTIMES
    from hwmodels.spec import SPECS

    return (SPECS if kind == "spec" else RUNTIMES).calibrated_path(Path(path))


# -- free parameters --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One free number of the fit: its path in the spec (``root='spec'``) or runtime profile mapping,
    bounds, typical step size, and the value it has while the file leaves it unset."""

    path: tuple[str, ...]  # e.g. ("efficiency", "bf16", "memory"), ("kernels", "awq-gemm", "memory_efficiency", "w4")
    lo: float
    hi: float
    scale: float
    root: str = "spec"
    unset: float = 0.0
    fallback: tuple[str, ...] | None = None  # the parameter that holds while this one is unset

    @property
    def name(self) -> str:
        return ("" if self.root == "spec" else "runtime.") + ".".join(self.path)

    def get(self, state: dict[str, Any]) -> float:
        mapping = state[self.root] or {}
        if self.root == "spec" and self.path[0] == "efficiency":
            eff = mapping.get("efficiency") or {}
            default = eff.get("default") or {}
            return float((eff.get(self.path[1]) or {}).get(self.path[2], default.get(self.path[2], 0.5)))
        node: Any = mapping
        for k in self.path:
            if not isinstance(node, dict):
                break  # a number where a per-format mapping could be: it holds for every format
            node = node.get(k)
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            return float(node)
        if self.fallback is not None:
            return Param(self.fallback, self.lo, self.hi, self.scale, self.root, self.unset).get(state)
        return self.unset

    def set(self, state: dict[str, Any], value: float) -> None:
        if self.root == "spec" and self.path[0] == "efficiency":
            eff = state["spec"].setdefault("efficiency", {})
            default = dict(eff.get("default") or {"compute": 1.0, "memory": 1.0})
            eff.setdefault(self.path[1], dict(default))[self.path[2]] = float(value)
            return
        node = state[self.root]
        for k in self.path[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):  # unset, or one number for every format: keep it as the default
                child = {} if child is None else {"default": child}
                node[k] = child
            node = child
        node[self.path[-1]] = float(value)


def efficiency_param(dtype: str, bound: str) -> Param:
    return Param(("efficiency", dtype, bound), EFF_BOUNDS[0], EFF_BOUNDS[1], 0.1)


#: Spec numbers fitted besides efficiencies (when the measurements are sensitive to them).
OVERHEAD_PARAMS = [Param(("overhead_us", "per_layer"), 0.0, OVERHEAD_MAX_US, 100.0),
                   Param(("overhead_us", "per_forward"), 0.0, OVERHEAD_MAX_US, 100.0)]
DEQUANT_PARAM = Param(("dequant_ops_per_weight",), 0.1, 1000.0, 1.0, unset=4.0)
#: Factor on the runtime memory efficiencies of the fit's second set of starts (see :func:`fit_params`).
MEMORY_START = 1.0 / 3.0


def runtime_param(dotted: str, spec: dict[str, Any] | None = None) -> Param:
    """A runtime-profile parameter from its dotted path, e.g. ``kernels.awq-gemm.memory_efficiency.w4``,
    ``framework.per_layer_us``, ``launch_floor_us``, ``overlap``, ``other_efficiency.memory``."""
    path = tuple(dotted.removeprefix("runtime.").split("."))
    default_eff = ((spec or {}).get("efficiency") or {}).get("default") or {}
    last = path[-1]
    if any(k.endswith("efficiency") for k in path):
        bound = "memory" if any("memory" in k for k in path[-2:]) else "compute"
        return Param(path, EFF_BOUNDS[0], EFF_BOUNDS[1], 0.1, "runtime", float(default_eff.get(bound, 0.8)))
    if last.endswith("_us"):
        return Param(path, 0.0, OVERHEAD_MAX_US, 10.0, "runtime", 0.0)
    if last == "overlap":
        return Param(path, 0.0, 1.0, 0.1, "runtime", 1.0)
    if last == "compute_m_half":
        return Param(path, 0.0, 1e4, 10.0, "runtime", 0.0)
    if last == "compute_m_half_decode":  # starts where prefill's half point is
        return Param(path, 0.0, 1e4, 10.0, "runtime", 0.0, fallback=path[:-1] + ("compute_m_half",))
    if last == "dequant_ops_per_weight":
        return Param(path, 0.1, 1000.0, 1.0, "runtime", float((spec or {}).get("dequant_ops_per_weight", 4.0)))
    raise ConfigError(f"--fit: {dotted!r} is not a fittable runtime parameter (allowed: launch_floor_us, overlap, "
                      "framework.per_forward_us, framework.per_layer_us, other_efficiency.compute|memory, "
                      "kernels.<kernel>.memory_efficiency|compute_efficiency.<format>, "
                      "kernels.<kernel>.dequant_ops_per_weight, kernels.<kernel>.launch_floor_us, "
                      "kernels.<kernel>.compute_m_half, kernels.<kernel>.compute_m_half_decode)")


def runtime_candidates(df: pd.DataFrame, spec: dict[str, Any], runtime: dict[str, Any]) -> list[Param]:
    """Every runtime parameter the measured rows could inform: per (kernel, weight format) that ran in
    either phase efficiencies, launch floor (a kernel run as many small calls, such as one per group,
    pays it per linear) and dequantization cost, the dense kernel of the lm head, the other operators'
    efficiencies, the launch floor and the framework's host time."""
    from codesign.config import validate_config
    from hwmodels.runtime import RuntimeProfile

    prof = validate_config(RuntimeProfile, runtime, runtime.get("name"))
    units = unit_rows(df)
    pairs = {(k, int(w)) for k, w in zip(units["kernel"], units["wbits"])}
    pairs |= {(k, 16 if k == "torch-matmul" else int(w)) for k, w in zip(units["prefill_kernel"], units["wbits"])}
    pairs |= {(prof.format_kernel(16), 16) for w in units["wbits"] if int(w) < 16}  # the 16-bit lm head
    names = []
    for k, w in sorted(pairs):
        fmt = "dense" if w >= 16 else f"w{w}"
        names += [f"kernels.{k}.memory_efficiency.{fmt}", f"kernels.{k}.compute_efficiency.{fmt}",
                  f"kernels.{k}.compute_m_half", f"kernels.{k}.launch_floor_us"]
        if w < 16 and prof.kernel(k).dequant != "none":
            names.append(f"kernels.{k}.dequant_ops_per_weight")
    names += ["other_efficiency.compute", "other_efficiency.memory", "launch_floor_us",
              "framework.per_forward_us", "framework.per_layer_us"]
    return [runtime_param(n, spec) for n in dict.fromkeys(names)]


@dataclass
class Params:
    """The free parameters of a fit, as a vector ``x`` of shape (n_params,)."""

    items: list[Param]

    def apply(self, base: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
        d = copy.deepcopy(base)
        for p, v in zip(self.items, x):
            p.set(d, float(v))
        return d

    def initial(self, base: dict[str, Any]) -> np.ndarray:
        return np.array([p.get(base) for p in self.items])

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.items]


# -- the model on measured configurations -----------------------------------------------------------
def unit_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per model that ran: a single-variant row itself, an ensemble row once per member (its
    bits, group size, symmetry and kernels from ``members``). ``row`` is the index into ``df``'s rows
    (0..len-1). Prefill on ``torch-matmul`` of quantized weights read their dequantized dense copy
    (:func:`hwmodels.roofline.evaluate_points` prices it so)."""
    out = []
    for i, r in enumerate(df.reset_index(drop=True).itertuples()):
        base = dict(row=i, dtype=r.dtype, config=getattr(r, "config", None), layers=getattr(r, "layers", None),
                    model=r.model)
        sched = getattr(r, "schedule", "single")
        members = getattr(r, "members", None) if sched != "single" else None
        if not members:
            members = [dict(wbits=r.wbits, group_size=r.group_size, sym=getattr(r, "sym", False), kernel=r.kernel,
                            prefill_kernel=getattr(r, "prefill_kernel", None) or r.kernel)]
        for m in members:
            k = m.get("kernel") or ("torch-matmul" if int(m["wbits"]) >= 16 else "dequant-matmul")
            pk = m.get("prefill_kernel") or k
            w = int(m["wbits"])
            out.append({**base, "wbits": w, "group_size": int(m.get("group_size") or 128), "sym": bool(m.get("sym")),
                        "kernel": k, "prefill_kernel": pk})
    return pd.DataFrame(out)


class Predictor:
    """Evaluates the analytical model on measured configurations.

    Shapes come from each measurement's stored (possibly layer-truncated) config, so the model
    is evaluated on exactly what was timed; the shape resolver (:func:`hwmodels.shapes.resolve_shape`)
    reads rows without one. ``specs`` (with a ``spec_index`` column in ``df``): fixed specs per row, as
    for published points on several accelerators; without, the spec of the state being fitted. Every
    model that ran (:func:`unit_rows`) goes through one vectorized :func:`hwmodels.roofline.evaluate_points`
    call per phase: prefill with the kernel (and weight width) that ran prefill, decode with the
    decode kernel. Ensemble rows combine their members with their schedule's formula
    (:data:`hwmodels.ensemble.SCHEDULES`).
    """

    def __init__(self, df: pd.DataFrame, specs: list | None = None):
        from hwmodels.shapes import resolve_shape

        self.df = df.reset_index(drop=True)
        self.units = unit_rows(self.df)
        shapes, index, mi = [], {}, []
        for r in self.units.itertuples():
            cfg = r.config if isinstance(r.config, dict) and r.config else None
            key = json.dumps(cfg, sort_keys=True) if cfg else str(r.model)
            if key not in index:
                index[key] = len(shapes)
                shapes.append(resolve_shape(str(r.model), config=cfg,
                                            layers=None if r.layers is None or pd.isna(r.layers) else r.layers))
            mi.append(index[key])
        self.shapes, self.model_index = shapes, np.array(mi)
        self.specs = specs
        row = self.units["row"].to_numpy()
        self.spec_index = self.df["spec_index"].to_numpy(dtype=np.int64)[row] if specs is not None else 0
        u = self.units
        abits = np.array([ACT_BITS[d] for d in u["dtype"]])
        rows = lambda c: self.df[c].to_numpy(dtype=np.int64)[row]  # noqa: E731
        self.args = dict(group_size=u["group_size"].to_numpy(dtype=np.int64), abits=abits, kvbits=abits,
                         batch=rows("batch"), prompt_len=rows("prompt_len"), gen_len=rows("gen_len"),
                         sym=u["sym"].to_numpy(dtype=bool))
        self.kernel = u["kernel"].to_numpy(dtype=object)
        self.prefill_kernel = u["prefill_kernel"].to_numpy(dtype=object)
        self.wbits = u["wbits"].to_numpy(dtype=np.int64)
        sched = self.df["schedule"] if "schedule" in self.df.columns else pd.Series(["single"] * len(self.df))
        self.groups = [(i, np.flatnonzero(row == i), s) for i, s in enumerate(sched)]

    def spec(self, mapping: dict[str, Any]):
        from codesign.config import validate_config
        from hwmodels.spec import AcceleratorSpec

        return validate_config(AcceleratorSpec, mapping, mapping.get("name"))

    def _evaluate(self, specs, rt) -> dict[str, np.ndarray]:
        from hwmodels.roofline import evaluate_points

        return evaluate_points(specs, self.shapes, spec_index=self.spec_index, model_index=self.model_index,
                               runtime=rt, kernel=self.kernel, prefill_kernel=self.prefill_kernel, wbits=self.wbits,
                               **self.args)

    def predict(self, spec: dict[str, Any] | None, runtime: dict[str, Any] | None = None) -> np.ndarray:
        """Predicted (prefill_ms, tpot_ms) per row under a spec mapping (or the fixed ``specs``) and a
        runtime profile mapping (``None``: no stack terms): array of shape (n_rows, 2)."""
        from codesign.config import validate_config
        from hwmodels.ensemble import get_schedule
        from hwmodels.runtime import RuntimeProfile

        specs = self.specs if self.specs is not None else [self.spec(spec)]
        rt = None if runtime is None else validate_config(RuntimeProfile, runtime, runtime.get("name"))
        res = self._evaluate(specs, rt)  # prefill priced with the prefill kernel, decode with the decode kernel
        unit = {k: v for k, v in res.items() if isinstance(v, np.ndarray) and v.shape == res["ttft_ms"].shape}
        out = np.empty((len(self.df), 2))
        for i, idx, sched in self.groups:
            if sched == "single":
                out[i] = unit["ttft_ms"][idx[0]], unit["tpot_ms"][idx[0]]
            else:
                out[i] = get_schedule(sched).time({k: v[idx] for k, v in unit.items()}, np.ones(len(idx), bool))
        return out

    def predict_state(self, state: dict[str, Any]) -> np.ndarray:
        return self.predict(state["spec"], state["runtime"])


def probe_values(c: Param, x0: float) -> list[float]:
    """Values :func:`sensitive` moves ``c`` to from ``x0``: halved, one step up, and a tenth (a term
    hidden under another one by the roofline's max, such as a memory time below the compute time
    everywhere, shows only when moved far), within the bounds."""
    return [float(np.clip(v, c.lo, c.hi)) for v in (x0 * 0.5, x0 + c.scale, x0 * 0.1)]


def sensitive(pred: Predictor, base: dict[str, Any], candidates: list[Param]) -> list[Param]:
    """The candidates that change some prediction when moved (the others cannot be fitted)."""
    ref = pred.predict_state(base)
    out = []
    for c in candidates:
        p = Params([c])
        x0 = float(p.initial(base)[0])
        for v in probe_values(c, x0):
            moved = pred.predict_state(p.apply(base, np.array([v])))
            if np.any(np.abs(moved - ref) > 1e-6 * ref):
                out.append(c)
                break
    return out


def fit_params(pred: Predictor, base: dict[str, Any], params: Params, meas: np.ndarray,
               progress: bool = False) -> dict[str, Any]:
    """Least squares on log(predicted / measured) over the finite entries of ``meas`` (n_rows, 2);
    returns ``base`` with the fitted values.

    Time terms (microseconds) start at the file's values and also at 10, 100 and 1000 us: a launch
    floor or host time below every operator's time changes nothing, so a fit started there cannot
    see which way to move. For the same reason every start is also tried with the memory
    efficiencies at a third of their value (:data:`MEMORY_START`): a memory time hidden under the
    compute time of every configuration has no gradient. The start with the smallest error on the
    fitted rows wins."""
    from scipy.optimize import least_squares
    from tqdm.auto import tqdm

    if not params.items:
        return copy.deepcopy(base)
    lo = np.array([p.lo for p in params.items])
    hi = np.array([p.hi for p in params.items])
    ok = np.isfinite(meas)
    log_meas = np.log(meas[ok])
    bar = tqdm(desc="calibrate", unit="eval", disable=not progress)

    def resid(x: np.ndarray) -> np.ndarray:
        bar.update()
        return np.log(np.maximum(pred.predict_state(params.apply(base, x))[ok], 1e-12)) - log_meas

    # Efficiencies live in (0, 1], overheads in microseconds: per-parameter scales let the
    # trust-region steps and finite differences see both.
    x_scale = np.array([p.scale for p in params.items])
    timed = np.array([p.path[-1].endswith("_us") or p.path[-1] in ("per_layer", "per_forward")
                      for p in params.items])
    memory = np.array([p.root == "runtime" and any("memory" in k for k in p.path[-2:]) and
                       any(k.endswith("efficiency") for k in p.path) for p in params.items])
    x0 = params.initial(base)
    starts = [x0] + ([np.where(timed, t, x0) for t in (10.0, 100.0, 1000.0)] if timed.any() else [])
    if memory.any():
        starts += [np.where(memory, s * MEMORY_START, s) for s in starts]
    best = None
    for start in starts:
        start = np.clip(start, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
        fit = least_squares(resid, start, bounds=(lo, hi), x_scale=x_scale, diff_step=1e-3, max_nfev=300)
        if best is None or fit.cost < best.cost - 1e-12:
            best = fit
    bar.close()
    return params.apply(base, best.x)


def mape(pred: np.ndarray, meas: np.ndarray) -> float:
    """Mean absolute percentage error (%) of ``pred`` against ``meas`` (same shapes)."""
    return float(np.mean(np.abs(pred - meas) / meas) * 100.0)


@dataclass
class CalibrationResult:
    """Outcome of a calibration: the fitted spec or runtime profile, per-configuration predictions, MAPE."""

    spec_name: str
    spec_path: Path
    out_path: Path | None
    calibrated: dict[str, Any]  # the fitted file's mapping (spec, or runtime profile when fitted)
    table: pd.DataFrame  # one row per configuration: measured, before, after, split
    params: list[Param]
    runtime_name: str | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def fitted(self) -> list[str]:
        return [p.name for p in self.params]

    def mape(self, split: str, which: str, target: str | None = None, fmt: str | None = None) -> float:
        t = self.table[self.table["split"] == split]
        if fmt is not None:
            t = t[t["format"] == fmt]
        targets = [target] if target else list(TARGETS)
        if t.empty:
            return float("nan")
        pred = np.concatenate([t[f"{k}_{which}"].to_numpy() for k in targets])
        meas = np.concatenate([t[k].to_numpy() for k in targets])
        return mape(pred, meas)

    def mape_by_format(self, split: str = "test", which: str = "after") -> dict[str, float]:
        """MAPE per weight format and kernel (e.g. ``w4g128/aten-int4pack-cpu``) on ``split``."""
        fmts = self.table.loc[self.table["split"] == split, "format"].unique()
        return {f: self.mape(split, which, fmt=f) for f in sorted(fmts)}

    def log_rmse(self, split: str, which: str) -> float:
        """Root mean square of log(predicted / measured) over both targets: what the fit minimizes."""
        t = self.table[self.table["split"] == split]
        if t.empty:
            return float("nan")
        r = np.concatenate([np.log(t[f"{k}_{which}"].to_numpy() / t[k].to_numpy()) for k in TARGETS])
        return float(np.sqrt(np.mean(r**2)))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spec": self.spec_name, "runtime": self.runtime_name,
                               "calibrated_file": str(self.out_path) if self.out_path else None,
                               "n_train": int((self.table["split"] == "train").sum()),
                               "n_test": int((self.table["split"] == "test").sum()),
                               "fitted": {p.name: p.get(self.state) for p in self.params}}
        for split in ("train", "test"):
            for which in ("before", "after"):
                out[f"mape_{split}_{which}"] = self.mape(split, which)
                for k in TARGETS:
                    out[f"mape_{split}_{which}_{k}"] = self.mape(split, which, k)
            out[f"mape_{split}_after_by_format"] = self.mape_by_format(split)
        return out


def _load_runtime_mapping(runtime: str | Path) -> tuple[Path, dict[str, Any]]:
    """The profile's file and mapping, validated now so a bad file is named (not its ``name`` field)."""
    from codesign.config import validate_config
    from hwmodels.runtime import RuntimeProfile, runtime_path

    try:
        path = runtime_path(runtime)
    except ConfigError as exc:
        raise ConfigError(f"--runtime: {exc}") from None
    mapping = read_mapping(path)
    validate_config(RuntimeProfile, mapping, path)
    return path, mapping


def format_label(r) -> str:
    """What ran, for per-format errors: ``variant/kernel``, with the prefill kernel where it differs and
    the schedule of an ensemble (``w4g128/aten-int4pack-cpu,prefill=torch-matmul``)."""
    label = f"{r.variant}/{r.kernel}"
    if getattr(r, "prefill_kernel", r.kernel) != r.kernel:
        label += f",prefill={r.prefill_kernel}"
    sched = getattr(r, "schedule", "single")
    return label if sched == "single" else f"{label}/{sched}"


def calibrate(spec: str | Path, measurements, *, runtime: str | Path | None = None, fit: list[str] | None = None,
              test_frac: float = 0.3, seed: int = 0, out: str | Path | None = None, write: bool = True,
              device: str | None = None, statistic: str = "median", info: dict[str, Any] | None = None,
              progress: bool = True, also_fit: list[str] | None = None) -> CalibrationResult:
    """Fit ``spec``'s efficiency and overheads — or, with ``runtime``, that profile's parameters — to
    ``measurements``; write the calibrated file.

    ``measurements`` is a store path, CSV path or DataFrame (see :func:`load_measurements`). ``fit``
    (runtime only): dotted parameter paths to fit instead of every sensitive one; ``also_fit``: paths fitted
    besides them (e.g. ``kernels.torch-matmul.compute_m_half_decode``, not a default). ``out`` defaults to
    :func:`calibrated_path` of the fitted file. The fit sees only the train split; the table holds
    predictions before/after for every configuration with its split. ``info`` is merged into the
    written file's ``calibration`` block (e.g. a cross-validated error).
    """
    from codesign.config import validate_config
    from hwmodels.spec import AcceleratorSpec

    spec_file = resolve_spec_path(spec)
    spec_map = read_mapping(spec_file)
    validate_config(AcceleratorSpec, spec_map, spec_file)  # a bad file is named before any work
    rt_file, rt_map = _load_runtime_mapping(runtime) if runtime is not None else (None, None)
    df = measurements if isinstance(measurements, pd.DataFrame) and "config_key" in measurements.columns \
        else load_measurements(measurements, device=device, statistic=statistic)
    test = split_configs(df, test_frac, seed)
    pred = Predictor(df)
    pred.spec(spec_map)  # fail early, naming the file, if the spec itself is invalid
    base = {"spec": spec_map, "runtime": rt_map}
    meas = df[list(TARGETS)].to_numpy(dtype=float)
    if np.any(meas <= 0) or not np.all(np.isfinite(meas)):
        raise ConfigError("--measurements: prefill_ms and tpot_ms must be positive finite numbers")
    before = pred.predict_state(base)

    if rt_map is None:
        if fit or also_fit:
            raise ConfigError("--fit: names runtime-profile parameters; give --runtime too")
        # 'vector' (norms, softmax, dequantization) has a compute efficiency of its own.
        dtypes = sorted(set(spec_map.get("compute_tflops") or {})) + ["vector"]
        candidates = [efficiency_param(d, b) for d in dtypes for b in ("compute", "memory")]
        params = Params(sensitive(pred, base, candidates + OVERHEAD_PARAMS + [DEQUANT_PARAM]))
    else:
        chosen = [runtime_param(n, spec_map) for n in fit] if fit else runtime_candidates(df, spec_map, rt_map)
        chosen += [runtime_param(n, spec_map) for n in also_fit or [] if n not in {c.name for c in chosen}]
        params = Params(sensitive(pred, base, chosen))
    train = ~test
    sub = Predictor(df[train]) if test.any() else pred
    state = fit_params(sub, base, params, meas[train], progress)
    after = pred.predict_state(state)

    table = df[["config_key", "model", "layers", "variant", "kernel", "prefill_kernel", "schedule", "wbits", "dtype",
                "batch", "prompt_len", "gen_len"]].copy()
    table["format"] = [format_label(r) for r in table.itertuples()]
    for j, k in enumerate(TARGETS):
        table[k] = meas[:, j]
        table[f"{k}_before"] = before[:, j]
        table[f"{k}_after"] = after[:, j]
    table["split"] = np.where(test, "test", "train")
    fitted_file = spec_file if rt_map is None else rt_file
    calibrated = state["spec"] if rt_map is None else state["runtime"]
    res = CalibrationResult(str(spec_map.get("name", spec_file.stem)), spec_file, None, calibrated, table,
                            params.items, None if rt_map is None else str(rt_map.get("name", rt_file.stem)), state)
    _record(res, df, train, test, fitted_file, statistic, info)
    if write:
        out_path = Path(out) if out else calibrated_path(fitted_file, "spec" if rt_map is None else "runtime")
        calibrated["name"] = out_path.name.removesuffix(".yaml").removesuffix(".yml")
        from codesign.cost.probe import write_spec

        res.out_path = write_spec(calibrated if rt_map is None else rounded(calibrated), out_path)
    return res


def _record(res: CalibrationResult, df: pd.DataFrame, train: np.ndarray, test: np.ndarray, fitted_file: Path,
            statistic: str, info: dict[str, Any] | None) -> None:
    """Sources line and ``calibration`` block of the fitted file: what was fitted on what, and its error."""
    calibrated = res.calibrated
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    held = int(test.sum())
    err = (f"held-out MAPE {res.mape('test', 'before'):.1f}% -> {res.mape('test', 'after'):.1f}%" if held else
           f"MAPE on the fitted configurations {res.mape('train', 'before'):.1f}% -> {res.mape('train', 'after'):.1f}%")
    on = f" on spec {res.spec_name}" if res.runtime_name else ""
    # a file calibrated again keeps its other sources but only the latest calibration line
    kept = [s for s in calibrated.get("sources") or [] if not str(s).startswith("calibrated by `codesign calibrate`")]
    calibrated["sources"] = kept + [
        f"calibrated by `codesign calibrate`{on} on {when} against {len(df)} measured configurations "
        f"({int(train.sum())} fitted, {held} held out); {err}"]
    block: dict[str, Any] = {
        "date": when, "from_file": _shown_path(fitted_file), "n_configs": int(len(df)), "n_train": int(train.sum()),
        "n_test": held, "fitted": [p.name for p in res.params], "statistic": statistic,
        "devices": sorted(set(map(str, df.get("device_name", df["device"]).dropna()))),
        "mape_train_before": round(res.mape("train", "before"), 2), "mape_train_after": round(res.mape("train", "after"), 2)}
    if res.runtime_name:
        block["spec"] = _shown_path(res.spec_path)
    if held:
        block.update(mape_test_before=round(res.mape("test", "before"), 2),
                     mape_test_after=round(res.mape("test", "after"), 2),
                     mape_test_after_by_format={k: round(v, 2) for k, v in res.mape_by_format("test").items()})
    block.update(info or {})
    calibrated["calibration"] = block


def rounded(x: Any, digits: int = 4) -> Any:
    """``x`` with every float rounded to ``digits`` significant digits (files people read)."""
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v, digits) for v in x]
    if isinstance(x, float):
        return float(f"{x:.{digits}g}")
    return x


def _shown_path(p: Path) -> str:
    """``p`` relative to the working directory when inside it (no home paths in committed specs)."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def format_report(res: CalibrationResult, split: str = "test") -> str:
    """Per-configuration error table (held-out by default) and the MAPE summary, as text."""
    t = res.table[res.table["split"] == split] if split else res.table
    what = f"runtime {res.runtime_name} on spec {res.spec_name}" if res.runtime_name else f"spec {res.spec_name}"
    lines = [f"{what}: fitted {', '.join(res.fitted) or 'nothing'}",
             f"{'configuration':58s} {'metric':8s} {'measured':>10s} {'before':>10s} {'after':>10s} "
             f"{'APE before':>10s} {'APE after':>9s}"]
    for r in t.itertuples():
        for k in TARGETS:
            m, b, a = getattr(r, k), getattr(r, f"{k}_before"), getattr(r, f"{k}_after")
            lines.append(f"{r.config_key[:58]:58s} {k.split('_')[0]:8s} {m:10.2f} {b:10.2f} {a:10.2f} "
                         f"{abs(b - m) / m * 100:9.1f}% {abs(a - m) / m * 100:8.1f}%")
    for sp in ("train", "test"):
        lines.append(f"MAPE {sp:5s} (n={int((res.table['split'] == sp).sum())}): "
                     f"before {res.mape(sp, 'before'):7.1f}%  after {res.mape(sp, 'after'):6.1f}%   "
                     f"[prefill {res.mape(sp, 'after', 'prefill_ms'):.1f}%, decode {res.mape(sp, 'after', 'tpot_ms'):.1f}%]")
    by = res.mape_by_format("test") if (res.table["split"] == "test").any() else {}
    if by:
        lines.append("held-out MAPE by format: " + ", ".join(f"{k} {v:.1f}%" for k, v in by.items()))
    lines.append("fitted values: " + ", ".join(f"{p.name}={p.get(res.state):.4g}" for p in res.params))
    if res.out_path:
        lines.append(f"wrote {res.out_path}")
    return "\n".join(lines)
