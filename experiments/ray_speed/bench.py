"""Wall-clock speed-up of 2 Ray workers over in-process on a 4-member evaluation.

The work is what ``codesign eval`` / ``codesign explore`` do for members without stored answers:
quantize each member (fresh checkpoint cache per arm, so both arms quantize) and evaluate it on
the same seeded items. Arms:

- ``inprocess``: :class:`~codesign.explore.executor.InProcessExecutor`, members one after another
  in this process (torch uses every core for each member's matmuls);
- ``ray``: :class:`~codesign.explore.executor.RayExecutor` on a local ``ray.init(num_cpus=2)``,
  one task per member, 1 CPU (1 torch thread) each; workers return rows, this process writes them.

Both write their own store; the answers are compared (they should agree). Ray's start-up
(``ray.init`` plus the workers' first imports) is paid once per command: it is reported apart and
the ratio is given with and without it. Wall clocks: parallelism is the point, so CPU time would
hide it; CPU seconds are printed beside them (this process's; for Ray, the sum over the workers'
jobs) so a difference in work shows. On a shared machine the load (``uptime``) is printed and
recorded: when the load exceeds the core count, the Ray arm's extra processes also win a larger
share of the contended CPU, which inflates its wall-clock speed-up.

    python experiments/ray_speed/bench.py --limit 16 --out results_threads-default.json
    python experiments/ray_speed/bench.py --limit 16 --inprocess-threads 1 --out results_threads-1.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def fresh_cache(root: Path, name: str) -> Path:
    """An empty variant cache that shares the converted base models (slow to make, read-only)."""
    from codesign.paths import cache_dir

    path = root / name
    path.mkdir()
    (path / "models").symlink_to(cache_dir() / "models", target_is_directory=True)
    return path


def run_arm(executor, jobs, store_path: Path) -> tuple[float, float, list]:
    """Wall seconds, CPU seconds (this process, or the Ray workers' jobs) and the stored answers."""
    from codesign.store import ResultStore

    with ResultStore(store_path) as store:
        t0, c0 = time.perf_counter(), time.process_time()
        done = executor.run(jobs, store)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if executor.name == "ray":
            cpu = sum(r.cpu_s for r in done)
        rows = store.conn.execute("SELECT variant_id, task, item_id, label FROM outputs ORDER BY 1, 2, 3").fetchall()
    return wall, cpu, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--members", default="rtn-w3g128,rtn-w4g128,rtn-w8g128,dense",
                    help="4 members: short names as codesign eval --variants takes them")
    ap.add_argument("--tasks", default="ethics,advglue")
    ap.add_argument("--limit", type=int, default=16, help="items per task (seeded subsample)")
    ap.add_argument("--mode", default="loglik")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="Ray CPUs (one member per CPU)")
    ap.add_argument("--inprocess-threads", type=int, default=None,
                    help="torch threads of the in-process arm (default: torch's, one per core); 1 removes the "
                         "cost of 2-thread torch on an oversubscribed CPU (spinning threads), like Ray's workers")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="results.json", help="file name under experiments/ray_speed/")
    args = ap.parse_args()

    import torch

    from codesign.evaluate.cli import parse_variants
    from codesign.explore.executor import InProcessExecutor, MemberJob
    from codesign.paths import data_dir

    if args.inprocess_threads:
        torch.set_num_threads(args.inprocess_threads)
    specs = parse_variants(args.members, args.model)
    data = str(data_dir(args.data_dir).resolve())
    jobs = [MemberJob(s.to_dict(), tuple(args.tasks.split(",")), args.mode, args.limit, 0, data, progress=False,
                      batch_size=args.batch_size) for s in specs]
    load_before = uptime()
    print(f"{len(specs)} members ({args.members}) x tasks {args.tasks} x {args.limit} items, {args.mode}; "
          f"{os.cpu_count()} CPUs; {load_before}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["CODESIGN_CACHE"] = str(fresh_cache(tmp, "inprocess"))
        local_s, local_cpu, local_rows = run_arm(InProcessExecutor(), jobs, tmp / "inprocess.db")
        print(f"inprocess: {local_s:.1f} s")
        os.environ["CODESIGN_CACHE"] = str(fresh_cache(tmp, "ray"))  # Ray's workers inherit it
        import logging

        import ray

        from codesign.explore.executor import RayExecutor

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        threads = ray.get([ray.remote(num_cpus=1)(_warm).remote() for _ in range(args.workers)])  # start workers
        startup_s = time.perf_counter() - t0
        ray_s, ray_cpu, ray_rows = run_arm(RayExecutor(), jobs, tmp / "ray.db")
        ray.shutdown()
    load_after = uptime()
    agree = sum(a == b for a, b in zip(local_rows, ray_rows)) / max(len(local_rows), 1)
    res = dict(members=args.members, tasks=args.tasks, limit=args.limit, mode=args.mode, workers=args.workers,
               inprocess_s=round(local_s, 2), ray_s=round(ray_s, 2), ray_startup_s=round(startup_s, 2),
               inprocess_cpu_s=round(local_cpu, 2), ray_workers_cpu_s=round(ray_cpu, 2),
               speedup=round(local_s / ray_s, 3), speedup_with_startup=round(local_s / (ray_s + startup_s), 3),
               inprocess_torch_threads=torch.get_num_threads(), ray_worker_torch_threads=threads,
               answers=len(local_rows), answers_agree=agree, cpus=os.cpu_count(), load_before=load_before,
               load_after=load_after, python=platform.python_version(), ray=ray.__version__)
    print(f"{'arm':<14}{'wall s':>9}{'CPU s':>9}")
    print(f"{'inprocess':<14}{local_s:>9.1f}{local_cpu:>9.1f}")
    print(f"{'ray x' + str(args.workers):<14}{ray_s:>9.1f}{ray_cpu:>9.1f}   (+ {startup_s:.1f} s Ray start-up; "
          "CPU: the workers' jobs)")
    print(f"speed-up ray/inprocess: {res['speedup']:.2f}x ({res['speedup_with_startup']:.2f}x with start-up); "
          f"answers agree {100 * agree:.1f}% of {len(local_rows)}")
    print(f"load after: {load_after}  (shared machine: other jobs ran meanwhile)")
    out = HERE / args.out
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


def _warm() -> int:
    """A worker's first imports (what a member job needs first); its torch thread count."""
    import importlib

    import torch

    importlib.import_module("codesign.evaluate")
    return torch.get_num_threads()


if __name__ == "__main__":
    main()
