"""Timers and peak-memory meters that pick the right mechanism for the device at hand.

GPU kernels run asynchronously, so a host clock around a CUDA call measures the launch, not the
work: CUDA timing uses device events (recorded on the stream, read after a synchronize). CPU
work is synchronous, so a monotonic host clock is exact there. Peak memory likewise: CUDA's
allocator tracks its own high-water mark; on CPU the process's resident-set high-water mark
(``VmHWM``, resettable through ``/proc/self/clear_refs`` on Linux) is the honest number.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Protocol


def device_kind(device: str) -> str:
    """``'cuda'`` for ``cuda`` / ``cuda:N``, ``'mps'``, else ``'cpu'``. Unknown kinds are errors."""
    kind = str(device).split(":", 1)[0].lower()
    if kind not in ("cpu", "cuda", "mps"):
        from codesign.config import ConfigError

        raise ConfigError(f"--device: {device!r} is not supported (allowed: cpu, cuda, cuda:N, mps)")
    return kind


class Timer(Protocol):
    """Start/stop timer; :meth:`stop` returns elapsed milliseconds of device work."""

    def start(self) -> None: ...

    def stop(self) -> float: ...


class WallTimer:
    """Monotonic host clock (``time.perf_counter``); exact for synchronous (CPU) work.

    ``sync`` is called before reading the clock, for devices without timing events (MPS).
    """

    def __init__(self, sync=None):
        self._sync = sync
        self._t0 = 0.0

    def start(self) -> None:
        if self._sync:
            self._sync()
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self._sync:
            self._sync()
        return (time.perf_counter() - self._t0) * 1e3


class CudaEventTimer:
    """CUDA events recorded on the current stream; ``stop`` synchronizes on the end event.

    Events are created at the first :meth:`start`, so choosing this timer needs no GPU.
    """

    def __init__(self, device: str = "cuda"):
        self.device = device
        self._start = self._end = None

    def start(self) -> None:
        import torch

        if self._start is None:
            if not torch.cuda.is_available():
                raise RuntimeError(f"CUDA timer for {self.device!r} but this torch has no CUDA device")
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
        self._start.record()

    def stop(self) -> float:
        self._end.record()
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end))


class CpuTimeTimer:
    """CPU time of this process (``time.process_time``): on a machine shared with other jobs, the
    time spent waiting for a core is not counted, only the work (memory-bandwidth interference
    remains). Exact only for single-threaded work: multi-threaded runtimes spin-wait, and the
    spinning counts as CPU time."""

    def __init__(self):
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.process_time()

    def stop(self) -> float:
        return (time.process_time() - self._t0) * 1e3


CLOCKS = ("wall", "cpu")


def timer_for(device: str, clock: str = "wall") -> Timer:
    """The timer for ``device``: CUDA events on CUDA, a synchronized wall clock on MPS, else a wall
    clock — or, with ``clock='cpu'`` on CPU, this process's CPU time (see :class:`CpuTimeTimer`)."""
    kind = device_kind(device)
    if clock not in CLOCKS:
        from codesign.config import ConfigError

        raise ConfigError(f"--clock: {clock!r} is not supported (allowed: {', '.join(CLOCKS)})")
    if clock == "cpu":
        if kind != "cpu":
            from codesign.config import ConfigError

            raise ConfigError(f"--clock cpu times CPU work; device {device!r} needs --clock wall")
        return CpuTimeTimer()
    if kind == "cuda":
        return CudaEventTimer(device)
    if kind == "mps":
        import torch

        return WallTimer(sync=torch.mps.synchronize)
    return WallTimer()


# -- peak memory ----------------------------------------------------------------------------------
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_high_water_bytes() -> int:
    """The process's peak resident set size so far (bytes)."""
    hwm = _vm_hwm_bytes()
    if hwm is not None:
        return hwm
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(ru if sys.platform == "darwin" else ru * 1024)  # macOS reports bytes, Linux KiB


def rss_bytes() -> int | None:
    """The process's resident set size now (bytes), or None where it cannot be read."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]  # macOS / Windows, when installed

        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001  no way to read it here
        return None


def reset_rss_high_water() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux ``clear_refs`` 5). False if unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so the next
    variant's resident set does not include memory the previous one freed but the allocator kept."""
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


