"""A variant catalogue: the grid of quantized variants a study runs on, as a YAML file.

Example (``configs/catalogue_default.yaml``)::

    model: smollm2-135m-instruct
    methods: [rtn, gptq, awq]
    bits: [3, 4, 8]
    group_sizes: [128]
    include_dense: true
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from codesign.config import StrictModel, load_config
from codesign.models import DEFAULT_MODEL
from codesign.quantize.options import SUPPORTED_BITS
from codesign.records import VariantSpec


class Catalogue(StrictModel):
    """Cross product methods × bits × group sizes × seeds (calibrated methods only; RTN has no
    randomness and gets seed 0), plus the dense model when ``include_dense``."""

    model: str = Field(DEFAULT_MODEL, description="model name or path (see codesign.models.load_model)")
    methods: list[str] = Field(default_factory=lambda: ["rtn", "gptq", "awq"])
    bits: list[int] = Field(default_factory=lambda: [3, 4, 8])
    group_sizes: list[int] = Field(default_factory=lambda: [128])
    seeds: list[int] = Field(default_factory=lambda: [0])
    sym: bool = False
    calib: str = Field("default", description="calibration source: 'default', a text file or data-set path")
    n_samples: int = Field(32, ge=1, le=1_000_000, description="calibration samples")
    seq_len: int = Field(256, ge=2, le=1_000_000, description="tokens per calibration sample")
    include_dense: bool = True
    options: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="per-method options, e.g. {gptq: {act_order: true}}")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        from codesign.models.loading import check_model_name

        return check_model_name(v)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        from codesign.quantize.registry import method_names

        if not v:
            raise ValueError(f"no methods given: nothing to quantize (allowed: one or more of {method_names()})")
        bad = [m for m in v if m not in method_names()]
        if bad:
            raise ValueError(f"unknown method(s) {bad} (allowed: {method_names()})")
        return v

    @field_validator("bits")
    @classmethod
    def _known_bits(cls, v: list[int]) -> list[int]:
        bad = [b for b in v if b not in SUPPORTED_BITS]
        if bad:
            raise ValueError(f"unsupported bits {bad} (allowed: {list(SUPPORTED_BITS)})")
        return v

    @field_validator("group_sizes")
    @classmethod
    def _group_sizes(cls, v: list[int]) -> list[int]:
        bad = [g for g in v if g != -1 and g < 1]
        if bad:
            raise ValueError(f"bad group size(s) {bad} (allowed: -1 for per-channel, or positive sizes)")
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from codesign.quantize.registry import check_method, method_names

        for m, opts in v.items():
            if m not in method_names():
                raise ValueError(f"options for unknown method {m!r} (allowed: {method_names()})")
            check_method(m, opts)  # names, types and ranges, torch-free
        return v

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Catalogue":
        return load_config(cls, path)

    def variants(self) -> list[VariantSpec]:
        """Every variant of the catalogue, dense first."""
        from codesign.quantize.registry import method_options
        from codesign.quantize.variant import DEFAULT_N_SAMPLES, DEFAULT_SEQ_LEN

        out = [VariantSpec(model=self.model)] if self.include_dense else []
        for method in self.methods:
            m = method_options(method)
            calibrated = m.needs_calibration
            # Every option is recorded resolved (defaults filled in): the id is the same whether a
            # default is spelled out or not, and changes if a default ever changes, so a cached
            # variant made under an old default is never mistaken for a new one.
            extra = {**m.defaults, **self.options.get(method, {})}
            if calibrated and self.n_samples != DEFAULT_N_SAMPLES:
                extra["n_samples"] = self.n_samples
            if calibrated and self.seq_len != DEFAULT_SEQ_LEN:
                extra["seq_len"] = self.seq_len
            for bits in self.bits:
                for g in self.group_sizes:
                    for seed in (self.seeds if calibrated else [0]):
                        out.append(VariantSpec(model=self.model, method=method, bits=bits, group_size=g,
                                               sym=self.sym, calib=self.calib if calibrated else "none",
                                               seed=seed, extra=tuple(sorted(extra.items()))))
        return out
