"""The plug-in point for quantization methods: each method is one module that subclasses
:class:`QuantMethod` and decorates it with :func:`register_method`.

The sequential driver (:mod:`codesign.quantize.sequential`) walks the decoder layers and calls
``quantize_layer`` once per layer with that layer's calibration statistics; the method returns
integer weights (:class:`~codesign.quantize.grid.QuantizedWeight`), any float parameters it
changed (AWQ folds scales into norms) and per-linear errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from codesign.config import ConfigError
from codesign.quantize.grid import QuantizedWeight
from codesign.quantize.packing import SUPPORTED_BITS

_METHODS: dict[str, type["QuantMethod"]] = {}


@dataclass
class QuantConfig:
    """What to quantize to: bits, group size (-1 = per output channel), symmetry. Method options
    live on the :class:`QuantMethod` instance (``get_method(name, **options)``)."""

    bits: int
    group_size: int = 128
    sym: bool = False


@dataclass
class GroupStats:
    """Calibration statistics of the input shared by one linear group.

    ``hessian`` is ``E[x x^T]`` ``(in, in)`` (float32); ``act_abs_mean`` is ``E|x|`` per input
    channel ``(in,)``; ``n_tokens`` how many token rows went in. ``block_calls``: when the method
    asks for them (:attr:`QuantMethod.block_tokens`), the ``(args, kwargs)`` of the first calls of
    the group's block (:attr:`~codesign.quantize.walker.GroupSpec.block`), to replay it.
    """

    hessian: torch.Tensor
    act_abs_mean: torch.Tensor
    n_tokens: int
    block_calls: list[tuple[tuple, dict]] = field(default_factory=list)


@dataclass
class LayerResult:
    weights: dict[str, QuantizedWeight] = field(default_factory=dict)
    float_params: dict[str, torch.Tensor] = field(default_factory=dict)  # changed non-integer tensors
    errors: dict[str, float] = field(default_factory=dict)  # relative output (or weight) error per linear


class QuantMethod:
    """Base class of a quantization method (see module docstring)."""

    name: ClassVar[str] = ""
    needs_calibration: ClassVar[bool] = True
    #: Options a user may set (through ``VariantSpec.extra``) and their defaults; an option's type
    #: is its default's (bool, int or float).
    defaults: ClassVar[dict[str, Any]] = {}
    #: Inclusive range of each numeric option (checked with the type, before any work).
    ranges: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.defaults) - {"n_samples", "seq_len"})
        if unknown:
            raise ConfigError(f"method {self.name!r}: unknown option(s) {unknown} "
                              f"(allowed: {sorted(self.defaults) + ['n_samples', 'seq_len']})")
        for key, value in options.items():
            if key in self.defaults:
                check_option(self.name, key, value, self.defaults[key], self.ranges.get(key))
        self.options = {**self.defaults, **options}

    @property
    def sequential_groups(self) -> bool:
        """Whether the driver should quantize a layer's linear groups one at a time, each calibrated
        on activations through the groups already quantized (the ``true_sequential`` option)."""
        return bool(self.options.get("true_sequential", False))

    @property
    def block_tokens(self) -> int:
        """How many calibration tokens of each group's block inputs the driver should keep in
        :attr:`GroupStats.block_calls` (0: none; AWQ's block-output scale search wants some)."""
        return 0

    def quantize_layer(self, layer, stats: dict[str, GroupStats] | None, cfg: QuantConfig) -> LayerResult:
        raise NotImplementedError


def check_option(method: str, key: str, value: Any, default: Any, bounds: tuple[float, float] | None) -> None:
    """``value`` has the type of the option's default (a whole number for an int option; int or float
    for a float option) and lies in ``bounds``; else one error naming method, option, value, allowed."""
    import math

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
        raise ConfigError(f"method {method!r}: option {key} = {value!r} is not allowed (allowed: {kind}{rng})")


def register_method(cls: type[QuantMethod]) -> type[QuantMethod]:
    _METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    _load_builtins()
    return sorted(_METHODS)


def get_method(name: str, **options: Any) -> QuantMethod:
    """An instance of the method registered as ``name`` (rtn, gptq, awq, ...)."""
    _load_builtins()
    if name not in _METHODS:
        raise ConfigError(f"unknown quantization method {name!r} (allowed: {sorted(_METHODS)})")
    return _METHODS[name](**options)


def check_bits(bits: int) -> int:
    if bits not in SUPPORTED_BITS:
        raise ConfigError(f"bits = {bits!r} is not supported (allowed: {list(SUPPORTED_BITS)})")
    return bits


def check_group_size(group_size: int, widths: dict[str, int] | None = None) -> int:
    """-1 (per output channel) or a positive size that divides every linear's input width, or
    a multiple of 32 (then the last group of a wider layer is shorter, as in AutoGPTQ; needed
    for SmolLM2's 576-wide layers at group size 128)."""
    if group_size != -1 and (not isinstance(group_size, int) or group_size < 1):
        raise ConfigError(f"group_size = {group_size!r} is not allowed (allowed: -1 for per-channel, "
                          "or a positive size such as 32, 64, 128)")
    for name, w in (widths or {}).items():
        if w % 32:
            raise ConfigError(f"linear {name} has input width {w}, not a multiple of 32: it cannot be packed")
        if group_size != -1 and w % group_size and group_size % 32:
            divisors = [g for g in (8, 16, 32, 64, 128, 256) if w % g == 0]
            raise ConfigError(
                f"group_size = {group_size} does not divide the input width {w} of linear {name} "
                f"(allowed: -1, a divisor of {w} such as {divisors}, or a multiple of 32)")
    return group_size


def _load_builtins() -> None:
    # Importing the modules registers them; done lazily so `import codesign.quantize` stays cheap.
    from codesign.quantize import awq, gptq, rtn  # noqa: F401