class _RssSampler(threading.Thread):
    """Polls the resident set size every ``interval_s`` and keeps the maximum (where the OS has no
    resettable high-water mark, so a region's peak is still its own, not the process's so far)."""

    def __init__(self, interval_s: float = 0.002):
        super().__init__(daemon=True)
        self.interval_s, self.peak = interval_s, rss_bytes() or 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes() or 0)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return max(self.peak, rss_bytes() or 0)


class PeakMemory:
    """Peak memory over a region of code on ``device``: ``reset()`` at its start, ``peak_bytes()``
    at its end.

    CUDA -> ``max_memory_allocated`` since reset (tensors only). CPU -> the process's resident set
    (runtime, weights, activations) at its highest since reset: the kernel's ``VmHWM`` where it can
    be reset (Linux), else a sampling thread (``method`` ``'sample'``). ``resettable`` is False only
    where neither works and the peak is the process's so far. Call
    :func:`release_freed_memory` before ``reset()`` so freed memory of earlier work is not counted.
    """

    def __init__(self, device: str = "cpu", method: str = "auto"):
        self.kind = device_kind(device)
        self.device = device
        self.method = {"cuda": "allocator", "mps": "driver"}.get(self.kind, method)
        self.resettable = True
        self._sampler: _RssSampler | None = None

    def reset(self) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.kind == "cpu":
            self._stop_sampler()
            if self.method != "sample" and reset_rss_high_water():
                self.method = "hwm"
            elif rss_bytes() is not None:
                self.method, self._sampler = "sample", _RssSampler()
                self._sampler.start()
            else:
                self.resettable = False

    def _stop_sampler(self) -> int | None:
        s, self._sampler = self._sampler, None
        return s.stop() if s is not None else None

    def peak_bytes(self) -> int:
        if self.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.kind == "mps":
            import torch

            return int(torch.mps.driver_allocated_memory())
        sampled = self._stop_sampler()
        return sampled if sampled is not None else rss_high_water_bytes()


class torch_threads:
    """Run a block with ``n`` intra-op torch threads (None: leave as is); restores the previous
    count on exit, so a measurement never changes the caller's settings."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self) -> int:
        import torch

        self.prev = torch.get_num_threads()
        if self.n is not None:
            torch.set_num_threads(self.n)
        return torch.get_num_threads()

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.prev)


# -- a shared machine ------------------------------------------------------------------------------
def _cpu_times() -> tuple[float, float] | None:
    try:
        vals = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)  # idle + iowait
    return sum(vals), idle


def cpu_busy_fraction(interval_s: float = 0.5) -> float | None:
    """Fraction (0-1) of all CPUs busy over ``interval_s`` (Linux ``/proc/stat``); None elsewhere."""
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(interval_s)
    b = _cpu_times()
    total = b[0] - a[0]
    return None if total <= 0 else max(0.0, min(1.0, 1.0 - (b[1] - a[1]) / total))


def wait_for_quiet(max_busy: float, timeout_s: float = 120.0, interval_s: float = 0.5) -> float | None:
    """Block until the CPUs are at most ``max_busy`` busy (other work), or ``timeout_s`` passes.

    Timings on a machine shared with other jobs are only comparable when taken in quiet spells.
    Returns the last busy fraction seen (None where it cannot be read).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        busy = cpu_busy_fraction(interval_s)
        if busy is None or busy <= max_busy or time.monotonic() >= deadline:
            return busy


class OtherLoad:
    """CPU time other processes used while a region ran, as a fraction of all CPUs (Linux).

    ``(busy jiffies of the machine - CPU time of this process) / (wall time x CPUs)``: a timed run
    during which other work took a real share of the CPUs is not a clean measurement.
    ``fraction`` is None where ``/proc/stat`` cannot be read.
    """

    def __init__(self):
        self.fraction: float | None = None

    def __enter__(self) -> "OtherLoad":
        self._t = _cpu_times()
        self._self = sum(os.times()[:4])
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _cpu_times()
        if self._t is None or end is None:
            return
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        ncpu = os.cpu_count() or 1
        busy_s = ((end[0] - end[1]) - (self._t[0] - self._t[1])) / hz
        mine_s = sum(os.times()[:4]) - self._self
        wall = max(time.monotonic() - self._wall, 1e-9)
        self.fraction = max(0.0, min(1.0, (busy_s - mine_s) / (wall * ncpu)))
