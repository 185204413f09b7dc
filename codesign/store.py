"""The result store: one SQLite file (WAL mode) that every pipeline stage reads and writes.

Tables (all keyed so a re-run never duplicates a row, and an interrupted run resumes from
what was stored):

- ``variants``      one row per :class:`~codesign.records.VariantSpec` (dense model included)
- ``items``         benchmark items per (protocol, task): gold label id, subtask, JSON metadata
- ``outputs``       per (variant, protocol, task, item, mode): raw text, parsed label / outcome code,
                    latency
- ``eval_runs``     measured cost of evaluating one variant on one task (tokens/s, memory)
- ``measurements``  timed prefill/decode runs (``codesign measure``) tagged with device and versions
- ``studies`` / ``study_points``  explore studies and every configuration they evaluated
- ``study_results``, ``study_front``, ``study_hypervolume``, ``study_recommendations`` (+
  ``study_alternatives``), ``study_bootstrap``, ``study_intervals``, ``study_pareto_probability``  what a
  study concluded (:class:`~codesign.records.StudyResult`), written by explore, read by the report

Rows cross this boundary as the typed records of :mod:`codesign.records` (``EvalRun``,
``StudyPoint``, ``StudyResult``, ...); pandas reads any table for analysis
(``store.frame("outputs")``). Writers use short transactions with a busy timeout, so two
processes can share one file.

Every item, answer and evaluation run belongs to an evaluation protocol
(:mod:`codesign.evaluate.protocols`): the same task name under two protocols has different prompts
and parsing, so ``protocol`` is part of the keys of ``items`` and ``outputs`` and of every query
that reads them. Schema version 1 (before protocols) is migrated in place, in one transaction,
when a writing command opens it: its rows are the ``codesign`` protocol. A reader
(``read_only=True``: vote, report, export, the trust study's ``--tables-only``) never writes: it
sees an older store through temporary views and empty temporary tables (tables a later codesign
added), which live in its connection only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.records import (DEFAULT_PROTOCOL, INVALID, BootstrapSettings, Configuration, EvalRun, FrontPoint,
                              HypervolumeStep, Interval, Measurement, ParetoProbability, Recommendation, StudyPoint,
                              StudyResult, VariantSpec)

SCHEMA_VERSION = 2
#: Protocol of the rows of a version-1 store (written before protocols existed).
V1_PROTOCOL = "codesign"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS variants (
    variant_id TEXT PRIMARY KEY, model TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER NOT NULL,
    group_size INTEGER NOT NULL, sym INTEGER NOT NULL, calib TEXT NOT NULL, seed INTEGER NOT NULL,
    spec_json TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    protocol TEXT NOT NULL, task TEXT NOT NULL, item_id TEXT NOT NULL, subtask TEXT NOT NULL,
    label INTEGER NOT NULL, meta_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (protocol, task, item_id)
);
CREATE TABLE IF NOT EXISTS outputs (
    variant_id TEXT NOT NULL, protocol TEXT NOT NULL, task TEXT NOT NULL, item_id TEXT NOT NULL,
    mode TEXT NOT NULL, raw_text TEXT, label INTEGER NOT NULL, outcome TEXT NOT NULL, latency_s REAL,
    created REAL NOT NULL,
    PRIMARY KEY (variant_id, protocol, task, item_id, mode)
);
CREATE INDEX IF NOT EXISTS outputs_task ON outputs (protocol, task, mode);
CREATE TABLE IF NOT EXISTS eval_runs (
    variant_id TEXT NOT NULL, protocol TEXT NOT NULL, task TEXT NOT NULL, mode TEXT NOT NULL,
    device TEXT NOT NULL, n_items INTEGER, prompt_tokens INTEGER, gen_tokens INTEGER, prompt_tok_s REAL,
    gen_tok_s REAL, tpot_ms REAL, peak_mem_bytes INTEGER, wall_s REAL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, variant TEXT NOT NULL,
    wbits INTEGER, group_size INTEGER, dtype TEXT, device TEXT NOT NULL, device_name TEXT,
    batch INTEGER NOT NULL, prompt_len INTEGER NOT NULL, gen_len INTEGER NOT NULL,
    prefill_ms REAL, tpot_ms REAL, peak_mem_bytes INTEGER, repeats INTEGER,
    versions_json TEXT, extra_json TEXT, created REAL NOT NULL,
    kernel TEXT, spec TEXT, schedule TEXT
);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY, config_json TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS study_points (
    study TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL, point_id INTEGER NOT NULL,
    iteration INTEGER NOT NULL, config_json TEXT NOT NULL, objectives_json TEXT NOT NULL,
    feasible INTEGER NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (study, method, seed, point_id)
);
CREATE TABLE IF NOT EXISTS claims (
    variant_id TEXT NOT NULL, protocol TEXT NOT NULL, task TEXT NOT NULL, mode TEXT NOT NULL, item_id TEXT NOT NULL,
    host TEXT NOT NULL, pid INTEGER NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (variant_id, protocol, task, mode, item_id)
);
CREATE TABLE IF NOT EXISTS study_results (
    study TEXT PRIMARY KEY, objectives_json TEXT NOT NULL, ref_point_json TEXT NOT NULL, reference_hv REAL,
    n_points INTEGER NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS study_front (
    study TEXT NOT NULL, spec TEXT NOT NULL, rank INTEGER NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL,
    point_id INTEGER NOT NULL, found_by TEXT NOT NULL,
    PRIMARY KEY (study, spec, rank)
);
CREATE TABLE IF NOT EXISTS study_hypervolume (
    study TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL, n_evals INTEGER NOT NULL,
    iteration INTEGER NOT NULL, hv REAL NOT NULL, hv_fraction REAL, log_hv_diff REAL,
    PRIMARY KEY (study, method, seed, n_evals)
);
CREATE TABLE IF NOT EXISTS study_recommendations (
    study TEXT NOT NULL, rank INTEGER NOT NULL, role TEXT NOT NULL, reason TEXT NOT NULL, method TEXT NOT NULL,
    seed INTEGER NOT NULL, point_id INTEGER NOT NULL,
    PRIMARY KEY (study, rank)
);
CREATE TABLE IF NOT EXISTS study_alternatives (
    study TEXT NOT NULL, rank INTEGER NOT NULL, alt_rank INTEGER NOT NULL, method TEXT NOT NULL,
    seed INTEGER NOT NULL, point_id INTEGER NOT NULL,
    PRIMARY KEY (study, rank, alt_rank)
);
CREATE TABLE IF NOT EXISTS study_bootstrap (
    study TEXT PRIMARY KEY, n_resamples INTEGER NOT NULL, level REAL NOT NULL, seed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS study_intervals (
    study TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL, point_id INTEGER NOT NULL,
    objective TEXT NOT NULL, estimate REAL, se REAL, low REAL, high REAL,
    PRIMARY KEY (study, method, seed, point_id, objective)
);
CREATE TABLE IF NOT EXISTS study_pareto_probability (
    study TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL, point_id INTEGER NOT NULL,
    probability REAL NOT NULL,
    PRIMARY KEY (study, method, seed, point_id)
);
"""
#: Tables holding a study's :class:`~codesign.records.StudyResult` (replaced together).
_RESULT_TABLES = ("study_results", "study_front", "study_hypervolume", "study_recommendations", "study_alternatives",
                  "study_bootstrap", "study_intervals", "study_pareto_probability")


