"""Published decode measurements against the analytical model, per runtime profile.

    python experiments/published/run.py            # fit each profile on half its points, report the other half
    python experiments/published/run.py --write    # ... and store the fits in hwmodels/runtimes/<profile>.yaml

For every runtime profile that published points belong to (``points.yaml``: each point with its
source, hardware, model, weight format, kernel, batch and lengths), the points are split in two
halves, stratified by weight format and accelerator (seeded, so the split is fixed); the profile's
free parameters (``FITS`` below: a few per profile, the ones its points can tell apart) are fitted
on one half by the least squares of ``codesign calibrate`` (log of predicted / measured time per
output token), and the error is reported on the other half: median absolute percentage error per
weight format, before (the spec alone, no stack terms) and after (the fitted profile). Results:
``results.json`` and ``predictions.csv`` here.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from codesign.cost.calibrate import Params, Predictor, fit_params, rounded, runtime_param  # noqa: E402
from hwmodels.runtime import runtime_path  # noqa: E402
from hwmodels.spec import load_spec  # noqa: E402

#: Per profile, the parameters fitted to its points (dotted paths in the profile file). Few, so that
#: half of a profile's points determine them; everything else keeps the profile file's value.
FITS = {
    "hf-eager": ["kernels.torch-matmul.memory_efficiency.dense", "launch_floor_us"],
    "tinychat-awq": ["kernels.tinychat-w4a16.memory_efficiency.w4", "launch_floor_us"],
    "gpt-fast": ["kernels.torch-matmul.memory_efficiency.dense", "kernels.inductor-int8wo.memory_efficiency.w8",
                 "kernels.aten-int4pack-cuda.memory_efficiency.w4", "framework.per_forward_us"],
    "torch-eager": ["launch_floor_us"],
    "autoawq": ["kernels.awq-gemm.memory_efficiency.w4", "kernels.awq-gemv.memory_efficiency.w4",
                "kernels.awq-gemv.dequant_ops_per_weight", "other_efficiency.memory", "framework.per_forward_us"],
    "exllamav2": ["kernels.exllamav2.memory_efficiency.default", "launch_floor_us"],
    "llama-cpp": ["kernels.llama-cpp-cuda.memory_efficiency.dense", "kernels.llama-cpp-cuda.memory_efficiency.w4",
                  "launch_floor_us"],
}
ACT = {"float16": 16, "bfloat16": 16, "float32": 32}


def load_points(path: Path) -> tuple[pd.DataFrame, dict]:
    """Points as rows the calibration predictor reads: measured ``tpot_ms`` (no prefill), format class."""
    data = yaml.safe_load(path.read_text())
    df = pd.DataFrame(data["points"])
    df["dtype"] = df.get("dtype", pd.Series(dtype=object)).fillna("float16")
    df["group_size"] = df["group_size"].fillna(128).astype(int)
    df["sym"] = df["sym"].fillna(False).astype(bool)
    tps = df["tokens_per_s"].astype(float) if "tokens_per_s" in df else np.nan
    df["tpot_ms"] = df["ms_per_token"].astype(float).fillna(df["batch"] * 1e3 / tps)
    df["prefill_ms"] = np.nan
    df["format"] = [("fp32" if ACT[d] == 32 else "fp16") if w >= 16 else f"w{w}" for w, d in zip(df["wbits"],
                                                                                                df["dtype"])]
    missing = sorted(set(df["source"]) - set(data["sources"]))
    if missing:
        raise SystemExit(f"error: {path}: points cite unknown sources {missing}")
    return df, data["sources"]


def split_halves(df: pd.DataFrame, seed: int) -> np.ndarray:
    """Held-out mask: half of each (runtime, format, accelerator) stratum, seeded; strata of one point
    alternate between the halves, so every stack's formats and machines are seen by its fit."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(df), dtype=bool)
    odd = 0
    for _, idx in sorted(df.groupby(["runtime", "format", "spec"]).indices.items()):
        k = len(idx) // 2 + (len(idx) % 2) * odd
        odd ^= len(idx) % 2
        test[rng.permutation(idx)[:k]] = True
    return test


def predictor(rows: pd.DataFrame) -> Predictor:
    specs = sorted(rows["spec"].unique())
    rows = rows.assign(spec_index=[specs.index(s) for s in rows["spec"]])
    return Predictor(rows, specs=[load_spec(s) for s in specs])


