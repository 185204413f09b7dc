"""The result store: one SQLite file (WAL mode) that every pipeline stage reads and writes.

Tables (all keyed so a re-run never duplicates a row, and an interrupted run resumes from
what was stored):

- ``variants``      one row per :class:`~codesign.records.VariantSpec` (dense model included)
- ``items``         benchmark items per task: gold label id, subtask, JSON metadata
- ``outputs``       per (variant, task, item, mode): raw text, parsed label / outcome code, latency
- ``eval_runs``     measured cost of evaluating one variant on one task (tokens/s, memory)
- ``measurements``  timed prefill/decode runs (``codesign measure``) tagged with device and versions
- ``studies`` / ``study_points``  explore studies and every configuration they evaluated

pandas reads everything (``store.frame("outputs")``). Writers use short transactions with a
busy timeout, so two processes can share one file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.records import INVALID, Measurement, VariantSpec

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS variants (
    variant_id TEXT PRIMARY KEY, model TEXT NOT NULL, method TEXT NOT NULL, bits INTEGER NOT NULL,
    group_size INTEGER NOT NULL, sym INTEGER NOT NULL, calib TEXT NOT NULL, seed INTEGER NOT NULL,
    spec_json TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    task TEXT NOT NULL, item_id TEXT NOT NULL, subtask TEXT NOT NULL, label INTEGER NOT NULL,
    meta_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (task, item_id)
);
CREATE TABLE IF NOT EXISTS outputs (
    variant_id TEXT NOT NULL, task TEXT NOT NULL, item_id TEXT NOT NULL, mode TEXT NOT NULL,
    raw_text TEXT, label INTEGER NOT NULL, outcome TEXT NOT NULL, latency_s REAL,
    created REAL NOT NULL,
    PRIMARY KEY (variant_id, task, item_id, mode)
);
CREATE INDEX IF NOT EXISTS outputs_task ON outputs (task, mode);
CREATE TABLE IF NOT EXISTS eval_runs (
    variant_id TEXT NOT NULL, task TEXT NOT NULL, mode TEXT NOT NULL, device TEXT NOT NULL,
    n_items INTEGER, prompt_tokens INTEGER, gen_tokens INTEGER, prompt_tok_s REAL, gen_tok_s REAL,
    tpot_ms REAL, peak_mem_bytes INTEGER, wall_s REAL, created REAL NOT NULL
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
"""


@dataclass
class ItemRow:
    """One benchmark item as stored (the gold label is a label id of the task)."""

    task: str
    item_id: str
    subtask: str
    label: int
    meta: dict[str, Any] = field(default_factory=dict)


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

    @property
    def outcome(self) -> str:
        from codesign.records import outcome_name

        return outcome_name(self.label)


