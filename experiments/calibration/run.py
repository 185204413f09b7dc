"""Calibrate the analytical hardware model on this CPU and report held-out error.

    python experiments/calibration/run.py                 # probe + measure what is missing, fit, report
    python experiments/calibration/run.py --no-measure    # re-fit from the committed CSV only

Protocol (the dev box has 2 cores shared with other jobs, so wall-clock timings are dominated by
waiting for a core; see README.md here):

1. Probe this CPU with one thread and the process-CPU-time clock (bandwidth, vector and matmul
   throughput per dtype) -> ``dev-cpu-1t.yaml``, the uncalibrated spec.
2. Measure prefill + KV-cached decode of real model shapes with random weights, truncated to a
   few layers: 3 shapes x dense fp32/bf16 x batch 1,2,4,16 x prompt 16,64, one thread, CPU-time
   clock, median of repeats after warm-up. Stored in ``measurements.db`` (resumable), exported to
   ``measurements.csv`` (committed).
3. For each analysis (subset of configurations), fit efficiency per dtype x {compute, memory},
   vector efficiency and overhead per layer / per forward on a random 70% of the configurations and
   report MAPE on the held-out 30%, averaged over ``--splits`` random splits; then fit on all of
   them. The headline analysis' spec is written as ``dev-cpu-1t.calibrated.yaml``; everything
   printed is also in ``results.json`` and ``predictions_*.csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# (shape, layers kept): widths from 576 to 4096; a few layers keep each run short on one core.
# tiny-llama (hidden 64) is almost pure fixed overhead: it pins down overhead_us.
SHAPES = [("random:smollm2-135m", 8), ("random:qwen2.5-0.5b", 4), ("random:llama-2-7b", 1), ("tiny-llama", 2)]
BATCHES = [1, 2, 4, 16]
PROMPT_LENS = [16, 64]
GEN_LEN = 8
DTYPES = ["bfloat16", "float32"]
THREADS, CLOCK = 1, "cpu"
SPEC = HERE / "dev-cpu-1t.yaml"

#: Analyses: which measured configurations each calibration uses. The first is the headline (bf16,
#: the dtype CPU inference runs in) and its fit is written as the calibrated spec; fp32 is
#: reported to show where the roofline stops describing this CPU (see README.md).
ANALYSES = {
    "bf16": lambda d: d["dtype"] == "bfloat16",
    "all": lambda d: d["dtype"].notna(),
    "fp32": lambda d: d["dtype"] == "float32",
    "bf16_batch<=4": lambda d: (d["dtype"] == "bfloat16") & (d["batch"] <= 4),
    "bf16_real_shapes": lambda d: (d["dtype"] == "bfloat16") & d["model"].str.startswith("random:"),
}


def probe_spec() -> None:
    from dataclasses import asdict

    from codesign.cost.probe import probe, spec_dict, write_spec

    res = probe(threads=THREADS, clock=CLOCK)
    (HERE / "probe_dev_cpu_1t.json").write_text(json.dumps(asdict(res), indent=1))
    spec = spec_dict(res, "dev-cpu-1t")
    spec["description"] = "the dev box CPU driven by one torch thread, timed by process CPU time"
    write_spec(spec, SPEC)


def measure_all(db: Path, repeats: int) -> None:
    from codesign.cost.measure import measure, parse_weight_format
    from codesign.store import ResultStore

    with ResultStore(db) as store:
        for model, layers in SHAPES:
            measure(model, [parse_weight_format("dense")], dtypes=DTYPES, batches=BATCHES, prompt_lens=PROMPT_LENS,
                    gen_len=GEN_LEN, layers=layers, repeats=repeats, threads=THREADS, clock=CLOCK, store=store)
            store.frame("measurements").to_csv(HERE / "measurements.csv", index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-measure", action="store_true", help="use the committed measurements.csv only")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--test-frac", type=float, default=0.3)
    ap.add_argument("--splits", type=int, default=10, help="random train/test splits to average over")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--statistic", default="median", help="per-configuration time: median or min of repeats")
    args = ap.parse_args()

    if not args.no_measure:
        if not SPEC.exists():
            probe_spec()
        t0 = time.time()
        measure_all(HERE / "measurements.db", args.repeats)
        print(f"measured in {time.time() - t0:.0f} s", file=sys.stderr)

    import numpy as np

    from codesign.cost.calibrate import calibrate, format_report, load_measurements

    meas = load_measurements(HERE / "measurements.csv", device="cpu", statistic=args.statistic)
    summary = {}
    for i, (name, sel) in enumerate(ANALYSES.items()):
        sub = meas[sel(meas)]
        if len(sub) < 4:
            continue
        print(f"\n=== {name}: {len(sub)} configurations ({sub['model'].nunique()} shapes, "
              f"batches {sorted(int(b) for b in sub['batch'].unique())}) ===")
        # Repeated random splits by configuration: one 30% split of a few dozen configurations is a
        # noisy estimate of held-out error, the mean over splits is not.
        runs = [calibrate(SPEC, sub, test_frac=args.test_frac, seed=args.seed + k, write=False, progress=False)
                for k in range(args.splits)]
        print(format_report(runs[0]))
        before = np.array([r.mape("test", "before") for r in runs])
        after = np.array([r.mape("test", "after") for r in runs])
        pre = np.array([r.mape("test", "after", "prefill_ms") for r in runs])
        dec = np.array([r.mape("test", "after", "tpot_ms") for r in runs])
        # The spec to use: fitted on every configuration of the analysis (validated above).
        full = calibrate(SPEC, sub, test_frac=0.0, write=(i == 0), out=HERE / "dev-cpu-1t.calibrated.yaml",
                         statistic=args.statistic, progress=False,
                         info={"heldout_mape_mean_over_splits": round(float(after.mean()), 2),
                               "heldout_mape_before_mean_over_splits": round(float(before.mean()), 2),
                               "splits": args.splits, "test_frac": args.test_frac,
                               "protocol": "experiments/calibration (1 thread, CPU-time clock)"})
        summary[name] = {"n_configs": len(sub), "shapes": sorted(sub["model"].unique().tolist()),
                         "batches": sorted(int(b) for b in sub["batch"].unique()), "splits": args.splits,
                         "test_frac": args.test_frac, "statistic": args.statistic,
                         "heldout_mape_before_mean": before.mean(), "heldout_mape_after_mean": after.mean(),
                         "heldout_mape_after_sd": after.std(), "heldout_mape_after_prefill": pre.mean(),
                         "heldout_mape_after_decode": dec.mean(),
                         "train_mape_after_full_fit": full.mape("train", "after"),
                         "fitted_on_all": {p.name: p.get(full.calibrated) for p in full.params},
                         "first_split": runs[0].summary()}
        runs[0].table.to_csv(HERE / f"predictions_{name.replace('<=', 'le')}.csv", index=False)
        print(f"held-out MAPE over {args.splits} splits: before {before.mean():.1f}%  after {after.mean():.1f}% "
              f"(sd {after.std():.1f}; prefill {pre.mean():.1f}%, decode {dec.mean():.1f}%)")
    (HERE / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    print("\nheld-out MAPE, mean over random train/test splits by configuration (before -> after):")
    for name, s in summary.items():
        print(f"  {name:17s} {s['heldout_mape_before_mean']:6.1f}% -> {s['heldout_mape_after_mean']:5.1f}%   "
              f"(prefill {s['heldout_mape_after_prefill']:.1f}%, decode {s['heldout_mape_after_decode']:.1f}%; "
              f"{s['n_configs']} configs, {len(s['shapes'])} shapes, batches {s['batches']})")
    print(f"wrote {HERE / 'dev-cpu-1t.calibrated.yaml'} (fitted on every configuration of '{next(iter(summary))}')")


if __name__ == "__main__":
    main()
