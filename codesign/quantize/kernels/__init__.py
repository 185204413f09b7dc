"""Kernels: how a quantized linear's matmul runs, chosen by device, activation dtype and weight format.

One module per device family registers its kernels (:func:`register_kernel`); to add a kernel,
subclass :class:`PackedLinear` in one of them (or a new module listed in ``_BUILTIN``).

========================== ======= ========= =====================================================
kernel                     device  widths    what runs
========================== ======= ========= =====================================================
``aten-int4pack-cpu``      cpu     4         ``aten._weight_int4pack_mm_for_cpu`` (groups 32-256)
``aten-int8pack-cpu``      cpu     8         ``aten._weight_int8pack_mm`` (one group per row)
``aten-int4pack-x2-cpu``   cpu     8         two ``_weight_int4pack_mm_for_cpu`` calls (nibbles)
``aten-int8pack-grouped-cpu`` cpu  8         ``aten._weight_int8pack_mm`` once per group, summed
``aten-int4pack-cuda``     cuda    4         tinygemm ``aten._weight_int4pack_mm`` (bfloat16)
``marlin-gptqmodel``       cuda    4, 8 sym  GPTQModel's Marlin kernel (``gptqmodel`` installed)
``dequant-matmul``         any     2-8       unpack + dequantize every call, then ``F.linear``
========================== ======= ========= =====================================================

Prefill calls (several positions per sequence) run on the kernel too, or with ``prefill='dequantized'``
(``auto`` for the CPU kernels, whose GEMV ops are 2.5-5x slower than a dense GEMM at 128 rows) as a dense
GEMM on a copy of the dequantized weight kept for it: :attr:`KernelPlan.prefill_label` names what ran.

``auto`` picks the first kernel (by priority) for the device that runs the layout in the activation
dtype; ``dequant-matmul`` runs everything, so 2/3/5/6-bit weights run there and the
measurement row says so. Dense rows name :data:`DENSE_KERNEL` (``torch-matmul``).
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from codesign.config import ConfigError
from codesign.quantize.kernels.base import (DENSE_KERNEL, _KERNELS, PREFILL_PATHS, PackedLinear, WeightLayout,
                                            register_kernel, sorted_by_group)

__all__ = ["DENSE_KERNEL", "KernelPlan", "PREFILL_PATHS", "PackedLinear", "WeightLayout", "get_kernel",
           "kernel_names", "pack_model", "register_kernel", "select_kernel", "sorted_by_group"]

#: Modules that register the built-in kernels (imported on first use).
_BUILTIN = ("codesign.quantize.kernels.cpu", "codesign.quantize.kernels.cuda", "codesign.quantize.qlinear")
FALLBACK = "dequant-matmul"


def _registry() -> dict[str, type[PackedLinear]]:
    for mod in _BUILTIN:
        importlib.import_module(mod)
    return _KERNELS


def kernel_names() -> list[str]:
    """Every registered kernel, in ``auto`` order."""
    return [k.name for k in sorted(_registry().values(), key=lambda k: (k.priority, k.name))]


def get_kernel(name: str) -> type[PackedLinear]:
    reg = _registry()
    if name not in reg:
        raise ConfigError(f"--kernel: {name!r} is not a kernel (allowed: auto, {', '.join(kernel_names())})")
    return reg[name]


def select_kernel(layout: WeightLayout, device: str | torch.device, dtype: torch.dtype,
                  kernel: str = "auto") -> tuple[type[PackedLinear], str | None]:
    """The kernel to run ``layout`` with, and why a better one could not (None when the choice is
    the requested or the first-priority one).

    ``auto``: the first kernel by priority that runs the layout on ``device`` in ``dtype``. A named kernel: that one, or where it cannot run the layout (a 4-bit member of an
    ensemble whose 8-bit kernel is forced) ``auto``'s choice, with the reason.
    """
    reg = _registry()
    if kernel != "auto":
        k = get_kernel(kernel)
        why = k.unsupported(layout, dtype, device)
        return (k, None) if why is None else (select_kernel(layout, device, dtype)[0], why)
    kind, reasons = torch.device(device).type, []
    for name in kernel_names():
        k = reg[name]
        why = k.unsupported(layout, dtype, device)
        if why is None:
            return k, ("; ".join(reasons) or None) if k.name == FALLBACK else None
        if k.device in ("any", kind) and layout.bits in k.bits:
            reasons.append(why)
    raise AssertionError("dequant-matmul runs every layout")  # pragma: no cover


@dataclass
class KernelPlan:
    """Which kernel runs each quantized linear of a model (after :func:`pack_model`)."""

    kernels: dict[str, str] = field(default_factory=dict)  # linear name -> kernel name
    reasons: dict[str, str] = field(default_factory=dict)  # linear name -> why it fell back
    prefill: dict[str, str] = field(default_factory=dict)  # linear name -> what multiplies its prefill calls

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(self.kernels.values()).most_common())

    @property
    def label(self) -> str:
        """The kernels that ran, most linears first, joined by ``+`` (a measurement row's ``kernel``)."""
        return "+".join(self.counts) or DENSE_KERNEL

    @property
    def prefill_label(self) -> str:
        """Like :attr:`label`, for prefill calls (``torch-matmul`` where a dequantized copy runs them)."""
        if not self.prefill:
            return self.label
        return "+".join(dict(Counter(self.prefill.values()).most_common())) or DENSE_KERNEL


def pack_model(model: nn.Module, *, device: str | torch.device, dtype: torch.dtype, kernel: str = "auto",
               progress: bool = False, prefill: str = "packed") -> KernelPlan:
    """Swap every ``QuantLinear`` of ``model`` (packed checkpoint weights) for the module of the
    kernel :func:`select_kernel` picks, in place, prefill calls on ``prefill`` (:data:`PREFILL_PATHS`).
    The lm head and other float layers stay dense."""
    from tqdm.auto import tqdm

    from codesign.quantize.qlinear import QuantLinear, set_module

    plan = KernelPlan()
    names = [n for n, m in model.named_modules() if isinstance(m, QuantLinear)]
    for name in tqdm(names, desc="pack", unit="linear", disable=not progress):
        mod = model.get_submodule(name)
        qw = mod.quantized()
        k, why = select_kernel(WeightLayout.of(qw), device, dtype, kernel)
        if k is not QuantLinear:
            mod = k.from_quantized(qw, mod.bias, dtype=dtype, device=device, prefill=prefill)
            set_module(model, name, mod)
        plan.kernels[name] = k.name
        plan.prefill[name] = mod.prefill_kernel
        if why:
            plan.reasons[name] = why
    return plan
