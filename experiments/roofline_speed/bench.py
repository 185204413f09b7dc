"""How many configurations per second the vectorized roofline model evaluates, against a plain
per-configuration Python loop over the same model, measured side by side in one run.

    python experiments/roofline_speed/bench.py [--quick]

Grid: specs x model shapes x weight bits x group sizes x activation bits x KV bits x batch x prompt
length x generation length. The loop evaluates a random sample of the same grid one configuration
per call (``evaluate_points`` with scalars, and the user-facing ``estimate()``), checks it agrees
with the grid, and extrapolates its rate. The grid is also timed under a runtime profile that
switches on the profile terms (per-tile dequantization, launch floor, framework time, overlap).
Results go to ``results.json`` next to this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import hwmodels
from hwmodels.roofline import evaluate_grid, evaluate_points

HERE = Path(__file__).resolve().parent
TARGET = 100_000
SHAPES = ["llama-2-13b", "llama-2-7b", "llama-3-8b", "mistral-7b", "qwen2.5-0.5b", "smollm2-135m"]
#: a profile with every term on: per-tile and per-pass dequantization, launch floors, host time,
#: partial overlap, a quantized lm head, expanded GQA, small-M compute efficiency
PROFILE = {"name": "bench-all-terms", "launch_floor_us": 3, "overlap": 0.8, "quantize_lm_head": True,
           "expands_gqa": True, "framework": {"per_forward_us": 50, "per_layer_us": 20},
           "formats": {"w4": "awq-gemm", "w2": "awq-gemv"},
           "kernels": {"awq-gemm": {"memory_efficiency": {"w4": 0.7}, "dequant": "per_tile", "tile_m": 16},
                       "awq-gemv": {"dequant": "per_tile", "tile_m": 1},
                       "torch-matmul": {"compute_m_half": 16},
                       "dequant-matmul": {"writes_dense_weights": True}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller grid and loop sample")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of the grid (best is kept)")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()

    specs = [hwmodels.load_spec(n) for n in ("h100-sxm", "a100-80gb", "l4", "jetson-orin", "mpu-hypo")]
    shapes = [hwmodels.load_shape(n) for n in SHAPES]
    axes = dict(wbits=[2, 3, 4, 8, 16], group_size=[32, 128, -1], abits=[8, 16], kvbits=[8, 16],
                batch=[1, 4, 16, 64], prompt_len=[128, 512, 2048, 8192], gen_len=[32, 128, 512])
    if args.quick:
        axes.update(batch=[1, 16], prompt_len=[512, 2048], gen_len=[128])

    t0 = time.perf_counter()
    grid = evaluate_grid(specs, shapes, **axes)  # first call also builds the spec/shape tables
    first_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        grid = evaluate_grid(specs, shapes, **axes)
        best = min(best, time.perf_counter() - t0)
    n = grid.size
    vec_rate = n / best
    profile = hwmodels.RuntimeProfile.model_validate(PROFILE)
    evaluate_grid(specs, shapes, runtime=profile, **axes)  # builds the profile's table
    best_rt = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        evaluate_grid(specs, shapes, runtime=profile, **axes)
        best_rt = min(best_rt, time.perf_counter() - t0)
    rt_rate = n / best_rt

    rng = np.random.default_rng(0)
    n_loop = 200 if args.quick else 1000
    picks = [tuple(int(rng.integers(k)) for k in grid.shape) for _ in range(n_loop)]
    names = list(grid.axes)

    def cfg(idx):
        return {k: grid.axes[k][i] for k, i in zip(names[2:], idx[2:])}

    t0 = time.perf_counter()
    loop_tpot = []
    for idx in picks:
        r = evaluate_points(specs, shapes, spec_index=idx[0], model_index=idx[1], **cfg(idx))
        loop_tpot.append(float(r["tpot_ms"]))
    loop_s = time.perf_counter() - t0
    loop_rate = n_loop / loop_s
    n_est = max(n_loop // 10, 20)
    t0 = time.perf_counter()
    for idx in picks[:n_est]:
        hwmodels.estimate(specs[idx[0]], shapes[idx[1]], **cfg(idx))
    est_rate = n_est / (time.perf_counter() - t0)
    grid_tpot = np.array([grid.data["tpot_ms"][idx] for idx in picks])
    max_rel_err = float(np.max(np.abs(grid_tpot - np.array(loop_tpot)) / grid_tpot))

    res = {
        "configs": n, "grid_shape": dict(zip(names, grid.shape)),
        "vectorized_s": best, "vectorized_first_call_s": first_s, "vectorized_configs_per_s": vec_rate,
        "vectorized_with_profile_s": best_rt, "vectorized_with_profile_configs_per_s": rt_rate,
        "loop_configs": n_loop, "loop_s": loop_s, "loop_configs_per_s": loop_rate,
        "estimate_loop_configs": n_est, "estimate_loop_configs_per_s": est_rate,
        "speedup_vs_loop": vec_rate / loop_rate, "speedup_vs_estimate_loop": vec_rate / est_rate,
        "target_configs_per_s": TARGET, "meets_target": vec_rate >= TARGET and rt_rate >= TARGET,
        "max_rel_diff_loop_vs_grid": max_rel_err,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "numpy": np.__version__, "cpus": os.cpu_count(),
                    "load_avg_1min": os.getloadavg()[0]},  # shared machines: read rates against it
        "quick": args.quick,
    }
    print(f"grid: {n:,} configurations {tuple(grid.shape)}")
    print(f"vectorized : {vec_rate:14,.0f} configs/s  ({best:.3f} s per grid, first call {first_s:.3f} s)")
    print(f"with profile: {rt_rate:13,.0f} configs/s  ({best_rt:.3f} s per grid, every runtime-profile term on)")
    print(f"python loop: {loop_rate:14,.0f} configs/s  (evaluate_points per configuration, {n_loop} sampled)")
    print(f"estimate() : {est_rate:14,.0f} configs/s  (with per-operator table, {n_est} sampled)")
    print(f"ratio vectorized / loop = {vec_rate / loop_rate:,.0f}x ; vs estimate() = {vec_rate / est_rate:,.0f}x")
    print(f"target >= {TARGET:,} configs/s: {'met' if res['meets_target'] else 'NOT met'}; "
          f"loop vs grid max rel. diff {max_rel_err:.1e}")
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
