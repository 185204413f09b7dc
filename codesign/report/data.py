"""Everything a report shows, read from the result store into small frames.

:func:`collect` is the only place the report touches the store and the other stages
(task scoring, ensemble voting, the hardware model). Each part that cannot be built — no study,
no measurements, no hardware spec, a stage not installed — leaves its frame empty and a
one-line note in :attr:`ReportData.notes`, so the report degrades section by section.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from codesign.records import DENSE_BITS, VariantSpec
from codesign.report.pareto import (
    MAXIMIZE,
    Constraint,
    Recommendation,
    hv_trace,
    order_objectives,
    parse_constraints,
    recommend,
)

log = logging.getLogger(__name__)

#: Task order in every figure and table; the four trust dimensions follow MMLU.
TASK_ORDER = ["mmlu", "advglue", "fairness", "ethics", "ood"]
TRUST_TASKS = ["advglue", "fairness", "ethics", "ood"]
DIMENSION_NAMES = {"mmlu": "MMLU", "advglue": "Adversarial robustness", "fairness": "Fairness",
                   "ethics": "Machine ethics", "ood": "OOD robustness"}
#: Study objective name -> task it is scored on.
OBJECTIVE_TASK = {"mmlu": "mmlu", "adv": "advglue", "fairness": "fairness", "ethics": "ethics", "ood": "ood"}

DEFAULT_SPEC = "h100-sxm"


@dataclass
class ReportData:
    """What the figures, tables and HTML are drawn from (all plain pandas frames)."""

    store_path: str
    mode: str
    policy: str
    tasks: list[str] = field(default_factory=list)
    dimensions: dict[str, str] = field(default_factory=dict)
    #: one row per variant: variant_id, label, model, method, bits, group_size, is_dense
    variants: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: long: variant_id, task, score, refusal_rate, invalid_rate, n
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    study: str | None = None
    study_config: dict[str, Any] = field(default_factory=dict)
    #: study_points frame plus ``label`` (ensemble + schedule) and ``n_members``
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    objectives: list[str] = field(default_factory=list)
    constraints: list[Constraint] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    hv: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: long: ensemble, task, kind in {ensemble, best single, dense}, score, ci_low, ci_high, variant
    ensembles: pd.DataFrame = field(default_factory=pd.DataFrame)
    spec_name: str | None = None
    spec: Any = None
    shape_name: str | None = None
    #: operators of each variant's prefill and decode on the spec: bits, phase, op, intensity, attained_flops
    roofline: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: measurements with predicted_prefill_ms / predicted_tpot_ms where a spec could be matched
    latency: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: dict[str, str] = field(default_factory=dict)


# -- helpers --------------------------------------------------------------------------------

def variant_label(spec: VariantSpec) -> str:
    return spec.short_name


def ensemble_label(members: list[str], specs: dict[str, VariantSpec]) -> str:
    """Readable name of a set of variants, e.g. ``gptq-w3g128+rtn-w4g128+dense``."""
    ss = [specs.get(m) for m in members]
    if not ss or any(s is None for s in ss):
        return "+".join(m.split("--")[-1] for m in members)
    if len(ss) == 1:
        return ss[0].short_name
    # always the members' own short names (as in the variant table), lowest precision first
    return "+".join(s.short_name for s in sorted(ss, key=lambda s: (s.bits, s.method, s.group_size)))


def point_label(config: dict[str, Any], specs: dict[str, VariantSpec]) -> str:
    members = list(config.get("members") or [])
    sched = config.get("schedule") or ("single" if len(members) == 1 else "?")
    text = ensemble_label(members, specs)
    return text if len(members) == 1 else f"{text} · {sched}"


def _frame(obj: Any) -> pd.DataFrame:
    """Any table-ish object (DataFrame, list of dicts/dataclasses, dict of columns) as a DataFrame."""
    if obj is None:
        return pd.DataFrame()
    if isinstance(obj, pd.DataFrame):
        return obj.copy()
    if isinstance(obj, dict):
        return pd.DataFrame(obj)
    rows = [asdict(r) if is_dataclass(r) else (r if isinstance(r, dict) else vars(r)) for r in obj]
    return pd.DataFrame(rows)


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """First attribute / key of ``obj`` among ``names`` (specs are pydantic or plain dicts)."""
    for n in names:
        if isinstance(obj, dict) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return default


# -- per-variant scores ---------------------------------------------------------------------

def _score_fn():
    """``score_task(task, items, pred, policy)``: the evaluation stage's helper, else the task's own score."""
    try:
        from codesign.evaluate.scoring import score_task

        return score_task
    except ImportError:
        from codesign.evaluate.tasks import get_task

        tasks: dict[str, Any] = {}

        def score_task(name: str, items: pd.DataFrame, pred: np.ndarray, policy: str = "decodingtrust") -> dict:
            if name not in tasks:
                tasks[name] = get_task(name)
            return dict(tasks[name].score(items, np.asarray(pred, dtype=np.int64), policy=policy))

        return score_task


def variant_scores(store, variant_ids: list[str], tasks: list[str], mode: str, policy: str) -> pd.DataFrame:
    """Score every variant on every task from its stored answers (of the protocol ``policy``
    belongs to).

    Each variant is scored on the items it answered (a run with ``--limit`` is not penalized
    for items it never saw), through the task's own ``score`` (the same function voting uses).
    """
    from codesign.evaluate.protocols import protocol_of_policy

    score_task = _score_fn()
    protocol = protocol_of_policy(policy)
    rows = []
    for task in tasks:
        items = store.items(task, protocol)
        for vid in variant_ids:
            done = store.done_item_ids(vid, task, mode, protocol)
            if not done:
                continue
            sub = items[items["item_id"].isin(done)].reset_index(drop=True)
            _, labels = store.label_matrix(task, [vid], mode, item_ids=sub["item_id"].tolist(), protocol=protocol)
            res = score_task(task, sub, labels[0], policy)
            rows.append(dict(variant_id=vid, task=task, score=float(res["score"]),
                             refusal_rate=float(res.get("refusal_rate", np.nan)),
                             invalid_rate=float(res.get("invalid_rate", np.nan)), n=int(res.get("n", len(sub)))))
    return pd.DataFrame(rows, columns=["variant_id", "task", "score", "refusal_rate", "invalid_rate", "n"])


def trust_of(scores: pd.DataFrame) -> pd.Series:
    """Trust score per variant: mean of the trust dimensions it has scores for."""
    t = scores[scores["task"].isin(TRUST_TASKS)]
    return t.groupby("variant_id")["score"].mean()


def pick_protocol(store) -> str:
    """The evaluation protocol with the most stored outputs (the default one when none)."""
    from codesign.records import DEFAULT_PROTOCOL

    rows = store.conn.execute("SELECT protocol, COUNT(*) FROM outputs GROUP BY protocol").fetchall()
    counts = dict(rows)
    return max(counts, key=lambda p: (counts[p], p == DEFAULT_PROTOCOL)) if counts else DEFAULT_PROTOCOL


def pick_mode(store) -> str:
    """The answer mode with the most stored outputs (``generate`` on ties)."""
    rows = store.conn.execute("SELECT mode, COUNT(*) FROM outputs GROUP BY mode").fetchall()
    if not rows:
        return "generate"
    counts = dict(rows)
    return max(counts, key=lambda m: (counts[m], m == "generate"))


# -- ensembles ------------------------------------------------------------------------------

def _ensemble_frame(res: Any, tasks: list[str]) -> pd.DataFrame:
    df = _frame(res)
    if "task" not in df.columns:
        df = df.rename_axis("task").reset_index()
    return df[df["task"].isin(tasks)]


def ensemble_comparison(store, ensembles: list[list[str]], specs: dict[str, VariantSpec], scores: pd.DataFrame,
                        tasks: list[str], mode: str, policy: str, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Each ensemble vs its best single member vs the dense model of the same base model, per task."""
    from codesign.vote import score_ensemble

    rows = []
    sc = scores.set_index(["variant_id", "task"])
    dense_by_model = {s.model: vid for vid, s in specs.items() if s.is_dense}
    for members in ensembles:
        label = ensemble_label(members, specs)
        res = _ensemble_frame(score_ensemble(store, members, tasks=tasks, mode=mode, policy=policy,
                                             n_boot=n_boot, seed=seed), tasks)
        for _, r in res.iterrows():
            task = r["task"]
            rows.append(dict(ensemble=label, task=task, kind="ensemble", score=float(r["score"]),
                             ci_low=float(r.get("ci_low", np.nan)), ci_high=float(r.get("ci_high", np.nan)),
                             variant="+".join(members)))
            if pd.notna(r.get("best_member_score", np.nan)):
                # the vote module scores the best member on exactly the ensemble's items
                bvid, best = r.get("best_member"), float(r["best_member_score"])
            else:
                singles = [(sc.loc[(m, task), "score"], m) for m in members if (m, task) in sc.index]
                best, bvid = max(singles) if singles else (np.nan, None)
            if pd.notna(best):
                name = specs[bvid].short_name if bvid in specs else str(bvid)
                rows.append(dict(ensemble=label, task=task, kind="best single", score=float(best),
                                 ci_low=np.nan, ci_high=np.nan, variant=name))
            dense = dense_by_model.get(specs[members[0]].model) if members[0] in specs else None
            if dense is not None and (dense, task) in sc.index:
                rows.append(dict(ensemble=label, task=task, kind="dense", score=float(sc.loc[(dense, task), "score"]),
                                 ci_low=np.nan, ci_high=np.nan, variant="dense"))
    return pd.DataFrame(rows, columns=["ensemble", "task", "kind", "score", "ci_low", "ci_high", "variant"])


