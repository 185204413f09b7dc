"""Accelerator specs: one YAML file per accelerator, validated into :class:`AcceleratorSpec`.

Units are in the field names (``capacity_gb`` is 10^9 bytes, ``bandwidth_gbs`` 10^9 bytes/s,
``compute_tflops`` 10^12 ops/s dense, ``overhead_us`` microseconds). ``codesign hw --schema`` prints
the JSON Schema; ``hwmodels/README.md`` documents every field.

Specs are found by path, by file stem or ``name`` among user specs in ``$CODESIGN_CACHE/specs/``
(first, so a measured or calibrated spec overrides a built-in one), then among the built-in
``hwmodels/specs/*.yaml``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from codesign.config import ConfigError, load_config
from hwmodels.dtypes import parse_dtype
from hwmodels.registry import FiniteModel, YamlKind
from hwmodels.energy import (DRAM_PJ_PER_BYTE, SRAM_PJ_PER_BYTE, VECTOR_PJ_PER_OP, default_mm2_per_mac,
                             default_pj_per_op, energy_scale)

BUILTIN_DIR = Path(__file__).resolve().parent / "specs"

# Physical sense: far above any accelerator built or planned (a bigger value is a typo or an
# overflow, e.g. `1e300`, and would turn a roofline term into zero or make capacity meaningless).
MAX_CAPACITY_GB = 1e6  # 1 PB of device memory
MAX_BANDWIDTH_GBS = 1e6  # 1 PB/s
MAX_TFLOPS = 1e6  # an exaop/s per device

#: Fraction of the fp16 matrix peak that vector units reach when a spec gives no ``vector_tflops``.
DEFAULT_VECTOR_FRACTION = 1 / 8


def _check_dtype_keys(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out[parse_dtype(k).name] = v  # raises ValueError naming allowed datatypes
    return out


class Memory(FiniteModel):
    """Off-chip memory (DRAM/HBM)."""

    capacity_gb: float = Field(gt=0, le=MAX_CAPACITY_GB, description="usable capacity, 10^9 bytes")
    bandwidth_gbs: float = Field(gt=0, le=MAX_BANDWIDTH_GBS, description="peak bandwidth, 10^9 bytes/s")
    kind: str | None = Field(None, description="technology, e.g. HBM3, LPDDR5 (documentation only)")


class Efficiency(FiniteModel):
    """Fraction of peak that real kernels reach, per bound."""

    compute: float = Field(0.7, gt=0, le=1, description="fraction of compute_tflops achieved")
    memory: float = Field(0.8, gt=0, le=1, description="fraction of bandwidth_gbs achieved")


class Overhead(FiniteModel):
    """Fixed time per forward pass, independent of work (kernel launches, framework)."""

    per_layer: float = Field(0.0, ge=0, le=1e6, description="microseconds per decoder layer per forward pass")
    per_forward: float = Field(0.0, ge=0, le=1e6, description="microseconds per forward pass")


class Energy(FiniteModel):
    """Energy per op and per byte; anything missing comes from the Horowitz 45 nm table (hwmodels.energy)."""

    pj_per_op: dict[str, float] = Field(default_factory=dict,
                                        description="pJ per op (FLOP) per datatype; key 'vector' for vector units")
    pj_per_byte_dram: float | None = Field(None, gt=0, description="pJ per byte of off-chip traffic")
    pj_per_byte_sram: float | None = Field(None, gt=0, description="pJ per byte of on-chip buffer traffic")

    @field_validator("pj_per_op")
    @classmethod
    def _keys(cls, v: dict[str, float]) -> dict[str, float]:
        vec = {k: x for k, x in v.items() if k == "vector"}
        out = _check_dtype_keys({k: x for k, x in v.items() if k != "vector"}) | vec
        for k, x in out.items():
            if not x > 0:
                raise ValueError(f"pj_per_op.{k} = {x!r} must be > 0")
        return out


class Area(FiniteModel):
    """Silicon area of the compute fabric, for co-design questions."""

    mm2_per_mac: dict[str, float] = Field(default_factory=dict,
                                          description="mm^2 per MAC unit per datatype (default: Horowitz table scaled)")
    mm2_per_mb_sram: float | None = Field(None, ge=0, description="mm^2 per MB of on-chip SRAM")
    fixed_mm2: float = Field(0.0, ge=0, description="area of everything else counted (control, NoC, PHYs)")

    @field_validator("mm2_per_mac")
    @classmethod
    def _keys(cls, v: dict[str, float]) -> dict[str, float]:
        out = _check_dtype_keys(v)
        for k, x in out.items():
            if not x > 0:
                raise ValueError(f"mm2_per_mac.{k} = {x!r} must be > 0")
        return out


class Knob(FiniteModel):
    """A tunable spec parameter for design-space exploration: a range or a list of values."""

    min: float | None = None
    max: float | None = None
    values: list[float] | None = Field(None, description="discrete choices (instead of min/max)")
    log_scale: bool = Field(False, description="explore on a log scale")
    integer: bool = Field(False, description="values are rounded to integers")

    @model_validator(mode="after")
    def _range(self) -> Knob:
        if self.values is None and (self.min is None or self.max is None):
            raise ValueError("a knob needs either 'values' or both 'min' and 'max'")
        if self.values is not None and not self.values:
            raise ValueError("'values' must not be empty")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) > max ({self.max})")
        if self.log_scale and (self.min is not None and self.min <= 0):
            raise ValueError("log_scale knobs need min > 0")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        if self.values is not None:
            return float(min(self.values)), float(max(self.values))
        return float(self.min), float(self.max)  # type: ignore[arg-type]

    def check(self, name: str, value: float, spec: str) -> float:
        lo, hi = self.bounds
        if self.values is not None and not any(math.isclose(value, x) for x in self.values):
            raise ConfigError(f"spec {spec!r}: knob {name} = {value!r} is not allowed (allowed: {self.values})")
        if not lo - 1e-9 * abs(lo) <= value <= hi + 1e-9 * abs(hi):
            raise ConfigError(f"spec {spec!r}: knob {name} = {value!r} is out of range (allowed: {lo} .. {hi})")
        return float(round(value)) if self.integer else float(value)


_SIMPLE_KNOBS = {"bandwidth_gbs", "capacity_gb", "sram_mb", "clock_ghz", "tdp_w", "vector_tflops"}
_PREFIX_KNOBS = ("mac_units_", "compute_tflops_")


class AcceleratorSpec(FiniteModel):
    """One accelerator. See hwmodels/README.md for the meaning of every field."""

    name: str = Field(min_length=1)
    description: str = ""
    memory: Memory
    compute_tflops: dict[str, float] = Field(
        default_factory=dict,
        description="dense peak per datatype, 10^12 ops/s; a missing datatype means no native unit")
    vector_tflops: float | None = Field(
        None, gt=0, le=MAX_TFLOPS, description="non-matrix throughput (norms, softmax, dequantization); default 1/8 of the fp16 peak")
    sram_mb: float | None = Field(None, ge=0, le=1e7, description="on-chip SRAM/L2 (MB) that keeps activations on chip")
    tdp_w: float | None = Field(None, gt=0, le=1e7, description="thermal design power (W), for reporting")
    idle_w: float | None = Field(None, ge=0, le=1e7, description="static power (W) charged over the run time")
    process_nm: float | None = Field(None, gt=0, le=1e4, description="process node, for energy/area scaling")
    clock_ghz: float | None = Field(None, gt=0, le=1e3, description="clock of the MAC arrays (with mac_units)")
    mac_units: dict[str, int] = Field(default_factory=dict,
                                      description="MAC units per datatype; with clock_ghz defines compute_tflops")
    dequant_ops_per_weight: float = Field(
        4.0, ge=0, le=1e4, description="vector ops to convert one weight to the unit's datatype (unpack, convert, zero, scale)")
    energy: Energy = Field(default_factory=Energy)
    area: Area | None = None
    efficiency: dict[str, Efficiency] = Field(
        default_factory=lambda: {"default": Efficiency()},
        description="per datatype (or 'default', 'vector'): fraction of peak reached")
    overhead_us: Overhead = Field(default_factory=Overhead)
    knobs: dict[str, Knob] = Field(default_factory=dict, description="tunable ranges for exploration")
    applied_knobs: dict[str, float] = Field(default_factory=dict, description="knob values applied by with_knobs")
    sources: list[str] = Field(default_factory=list, description="where the numbers come from (URLs)")
    notes: str | None = None
    calibration: dict[str, Any] | None = Field(None, description="written by `codesign calibrate`")

    @field_validator("compute_tflops")
    @classmethod
    def _compute_keys(cls, v: dict[str, float]) -> dict[str, float]:
        out = _check_dtype_keys(v)
        for k, x in out.items():
            if not (isinstance(x, (int, float)) and 0 < x <= MAX_TFLOPS):
                raise ValueError(f"compute_tflops.{k} = {x!r} is not allowed (allowed: a finite number > 0 and <= "
                                 f"{MAX_TFLOPS:g}; leave a datatype out if unsupported)")
        return out

    @field_validator("mac_units")
    @classmethod
    def _mac_keys(cls, v: dict[str, int]) -> dict[str, int]:
        out = _check_dtype_keys(v)
        for k, x in out.items():
            if not 0 <= x <= 1e12:
                raise ValueError(f"mac_units.{k} = {x!r} is not allowed (allowed: 0 to 1e12)")
        return out

    @field_validator("efficiency")
    @classmethod
    def _eff_keys(cls, v: dict[str, Efficiency]) -> dict[str, Efficiency]:
        special = {k: x for k, x in v.items() if k in ("default", "vector")}
        out = _check_dtype_keys({k: x for k, x in v.items() if k not in special}) | special
        out.setdefault("default", Efficiency())
        return out

    @model_validator(mode="after")
    def _derive_and_check(self) -> AcceleratorSpec:
        if self.mac_units:
            if self.clock_ghz is None:
                raise ValueError("mac_units needs clock_ghz (peak = 2 * mac_units * clock_ghz)")
            derived = {k: 2 * n * self.clock_ghz / 1e3 for k, n in self.mac_units.items() if n > 0}
            for k, x in derived.items():
                if k not in self.compute_tflops:
                    self.__dict__["compute_tflops"][k] = x
        if not self.compute_tflops:
            raise ValueError("compute_tflops is empty: give at least one datatype's peak (e.g. fp16: 100)")
        for name in self.knobs:
            if name in _SIMPLE_KNOBS:
                continue
            prefix = next((p for p in _PREFIX_KNOBS if name.startswith(p)), None)
            if prefix is None:
                raise ValueError(f"unknown knob {name!r} (allowed: {sorted(_SIMPLE_KNOBS)}, "
                                 f"mac_units_<dtype>, compute_tflops_<dtype>)")
            parse_dtype(name[len(prefix):])
            if prefix == "mac_units_" and self.clock_ghz is None:
                raise ValueError(f"knob {name!r} needs clock_ghz")
        return self

    # ---- derived quantities ------------------------------------------------------------------
    @property
    def float16_tflops(self) -> float:
        for k in ("fp16", "bf16", "fp32"):
            if k in self.compute_tflops:
                return self.compute_tflops[k]
        return max(self.compute_tflops.values())

    @property
    def vector_tflops_eff(self) -> float:
        """Vector throughput used by the model (explicit, else a fraction of the fp16 peak)."""
        return self.vector_tflops or self.float16_tflops * DEFAULT_VECTOR_FRACTION

    def efficiency_for(self, dtype: str) -> Efficiency:
        return self.efficiency.get(dtype) or self.efficiency["default"]

    def pj_per_op(self, dtype: str) -> float:
        """pJ per op in ``dtype`` (or 'vector'): the spec's value, else the scaled Horowitz default."""
        if dtype in self.energy.pj_per_op:
            return self.energy.pj_per_op[dtype]
        if dtype == "vector":
            return VECTOR_PJ_PER_OP * energy_scale(self.process_nm)
        return default_pj_per_op(dtype, self.process_nm)

    @property
    def pj_per_byte_dram(self) -> float:
        return self.energy.pj_per_byte_dram or DRAM_PJ_PER_BYTE

    @property
    def pj_per_byte_sram(self) -> float:
        return self.energy.pj_per_byte_sram or SRAM_PJ_PER_BYTE * energy_scale(self.process_nm)

    def mac_count(self, dtype: str) -> float | None:
        """MAC units of ``dtype``: declared, or derived from its peak and the clock."""
        if dtype in self.mac_units:
            return float(self.mac_units[dtype])
        if self.clock_ghz and dtype in self.compute_tflops:
            return self.compute_tflops[dtype] * 1e3 / (2 * self.clock_ghz)
        return None

    def unit_area_mm2(self, dtype: str) -> float | None:
        """Area of all ``dtype`` MAC units; ``None`` without area data or a MAC count."""
        if self.area is None:
            return None
        n = self.mac_count(dtype)
        if n is None:
            return None
        per = self.area.mm2_per_mac.get(dtype) or default_mm2_per_mac(dtype, self.process_nm)
        return n * per

    def base_area_mm2(self) -> float | None:
        """Area counted for every configuration: fixed + SRAM."""
        if self.area is None:
            return None
        sram = (self.sram_mb or 0.0) * (self.area.mm2_per_mb_sram or 0.0)
        return self.area.fixed_mm2 + sram

    def area_for(self, dtypes: list[str] | set[str]) -> float | None:
        """Area of the compute fabric a set of datatypes needs: their MAC units + fixed + SRAM."""
        base = self.base_area_mm2()
        if base is None:
            return None
        total = base
        for d in sorted(set(dtypes)):
            if d == "vector":
                continue
            a = self.unit_area_mm2(d)
            if a is None:
                return None
            total += a
        return total

    # ---- exploration ------------------------------------------------------------------------
    def with_knobs(self, **values: float) -> AcceleratorSpec:
        """A copy with knob values applied (each must be declared in ``knobs`` and within range).

        ``bandwidth_gbs``/``capacity_gb`` set memory; ``sram_mb``, ``clock_ghz``, ``tdp_w``,
        ``vector_tflops`` set those fields; ``mac_units_<dtype>`` sets a unit count and its peak
        (2 * units * clock); ``compute_tflops_<dtype>`` sets a peak directly. Changing ``clock_ghz``
        rescales every peak derived from ``mac_units``.
        """
        data = self.model_dump()
        applied = dict(self.applied_knobs)
        macs = dict(self.mac_units)
        for name, raw in values.items():
            knob = self.knobs.get(name)
            if knob is None:
                raise ConfigError(f"spec {self.name!r}: knob {name!r} is not declared "
                                  f"(declared: {sorted(self.knobs) or 'none'})")
            v = knob.check(name, float(raw), self.name)
            applied[name] = v
            if name in ("bandwidth_gbs", "capacity_gb"):
                data["memory"][name] = v
            elif name in _SIMPLE_KNOBS:
                data[name] = v
            elif name.startswith("mac_units_"):
                macs[parse_dtype(name[len("mac_units_"):]).name] = int(round(v))
            else:
                data["compute_tflops"][parse_dtype(name[len("compute_tflops_"):]).name] = v
        clock = data.get("clock_ghz")
        if macs and clock:
            for k, n in macs.items():
                if n > 0:
                    data["compute_tflops"][k] = 2 * n * clock / 1e3
                else:
                    data["compute_tflops"].pop(k, None)
        data["mac_units"] = macs
        data["applied_knobs"] = applied
        try:
            return AcceleratorSpec.model_validate(data)
        except Exception as exc:  # a knob combination that breaks the spec (e.g. no unit left)
            raise ConfigError(f"spec {self.name!r} with knobs {values}: {exc}") from None


def json_schema() -> dict[str, Any]:
    """JSON Schema of a spec file (``codesign hw --schema``)."""
    schema = AcceleratorSpec.model_json_schema()
    schema["$id"] = "https://codesign/schemas/accelerator-spec.json"
    schema["title"] = "codesign accelerator spec"
    return schema


SPECS = YamlKind("accelerator spec", "specs", BUILTIN_DIR)


def user_spec_dir() -> Path:
    return SPECS.user_dir()


def list_specs() -> list[str]:
    """Names usable with ``--spec``: file stems of user specs and built-in specs."""
    return SPECS.names()


def spec_path(name_or_path: str | Path) -> Path:
    """The YAML file of a spec name or path (see module docstring for the search order)."""
    return SPECS.find(name_or_path)


def load_spec(name_or_path: str | Path | AcceleratorSpec) -> AcceleratorSpec:
    """Load a spec by path or name (see module docstring for the search order)."""
    if isinstance(name_or_path, AcceleratorSpec):
        return name_or_path
    return load_config(AcceleratorSpec, spec_path(name_or_path))
