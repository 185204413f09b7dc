"""The explore study config: what to search (ensembles, schedules, specs, knobs), what to optimise,
under which constraints, with which optimizer.

A study config is a YAML file validated by :func:`load_study_config` (``configs/explore_default.yaml``
is the embedded default). Unknown keys, unknown objective names, an empty catalogue or knob ranges
with ``low > high`` fail at load time with one message naming the file, the field, the value and
what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from codesign import objectives
from codesign.config import ConfigError, StrictModel, load_config, read_mapping, validate_config
from codesign.paths import PROJECT_ROOT
from codesign.records import DEFAULT_PROTOCOL

#: The tasks a study evaluates unless its config says otherwise (any registered task is allowed).
ALL_TASKS = ("mmlu", "advglue", "fairness", "ethics", "ood")


def _registered_tasks() -> list[str]:
    # The evaluation task registry is the one list of tasks (of every protocol): a task added
    # there (one module) is usable in studies without touching this file.
    return [d.task for d in objectives.dimensions()]


def _check_task_names(names: list[str], what: str) -> list[str]:
    known = _registered_tasks()
    bad = [t for t in names if t not in known]
    if bad:
        raise ValueError(f"{what} {bad} (allowed: {', '.join(known)})")
    return names


ALGORITHMS = ("qlognehvi", "qlognparego")
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "explore_default.yaml"
_PACKAGED_DEFAULT = Path(__file__).with_name("explore_default.yaml")


class ObjectiveConfig(StrictModel):
    """One objective of :mod:`codesign.objectives`; ``direction`` defaults to the registry's."""

    name: str
    direction: Literal["max", "min"] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        objectives.get_objective(v)  # ValueError naming the allowed objectives
        return v

    @model_validator(mode="after")
    def _default_direction(self) -> "ObjectiveConfig":
        if self.direction is None:
            self.direction = objectives.get_objective(self.name).direction
        return self

    @property
    def source(self) -> str:
        """``quality`` (from stored answers) or ``cost`` (from the hardware model)."""
        return objectives.get_objective(self.name).source

    @property
    def sign(self) -> float:
        """+1 for maximised objectives, -1 for minimised (the optimizer always maximises sign*value)."""
        return 1.0 if self.direction == "max" else -1.0


class Constraints(StrictModel):
    """Feasibility constraints (not objectives); all are checked on the analytical cost model."""

    fits: bool = Field(True, description="the ensemble's weights + KV cache must fit the accelerator memory")
    max_tpot_ms: float | None = Field(None, gt=0, description="latency SLO: time per output token (ms)")
    max_energy_per_token_j: float | None = Field(None, gt=0, description="energy budget per token (J)")
    max_area_mm2: float | None = Field(None, gt=0, description="silicon area budget (mm^2)")
    max_peak_memory_gb: float | None = Field(None, gt=0, description="memory budget (GB)")
    min_trust: float | None = Field(None, ge=0, le=100, description="minimum trust score (0-100)")

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.model_dump().items() if v not in (None, False)]
        return ", ".join(parts) or "none"

    def bounds(self) -> list[tuple[str, str, float]]:
        """The numeric constraints as ``(objective, "<=" | ">=", bound)``, e.g. ``("tpot_ms", "<=", 20.0)``."""
        out = []
        for key, value in self.model_dump().items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                prefix, objective = key.split("_", 1)
                out.append((objective, "<=" if prefix == "max" else ">=", float(value)))
        return out