def default_ensembles(variants: pd.DataFrame, limit: int = 3) -> list[list[str]]:
    """Without a study: the quantized variants of one method and group size, across precisions."""
    q = variants[~variants["is_dense"]]
    out = []
    for _, grp in q.groupby(["model", "method", "group_size"]):
        by_bits = grp.sort_values("bits").drop_duplicates("bits")
        if len(by_bits) >= 2:
            out.append((len(by_bits), by_bits["variant_id"].tolist()))
    out.sort(key=lambda t: -t[0])
    return [m for _, m in out[:limit]]


# -- hardware -------------------------------------------------------------------------------

def _shape_for_model(model: str):
    """The hwmodels shape of a variant's base model: a built-in shape, or its transformers config."""
    import hwmodels

    tried = []
    for name in (model, model.removesuffix("-instruct"), model.split("/")[-1].lower().removesuffix("-instruct")):
        try:
            return name, hwmodels.load_shape(name)
        except Exception as exc:  # noqa: BLE001 - fall through to the next way of finding a shape
            tried.append(f"{name}: {exc}")
    from codesign.models import model_config

    return model, _shape_from_config(model_config(model).to_dict())


def _shape_from_config(cfg: dict[str, Any]):
    import tempfile

    import hwmodels

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(cfg, default=str))
        return hwmodels.load_shape(str(path))