def _float(v) -> float:
    return float("nan") if v is None else float(v)


_EVAL_RUN_COLUMNS = ["variant_id", "protocol", "task", "mode", "device", "n_items", "prompt_tokens",
                     "gen_tokens", "prompt_tok_s", "gen_tok_s", "tpot_ms", "peak_mem_bytes", "wall_s"]


# Version 1 -> 2: the tables whose keys gain ``protocol`` are rebuilt (SQLite cannot change a
# primary key in place); their rows are the codesign protocol. Run inside one transaction.
_V1_TABLES = {
    "items": "task, item_id, subtask, label, meta_json",
    "outputs": "variant_id, task, item_id, mode, raw_text, label, outcome, latency_s, created",
    "eval_runs": "variant_id, task, mode, device, n_items, prompt_tokens, gen_tokens, prompt_tok_s, gen_tok_s, "
                 "tpot_ms, peak_mem_bytes, wall_s, created",
}


#: A claim by a process on another host is trusted this long (its liveness cannot be checked).
CLAIM_TTL_S = 900.0


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (one owned by another user counts as running)."""
    try:
        # signal 0 only asks; mutation testing must never turn it into a real signal
        os.kill(pid, 0)  # pragma: no mutate
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_live(host: str, pid: int, created: float, me_host: str, me_pid: int, now: float) -> bool:
    if host == me_host:
        return pid != me_pid and pid_alive(pid)  # our own claim (an earlier batch of this run): take it again
    return now - created < CLAIM_TTL_S


#: Every table a codesign store has had (version 1's included): any other table means a foreign file.
_KNOWN_TABLES = {stmt.split()[5] for stmt in _SCHEMA.split(";") if stmt.split()[:2] == ["CREATE", "TABLE"]}
_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_store_file(path: Path, read_only: bool) -> None:
    """Refuse a file that is not a whole SQLite database before SQLite opens it: not SQLite at all
    (a text file, a binary), empty (for a reader), or shorter than its header says (truncated).
    A missing file is a new store for a writer."""
    from codesign.config import ConfigError

    if not path.exists():
        return
    if path.is_dir():
        raise ConfigError(f"--store: {path} is a folder (allowed: a SQLite result store file)")
    size = path.stat().st_size
    if size == 0:
        if read_only:
            raise ConfigError(f"--store: {path} is an empty file (allowed: a result store written by codesign "
                              "eval / explore)")
        return
    with open(path, "rb") as f:
        head = f.read(100)
    if not head.startswith(_SQLITE_MAGIC):
        raise ConfigError(f"--store: {path} is not a SQLite file (it starts {head[:16]!r}; allowed: a codesign "
                          "result store)")
    if len(head) < 100:
        raise ConfigError(f"--store: {path} is truncated ({size} bytes, shorter than a SQLite header)")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages, change, valid_for = (int.from_bytes(head[i:i + 4], "big") for i in (28, 24, 92))
    # the header's page count is reliable when its "valid-for" number matches the change counter
    if valid_for == change and pages * page_size > size:
        raise ConfigError(f"--store: {path} is truncated ({size:,} bytes of the {pages * page_size:,} its header "
                          "records; restore it from a copy)")


@dataclass
class ItemRow:
    """One benchmark item as stored (the gold label is a label id of the task)."""

    task: str
    item_id: str
    subtask: str
    label: int
    meta: dict[str, Any] = field(default_factory=dict)
    protocol: str = DEFAULT_PROTOCOL


@dataclass
class OutputRow:
    """One model answer to one item. ``label`` is a label id, INVALID or REFUSED."""

    variant_id: str
    task: str
    item_id: str
    label: int
    raw_text: str | None = None
    mode: str = "generate"
    latency_s: float | None = None
    protocol: str = DEFAULT_PROTOCOL

    @property
    def outcome(self) -> str:
        from codesign.records import outcome_name

        return outcome_name(self.label)


@dataclass
class VariantRows:
    """One variant's evaluation as plain rows: what a Ray worker returns to the driver, which alone
    writes them (:meth:`ResultStore.add_variant_rows`)."""

    spec: VariantSpec
    items: list[ItemRow]
    outputs: list[OutputRow]
    eval_runs: list[EvalRun]


def _insert_variant(c: sqlite3.Connection, spec: VariantSpec) -> None:
    c.execute("INSERT OR IGNORE INTO variants VALUES (?,?,?,?,?,?,?,?,?,?)",
              (spec.variant_id, spec.model, spec.method, spec.bits, spec.group_size, int(spec.sym), spec.calib,
               spec.seed, json.dumps(spec.to_dict(), sort_keys=True, default=str), time.time()))


def _insert_items(c: sqlite3.Connection, rows: Iterable[ItemRow]) -> None:
    c.executemany(
        "INSERT OR IGNORE INTO items (protocol, task, item_id, subtask, label, meta_json) VALUES (?,?,?,?,?,?)",
        [(r.protocol, r.task, r.item_id, r.subtask, int(r.label), json.dumps(r.meta, default=str)) for r in rows])


def _insert_outputs(c: sqlite3.Connection, rows: Iterable[OutputRow]) -> int:
    """INSERT OR IGNORE answers; returns how many were new."""
    now = time.time()
    data = [(r.variant_id, r.protocol, r.task, r.item_id, r.mode, r.raw_text, int(r.label), r.outcome,
             r.latency_s, now) for r in rows]
    before = c.total_changes
    c.executemany("INSERT OR IGNORE INTO outputs (variant_id, protocol, task, item_id, mode, raw_text, label, "
                  "outcome, latency_s, created) VALUES (?,?,?,?,?,?,?,?,?,?)", data)
    return c.total_changes - before


def _insert_eval_run(c: sqlite3.Connection, run: EvalRun) -> None:
    vals = [getattr(run, col) for col in _EVAL_RUN_COLUMNS] + [time.time()]
    c.execute(f"INSERT INTO eval_runs ({','.join(_EVAL_RUN_COLUMNS)},created) VALUES ({','.join('?' * len(vals))})",
              vals)


class ResultStore:
    """A SQLite result store. Use as a context manager or call :meth:`close`.

    ``read_only=True`` opens an existing store without ever writing to it (commands that only
    read: voting, reports, exports); otherwise the store is created if missing and an older
    schema is migrated in place.
    ``path=":memory:"`` is a private store in memory (a Ray worker's scratch store: its rows go
    back to the driver, see :mod:`codesign.explore.executor`).
    """

    def __init__(self, path: str | Path, read_only: bool = False):
        from codesign.config import ConfigError

        self.path = Path(path)
        if read_only and not self.path.is_file():
            what = "is a folder" if self.path.is_dir() else "does not exist"
            raise ConfigError(f"--store: {self.path} {what} (allowed: a result store written by codesign eval / "
                              "explore)")
        check_store_file(self.path, read_only)  # before SQLite touches it: nothing is written to a wrong file
        try:
            self._open(read_only)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"--store: {self.path} cannot be read as a result store (SQLite: {exc})") from None

    def _open(self, read_only: bool) -> None:
        from codesign.config import ConfigError

        if read_only:
            # mode=ro: the file is opened, never created or touched (a URI, so any path is safe)
            self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60.0,
                                        isolation_level=None)
        else:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout=60000")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version > SCHEMA_VERSION or version < 0:
            raise ConfigError(f"--store: {self.path} has store schema version {version}, written by a newer codesign "
                              f"(allowed: versions 1 to {SCHEMA_VERSION}; upgrade codesign to read it)")
        foreign = sorted(t for t in tables if t not in _KNOWN_TABLES and not t.startswith("sqlite_"))
        if version == 0 and foreign:
            raise ConfigError(f"--store: {self.path} is a SQLite file of another schema (tables {foreign[:8]}; "
                              "allowed: a codesign result store, or a new file)")
        if read_only:
            if version == 0:
                raise ConfigError(f"--store: {self.path} is not a codesign result store (no schema version; allowed: "
                                  "a result store written by codesign eval / explore)")
            if version == 1:
                self._v1_views()
            self._missing_tables_as_temp()
            return
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        if version == 1:
            self._migrate_v1()
        # executescript commits on its own; the DDL is idempotent (IF NOT EXISTS).
        self.conn.executescript(_SCHEMA)
        self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _migrate_v1(self) -> None:
        """Version 1 -> 2 in one transaction: rebuild items/outputs/eval_runs with ``protocol`` in
        their keys; every old row is the codesign protocol. An interruption rolls everything back."""
        with self.transaction() as c:
            have = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            old = {t: f"{t}_v1" for t in _V1_TABLES if t in have}
            for t, renamed in old.items():
                c.execute(f"ALTER TABLE {t} RENAME TO {renamed}")
            c.execute("DROP INDEX IF EXISTS outputs_task")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            for t, renamed in old.items():
                cols = _V1_TABLES[t]
                c.execute(f"INSERT INTO {t} (protocol, {cols}) SELECT ?, {cols} FROM {renamed}", (V1_PROTOCOL,))
                c.execute(f"DROP TABLE {renamed}")
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _v1_views(self) -> None:
        """Read a version-1 store as version 2 without writing to it: temporary views (they live in
        this connection only and shadow the tables) add ``protocol = 'codesign'``."""
        have = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for t, cols in _V1_TABLES.items():
            if t in have:
                self.conn.execute(f"CREATE TEMP VIEW {t} AS SELECT '{V1_PROTOCOL}' AS protocol, {cols} FROM main.{t}")

    def _missing_tables_as_temp(self) -> None:
        """A reader of a store written by an older codesign sees the tables added since (study
        results, ...) as empty temporary tables of this connection: its queries need no cases."""
        have = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        have |= {r[0] for r in self.conn.execute("SELECT name FROM sqlite_temp_master")}
        for stmt in _SCHEMA.split(";"):
            words = stmt.split()
            if words[:5] == ["CREATE", "TABLE", "IF", "NOT", "EXISTS"] and words[5] not in have:
                self.conn.execute(stmt.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front, so writers queue, not fail."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def is_empty(self) -> bool:
        """Whether no stage has stored anything yet (no variant, answer, measurement or study)."""
        return not any(self.conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                       for t in ("variants", "outputs", "measurements", "studies", "eval_runs"))

    def frame(self, table: str, where: str = "", params: Sequence[Any] = ()):
        """A whole table (optionally filtered by a SQL ``where`` clause) as a pandas DataFrame."""
        import pandas as pd

        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
        return pd.read_sql_query(sql, self.conn, params=list(params))

    # -- variants ---------------------------------------------------------------------------
    def add_variant(self, spec: VariantSpec) -> str:
        with self.transaction() as c:
            _insert_variant(c, spec)
        return spec.variant_id

    def variant_spec(self, variant_id: str) -> VariantSpec:
        row = self.conn.execute("SELECT spec_json FROM variants WHERE variant_id=?", (variant_id,)).fetchone()
        if row is None:
            known = [r[0] for r in self.conn.execute("SELECT variant_id FROM variants")]
            raise KeyError(f"{self.path}: unknown variant {variant_id!r} (known: {known})")
        return VariantSpec.from_dict(json.loads(row[0]))

    def variant_bits(self, variant_ids: Sequence[str]) -> np.ndarray:
        return np.array([self.variant_spec(v).bits for v in variant_ids], dtype=np.int64)

    # -- items and outputs ------------------------------------------------------------------
    def add_items(self, rows: Iterable[ItemRow]) -> None:
        with self.transaction() as c:
            _insert_items(c, rows)

    def add_outputs(self, rows: Iterable[OutputRow]) -> int:
        """Insert answers; an answer already stored for the same key is kept (never duplicated)."""
        with self.transaction() as c:
            return _insert_outputs(c, rows)

    def claim_items(self, variant_id: str, task: str, mode: str, protocol: str,
                    item_ids: Sequence[str]) -> tuple[set[str], set[str]]:
        """Claim ``item_ids`` for this process before answering them, so that two processes
        evaluating the same variant split the work instead of both doing it. In one transaction:
        items already answered are left out; an item another live process claimed is left to it.
        Returns ``(claimed, held)``: the items this process now answers, and those another process
        is answering. A claim of a dead process (same host, its pid gone) or an old one (another
        host, older than :data:`CLAIM_TTL_S`) is taken over, so a killed run never blocks a resume."""
        import socket

        me_host, me_pid, now = socket.gethostname(), os.getpid(), time.time()
        ids = list(dict.fromkeys(item_ids))
        claimed, held = set(), set()
        with self.transaction() as c:
            marks = ",".join("?" * len(ids))
            key = (variant_id, protocol, task, mode)
            done = {r[0] for r in c.execute(f"SELECT item_id FROM outputs WHERE variant_id=? AND protocol=? AND "
                                             f"task=? AND mode=? AND item_id IN ({marks})", (*key, *ids))}
            claims = {r[0]: r[1:] for r in c.execute(f"SELECT item_id, host, pid, created FROM claims WHERE "
                                                      f"variant_id=? AND protocol=? AND task=? AND mode=? AND "
                                                      f"item_id IN ({marks})", (*key, *ids))}
            for iid in ids:
                if iid in done:
                    continue
                if iid in claims and _claim_live(*claims[iid], me_host, me_pid, now):
                    held.add(iid)
                    continue
                claimed.add(iid)
            c.executemany("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?,?,?,?)",
                          [(*key, iid, me_host, me_pid, now) for iid in claimed])
        return claimed, held

    def release_claims(self, variant_id: str, task: str, mode: str, protocol: str, item_ids: Sequence[str]) -> None:
        """Drop this process's claims on ``item_ids`` (after their answers are stored)."""
        with self.transaction() as c:
            c.executemany("DELETE FROM claims WHERE variant_id=? AND protocol=? AND task=? AND mode=? AND item_id=? "
                          "AND pid=?", [(variant_id, protocol, task, mode, iid, os.getpid()) for iid in item_ids])

    def done_item_ids(self, variant_id: str, task: str, mode: str = "generate",
                      protocol: str = DEFAULT_PROTOCOL) -> set[str]:
        """Items of ``task`` (under ``protocol``) this variant has a stored answer for (resume)."""
        cur = self.conn.execute(
            "SELECT item_id FROM outputs WHERE variant_id=? AND protocol=? AND task=? AND mode=?",
            (variant_id, protocol, task, mode))
        return {r[0] for r in cur}

    def items(self, task: str, protocol: str = DEFAULT_PROTOCOL):
        """Items of a task under ``protocol`` as a DataFrame (item_id, subtask, label, meta as dict),
        sorted by item_id."""
        df = self.frame("items", "protocol=? AND task=?", (protocol, task)).sort_values("item_id")
        df = df.reset_index(drop=True)
        df["meta"] = df.pop("meta_json").map(json.loads)
        return df

    def tasks(self, protocol: str | None = None) -> list[str]:
        """Tasks with stored answers (under ``protocol``; ``None``: any protocol)."""
        sql, params = "SELECT DISTINCT task FROM outputs", []
        if protocol:
            sql, params = sql + " WHERE protocol=?", [protocol]
        return [r[0] for r in self.conn.execute(sql + " ORDER BY task", params)]

    def protocols(self) -> list[str]:
        """Protocols with stored answers."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT protocol FROM outputs ORDER BY protocol")]

    def evaluated_variants(self, task: str | None = None, mode: str | None = None,
                           protocol: str | None = None) -> list[str]:
        sql, params = "SELECT DISTINCT variant_id FROM outputs WHERE 1=1", []
        if task:
            sql, params = sql + " AND task=?", params + [task]
        if mode:
            sql, params = sql + " AND mode=?", params + [mode]
        if protocol:
            sql, params = sql + " AND protocol=?", params + [protocol]
        return [r[0] for r in self.conn.execute(sql + " ORDER BY variant_id", params)]

    def label_matrix(self, task: str, variant_ids: Sequence[str], mode: str = "generate",
                     item_ids: Sequence[str] | None = None,
                     protocol: str = DEFAULT_PROTOCOL) -> tuple[list[str], np.ndarray]:
        """Answers of several variants on one task (under ``protocol``), aligned by item.

        Returns ``(item_ids, labels)`` with ``labels`` of shape (len(variant_ids), n_items);
        an item a variant has no stored answer for counts as INVALID.
        """
        if item_ids is None:
            item_ids = self.items(task, protocol)["item_id"].tolist()
        index = {iid: j for j, iid in enumerate(item_ids)}
        out = np.full((len(variant_ids), len(item_ids)), INVALID, dtype=np.int64)
        for i, vid in enumerate(variant_ids):
            cur = self.conn.execute(
                "SELECT item_id, label FROM outputs WHERE variant_id=? AND protocol=? AND task=? AND mode=?",
                (vid, protocol, task, mode))
            for iid, lab in cur:
                j = index.get(iid)
                if j is not None:
                    out[i, j] = lab
        return list(item_ids), out

    # -- measured costs ---------------------------------------------------------------------
    def add_eval_run(self, run: EvalRun) -> None:
        with self.transaction() as c:
            _insert_eval_run(c, run)

    def eval_runs(self, variant_id: str | None = None) -> list[EvalRun]:
        """Stored evaluation costs (of one variant), oldest first."""
        sql = f"SELECT {','.join(_EVAL_RUN_COLUMNS)} FROM eval_runs" + (" WHERE variant_id=?" if variant_id else "")
        rows = self.conn.execute(sql + " ORDER BY created", (variant_id,) if variant_id else ())
        return [EvalRun(**dict(zip(_EVAL_RUN_COLUMNS, r))) for r in rows]

    # -- one variant's evaluation as a unit (what a remote worker hands back) -----------------
    def variant_rows(self, variant_id: str) -> VariantRows:
        """Every row an evaluation of ``variant_id`` wrote: its spec, the items of the tasks it
        answered, its answers and its eval runs (read from a worker's private in-memory store)."""
        outputs = [OutputRow(v, t, i, lab, raw, m, lat, p) for v, p, t, i, m, raw, lab, lat in self.conn.execute(
            "SELECT variant_id, protocol, task, item_id, mode, raw_text, label, latency_s FROM outputs "
            "WHERE variant_id=? ORDER BY protocol, task, item_id, mode", (variant_id,))]
        items = [ItemRow(t, i, sub, lab, json.loads(meta), p) for p, t, i, sub, lab, meta in self.conn.execute(
            "SELECT protocol, task, item_id, subtask, label, meta_json FROM items WHERE (protocol, task) IN "
            "(SELECT DISTINCT protocol, task FROM outputs WHERE variant_id=?) ORDER BY protocol, task, item_id",
            (variant_id,))]
        return VariantRows(self.variant_spec(variant_id), items, outputs, self.eval_runs(variant_id))

    def add_variant_rows(self, rows: VariantRows) -> int:
        """Write one variant's evaluation in a single transaction (all of it or, if interrupted,
        none); answers already stored are kept. Returns how many answers were new."""
        with self.transaction() as c:
            _insert_variant(c, rows.spec)
            _insert_items(c, rows.items)
            added = _insert_outputs(c, rows.outputs)
            for run in rows.eval_runs:
                _insert_eval_run(c, run)
        return added

    def add_measurement(self, m: Measurement) -> None:
        """Store one :class:`~codesign.records.Measurement` (a store from before the ``kernel``,
        ``spec`` and ``schedule`` columns gains them here, on its first new row)."""
        row = m.to_row()
        self._add_missing_columns("measurements", {c: "TEXT" for c in ("kernel", "spec", "schedule")})
        names = list(row) + ["created"]
        vals = list(row.values()) + [time.time()]
        with self.transaction() as c:
            c.execute(f"INSERT INTO measurements ({','.join(names)}) VALUES ({','.join('?' * len(vals))})", vals)

    def measurements(self, where: str = "", params: Sequence[Any] = ()) -> list[Measurement]:
        """Rows of ``measurements`` (optionally filtered) as typed records; old stores read too."""
        return [Measurement.from_row(r) for r in self.frame("measurements", where, params).to_dict("records")]

    def _add_missing_columns(self, table: str, columns: dict[str, str]) -> None:
        have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in have:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    # -- studies ----------------------------------------------------------------------------
    def create_study(self, name: str, config: dict[str, Any]) -> None:
        """Register a study; re-creating one with a different config is an error (resume = same config)."""
        blob = json.dumps(config, sort_keys=True, default=str)
        row = self.conn.execute("SELECT config_json FROM studies WHERE name=?", (name,)).fetchone()
        if row is not None:
            if row[0] != blob:
                raise ValueError(f"{self.path}: study {name!r} exists with a different config; "
                                 "use another --study name or the same config to resume")
            return
        with self.transaction() as c:
            c.execute("INSERT INTO studies VALUES (?,?,?)", (name, blob, time.time()))

    def study_config(self, name: str) -> dict[str, Any]:
        """The config a study was created with (``KeyError`` naming the stored studies if unknown)."""
        row = self.conn.execute("SELECT config_json FROM studies WHERE name=?", (name,)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no study named {name!r} (studies in this store: {self.studies() or 'none'})")
        return json.loads(row[0])

    def add_study_point(self, point: StudyPoint) -> None:
        """Store one evaluated configuration (a point already stored under its key is kept)."""
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO study_points VALUES (?,?,?,?,?,?,?,?,?)",
                (point.study, point.method, int(point.seed), int(point.point_id), int(point.iteration),
                 json.dumps(point.config.to_dict(), sort_keys=True, default=str), json.dumps(dict(point.objectives)),
                 int(bool(point.feasible)), time.time()),
            )

    def study_points(self, study: str, method: str | None = None, seed: int | None = None) -> list[StudyPoint]:
        """Points of a study (of one method / seed), ordered by method, seed, point id."""
        where, params = "study=?", [study]
        if method is not None:
            where, params = where + " AND method=?", params + [method]
        if seed is not None:
            where, params = where + " AND seed=?", params + [int(seed)]
        rows = self.conn.execute(
            "SELECT study, method, seed, point_id, iteration, config_json, objectives_json, feasible, created "
            f"FROM study_points WHERE {where} ORDER BY method, seed, point_id", params)
        return [StudyPoint(st, m, int(sd), int(pid), int(it), Configuration.from_dict(json.loads(cj)), json.loads(oj),
                           bool(f), cr) for st, m, sd, pid, it, cj, oj, f, cr in rows]

    def save_study_result(self, result: StudyResult) -> None:
        """Store what a study concluded, replacing its previous result (one transaction)."""
        s = result.study
        with self.transaction() as c:
            for table in _RESULT_TABLES:
                c.execute(f"DELETE FROM {table} WHERE study=?", (s,))
            c.execute("INSERT INTO study_results VALUES (?,?,?,?,?,?)",
                      (s, json.dumps([list(o) for o in result.objectives]), json.dumps(list(result.ref_point)),
                       result.reference_hv, int(result.n_points), time.time()))
            ranks: dict[str, int] = {}
            for f in result.front:
                scope = f.spec or ""
                ranks[scope] = ranks.get(scope, -1) + 1
                c.execute("INSERT INTO study_front VALUES (?,?,?,?,?,?,?)",
                          (s, scope, ranks[scope], *f.point, ",".join(f.found_by)))
            c.executemany("INSERT INTO study_hypervolume VALUES (?,?,?,?,?,?,?,?)",
                          [(s, h.method, h.seed, h.n_evals, h.iteration, h.hv, h.hv_fraction, h.log_hv_diff)
                           for h in result.hypervolume])
            c.executemany("INSERT INTO study_recommendations VALUES (?,?,?,?,?,?,?)",
                          [(s, i, r.role, r.reason, *r.point) for i, r in enumerate(result.recommendations)])
            c.executemany("INSERT INTO study_alternatives VALUES (?,?,?,?,?,?)",
                          [(s, i, j, *a) for i, r in enumerate(result.recommendations)
                           for j, a in enumerate(r.alternatives)])
            self._save_uncertainty(c, result)

    @staticmethod
    def _save_uncertainty(c, result: StudyResult) -> None:
        s, b = result.study, result.bootstrap
        if b is None:
            return
        c.execute("INSERT INTO study_bootstrap VALUES (?,?,?,?)", (s, int(b.n_resamples), float(b.level), int(b.seed)))
        c.executemany("INSERT INTO study_intervals VALUES (?,?,?,?,?,?,?,?,?)",
                      [(s, *i.point, i.objective, i.estimate, i.se, i.low, i.high) for i in result.intervals])
        c.executemany("INSERT INTO study_pareto_probability VALUES (?,?,?,?,?)",
                      [(s, *p.point, p.probability) for p in result.pareto_probability])

    def study_result(self, study: str) -> StudyResult | None:
        """What the study concluded, or ``None`` if explore has not stored a result for it."""
        row = self.conn.execute("SELECT objectives_json, ref_point_json, reference_hv, n_points FROM study_results "
                                "WHERE study=?", (study,)).fetchone()
        if row is None:
            return None
        q = self.conn.execute
        front = tuple(FrontPoint((m, int(sd), int(pid)), tuple(fb.split(",")) if fb else (), spec or None)
                      for spec, m, sd, pid, fb in q("SELECT spec, method, seed, point_id, found_by FROM study_front "
                                                    "WHERE study=? ORDER BY spec, rank", (study,)))
        hv = tuple(HypervolumeStep(m, int(sd), int(n), int(it), float(v), f, d)
                   for m, sd, n, it, v, f, d in q("SELECT method, seed, n_evals, iteration, hv, hv_fraction, "
                                                   "log_hv_diff FROM study_hypervolume WHERE study=? "
                                                   "ORDER BY method, seed, n_evals", (study,)))
        alts: dict[int, list[tuple[str, int, int]]] = {}
        for rank, m, sd, pid in q("SELECT rank, method, seed, point_id FROM study_alternatives WHERE study=? "
                                  "ORDER BY rank, alt_rank", (study,)):
            alts.setdefault(int(rank), []).append((m, int(sd), int(pid)))
        recs = tuple(Recommendation(role, why, (m, int(sd), int(pid)), tuple(alts.get(int(rank), ())))
                     for rank, role, why, m, sd, pid in q("SELECT rank, role, reason, method, seed, point_id FROM "
                                                           "study_recommendations WHERE study=? ORDER BY rank",
                                                           (study,)))
        boot = q("SELECT n_resamples, level, seed FROM study_bootstrap WHERE study=?", (study,)).fetchone()
        intervals = tuple(Interval((m, int(sd), int(pid)), o, *(_float(v) for v in vals))
                          for m, sd, pid, o, *vals in q("SELECT method, seed, point_id, objective, estimate, se, low, "
                                                        "high FROM study_intervals WHERE study=? ORDER BY method, "
                                                        "seed, point_id, objective", (study,)))
        probs = tuple(ParetoProbability((m, int(sd), int(pid)), float(p))
                      for m, sd, pid, p in q("SELECT method, seed, point_id, probability FROM study_pareto_probability "
                                             "WHERE study=? ORDER BY method, seed, point_id", (study,)))
        return StudyResult(study, tuple(tuple(o) for o in json.loads(row[0])), tuple(json.loads(row[1])), row[2],
                           int(row[3]), front, hv, recs,
                           BootstrapSettings(int(boot[0]), float(boot[1]), int(boot[2])) if boot else None,
                           intervals, probs)

    def studies(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM studies ORDER BY created")]
