"""The Ray executor on a real local Ray (``ray.init(num_cpus=2)``, started once for this module):
workers return rows and never open the store, a worker SIGKILLed mid-task is retried with every
row stored exactly once, checkpoints are re-made bit for bit, and eval / explore through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray")

MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module (starting Ray takes ~10 s); the CLI tests join it by address."""
    import logging

    started = not ray.is_initialized()
    if started:  # a Ray of its own (not RAY_ADDRESS's): the kill test kills only this process's workers
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


def jobs_for(specs, data_dir, tasks=("advglue",), limit=3, mode="loglik"):
    from codesign.explore.executor import MemberJob

    return [MemberJob(s.to_dict(), tuple(tasks), mode, limit, 0, str(data_dir), progress=False, batch_size=4)
            for s in specs]


def answers(store):
    return store.conn.execute("SELECT variant_id, task, item_id, mode, label, raw_text FROM outputs "
                              "ORDER BY variant_id, task, item_id").fetchall()


def test_workers_return_rows_never_open_the_store(ray_address, tmp_path, data_dir):
    from codesign.explore.executor import InProcessExecutor, RayExecutor
    from codesign.records import VariantSpec
    from codesign.store import ResultStore

    specs = [VariantSpec(MODEL), VariantSpec(MODEL, "rtn", 4, 32)]
    with ResultStore(tmp_path / "ray.db") as store:
        res = RayExecutor(ray_address).run(jobs_for(specs, data_dir), store)
        got = answers(store)
        runs = store.frame("eval_runs")
    assert {r.pid for r in res}.isdisjoint({os.getpid()})  # ran in worker processes
    assert [r.sqlite_files for r in res] == [[], []]  # workers opened no SQLite file (their scratch is in memory)
    assert len(got) == 2 * 3 and sorted(runs["variant_id"]) == sorted(s.variant_id for s in specs)
    # the same jobs in-process (straight into the store) give the same answers
    with ResultStore(tmp_path / "local.db") as local:
        InProcessExecutor().run(jobs_for(specs, data_dir), local)
        assert answers(local) == got


def test_worker_sqlite_watch_sees_a_file_store(ray_address, tmp_path):
    """The audit hook behind ``sqlite_files`` does see a worker that opens a store file."""
    from codesign.explore import executor

    @ray.remote(num_cpus=1)
    def open_store(path):
        from codesign.store import ResultStore

        first = executor.watch_sqlite()
        ResultStore(path).close()
        return executor.sqlite_opened_since(first)

    path = str(tmp_path / "touched.db")
    assert ray.get(open_store.remote(path)) == [path]