_OP_COLS = {
    "phase": ["phase", "stage"],
    "op": ["op", "name", "operator", "kind"],
    "flops": ["flops", "flop"],
    "bytes": ["bytes", "bytes_moved", "memory_bytes", "dram_bytes"],
    "intensity": ["intensity", "arithmetic_intensity", "ai", "flops_per_byte"],
    "time_s": ["time_s"],
    "time_ms": ["time_ms"],
    "time_us": ["time_us"],
    "attained_flops": ["attained_flops", "achieved_flops", "flops_per_s", "attained_flop_s"],
    "attained_tflops": ["attained_tflops", "achieved_tflops", "tflops"],
    "bound": ["bound", "limiter", "bottleneck"],
    "dtype": ["dtype", "compute_dtype", "precision"],
    "count": ["count", "repeats", "n", "layers"],
}


def normalize_ops(ops: Any) -> pd.DataFrame:
    """An estimate's ops table as columns phase, op, flops, bytes, intensity (FLOP/byte),
    attained_flops (FLOP/s), bound, dtype — whatever the hardware model names them."""
    df = _frame(ops)
    out = pd.DataFrame(index=df.index)
    for want, names in _OP_COLS.items():
        for n in names:
            if n in df.columns:
                out[want] = df[n]
                break
    if "intensity" not in out and {"flops", "bytes"} <= set(out):
        out["intensity"] = out["flops"] / out["bytes"].replace(0, np.nan)
    if "attained_flops" not in out:
        if "attained_tflops" in out:
            out["attained_flops"] = out["attained_tflops"] * 1e12
        elif "flops" in out:
            for col, scale in (("time_s", 1.0), ("time_ms", 1e-3), ("time_us", 1e-6)):
                if col in out:
                    out["attained_flops"] = out["flops"] / (out[col] * scale).replace(0, np.nan)
                    break
    for col in ("phase", "op", "bound", "dtype"):
        if col not in out:
            out[col] = ""
    return out


