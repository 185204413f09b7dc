"""Calibrate an accelerator spec's efficiency factors and fixed overheads against measurements.

The analytical model (:func:`hwmodels.estimate`) prices every operator at
``max(flops / (peak[dtype] * eff[dtype].compute), bytes / (bandwidth * eff[dtype].memory))`` plus
fixed ``overhead_us.per_layer`` per decoder layer and ``overhead_us.per_forward`` per forward pass.
Calibration fits those factors — only the ones the measurements exercise — by least squares on
the log of predicted / measured prefill and decode times (``scipy.optimize.least_squares``), so a
2x miss costs the same on a 1 ms step and on a 1 s prefill.

Configurations (shape x weight format x dtype x batch x prompt length) are split into train and
test, stratified by weight format and dtype so each one is fitted; the error before and after is
reported on the held-out ones as mean absolute percentage error (MAPE).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import tempfile
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
                      statistic: str = "median") -> pd.DataFrame:
    """Measurements from a result store (``.db``), a CSV export, or a DataFrame.

    Keeps rows of ``device`` (``cpu`` / ``cuda``) and ``device_name`` when given. Adds
    ``config`` (the measured model's config dict, from ``extra_json``) and ``config_key``.
    ``statistic='min'`` replaces the stored medians by the best of the stored repeats — the
    robust choice on a machine shared with other work, where noise only ever adds time.
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

            with ResultStore(path) as st:
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
    if df.empty:
        raise ConfigError(f"--measurements: {source}: no measurements for device={device!r} "
                          f"device_name={device_name!r}")
    extra = df["extra_json"] if "extra_json" in df.columns else pd.Series(["{}"] * len(df), index=df.index)
    extras = [json.loads(e) if isinstance(e, str) and e else {} for e in extra]
    df = df.assign(config=[e.get("config") for e in extras], layers=[e.get("layers") for e in extras],
                   sym=[bool(e.get("sym", False)) for e in extras])
    if statistic == "min":
        for col, runs in (("prefill_ms", "prefill_runs_ms"), ("tpot_ms", "tpot_runs_ms")):
            df[col] = [min(e[runs]) if e.get(runs) else v for e, v in zip(extras, df[col])]
    bad = df.loc[~df["dtype"].isin(ACT_BITS), "dtype"].unique().tolist()
    if bad:
        raise ConfigError(f"--measurements: {source}: dtype {bad} not supported (allowed: {list(ACT_BITS)})")
    df["group_size"] = df["group_size"].fillna(128).astype(int)
    df["config_key"] = [
        f"{r.model}|L{'all' if pd.isna(r.layers) or r.layers is None else int(r.layers)}|{r.variant}|{r.dtype}"
        f"|b{int(r.batch)}|p{int(r.prompt_len)}|g{int(r.gen_len)}" for r in df.itertuples()]
    # Repeated measurements of one configuration: their median is the configuration's time.
    agg = {c: "first" for c in df.columns if c not in ("prefill_ms", "tpot_ms", "config_key")}
    agg.update(prefill_ms="median", tpot_ms="median")
    return df.groupby("config_key", sort=True).agg(agg).reset_index()


def split_configs(df: pd.DataFrame, test_frac: float = 0.3, seed: int = 0) -> np.ndarray:
    """Boolean mask (len(df),) of held-out rows: ``test_frac`` of each (variant, dtype) stratum.

    A stratum with one configuration stays in train (its factors could not be fitted otherwise).
    """
    if not 0.0 <= test_frac < 1.0:
        raise ConfigError(f"--test-frac: {test_frac} is out of range (allowed: 0 <= x < 1)")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(df), dtype=bool)
    for _, idx in df.groupby(["variant", "dtype"]).indices.items():
        k = int(round(test_frac * len(idx)))
        k = min(k, len(idx) - 1)
        if k > 0:
            test[rng.choice(idx, size=k, replace=False)] = True
    return test


# -- specs --------------------------------------------------------------------------------------
def resolve_spec_path(spec: str | Path) -> Path:
    """A spec name (built-in or in ``$CODESIGN_CACHE/specs``) or YAML path -> its file."""
    p = Path(spec)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    import hwmodels

    from codesign.paths import cache_dir

    for d in (cache_dir() / "specs", Path(hwmodels.__file__).parent / "specs"):
        for ext in (".yaml", ".yml"):
            if (d / f"{spec}{ext}").exists():
                return d / f"{spec}{ext}"
    names = sorted(hwmodels.list_specs()) if hasattr(hwmodels, "list_specs") else []
    raise ConfigError(f"--spec: {spec!r} is neither a YAML file nor a known spec (known: {names})")


