"""Calibrate the analytical hardware model on this CPU and report held-out error.

    python experiments/calibration/run.py                 # measure what is missing, fit, report
    python experiments/calibration/run.py --no-measure    # re-fit from the committed CSV only

1. Probe this CPU (bandwidth, matmul TFLOP/s per dtype) -> the starting spec (dev-cpu.yaml).
2. Measure prefill + decode of real model shapes with random weights, truncated to a few
   layers so they fit and run fast: >= 3 shapes x 3 batch sizes x 2 prompt lengths, dense
   fp32/bf16 and packed int weights (native dequantize path). Every measurement is stored in
   ``measurements.db`` (resumable) and exported to ``measurements.csv`` (committed).
3. Split configurations (shape x format x dtype x batch x prompt length) into train/test,
   fit efficiency per dtype x {compute, memory} + overhead per layer / per forward on train,
   print MAPE per held-out configuration before and after; write ``results.json`` and
   ``dev-cpu.calibrated.yaml`` here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# (shape, layers kept): widths from 576 to 4096; a few layers keep each run ~1 s on 2 cores.
SHAPES = [("random:smollm2-135m", 8), ("random:qwen2.5-0.5b", 4), ("random:llama-2-7b", 1)]
BATCHES = [1, 2, 4, 16]
PROMPT_LENS = [32, 128]
GEN_LEN = 8
DENSE_DTYPES = ["float32", "bfloat16"]
PACKED = ["w4g128", "w8g128"]  # timed with bfloat16 activations


def measure_all(db: Path, repeats: int, packed: bool, wait_quiet: float | None = 0.15) -> None:
    from codesign.cost.measure import measure, parse_weight_format
    from codesign.store import ResultStore

    with ResultStore(db) as store:
        for model, layers in SHAPES:
            measure(model, [parse_weight_format("dense")], dtypes=DENSE_DTYPES, batches=BATCHES,
                    prompt_lens=PROMPT_LENS, gen_len=GEN_LEN, layers=layers, repeats=repeats, store=store,
                    wait_quiet=wait_quiet, wait_timeout_s=90)
            if packed:
                try:
                    import codesign.quantize.qlinear  # noqa: F401
                except ImportError as exc:
                    print(f"skipping packed formats: {exc}", file=sys.stderr)
                    continue
                measure(model, [parse_weight_format(p) for p in PACKED], dtypes=["bfloat16"], batches=BATCHES,
                        prompt_lens=PROMPT_LENS, gen_len=GEN_LEN, layers=layers, repeats=repeats, store=store,
                        wait_quiet=wait_quiet, wait_timeout_s=90)
        store.frame("measurements").to_csv(HERE / "measurements.csv", index=False)


#: Analyses: which measured configurations each calibration uses. The first is the headline
#: (bf16 runtime, batch <= 4: the regime where a per-datatype roofline describes this CPU; see
#: README/notes); the others are reported to show where the model stops fitting.
ANALYSES = {
    "bf16_b<=4": lambda d: (d["dtype"] == "bfloat16") & (d["batch"] <= 4),
    "bf16_all_batches": lambda d: d["dtype"] == "bfloat16",
    "fp32_all_batches": lambda d: d["dtype"] == "float32",
    "all": lambda d: d["dtype"].notna(),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-measure", action="store_true", help="use the committed measurements.csv only")
    ap.add_argument("--packed", action="store_true", help="also measure packed int weights (slow on CPU)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--wait-quiet", type=float, default=0.15, help="max CPU busy fraction before each config")
    ap.add_argument("--test-frac", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--splits", type=int, default=10, help="random train/test splits to average over")
    ap.add_argument("--statistic", default="min", help="per-configuration time: min or median of repeats")
    ap.add_argument("--spec", default=str(ROOT / "hwmodels" / "specs" / "dev-cpu.yaml"))
    args = ap.parse_args()

    db = HERE / "measurements.db"
    if not args.no_measure:
        measure_all(db, args.repeats, packed=args.packed, wait_quiet=args.wait_quiet)

    from codesign.cost.calibrate import calibrate, format_report, load_measurements

    meas = load_measurements(HERE / "measurements.csv", device="cpu", statistic=args.statistic)
    import numpy as np

    summary = {}
    for i, (name, sel) in enumerate(ANALYSES.items()):
        sub = meas[sel(meas)]
        if len(sub) < 4:
            continue
        print(f"\n=== {name}: {len(sub)} configurations ({sub['model'].nunique()} shapes, "
              f"batches {sorted(sub['batch'].unique().tolist())}) ===")
        # Repeated random splits by configuration: one 30% split of a few dozen configurations is
        # a noisy estimate, the mean over splits is not.
        runs = [calibrate(args.spec, sub, test_frac=args.test_frac, seed=args.seed + k, write=False, progress=False)
                for k in range(args.splits)]
        print(format_report(runs[0]))
        before = np.array([r.mape("test", "before") for r in runs])
        after = np.array([r.mape("test", "after") for r in runs])
        pre = np.array([r.mape("test", "after", "prefill_ms") for r in runs])
        dec = np.array([r.mape("test", "after", "tpot_ms") for r in runs])
        # The spec to use: fitted on every configuration of the analysis (validated above).
        full = calibrate(args.spec, sub, test_frac=0.0, write=(i == 0), out=HERE / "dev-cpu.calibrated.yaml",
                         progress=False)
        summary[name] = {"n_configs": len(sub), "shapes": sorted(sub["model"].unique().tolist()),
                         "batches": sorted(int(b) for b in sub["batch"].unique()), "splits": args.splits,
                         "test_frac": args.test_frac, "statistic": args.statistic,
                         "heldout_mape_before_mean": before.mean(), "heldout_mape_after_mean": after.mean(),
                         "heldout_mape_after_sd": after.std(), "heldout_mape_after_prefill": pre.mean(),
                         "heldout_mape_after_decode": dec.mean(), "train_mape_after_full_fit": full.mape("train", "after"),
                         "fitted_on_all": {p.name: p.get(full.calibrated) for p in full.params},
                         "first_split": runs[0].summary()}
        runs[0].table.to_csv(HERE / f"predictions_{name.replace('<=', 'le')}.csv", index=False)
        print(f"held-out MAPE over {args.splits} splits: before {before.mean():.1f}%  after {after.mean():.1f}% "
              f"(sd {after.std():.1f}; prefill {pre.mean():.1f}%, decode {dec.mean():.1f}%)")
    (HERE / "results.json").write_text(json.dumps(summary, indent=1, default=float))
    print("\nheld-out MAPE, mean over random train/test splits by configuration (before -> after):")
    for name, s in summary.items():
        print(f"  {name:18s} {s['heldout_mape_before_mean']:6.1f}% -> {s['heldout_mape_after_mean']:5.1f}%   "
              f"(prefill {s['heldout_mape_after_prefill']:.1f}%, decode {s['heldout_mape_after_decode']:.1f}%; "
              f"{s['n_configs']} configs, {len(s['shapes'])} shapes, batches {s['batches']})")
    if "bf16_b<=4" in summary:
        print(f"wrote {HERE / 'dev-cpu.calibrated.yaml'} (fitted on every bf16_b<=4 configuration)")


if __name__ == "__main__":
    main()