def roofline_points(spec, shape, bits_gs: list[tuple[int, int]], prompt_len: int = 512,
                    gen_len: int = 128, batch: int = 1) -> pd.DataFrame:
    """Prefill and decode operators of each (bits, group size) placed on ``spec``'s roofline."""
    import hwmodels

    frames = []
    for bits, gs in bits_gs:
        est = hwmodels.estimate(spec, shape, wbits=int(bits), group_size=int(gs) if gs and gs > 0 else 128,
                                batch=batch, prompt_len=prompt_len, gen_len=gen_len)
        ops = normalize_ops(_get(est, "ops", "ops_table"))
        if ops.empty:
            continue
        ops["bits"] = int(bits)
        frames.append(ops)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    df = df[np.isfinite(df["intensity"].astype(float)) & np.isfinite(df["attained_flops"].astype(float))]
    return df[(df["intensity"] > 0) & (df["attained_flops"] > 0)].reset_index(drop=True)


def predicted_latency(meas: pd.DataFrame, default_spec: str | None) -> tuple[pd.DataFrame, str | None]:
    """Measured prefill/TPOT next to the hardware model's prediction for the same setting.

    A measurement names its spec in ``extra_json['spec']`` (written by ``codesign measure`` /
    ``calibrate``); otherwise ``default_spec`` is used. Rows with no usable spec or shape keep
    NaN predictions.
    """
    import hwmodels

    df = meas.copy()
    df["extra"] = df["extra_json"].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
    df["spec"] = df["extra"].map(lambda e: e.get("spec") or e.get("spec_name")).fillna(default_spec or "")
    pred_prefill, pred_tpot, problems = [], [], []
    shapes: dict[str, Any] = {}
    specs: dict[str, Any] = {}
    for _, r in df.iterrows():
        pp = pt = np.nan
        try:
            if not r["spec"]:
                raise ValueError("no spec")
            if r["spec"] not in specs:
                specs[r["spec"]] = hwmodels.load_spec(r["spec"])
            cfg = r["extra"].get("config")
            model = str(r["model"]).removeprefix("random:")
            key = json.dumps(cfg, sort_keys=True, default=str) if isinstance(cfg, dict) else model
            if key not in shapes:
                # the measured model's own config (it may be truncated to a few layers) beats its name
                shapes[key] = _shape_from_config(cfg) if isinstance(cfg, dict) else _shape_for_model(model)[1]
            gs = int(r["group_size"]) if pd.notna(r["group_size"]) and int(r["group_size"]) > 0 else 128
            est = hwmodels.estimate(specs[r["spec"]], shapes[key], wbits=int(r["wbits"] or DENSE_BITS),
                                    group_size=gs, batch=int(r["batch"]), prompt_len=int(r["prompt_len"]),
                                    gen_len=int(r["gen_len"]))
            pp, pt = float(est.ttft_ms), float(est.tpot_ms)
        except Exception as exc:  # noqa: BLE001 - a row we cannot predict is shown without prediction
            problems.append(f"{r['model']} on {r['spec'] or '?'}: {exc}")
        pred_prefill.append(pp)
        pred_tpot.append(pt)
    df["predicted_prefill_ms"] = pred_prefill
    df["predicted_tpot_ms"] = pred_tpot
    note = None
    if problems:
        note = f"{len(problems)} measurement(s) without a prediction (first: {problems[0]})"
    return df.drop(columns=["extra"]), note


# -- study ----------------------------------------------------------------------------------

