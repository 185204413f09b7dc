"""Small typed records that flow down the pipeline (quantize -> evaluate -> vote -> cost -> explore
-> report), and the ones the result store reads and writes.

Outcome codes are shared by every stage: a task's parser returns a label id (>= 0) or one of
:data:`INVALID` / :data:`REFUSED`; the store keeps them as integers; voting consumes arrays of them.

Names are defined once here: :attr:`VariantSpec.short_name` and its inverse :meth:`VariantSpec.parse`
(the one parser of variant names), :func:`ensemble_label` (the one name of a set of variants) and
:func:`configuration_label` (an ensemble with its schedule and accelerator).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

INVALID = -1  #: empty, unparseable, or several labels at once
REFUSED = -2  #: explicit abstention ("I cannot", "I don't know", neutral non-answer)

OUTCOME_NAMES = {INVALID: "invalid", REFUSED: "refused"}

#: Precision (bits) given to the unquantized model in votes and cost models.
DENSE_BITS = 16

#: How answers are obtained (``outputs.mode``): greedy generation parsed to a label, or the most
#: likely of the label options.
ANSWER_MODES = ("generate", "loglik")

#: Evaluation protocol of stored items/answers when none is named (see codesign.evaluate.protocols).
DEFAULT_PROTOCOL = "decodingtrust"


def outcome_name(code: int) -> str:
    """'label' for label ids, else 'invalid' / 'refused'."""
    return OUTCOME_NAMES.get(int(code), "label")


@dataclass(frozen=True)
class VariantSpec:
    """One quantized (or dense) variant of a model.

    ``method='dense'`` is the unquantized baseline (``bits`` = :data:`DENSE_BITS`).
    ``group_size=-1`` means per-output-channel scales.
    """

    model: str
    method: str = "dense"
    bits: int = DENSE_BITS
    group_size: int = 128
    sym: bool = False
    calib: str = "none"
    seed: int = 0
    extra: tuple[tuple[str, Any], ...] = field(default=())  # method options, e.g. (("act_order", True),)

    @property
    def is_dense(self) -> bool:
        return self.method == "dense"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VariantSpec":
        d = dict(d)
        extra = d.pop("extra", {}) or {}
        return cls(**d, extra=tuple(sorted(dict(extra).items())))

    def content_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    @property
    def short_name(self) -> str:
        """Readable label for tables and plots, e.g. ``gptq-w4g128``."""
        if self.is_dense:
            return "dense"
        g = "pc" if self.group_size == -1 else str(self.group_size)
        return f"{self.method}-w{self.bits}g{g}" + ("-sym" if self.sym else "")

    @property
    def variant_id(self) -> str:
        """Stable id: readable name plus a content hash of every field."""
        model = self.model.rstrip("/").split("/")[-1].lower().replace(".gguf", "")
        return f"{model}--{self.short_name}-s{self.seed}-{self.content_hash()}"

    @classmethod
    def parse(cls, name: str, model: str = "", *, method: str | None = None, **fields: Any) -> "VariantSpec":
        """The spec a variant name stands for: the inverse of :attr:`short_name`.

        Accepts ``dense`` and ``<method>-w<bits>g<group>[-sym]`` (``group``: a size, ``pc`` or
        ``-1`` for per-channel scales); the method may be left out (``w4g128``) when ``method`` is
        given. Other fields (``calib``, ``seed``, ``extra``) come from ``fields`` or the defaults.

        Raises:
            ValueError: naming the text and the forms allowed.
        """
        text = name.strip().lower()
        if text == "dense":
            return cls(model=model, **fields)
        m = _NAME.match(text)
        if m is None or not (m["method"] or method):
            raise ValueError(f"{name!r} is not a variant name (allowed: dense, or METHOD-wBITSgGROUP[-sym] such as "
                             "rtn-w4g128 or gptq-w3gpc-sym; GROUP is a size, pc or -1 for per-channel)")
        group = -1 if m["group"] in ("pc", "-1") else int(m["group"])
        if group == 0:
            raise ValueError(f"{name!r}: group size 0 is not allowed (allowed: a positive size, pc or -1)")
        return cls(model=model, method=m["method"] or str(method), bits=int(m["bits"]), group_size=group,
                   sym=bool(m["sym"]), **fields)


_NAME = re.compile(r"^(?:(?P<method>[a-z][a-z0-9_]*)-)?w(?P<bits>\d+)g(?P<group>\d+|pc|-1)(?P<sym>-sym)?$")


def _precision_order(spec: VariantSpec) -> tuple:
    return (spec.bits, spec.method, spec.group_size, spec.sym, spec.short_name)


def ensemble_label(members: Sequence[VariantSpec]) -> str:
    """The one readable name of a set of variants, e.g. ``gptq-w3g128+rtn-w4g128+dense``.

    Members' short names, lowest precision first (then method, group size): the same set gets
    the same name whatever order it was listed in. One member: its short name.
    """
    return "+".join(s.short_name for s in sorted(members, key=_precision_order))


def configuration_label(members: Sequence[VariantSpec], schedule: str, spec: str | None = None) -> str:
    """An ensemble with its schedule (``a+b · parallel``) and, when given, its accelerator (``@ h100-sxm``).

    A single variant has no schedule: its label is its name (and accelerator).
    """
    text = ensemble_label(members) + (f" · {schedule}" if len(members) > 1 else "")
    return text + (f" @ {spec}" if spec else "")


# -- explore: configurations, points and the study result -----------------------------------------

@dataclass(frozen=True)
class Configuration:
    """One point of the co-design space: an ensemble of catalogue members (variant ids), a schedule,
    an accelerator spec and values of its knobs (hashable; ``members`` in catalogue order)."""

    members: tuple[str, ...]
    schedule: str
    spec: str
    knobs: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``study_points.config`` record."""
        return {"members": list(self.members), "schedule": self.schedule, "spec": self.spec,
                "knobs": dict(self.knobs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Configuration":
        return cls(tuple(d["members"]), d["schedule"], d["spec"], tuple(sorted((d.get("knobs") or {}).items())))

    def label(self, specs: Mapping[str, VariantSpec], show_spec: bool = False) -> str:
        """:func:`configuration_label` of this configuration (``specs``: variant id -> spec)."""
        known = [specs[m] for m in self.members if m in specs]
        if len(known) < len(self.members):  # members unknown to the store: their ids' readable tails
            return "+".join(m.split("--")[-1] for m in self.members)
        return configuration_label(known, self.schedule, self.spec if show_spec else None)


@dataclass(frozen=True)
class StudyPoint:
    """One configuration a search method evaluated (a ``study_points`` row).

    ``objectives`` holds every objective the study can compute for it (own units; a value the
    model cannot give, e.g. area on a spec without area data, is absent); ``feasible`` whether it
    meets every constraint of the study.
    """

    study: str
    method: str
    seed: int
    point_id: int
    iteration: int
    config: Configuration
    objectives: Mapping[str, float]
    feasible: bool
    created: float | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        """``(method, seed, point_id)``: how results refer to a point."""
        return (self.method, self.seed, self.point_id)

    def value(self, objective: str) -> float:
        """The objective's value, NaN where the point has none."""
        v = self.objectives.get(objective)
        try:
            return float(v) if v is not None else math.nan
        except (TypeError, ValueError):
            return math.nan


@dataclass(frozen=True)
class HypervolumeStep:
    """Hypervolume of the feasible points one search (method, seed) had found after ``n_evals``
    evaluations, in the study's maximised objective space; ``hv_fraction`` / ``log_hv_diff`` are
    relative to the exhaustive front's hypervolume when the study has one."""

    method: str
    seed: int
    n_evals: int
    iteration: int
    hv: float
    hv_fraction: float | None = None
    log_hv_diff: float | None = None


@dataclass(frozen=True)
class FrontPoint:
    """A distinct feasible non-dominated configuration: the first point that evaluated it, every
    method that found it, and the front it belongs to (``spec=None``: the whole study's; a spec
    name: the front among configurations on that accelerator)."""

    point: tuple[str, int, int]  # StudyPoint.key
    found_by: tuple[str, ...]
    spec: str | None = None


@dataclass(frozen=True)
class Recommendation:
    """A recommended configuration (``point``: a StudyPoint.key), its role and why it was picked;
    ``alternatives``: the front configurations statistically indistinguishable from it (every
    bootstrapped objective's paired difference has an interval containing zero)."""

    role: str
    reason: str
    point: tuple[str, int, int]
    alternatives: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class BootstrapSettings:
    """How a study's intervals were made: item resamples, confidence level, seed of the resample indices."""

    n_resamples: int = 200
    level: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class Interval:
    """Uncertainty of one quality objective of one configuration (``point``: its first StudyPoint.key)
    from the paired item bootstrap: the estimate on the study's items, its standard error and the
    percentile interval at the study's level."""

    point: tuple[str, int, int]
    objective: str
    estimate: float
    se: float
    low: float
    high: float


@dataclass(frozen=True)
class ParetoProbability:
    """Share of item resamples in which a configuration is on the study's Pareto front."""

    point: tuple[str, int, int]
    probability: float


@dataclass(frozen=True)
class StudyResult:
    """What a finished explore study concluded, persisted once and read by the report.

    Attributes:
        objectives: ``(name, direction)`` of each objective, in the study's order.
        ref_point: ``(m,)`` hypervolume reference point in the maximised space (value x sign).
        reference_hv: the exhaustive front's hypervolume (None without an exhaustive run).
        n_points: stored points the result covers (fewer than stored: the result is stale).
        front: the study's Pareto front (``spec=None``) and, with several specs, each spec's.
        hypervolume: the trace of every (method, seed).
        recommendations: in display order.
        bootstrap: how ``intervals`` and ``pareto_probability`` were made (None: no uncertainty).
        intervals: per distinct feasible configuration and quality objective.
        pareto_probability: per distinct feasible configuration.
    """

    study: str
    objectives: tuple[tuple[str, str], ...]
    ref_point: tuple[float, ...]
    reference_hv: float | None
    n_points: int
    front: tuple[FrontPoint, ...] = ()
    hypervolume: tuple[HypervolumeStep, ...] = ()
    recommendations: tuple[Recommendation, ...] = ()
    bootstrap: BootstrapSettings | None = None
    intervals: tuple[Interval, ...] = ()
    pareto_probability: tuple[ParetoProbability, ...] = ()

    def interval(self, point: tuple[str, int, int], objective: str) -> Interval | None:
        """The interval of ``objective`` at a configuration (its first point's key), if bootstrapped."""
        if not hasattr(self, "_intervals"):
            object.__setattr__(self, "_intervals", {(i.point, i.objective): i for i in self.intervals})
        return self._intervals.get((tuple(point), objective))

    def p_pareto(self, point: tuple[str, int, int]) -> float | None:
        """Probability that the configuration is on the front (None when not bootstrapped)."""
        if not hasattr(self, "_p_pareto"):
            object.__setattr__(self, "_p_pareto", {p.point: p.probability for p in self.pareto_probability})
        return self._p_pareto.get(tuple(point))

    @property
    def objective_names(self) -> list[str]:
        return [n for n, _ in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    def front_of(self, spec: str | None = None) -> list[FrontPoint]:
        """The whole study's front (``None``) or one accelerator's."""
        return [f for f in self.front if f.spec == spec]

    def final_hypervolume(self) -> list[HypervolumeStep]:
        """The last step of every (method, seed): the most evaluations, ties to the later row."""
        last: dict[tuple[str, int], HypervolumeStep] = {}
        for step in self.hypervolume:
            k = (step.method, step.seed)
            if k not in last or step.n_evals >= last[k].n_evals:
                last[k] = step
        return [last[k] for k in sorted(last)]


# -- evaluate: what a run cost --------------------------------------------------------------------

@dataclass(frozen=True)
class EvalRun:
    """Measured cost of evaluating one variant on one task (an ``eval_runs`` row): token counts,
    prompt and generation throughput, time per output token, peak memory of this run, wall time."""

    variant_id: str
    task: str
    mode: str
    device: str
    n_items: int
    prompt_tokens: int
    gen_tokens: int
    prompt_tok_s: float | None
    gen_tok_s: float | None
    tpot_ms: float | None
    peak_mem_bytes: int | None
    wall_s: float
    protocol: str = DEFAULT_PROTOCOL  # evaluation protocol of the task (codesign.evaluate.protocols)



#: ``Measurement.schedule`` of a single model (not an ensemble).
SINGLE = "single"


@dataclass
class Measurement:
    """One measured configuration: a row of the store's ``measurements`` table (``codesign measure``).

    ``kernel`` names what ran the quantized linears (a kernel of :mod:`codesign.quantize.kernels`,
    ``torch-matmul`` for dense weights; several joined by ``+``, most linears first); ``spec`` the
    accelerator spec the row is to be compared against; ``schedule`` is :data:`SINGLE` for one
    model, else the ensemble schedule its members ran under (``variant`` is then the members'
    formats joined by ``+``, and ``extra["members"]`` holds each member's format and kernel).
    Stores written before a field existed read back as None.
    """

    model: str
    variant: str
    wbits: int | None
    group_size: int | None
    dtype: str
    device: str
    device_name: str
    batch: int
    prompt_len: int
    gen_len: int
    prefill_ms: float
    tpot_ms: float
    peak_mem_bytes: int
    repeats: int
    kernel: str | None = None
    spec: str | None = None
    schedule: str | None = SINGLE
    versions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    #: Plain columns of the table (``versions`` and ``extra`` are stored as JSON).
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "model", "variant", "wbits", "group_size", "dtype", "device", "device_name", "batch", "prompt_len",
        "gen_len", "prefill_ms", "tpot_ms", "peak_mem_bytes", "repeats", "kernel", "spec", "schedule")

    def to_row(self) -> dict[str, Any]:
        """Column -> value, with ``versions_json`` and ``extra_json``."""
        row = {c: getattr(self, c) for c in self.COLUMNS}
        row["versions_json"] = json.dumps(self.versions)
        row["extra_json"] = json.dumps(self.extra, default=str)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Measurement":
        """A stored row (a dict or a pandas row); columns an old store lacks become None."""
        def get(c):
            v = row.get(c)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        vals = {c: get(c) for c in cls.COLUMNS}
        vals["schedule"] = vals["schedule"] or SINGLE  # rows from before ensembles were measured
        for c in ("wbits", "group_size", "batch", "prompt_len", "gen_len", "peak_mem_bytes", "repeats"):
            vals[c] = None if vals[c] is None else int(vals[c])
        return cls(**vals, versions=json.loads(get("versions_json") or "{}"),
                   extra=json.loads(get("extra_json") or "{}"))
