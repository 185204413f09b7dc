"""Score a precision ensemble from the result store, exactly like a single variant.

An ensemble's answers are computed item by item from its members' stored answers (the voting
core in :mod:`codesign.voting`), then handed to the task's own ``score()`` — the same metric code
the evaluation stage uses for single variants, refusal rate included. Confidence intervals come
from a bootstrap over items, stratified by subtask (DecodingTrust scores average subtasks, so
their mix is held fixed), with a paired interval for "ensemble minus best single member".
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from codesign import objectives
from codesign.config import ConfigError
from codesign.evaluate.metrics import POLICIES
from codesign.evaluate.protocols import resolve_scoring
from codesign.records import ANSWER_MODES, INVALID, REFUSED, VariantSpec, ensemble_label
from codesign.store import ResultStore
from codesign.voting import weighted_vote

MODES = ANSWER_MODES


# -- task access (the evaluation stage's registry) -------------------------------------------
@functools.lru_cache(maxsize=None)
def get_task(name: str, protocol: str | None = None):
    """The evaluation task object for ``name`` under ``protocol`` (``codesign.evaluate.tasks``
    registry), built once."""
    from codesign.evaluate.tasks import get_task as _get, task_names

    allowed = task_names(protocol)
    if name not in allowed:
        raise ConfigError(f"--task: unknown task {name!r} (allowed: {allowed})")
    return _get(name, protocol=protocol)


def score_predictions(task: str, items: pd.DataFrame, pred: np.ndarray, policy: str | None = None,
                      protocol: str | None = None) -> dict:
    """The task's own metrics for aligned predictions (the ensemble is one more variant)."""
    from codesign.evaluate.scoring import score_task

    return dict(score_task(task, items, np.asarray(pred, dtype=np.int64), policy, protocol=protocol))


def check_choice(value: str, allowed: Sequence[str], flag: str) -> str:
    if value not in allowed:
        raise ConfigError(f"--{flag}: {value!r} is not allowed (allowed: {list(allowed)})")
    return value


# -- members ---------------------------------------------------------------------------------
def resolve_members(store: ResultStore, names: str | Sequence[str] | None, mode: str | None = None) -> list[str]:
    """Turn user-given member names into variant ids.

    Each name may be a full variant id, a variant's short name (``gptq-w4g128``, ``dense``) or a
    unique prefix of an id. ``None``/empty selects every variant with stored answers (in ``mode``),
    ordered by precision, highest first.
    """
    known = store.frame("variants")
    evaluated = set(store.evaluated_variants(mode=mode))
    ids = known["variant_id"].tolist()
    if names is None or (isinstance(names, str) and not names.strip()) or (not isinstance(names, str) and not names):
        if not evaluated:
            raise ConfigError(f"{store.path}: no stored answers{f' in mode {mode!r}' if mode else ''}; "
                              "run `codesign eval` first")
        chosen = [v for v in ids if v in evaluated]
        chosen += sorted(evaluated - set(chosen))
        bits = {v: b for v, b in zip(known["variant_id"], known["bits"])}
        return sorted(chosen, key=lambda v: -bits.get(v, 0))
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    shorts: dict[str, list[str]] = {}
    for vid, spec_json in zip(known["variant_id"], known["spec_json"]):
        shorts.setdefault(VariantSpec.from_dict(json.loads(spec_json)).short_name, []).append(vid)
    out: list[str] = []
    for name in names:
        if name in ids or name in evaluated:
            match = [name]
        elif name in shorts:
            match = shorts[name]
        else:
            match = [v for v in sorted(set(ids) | evaluated) if v.startswith(name)]
            if not match:  # a unique prefix of a short name, e.g. "rtn-w8"
                match = sorted({v for short, vs in shorts.items() if short.startswith(name) for v in vs})
        if len(match) != 1:
            allowed = sorted(set(ids) | evaluated)
            what = "matches no variant" if not match else f"is ambiguous (matches {match})"
            raise ConfigError(f"--members: {name!r} {what} in {store.path} "
                              f"(allowed: variant ids, short names {sorted(shorts)} or unique prefixes of either; "
                              f"known ids: {allowed})")
        if match[0] in out:
            raise ConfigError(f"--members: {name!r} names {match[0]} twice")
        out.append(match[0])
    return out


