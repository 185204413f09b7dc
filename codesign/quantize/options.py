"""What can be checked about a quantization request without torch: the supported bit widths and
every built-in method's options (defaults, types, ranges) and whether it calibrates.

The method classes (:mod:`codesign.quantize.rtn`, ``gptq``, ``awq``) take their ``defaults`` and
``ranges`` from here, so a catalogue or ``-O METHOD.KEY=VALUE`` is validated before torch is
imported, and the classes and the checks cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Bit widths the packed format stores (:mod:`codesign.quantize.packing`).
SUPPORTED_BITS = (2, 3, 4, 5, 6, 8)
#: Options every calibrated method takes besides its own.
CALIBRATION_OPTIONS = ("n_samples", "seq_len")


@dataclass(frozen=True)
class MethodOptions:
    """A method's options: defaults (an option's type is its default's) and numeric ranges."""

    defaults: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    needs_calibration: bool = True
    #: What is allowed, in words, where the type and range alone would not say it.
    hints: dict[str, str] = field(default_factory=dict)


BUILTIN = {
    "rtn": MethodOptions(needs_calibration=False),
    # Defaults measured on SmolLM2-135M: see the notes in codesign/quantize/gptq.py.
    "gptq": MethodOptions(
        defaults={"damp": 0.05, "act_order": True, "group_aware": True, "block_size": 128, "true_sequential": True,
                  "mse": 2.0, "hessian_range": True},
        ranges={"damp": (0.0, 1.0), "block_size": (1, 1 << 16), "mse": (0.0, 100.0)},
        hints={"mse": "0 for min/max, or a norm > 0 such as 2 or 2.4"}),
    # block_topk 8 / block_tokens 4096: see experiments/quantize_bench (held-out layer error vs cost).
    "awq": MethodOptions(
        defaults={"n_grid": 20, "clip": True, "max_shrink": 0.5, "duo_scaling": True, "block_loss": True,
                  "block_tokens": 4096, "block_topk": 8},
        ranges={"n_grid": (1, 10_000), "max_shrink": (0.0, 1.0), "block_tokens": (1, 10_000_000),
                "block_topk": (1, 1_000_000)}),
}


def check_option(method: str, key: str, value: Any, default: Any, bounds: tuple[float, float] | None,
                 hint: str | None = None) -> None:
    """``value`` has the type of the option's default (a whole number for an int option; int or float
    for a float option) and lies in ``bounds``; else one error naming method, option, value, allowed."""
    import math

    from codesign.config import ConfigError

    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    else:
        return
    in_range = ok and (bounds is None or isinstance(value, bool) or bounds[0] <= value <= bounds[1])
    if not (ok and in_range):
        rng = f" from {bounds[0]:g} to {bounds[1]:g}" if bounds is not None else ""
        raise ConfigError(f"{method} option {key} = {value!r} is not allowed (allowed: {hint or kind + rng})")


def check_options(method: str, spec: MethodOptions, options: dict[str, Any]) -> None:
    """Every option of ``options`` is one of the method's, of its type and in its range."""
    from codesign.config import ConfigError

    unknown = sorted(set(options) - set(spec.defaults) - set(CALIBRATION_OPTIONS))
    if unknown:
        raise ConfigError(f"method {method!r}: unknown option(s) {unknown} "
                          f"(allowed: {sorted(spec.defaults) + list(CALIBRATION_OPTIONS)})")
    for key, value in options.items():
        if key in spec.defaults:
            check_option(method, key, value, spec.defaults[key], spec.ranges.get(key), spec.hints.get(key))
