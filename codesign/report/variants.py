"""Report collector: the store's variants and each one's score per dimension."""

from __future__ import annotations

import pandas as pd

from codesign.records import DEFAULT_PROTOCOL, VariantSpec


def variant_specs(store) -> dict[str, VariantSpec]:
    """Every stored variant by id."""
    import json

    v = store.frame("variants")
    return {vid: VariantSpec.from_dict(json.loads(js)) for vid, js in zip(v["variant_id"], v["spec_json"])}


def variants_frame(specs: dict[str, VariantSpec]) -> pd.DataFrame:
    """One row per variant: variant_id, label, model, method, bits, group_size, is_dense."""
    return pd.DataFrame([dict(variant_id=vid, label=s.short_name, model=s.model, method=s.method, bits=s.bits,
                              group_size=s.group_size, is_dense=s.is_dense) for vid, s in specs.items()],
                        columns=["variant_id", "label", "model", "method", "bits", "group_size", "is_dense"])


def variant_scores(store, variant_ids: list[str], tasks: list[str], mode: str, policy: str,
                   protocol: str | None = None) -> pd.DataFrame:
    """Every variant on every task it answered (under ``protocol``), scored by the evaluation stage
    (:func:`codesign.evaluate.scoring.variant_scores`: its stored answers on the items it answered,
    so a run with ``--limit`` is not penalised for items it never saw).

    Returns:
        Long frame: variant_id, task, score, refusal_rate, invalid_rate, n.
    """
    from codesign.evaluate import scoring

    cols = ["variant_id", "task", "score", "refusal_rate", "invalid_rate", "n"]
    frames = [scoring.variant_scores(store, vid, tasks, mode, policy, protocol) for vid in variant_ids]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    order = {t: i for i, t in enumerate(tasks)}  # task-major, as the tables and figures read it
    df = df.assign(_t=df["task"].map(order)).sort_values("_t", kind="stable").drop(columns="_t")
    return df[cols].astype({"score": float, "refusal_rate": float, "invalid_rate": float, "n": int})


#: What :func:`most_stored` answers on ties or for a store without answers.
_PREFERRED = {"mode": "generate", "protocol": DEFAULT_PROTOCOL}


def most_stored(store, column: str) -> str:
    """The answer ``mode`` or evaluation ``protocol`` with the most stored outputs (ties and an
    empty store: ``generate``, the default protocol)."""
    if column not in _PREFERRED:
        raise ValueError(f"most_stored: {column!r} (allowed: {sorted(_PREFERRED)})")
    counts = dict(store.conn.execute(f"SELECT {column}, COUNT(*) FROM outputs GROUP BY {column}").fetchall())
    return max(counts, key=lambda v: (counts[v], v == _PREFERRED[column])) if counts else _PREFERRED[column]
