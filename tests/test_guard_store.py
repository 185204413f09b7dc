"""The result store's keys, filters and guards, row by row (issue 21).

Every answer is keyed by (variant, protocol, task, item, mode), so resuming one mode or protocol never
skips or overwrites another's; claims split work between live processes only; readers never write; a
file that is not a whole codesign store is refused with one clear message before SQLite touches it."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from codesign.config import ConfigError
from codesign.records import (INVALID, REFUSED, BootstrapSettings, Configuration, EvalRun, FrontPoint,
                              HypervolumeStep, Interval, Measurement, ParetoProbability, Recommendation, StudyPoint,
                              StudyResult, VariantSpec)
from codesign.store import (CLAIM_TTL_S, SCHEMA_VERSION, ItemRow, OutputRow, ResultStore, VariantRows, _claim_live,
                            check_store_file, pid_alive)

V = VariantSpec("m", "rtn", 4)
W = VariantSpec("m", "rtn", 8)


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "s.db") as s:
        yield s


def _answers(store):
    store.add_variant(V)
    store.add_variant(W)
    store.add_items([ItemRow("t", f"i{k}", "sub", k % 2) for k in range(4)])
    store.add_items([ItemRow("t", "i0", "sub", 1, protocol="codesign"), ItemRow("u", "j0", "sub", 0)])
    rows = [OutputRow(V.variant_id, "t", "i0", 1, "B"), OutputRow(V.variant_id, "t", "i2", REFUSED, "no"),
            OutputRow(V.variant_id, "t", "i0", 0, mode="loglik"),
            OutputRow(V.variant_id, "t", "i1", 0, protocol="codesign"),
            OutputRow(W.variant_id, "t", "i3", 1), OutputRow(W.variant_id, "u", "j0", 0, mode="loglik")]
    assert store.add_outputs(rows) == 6
    return rows


def test_every_key_part_separates_answers(store):
    _answers(store)
    # the same (variant, item) in another mode or protocol is another answer, kept and resumed apart
    assert store.done_item_ids(V.variant_id, "t") == {"i0", "i2"}
    assert store.done_item_ids(V.variant_id, "t", mode="loglik") == {"i0"}
    assert store.done_item_ids(V.variant_id, "t", protocol="codesign") == {"i1"}
    assert store.done_item_ids(W.variant_id, "t") == {"i3"} and store.done_item_ids(W.variant_id, "u") == set()
    assert store.add_outputs([OutputRow(V.variant_id, "t", "i0", 0, "C")]) == 0  # the first answer stays
    ids, lab = store.label_matrix("t", [V.variant_id, W.variant_id])
    assert ids == ["i0", "i1", "i2", "i3"]
    assert lab.tolist() == [[1, INVALID, REFUSED, INVALID], [INVALID, INVALID, INVALID, 1]]
    assert lab.dtype == np.int64
    _, ll = store.label_matrix("t", [V.variant_id], mode="loglik")
    assert ll.tolist() == [[0, INVALID, INVALID, INVALID]]
    ids, dt = store.label_matrix("t", [V.variant_id], protocol="codesign")
    assert ids == ["i0"] and dt.tolist() == [[INVALID]]  # i1 is not an item of that protocol
    ids, sub = store.label_matrix("t", [V.variant_id], item_ids=["i2", "zz", "i0"])
    assert ids == ["i2", "zz", "i0"] and sub.tolist() == [[REFUSED, INVALID, 1]]
    out = store.frame("outputs", "mode=?", ("generate",))
    assert sorted(out.outcome) == ["label", "label", "label", "refused"]


def test_listing_filters(store):
    assert store.is_empty()
    _answers(store)
    assert not store.is_empty()
    assert store.tasks() == ["t", "u"] and store.tasks("codesign") == ["t"]
    assert store.protocols() == ["codesign", "decodingtrust"]
    assert store.evaluated_variants() == sorted([V.variant_id, W.variant_id])
    assert store.evaluated_variants(task="u") == [W.variant_id]
    assert store.evaluated_variants(mode="loglik", task="t") == [V.variant_id]
    assert store.evaluated_variants(protocol="codesign") == [V.variant_id]
    items = store.items("t")
    assert items.item_id.tolist() == ["i0", "i1", "i2", "i3"] and items.label.tolist() == [0, 1, 0, 1]
    assert items.meta.tolist() == [{}] * 4 and store.items("t", "codesign").label.tolist() == [1]
    assert store.variant_bits([W.variant_id, V.variant_id]).tolist() == [8, 4]
    with pytest.raises(KeyError, match=r"unknown variant 'nope' \(known: \["):
        store.variant_spec("nope")


def test_claims_split_work_and_expire(store):
    store.add_outputs([OutputRow("v", "t", "done", 0)])
    me, pid = socket.gethostname(), os.getpid()
    claimed, held = store.claim_items("v", "t", "generate", "decodingtrust", ["a", "b", "done", "a"])
    assert (claimed, held) == ({"a", "b"}, set())  # an answered item is not claimed
    rows = store.conn.execute("SELECT item_id, host, pid FROM claims ORDER BY item_id").fetchall()
    assert rows == [("a", me, pid), ("b", me, pid)]
    # a claim of another live process on this host holds; the same items under another mode are free
    parent = os.getppid()
    store.conn.execute("UPDATE claims SET pid=? WHERE item_id='a'", (parent,))
    assert store.claim_items("v", "t", "generate", "decodingtrust", ["a", "b"]) == ({"b"}, {"a"})
    assert store.claim_items("v", "t", "loglik", "decodingtrust", ["a"]) == ({"a"}, set())
    assert store.claim_items("v", "t", "generate", "codesign", ["a"]) == ({"a"}, set())
    # another host: trusted for CLAIM_TTL_S, then taken over
    store.conn.execute("UPDATE claims SET host='elsewhere', created=? WHERE item_id='a' AND mode='generate' "
                       "AND protocol='decodingtrust'", (time.time() - CLAIM_TTL_S + 60,))
    assert store.claim_items("v", "t", "generate", "decodingtrust", ["a"]) == (set(), {"a"})
    store.conn.execute("UPDATE claims SET created=? WHERE host='elsewhere'", (time.time() - CLAIM_TTL_S - 1,))
    assert store.claim_items("v", "t", "generate", "decodingtrust", ["a"]) == ({"a"}, set())
    # release drops only this process's claims on the given items and key
    store.conn.execute("INSERT INTO claims VALUES ('v','decodingtrust','t','generate','c','h',?,?)",
                       (parent, time.time()))
    store.release_claims("v", "t", "generate", "decodingtrust", ["a", "b", "c"])
    left = store.conn.execute("SELECT item_id, mode, protocol FROM claims ORDER BY 1, 2, 3").fetchall()
    assert left == [("a", "generate", "codesign"), ("a", "loglik", "decodingtrust"), ("c", "generate", "decodingtrust")]


def test_claim_liveness_rules():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = 1e6
    assert _claim_live("h", os.getppid(), 0.0, "h", os.getpid(), now)  # another live process here
    assert not _claim_live("h", os.getpid(), now, "h", os.getpid(), now)  # our own: take it again
    assert not _claim_live("h", dead.pid, now, "h", os.getpid(), now)  # its process is gone
    assert _claim_live("x", 1, now - CLAIM_TTL_S + 1, "h", 2, now)
    assert not _claim_live("x", 1, now - CLAIM_TTL_S, "h", 2, now)  # exactly the TTL: expired
    assert pid_alive(os.getpid()) and not pid_alive(dead.pid)
    assert pid_alive(1)  # init: another user's process still counts as running


def test_variant_rows_round_trip_between_stores(store, tmp_path):
    _answers(store)
    run = EvalRun(V.variant_id, "t", "generate", "cpu", 2, 10, 5, 100.0, 20.0, 50.0, 1 << 20, 1.5)
    store.add_eval_run(run)
    rows = store.variant_rows(V.variant_id)
    assert rows.spec == V and rows.eval_runs == [run]
    assert [(o.protocol, o.task, o.item_id, o.mode, o.label, o.raw_text) for o in rows.outputs] == [
        ("codesign", "t", "i1", "generate", 0, None), ("decodingtrust", "t", "i0", "generate", 1, "B"),
        ("decodingtrust", "t", "i0", "loglik", 0, None), ("decodingtrust", "t", "i2", "generate", REFUSED, "no")]
    assert [(i.protocol, i.task, i.item_id, i.label) for i in rows.items] == [
        ("codesign", "t", "i0", 1), ("decodingtrust", "t", "i0", 0), ("decodingtrust", "t", "i1", 1),
        ("decodingtrust", "t", "i2", 0), ("decodingtrust", "t", "i3", 1)]  # task u: only W answered it
    with ResultStore(tmp_path / "driver.db") as d:
        assert d.add_variant_rows(rows) == 4 and d.add_variant_rows(rows) == 0
        again = d.variant_rows(V.variant_id)
        assert (again.outputs, again.items, again.spec) == (rows.outputs, rows.items, rows.spec)
        assert d.eval_runs(V.variant_id) == [run, run]  # each delivery's cost row is kept
    assert isinstance(rows, VariantRows)


def test_eval_runs_order_and_filter(store):
    a = EvalRun("a", "t", "generate", "cpu", 1, 1, 1, 1.0, 1.0, 1.0, 1, 1.0)
    b = EvalRun("b", "t", "loglik", "cpu", 2, 2, 0, 2.0, None, None, None, 2.0, protocol="codesign")
    store.add_eval_run(b)
    store.add_eval_run(a)
    assert store.eval_runs() == [b, a] and store.eval_runs("a") == [a] and store.eval_runs("c") == []


def test_measurements_and_old_columns(tmp_path):
    m = Measurement("m", "rtn-w4", 4, 128, "bf16", "cpu", "box", 2, 16, 8, 10.0, 2.5, 1 << 20, 3,
                    kernel="k", spec="dev", schedule="parallel", versions={"torch": "2"}, extra={"x": 1})
    path = tmp_path / "old.db"
    with ResultStore(path) as s:  # a store from before the kernel / spec / schedule columns
        s.conn.execute("ALTER TABLE measurements DROP COLUMN kernel")
        s.conn.execute("ALTER TABLE measurements DROP COLUMN schedule")
        s.add_measurement(m)
        cols = {r[1] for r in s.conn.execute("PRAGMA table_info(measurements)")}
        assert {"kernel", "spec", "schedule"} <= cols
        s.add_measurement(Measurement("m", "dense", None, None, "bf16", "cpu", "box", 1, 4, 2, 1.0, 0.5, 1, 1))
        got = s.measurements()
        assert got[0] == m and got[1].wbits is None and got[1].kernel is None
        assert [x.variant for x in s.measurements("batch=?", (1,))] == ["dense"]


def _result(study="s", boot=True):
    pt = ("bo", 0, 3)
    return StudyResult(
        study, (("trust", "max"), ("tpot_ms", "min")), (1.0, -2.0), None, 7,
        (FrontPoint(pt, ("bo", "random")), FrontPoint(("bo", 0, 4), ()), FrontPoint(pt, ("bo",), "h100")),
        (HypervolumeStep("bo", 0, 1, 0, 0.5, 0.1, -0.2), HypervolumeStep("bo", 1, 2, 1, 0.7)),
        (Recommendation("best", "why", pt, (("bo", 0, 4), ("random", 1, 2))),
         Recommendation("cheap", "w", ("bo", 0, 4))),
        BootstrapSettings(50, 0.9, 3) if boot else None,
        (Interval(pt, "trust", 50.0, 1.0, 48.0, 52.0), Interval(pt, "tpot_ms", 2.0, float("nan"), 1.5, 2.5)),
        (ParetoProbability(pt, 0.75), ParetoProbability(("bo", 0, 4), 0.25)))


def test_study_result_every_table_round_trips(store):
    res = _result()
    store.save_study_result(res)
    got = store.study_result("s")
    trust, tpot = sorted(got.intervals, key=lambda i: i.objective != "trust")
    assert trust == res.intervals[0] and tpot.se != tpot.se and (tpot.estimate, tpot.low, tpot.high) == (2.0, 1.5, 2.5)
    assert got.front == res.front and got.recommendations == res.recommendations
    assert got.hypervolume == res.hypervolume and got.bootstrap == res.bootstrap
    assert got.pareto_probability == res.pareto_probability
    assert (got.objectives, got.ref_point, got.reference_hv, got.n_points) == (res.objectives, res.ref_point, None, 7)
    fronts = store.conn.execute("SELECT spec, rank FROM study_front ORDER BY spec, rank").fetchall()
    assert fronts == [("", 0), ("", 1), ("h100", 0)]  # ranks count within each accelerator's front
    # a second save replaces every table's rows; a result without uncertainty leaves none behind
    store.save_study_result(_result(boot=False))
    got = store.study_result("s")
    assert got.bootstrap is None and got.intervals == () and got.pareto_probability == ()
    assert got.front == res.front
    store.save_study_result(_result("other"))
    assert store.study_result("s").bootstrap is None and store.study_result("other").bootstrap == res.bootstrap


def test_studies_points_and_configs(store):
    assert store.studies() == []
    with pytest.raises(KeyError, match=r"no study named 'a' \(studies in this store: none\)"):
        store.study_config("a")
    store.create_study("a", {"k": [1, 2]})
    time.sleep(0.002)
    store.create_study("b", {"k": 1})
    assert store.studies() == ["a", "b"] and store.study_config("a") == {"k": [1, 2]}
    with pytest.raises(ValueError, match=r"study 'a' exists with a different config"):
        store.create_study("a", {"k": [2, 1]})
    cfg = Configuration(("x", "y"), "parallel", "h100", (("bandwidth_gbs", 2.0),))
    for method, seed, pid, feas in (("random", 1, 0, True), ("bo", 0, 1, False), ("bo", 0, 0, True),
                                    ("bo", 2, 0, True)):
        store.add_study_point(StudyPoint("a", method, seed, pid, pid + 5, cfg, {"trust": pid + 0.5}, feas))
    store.add_study_point(StudyPoint("b", "bo", 0, 0, 0, cfg, {}, True))
    pts = store.study_points("a")
    assert [(p.method, p.seed, p.point_id) for p in pts] == [("bo", 0, 0), ("bo", 0, 1), ("bo", 2, 0), ("random", 1, 0)]
    assert [p.feasible for p in pts] == [True, False, True, True] and pts[1].iteration == 6
    assert pts[1].config == cfg and pts[1].objectives == {"trust": 1.5} and pts[1].created > 0
    assert [p.point_id for p in store.study_points("a", "bo", 0)] == [0, 1]
    assert [p.seed for p in store.study_points("a", seed=2)] == [2]
    assert [p.method for p in store.study_points("a", method="random")] == ["random"]


# -- what a store file must be -----------------------------------------------------------------
def test_foreign_empty_truncated_and_folder_files_are_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all, " * 10)
    with pytest.raises(ConfigError, match=r"is not a SQLite file \(it starts b'hello, this is n'; allowed"):
        ResultStore(text)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(ConfigError, match=r"is an empty file \(allowed: a result store written by codesign"):
        ResultStore(empty, read_only=True)
    ResultStore(empty).close()  # a writer makes an empty file a new store
    with pytest.raises(ConfigError, match=r"is a folder \(allowed: a SQLite result store file\)"):
        check_store_file(tmp_path, read_only=False)
    with pytest.raises(ConfigError, match=r"is a folder \(allowed: a result store written by codesign eval"):
        ResultStore(tmp_path, read_only=True)
    with pytest.raises(ConfigError, match=r"does not exist \(allowed: a result store"):
        ResultStore(tmp_path / "missing.db", read_only=True)
    check_store_file(tmp_path / "missing.db", read_only=False)  # a writer creates it
    good = tmp_path / "good.db"
    with ResultStore(good) as s:
        s.add_items([ItemRow("t", str(k), "s", 0, {"pad": "x" * 500}) for k in range(40)])
    data = good.read_bytes()
    short = tmp_path / "short.db"
    short.write_bytes(data[:60])
    with pytest.raises(ConfigError, match=r"is truncated \(60 bytes, shorter than a SQLite header\)"):
        ResultStore(short)
    page = int.from_bytes(data[16:18], "big")
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[:len(data) - page])
    with pytest.raises(ConfigError, match=rf"is truncated \({len(data) - page:,} bytes of the {len(data):,} its "
                                          r"header records; restore"):
        ResultStore(cut, read_only=True)
    # the page count only counts when its valid-for number matches the change counter
    stale = bytearray(data[:len(data) - page])
    stale[92:96] = (int.from_bytes(stale[24:28], "big") + 1).to_bytes(4, "big")
    (tmp_path / "stale.db").write_bytes(bytes(stale))
    check_store_file(tmp_path / "stale.db", read_only=True)
    # page size 1 in the header means 65536
    big = bytearray(data)
    big[16:18] = (1).to_bytes(2, "big")
    (tmp_path / "big.db").write_bytes(bytes(big))
    with pytest.raises(ConfigError, match=rf"bytes of the {int.from_bytes(data[28:32], 'big') * 65536:,} its"):
        check_store_file(tmp_path / "big.db", read_only=True)


def test_versions_and_foreign_schemas(tmp_path):
    newer = tmp_path / "newer.db"
    c = sqlite3.connect(newer)
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    c.close()
    for ro in (False, True):
        with pytest.raises(ConfigError, match=rf"schema version {SCHEMA_VERSION + 1}, written by a newer codesign "
                                              rf"\(allowed: versions 1 to {SCHEMA_VERSION}; upgrade"):
            ResultStore(newer, read_only=ro)
    other = tmp_path / "other.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE orders (id INTEGER)")
    c.execute("CREATE TABLE items (x INTEGER)")
    c.close()
    with pytest.raises(ConfigError, match=r"is a SQLite file of another schema \(tables \['orders'\]; allowed"):
        ResultStore(other)
    bare = tmp_path / "bare.db"
    c = sqlite3.connect(bare)
    c.execute("CREATE TABLE items (x INTEGER)")  # a known table name, no schema version
    c.close()
    with pytest.raises(ConfigError, match=r"is not a codesign result store \(no schema version; allowed"):
        ResultStore(bare, read_only=True)
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84 + b"\xff" * 4000)
    with pytest.raises(ConfigError, match=r"cannot be read as a result store \(SQLite: "):
        ResultStore(broken)


def _v1_store(path):
    c = sqlite3.connect(path)
    c.executescript("""
        CREATE TABLE items (task TEXT, item_id TEXT, subtask TEXT, label INTEGER, meta_json TEXT,
                            PRIMARY KEY (task, item_id));
        CREATE TABLE outputs (variant_id TEXT, task TEXT, item_id TEXT, mode TEXT, raw_text TEXT, label INTEGER,
                              outcome TEXT, latency_s REAL, created REAL,
                              PRIMARY KEY (variant_id, task, item_id, mode));
        CREATE TABLE variants (variant_id TEXT PRIMARY KEY, model TEXT, method TEXT, bits INTEGER,
                               group_size INTEGER, sym INTEGER, calib TEXT, seed INTEGER, spec_json TEXT, created REAL);
        INSERT INTO items VALUES ('t', 'i0', 's', 1, '{"q": 1}');
        INSERT INTO outputs VALUES ('v', 't', 'i0', 'generate', 'B', 1, 'label', 0.5, 1.0);
        PRAGMA user_version=1;
    """)
    c.close()


def test_a_v1_store_is_read_through_views_and_migrated_by_a_writer(tmp_path):
    path = tmp_path / "v1.db"
    _v1_store(path)
    before = path.read_bytes()
    with ResultStore(path, read_only=True) as r:
        assert r.done_item_ids("v", "t", protocol="codesign") == {"i0"} and r.protocols() == ["codesign"]
        assert r.items("t", "codesign").meta.tolist() == [{"q": 1}]
        assert r.study_result("x") is None and r.studies() == [] and r.eval_runs() == []  # later tables: empty
    assert path.read_bytes() == before  # nothing written
    with ResultStore(path) as w:
        assert w.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert w.done_item_ids("v", "t", protocol="codesign") == {"i0"}
        assert w.done_item_ids("v", "t", protocol="decodingtrust") == set()
        assert w.frame("outputs").latency_s.tolist() == [0.5]
        tables = {r[0] for r in w.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not any(t.endswith("_v1") for t in tables) and "claims" in tables
        w.add_outputs([OutputRow("v", "t", "i0", 0)])  # the default protocol: another answer
        assert w.protocols() == ["codesign", "decodingtrust"]


def test_a_reader_never_writes_and_the_memory_store_works(tmp_path):
    path = tmp_path / "s.db"
    with ResultStore(path) as s:
        _answers(s)
    with ResultStore(path, read_only=True) as r:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            r.add_outputs([OutputRow("x", "t", "i0", 0)])
        assert r.done_item_ids(V.variant_id, "t") == {"i0", "i2"}
        assert r.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ResultStore(path) as w:
        assert w.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert w.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert w.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60000
    with ResultStore(":memory:") as m:
        assert m.is_empty() and not (tmp_path / ":memory:").exists()
        m.add_outputs([OutputRow("x", "t", "i0", 0)])
        assert m.done_item_ids("x", "t") == {"i0"}


def test_a_transaction_rolls_back_on_error(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as c:
            c.execute("INSERT INTO studies VALUES ('a', '{}', 0)")
            raise RuntimeError("stop")
    assert store.studies() == []
