"""Two processes evaluating the same variant into one store split the work: each claims a batch
before answering it (ResultStore.claim_items), so no item is answered twice and none is lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
N_ITEMS = 300


@pytest.mark.slow
def test_two_evals_of_one_variant_split_the_items(tmp_path, data_dir):
    store = tmp_path / "results.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CODESIGN_DATA": str(data_dir), "OMP_NUM_THREADS": "1",
           "CODESIGN_CACHE": os.environ.get("CODESIGN_CACHE", str(tmp_path / "cache"))}
    cmd = [sys.executable, "-m", "codesign", "eval", "--model", "tiny-llama", "--tasks", "mmlu", "--protocol",
           "codesign", "--limit", str(N_ITEMS), "--mode", "generate", "--batch-size", "2", "--store", str(store),
           "--no-progress"]
    # both start together: they load the model side by side, then claim batches from the same plan
    first, second = (subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2))
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs

    con = sqlite3.connect(store)
    n_out, n_distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT item_id) FROM outputs").fetchone()
    n_items = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    runs = con.execute("SELECT n_items FROM eval_runs").fetchall()
    left = con.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    con.close()
    assert n_out == n_distinct == n_items  # every item answered once, none lost
    # the work done (each process's eval_runs row counts the items it answered) adds up to the items
    assert sum(r[0] for r in runs) == n_items, (runs, outs)
    assert left == 0  # claims are released once their answers are stored
    assert len(runs) == 2, f"the second process did no share of the work: {runs}"
    assert "answered by another process meanwhile" in outs[0][1] + outs[1][1]


def _wait_for_answers(store: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the first eval ended before answering: {proc.communicate()}")
        if store.exists():
            try:
                con = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
                n = con.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
                con.close()
                if n:
                    return
            except sqlite3.Error:
                pass
        time.sleep(0.2)
    pytest.fail("the first eval stored no answer in time")


@pytest.mark.slow
def test_kill_9_mid_eval_then_resume_takes_over_its_claims(tmp_path, data_dir):
    """A run killed with SIGKILL leaves claims of a dead process: the next run takes them over and
    answers every item exactly once."""
    store = tmp_path / "results.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CODESIGN_DATA": str(data_dir), "OMP_NUM_THREADS": "1",
           "CODESIGN_CACHE": os.environ.get("CODESIGN_CACHE", str(tmp_path / "cache"))}
    cmd = [sys.executable, "-m", "codesign", "eval", "--model", "tiny-llama", "--tasks", "mmlu", "--protocol",
           "codesign", "--limit", "40", "--mode", "generate", "--batch-size", "2", "--store", str(store),
           "--no-progress"]
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_answers(store, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    con = sqlite3.connect(store)
    stored_before = con.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
    con.close()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    con = sqlite3.connect(store)
    n_out, n_distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT item_id) FROM outputs").fetchone()
    n_items = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    left = con.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    con.close()
    assert 0 < stored_before <= n_items and n_out == n_distinct == n_items and left == 0
