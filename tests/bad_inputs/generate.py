"""Bad inputs that cannot be plain text in the repository: binary files, SQLite stores of every
wrong kind, broken benchmark data folders, pickled NumPy arrays. :func:`build` writes them into a
folder beside the corpus' text files (``files/``); ``cases.yaml`` names them like any other file.

A broken data folder holds links to the real benchmark data for everything but the one broken file,
so a case costs no copying and fails on exactly the file it means to test.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np

#: Created by the pickled array's payload if anything ever unpickles it (the test checks it is absent).
PWNED = "pickle_payload_ran"


class _Payload:
    """Unpickling this calls ``os.mkdir(<marker>)``: proof that data was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _linked_data(real: Path, out: Path, broken: dict[str, bytes | None]) -> Path:
    """A data folder at ``out`` linking every file of ``real`` except those in ``broken``
    (relative path -> new bytes, or ``None`` to leave the file out)."""
    for src in real.rglob("*"):
        rel = src.relative_to(real)
        dst = out / rel
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        key = rel.as_posix()
        if key in broken:
            if broken[key] is not None:
                dst.write_bytes(broken[key])
        else:
            dst.symlink_to(src)
    return out


def _cut(path: Path, fraction: float = 0.5) -> bytes:
    data = path.read_bytes()
    return data[: int(len(data) * fraction)]


def _data_folders(real: Path, out: Path) -> None:
    mmlu = real / "mmlu" / "test"
    subject = sorted(mmlu.glob("*_test.csv"))[0].name
    test_csv = (mmlu / subject).read_text()
    header, first, *rest = test_csv.splitlines(keepends=True)
    all_mmlu = {f"mmlu/test/{p.name}": None for p in mmlu.glob("*_test.csv") if p.name != subject}

    def mmlu_case(name: str, content: bytes) -> None:
        _linked_data(real, out / name, {**all_mmlu, f"mmlu/test/{subject}": content})

    mmlu_case("data_mmlu_unterminated_quote", (header + first + '"an unterminated quote,a,b,c,d,0\n').encode())
    mmlu_case("data_mmlu_renamed_header", (header.replace("answer", "solution") + first).encode())
    mmlu_case("data_mmlu_answer_E", (header + first.rsplit(",", 1)[0] + ",E\n").encode())
    mmlu_case("data_mmlu_answer_7", (header + first.rsplit(",", 1)[0] + ",7\n").encode())
    mmlu_case("data_mmlu_binary", bytes(range(256)) * 8)

    adv = real / "advglue" / "dev.json"
    _linked_data(real, out / "data_advglue_cut_json", {"advglue/dev.json": _cut(adv)})
    _linked_data(real, out / "data_advglue_not_mapping", {"advglue/dev.json": b"[1, 2, 3]\n"})

    fair = real / "decodingtrust" / "fairness"
    jsonl = {f"decodingtrust/fairness/{p.name}": _cut(p, 0.3) for p in fair.glob("*.jsonl")}
    _linked_data(real, out / "data_fairness_cut_jsonl", jsonl)
    sens = sorted(fair.glob("sensitive_attr_*.npy"))
    _linked_data(real, out / "data_fairness_short_npy",
                 {f"decodingtrust/fairness/{p.name}": p.read_bytes()[:100] for p in sens})
    marker = out / PWNED
    pickled = out / "pickled.npy"
    np.save(pickled, np.array([_Payload(marker)] * 3, dtype=object), allow_pickle=True)
    _linked_data(real, out / "data_fairness_pickled_npy",
                 {f"decodingtrust/fairness/{p.name}": pickled.read_bytes() for p in sens})
    pickled.unlink()

    ood = real / "decodingtrust" / "ood"
    _linked_data(real, out / "data_ood_cut_json", {f"decodingtrust/ood/{p.name}": _cut(p) for p in ood.glob("*.json")})
    ethics = real / "ethics" / "commonsense"
    _linked_data(real, out / "data_ethics_binary",
                 {f"ethics/commonsense/{p.name}": b"\x00\xff\xfe" * 999 for p in ethics.glob("*.csv")})


def _stores(out: Path) -> None:
    from codesign.store import ResultStore

    (out / "store_not_sqlite.db").write_text("this is a text file, not a result store\n" * 20)
    con = sqlite3.connect(out / "store_foreign.db")
    con.execute("CREATE TABLE recipes (name TEXT, minutes INTEGER)")
    con.execute("INSERT INTO recipes VALUES ('soup', 30)")
    con.commit()
    con.close()
    with ResultStore(out / "store_empty.db"):
        pass
    with ResultStore(out / "store_with_study.db") as s:
        s.create_study("real-study", {"name": "real-study"})
    _checkpoint(out / "store_with_study.db")
    with ResultStore(out / "store_newer.db") as s:
        s.conn.execute("PRAGMA user_version=99")
    _checkpoint(out / "store_newer.db")
    _checkpoint(out / "store_empty.db")
    shutil.copy(out / "store_empty.db", out / "store_truncated.db")
    data = (out / "store_truncated.db").read_bytes()
    (out / "store_truncated.db").write_bytes(data[: len(data) // 3])
    (out / "store_zero_bytes.db").write_bytes(b"")


def _checkpoint(path: Path) -> None:
    """Fold the WAL into the file so the store is one self-contained file."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()


def _binaries(out: Path) -> None:
    junk = bytes(range(128, 256)) * 16
    for name in ("binary_spec.yaml", "binary_shape.json", "binary_catalogue.yaml", "binary_study.yaml",
                 "binary_runtime.yaml", "binary_calib.txt"):
        (out / name).write_bytes(junk)


def build(out: Path, real_data: Path) -> Path:
    """Write every generated bad input into ``out`` (created); returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    _binaries(out)
    _stores(out)
    _data_folders(real_data, out)
    return out
