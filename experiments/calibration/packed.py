"""Measured CPU rows of packed low-bit execution: what a runtime profile of this CPU is fitted to.

    python experiments/calibration/packed.py                      # 1 thread, CPU-time clock (a busy box)
    python experiments/calibration/packed.py --threads 2 --clock wall --tag quiet   # on a quiet box
    python experiments/calibration/packed.py --phase              # per-phase rows (prefill on a dense copy)

Two real shapes with random weights (llama-2-7b truncated to 2 decoder layers; qwen2.5-0.5b whole)
x dense / w8g128 / w4g128 in bfloat16 (the dtype torch's packed CPU kernels are vectorized for) x
batch 1, 4, 16 x prompt 16, 64 (8 decode steps each), then the {4, 8}-bit precision ensemble
(w4g128 + w8g128) under the sequential and batched schedules, run for real. The 8-bit format runs
on ``auto``'s kernel (``aten-int4pack-x2-cpu``) and again on the exact per-group
``aten-int8pack-grouped-cpu`` (``--kernel``), so a profile can be fitted per kernel. Every row names the
kernel that ran (``kernel``), the threads and clock, the truncated config, every repeat, the load
other processes put on the CPUs, and the per-member times of sequential ensembles.

It is ``codesign measure`` (the same function) into a resumable store ``packed[-TAG].db`` here;
rows go to ``packed_measurements[-TAG].csv`` (single variants) and
``packed_ensembles[-TAG].csv`` (ensembles), committed. The equivalent commands are printed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SHAPES = [("random:llama-2-7b", 2), ("random:qwen2.5-0.5b", None)]
FORMATS = ["dense", "w8g128", "w4g128"]
ENSEMBLE = "4,8"
#: (formats, kernel, prefill) runs: auto's choice with prefill on the packed kernel, the other 8-bit kernel
#: forced (the 4-bit member keeps auto's), and the per-phase default (``measure --prefill auto``: prefill a
#: dense GEMM on a dequantized copy, decode on the packed kernel) for the quantized formats and dense again
#: (so dense and per-phase rows share one load condition: phase_measurements.csv)
KERNEL_RUNS = [(FORMATS, "auto", "packed"), (["w8g128"], "aten-int8pack-grouped-cpu", "packed")]
PHASE_RUNS = [(["w4g128", "w8g128", "dense"], "auto", "auto")]
SCHEDULES = ["sequential", "batched"]
BATCHES, PROMPT_LENS, GEN_LEN, DTYPE = [1, 4, 16], [16, 64], 8, "bfloat16"


def command(model: str, layers: int | None, args, what: str) -> str:
    lay = f" --layers {layers}" if layers else ""
    return (f"codesign measure --model {model}{lay} {what} --dtype {DTYPE} "
            f"--batch {','.join(map(str, BATCHES))} --prompt-len {','.join(map(str, PROMPT_LENS))} "
            f"--gen-len {GEN_LEN} --repeats {args.repeats} --threads {args.threads} --clock {args.clock} "
            f"--store {args.store}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tag", default="", help="suffix of the store and CSVs (e.g. quiet)")
    ap.add_argument("--no-ensemble", action="store_true")
    ap.add_argument("--phase", action="store_true",
                    help="only the per-phase runs (--prefill auto) into phase.db -> phase_measurements.csv")
    args = ap.parse_args()
    suffix = f"-{args.tag}" if args.tag else ""
    args.store = HERE / f"{'phase' if args.phase else 'packed'}{suffix}.db"
    runs = PHASE_RUNS if args.phase else KERNEL_RUNS

    from codesign.cost.measure import measure, parse_ensemble, parse_weight_format
    from codesign.store import ResultStore

    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    t0 = time.time()
    with ResultStore(args.store) as store:
        for (formats, kernel, prefill), (model, layers) in itertools.product(runs, SHAPES):
            print(command(model, layers, args, f"--variant {','.join(formats)} --kernel {kernel} --prefill {prefill}"),
                  file=sys.stderr)
            measure(model, [parse_weight_format(f) for f in formats], dtypes=[DTYPE], batches=BATCHES,
                    prompt_lens=PROMPT_LENS, gen_len=GEN_LEN, layers=layers, repeats=args.repeats,
                    threads=args.threads, clock=args.clock, store=store, kernel=kernel, prefill=prefill)
        ens_runs = [] if args.no_ensemble or args.phase else KERNEL_RUNS
        for (_, kernel, prefill), (model, layers) in itertools.product(ens_runs, SHAPES):
            print(command(model, layers, args, f"--ensemble {ENSEMBLE} --schedule {','.join(SCHEDULES)} "
                                               f"--kernel {kernel} --prefill {prefill}"), file=sys.stderr)
            measure(model, ensembles=[parse_ensemble(ENSEMBLE)], schedules=SCHEDULES, dtypes=[DTYPE],
                    batches=BATCHES, prompt_lens=PROMPT_LENS, gen_len=GEN_LEN, layers=layers, repeats=args.repeats,
                    threads=args.threads, clock=args.clock, store=store, kernel=kernel, prefill=prefill)
        df = store.frame("measurements")
    single = df["schedule"] == "single"
    if args.phase:
        df[single].to_csv(HERE / f"phase_measurements{suffix}.csv", index=False)
    else:
        df[single].to_csv(HERE / f"packed_measurements{suffix}.csv", index=False)
        df[~single].to_csv(HERE / f"packed_ensembles{suffix}.csv", index=False)
    print(f"measured in {time.time() - t0:.0f} s; load average after: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
