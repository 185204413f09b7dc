"""The trust study's findings.py: the numbers its README quotes, from a real SQLite store and CSVs."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "trust_study"))


def test_findings_from_store_and_tables(tmp_path):
    from findings import agreement_with_dense, findings

    from codesign.quantize import Catalogue
    from codesign.store import ItemRow, OutputRow, ResultStore

    specs = Catalogue(model="tiny-llama", methods=["rtn"], bits=[3, 4], group_sizes=[32],
                      include_dense=True).variants()
    dense = next(s for s in specs if s.is_dense)
    w3, w4 = (next(s for s in specs if s.bits == b) for b in (3, 4))
    ids = [f"i{k}" for k in range(4)]
    answers = {dense: [0, 1, 0, 1], w3: [0, 0, 0, 0], w4: [0, 1, 0, 1]}
    with ResultStore(tmp_path / "r.db") as store:
        store.add_items([ItemRow("mmlu", i, "x", 0) for i in ids])
        store.add_outputs([OutputRow(s.variant_id, "mmlu", i, lab, mode="loglik")
                           for s, labs in answers.items() for i, lab in zip(ids, labs)])
        assert agreement_with_dense(store, specs, {"mmlu": ids}, "loglik") == {w3.short_name: 0.5, w4.short_name: 1.0}
        assert agreement_with_dense(store, [w3, w4], {"mmlu": ids}, "loglik") == {}  # no dense: nothing to compare
        pd.DataFrame([{"variant": v, "task": t, "score": sc} for v, t, sc in
                      [("a", "mmlu", 10), ("a", "ethics", 60), ("a", "ood", 40)]]).to_csv(tmp_path / "variants.csv")
        pd.DataFrame([{"ensemble": "e", "task": t, "score": sc, "dense_score": 50, "delta_vs_best": d,
                       "delta_ci_low": lo, "delta_ci_high": hi, "best_member": "a"}
                      for t, sc, d, lo, hi in [("ethics", 70, 5, 1, 9), ("ood", 40, -8, -12, -2), ("mmlu", 45, 0, -3, 3)]]
                     ).to_csv(tmp_path / "ensembles.csv")
        out = findings(store, specs, {"mmlu": ids}, "loglik", tmp_path)
    assert out["trust"] == {"a": 50.0}  # MMLU is not a trust dimension
    e = out["ensembles"]
    assert (e["comparisons"], e["above_best"], e["below_best"], e["within"], e["above_dense"]) == (3, 1, 1, 1, 1)
    assert (tmp_path / "findings.json").exists() and "generate_by_bits" not in out