class ResultStore:
    """A SQLite result store. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=60000")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise RuntimeError(f"{self.path}: store schema version {version}, this codesign reads {SCHEMA_VERSION}")
        # executescript commits on its own; the DDL is idempotent (IF NOT EXISTS).
        self.conn.executescript(_SCHEMA)
        self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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

    def frame(self, table: str, where: str = "", params: Sequence[Any] = ()):
        """A whole table (optionally filtered by a SQL ``where`` clause) as a pandas DataFrame."""
        import pandas as pd

        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
        return pd.read_sql_query(sql, self.conn, params=list(params))

    # -- variants ---------------------------------------------------------------------------
    def add_variant(self, spec: VariantSpec) -> str:
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO variants VALUES (?,?,?,?,?,?,?,?,?,?)",
                (spec.variant_id, spec.model, spec.method, spec.bits, spec.group_size, int(spec.sym),
                 spec.calib, spec.seed, json.dumps(spec.to_dict(), sort_keys=True, default=str), time.time()),
            )
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
            c.executemany(
                "INSERT OR IGNORE INTO items VALUES (?,?,?,?,?)",
                [(r.task, r.item_id, r.subtask, int(r.label), json.dumps(r.meta, default=str)) for r in rows],
            )

    def add_outputs(self, rows: Iterable[OutputRow]) -> int:
        """Insert answers; an answer already stored for the same key is kept (never duplicated)."""
        now = time.time()
        data = [(r.variant_id, r.task, r.item_id, r.mode, r.raw_text, int(r.label), r.outcome, r.latency_s, now)
                for r in rows]
        with self.transaction() as c:
            before = c.total_changes
            c.executemany("INSERT OR IGNORE INTO outputs VALUES (?,?,?,?,?,?,?,?,?)", data)
            return c.total_changes - before

    def done_item_ids(self, variant_id: str, task: str, mode: str = "generate") -> set[str]:
        cur = self.conn.execute(
            "SELECT item_id FROM outputs WHERE variant_id=? AND task=? AND mode=?", (variant_id, task, mode))
        return {r[0] for r in cur}

    def items(self, task: str):
        """Items of a task as a DataFrame (item_id, subtask, label, meta as dict), sorted by item_id."""
        df = self.frame("items", "task=?", (task,)).sort_values("item_id").reset_index(drop=True)
        df["meta"] = df.pop("meta_json").map(json.loads)
        return df

    def tasks(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT task FROM outputs ORDER BY task")]

    def evaluated_variants(self, task: str | None = None, mode: str | None = None) -> list[str]:
        sql, params = "SELECT DISTINCT variant_id FROM outputs WHERE 1=1", []
        if task:
            sql, params = sql + " AND task=?", params + [task]
        if mode:
            sql, params = sql + " AND mode=?", params + [mode]
        return [r[0] for r in self.conn.execute(sql + " ORDER BY variant_id", params)]

    def label_matrix(self, task: str, variant_ids: Sequence[str], mode: str = "generate",
                     item_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """Answers of several variants on one task, aligned by item.

        Returns ``(item_ids, labels)`` with ``labels`` of shape (len(variant_ids), n_items);
        an item a variant has no stored answer for counts as INVALID.
        """
        if item_ids is None:
            item_ids = self.items(task)["item_id"].tolist()
        index = {iid: j for j, iid in enumerate(item_ids)}
        out = np.full((len(variant_ids), len(item_ids)), INVALID, dtype=np.int64)
        for i, vid in enumerate(variant_ids):
            cur = self.conn.execute(
                "SELECT item_id, label FROM outputs WHERE variant_id=? AND task=? AND mode=?", (vid, task, mode))
            for iid, lab in cur:
                j = index.get(iid)
                if j is not None:
                    out[i, j] = lab
        return list(item_ids), out

    # -- measured costs ---------------------------------------------------------------------
    def add_eval_run(self, **row: Any) -> None:
        cols = ["variant_id", "task", "mode", "device", "n_items", "prompt_tokens", "gen_tokens",
                "prompt_tok_s", "gen_tok_s", "tpot_ms", "peak_mem_bytes", "wall_s"]
        unknown = set(row) - set(cols)
        if unknown:
            raise KeyError(f"eval_runs has no columns {sorted(unknown)} (columns: {cols})")
        vals = [row.get(c) for c in cols] + [time.time()]
        with self.transaction() as c:
            c.execute(f"INSERT INTO eval_runs ({','.join(cols)},created) VALUES ({','.join('?' * len(vals))})", vals)

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

    def add_study_point(self, study: str, method: str, seed: int, point_id: int, iteration: int,
                        config: dict[str, Any], objectives: dict[str, float], feasible: bool) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR IGNORE INTO study_points VALUES (?,?,?,?,?,?,?,?,?)",
                (study, method, int(seed), int(point_id), int(iteration), json.dumps(config, sort_keys=True, default=str),
                 json.dumps(objectives), int(bool(feasible)), time.time()),
            )

    def study_points(self, study: str, method: str | None = None, seed: int | None = None):
        """Points of a study as a DataFrame with ``config`` and ``objectives`` decoded to dicts."""
        where, params = "study=?", [study]
        if method is not None:
            where, params = where + " AND method=?", params + [method]
        if seed is not None:
            where, params = where + " AND seed=?", params + [int(seed)]
        df = self.frame("study_points", where, params).sort_values(["method", "seed", "point_id"])
        df["config"] = df.pop("config_json").map(json.loads)
        df["objectives"] = df.pop("objectives_json").map(json.loads)
        return df.reset_index(drop=True)

    def studies(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM studies ORDER BY created")]
