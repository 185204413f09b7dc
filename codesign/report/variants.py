"""Report collector: the store's variants and each one's score per dimension."""

from __future__ import annotations

import pandas as pd

from codesign.records import VariantSpec


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


def variant_scores(store, variant_ids: list[str], tasks: list[str], mode: str, policy: str) -> pd.DataFrame:
    """Every variant on every task it answered, scored by the evaluation stage
    (:func:`codesign.evaluate.scoring.variant_scores`: its stored answers on the items it answered,
    so a run with ``--limit`` is not penalised for items it never saw).

    Returns:
        Long frame: variant_id, task, score, refusal_rate, invalid_rate, n.
    """
    from codesign.evaluate import scoring

    cols = ["variant_id", "task", "score", "refusal_rate", "invalid_rate", "n"]
    frames = [scoring.variant_scores(store, vid, tasks, mode, policy) for vid in variant_ids]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    order = {t: i for i, t in enumerate(tasks)}  # task-major, as the tables and figures read it
    df = df.assign(_t=df["task"].map(order)).sort_values("_t", kind="stable").drop(columns="_t")
    return df[cols].astype({"score": float, "refusal_rate": float, "invalid_rate": float, "n": int})


def pick_mode(store) -> str:
    """The answer mode with the most stored outputs (``generate`` on ties)."""
    rows = store.conn.execute("SELECT mode, COUNT(*) FROM outputs GROUP BY mode").fetchall()
    if not rows:
        return "generate"
    counts = dict(rows)
    return max(counts, key=lambda m: (counts[m], m == "generate"))