def member_bits(store: ResultStore, members: Sequence[str]) -> np.ndarray:
    """``(members,)`` precision of each member (from the variants table)."""
    try:
        return store.variant_bits(list(members))
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


# -- answers ---------------------------------------------------------------------------------
@dataclass
class MemberAnswers:
    """Stored answers of several variants on one task, aligned on the items all of them answered.

    Attributes:
        task: task name.
        members: ``(members,)`` variant ids, in the order given.
        bits: ``(members,)`` precisions.
        items: ``ResultStore.items(task)`` restricted to the common items (``(items,)`` rows,
            sorted by item id).
        labels: ``(members, items)`` outcome codes.
        keep_refusal: ``(items,)`` bool, REFUSED is a label of its own for this item's subtask.
        dropped: items in the task that some member has no stored answer for.
    """

    task: str
    members: list[str]
    bits: np.ndarray
    items: pd.DataFrame
    labels: np.ndarray
    keep_refusal: np.ndarray
    dropped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def subset(self, mask: np.ndarray) -> "MemberAnswers":
        """The same members on the items where ``mask`` (``(items,)`` bool) holds."""
        mask = np.asarray(mask, dtype=bool)
        return MemberAnswers(self.task, self.members, self.bits, self.items[mask].reset_index(drop=True),
                             self.labels[:, mask], self.keep_refusal[mask], self.dropped, dict(self.extra))

    def vote(self, weights: Sequence[float] | None = None, rows: Sequence[int] | None = None) -> np.ndarray:
        """Ensemble answers ``(items,)`` of the members in ``rows`` (default all), per-subtask refusal rule.

        An ensemble of one member is that member, answers unchanged (the voting rule would turn its
        INVALID answers into REFUSED), so it scores exactly like the variant alone everywhere.
        """
        rows = np.arange(len(self.members)) if rows is None else np.asarray(rows)
        if rows.size == 1:
            return self.labels[int(rows[0])].copy()
        labels, bits = self.labels[rows], self.bits[rows]
        w = None if weights is None else np.asarray(weights, dtype=np.float64)[rows]
        pred = np.full(labels.shape[1], REFUSED, dtype=np.int64)
        for keep in (False, True):
            sel = self.keep_refusal == keep
            if sel.any():
                pred[sel] = weighted_vote(labels[:, sel], bits, w, keep_refusal=keep)
        return pred


def load_answers(store: ResultStore, task: str, members: Sequence[str], mode: str = "generate",
                 bits: np.ndarray | None = None, protocol: str | None = None) -> MemberAnswers:
    """Members' stored answers on ``task`` under ``protocol`` (one query), aligned on the items
    every member answered.

    Items some member never answered are left out for all (an ensemble must not be charged for a
    member that was not run); the count is kept in ``dropped``.
    """
    members = list(members)
    if not members:
        raise ConfigError("--members: an ensemble needs at least one member")
    protocol = resolve_scoring(protocol, None)[0]
    items = store.items(task, protocol)
    if items.empty:
        raise ConfigError(f"{store.path}: task {task!r} has no stored items under protocol {protocol!r} "
                          f"(tasks with answers: {store.tasks(protocol)}; protocols: {store.protocols()})")
    marks = ",".join("?" * len(members))
    rows = pd.read_sql_query(
        f"SELECT variant_id, item_id, label FROM outputs WHERE protocol=? AND task=? AND mode=? "
        f"AND variant_id IN ({marks})", store.conn, params=[protocol, task, mode, *members])
    missing = [m for m in members if m not in set(rows["variant_id"])]
    if missing:
        raise ConfigError(f"{store.path}: no stored {mode!r} answers on task {task!r} ({protocol} protocol) for "
                          f"{missing} (variants with answers: {store.evaluated_variants(task, mode, protocol)})")
    wide = rows.pivot(index="item_id", columns="variant_id", values="label")
    wide = wide.reindex(index=items["item_id"], columns=members)
    complete = wide.notna().all(axis=1).to_numpy()
    if not complete.any():
        raise ConfigError(f"{store.path}: no {task!r} item was answered ({mode!r}) by every member of {members}; "
                          "evaluate them on the same items (same --limit and --seed)")
    labels = wide.to_numpy()[complete].T.astype(np.int64)
    kept = items[complete].reset_index(drop=True)
    task_obj = get_task(task, protocol)
    keep = np.array([bool(task_obj.keeps_refusal(s)) for s in kept["subtask"]], dtype=bool)
    return MemberAnswers(task, members, member_bits(store, members) if bits is None else np.asarray(bits),
                         kept, labels, keep, dropped=int((~complete).sum()))


