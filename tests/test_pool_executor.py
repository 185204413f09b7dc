"""The local process-pool executor: workers (one torch thread each) return rows, never open the
store, and give the answers the in-process executor gives."""

from __future__ import annotations

import os

import pytest

MODEL = "tiny-llama"


@pytest.mark.slow  # two spawned interpreters import torch and transformers: tens of seconds on a busy box
def test_pool_workers_return_the_in_process_answers_and_never_open_the_store(tmp_path, data_dir):
    from codesign.explore.executor import InProcessExecutor, MemberJob, PoolExecutor, get_executor
    from codesign.records import VariantSpec
    from codesign.store import ResultStore

    specs = [VariantSpec(MODEL), VariantSpec(MODEL, "rtn", 4, 32), VariantSpec(MODEL, "rtn", 8, 32)]
    jobs = [MemberJob(s.to_dict(), ("advglue",), "loglik", 3, 0, str(data_dir), progress=False, batch_size=4)
            for s in specs]

    def answers(store):
        return store.conn.execute("SELECT variant_id, task, item_id, mode, label, raw_text FROM outputs "
                                  "ORDER BY variant_id, task, item_id").fetchall()

    pool = get_executor("pool")
    assert isinstance(pool, PoolExecutor)
    done = []
    try:
        with ResultStore(tmp_path / "pool.db") as store:
            res = pool.run(jobs, store, on_done=lambda: done.append(1))
            got = answers(store)
    finally:
        pool.close()
    assert len(done) == 3 and len(got) == 3 * 3
    assert os.getpid() not in {r.pid for r in res} and [r.sqlite_files for r in res] == [[], [], []]
    with ResultStore(tmp_path / "local.db") as local:
        InProcessExecutor().run(jobs, local)
        assert answers(local) == got
