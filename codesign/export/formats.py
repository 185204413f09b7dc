"""The serving formats ``codesign export`` writes, and what each can hold.

One entry per ``--format`` value; the layouts themselves (packing, field names) live with their
readers in :mod:`codesign.quantize.formats`, whose ``WRITE_BITS`` / ``WRITE_GROUP_SIZES`` say what
the loaders of that layout accept. Checks run in two steps so a bad choice fails before work:
:meth:`ExportFormat.spec_problems` from the variant's spec alone, :meth:`ExportFormat.weight_problems`
on its stored integers (zero points, group order, shapes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codesign.config import ConfigError
from codesign.records import VariantSpec


@dataclass(frozen=True)
class ExportFormat:
    name: str
    layout: str  # "autogptq" or "autoawq"
    summary: str

    @property
    def _module(self):
        if self.layout == "autogptq":
            from codesign.quantize.formats import autogptq as mod
        else:
            from codesign.quantize.formats import autoawq as mod
        return mod

    @property
    def bits(self) -> tuple[int, ...]:
        return self._module.WRITE_BITS

    @property
    def group_sizes(self) -> tuple[int, ...]:
        return self._module.WRITE_GROUP_SIZES

    def allowed(self) -> str:
        """What the format holds, for error messages and ``--help``."""
        gs = ", ".join("-1 (per channel)" if g == -1 else str(g) for g in self.group_sizes)
        return f"bits {list(self.bits)}, group sizes [{gs}], sym or asym"

    def spec_problems(self, spec: VariantSpec) -> list[str]:
        """Why ``spec`` cannot be written in this format, judged from the spec alone."""
        out = []
        if spec.bits not in self.bits:
            out.append(f"bits={spec.bits} (allowed in {self.name}: {list(self.bits)})")
        if spec.group_size not in self.group_sizes:
            out.append(f"group_size={spec.group_size} (allowed in {self.name}: {list(self.group_sizes)})")
        if self.layout == "autoawq" and permutes_groups(spec):
            out.append("GPTQ with act-order and group_aware=false permutes the groups, which AWQ cannot store "
                       "(allowed: contiguous groups, as GPTQ's default group-aware order keeps them; or export "
                       "as gptq)")
        return out

    def weight_problems(self, weights: dict) -> list[str]:
        """Why the stored integers ``{name: QuantizedWeight}`` cannot be written in this format."""
        if self.layout == "autogptq":
            return self._module.writable_problems(weights, self.name)
        return self._module.writable_problems(weights)

    def write(self, folder: Path, weights: dict, floats: dict, config: dict, meta: dict,
              damp_percent: float) -> None:
        if self.layout == "autogptq":
            self._module.write_autogptq(folder, weights, floats, config, self.name, meta, damp_percent)
        else:
            self._module.write_autoawq(folder, weights, floats, config)


def permutes_groups(spec: VariantSpec) -> bool:
    """Whether the variant's group index is a permutation (GPTQ's free act-order, AutoGPTQ's
    ``desc_act``), which only the GPTQ layout stores."""
    from codesign.quantize.registry import get_method
    from codesign.quantize.variant import method_options

    if spec.method != "gptq" or spec.group_size == -1:
        return False
    opts = get_method(spec.method, **method_options(spec)).options
    return bool(opts["act_order"]) and not bool(opts["group_aware"])


EXPORT_FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("gptq", "autogptq", "AutoGPTQ layout, v1 zero points: transformers+GPTQModel, AutoGPTQ, vLLM, TGI"),
    ExportFormat("gptq_v2", "autogptq", "AutoGPTQ layout, zero points as is (any asymmetric grid): GPTQModel, "
                                        "vLLM with GPTQv2 support"),
    ExportFormat("awq", "autoawq", "AutoAWQ GEMM layout: transformers, AutoAWQ, vLLM, TGI, GPTQModel"),
)}


def get_format(name: str) -> ExportFormat:
    if name not in EXPORT_FORMATS:
        allowed = "; ".join(f"{f.name} ({f.allowed()})" for f in EXPORT_FORMATS.values())
        raise ConfigError(f"--format: {name!r} is not an export format (allowed: {allowed})")
    return EXPORT_FORMATS[name]
