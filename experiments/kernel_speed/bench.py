"""Speed of every kernel that can run a quantized linear on this device, against the dense matmul
in the same dtype, measured side by side in one run.

    python experiments/kernel_speed/bench.py                      # 1 thread, process CPU-time clock
    python experiments/kernel_speed/bench.py --threads 2 --clock wall   # on a quiet box
    python experiments/kernel_speed/bench.py --quick              # one shape, M = 1 and 16

For each llama-2-7b linear shape (out x in: 4096x4096 q/k/v/o, 11008x4096 gate/up, 4096x11008 down)
and each M (decode batch 1/4/16, prefill chunk 128), every (weight format, kernel) pair the kernel
registry can run is timed (best of repeats after warm-up) and printed as the dense time divided by
the kernel's: > 1 is faster than dense. Formats: w4g128, w8g128 (the grouped 8-bit variant: per-group
the two-nibble int4 split, per-group
int8 calls, dequantize-per-call), w8gpc (per-channel: a different variant,
shown for what ``_weight_int8pack_mm`` alone does) and w3g128 (no 3-bit kernel exists: dequant-matmul).
The float32 rows show why ``auto`` does not pick torch's packed CPU ops outside bfloat16.
Results go to ``results.json`` next to this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from codesign.cost.timers import timer_for, torch_threads
from codesign.quantize.kernels import WeightLayout, get_kernel
from codesign.quantize.rtn import rtn_quantize

HERE = Path(__file__).resolve().parent
SHAPES = {"qkvo 4096x4096": (4096, 4096), "gate/up 11008x4096": (11008, 4096), "down 4096x11008": (4096, 11008)}
#: (format, bits, group, kernels compared)
FORMATS = [
    ("w4g128", 4, 128, ["aten-int4pack-cpu", "dequant-matmul"]),
    ("w8g128", 8, 128, ["aten-int4pack-x2-cpu", "aten-int8pack-grouped-cpu", "dequant-matmul"]),
    ("w8gpc", 8, -1, ["aten-int8pack-cpu"]),
    ("w3g128", 3, 128, ["dequant-matmul"]),
]


def best_ms(fn, clock: str, budget_s: float, min_reps: int = 3) -> float:
    """Best time of ``fn`` (ms) over at least ``min_reps`` runs or ``budget_s`` seconds, after one warm-up."""
    timer = timer_for("cpu", clock)
    fn()
    times, end = [], time.perf_counter() + budget_s
    while len(times) < min_reps or time.perf_counter() < end:
        timer.start()
        fn()
        times.append(timer.stop())
        if len(times) >= 50:
            break
    return min(times)


def bench_shape(out: int, width: int, ms: list[int], dtype: torch.dtype, clock: str, budget: float) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(out, width, generator=gen) * 0.02
    dense = w.to(dtype)
    rows = []
    packed = {}
    for fmt, bits, group, kernels in FORMATS:
        qw = rtn_quantize(w, bits, group, False)
        for k in kernels:
            cls = get_kernel(k)
            if cls.unsupported(WeightLayout.of(qw), dtype, "cpu") is None:
                packed[(fmt, k)] = cls.from_quantized(qw, dtype=dtype, device="cpu")
    with torch.inference_mode():
        for m in ms:
            x = torch.randn(m, width, generator=gen).to(dtype)
            base = best_ms(lambda: F.linear(x, dense), clock, budget)
            rows.append(dict(M=m, format="dense", kernel="torch-matmul", ms=base, speedup=1.0))
            for (fmt, k), mod in packed.items():
                t = best_ms(lambda: mod(x), clock, budget if k != "dequant-matmul" else 0.0, 1 if m > 16 else 2)
                rows.append(dict(M=m, format=fmt, kernel=k, ms=t, speedup=base / t))
    return rows


def print_table(title: str, rows: list[dict], ms: list[int]) -> None:
    print(f"\n{title}: dense ms, then dense/kernel (> 1 = faster than dense)")
    print(f"{'format':8} {'kernel':26}" + "".join(f"{'M=' + str(m):>9}" for m in ms))
    keys = list(dict.fromkeys((r["format"], r["kernel"]) for r in rows))
    for fmt, k in keys:
        vals = {r["M"]: r for r in rows if (r["format"], r["kernel"]) == (fmt, k)}
        cells = [f"{vals[m]['ms']:8.2f}m" if fmt == "dense" else f"{vals[m]['speedup']:8.3g}x" for m in ms]
        print(f"{fmt:8} {k:26}" + "".join(f"{c:>9}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"])
    ap.add_argument("--budget", type=float, default=0.5, help="seconds of repeats per measurement")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()
    ms = [1, 16] if args.quick else [1, 4, 16, 128]
    shapes = dict(list(SHAPES.items())[1:2]) if args.quick else SHAPES
    results = {"threads": args.threads, "clock": args.clock, "torch": torch.__version__,
               "cpu": platform.processor() or platform.machine(), "loadavg_before": os.getloadavg(), "runs": {}}
    with torch_threads(args.threads):
        for name, (out, width) in shapes.items():
            for dtype in (torch.bfloat16, torch.float32):
                if dtype == torch.float32 and name != "gate/up 11008x4096":
                    continue  # one shape shows the scalar fallbacks
                rows = bench_shape(out, width, ms if dtype == torch.bfloat16 else [1], dtype, args.clock,
                                   args.budget)
                title = f"{name} {str(dtype).removeprefix('torch.')}"
                print_table(title, rows, ms if dtype == torch.bfloat16 else [1])
                results["runs"][title] = rows
    results["loadavg_after"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\nload average before/after: {results['loadavg_before']} / {results['loadavg_after']}; -> {args.out}")


if __name__ == "__main__":
    main()
