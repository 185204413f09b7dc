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
    """Every variant on every task, scored from its stored answers on the items it answered (a run with
    ``--limit`` is not penalised for items it never saw) by the evaluation stage's own scoring.

    Returns:
        Long frame: variant_id, task, score, refusal_rate, invalid_rate, n.
    """
    from codesign.evaluate.scoring import score_items

    rows = []
    for task in tasks:
        for vid in variant_ids:
            if not store.done_item_ids(vid, task, mode):
                continue
            res = score_items(store, vid, task, None, mode, policy)
            rows.append(dict(variant_id=vid, task=task, score=float(res["score"]),
                             refusal_rate=float(res.get("refusal_rate", float("nan"))),
                             invalid_rate=float(res.get("invalid_rate", float("nan"))), n=int(res.get("n", 0))))
    return pd.DataFrame(rows, columns=["variant_id", "task", "score", "refusal_rate", "invalid_rate", "n"])


def pick_mode(store) -> str:
    """The answer mode with the most stored outputs (``generate`` on ties)."""
    rows = store.conn.execute("SELECT mode, COUNT(*) FROM outputs GROUP BY mode").fetchall()
    if not rows:
        return "generate"
    counts = dict(rows)
    return max(counts, key=lambda m: (counts[m], m == "generate"))
