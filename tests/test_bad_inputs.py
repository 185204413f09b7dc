"""Every bad input is one clear error: the corpus of ``tests/bad_inputs`` through the real CLI.

Each case of ``bad_inputs/cases.yaml`` runs ``python -m codesign ...`` in a subprocess (a few at a
time, so the corpus costs well under a minute) and must: exit with code 2; print exactly one line
starting ``error:`` whose message names what the case lists (file, field, value, what is allowed);
print no traceback; leave every input file byte-identical (stores included); and leave its empty
working folder empty (no store, report or cache created: validation comes before work). The
pickled ``.npy`` case also checks that its payload never ran.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "bad_inputs"
ROOT = HERE.parent
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())
#: An error message longer than this echoes too much of the input (the nested-anchor case).
DEFAULT_MAX_CHARS = 4000
WORKERS = 4


@dataclass
class Outcome:
    rc: int
    out: str
    cwd_left: list[str]
    seconds: float


def _digest_tree(root: Path) -> dict[str, str]:
    """sha256 of every regular file under ``root`` (links to the shared data are not followed:
    they are read-only there, and following them would hash gigabytes)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(case: dict, corpus: Path, work: Path, env: dict[str, str]) -> Outcome:
    cwd = work / case["id"]
    cwd.mkdir()
    args = [a.replace("{dir}", str(corpus)).replace("{cwd}", str(cwd)) for a in case["args"]]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "codesign", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, errors="replace", timeout=300)
    left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
    return Outcome(proc.returncode, proc.stdout + proc.stderr, left, time.perf_counter() - t0)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, data_dir):
    """Build the corpus in a temporary folder, hash it, run every case, hash it again."""
    sys.path.insert(0, str(CORPUS))
    try:
        import generate
    finally:
        sys.path.remove(str(CORPUS))
    base = tmp_path_factory.mktemp("bad-inputs")
    corpus = base / "corpus"
    shutil.copytree(CORPUS / "files", corpus)
    generate.build(corpus, data_dir)
    (corpus / "store_readonly.db").write_bytes((corpus / "store_empty.db").read_bytes())
    before = _digest_tree(corpus)
    work = base / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "CODESIGN_CACHE": str(base / "cache"), "CODESIGN_DATA": str(data_dir), "HF_HUB_OFFLINE": "1",
           "COLUMNS": "100", "NO_COLOR": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    t0, cpu0 = time.perf_counter(), _children_cpu()
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = dict(zip([c["id"] for c in CASES], pool.map(lambda c: _run(c, corpus, work, env), CASES)))
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    print(f"\nbad-input corpus: {len(CASES)} cases in {wall:.1f} s wall, {cpu:.1f} s CPU of the subprocesses "
          f"({WORKERS} at a time)")
    return {"outcomes": outcomes, "before": before, "after": _digest_tree(corpus), "corpus": corpus,
            "marker": corpus / generate.PWNED}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_one_clear_error(case, corpus_run):
    res: Outcome = corpus_run["outcomes"][case["id"]]
    shown = f"$ codesign {' '.join(case['args'])}\n{res.out[-3000:]}"
    assert "Traceback" not in res.out, shown
    assert res.rc == 2, shown
    error_lines = [ln for ln in res.out.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1, shown
    # the message: the error line plus the detail lines under it (a config's field list)
    message = res.out[res.out.index("error:"):]
    assert len(message) <= case.get("max_chars", DEFAULT_MAX_CHARS), f"{len(message)} characters:\n{message[:2000]}"
    for word in case["expect"]:
        assert str(word) in message, f"{word!r} not in the message:\n{shown}"
    assert res.cwd_left == [], f"the failed command left {res.cwd_left} in its working folder"


def test_corpus_inputs_unchanged(corpus_run):
    """No case modified any input: spec files, data files, and the stores (read-only opening)."""
    before, after = corpus_run["before"], corpus_run["after"]
    changed = sorted(k for k in before if after.get(k) != before[k])
    added = sorted(set(after) - set(before))
    assert not changed and not added, f"changed: {changed}, added: {added}"


def test_pickled_data_never_runs(corpus_run):
    assert not corpus_run["marker"].exists(), "a pickled .npy in the data folder was unpickled during eval"


def test_corpus_covers_the_issue(corpus_run):
    """The corpus holds the issue's hundred-odd bad inputs (the slowest cases are printed with -s)."""
    outcomes = corpus_run["outcomes"]
    assert len(outcomes) >= 100
    slowest = sorted(outcomes.items(), key=lambda kv: -kv[1].seconds)[:5]
    print("slowest cases:", ", ".join(f"{k} {o.seconds:.1f} s" for k, o in slowest))
