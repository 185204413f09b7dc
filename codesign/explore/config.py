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

from codesign.config import ConfigError, StrictModel, load_config, read_mapping, validate_config
from codesign.paths import PROJECT_ROOT
from codesign.records import DEFAULT_PROTOCOL

#: objective name -> (default direction, kind). "quality" objectives come from stored answers
#: (voting), "cost" objectives from the analytical hardware model.
OBJECTIVES: dict[str, tuple[str, str]] = {
    "trust": ("max", "quality"),
    "mmlu": ("max", "quality"),
    "adv": ("max", "quality"),
    "fairness": ("max", "quality"),
    "ethics": ("max", "quality"),
    "ood": ("max", "quality"),
    "tpot_ms": ("min", "cost"),
    "peak_memory_gb": ("min", "cost"),
    "energy_per_token_j": ("min", "cost"),
    "area_mm2": ("min", "cost"),
}

#: quality objective -> evaluation task it is scored on ("trust" is the mean of the trust dimensions).
OBJECTIVE_TASK: dict[str, str] = {"mmlu": "mmlu", "adv": "advglue", "fairness": "fairness", "ethics": "ethics",
                                  "ood": "ood"}
TRUST_DIMENSIONS = ("adv", "fairness", "ethics", "ood")
ALL_TASKS = ("mmlu", "advglue", "fairness", "ethics", "ood")  # the default; any registered task is allowed


def _registered_tasks() -> list[str]:
    # The evaluation task registry is the one list of tasks: a task added there (one module)
    # is usable in studies without touching this file.
    from codesign.evaluate.protocols import protocol_names
    from codesign.evaluate.tasks import task_names

    return list(dict.fromkeys(t for p in protocol_names() for t in task_names(p)))


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
    """One objective. ``direction`` defaults to max for quality and min for costs."""

    name: str
    direction: Literal["max", "min"] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in OBJECTIVES:
            raise ValueError(f"unknown objective {v!r} (allowed: {', '.join(OBJECTIVES)})")
        return v

    @model_validator(mode="after")
    def _default_direction(self) -> "ObjectiveConfig":
        if self.direction is None:
            self.direction = OBJECTIVES[self.name][0]
        return self

    @property
    def kind(self) -> str:
        return OBJECTIVES[self.name][1]

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

    batch: int = Field(1, ge=1)
    prompt_len: int = Field(512, ge=1)
    gen_len: int = Field(128, ge=1)
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
    constraints: Constraints = Field(default_factory=Constraints)
    ref_point: dict[str, float] | None = Field(
        None, description="hypervolume reference point per objective, in the objective's own units; "
                          "inferred from the evaluated points when omitted")
    specs: list[str] = Field(default_factory=lambda: ["h100-sxm"], min_length=1)
    schedules: list[str] = Field(default_factory=lambda: ["sequential"], min_length=1)
    knobs: dict[str, KnobRange | None] = Field(
        default_factory=dict, description="accelerator knobs to explore; null takes the range from the spec")
    min_members: int = Field(1, ge=1)
    max_members: int = Field(3, ge=1, description="largest ensemble size")
    workload: Workload = Field(default_factory=Workload)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    methods: list[Literal["bo", "random", "nsga2", "exhaustive"]] = Field(
        default_factory=lambda: ["bo"], description="search methods to run (same budget for bo/random/nsga2)")
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

    @field_validator("subtasks")
    @classmethod
    def _known_subtask_tasks(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        _check_task_names(list(v), "subtasks given for unknown task(s)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "StudyConfig":
        if self.min_members > self.max_members:
            raise ValueError(f"min_members={self.min_members} is above max_members={self.max_members}")
        for o in self.objectives:
            need = self.objective_tasks(o.name)
            missing = [t for t in need if t not in self.tasks]
            if missing:
                raise ValueError(f"objective {o.name!r} needs task(s) {missing}, which are not in tasks={self.tasks}")
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
        """Tasks averaged into the ``trust`` objective: the trust dimensions among ``tasks``."""
        return [OBJECTIVE_TASK[d] for d in TRUST_DIMENSIONS if OBJECTIVE_TASK[d] in self.tasks]

    def objective_tasks(self, name: str) -> list[str]:
        if name == "trust":
            trust = [OBJECTIVE_TASK[d] for d in TRUST_DIMENSIONS if OBJECTIVE_TASK[d] in self.tasks]
            return trust or [OBJECTIVE_TASK[d] for d in TRUST_DIMENSIONS]
        return [OBJECTIVE_TASK[name]] if name in OBJECTIVE_TASK else []

    def needed_tasks(self) -> list[str]:
        """Tasks the quality objectives and constraints read (a subset of ``tasks``)."""
        names = set(self.objective_names) | ({"trust"} if self.constraints.min_trust is not None else set())
        need = {t for n in names for t in self.objective_tasks(n)}
        return [t for t in self.tasks if t in need]

    def resolve_shape(self) -> str:
        """The hwmodels shape used for costs (explicit ``shape`` or inferred from ``model``)."""
        if self.shape:
            return self.shape
        from codesign.models import builtin_shape_names

        name = self.model
        shapes = builtin_shape_names()
        if name.startswith("random:"):
            return name.split(":", 1)[1]
        if name in shapes:
            return name
        stem = name.rstrip("/").split("/")[-1].lower()
        for suffix in ("-instruct", "-chat", "-base"):
            if stem.endswith(suffix) and stem[: -len(suffix)] in shapes:
                return stem[: -len(suffix)]
        if (Path(name) / "config.json").exists():
            return str(Path(name) / "config.json")
        raise ConfigError(
            f"explore config: cannot infer a hardware shape for model {name!r}; set `shape:` to a built-in shape "
            f"({', '.join(shapes)}) or a config.json path")

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
    if overrides:
        data = cfg.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        cfg = validate_config(StudyConfig, data, path)
    return cfg


def study_config_dict(cfg: StudyConfig) -> dict[str, Any]:
    """JSON-able config stored with the study (the resume key).

    ``methods`` and ``optimizer.iterations`` are left out: points are stored per method, and
    raising the iteration count continues a finished study rather than starting a new one.
    """
    d = cfg.model_dump(mode="json")
    d.pop("methods", None)
    d["optimizer"].pop("iterations", None)
    return d