def calibrated_path(spec_path: Path) -> Path:
    """``<spec>.calibrated.yaml`` beside the original, or in the user spec cache for built-ins."""
    import hwmodels

    from codesign.paths import cache_dir

    builtin = Path(hwmodels.__file__).parent / "specs"
    stem = spec_path.name.rsplit(".", 1)[0]
    if spec_path.resolve().parent == builtin.resolve():
        return cache_dir() / "specs" / f"{stem}.calibrated.yaml"
    return spec_path.with_name(f"{stem}.calibrated.yaml")


@dataclass(frozen=True)
class Param:
    """One free spec number: its path in the spec mapping, bounds, and typical step size."""

    path: tuple[str, ...]  # e.g. ("efficiency", "bf16", "memory"), ("overhead_us", "per_layer")
    lo: float
    hi: float
    scale: float

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def get(self, spec: dict[str, Any]) -> float:
        if self.path[0] == "efficiency":
            eff = spec.get("efficiency") or {}
            default = eff.get("default") or {}
            return float((eff.get(self.path[1]) or {}).get(self.path[2], default.get(self.path[2], 0.5)))
        node: Any = spec
        for k in self.path:
            node = (node or {}).get(k) if isinstance(node, dict) else None
        return float(node) if node is not None else {"dequant_ops_per_weight": 4.0}.get(self.path[-1], 0.0)

    def set(self, spec: dict[str, Any], value: float) -> None:
        if self.path[0] == "efficiency":
            eff = spec.setdefault("efficiency", {})
            default = dict(eff.get("default") or {"compute": 1.0, "memory": 1.0})
            eff.setdefault(self.path[1], dict(default))[self.path[2]] = float(value)
            return
        node = spec
        for k in self.path[:-1]:
            node = node.setdefault(k, {})
        node[self.path[-1]] = float(value)


def efficiency_param(dtype: str, bound: str) -> Param:
    return Param(("efficiency", dtype, bound), EFF_BOUNDS[0], EFF_BOUNDS[1], 0.1)


#: Spec numbers fitted besides efficiencies (when the measurements are sensitive to them).
OVERHEAD_PARAMS = [Param(("overhead_us", "per_layer"), 0.0, OVERHEAD_MAX_US, 100.0),
                   Param(("overhead_us", "per_forward"), 0.0, OVERHEAD_MAX_US, 100.0)]
DEQUANT_PARAM = Param(("dequant_ops_per_weight",), 0.1, 1000.0, 1.0)


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


class Predictor:
    """Evaluates the analytical model on measured configurations for a spec mapping.

    Shapes come from each measurement's stored (possibly layer-truncated) config, so the model
    is evaluated on exactly what was timed; built-in names are the fallback for rows without one.
    All configurations go through one vectorized :func:`hwmodels.roofline.evaluate_points` call.
    """

    def __init__(self, df: pd.DataFrame):
        from hwmodels.shapes import load_shape, shape_from_config

        self.df = df.reset_index(drop=True)
        shapes, index, mi = [], {}, []
        for r in self.df.itertuples():
            cfg = getattr(r, "config", None)
            layers = getattr(r, "layers", None)
            name = str(r.model).removeprefix("random:") + (f"-L{int(layers)}" if layers and not pd.isna(layers) else "")
            key = json.dumps(cfg, sort_keys=True) if isinstance(cfg, dict) and cfg else str(r.model)
            if key not in index:
                index[key] = len(shapes)
                shapes.append(shape_from_config(cfg, name=name, source=f"measurement of {r.model}")
                              if isinstance(cfg, dict) and cfg else load_shape(str(r.model)))
            mi.append(index[key])
        self.shapes, self.model_index = shapes, np.array(mi)
        col = lambda c: self.df[c].to_numpy(dtype=np.int64)  # noqa: E731
        abits = np.array([ACT_BITS[d] for d in self.df["dtype"]])
        sym = np.array([bool(v) for v in self.df["sym"]]) if "sym" in self.df else np.zeros(len(self.df), bool)
        self.args = dict(wbits=col("wbits"), group_size=col("group_size"), abits=abits, kvbits=abits,
                         batch=col("batch"), prompt_len=col("prompt_len"), gen_len=col("gen_len"), sym=sym)

    def spec(self, mapping: dict[str, Any]):
        from codesign.config import validate_config
        from hwmodels.spec import AcceleratorSpec

        return validate_config(AcceleratorSpec, mapping, mapping.get("name"))

    def predict(self, mapping: dict[str, Any]) -> np.ndarray:
        """Predicted (prefill_ms, tpot_ms) per row: array of shape (n_rows, 2)."""
        from hwmodels.roofline import evaluate_points

        res = evaluate_points([self.spec(mapping)], self.shapes, model_index=self.model_index, **self.args)
        return np.stack([res["ttft_ms"], res["tpot_ms"]], axis=-1)


