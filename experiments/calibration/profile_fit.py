"""Calibrate the CPU runtime profile (``torch-cpu``) on measured packed-kernel rows; held-out error per
format, and the {4, 8} ensemble predicted vs measured under the sequential and batched schedules.

    python experiments/calibration/profile_fit.py            # prints the tables, writes the results
    python experiments/calibration/profile_fit.py --splits 10 --write-profile

Rows (all measured with 1 torch thread and the process CPU-time clock, ``codesign measure --threads 1
--clock cpu``: robust on the shared 2-core box, see README.md): ``packed_measurements.csv`` (dense,
w8g128 on two kernels, w4g128; prefill on the packed kernel), ``phase_measurements.csv`` (w8g128 and
w4g128 with prefill on a dense copy of the dequantized weight, decode on the packed kernel: ``measure
--prefill auto``), ``packed_ensembles.csv`` (w4g128+w8g128 sequential / batched). Two real shapes
(llama-2-7b truncated to 2 layers, qwen2.5-0.5b) x batch 1/4/16 x prompt 16/64.

The fit is ``codesign calibrate`` itself on the single-variant rows (written to
``cpu_profile_rows_<ROWS>.csv``): half of the configurations of every (format, kernels) stratum fitted, the other
half held out. ``--splits N`` repeats it over N random halves (the headline is split 0). The
ensemble rows are never fitted: they are predicted from the members' fitted kernels through
``hwmodels.ensemble``'s schedule formulas. Outputs: ``profile_fit_results_<ROWS>.md`` (the tables),
``profile_fit_predictions_<ROWS>.csv`` (every configuration, measured / predicted, split), and with
``--write-profile`` the profile fitted on split 0 as ``torch-cpu.calibrated.yaml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SPEC = HERE / "dev-cpu-1t.yaml"
#: The profile the fit starts from: hwmodels/runtimes/torch-cpu.yaml as it was before this fit (kernels
#: and formats declared, dense terms from measurements.csv), so reruns start from the same point; the
#: profile fitted on split 0 of rows A is what hwmodels/runtimes/torch-cpu.yaml now holds.
RUNTIME = HERE / "torch-cpu.base.yaml"
#: Row sets by measuring session: A (load average 4-9) packed-prefill rows, B (load 12-24) per-phase rows and
#: dense again; the ensembles were measured in session A.
ROW_SETS = {"A": ["packed_measurements.csv"], "B": ["phase_measurements.csv"],
            "AB": ["packed_measurements.csv", "phase_measurements.csv"]}
ENSEMBLE_CSV = "packed_ensembles.csv"
ROWS = HERE / "cpu_profile_rows.csv"


def single_rows(csvs: list[str]) -> pd.DataFrame:
    """Every single-variant row of ``csvs``, as one table (written to ``ROWS``)."""
    frames = [pd.read_csv(HERE / f) for f in csvs]
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(ROWS, index=False)
    return df


def ape(pred, meas) -> np.ndarray:
    return np.abs(np.asarray(pred) / np.asarray(meas) - 1.0) * 100.0


def fit_split(seed: int, statistic: str, write: Path | None, also_fit: list[str] | None = None):
    from codesign.cost.calibrate import calibrate

    return calibrate(SPEC, ROWS, runtime=RUNTIME, test_frac=0.5, seed=seed, statistic=statistic,
                     write=write is not None, out=write, progress=False, also_fit=also_fit)


def ensemble_table(res, statistic: str) -> pd.DataFrame:
    """The ensemble rows predicted with the fitted profile (``res``), against measured."""
    from codesign.cost.calibrate import Predictor, load_measurements

    ens = load_measurements(HERE / ENSEMBLE_CSV, statistic=statistic)
    pred = Predictor(ens).predict_state(res.state)
    t = ens[["model", "kernel", "schedule", "batch", "prompt_len", "prefill_ms", "tpot_ms"]].copy()
    t["prefill_pred"], t["tpot_pred"] = pred[:, 0], pred[:, 1]
    t["prefill_ape"], t["tpot_ape"] = ape(t.prefill_pred, t.prefill_ms), ape(t.tpot_pred, t.tpot_ms)
    return t


def fmt_table(rows: list[list], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=int, default=10, help="random halves to fit and test (headline: split 0)")
    ap.add_argument("--statistic", default="median", choices=["median", "min"],
                    help="per configuration: the stored median of the repeats, or their minimum")
    ap.add_argument("--write-profile", action="store_true", help="write torch-cpu.calibrated.yaml (split 0)")
    ap.add_argument("--rows", default="A", choices=list(ROW_SETS),
                    help="A: session A's rows (packed prefill; the ensembles' session), B: session B's per-phase "
                         "and dense rows, AB: both")
    ap.add_argument("--also-fit", default="", metavar="PATH,...",
                    help="runtime parameters fitted besides the default ones (e.g. kernels.torch-matmul."
                         "compute_m_half_decode); results go to profile_fit_results_<ROWS>_also.md")
    args = ap.parse_args()
    global ROWS
    ROWS = HERE / f"cpu_profile_rows_{args.rows}.csv"
    single_rows(ROW_SETS[args.rows])
    also = [n for n in args.also_fit.split(",") if n]
    if also and args.write_profile:
        ap.error("--also-fit is an experiment: it does not write the profile")
    out = HERE / "torch-cpu.calibrated.yaml" if args.write_profile else None
    results = [fit_split(s, args.statistic, out if s == 0 else None, also) for s in range(args.splits)]
    head = results[0]
    formats = sorted(head.table["format"].unique())
    per_split = pd.DataFrame([r.mape_by_format("test") for r in results])[formats]

    rel = lambda p: p.relative_to(HERE.parent.parent)  # noqa: E731
    cmd = (f"codesign calibrate --spec {rel(SPEC)} --measurements {rel(ROWS)} --runtime {rel(RUNTIME)} "
           f"--test-frac 0.5 --seed 0 --statistic {args.statistic} --show all"
           + (f" --also-fit {','.join(also)}" if also else ""))
    n = head.table["split"].value_counts()
    tag = args.rows + ("_also" if also else "")
    md = [f"### Rows {args.rows} ({', '.join(ROW_SETS[args.rows])})"
          + (f", also fitting {', '.join(f'`{n}`' for n in also)}" if also else "") + "\n",
          f"Fitted: {len(head.fitted)} parameters of runtime `{RUNTIME.name}` on spec `{SPEC.name}` "
          f"({n.get('train', 0)} configurations fitted, {n.get('test', 0)} held out; statistic "
          f"{args.statistic}). Equivalent command for split 0:\n\n    {cmd}\n",
          "Held-out MAPE (prefill and decode together) per format; split 0, and mean / max over "
          f"{args.splits} random halves:\n"]
    rows = [[f, int((head.table.loc[head.table.split == 'test', 'format'] == f).sum()),
             f"{per_split[f].iloc[0]:.1f} %", f"{per_split[f].mean():.1f} %", f"{per_split[f].max():.1f} %"]
            for f in formats]
    rows.append(["all formats", int(n.get("test", 0)), f"{head.mape('test', 'after'):.1f} %",
                 f"{np.mean([r.mape('test', 'after') for r in results]):.1f} %",
                 f"{np.max([r.mape('test', 'after') for r in results]):.1f} %"])
    md.append(fmt_table(rows, ["format (decode kernel[, prefill kernel])", "held-out configs", "split 0",
                               f"mean of {args.splits}", f"max of {args.splits}"]))
    md.append("\nBefore calibration (the profile's file values), split 0: "
              f"{head.mape('test', 'before'):.1f} % held out.\n")

    ens = ensemble_table(head, args.statistic)
    erows = []
    for (kern, sched), g in ens.groupby(["kernel", "schedule"]):
        erows.append([kern.replace("aten-", ""), sched, len(g), f"{g.prefill_ape.mean():.1f} %",
                      f"{g.tpot_ape.mean():.1f} %", f"{np.concatenate([g.prefill_ape, g.tpot_ape]).mean():.1f} %"])
    for sched, g in ens.groupby("schedule"):
        erows.append(["all", sched, len(g), f"{g.prefill_ape.mean():.1f} %", f"{g.tpot_ape.mean():.1f} %",
                      f"{np.concatenate([g.prefill_ape, g.tpot_ape]).mean():.1f} %"])
    md.append("{4, 8} ensemble (w4g128 + w8g128), predicted by the profile fitted on split 0 (single-variant "
              "rows only; no ensemble row is fitted) vs measured, MAPE:\n")
    md.append(fmt_table(erows, ["member kernels", "schedule", "configs", "prefill", "decode", "both"]))
    md.append("\nFitted values (split 0): " + ", ".join(f"`{p.name.removeprefix('runtime.')}` = {p.get(head.state):.4g}"
                                                        for p in head.params))
    text = "\n".join(md)
    print(text)
    (HERE / f"profile_fit_results_{tag}.md").write_text(text + "\n")
    table = head.table.assign(
        prefill_ape=ape(head.table.prefill_ms_after, head.table.prefill_ms),
        tpot_ape=ape(head.table.tpot_ms_after, head.table.tpot_ms))
    cols = ["model", "format", "schedule", "batch", "prompt_len", "split", "prefill_ms", "prefill_ms_after",
            "prefill_ape", "tpot_ms", "tpot_ms_after", "tpot_ape"]
    ens_t = ens.assign(format=[f"w4g128+w8g128/{k}" for k in ens.kernel], split="ensemble (not fitted)",
                       prefill_ms_after=ens.prefill_pred, tpot_ms_after=ens.tpot_pred)
    pd.concat([table[cols], ens_t[cols]]).round(2).to_csv(HERE / f"profile_fit_predictions_{tag}.csv", index=False)


if __name__ == "__main__":
    main()
