"""The plug-in point for quantization methods: each method is one module that subclasses
:class:`QuantMethod` and decorates it with :func:`register_method`.

The sequential driver (:mod:`codesign.quantize.sequential`) walks the decoder layers and calls
``quantize_layer`` once per layer with that layer's calibration statistics; the method returns
integer weights (:class:`~codesign.quantize.grid.QuantizedWeight`), any float parameters it
changed (AWQ folds scales into norms) and per-linear errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from codesign.config import ConfigError
from codesign.quantize.options import BUILTIN, SUPPORTED_BITS, MethodOptions, check_options

if TYPE_CHECKING:  # annotations only: the registry and option checks work without torch
    import torch

    from codesign.quantize.grid import QuantizedWeight

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
    #: What is allowed, in words, for options whose type and range do not say it.
    hints: ClassVar[dict[str, str]] = {}

    def __init__(self, **options: Any):
        check_options(self.name, MethodOptions(self.defaults, self.ranges, self.needs_calibration, self.hints),
                      options)
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


def register_method(cls: type[QuantMethod]) -> type[QuantMethod]:
    _METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    """Registered method names (the built-ins without importing them, so without torch)."""
    return sorted(set(BUILTIN) | set(_METHODS))


def method_options(name: str) -> MethodOptions:
    """A method's options and whether it calibrates, torch-free for the built-ins."""
    if name in BUILTIN and name not in _METHODS:
        return BUILTIN[name]
    m = get_method(name)
    return MethodOptions(dict(m.defaults), dict(m.ranges), m.needs_calibration, dict(m.hints))


def check_method(name: str, options: dict[str, Any] | None = None) -> None:
    """A known method name with valid options, checked without building the method (no torch for
    the built-ins); errors name the method, the option, the value and what is allowed."""
    if name not in method_names():
        raise ConfigError(f"unknown quantization method {name!r} (allowed: {method_names()})")
    check_options(name, method_options(name), options or {})


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