def _task_title(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode().strip()
    except OSError:
        return ""


def _descends_from(pid: str, ancestor: int) -> bool:
    """Whether ``pid`` is a descendant of ``ancestor`` (its parent chain in /proc)."""
    while pid not in ("0", "1"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = f.read().rsplit(")", 1)[1].split()[1]  # the field after the state: the parent's pid
        except (OSError, IndexError):
            return False
        if pid == str(ancestor):
            return True
    return False


def _kill_first_worker_running(title: str, killed: list, stop: threading.Event) -> None:
    """SIGKILL the first process still titled ``title`` (Ray names a worker ``ray::<task>`` while
    it runs that task) 0.2 s after it took the task: a real worker killed mid-task. Only workers of
    this module's Ray (descendants of this process): other Rays on a shared machine are left alone."""
    while not stop.is_set():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if _task_title(pid) == title and _descends_from(pid, os.getpid()):
                time.sleep(0.2)  # inside the task: loading, quantizing or evaluating
                if _task_title(pid) == title:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
        time.sleep(0.02)


def test_killed_worker_is_retried_and_every_row_is_stored_once(ray_address, tmp_path, data_dir):
    from codesign.explore.executor import RayExecutor
    from codesign.records import VariantSpec
    from codesign.store import ResultStore

    specs = [VariantSpec(MODEL, "rtn", 8, 32), VariantSpec(MODEL, "rtn", 3, 32)]
    tasks = ("advglue", "ethics")
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_first_worker_running, args=("ray::member_rows", killed, stop))
    killer.start()
    try:
        with ResultStore(tmp_path / "r.db") as store:
            res = RayExecutor(ray_address).run(jobs_for(specs, data_dir, tasks, limit=4), store)
            outputs = store.frame("outputs")
            runs = store.frame("eval_runs")
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1 and killed[0] not in {r.pid for r in res}  # the killed attempt was re-run elsewhere
    assert len(outputs) == len(specs) * len(tasks) * 4  # nothing lost ...
    assert not outputs.duplicated(["variant_id", "task", "item_id", "mode"]).any()
    assert runs.groupby(["variant_id", "task"]).size().tolist() == [1] * len(specs) * len(tasks)  # ... or twice


def test_checkpoints_are_remade_bit_for_bit_on_workers(ray_address, tmp_path):
    """Re-making a checkpoint on a worker (what a retried task does) gives identical tensors."""
    from safetensors.torch import load_file

    from codesign.quantize import quantize_variant
    from codesign.records import VariantSpec

    spec = VariantSpec(MODEL, "gptq", 4, 32, extra={"n_samples": 8, "seq_len": 32})

    @ray.remote(num_cpus=1)
    def remake(out):
        return str(quantize_variant(spec, out=out, progress=False, force=True))

    a, b = ray.get([remake.remote(str(tmp_path / "a")), remake.remote(str(tmp_path / "b"))])
    ta, tb = load_file(f"{a}/weights.safetensors"), load_file(f"{b}/weights.safetensors")
    assert ta.keys() == tb.keys() and all(ta[k].equal(tb[k]) for k in ta)


def _cli(cmd, *args):
    return subprocess.run([sys.executable, "-m", "codesign", cmd, *args], capture_output=True, text=True,
                          timeout=600)


def test_cli_eval_and_explore_with_ray_executor(ray_address, tmp_path, data_dir):
    from codesign.store import ResultStore

    db = tmp_path / "r.db"
    r = _cli("eval", "--model", MODEL, "--variants", "dense,rtn-w4g32", "--tasks", "advglue", "--limit", "3",
             "--mode", "loglik", "--store", str(db), "--data-dir", str(data_dir), "--no-progress",
             "--executor", "ray", "--ray-address", ray_address)
    assert r.returncode == 0, r.stderr
    assert "rtn-w4g32" in r.stdout
    with ResultStore(db, read_only=True) as s:
        assert len(s.frame("outputs")) == 6 and len(s.frame("eval_runs")) == 2
    cfg = tmp_path / "study.yaml"
    cfg.write_text(f"name: ray\nmodel: {MODEL}\nshape: smollm2-135m\n"
                   "catalogue: {methods: [rtn], bits: [4, 8], group_sizes: [32], include_dense: true}\n"
                   "tasks: [advglue]\nlimit: 3\nmode: loglik\nobjectives: [adv, tpot_ms]\nspecs: [h100-sxm]\n"
                   "schedules: [sequential]\nmethods: [random]\noptimizer: {q: 2, n_init: 2, iterations: 1}\n")
    r = _cli("explore", "--config", str(cfg), "--store", str(db), "--out", str(tmp_path / "out"), "--no-report",
             "--no-progress", "--data-dir", str(data_dir), "--executor", "ray", "--ray-address", ray_address)
    assert r.returncode == 0, r.stderr
    with ResultStore(db, read_only=True) as s:
        runs = s.frame("eval_runs")
        assert runs["variant_id"].nunique() == 3 and len(runs) == 3  # rtn-w8g32 evaluated on Ray; the others reused
        assert s.study_points("ray")


def test_unknown_executor_is_a_config_error():
    from codesign.config import ConfigError
    from codesign.explore.executor import get_executor

    with pytest.raises(ConfigError, match="allowed: inprocess, pool, ray"):
        get_executor("dask")
    with pytest.raises(ConfigError, match="nothing answers at '127.0.0.1:1'"):
        get_executor("ray", "127.0.0.1:1")
    with pytest.raises(ConfigError, match="is not an address"):
        get_executor("ray", "head-node")
