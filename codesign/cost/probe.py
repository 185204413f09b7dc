"""Probe this machine's CPU (or GPU) and write an accelerator spec for it in the hwmodels schema.

A user without a GPU still gets an analytical model of the box at hand: the probe measures what
the runtime actually achieves (not datasheet peaks), so the spec starts close and
``codesign calibrate`` only has to fit the gap between big kernels and an LLM's many small ones.

- memory bandwidth: a large tensor copy (bytes read + bytes written per second), several times
  the last-level cache so caches cannot serve it; the median of repeats.
- matmul throughput per datatype (fp32, bf16, fp16, int8 where the runtime supports them):
  square matmuls of growing size until one takes long enough to time well; the best size wins.
- elementwise (vector) throughput: ``addcmul`` on a cache-resident vector, the rate of norms,
  activations and weight dequantization.
- capacity from the OS (RAM) or the device (GPU memory), last-level cache size as ``sram_mb``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from codesign.paths import cache_dir

#: Datatype names as used in spec ``compute_tflops`` keys -> torch dtype attribute names.
PROBE_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}


@dataclass
class ProbeResult:
    """What the probe measured. Throughputs are achieved (not peak) numbers."""

    device: str
    device_name: str
    bandwidth_gbs: float
    capacity_gb: float
    tflops: dict[str, float]  # spec dtype key -> achieved TFLOP/s (TOP/s for int8)
    sram_mb: float | None = None
    vector_tflops: float | None = None
    threads: int = 1
    details: dict[str, Any] = field(default_factory=dict)


def cpu_name() -> str:
    """Marketing name of the CPU (from /proc/cpuinfo on Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _llc_mb() -> float | None:
    """Size of the largest CPU cache level in MiB (sysfs), or None when unknown."""
    best = None
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            txt = (d / "size").read_text().strip().upper()
        except OSError:
            continue
        mult = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(txt[-1:], None)
        val = float(txt[:-1]) * mult if mult else float(txt) / 2**20
        best = val if best is None else max(best, val)
    return best


def _ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        import psutil  # type: ignore[import-not-found]  # only on exotic platforms

        return psutil.virtual_memory().total / 1e9


def _time_ms(fn, device: str, repeats: int, clock: str = "wall") -> list[float]:
    from codesign.cost.timers import timer_for

    timer = timer_for(device, clock)
    out = []
    for _ in range(repeats):
        timer.start()
        fn()
        out.append(timer.stop())
    return out


def copy_bandwidth_gbs(size_mb: float = 512.0, repeats: int = 5, device: str = "cpu", clock: str = "wall") -> float:
    """Achieved memory bandwidth of a large copy in GB/s (read + write bytes over time)."""
    import torch

    n = int(size_mb * 2**20) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults must not be timed
    times = _time_ms(lambda: dst.copy_(src), device, repeats, clock)
    return 2 * n * 4 / (min(times) / 1e3) / 1e9


def vector_tflops(device: str = "cpu", n: int = 1 << 18, repeats: int = 7, clock: str = "wall") -> float:
    """Achieved elementwise throughput (TFLOP/s): ``addcmul`` (2 ops per element) on a
    cache-resident fp32 vector, the kind of work norms, activations and dequantization do."""
    import torch

    a, b, c = (torch.rand(n, device=device) for _ in range(3))
    out = torch.empty_like(a)

    def fn():
        for _ in range(20):
            torch.addcmul(c, a, b, out=out)

    fn()
    times = _time_ms(fn, device, repeats, clock)
    return 2 * 20 * n / (min(times) / 1e3) / 1e12


def matmul_tflops(dtype: str, device: str = "cpu", max_n: int = 4096, min_ms: float = 40.0,
                  repeats: int = 3, budget_s: float = 6.0, clock: str = "wall") -> float | None:
    """Best achieved matmul throughput (TFLOP/s) of square ``n x n @ n x n`` for one datatype.

    ``dtype`` is a spec key (fp32, bf16, fp16, int8). Sizes double from 128 until one product
    takes ``min_ms`` (long enough to time) or ``max_n`` / the time budget is reached.
    Returns None when the runtime has no kernel for that datatype on ``device``.
    """
    import torch

    tdt = getattr(torch, PROBE_DTYPES[dtype])
    t_end = time.perf_counter() + budget_s
    best, n = 0.0, 128
    while n <= max_n:
        try:
            if dtype == "int8":
                a = torch.randint(-64, 64, (n, n), dtype=tdt, device=device)
                b = torch.randint(-64, 64, (n, n), dtype=tdt, device=device)
                fn = lambda: torch._int_mm(a, b)  # noqa: E731  int8 x int8 -> int32, the real int GEMM
            else:
                a = torch.randn(n, n, device=device).to(tdt)
                b = torch.randn(n, n, device=device).to(tdt)
                fn = lambda: a @ b  # noqa: E731
            fn()  # warm-up: kernel selection, packing buffers
        except (RuntimeError, NotImplementedError):
            return None if best == 0.0 else best
        ms = min(_time_ms(fn, device, repeats, clock))
        best = max(best, 2 * n**3 / (ms / 1e3) / 1e12)
        if ms >= min_ms or time.perf_counter() > t_end:
            break
        n *= 2
    return best or None


def probe(device: str = "cpu", dtypes: list[str] | None = None, quick: bool = False, threads: int | None = None,
          clock: str = "wall", progress: bool = True) -> ProbeResult:
    """Measure bandwidth, vector and per-datatype matmul throughput of ``device``.

    ``threads`` sets torch's CPU thread count for the probe (default: torch's, i.e. all cores); the
    caller's count is restored afterwards. ``clock='cpu'`` times CPU time (single thread only; see
    ``codesign.cost.timers.CpuTimeTimer``).
    """
    from codesign.config import ConfigError
    from codesign.cost.timers import timer_for, torch_threads

    timer_for(device, clock)
    dtypes = dtypes or list(PROBE_DTYPES)
    unknown = [d for d in dtypes if d not in PROBE_DTYPES]
    if unknown:
        raise ConfigError(f"--dtypes: {unknown} not supported (allowed: {list(PROBE_DTYPES)})")
    with torch_threads(threads) as n:
        if clock == "cpu" and n != 1:
            raise ConfigError("--clock cpu needs --threads 1 (spin-waiting threads would count as work)")
        return _probe(device, dtypes, quick, clock, progress)


def _probe(device: str, dtypes: list[str], quick: bool, clock: str, progress: bool) -> ProbeResult:
    import torch
    from tqdm.auto import tqdm

    llc = _llc_mb() if not device.startswith("cuda") else None
    # The copy must dwarf the last-level cache, or the cache's bandwidth is measured.
    size_mb = 64.0 if quick else max(256.0, 8 * (llc or 32.0))
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        capacity = torch.cuda.get_device_properties(device).total_memory / 1e9
        size_mb = 64.0 if quick else 2048.0
    else:
        name, capacity = cpu_name(), _ram_gb()
    steps = tqdm(total=2 + len(dtypes), desc="probe", disable=not progress)
    bw = copy_bandwidth_gbs(size_mb, repeats=3 if quick else 7, device=device, clock=clock)
    steps.update()
    vec = vector_tflops(device, repeats=3 if quick else 7, clock=clock)
    steps.update()
    tflops: dict[str, float] = {}
    for d in dtypes:
        steps.set_postfix_str(d)
        v = matmul_tflops(d, device, max_n=512 if quick else 4096, min_ms=5.0 if quick else 40.0,
                          repeats=2 if quick else 3, budget_s=1.0 if quick else 6.0, clock=clock)
        if v:
            tflops[d] = v
        steps.update()
    steps.close()
    return ProbeResult(device=device, device_name=name, bandwidth_gbs=bw, capacity_gb=capacity, tflops=tflops,
                       sram_mb=llc, vector_tflops=vec, threads=torch.get_num_threads(),
                       details={"copy_mb": size_mb, "torch": torch.__version__, "quick": quick, "clock": clock})


def spec_dict(result: ProbeResult, name: str = "host-cpu") -> dict[str, Any]:
    """The probe as an accelerator spec mapping in the hwmodels schema.

    Efficiency starts at 1.0: the throughputs are already what big kernels achieve here, so the
    factors calibration fits are the LLM's shortfall against them.
    """
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    spec: dict[str, Any] = {
        "name": name,
        "description": f"{result.device_name} ({result.threads} threads), measured by codesign probe",
        "memory": {"capacity_gb": round(result.capacity_gb, 2), "bandwidth_gbs": round(result.bandwidth_gbs, 2)},
        "compute_tflops": {k: round(v, 4) for k, v in result.tflops.items()},
        "efficiency": {"default": {"compute": 1.0, "memory": 1.0}},
        "overhead_us": {"per_layer": 0.0, "per_forward": 0.0},
        "sources": [
            f"measured by `codesign probe` on {when}: {result.device_name}, {result.threads} thread(s), "
            f"torch {result.details.get('torch')} (copy of {result.details.get('copy_mb'):.0f} MiB for bandwidth; "
            "best square matmul per datatype for compute)"
        ],
    }
    if result.vector_tflops:
        spec["vector_tflops"] = round(result.vector_tflops, 5)
    if result.sram_mb:
        spec["sram_mb"] = round(result.sram_mb, 2)
    return spec


def default_spec_path(name: str = "host-cpu") -> Path:
    """Where user specs live: ``$CODESIGN_CACHE/specs/<name>.yaml`` (hwmodels.load_spec finds them)."""
    return cache_dir() / "specs" / f"{name}.yaml"


def write_spec(spec: dict[str, Any], path: str | Path) -> Path:
    """Write a spec mapping as YAML (atomically: a half-written spec must never be loadable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(yaml.safe_dump(spec, sort_keys=False))
    tmp.replace(path)
    return path
