"""Ensembles scored from a real SQLite store holding real benchmark items (every task's own
``load()``) and seeded synthetic member answers; the ``codesign vote`` CLI as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from codesign.config import ConfigError
from codesign.records import INVALID, REFUSED, VariantSpec
from codesign.store import ItemRow, OutputRow, ResultStore
from codesign.vote import (
    ensemble_predictions,
    gated_scores,
    load_answers,
    resolve_members,
    score_all_subsets,
    score_ensemble,
    score_members,
    subset_accuracy,
    subset_predictions,
    validation_split,
)
from codesign.voting import precision_ensemble_vote

TASKS = ["mmlu", "advglue", "fairness", "ethics", "ood"]
SPECS = [
    VariantSpec("tiny-llama"),
    VariantSpec("tiny-llama", "rtn", 8),
    VariantSpec("tiny-llama", "rtn", 4),
    VariantSpec("tiny-llama", "gptq", 4),
]
ACCURACY = [0.8, 0.75, 0.6, 0.65]


@pytest.fixture(scope="module")
def filled(tmp_path_factory, data_dir):
    """A store with 40 real items per task and four members answering with known accuracies,
    under both protocols (the default one, decodingtrust, and codesign)."""
    from codesign.evaluate.tasks import get_task

    path = tmp_path_factory.mktemp("vote") / "results.db"
    rng = np.random.default_rng(0)
    with ResultStore(path) as s:
        for spec in SPECS:
            s.add_variant(spec)
        for protocol, task in [(p, t) for p in ("decodingtrust", "codesign") for t in TASKS]:
            items = get_task(task, protocol=protocol).load(data_dir, limit=40, seed=0)
            s.add_items([ItemRow(task, it.item_id, it.subtask, it.label, it.meta, protocol) for it in items])
            for spec, acc in zip(SPECS, ACCURACY):
                rows = []
                for it in items:
                    r = rng.random()
                    if r < acc:
                        lab = it.label
                    elif r < acc + 0.06:
                        lab = REFUSED
                    elif r < acc + 0.1:
                        lab = INVALID
                    else:
                        lab = int(rng.integers(0, len(it.options)))
                    rows.append(OutputRow(spec.variant_id, task, it.item_id, lab, raw_text=str(lab), protocol=protocol))
                s.add_outputs(rows)
    return path


@pytest.fixture()
def rs(filled):
    with ResultStore(filled) as s:
        yield s


IDS = [s.variant_id for s in SPECS]


def test_ensemble_predictions_follow_the_core_with_ood_refusal_rule(rs):
    from codesign.evaluate.tasks import get_task

    for task in TASKS:
        items, pred = ensemble_predictions(rs, task, IDS)
        ids, labels = rs.label_matrix(task, IDS)
        assert items["item_id"].tolist() == ids
        keep = np.array([get_task(task).keeps_refusal(s) for s in items["subtask"]])
        expected = np.where(keep, precision_ensemble_vote(labels, rs.variant_bits(IDS), True),
                            precision_ensemble_vote(labels, rs.variant_bits(IDS), False))
        np.testing.assert_array_equal(pred, expected)
        if task == "ood":
            assert keep.any() and (~keep).any()


def test_one_member_ensemble_scores_like_the_member(rs):
    from codesign.evaluate.tasks import get_task

    df = score_ensemble(rs, [IDS[2]], n_boot=0)
    n_invalid = 0
    assert df["task"].tolist() == TASKS  # report order
    for _, row in df.iterrows():
        items = rs.items(row["task"])
        _, labels = rs.label_matrix(row["task"], [IDS[2]])
        member = labels[0]  # the member itself: INVALID answers stay INVALID
        n_invalid += int((member == INVALID).sum())
        expected = get_task(row["task"]).score(items, member)
        assert row["score"] == pytest.approx(expected["score"], nan_ok=True)
        assert row["refusal_rate"] == pytest.approx(expected["refusal_rate"])
    assert n_invalid > 0  # the case where voting one member would differ from the member


def test_score_ensemble_beside_members(rs):
    df = score_ensemble(rs, IDS, n_boot=200, seed=1)
    assert set(df["task"]) == set(TASKS)
    for _, r in df.iterrows():
        assert r["n"] == 40
        assert r["ci_low"] <= r["ci_high"]
        assert 0 <= r["ci_low"] and r["ci_high"] <= 100
        scores = r["members_score"]
        assert set(scores) == set(IDS)
        if r["task"] == "fairness":  # group disparity, not correctness: reported, never compared with members
            assert not r["compared_with_members"] and pd.isna(r["best_member"])
            assert np.isnan([r["best_member_score"], r["delta_vs_best"], r["delta_ci_low"]]).all()
            continue
        assert r["compared_with_members"]
        assert r["delta_ci_low"] <= r["delta_ci_high"]
        assert r["best_member_score"] == pytest.approx(max(v for v in scores.values() if v == v))
        assert r["delta_vs_best"] == pytest.approx(r["score"] - r["best_member_score"])
        assert 0 <= r["refusal_rate"] <= 1
    # the bootstrap is seeded
    again = score_ensemble(rs, IDS, tasks=["mmlu"], n_boot=200, seed=1)
    assert again["ci_low"].iloc[0] == df.set_index("task").loc["mmlu", "ci_low"]
    # with answers this much better than chance the ensemble beats its worst member on MMLU
    mm = df.set_index("task").loc["mmlu"]
    assert mm["score"] > min(mm["members_score"].values())


def test_strict_policy_counts_refusals_as_wrong(rs):
    answered = score_ensemble(rs, IDS[:2], tasks=["mmlu"], n_boot=0, policy="answered")
    st = score_ensemble(rs, IDS[:2], tasks=["mmlu"], n_boot=0, policy="strict")
    assert st["score"].iloc[0] < answered["score"].iloc[0]
    # a policy names its protocol: codesign's answers were scored, not decodingtrust's
    same = score_ensemble(rs, IDS[:2], tasks=["mmlu"], n_boot=0, policy="strict", protocol="codesign")
    assert same["score"].iloc[0] == st["score"].iloc[0]
    assert score_ensemble(rs, IDS[:2], tasks=["mmlu"], n_boot=0)["n"].iloc[0] == 40  # decodingtrust: 5-shot only
    with pytest.raises(ConfigError, match="allowed"):
        score_ensemble(rs, IDS, n_boot=0, policy="lenient")
    with pytest.raises(ConfigError, match="'strict' is not a policy of protocol 'decodingtrust'"):
        score_ensemble(rs, IDS, n_boot=0, policy="strict", protocol="decodingtrust")


def test_items_a_member_never_answered_are_left_out(tmp_path, rs):
    with ResultStore(tmp_path / "partial.db") as s:
        for spec in SPECS[:2]:
            s.add_variant(spec)
        items = rs.items("mmlu")
        s.add_items([ItemRow("mmlu", r.item_id, r.subtask, int(r.label), r.meta) for r in items.itertuples()])
        out = rs.frame("outputs", "task='mmlu' AND protocol='decodingtrust'")
        for vid, n in ((IDS[0], 40), (IDS[1], 30)):
            sub = out[out["variant_id"] == vid].sort_values("item_id").head(n)
            s.add_outputs([OutputRow(vid, "mmlu", r.item_id, int(r.label)) for r in sub.itertuples()])
        ans = load_answers(s, "mmlu", IDS[:2])
        assert ans.labels.shape == (2, 30) and ans.dropped == 10
        df = score_ensemble(s, IDS[:2], n_boot=0)
        assert df["n"].iloc[0] == 30 and df["dropped_items"].iloc[0] == 10
        # a task only one member was evaluated on is left out of the default task list
        s.add_items([ItemRow("ethics", "e1", "zero_shot", 1)])
        s.add_outputs([OutputRow(IDS[0], "ethics", "e1", 1)])
        assert score_ensemble(s, IDS[:2], n_boot=0)["task"].tolist() == ["mmlu"]
        assert score_ensemble(s, IDS[:1], n_boot=0)["task"].tolist() == ["mmlu", "ethics"]


def test_resolve_members_by_id_short_name_and_prefix(rs):
    assert resolve_members(rs, ",".join(IDS)) == IDS
    assert resolve_members(rs, "dense,rtn-w8g128") == IDS[:2]
    assert resolve_members(rs, ["gptq", IDS[2][:24]]) == [IDS[3], IDS[2]]
    # default: every evaluated variant, highest precision first
    assert resolve_members(rs, None)[0] == IDS[0]
    assert sorted(resolve_members(rs, "")) == sorted(IDS)
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve_members(rs, "tiny-llama--")
    with pytest.raises(ConfigError, match="'awq-w3' matches no variant"):
        resolve_members(rs, "dense,awq-w3")
    with pytest.raises(ConfigError, match="twice"):
        resolve_members(rs, "dense,dense")


def test_unknown_task_and_missing_answers_are_named(rs, tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'mmlu2'"):
        score_ensemble(rs, IDS, tasks=["mmlu2"], n_boot=0)
    with ResultStore(tmp_path / "other.db") as s:
        s.add_variant(SPECS[0])
        s.add_items([ItemRow("mmlu", "a", "0shot", 0)])
        with pytest.raises(ConfigError, match="no stored 'generate' answers"):
            load_answers(s, "mmlu", IDS[:1])
        s.add_variant(SPECS[1])
        s.add_items([ItemRow("mmlu", "b", "0shot", 1)])
        s.add_outputs([OutputRow(IDS[0], "mmlu", "a", 0), OutputRow(IDS[1], "mmlu", "b", 1)])
        with pytest.raises(ConfigError, match="answered .* by every member"):
            load_answers(s, "mmlu", IDS[:2])


def test_all_subsets_match_single_ensembles(rs):
    for task in ("fairness", "ood"):
        df = score_all_subsets(rs, IDS, task, progress=False)
        assert len(df) == 2 ** len(IDS) - 1
        assert df["score"].is_monotonic_decreasing or df["score"].isna().any()
        singles = df[df["size"] == 1]
        alone = score_members(rs, IDS, tasks=[task]).set_index("variant_id")
        for _, row in singles.iterrows():  # a one-member subset is the member itself
            assert row["score"] == pytest.approx(alone.loc[row["members"][0], "score"], nan_ok=True)
        for _, row in df.sample(5, random_state=0).iterrows():
            one = score_ensemble(rs, list(row["members"]), tasks=[task], n_boot=0)
            assert row["score"] == pytest.approx(one["score"].iloc[0], nan_ok=True)
            assert row["refusal_rate"] == pytest.approx(one["refusal_rate"].iloc[0])


def test_vectorized_subset_accuracy_equals_a_loop(rs):
    ans = load_answers(rs, "mmlu", IDS)
    masks, pred = subset_predictions(ans.labels, ans.bits, ans.keep_refusal)
    gold = ans.items["label"].to_numpy()
    sub = ans.items["subtask"].to_numpy()
    for policy in ("answered", "strict", "decodingtrust"):
        got = subset_accuracy(pred, gold, policy, sub)
        for s in range(pred.shape[0]):
            accs = []
            for name in np.unique(sub):
                m = sub == name
                # answered = not refused: an invalid answer is a wrong answer (one definition everywhere)
                counted = m & (pred[s] != REFUSED) if policy == "answered" else m
                accs.append((pred[s][counted] == gold[counted]).mean() if counted.any() else 0.0)
            assert got["score"][s] == pytest.approx(100 * np.mean(accs))
            assert got["refusal_rate"][s] == pytest.approx((pred[s] == REFUSED).mean())
    df = score_all_subsets(rs, IDS, "mmlu", metric="accuracy", min_size=2)
    assert len(df) == 2 ** len(IDS) - 1 - len(IDS)


def test_accuracy_weighting_holds_out_a_validation_slice(rs):
    df = score_ensemble(rs, IDS, tasks=["mmlu", "advglue"], n_boot=0, weighting="accuracy", val_fraction=0.25)
    assert df.set_index("task").loc["mmlu", "n"] == 30  # 2 subtasks x 20 items, 5 of each held out
    for _, r in df.iterrows():
        assert 20 <= r["n"] < 40
        w = r["weights"]
        assert set(w) == set(IDS) and all(0 <= v <= 1 for v in w.values())
    with pytest.raises(ConfigError, match="weighting"):
        score_ensemble(rs, IDS, n_boot=0, weighting="votes")


def test_validation_split_is_stable_and_stratified():
    ids = [f"q{i:03d}" for i in range(40)]
    subs = ["a"] * 20 + ["b"] * 20
    m1 = validation_split(ids, subs, 0.25, seed=0)
    assert m1[:20].sum() == 5 and m1[20:].sum() == 5
    np.testing.assert_array_equal(m1, validation_split(ids, subs, 0.25, seed=0))
    assert not np.array_equal(m1, validation_split(ids, subs, 0.25, seed=1))
    with pytest.raises(ConfigError, match="val-fraction"):
        validation_split(ids, subs, 1.5)


def test_gated_scores_report_escalation(rs):
    df = gated_scores(rs, IDS[:3], tasks=["mmlu", "ood"])
    for _, r in df.iterrows():
        assert r["agreement_with_full"] == 1.0  # default gate = smallest majority: lossless
        assert r["score"] == pytest.approx(r["full_score"], nan_ok=True)
        assert 0 < r["escalated_fraction"] < 1
        frac = r["member_fraction"]
        assert frac[IDS[2]] == 1.0 and frac[IDS[1]] == 1.0  # 4- and 8-bit members form the gate
        assert frac[IDS[0]] == pytest.approx(r["escalated_fraction"])
        assert r["relative_cost"] < 1


# -- the CLI, as a user runs it ------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "codesign", "vote", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_json(filled):
    res = _cli("--store", str(filled), "--members", "dense,rtn-w8,rtn-w4g128", "--task", "mmlu,ethics",
               "--n-boot", "50", "--gated", "--all-subsets", "--top", "3", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [m["name"] for m in doc["members"]] == ["dense", "rtn-w8g128", "rtn-w4g128"]
    assert [t["task"] for t in doc["tasks"]] == ["mmlu", "ethics"]
    row = doc["tasks"][0]
    assert 0 <= row["ci_low"] <= row["ci_high"] <= 100
    assert len(doc["gated"]) == 2 and len(doc["subsets"]["ethics"]) == 3
    direct = score_ensemble(ResultStore(filled), IDS[:3], tasks=["mmlu"], n_boot=0)
    assert row["score"] == pytest.approx(direct["score"].iloc[0])


def test_cli_table(filled, tmp_path):
    out = tmp_path / "vote.csv"
    res = _cli("--store", str(filled), "--members", "dense,rtn-w4g128", "--n-boot", "20", "--no-progress",
               "--out", str(out))
    assert res.returncode == 0, res.stderr
    for word in ("ensemble", "best member", "MMLU", "rtn-w4g128 (4b)"):
        assert word in res.stdout
    assert len(pd.read_csv(out)) == 5


@pytest.mark.parametrize("args,needle", [
    (["--members", "dense,nope"], "--members: 'nope' matches no variant"),
    (["--mode", "beam"], "--mode: 'beam' is not allowed"),
    (["--task", "trivia"], "unknown task 'trivia'"),
])
def test_cli_errors_are_named(filled, args, needle):
    res = _cli("--store", str(filled), *args)
    assert res.returncode == 2
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_cli_missing_store(tmp_path):
    res = _cli("--store", str(tmp_path / "none.db"))
    assert res.returncode == 2 and "does not exist" in res.stderr
    assert not (tmp_path / "none.db").exists()


def test_cli_votes_on_a_read_only_store_and_leaves_it_unchanged(filled, tmp_path):
    """vote only reads: a store file (and folder) without write permission works, and no byte of
    the store changes (issue 18: readers once added tables to the store they read)."""
    import hashlib
    import shutil
    import sqlite3

    folder = tmp_path / "ro"
    folder.mkdir()
    store = folder / "results.db"
    con = sqlite3.connect(filled)  # a self-contained copy (the WAL folded in)
    con.execute(f"VACUUM INTO '{store}'")
    con.close()
    digest = hashlib.sha256(store.read_bytes()).hexdigest()
    store.chmod(0o444)
    folder.chmod(0o555)
    try:
        res = _cli("--store", str(store), "--members", "dense,rtn-w4g128", "--task", "mmlu", "--n-boot", "0",
                   "--json")
        assert res.returncode == 0, res.stderr
        assert hashlib.sha256(store.read_bytes()).hexdigest() == digest
        assert sorted(p.name for p in folder.iterdir()) == ["results.db"]
    finally:
        folder.chmod(0o755)
        store.chmod(0o644)
        shutil.rmtree(folder)
