"""Protocols at the store boundary and in scoring: schema v2 keys, the in-place migration of a
version-1 store (writers only; readers never write), and one definition of answered / refused /
invalid shared by single variants, ensembles and the all-subsets path."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from codesign.config import ConfigError
from codesign.records import INVALID, REFUSED, VariantSpec
from codesign.store import SCHEMA_VERSION, ItemRow, OutputRow, ResultStore

# The tables a version-1 store had (codesign before protocols), written as that code wrote them.
V1_SCHEMA = """
CREATE TABLE variants (variant_id TEXT PRIMARY KEY, model TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER NOT NULL,
    group_size INTEGER NOT NULL, sym INTEGER NOT NULL, calib TEXT NOT NULL, seed INTEGER NOT NULL,
    spec_json TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE items (task TEXT NOT NULL, item_id TEXT NOT NULL, subtask TEXT NOT NULL, label INTEGER NOT NULL,
    meta_json TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (task, item_id));
CREATE TABLE outputs (variant_id TEXT NOT NULL, task TEXT NOT NULL, item_id TEXT NOT NULL, mode TEXT NOT NULL,
    raw_text TEXT, label INTEGER NOT NULL, outcome TEXT NOT NULL, latency_s REAL, created REAL NOT NULL,
    PRIMARY KEY (variant_id, task, item_id, mode));
CREATE INDEX outputs_task ON outputs (task, mode);
CREATE TABLE eval_runs (variant_id TEXT NOT NULL, task TEXT NOT NULL, mode TEXT NOT NULL, device TEXT NOT NULL,
    n_items INTEGER, prompt_tokens INTEGER, gen_tokens INTEGER, prompt_tok_s REAL, gen_tok_s REAL,
    tpot_ms REAL, peak_mem_bytes INTEGER, wall_s REAL, created REAL NOT NULL);
CREATE TABLE studies (name TEXT PRIMARY KEY, config_json TEXT NOT NULL, created REAL NOT NULL);
"""
SPECS = [VariantSpec("tiny-llama"), VariantSpec("tiny-llama", "rtn", 4)]


def write_v1_store(path):
    """A version-1 store: codesign answers of two variants on three MMLU items, one eval run."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.executescript(V1_SCHEMA)
    for s in SPECS:
        c.execute("INSERT INTO variants VALUES (?,?,?,?,?,?,?,?,?,?)",
                  (s.variant_id, s.model, s.method, s.bits, s.group_size, int(s.sym), s.calib, s.seed,
                   json.dumps(s.to_dict()), 0.0))
    for i, lab in enumerate([0, 1, 2]):
        c.execute("INSERT INTO items VALUES ('mmlu', ?, '0shot', ?, '{}')", (f"0shot/x/{i:05d}", lab))
        for s, ans in zip(SPECS, ([0, 1, 2], [0, REFUSED, INVALID])):
            c.execute("INSERT INTO outputs VALUES (?, 'mmlu', ?, 'generate', 'txt', ?, 'label', 0.1, 0.0)",
                      (s.variant_id, f"0shot/x/{i:05d}", ans[i]))
    c.execute("INSERT INTO eval_runs VALUES (?, 'mmlu', 'generate', 'cpu', 3, 10, 3, 1.0, 1.0, 1.0, 1, 1.0, 0.0)",
              (SPECS[0].variant_id,))
    c.execute("PRAGMA user_version=1")
    c.close()


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reader_sees_a_v1_store_as_codesign_without_writing(tmp_path):
    path = tmp_path / "v1.db"
    write_v1_store(path)
    before = digest(path)
    with ResultStore(path, read_only=True) as s:
        assert s.protocols() == ["codesign"]
        assert s.items("mmlu", "codesign")["label"].tolist() == [0, 1, 2]
        assert s.items("mmlu").empty  # the default protocol (decodingtrust) has nothing here
        assert s.done_item_ids(SPECS[1].variant_id, "mmlu", "generate", "codesign") == {
            "0shot/x/00000", "0shot/x/00001", "0shot/x/00002"}
        with pytest.raises(sqlite3.OperationalError):
            s.add_items([ItemRow("mmlu", "new", "0shot", 0, protocol="codesign")])
    assert digest(path) == before
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    with pytest.raises(ConfigError, match="does not exist"):
        ResultStore(tmp_path / "missing.db", read_only=True)


def test_a_writer_migrates_a_v1_store_in_place(tmp_path):
    path = tmp_path / "v1.db"
    write_v1_store(path)
    with ResultStore(path) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.frame("outputs")["protocol"].unique().tolist() == ["codesign"]
        assert len(s.frame("outputs")) == 6 and len(s.frame("eval_runs")) == 1
        assert s.frame("eval_runs")["protocol"].tolist() == ["codesign"]
        _, labels = s.label_matrix("mmlu", [SPECS[1].variant_id], protocol="codesign")
        assert labels.tolist() == [[0, REFUSED, INVALID]]
        # the same task and item id under the other protocol is another item and another answer
        s.add_items([ItemRow("mmlu", "0shot/x/00000", "5shot", 3)])
        assert s.add_outputs([OutputRow(SPECS[0].variant_id, "mmlu", "0shot/x/00000", 3)]) == 1
        assert s.done_item_ids(SPECS[0].variant_id, "mmlu") == {"0shot/x/00000"}
        assert len(s.done_item_ids(SPECS[0].variant_id, "mmlu", protocol="codesign")) == 3
        assert s.items("mmlu", "codesign")["label"].tolist() == [0, 1, 2]
        assert s.tasks("decodingtrust") == ["mmlu"] and s.protocols() == ["codesign", "decodingtrust"]
        # a stored answer is never duplicated or replaced (resume)
        assert s.add_outputs([OutputRow(SPECS[0].variant_id, "mmlu", "0shot/x/00000", 1, protocol="codesign")]) == 0
    with ResultStore(path) as s:  # opening again is a no-op
        assert len(s.frame("outputs")) == 7


def test_vote_cli_reads_a_v1_store_without_migrating_it(tmp_path):
    path = tmp_path / "v1.db"
    write_v1_store(path)
    before = digest(path)
    r = subprocess.run([sys.executable, "-m", "codesign", "vote", "--store", str(path), "--policy", "answered",
                        "--n-boot", "0", "--json", "--no-progress"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["protocol"] == "codesign" and doc["tasks"][0]["task"] == "mmlu"
    assert digest(path) == before
    bad = subprocess.run([sys.executable, "-m", "codesign", "vote", "--store", str(path), "--n-boot", "0"],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert bad.returncode == 2 and "decodingtrust" in bad.stderr and "codesign" in bad.stderr


# -- one definition of the outcome classes on every scoring path ---------------------------------
@pytest.fixture(scope="module")
def one_variant(tmp_path_factory, data_dir):
    """Fixed answers of one variant on real items of every task under both protocols: a third
    right, a third wrong, the rest split between INVALID and REFUSED."""
    from codesign.evaluate.tasks import get_task, task_names

    path = tmp_path_factory.mktemp("paths") / "r.db"
    vid = SPECS[0].variant_id
    with ResultStore(path) as s:
        s.add_variant(SPECS[0])
        for protocol in ("decodingtrust", "codesign"):
            for name in task_names(protocol):
                its = get_task(name, protocol=protocol).load(data_dir, limit=36, seed=0)
                s.add_items(ItemRow(name, it.item_id, it.subtask, it.label, it.meta, protocol) for it in its)
                def code(i, it):
                    wrong = (it.label + 1) % len(it.options)
                    return [it.label, wrong, INVALID, it.label, REFUSED, wrong][i % 6]

                s.add_outputs(OutputRow(vid, name, it.item_id, code(i, it), protocol=protocol)
                              for i, it in enumerate(its))
    return path, vid


@pytest.mark.parametrize("protocol,policy", [("decodingtrust", "decodingtrust"), ("codesign", "answered"),
                                             ("codesign", "strict")])
def test_single_variant_one_member_ensemble_and_all_subsets_agree(one_variant, protocol, policy):
    from codesign.evaluate.scoring import score_items
    from codesign.evaluate.tasks import task_names
    from codesign.vote import score_all_subsets, score_ensemble

    path, vid = one_variant
    with ResultStore(path, read_only=True) as s:
        for task in task_names(protocol):
            single = score_items(s, vid, task, None, "generate", policy, protocol)
            ens = score_ensemble(s, [vid], tasks=[task], n_boot=0, policy=policy, protocol=protocol).iloc[0]
            sub = score_all_subsets(s, [vid], task, policy=policy, progress=False, protocol=protocol).iloc[0]
            for key in ("score", "refusal_rate", "invalid_rate", "n"):
                assert ens[key] == pytest.approx(single[key], nan_ok=True), (task, key)
                assert sub[key] == pytest.approx(single[key], nan_ok=True), (task, key)
            assert single["invalid_rate"] > 0  # INVALID answers are part of the test


def test_vectorized_subset_accuracy_counts_invalid_as_answered():
    """The issue's example: answers right, wrong, invalid, invalid give 25 under every path (not 50)."""
    from codesign.evaluate import metrics
    from codesign.vote import subset_accuracy, subset_predictions

    gold = np.array([0, 1, 2, 3])
    labels = np.array([[0, 0, INVALID, INVALID], [INVALID, INVALID, INVALID, INVALID]])
    assert metrics.accuracy(gold, labels[0], "answered") == 0.25
    _, pred = subset_predictions(labels, [8, 4])
    got = subset_accuracy(pred, gold, "answered")
    # subsets {8-bit}, {4-bit}, {both}: the 4-bit member and the vote keep INVALID where all are invalid
    np.testing.assert_allclose(got["score"], [25.0, 0.0, 25.0])
    np.testing.assert_array_equal(pred[1], [INVALID] * 4)
    assert got["refusal_rate"].tolist() == [0.0, 0.0, 0.0]


# -- the protocol through options, records and stored study configs --------------------------------
def test_command_options_resolve_protocol_and_policy_together():
    from codesign.evaluate.cli import EvalOptions
    from codesign.report.cli import ReportOptions
    from codesign.vote.cli import VoteOptions

    assert (EvalOptions().protocol, EvalOptions().policy) == ("decodingtrust", "decodingtrust")
    assert EvalOptions(protocol="codesign").policy == "answered"
    with pytest.raises(ConfigError, match="'answered' is not a policy of protocol 'decodingtrust'"):
        EvalOptions.parse({"policy": "answered"})  # eval names its protocol: no silent switch
    vote = VoteOptions(store="x.db", policy="strict")
    assert (vote.protocol, vote.policy) == ("codesign", "strict")  # a policy names its protocol
    with pytest.raises(ConfigError, match="--protocol: 'helm' is not an evaluation protocol"):
        VoteOptions.parse({"store": "x.db", "protocol": "helm"})
    assert (ReportOptions().protocol, ReportOptions().policy) == (None, None)  # the study's, read later
    assert ReportOptions(policy="strict").protocol == "codesign"


def test_eval_runs_carry_their_protocol(tmp_path):
    from codesign.records import EvalRun

    with ResultStore(tmp_path / "r.db") as s:
        s.add_eval_run(EvalRun("v", "mmlu", "loglik", "cpu", 4, 100, 0, 50.0, None, None, 1, 2.0, protocol="codesign"))
        s.add_eval_run(EvalRun("v", "mmlu", "loglik", "cpu", 4, 100, 0, 50.0, None, None, 1, 2.0))
        assert [r.protocol for r in s.eval_runs("v")] == ["codesign", "decodingtrust"]
    path = tmp_path / "v1.db"
    write_v1_store(path)
    with ResultStore(path, read_only=True) as s:
        assert [(r.variant_id, r.protocol, r.wall_s) for r in s.eval_runs()] == [(SPECS[0].variant_id, "codesign", 1.0)]


def test_reader_of_an_older_store_sees_tables_added_since_as_empty(tmp_path):
    """A version-1 store has no study-result tables: a reader finds no result, writes nothing."""
    path = tmp_path / "v1.db"
    write_v1_store(path)
    before = digest(path)
    with ResultStore(path, read_only=True) as s:
        assert s.studies() == [] and s.study_result("any") is None and s.study_points("any") == []
        assert s.frame("measurements").empty
    assert digest(path) == before


def test_a_study_stored_before_protocols_is_reported_as_codesign_answered(tmp_path):
    """Its policy 'decodingtrust' then meant today's 'answered' over codesign answers."""
    from codesign.explore.config import stored_study_config
    from codesign.report.data import collect

    legacy = {"name": "old", "mode": "generate", "policy": "decodingtrust", "specs": ["h100-sxm"]}
    assert stored_study_config(legacy)["protocol"] == "codesign"
    assert stored_study_config(legacy)["policy"] == "answered"
    assert stored_study_config({**legacy, "protocol": "decodingtrust"})["policy"] == "decodingtrust"
    path = tmp_path / "v1.db"
    write_v1_store(path)
    c = sqlite3.connect(path)
    c.execute("INSERT INTO studies VALUES ('old', ?, 0.0)", (json.dumps(legacy),))
    c.commit()
    c.close()
    before = digest(path)
    with ResultStore(path, read_only=True) as s:
        data = collect(s, "old", n_boot=0)
        assert (data.protocol, data.policy) == ("codesign", "answered")
        assert set(data.scores["variant_id"]) == {s.variant_id for s in SPECS}
        assert data.scores.set_index("variant_id").loc[SPECS[1].variant_id, "score"] == pytest.approx(50.0)
        other = collect(s, "old", policy="strict", n_boot=0)
        assert other.scores.set_index("variant_id").loc[SPECS[1].variant_id, "score"] == pytest.approx(100 / 3)
    assert digest(path) == before


def test_calibration_reads_measurements_without_migrating_the_store(tmp_path):
    from codesign.cost.calibrate import load_measurements

    path = tmp_path / "v1.db"
    write_v1_store(path)
    before = digest(path)
    with pytest.raises(ConfigError, match="no measurements"):  # a version-1 store of answers holds none
        load_measurements(path)
    assert digest(path) == before
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