def fit_profile(name: str, rows: pd.DataFrame, test: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Fit ``name``'s FITS parameters on the train rows; predictions (before, after) for all rows."""
    rt_map = yaml.safe_load(runtime_path(name).read_text())
    params = Params([runtime_param(p) for p in FITS[name]])
    base = {"spec": None, "runtime": rt_map}
    meas = rows[["prefill_ms", "tpot_ms"]].to_numpy(dtype=float)
    state = fit_params(predictor(rows[~test]), base, params, meas[~test])
    pred = predictor(rows)
    before = pred.predict(None, None)[:, 1]
    after = pred.predict(None, state["runtime"])[:, 1]
    return state["runtime"], before, after


def ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred - meas) / meas * 100.0


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Median APE per (runtime, format) on the held-out half, before and after."""
    t = df[df["split"] == "test"]
    rows = []
    for (rt, fmt), g in t.groupby(["runtime", "format"]):
        n_train = int(((df["runtime"] == rt) & (df["format"] == fmt) & (df["split"] == "train")).sum())
        rows.append(dict(runtime=rt, format=fmt, n_train=n_train, n_test=len(g),
                         before=float(np.median(g["ape_before"])), after=float(np.median(g["ape_after"]))))
    for fmt, g in t.groupby("format"):
        rows.append(dict(runtime="(all)", format=fmt, n_train=int(((df["format"] == fmt) & (df["split"] == "train"))
                                                                     .sum()), n_test=len(g),
                         before=float(np.median(g["ape_before"])), after=float(np.median(g["ape_after"]))))
    return pd.DataFrame(rows)


def write_profile(name: str, fitted: dict, rows: pd.DataFrame, summary: pd.DataFrame, sources: dict, seed: int) -> Path:
    """Store the fitted values, sources and held-out error in the profile file (its leading comments kept)."""
    path = runtime_path(name)
    head = "".join(itertools.takewhile(lambda line: line.startswith("#"), path.read_text().splitlines(keepends=True)))
    used = sorted(rows["source"].unique())
    fitted["sources"] = [sources[s]["url"] for s in used]
    s = summary[summary["runtime"] == name]
    fitted["calibration"] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
        "protocol": "experiments/published/run.py: fitted on one half of the published points, seeded "
                    f"split by (weight format, accelerator) (seed {seed}), median absolute error on the other half",
        "points": int(len(rows)), "n_train": int((rows["split"] == "train").sum()),
        "n_test": int((rows["split"] == "test").sum()), "fitted": FITS[name],
        "heldout_median_ape": {r.format: round(r.after, 1) for r in s.itertuples()},
        "heldout_median_ape_without_profile": {r.format: round(r.before, 1) for r in s.itertuples()}}
    body = yaml.safe_dump(rounded(fitted), sort_keys=False, width=110)
    path.write_text(head + body)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=Path, default=HERE / "points.yaml")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    ap.add_argument("--write", action="store_true", help="store the fits in hwmodels/runtimes/<profile>.yaml")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for results.json and predictions.csv")
    args = ap.parse_args()

    df, sources = load_points(args.points)
    df["split"] = np.where(split_halves(df, args.seed), "test", "train")
    df["pred_before_ms"], df["pred_after_ms"] = np.nan, np.nan
    fitted = {}
    for name in sorted(df["runtime"].unique()):
        sel = (df["runtime"] == name).to_numpy()
        rows = df[sel].reset_index(drop=True)
        fitted[name], before, after = fit_profile(name, rows, (rows["split"] == "test").to_numpy())
        df.loc[sel, "pred_before_ms"], df.loc[sel, "pred_after_ms"] = before, after
    df["ape_before"] = ape(df["pred_before_ms"].to_numpy(), df["tpot_ms"].to_numpy())
    df["ape_after"] = ape(df["pred_after_ms"].to_numpy(), df["tpot_ms"].to_numpy())
    summary = summarize(df)

    held = df[df["split"] == "test"]
    print(f"held-out points ({len(held)} of {len(df)}; {len(sources)} sources): ms per output token")
    print("measured, predicted by the spec alone, with the fitted profile, its error")
    print(f"{'point':28s} {'runtime':12s} {'fmt':4s} {'meas':>6s} {'spec':>6s} {'prof.':>6s} {'APE':>6s}")
    for r in held.sort_values(["runtime", "format", "id"]).itertuples():
        print(f"{r.id[:28]:28s} {r.runtime:12s} {r.format:4s} {r.tpot_ms:6.2f} {r.pred_before_ms:6.2f} "
              f"{r.pred_after_ms:6.2f} {r.ape_after:5.1f}%")
    print("\nheld-out median absolute error per output token (before: spec; after: profile)")
    print(f"{'runtime':14s} {'format':6s} {'train':>5s} {'test':>5s} {'before':>8s} {'after':>7s}")
    for r in summary.itertuples():
        print(f"{r.runtime:14s} {r.format:6s} {r.n_train:5d} {r.n_test:5d} {r.before:7.1f}% {r.after:6.1f}%")
    args.out.mkdir(parents=True, exist_ok=True)
    df.drop(columns=["prefill_ms"]).to_csv(args.out / "predictions.csv", index=False)
    results = {"points": len(df), "sources": sorted(sources), "seed": args.seed, "fits": FITS,
               "summary": summary.to_dict(orient="records"),
               "fitted": {k: {p: runtime_param(p).get({"runtime": v}) for p in FITS[k]} for k, v in fitted.items()}}
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    if args.write:
        for name, prof in fitted.items():
            print(f"wrote {write_profile(name, prof, df[df['runtime'] == name], summary, sources, args.seed)}")


if __name__ == "__main__":
    main()