def sensitive(pred: "Predictor", base: dict[str, Any], candidates: list[Param]) -> list[Param]:
    """The candidates that change some prediction when moved (the others cannot be fitted)."""
    ref = pred.predict(base)
    out = []
    for c in candidates:
        p = Params([c])
        x0 = p.initial(base)
        moved = pred.predict(p.apply(base, np.clip(x0 * 0.5 if x0[0] > 0 else x0 + c.scale, c.lo, c.hi)))
        if np.any(np.abs(moved - ref) > 1e-6 * ref):
            out.append(c)
    return out


def mape(pred: np.ndarray, meas: np.ndarray) -> float:
    """Mean absolute percentage error (%) of ``pred`` against ``meas`` (same shapes)."""
    return float(np.mean(np.abs(pred - meas) / meas) * 100.0)


@dataclass
class CalibrationResult:
    """Outcome of a calibration: fitted spec, per-configuration predictions, train/test MAPE."""

    spec_name: str
    spec_path: Path
    out_path: Path | None
    calibrated: dict[str, Any]
    table: pd.DataFrame  # one row per configuration: measured, before, after, split
    params: list[Param]

    @property
    def fitted(self) -> list[str]:
        return [p.name for p in self.params]

    def mape(self, split: str, which: str, target: str | None = None) -> float:
        t = self.table[self.table["split"] == split]
        targets = [target] if target else list(TARGETS)
        if t.empty:
            return float("nan")
        pred = np.concatenate([t[f"{k}_{which}"].to_numpy() for k in targets])
        meas = np.concatenate([t[k].to_numpy() for k in targets])
        return mape(pred, meas)

    def log_rmse(self, split: str, which: str) -> float:
        """Root mean square of log(predicted / measured) over both targets: what the fit minimizes."""
        t = self.table[self.table["split"] == split]
        if t.empty:
            return float("nan")
        r = np.concatenate([np.log(t[f"{k}_{which}"].to_numpy() / t[k].to_numpy()) for k in TARGETS])
        return float(np.sqrt(np.mean(r**2)))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spec": self.spec_name, "calibrated_spec": str(self.out_path) if self.out_path else None,
                               "n_train": int((self.table["split"] == "train").sum()),
                               "n_test": int((self.table["split"] == "test").sum()),
                               "efficiency": self.calibrated.get("efficiency"),
                               "overhead_us": self.calibrated.get("overhead_us")}
        for split in ("train", "test"):
            for which in ("before", "after"):
                out[f"mape_{split}_{which}"] = self.mape(split, which)
                for k in TARGETS:
                    out[f"mape_{split}_{which}_{k}"] = self.mape(split, which, k)
        return out