class KnobRange(StrictModel):
    """Range of one accelerator knob explored continuously (``integer`` rounds on decode)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "KnobRange":
        if self.low > self.high:
            raise ValueError(f"low={self.low} is above high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log-scaled knob needs low > 0, got low={self.low}")
        return self


class Workload(StrictModel):
    """Inference workload the cost model is evaluated on."""

    # upper bounds: far beyond any deployment (the hw command's own flags use the same)
    batch: int = Field(1, ge=1, le=1_000_000)
    prompt_len: int = Field(512, ge=1, le=100_000_000)
    gen_len: int = Field(128, ge=1, le=100_000_000)
    abits: int = Field(16, ge=2, le=32)
    kvbits: int = Field(16, ge=2, le=32)


class OptimizerConfig(StrictModel):
    """BoTorch settings plus the study budget."""

    algorithm: Literal["qlognehvi", "qlognparego"] = "qlognehvi"
    q: int = Field(4, ge=1, le=64, description="proposals per BO iteration (batch size)")
    n_init: int = Field(8, ge=2, description="initial Sobol design size")
    iterations: int = Field(6, ge=0, description="BO iterations after the initial design")
    member_eval_penalty: float = Field(
        1.0, ge=0, description="log-acquisition penalty per not-yet-evaluated member (cost-aware BO)")
    discrete_max: int = Field(
        20000, ge=1, description="enumerate the discrete space (optimize_acqf_discrete) when it is at most this big")
    mixed_max_combos: int = Field(
        16, ge=1, description="use optimize_acqf_mixed when knobs exist and at most this many discrete combinations")
    knob_samples: int = Field(16, ge=1, description="knob settings sampled per discrete combination in the pool")
    num_restarts: int = Field(4, ge=1)
    raw_samples: int = Field(128, ge=1)
    mc_samples: int = Field(32, ge=8, description="quasi-MC samples of the acquisition")
    exact_costs: bool = Field(
        True, description="discrete spaces: the acquisition reads the cost objectives' exact analytical values "
                          "instead of a GP of them, and the GP models the quality objectives over the members "
                          "(false: one GP of every objective over the whole encoding)")


class UncertaintyConfig(StrictModel):
    """The paired item bootstrap behind every interval and Pareto probability a study shows."""

    resamples: int = Field(200, ge=0, description="item resamples (0: no intervals)")
    level: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals")


class StudyConfig(StrictModel):
    """A co-design study: search space, objectives, constraints and optimizer."""

    name: str = Field("default", description="study name in the result store (resume = same name + same config)")
    model: str = Field("smollm2-135m-instruct", description="base model of every catalogue variant")
    shape: str | None = Field(None, description="hwmodels shape (name or config.json) for the cost model; "
                                                "inferred from the model when omitted")
    catalogue: dict[str, Any] | str = Field(
        ..., description="codesign.quantize.Catalogue fields inline, or the path of a catalogue YAML")
    tasks: list[str] = Field(default_factory=lambda: list(ALL_TASKS))
    subtasks: dict[str, list[str]] = Field(
        default_factory=dict, description="per task, the subtasks to evaluate (default: all), e.g. "
                                          "{mmlu: [0shot]} to skip the long 5-shot prompts")
    limit: int | None = Field(16, ge=1, description="items per task (seeded subsample); null = all")
    seed: int = 0
    mode: Literal["generate", "loglik"] = "loglik"
    protocol: str = Field(DEFAULT_PROTOCOL, description="evaluation protocol of the members' answers: "
                                                        "decodingtrust (DecodingTrust's prompts, parsing and "
                                                        "formulas) or codesign")
    policy: str | None = Field(None, description="scoring policy of the protocol (default its own: decodingtrust; "
                                                 "codesign: answered or strict)")
    items: Literal["sample", "stored"] = Field(
        "sample", description="score members on the seeded subsample of `limit` items per task (sample), "
                              "or on every item already stored for the task (stored)")
    data_dir: str | None = None
    objectives: list[ObjectiveConfig] = Field(..., min_length=2, max_length=4)
    trust_dimensions: list[str] | None = Field(
        None, description="trust dimensions (objective or task names) the `trust` objective averages; "
                          "default: adv, ethics, ood among `tasks` (fairness and MMLU are reported, not averaged)")
    constraints: Constraints = Field(default_factory=Constraints)
    ref_point: dict[str, float] | None = Field(
        None, description="hypervolume reference point per objective, in the objective's own units; "
                          "inferred from the evaluated points when omitted")
    specs: list[str] = Field(default_factory=lambda: ["h100-sxm"], min_length=1)
    runtime: str | None = Field(None, description="runtime profile (software stack) every configuration is priced "
                                                  "under: hwmodels/runtimes name or YAML path; null = no stack terms")
    schedules: list[str] = Field(default_factory=lambda: ["sequential"], min_length=1)
    knobs: dict[str, KnobRange | None] = Field(
        default_factory=dict, description="accelerator knobs to explore; null takes the range from the spec")
    min_members: int = Field(1, ge=1)
    max_members: int = Field(3, ge=1, description="largest ensemble size")
    workload: Workload = Field(default_factory=Workload)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    methods: list[Literal["bo", "random", "nsga2", "exhaustive"]] = Field(
        default_factory=lambda: ["bo"], description="search methods to run (same budget for bo/random/nsga2)")
    uncertainty: UncertaintyConfig = Field(default_factory=UncertaintyConfig)
    exhaustive_max: int = Field(5000, ge=0, description="also enumerate the space exhaustively (reference front) "
                                                        "when it has at most this many configurations")

    @model_validator(mode="before")
    @classmethod
    def _scoring(cls, data: Any) -> Any:
        # the policy must belong to the protocol; stored configs name both explicitly
        if isinstance(data, dict):
            from codesign.evaluate.protocols import resolve_scoring

            data = dict(data)
            data["protocol"], data["policy"] = resolve_scoring(data.get("protocol") or DEFAULT_PROTOCOL,
                                                               data.get("policy"))
        return data

    @field_validator("objectives", mode="before")
    @classmethod
    def _objective_strings(cls, v: Any) -> Any:
        # "trust" is shorthand for {name: trust}
        if isinstance(v, list):
            return [{"name": o} if isinstance(o, str) else o for o in v]
        return v

    @field_validator("objectives")
    @classmethod
    def _unique_objectives(cls, v: list[ObjectiveConfig]) -> list[ObjectiveConfig]:
        names = [o.name for o in v]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives repeat a name: {names}")
        return v

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"at least one task is needed (allowed: {', '.join(_registered_tasks())})")
        return _check_task_names(v, "unknown task(s)")

    @field_validator("trust_dimensions")
    @classmethod
    def _known_trust_dimensions(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("at least one trust dimension is needed (or leave the field out for the default)")
        return [d.objective for d in objectives.trust_dimensions(v)]

    @field_validator("subtasks")
    @classmethod
    def _known_subtask_tasks(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        _check_task_names(list(v), "subtasks given for unknown task(s)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "StudyConfig":
        if self.min_members > self.max_members:
            raise ValueError(f"min_members={self.min_members} is above max_members={self.max_members}")
        names = self.objective_names + (["trust"] if self.trust_dimensions is not None else [])
        for o in dict.fromkeys(names):
            need = self.objective_tasks(o)
            missing = [t for t in need if t not in self.tasks]
            if missing:
                raise ValueError(f"objective {o!r} needs task(s) {missing}, which are not in tasks={self.tasks}")
        if self.ref_point is not None:
            names = {o.name for o in self.objectives}
            extra = sorted(set(self.ref_point) - names)
            missing = sorted(names - set(self.ref_point))
            if extra or missing:
                raise ValueError(f"ref_point must name exactly the objectives {sorted(names)}; "
                                 f"extra: {extra}, missing: {missing}")
        return self

    # -- derived ----------------------------------------------------------------------------
    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def trust_tasks(self) -> list[str]:
        """Tasks averaged into the ``trust`` objective: ``trust_dimensions`` as configured (each
        must be among ``tasks``), else the default trust dimensions among ``tasks``."""
        dims = objectives.trust_dimensions(self.trust_dimensions)
        if self.trust_dimensions is None:
            present = [d.task for d in dims if d.task in self.tasks]
            return present or [d.task for d in dims]
        return [d.task for d in dims]

    def objective_tasks(self, name: str) -> list[str]:
        """Tasks an objective is scored on (none for cost objectives)."""
        if name == "trust":
            return self.trust_tasks()
        task = objectives.get_objective(name).task
        return [task] if task else []

    def needed_tasks(self) -> list[str]:
        """Tasks the quality objectives and constraints read (a subset of ``tasks``)."""
        names = set(self.objective_names) | ({"trust"} if self.constraints.min_trust is not None else set())
        need = {t for n in names for t in self.objective_tasks(n)}
        return [t for t in self.tasks if t in need]

    def resolve_shape(self) -> str:
        """The hwmodels shape used for costs (explicit ``shape`` or inferred from ``model``)."""
        if self.shape:
            return self.shape
        from hwmodels.shapes import shape_name

        try:
            return shape_name(self.model)
        except ConfigError as exc:
            raise ConfigError(f"explore config: {exc}; set `shape:` to a built-in shape or a config.json path") from None

    def catalogue_obj(self, source: str | Path | None = None):
        """The :class:`codesign.quantize.Catalogue` (inline mapping or file path), ``model`` filled in."""
        from codesign.quantize import Catalogue

        if isinstance(self.catalogue, str):
            path = Path(self.catalogue)
            if not path.is_absolute() and source is not None and not path.exists():
                path = Path(source).parent / path
            data = read_mapping(path)
            where: str | Path = path
        else:
            data, where = dict(self.catalogue), f"{source or '<config>'} (catalogue)"
        data.setdefault("model", self.model)
        return validate_config(Catalogue, data, where)


def load_study_config(path: str | Path | None = None, **overrides: Any) -> StudyConfig:
    """Load a study config (default: the embedded ``configs/explore_default.yaml``).

    ``overrides`` replace top-level fields after loading (e.g. ``name=...``) and are validated too.
    """
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else _PACKAGED_DEFAULT
    cfg = load_config(StudyConfig, path)
    check_references(cfg, path)
    if overrides:
        data = cfg.model_dump()
        given = {k: v for k, v in overrides.items() if v is not None}
        if "protocol" in given and "policy" not in given:
            data["policy"] = None  # the overriding protocol's default policy, not the file's
        data.update(given)
        cfg = validate_config(StudyConfig, data, path)
        check_references(cfg, path)
    return cfg


def check_references(cfg: StudyConfig, source: str | Path) -> None:
    """The names a study config refers to exist, checked at load time (before any quantization or
    evaluation): accelerator specs, schedules, the runtime profile, the catalogue (its methods and
    options), and every knob is one that some listed spec declares (a knob no spec declares would
    be searched and stored and change nothing)."""
    from hwmodels.ensemble import SCHEDULES
    from hwmodels.runtime import load_runtime
    from hwmodels.spec import list_specs, load_spec

    specs = {}
    for name in cfg.specs:
        try:
            specs[name] = load_spec(name)
        except ConfigError as exc:
            raise ConfigError(f"{source}: specs: {name!r} cannot be used ({exc}; built-in: "
                              f"{', '.join(list_specs())})") from None
    bad = [s for s in cfg.schedules if s not in SCHEDULES]
    if bad:
        raise ConfigError(f"{source}: schedules: {bad} unknown (allowed: {', '.join(SCHEDULES)})")
    if cfg.runtime is not None:
        try:
            load_runtime(cfg.runtime)
        except ConfigError as exc:
            raise ConfigError(f"{source}: runtime: {exc}") from None
    declared = {k for spec in specs.values() for k in spec.knobs}
    undeclared = sorted(set(cfg.knobs) - declared)
    if undeclared:
        raise ConfigError(f"{source}: knobs: {undeclared} not declared by any of the specs {list(cfg.specs)} "
                          f"(allowed: {sorted(declared) or 'none: these specs declare no knobs'})")
    cfg.catalogue_obj(source)


def study_config_dict(cfg: StudyConfig) -> dict[str, Any]:
    """JSON-able config stored with the study (the resume key).

    ``methods``, ``uncertainty`` and ``optimizer.iterations`` are left out: points are stored per method, and
    raising the iteration count continues a finished study rather than starting a new one.
    """
    d = cfg.model_dump(mode="json")
    d.pop("methods", None)
    d.pop("uncertainty", None)  # how the result is summarised, not which points are evaluated
    if d.get("runtime") is None:  # studies stored before runtime profiles existed keep their resume key
        d.pop("runtime", None)
    d["optimizer"].pop("iterations", None)
    return d


def stored_study_config(config: dict[str, Any]) -> dict[str, Any]:
    """A study config as a result store holds it (:func:`study_config_dict`), in today's terms: a
    config stored before evaluation protocols existed (no ``protocol``) scored codesign answers,
    and its policy ``decodingtrust`` then meant today's ``answered``
    (:func:`codesign.evaluate.protocols.legacy_scoring`)."""
    from codesign.evaluate.protocols import legacy_scoring

    out = dict(config)
    if "protocol" not in out:
        out["protocol"], out["policy"] = legacy_scoring(config)
    return out
