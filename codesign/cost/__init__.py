"""Cost: measured runs on the device at hand, and calibration of the analytical hardware model (hwmodels/) against them.

- :mod:`codesign.cost.timers`    device-aware timers (CUDA events / monotonic clock) and peak-memory meters
- :mod:`codesign.cost.probe`     this machine's bandwidth and per-datatype throughput -> an accelerator spec
- :mod:`codesign.cost.measure`   timed prefill + KV-cached decode of real shapes -> the store's ``measurements``
- :mod:`codesign.cost.calibrate` least-squares fit of a spec's efficiency and overheads, held-out MAPE

Names are imported lazily so ``codesign --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "timer_for": "timers", "PeakMemory": "timers", "cpu_busy_fraction": "timers", "wait_for_quiet": "timers",
    "probe": "probe", "spec_dict": "probe", "write_spec": "probe", "ProbeResult": "probe",
    "measure": "measure", "time_generation": "measure", "build_model": "measure", "parse_weight_format": "measure",
    "WeightFormat": "measure", "Measurement": "measure", "time_schedule": "measure", "parse_ensemble": "measure",
    "calibrate": "calibrate", "load_measurements": "calibrate", "format_report": "calibrate",
    "CalibrationResult": "calibrate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'codesign.cost' has no attribute {name!r}")
    return getattr(importlib.import_module(f"codesign.cost.{mod}"), name)