def calibrate(spec: str | Path, measurements, *, test_frac: float = 0.3, seed: int = 0,
              out: str | Path | None = None, write: bool = True, device: str | None = None,
              statistic: str = "median", info: dict[str, Any] | None = None,
              progress: bool = True) -> CalibrationResult:
    """Fit ``spec``'s efficiency and overheads to ``measurements``; write the calibrated spec.

    ``measurements`` is a store path, CSV path or DataFrame (see :func:`load_measurements`).
    ``out`` defaults to :func:`calibrated_path`. The fit sees only the train split; the table
    holds predictions before/after for every configuration with its split. ``info`` is merged
    into the written spec's ``calibration`` block (e.g. a cross-validated error).
    """
    from scipy.optimize import least_squares

    spec_path = resolve_spec_path(spec)
    base = read_mapping(spec_path)
    df = measurements if isinstance(measurements, pd.DataFrame) and "config_key" in measurements.columns \
        else load_measurements(measurements, device=device, statistic=statistic)
    test = split_configs(df, test_frac, seed)
    pred = Predictor(df)
    pred.spec(base)  # fail early, naming the file, if the spec itself is invalid
    meas = df[list(TARGETS)].to_numpy(dtype=float)
    if np.any(meas <= 0) or not np.all(np.isfinite(meas)):
        raise ConfigError("--measurements: prefill_ms and tpot_ms must be positive finite numbers")
    before = pred.predict(base)

    # 'vector' (norms, softmax, dequantization) has a compute efficiency of its own.
    dtypes = sorted(set(base.get("compute_tflops") or {})) + ["vector"]
    candidates = [efficiency_param(d, b) for d in dtypes for b in ("compute", "memory")]
    params = Params(sensitive(pred, base, candidates + OVERHEAD_PARAMS + [DEQUANT_PARAM]))
    lo = np.array([p.lo for p in params.items])
    hi = np.array([p.hi for p in params.items])
    x0 = np.clip(params.initial(base), lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    train = ~test
    sub = Predictor(df[train]) if test.any() else pred
    log_meas = np.log(meas[train])

    from tqdm.auto import tqdm

    bar = tqdm(desc="calibrate", unit="eval", disable=not progress)

    def resid(x: np.ndarray) -> np.ndarray:
        bar.update()
        return (np.log(np.maximum(sub.predict(params.apply(base, x)), 1e-12)) - log_meas).ravel()

    # Efficiencies live in (0, 1], overheads in microseconds: per-parameter scales let the
    # trust-region steps and finite differences see both.
    x_scale = np.array([p.scale for p in params.items])
    fit = least_squares(resid, x0, bounds=(lo, hi), x_scale=x_scale, diff_step=1e-3, max_nfev=300)
    bar.close()
    calibrated = params.apply(base, fit.x)
    after = pred.predict(calibrated)

    table = df[["config_key", "model", "layers", "variant", "wbits", "dtype", "batch", "prompt_len", "gen_len"]].copy()
    for j, k in enumerate(TARGETS):
        table[k] = meas[:, j]
        table[f"{k}_before"] = before[:, j]
        table[f"{k}_after"] = after[:, j]
    table["split"] = np.where(test, "test", "train")
    res = CalibrationResult(str(base.get("name", spec_path.stem)), spec_path, None, calibrated, table, params.items)

    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    held = int(test.sum())
    err = (f"held-out MAPE {res.mape('test', 'before'):.1f}% -> {res.mape('test', 'after'):.1f}%" if held else
           f"MAPE on the fitted configurations {res.mape('train', 'before'):.1f}% -> {res.mape('train', 'after'):.1f}%")
    calibrated["sources"] = list(calibrated.get("sources") or []) + [
        f"calibrated by `codesign calibrate` on {when} against {len(df)} measured configurations "
        f"({int(train.sum())} fitted, {held} held out); {err}"]
    block: dict[str, Any] = {
        "date": when, "from_spec": _shown_path(spec_path), "n_configs": int(len(df)), "n_train": int(train.sum()),
        "n_test": held, "fitted": params.names, "statistic": statistic,
        "devices": sorted(set(map(str, df.get("device_name", df["device"]).dropna()))),
        "mape_train_before": round(res.mape("train", "before"), 2), "mape_train_after": round(res.mape("train", "after"), 2)}
    if held:
        block.update(mape_test_before=round(res.mape("test", "before"), 2),
                     mape_test_after=round(res.mape("test", "after"), 2))
    block.update(info or {})
    calibrated["calibration"] = block
    if write:
        out_path = Path(out) if out else calibrated_path(spec_path)
        calibrated["name"] = out_path.name.removesuffix(".yaml").removesuffix(".yml")
        from codesign.cost.probe import write_spec

        res.out_path = write_spec(calibrated, out_path)
    return res


def _shown_path(p: Path) -> str:
    """``p`` relative to the working directory when inside it (no home paths in committed specs)."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def format_report(res: CalibrationResult, split: str = "test") -> str:
    """Per-configuration error table (held-out by default) and the MAPE summary, as text."""
    t = res.table[res.table["split"] == split] if split else res.table
    lines = [f"spec {res.spec_name}: fitted {', '.join(res.fitted)}",
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
    lines.append("fitted values: " + ", ".join(f"{p.name}={p.get(res.calibrated):.4g}" for p in res.params))
    if res.out_path:
        lines.append(f"wrote {res.out_path}")
    return "\n".join(lines)
