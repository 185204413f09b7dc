"""Report collector: the hardware view — operators on a spec's roofline, and measured latency beside
the analytical model's prediction for the same run.

Each measurement is predicted on the accelerator spec it names (its ``spec`` field); a row written
before measurements named one is compared against this machine's CPU spec when it ran on the CPU
(never against the study's GPU), else against the report's spec. Rows are priced exactly as
calibration prices them (:class:`codesign.cost.calibrate.Predictor`: the row's own model config,
weight format and runtime dtype, so float32 runs are priced as float32).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

#: The spec ``codesign probe`` writes for this machine, and the built-in measured CPU used without one.
PROBED_CPU_SPEC, BUILTIN_CPU_SPEC = "host-cpu", "dev-cpu"


def local_cpu_spec() -> str:
    """This machine's CPU spec: the probed one if ``codesign probe`` wrote it, else the built-in CPU."""
    import hwmodels

    return PROBED_CPU_SPEC if PROBED_CPU_SPEC in hwmodels.list_specs() else BUILTIN_CPU_SPEC


def roofline_points(spec, shape, bits_gs: list[tuple[int, int]], prompt_len: int = 512,
                    gen_len: int = 128, batch: int = 1) -> pd.DataFrame:
    """Prefill and decode operators of each (bits, group size) placed on ``spec``'s roofline: bits,
    phase, op, dtype, flops, bytes, intensity (FLOP/byte), attained_flops (FLOP/s), bound."""
    import hwmodels

    frames = []
    for bits, gs in bits_gs:
        est = hwmodels.estimate(spec, shape, wbits=int(bits), group_size=int(gs) if gs and gs > 0 else 128,
                                batch=batch, prompt_len=prompt_len, gen_len=gen_len)
        ops = est.ops[["phase", "op", "dtype", "flops", "bytes", "bound"]].copy()
        ops["intensity"] = est.ops["flops"] / est.ops["bytes"].replace(0, np.nan)
        ops["attained_flops"] = est.ops["flops"] / (est.ops["time_ms"] * 1e-3).replace(0, np.nan)
        ops["bits"] = int(bits)
        frames.append(ops)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df = df[np.isfinite(df["intensity"].astype(float)) & np.isfinite(df["attained_flops"].astype(float))]
    return df[(df["intensity"] > 0) & (df["attained_flops"] > 0)].reset_index(drop=True)


def measurement_specs(meas: pd.DataFrame, fallback: str | None) -> pd.Series:
    """The spec each measurement row is compared against (module docstring); '' where none applies."""
    named = meas["spec"] if "spec" in meas.columns else pd.Series([None] * len(meas), index=meas.index)
    extra = meas["extra_json"] if "extra_json" in meas.columns else pd.Series(["{}"] * len(meas), index=meas.index)
    cpu = None
    out = []
    for spec, ex, device in zip(named, extra, meas["device"]):
        if not (isinstance(spec, str) and spec):
            spec = (json.loads(ex) if isinstance(ex, str) and ex else {}).get("spec")
        if not spec and str(device) == "cpu":
            cpu = cpu or local_cpu_spec()
            spec = cpu
        out.append(spec or fallback or "")
    return pd.Series(out, index=meas.index, dtype=object)


def predicted_latency(meas: pd.DataFrame, fallback_spec: str | None) -> tuple[pd.DataFrame, str | None]:
    """Measurements (repeats of one configuration on one device merged by their median) with
    ``spec``, ``predicted_prefill_ms`` and ``predicted_tpot_ms``; and a note on rows left unpredicted."""
    import hwmodels

    from codesign.config import ConfigError
    from codesign.cost.calibrate import Predictor, load_measurements

    meas = meas.assign(spec=measurement_specs(meas, fallback_spec))
    frames, problems = [], []
    for (spec, _, _), group in meas.groupby(["spec", "device", meas["device_name"].fillna("")], sort=True):
        try:
            df = load_measurements(group.drop(columns=["spec"]))
        except ConfigError as exc:
            problems.append(f"{len(group)} row(s) on {spec or '?'}: {exc}")
            continue
        df["spec"] = spec
        df["predicted_prefill_ms"] = df["predicted_tpot_ms"] = np.nan
        try:
            if not spec:
                raise ValueError("the row names no spec")
            pred = Predictor(df).predict(hwmodels.load_spec(spec).model_dump(mode="json"))
            df["predicted_prefill_ms"], df["predicted_tpot_ms"] = pred[:, 0], pred[:, 1]
        except Exception as exc:  # noqa: BLE001 - rows we cannot predict are shown without a prediction
            problems.append(f"{len(df)} row(s) of {df['model'].iloc[0]} on {spec or '?'}: {exc}")
        frames.append(df.drop(columns=[c for c in ("config", "config_key") if c in df.columns]))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    note = f"measurements without a prediction: {'; '.join(problems)}" if problems else None
    return out, note
