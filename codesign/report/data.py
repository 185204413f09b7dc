"""Everything a report shows, read from the result store by small collectors.

:func:`collect` is the only place the report touches the store; each part comes from one collector
that reads what an earlier stage persisted or scores it with that stage's own code:
variants and scores (:mod:`codesign.report.variants`), the explore study and its stored result
(:mod:`codesign.report.study`), ensembles (:mod:`codesign.report.ensembles`), the hardware view
(:mod:`codesign.report.hardware`). A part that cannot be built — no study, no measurements, an
unknown spec — leaves its frame empty and a one-line note in :attr:`ReportData.notes`, so the
report degrades section by section.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from codesign import objectives
from codesign.records import DEFAULT_PROTOCOL, VariantSpec
from codesign.report.study import StudyView

DEFAULT_SPEC = "h100-sxm"


@dataclass
class ReportData:
    """What the figures, tables and HTML are drawn from."""

    store_path: str
    mode: str
    policy: str
    #: evaluation protocol of the answers scored (codesign.evaluate.protocols)
    protocol: str = DEFAULT_PROTOCOL
    tasks: list[str] = field(default_factory=list)
    #: task -> display name of its dimension
    dimensions: dict[str, str] = field(default_factory=dict)
    #: tasks the trust score averages (the study's trust dimensions, else the default ones)
    trust_tasks: list[str] = field(default_factory=list)
    specs: dict[str, VariantSpec] = field(default_factory=dict)
    #: one row per variant: variant_id, label, model, method, bits, group_size, is_dense
    variants: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: long: variant_id, task, score, refusal_rate, invalid_rate, n
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    study: StudyView | None = None
    #: long: ensemble, task, kind in {ensemble, best single, dense}, score, ci_low, ci_high, variant
    ensembles: pd.DataFrame = field(default_factory=pd.DataFrame)
    spec_name: str | None = None
    spec: Any = None
    shape_name: str | None = None
    #: operators of each precision's prefill and decode on the spec (see report.hardware.roofline_points)
    roofline: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: measurements with spec, predicted_prefill_ms, predicted_tpot_ms
    latency: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: dict[str, str] = field(default_factory=dict)

    # the study's parts (empty without a study or without its stored result)
    @property
    def study_name(self) -> str | None:
        return self.study.name if self.study else None

    @property
    def points(self) -> pd.DataFrame:
        return self.study.points if self.study else pd.DataFrame()

    @property
    def objectives(self) -> list[str]:
        return self.study.objectives if self.study else []

    @property
    def directions(self) -> list[str]:
        return self.study.directions if self.study else []

    @property
    def constraints(self) -> list[tuple[str, str, float]]:
        return self.study.constraints if self.study else []

    @property
    def front(self) -> pd.DataFrame:
        return self.study.front if self.study else pd.DataFrame()

    @property
    def recommendations(self) -> pd.DataFrame:
        return self.study.recommendations if self.study else pd.DataFrame()

    @property
    def hv(self) -> pd.DataFrame:
        return self.study.hv if self.study else pd.DataFrame()

    @property
    def algorithm(self) -> str:
        return str((self.study.config.get("optimizer") or {}).get("algorithm", "")) if self.study else ""


def _choose_study(store, study: str | None) -> str | None:
    studies = store.studies()
    if study is not None and study not in studies:
        from codesign.config import ConfigError

        raise ConfigError(f"{store.path}: no study named {study!r} (studies in this store: {studies or 'none'})")
    return study if study is not None else (studies[-1] if studies else None)


def collect(store, study: str | None = None, spec: str | None = None, *, mode: str | None = None,
            policy: str | None = None, protocol: str | None = None, n_boot: int = 200, seed: int = 0) -> ReportData:
    """Read the store (and the stages that score and cost it) into a :class:`ReportData`."""
    from codesign.evaluate.protocols import resolve_scoring
    from codesign.report.study import study_view
    from codesign.report.variants import most_stored, variant_specs, variants_frame

    name = _choose_study(store, study)
    specs = variant_specs(store)
    view = study_view(store, name, specs) if name is not None else None
    config = view.config if view else {}
    # the study decides which answers, protocol and policy its objectives were scored with; a
    # policy given names its protocol; else the answers most stored
    if protocol is None and policy is None:
        protocol, policy = config.get("protocol"), config.get("policy")
    protocol, policy = resolve_scoring(protocol or (None if policy else most_stored(store, "protocol")), policy)
    data = ReportData(store_path=str(store.path), mode=mode or config.get("mode") or most_stored(store, "mode"),
                      policy=policy, protocol=protocol, specs=specs, study=view)
    data.variants = variants_frame(specs)
    order = [d.task for d in objectives.dimensions()]
    stored = store.tasks(protocol)
    data.tasks = [t for t in order if t in stored] + sorted(set(stored) - set(order))
    data.dimensions = {t: objectives.dimension(t).label if t in order else t for t in data.tasks}
    trust = view.typed.trust_tasks() if view and view.typed else [d.task for d in objectives.trust_dimensions()]
    data.trust_tasks = [t for t in trust if t in data.tasks]
    _collect_scores(store, data)
    if view is None:
        data.notes["study"] = "No explore study in this store: Pareto fronts, recommendations and the optimizer " \
                              "trace are omitted (run `codesign explore`)."
    elif view.note:
        data.notes["study"] = view.note
    _collect_ensembles(store, data, n_boot, seed)
    _collect_hardware(store, data, spec or (view.first_spec if view else None))
    return data


def _collect_scores(store, data: ReportData) -> None:
    from codesign.report.variants import variant_scores

    evaluated = [v for v in store.evaluated_variants(mode=data.mode, protocol=data.protocol) if v in data.specs]
    if not evaluated:
        data.notes["scores"] = (f"No stored answers (mode {data.mode!r}, {data.protocol} protocol) in {store.path}: "
                                f"run `codesign eval` first (protocols with answers: {store.protocols() or 'none'}).")
        return
    data.scores = variant_scores(store, evaluated, data.tasks, data.mode, data.policy, data.protocol)


def _collect_ensembles(store, data: ReportData, n_boot: int, seed: int) -> None:
    """The recommended ensembles (at most three), else one per method across precisions."""
    from codesign.report.ensembles import default_ensembles, ensemble_comparison

    if data.scores.empty:
        return
    ens: list[list[str]] = []
    for members in data.recommendations.get("members", pd.Series(dtype=str)):
        m = [v for v in str(members).split() if v in data.specs]
        if len(m) >= 2 and m not in ens:
            ens.append(m)
    if not ens:
        evaluated = set(data.scores["variant_id"])
        ens = default_ensembles(data.variants[data.variants["variant_id"].isin(evaluated)])
    if not ens:
        data.notes["ensembles"] = "No ensemble to compare: fewer than two precisions of one method evaluated."
        return
    data.ensembles = ensemble_comparison(store, ens[:3], data.specs, data.scores, data.tasks, data.mode,
                                         data.policy, n_boot=n_boot, seed=seed, protocol=data.protocol)


def _collect_hardware(store, data: ReportData, spec: str | None) -> None:
    import hwmodels

    from codesign.report.hardware import predicted_latency, roofline_points

    data.spec_name = spec or DEFAULT_SPEC
    try:
        data.spec = hwmodels.load_spec(data.spec_name)
    except Exception as exc:
        if spec is not None:
            raise
        data.notes["hardware"] = f"Accelerator spec {data.spec_name!r} not found ({exc}); pass --spec."
    if data.spec is not None and not data.variants.empty:
        model = Counter(data.variants["model"]).most_common(1)[0][0]
        try:
            shape = hwmodels.resolve_shape(model)
            data.shape_name = shape.name
            first_group: dict[int, int] = {}  # one group size per precision keeps the chart readable
            for b, g in sorted({(int(b), int(g)) for b, g in zip(data.variants["bits"], data.variants["group_size"])}):
                first_group.setdefault(b, g)
            data.roofline = roofline_points(data.spec, shape, sorted(first_group.items()))
        except Exception as exc:  # noqa: BLE001
            data.notes["roofline"] = f"No model shape for {model!r} ({exc}); roofline omitted."
    meas = store.frame("measurements")
    if meas.empty:
        data.notes["latency"] = "No latency measurements in the store (run `codesign measure`)."
        return
    data.latency, note = predicted_latency(meas, data.spec_name if data.spec is not None else None)
    if note:
        data.notes["latency"] = note