def study_objectives(config: dict[str, Any], points: pd.DataFrame) -> list[str]:
    """The study's objectives: from its config, else those every point reports."""
    objs = config.get("objectives") if isinstance(config, dict) else None
    if isinstance(objs, dict):
        objs = list(objs)
    if isinstance(objs, (list, tuple)) and objs:
        names = [o if isinstance(o, str) else _get(o, "name") for o in objs]
        return [n for n in names if n]
    common: Counter = Counter()
    for o in points["objectives"]:
        common.update(k for k, v in o.items() if v is not None)
    return order_objectives([k for k, c in common.items() if c == len(points)])


def _study_ref_point(config: dict[str, Any], objectives: list[str]) -> np.ndarray | None:
    ref = config.get("ref_point") or config.get("reference_point") if isinstance(config, dict) else None
    if isinstance(ref, dict) and all(o in ref for o in objectives):
        from codesign.report.pareto import to_maximize

        return to_maximize(np.array([[float(ref[o]) for o in objectives]]), objectives)[0]
    return None


def collect(store, study: str | None = None, spec: str | None = None, *, mode: str | None = None,
            policy: str | None = None, n_boot: int = 200, seed: int = 0) -> ReportData:
    """Read the store (and the stages that score and cost it) into a :class:`ReportData`."""
    # the study decides which answers and which policy its objectives were scored with
    studies = store.studies()
    if study is None and studies:
        study = studies[-1]
    if study is not None and study not in studies:
        from codesign.config import ConfigError

        raise ConfigError(f"{store.path}: no study named {study!r} (studies in this store: {studies or 'none'})")
    study_config: dict[str, Any] = {}
    if study is not None:
        row = store.conn.execute("SELECT config_json FROM studies WHERE name=?", (study,)).fetchone()
        study_config = json.loads(row[0]) if row else {}
    from codesign.evaluate.protocols import legacy_scoring, resolve_scoring

    mode = mode or study_config.get("mode") or pick_mode(store)
    # a policy names its protocol; a study's config names both (older configs: codesign, see legacy_scoring)
    protocol, policy = resolve_scoring(None, policy) if policy else \
        legacy_scoring(study_config) if study_config else resolve_scoring(pick_protocol(store), None)
    data = ReportData(store_path=str(store.path), mode=mode, policy=policy)
    data.study_config = study_config

    # variants and their scores ---------------------------------------------------------------
    vframe = store.frame("variants")
    specs = {vid: VariantSpec.from_dict(json.loads(js)) for vid, js in zip(vframe["variant_id"], vframe["spec_json"])}
    data.variants = pd.DataFrame([
        dict(variant_id=vid, label=s.short_name, model=s.model, method=s.method, bits=s.bits,
             group_size=s.group_size, is_dense=s.is_dense) for vid, s in specs.items()],
        columns=["variant_id", "label", "model", "method", "bits", "group_size", "is_dense"])
    stored_tasks = [t for t in store.tasks(protocol)]
    data.tasks = [t for t in TASK_ORDER if t in stored_tasks] + sorted(set(stored_tasks) - set(TASK_ORDER))
    data.dimensions = {t: DIMENSION_NAMES.get(t, t) for t in data.tasks}
    try:
        from codesign.evaluate.tasks import get_task

        for t in data.tasks:
            data.dimensions[t] = getattr(get_task(t, protocol=protocol), "dimension", None) or data.dimensions[t]
    except Exception:  # noqa: BLE001 - display names only
        pass
    evaluated = [v for v in store.evaluated_variants(mode=mode, protocol=protocol) if v in specs]
    if not evaluated:
        data.notes["scores"] = f"No stored answers (mode {mode!r}) in {store.path}: run `codesign eval` first."
    else:
        try:
            data.scores = variant_scores(store, evaluated, data.tasks, mode, policy)
        except ImportError as exc:
            data.notes["scores"] = f"Per-variant scores unavailable (task scoring not importable: {exc})."

    # study -------------------------------------------------------------------------------------
    data.study = study
    if study is None:
        data.notes["study"] = "No explore study in this store: Pareto fronts, recommendations and the optimizer " \
                              "trace are omitted (run `codesign explore`)."
    else:
        pts = store.study_points(study)
        if pts.empty:
            data.notes["study"] = f"Study {study!r} has no evaluated points yet."
        else:
            pts["members"] = pts["config"].map(lambda c: list(c.get("members") or []))
            pts["schedule"] = pts["config"].map(lambda c: c.get("schedule") or "")
            pts["n_members"] = pts["members"].map(len)
            pts["label"] = pts["config"].map(lambda c: point_label(c, specs))
            spec_names = pts["config"].map(lambda c: str(c.get("spec") or ""))
            if spec_names.nunique() > 1:  # the same ensemble on two accelerators must read differently
                pts["label"] = pts["label"] + " @ " + spec_names
            data.points = pts
            data.objectives = study_objectives(data.study_config, pts)
            data.constraints = parse_constraints(data.study_config)
            primary = "trust" if "trust" in data.objectives else next(
                (o for o in data.objectives if o in MAXIMIZE), data.objectives[0])
            data.recommendations, data.candidates = recommend(pts, data.objectives, data.constraints, primary)
            if len(data.objectives) >= 2:
                data.hv = hv_trace(pts, data.objectives, _study_ref_point(data.study_config, data.objectives))

    # ensembles vs best single vs dense --------------------------------------------------------
    if not data.scores.empty:
        ens: list[list[str]] = []
        for r in data.recommendations:
            m = [v for v in r.point.get("members", []) if v in specs]
            if len(m) >= 2 and m not in ens:
                ens.append(m)
        if not ens:
            ens = default_ensembles(data.variants[data.variants["variant_id"].isin(evaluated)])
        if ens:
            try:
                data.ensembles = ensemble_comparison(store, ens[:3], specs, data.scores, data.tasks, mode, policy,
                                                     n_boot=n_boot, seed=seed)
            except ImportError as exc:
                data.notes["ensembles"] = f"Ensemble scores unavailable (voting not importable: {exc})."
        else:
            data.notes["ensembles"] = "No ensemble to compare: fewer than two precisions of one method evaluated."

    # hardware ---------------------------------------------------------------------------------
    data.spec_name = spec or _study_spec(data) or DEFAULT_SPEC
    try:
        import hwmodels

        data.spec = hwmodels.load_spec(data.spec_name)
    except ImportError as exc:
        data.notes["hardware"] = f"Hardware model unavailable ({exc})."
    except Exception as exc:
        if spec is not None:
            raise
        data.notes["hardware"] = f"Accelerator spec {data.spec_name!r} not found ({exc}); pass --spec."
    if data.spec is not None and not data.variants.empty:
        model = Counter(data.variants["model"]).most_common(1)[0][0]
        try:
            data.shape_name, shape = _shape_for_model(model)
            bits_gs = sorted({(int(b), int(g)) for b, g in zip(data.variants["bits"], data.variants["group_size"])})
            # one group size per precision keeps the chart readable
            seen: dict[int, int] = {}
            for b, g in bits_gs:
                seen.setdefault(b, g)
            data.roofline = roofline_points(data.spec, shape, sorted(seen.items()))
            if data.roofline.empty:
                data.notes["roofline"] = "The hardware model returned no operator table; roofline omitted."
        except Exception as exc:  # noqa: BLE001
            data.notes["roofline"] = f"No model shape for {model!r} ({exc}); roofline omitted."
    meas = store.frame("measurements")
    if meas.empty:
        data.notes["latency"] = "No latency measurements in the store (run `codesign measure`)."
    else:
        try:
            data.latency, note = predicted_latency(meas, data.spec_name if data.spec is not None else None)
            if note:
                data.notes["latency"] = note
        except ImportError as exc:
            data.latency = meas
            data.notes["latency"] = f"Predictions unavailable (hardware model not importable: {exc})."
    return data


def _study_spec(data: ReportData) -> str | None:
    if data.points.empty:
        return data.study_config.get("spec") if isinstance(data.study_config.get("spec"), str) else None
    specs = Counter(c.get("spec") for c in data.points["config"] if c.get("spec"))
    return specs.most_common(1)[0][0] if specs else None