def ensemble_predictions(store: ResultStore, task: str, members: Sequence[str], mode: str = "generate",
                         weights: Sequence[float] | None = None,
                         protocol: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The ensemble's answer to every item all members answered.

    Returns:
        ``(items, pred)``: the items frame (``ResultStore.items`` rows) and ``(items,)`` int64
        labels / REFUSED, ready for the task's ``score()``.
    """
    ans = load_answers(store, task, members, mode, protocol=protocol)
    return ans.items, ans.vote(weights)


# -- bootstrap -------------------------------------------------------------------------------
def bootstrap_indices(subtasks: Sequence[str] | np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """Resampled item indices, stratified by subtask (each subtask keeps its size).

    Returns:
        ``(n_boot, items)`` int array; row ``b`` indexes the items of resample ``b``.
    """
    subtasks = np.asarray(subtasks)
    n = subtasks.size
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, n), dtype=np.int64)
    for sub in np.unique(subtasks):  # loop over subtasks (few), vectorized over resamples
        idx = np.flatnonzero(subtasks == sub)
        out[:, idx] = idx[rng.integers(0, idx.size, size=(n_boot, idx.size))]
    return out


def bootstrap_metric(score_fn: Callable[[pd.DataFrame, np.ndarray], dict], items: pd.DataFrame,
                     preds: Sequence[np.ndarray], boot_idx: np.ndarray, key: str = "score",
                     progress: str | None = None) -> np.ndarray:
    """``key`` of ``score_fn`` on every resample, for several aligned prediction vectors.

    Args:
        preds: ``P`` arrays of shape ``(items,)`` scored on the same resamples (paired).
        boot_idx: ``(n_boot, items)`` from :func:`bootstrap_indices`.
        progress: a progress-bar label, or ``None`` for no bar.

    Returns:
        ``(P, n_boot)`` float array (NaN where the metric is undefined on a resample).
    """
    out = np.full((len(preds), boot_idx.shape[0]), np.nan)
    rows = boot_idx
    if progress:
        from tqdm import tqdm

        rows = tqdm(boot_idx, desc=progress, unit="resample", leave=False)
    for b, idx in enumerate(rows):
        sample = items.iloc[idx].reset_index(drop=True)
        for p, pred in enumerate(preds):
            val = score_fn(sample, pred[idx]).get(key)
            if val is not None:
                out[p, b] = float(val)
    return out


def _ci(values: np.ndarray, confidence: float) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


# -- scoring ---------------------------------------------------------------------------------
def ensemble_name(members: Sequence[str], store: ResultStore) -> str:
    """The ensemble's :func:`~codesign.records.ensemble_label` (e.g. ``rtn-w4g128+rtn-w8g128+dense``)."""
    return ensemble_label([store.variant_spec(m) for m in members])


def _flat(metrics: dict, prefix: str = "") -> dict:
    """Keep the scalar metrics of a score dict (nested dicts flattened with dots)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, np.integer, np.floating, bool, str)) or v is None:
            out[f"{prefix}{k}"] = v.item() if isinstance(v, np.generic) else v
    return out


def score_members(store: ResultStore, members: Sequence[str], tasks: Sequence[str] | None = None,
                  mode: str = "generate", policy: str | None = None, protocol: str | None = None) -> pd.DataFrame:
    """Each member alone on the items the ensemble is scored on (one row per task and member)."""
    protocol, policy = resolve_scoring(protocol, policy)
    rows = []
    for task in _tasks(store, tasks, mode, members, protocol):
        ans = load_answers(store, task, members, mode, protocol=protocol)
        for i, vid in enumerate(ans.members):
            m = score_predictions(task, ans.items, ans.labels[i], policy, protocol)
            rows.append({"task": task, "variant_id": vid, "bits": int(ans.bits[i]), **_flat(m)})
    return pd.DataFrame(rows)


def _tasks(store: ResultStore, tasks: Sequence[str] | str | None, mode: str,
           members: Sequence[str] | None = None, protocol: str | None = None) -> list[str]:
    """Validated task names; by default every task on which all ``members`` have stored answers
    under ``protocol``."""
    check_choice(mode, MODES, "mode")
    protocol = resolve_scoring(protocol, None)[0]
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if not tasks:
        from codesign.evaluate.tasks import task_names

        need = set(members or [])
        stored = [t for t in store.tasks(protocol) if need <= set(store.evaluated_variants(t, mode, protocol))
                  and store.evaluated_variants(t, mode, protocol)]
        if not stored:
            raise ConfigError(f"{store.path}: no task has stored {mode!r} answers ({protocol} protocol) from every "
                              f"member {sorted(need)}; run `codesign eval` first or pick --task/--members/--protocol "
                              f"(protocols with answers: {store.protocols()})")
        order = task_names(protocol)  # pipeline-report order: mmlu, advglue, fairness, ethics, ood
        tasks = sorted(stored, key=lambda t: (order.index(t) if t in order else len(order), t))
    for t in tasks:
        get_task(t, protocol)
    return list(tasks)


def _versus_best(ens: dict, mem: list[dict], members: Sequence[str], bits: np.ndarray, task: str) -> dict[str, Any]:
    """The ensemble against its best member (None / NaN where the task is not compared with members)."""
    out: dict[str, Any] = dict(best_member=None, best_member_bits=None, best_member_score=np.nan,
                               best_member_refusal_rate=np.nan, delta_vs_best=np.nan, delta_ci_low=np.nan,
                               delta_ci_high=np.nan)
    if not objectives.compared_with_members(task):
        return out
    scores = np.array([np.nan if m.get("score") is None else float(m["score"]) for m in mem])
    best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0
    out.update(best_member=members[best], best_member_bits=int(bits[best]), best_member_score=mem[best].get("score"),
               best_member_refusal_rate=mem[best].get("refusal_rate"))
    if ens.get("score") is not None and mem[best].get("score") is not None:
        out["delta_vs_best"] = ens["score"] - mem[best]["score"]
    return out


def score_ensemble(store: ResultStore, members: Sequence[str], tasks: Sequence[str] | None = None,
                   mode: str = "generate", policy: str | None = None, n_boot: int = 1000, seed: int = 0,
                   confidence: float = 0.95, weighting: str = "none", val_fraction: float = 0.3,
                   progress: bool = False, protocol: str | None = None) -> pd.DataFrame:
    """Score the precision ensemble of ``members`` on each task, beside its best single member.

    Args:
        members: variant ids (see :func:`resolve_members` for names).
        tasks: task names; default every task with stored answers in ``mode``.
        mode: ``generate`` or ``loglik`` answers.
        policy: scoring policy of ``protocol`` (default its own: ``decodingtrust`` for the
            decodingtrust protocol; ``answered`` or ``strict`` for codesign's).
        n_boot: bootstrap resamples over items for the confidence intervals (0 = none).
        confidence: two-sided level of the percentile intervals.
        weighting: ``none`` (the study's unweighted rule) or ``accuracy`` (each member's vote
            weighs its accuracy on a held-out validation slice of the task's items; all numbers
            are then reported on the remaining items only, see :mod:`codesign.vote.weighted`).
        val_fraction: share of items (per subtask) held out for the weights.

    Returns:
        One row per task: ``task, dimension, ensemble, n, score, refusal_rate, invalid_rate,
        ci_low, ci_high, compared_with_members, best_member, best_member_bits, best_member_score,
        best_member_refusal_rate, delta_vs_best, delta_ci_low, delta_ci_high`` (the best-member
        columns None / NaN where the task is not compared with members), the ensemble's other
        metrics, and ``members_score`` / ``members_refusal_rate`` (dicts variant id -> value).
    """
    from codesign.vote.weighted import WEIGHTINGS, accuracy_weights

    protocol, policy = resolve_scoring(protocol, policy)
    check_choice(weighting, WEIGHTINGS, "weighting")
    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence: {confidence} is not allowed (allowed: 0 < confidence < 1)")
    if n_boot < 0:
        raise ConfigError(f"--n-boot: {n_boot} is not allowed (allowed: >= 0)")
    members = list(members)
    rows = []
    for task in _tasks(store, tasks, mode, members, protocol):
        ans = load_answers(store, task, members, mode, protocol=protocol)
        weights = None
        if weighting == "accuracy":
            weights, val_mask = accuracy_weights(ans, fraction=val_fraction, seed=seed)
            ans = ans.subset(~val_mask)
        task_obj = get_task(task, protocol)
        pred = ans.vote(weights)
        ens = score_predictions(task, ans.items, pred, policy, protocol)
        mem = [score_predictions(task, ans.items, ans.labels[i], policy, protocol) for i in range(len(members))]
        row: dict[str, Any] = {
            "task": task, "dimension": getattr(task_obj, "dimension", task),
            "ensemble": ensemble_name(members, store), "weighting": weighting,
            "n": int(len(ans.items)), "dropped_items": ans.dropped,
            "score": ens.get("score"), "refusal_rate": ens.get("refusal_rate"),
            "invalid_rate": ens.get("invalid_rate"), "ci_low": np.nan, "ci_high": np.nan,
            "compared_with_members": objectives.compared_with_members(task),
            **_versus_best(ens, mem, members, ans.bits, task),
        }
        if n_boot > 0 and len(ans.items) > 0:
            idx = bootstrap_indices(ans.items["subtask"].to_numpy(), n_boot, seed)
            fn = lambda df, p: score_predictions(task, df, p, policy, protocol)  # noqa: E731
            best = members.index(row["best_member"]) if row["compared_with_members"] else None
            preds = [pred] + ([ans.labels[best]] if best is not None else [])
            vals = bootstrap_metric(fn, ans.items, preds, idx, progress=f"bootstrap {task}" if progress else None)
            row["ci_low"], row["ci_high"] = _ci(vals[0], confidence)
            if best is not None:  # paired: the same resamples for the ensemble and its best member
                row["delta_ci_low"], row["delta_ci_high"] = _ci(vals[0] - vals[1], confidence)
        for k, v in _flat(ens).items():
            row.setdefault(k, v)
        row["members_score"] = {vid: m.get("score") for vid, m in zip(members, mem)}
        row["members_refusal_rate"] = {vid: m.get("refusal_rate") for vid, m in zip(members, mem)}
        if weights is not None:
            row["weights"] = {vid: float(w) for vid, w in zip(members, weights)}
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = [
    "INVALID", "REFUSED", "MODES", "POLICIES", "MemberAnswers", "bootstrap_indices", "bootstrap_metric",
    "ensemble_name", "ensemble_predictions", "get_task", "load_answers", "member_bits", "resolve_members",
    "score_ensemble", "score_members", "score_predictions",
]
