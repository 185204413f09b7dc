"""End to end: every task on a tiny random model into a temporary store (rows, score ranges,
resume without duplicates), generation correctness against HF ``generate``, loglik mode, the
CLI, and one slow run on the real SmolLM2."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from codesign.evaluate import evaluate_variant, variant_scores
from codesign.evaluate.generation import (BatchGenerator, OptionScorer, chat_ids, common_prefix_length,
                                          plan_batches)
from codesign.evaluate.runner import prepare_tasks
from codesign.evaluate.tasks import task_names
from codesign.records import INVALID, REFUSED, VariantSpec, outcome_name

LIMIT = 5


def _check_scores(results, n):
    for task, r in results.items():
        assert r["n"] == n, task
        assert 0.0 <= r["refusal_rate"] <= 1.0 and 0.0 <= r["invalid_rate"] <= 1.0
        assert math.isnan(r["score"]) or 0.0 <= r["score"] <= 100.0, (task, r["score"])


def test_every_task_end_to_end_and_resume(tiny_llama, store, data_dir):
    spec = VariantSpec(model="tiny-llama")
    vid = spec.variant_id
    tasks = task_names()
    results = evaluate_variant(tiny_llama, spec, store, tasks=tasks, limit=LIMIT, data_dir=data_dir,
                               batch_size=4, progress=False)
    assert set(results) == set(tasks)
    _check_scores(results, LIMIT)
    out = store.frame("outputs")
    assert len(out) == LIMIT * len(tasks)
    assert (out.groupby("task").size() == LIMIT).all()
    assert (out["outcome"] == out["label"].map(outcome_name)).all()
    assert out["latency_s"].gt(0).all() and out["raw_text"].notna().all()
    items = store.frame("items")
    assert (items.groupby("task").size() == LIMIT).all()
    runs = store.frame("eval_runs")
    assert len(runs) == len(tasks) and (runs["device"] == "cpu").all()
    assert (runs["prompt_tok_s"] > 0).all() and (runs["gen_tok_s"] > 0).all() and (runs["tpot_ms"] > 0).all()
    assert (runs["peak_mem_bytes"] > 10 * 2**20).all() and (runs["n_items"] == LIMIT).all()

    # Re-running does nothing: no new outputs, no new eval_runs row.
    again = evaluate_variant(tiny_llama, spec, store, tasks=tasks, limit=LIMIT, data_dir=data_dir, progress=False)
    assert len(store.frame("outputs")) == len(out) and len(store.frame("eval_runs")) == len(tasks)
    assert {t: r["score"] for t, r in again.items()} == pytest.approx({t: r["score"] for t, r in results.items()},
                                                                       nan_ok=True)

    # A run killed midway: drop some stored answers, re-run, get exactly those back (no duplicates).
    with store.transaction() as c:
        c.execute("DELETE FROM outputs WHERE task='ethics' AND item_id IN "
                  "(SELECT item_id FROM outputs WHERE task='ethics' ORDER BY item_id LIMIT 3)")
    evaluate_variant(tiny_llama, spec, store, tasks=["ethics"], limit=LIMIT, data_dir=data_dir, progress=False)
    out2 = store.frame("outputs")
    assert len(out2) == len(out)
    assert store.frame("eval_runs").query("task == 'ethics'")["n_items"].tolist() == [LIMIT, 3]

    # A larger limit with the same seed keeps every stored answer and adds only new items.
    evaluate_variant(tiny_llama, spec, store, tasks=["advglue"], limit=2 * LIMIT, data_dir=data_dir, progress=False)
    assert store.frame("eval_runs").query("task == 'advglue'")["n_items"].tolist() == [LIMIT, LIMIT]
    df = variant_scores(store, vid, ["advglue", "ethics"])
    assert df["n"].tolist() == [2 * LIMIT, LIMIT] and list(df["dimension"]) == ["Adversarial robustness",
                                                                                  "Machine ethics"]


def test_batched_generation_matches_hf_generate(tiny_llama, data_dir):
    tok, model = tiny_llama.tokenizer, tiny_llama.model
    (task, items), = prepare_tasks(["advglue"], data_dir, limit=12, seed=3).values()
    prompts = [chat_ids(tok, it.messages) for it in items]
    gen = BatchGenerator(model, tok, stop_strings=(), prefill="batch")
    # Same-task pairs share the task's instruction (the shared-prefix KV path); one batch of all
    # twelve mixes tasks and lengths (left padding only). Neither may change greedy answers.
    by_task: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_task.setdefault(it.subtask, []).append(i)
    batched, mixed = {}, {}
    for batch in by_task.values():
        assert len(batch) == 1 or common_prefix_length([prompts[i] for i in batch]) >= 8
        for i, o in zip(batch, gen.generate([prompts[i] for i in batch], 6)):
            batched[i] = o
    for i, o in enumerate(BatchGenerator(model, tok, stop_strings=(), prefill="batch").generate(prompts, 6)):
        mixed[i] = o
    rows, tree = {}, {}
    for mode, got in (("rows", rows), ("tree", tree)):
        g = BatchGenerator(model, tok, stop_strings=(), prefill=mode, pack_tokens=128)
        for batch in g.plan(prompts, 5):
            for i, o in zip(batch, g.generate([prompts[i] for i in batch], 6)):
                got[i] = o
    import torch

    agree = 0
    for i, p in enumerate(prompts):
        ids = torch.tensor([p])
        ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        ref_text = tok.decode(ref[0, len(p):], skip_special_tokens=True)
        agree += sum(ref_text == got[i].text for got in (batched, mixed, rows, tree))
        assert batched[i].prompt_tokens == len(p) and 1 <= batched[i].gen_tokens <= 6
    # Greedy answers match batch-1 HF generate (padding may flip a near-tie in rare cases).
    assert agree >= 4 * len(prompts) - 1
    assert gen.stats.n_items == len(prompts) and gen.stats.tpot_ms > 0


def test_plan_batches_groups_shared_prefixes_and_avoids_padding_waste():
    shared = list(range(100, 140))  # a 40-token instruction
    a = [shared + [1, 2, 3], shared + [1, 5], shared + [7, 8, 9, 10]]
    unrelated_long = [list(range(500, 900)), list(range(900, 1250))]
    prompts = unrelated_long + a
    batches = plan_batches(prompts, batch_size=8)
    assert sorted(map(sorted, batches)) == [[0], [1], [2, 3, 4]]  # long unrelated prompts run alone
    assert batches[0] == [0]  # longest first
    assert common_prefix_length(a) == 40 and common_prefix_length([[1, 2], [3]]) == 0
    assert plan_batches(a, batch_size=2) in ([[2, 3], [4]], [[4], [2, 3]]) or all(len(b) <= 2 for b in plan_batches(a, 2))
    assert sorted(i for b in plan_batches(prompts, 1) for i in b) == list(range(5))


def test_loglik_mode(tiny_llama, store, data_dir):
    spec = VariantSpec(model="tiny-llama")
    res = evaluate_variant(tiny_llama, spec, store, tasks=["ood", "ethics"], mode="loglik", limit=6,
                           data_dir=data_dir, progress=False)
    _check_scores(res, 6)
    out = store.frame("outputs")
    assert (out["mode"] == "loglik").all() and not (out["label"] == INVALID).any()
    refused = out[out["label"] == REFUSED]
    assert refused["item_id"].str.startswith("knowledge").all()

    # The one-pass path for single-token options equals the full (prompt + option) path.
    scorer = OptionScorer(tiny_llama.model, tiny_llama.tokenizer)
    (_, items), = prepare_tasks(["ood"], data_dir, limit=2, seed=0).values()
    prompts = [chat_ids(tiny_llama.tokenizer, it.messages) for it in items]
    fast = scorer.score(prompts, [it.continuations for it in items])
    for p, it, f in zip(prompts, items, fast):
        rows = [(p, scorer.option_ids(c)) for c in it.continuations]
        np.testing.assert_allclose(scorer._logprob_rows(rows), f, rtol=1e-4, atol=1e-4)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "codesign", "eval", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_cli_eval_table_and_errors(tmp_path, data_dir):
    db = tmp_path / "r.db"
    r = _cli("--model", "tiny-llama", "--tasks", "ethics,advglue", "--limit", "2", "--store", str(db),
             "--data-dir", str(data_dir), "--no-progress", "--batch-size", "2", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "Machine ethics" in r.stdout and "Adversarial robustness" in r.stdout and "dense" in r.stdout
    from codesign.store import ResultStore

    with ResultStore(db) as s:
        assert len(s.frame("outputs")) == 4
    bad = _cli("--model", "tiny-llama", "--policy", "lenient", "--store", str(db))
    assert bad.returncode == 2 and "--policy" in bad.stderr and "strict" in bad.stderr
    bad = _cli("--model", "tiny-llama", "--tasks", "mmlu,toxicity", "--store", str(db))
    assert bad.returncode == 2 and "toxicity" in bad.stderr and "allowed" in bad.stderr
    bad = _cli("--model", "tiny-llama", "--variants", "nonsense", "--store", str(db))
    assert bad.returncode == 2 and "nonsense" in bad.stderr
    bad = _cli("--model", "tiny-llama", "--prefill", "fast", "--store", str(db))
    assert bad.returncode == 2 and "--prefill" in bad.stderr and "tree" in bad.stderr


@pytest.mark.slow
def test_smollm2_every_task(smollm2, store, data_dir):
    """The codesign protocol on the real model (the decodingtrust protocol: tests/test_decodingtrust.py)."""
    spec = VariantSpec(model="smollm2-135m-instruct")
    # limit 2: one item of each of the first two subtasks (keeps the 4k-token 32-shot prompts out).
    res = evaluate_variant(smollm2, spec, store, tasks=task_names("codesign"), limit=2, data_dir=data_dir,
                           batch_size=4, progress=False, protocol="codesign")
    _check_scores(res, 2)
    out = store.frame("outputs")
    assert len(out) == 2 * 5
    # A real instruction-tuned model answers in words: many answers parse to a label.
    assert (out["label"] >= 0).mean() >= 0.4
    assert out["raw_text"].str.len().gt(0).mean() >= 0.9


def test_evaluate_catalogue_with_a_quantized_variant(store, data_dir):
    from codesign.evaluate import evaluate_catalogue
    from codesign.evaluate.cli import parse_variants

    specs = parse_variants("dense,rtn-w4g32", "tiny-llama")
    assert [s.short_name for s in specs] == ["dense", "rtn-w4g32"]
    res = evaluate_catalogue(specs, store, ["advglue"], limit=4, data_dir=data_dir, batch_size=4, progress=False,
                             device="cpu")
    assert set(res) == {s.variant_id for s in specs}
    out = store.frame("outputs")
    assert len(out) == 8 and set(out["variant_id"]) == set(res)
    assert len(store.frame("eval_runs")) == 2
    # everything stored: scored from the store, no model loaded, no new run rows
    again = evaluate_catalogue(specs, store, ["advglue"], limit=4, data_dir=data_dir, progress=False, device="cpu")
    assert len(store.frame("eval_runs")) == 2
    assert again[specs[1].variant_id]["advglue"]["n"] == 4
    assert parse_variants(specs[1].variant_id, "tiny-llama", store) == [specs[1]]
