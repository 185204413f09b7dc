"""End to end on real models: a tiny random-weight Llama quantized with RTN at three precisions,
evaluated (log-likelihood answers) into a real store, then voted through the ``codesign vote`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from codesign.records import VariantSpec
from codesign.store import ResultStore


def test_quantize_evaluate_vote(tmp_path, data_dir):
    from codesign.evaluate import evaluate_catalogue
    from codesign.vote import ensemble_predictions, score_ensemble
    from codesign.voting import precision_ensemble_vote

    specs = [VariantSpec("tiny-llama"), VariantSpec("tiny-llama", "rtn", 8, group_size=32),
             VariantSpec("tiny-llama", "rtn", 2, group_size=32)]
    ids = [s.variant_id for s in specs]
    path = tmp_path / "results.db"
    with ResultStore(path) as store:
        evaluate_catalogue(specs, store, tasks=["mmlu", "ood"], mode="loglik", limit=6, data_dir=data_dir,
                           progress=False, device="cpu")
        items, pred = ensemble_predictions(store, "mmlu", ids, mode="loglik")
        _, labels = store.label_matrix("mmlu", ids, mode="loglik")
        assert len(items) == 6
        np.testing.assert_array_equal(pred, precision_ensemble_vote(labels, [16, 8, 2]))
        df = score_ensemble(store, ids, mode="loglik", n_boot=50)
        assert df["task"].tolist() == ["mmlu", "ood"]
        assert df["n"].tolist() == [6, 6]
    res = subprocess.run([sys.executable, "-m", "codesign", "vote", "--store", str(path), "--mode", "loglik",
                          "--members", "dense,rtn-w8g32,rtn-w2g32", "--n-boot", "50", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    by_task = {r["task"]: r for r in doc["tasks"]}
    for _, row in df.iterrows():
        assert by_task[row["task"]]["score"] == pytest.approx(row["score"], nan_ok=True)
        assert set(by_task[row["task"]]["members_score"]) == set(ids)
