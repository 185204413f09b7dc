"""Where on-demand member evaluations (quantize + evaluate) run: in-process, or on Ray.

The expensive part of a study (and of ``codesign eval`` over a catalogue) is evaluating a member
that has no stored answers yet. An executor runs :class:`MemberJob` s against one result store.

**Single writer.** The SQLite store is written by the driver (the process that runs the
command) and by nobody else. SQLite's WAL mode needs every writer on one host (its index lives in
shared memory) and SQLite warns against network filesystems, so a store opened by workers on
other machines would corrupt or lock. A Ray worker therefore never opens the store, nor learns
its path: :func:`member_rows` evaluates into a private in-memory store and returns the member's
rows (items, answers, eval-run costs) as a :class:`~codesign.store.VariantRows`; the driver
writes each member's rows in one transaction as soon as its task finishes
(:meth:`~codesign.store.ResultStore.add_variant_rows`). The worker reports every SQLite database
it opened (an audit hook), so a test can check that this holds.

**Checkpoints are re-made on the worker, not shipped.** A quantized checkpoint is a pure
function of the variant's spec (base model, method, bits, group, calibration source, seed: the
variant id hashes them), so a worker quantizes the member itself, or finds it in its node's
checkpoint cache. We chose this over sending checkpoints through Ray's object store because
(1) quantizing is a large share of a member's cost and is what we want spread over the cluster,
whereas shipping means someone quantized it already (the driver, serially); (2) a retried task
simply redoes the same work with the same seed, with nothing to keep alive in the object store;
(3) a re-run on the same node is a cache hit. Determinism: RTN is exact; GPTQ/AWQ are seeded
(calibration draw and ``torch.manual_seed``) and every Ray task runs with the same thread count
(``num_cpus`` per task), so a retry reproduces the checkpoint bit for bit (tested); the driver,
with another thread count, may differ in the last float bits of a GPTQ/AWQ reduction. Each node
needs the base model and the benchmark data at the same paths (``CODESIGN_DATA``); a variant
imported from an AutoGPTQ/AutoAWQ checkpoint cannot be re-made and must be in the node's cache.

**Retries.** Tasks run with ``max_retries`` (Ray re-runs a task whose worker process died) and
``retry_exceptions=False`` (a bug or bad input fails at once). A killed attempt wrote nothing,
because only the driver writes and it receives exactly one result per task, so nothing is lost
or written twice (tested by SIGKILLing a worker mid-task).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from codesign.config import ConfigError

EXECUTORS = ("inprocess", "pool", "ray")
#: Ray re-runs a task whose worker died this many times before the command fails.
MAX_RETRIES = 3


@dataclass(frozen=True)
class MemberJob:
    """Everything one on-demand evaluation needs (plain data, so it pickles to Ray workers)."""

    spec: dict[str, Any]  # VariantSpec.to_dict()
    tasks: tuple[str, ...]
    mode: str
    limit: int | None
    seed: int
    data_dir: str | None
    progress: bool = True
    subtasks: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (task, selected subtasks) pairs
    protocol: str | None = None  # evaluation protocol (None: the default one)
    batch_size: int = 8
    device: str = "cpu"
    dtype: str = "float32"
    packed: bool = False
    prefill: str = "auto"
    done: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (task, item ids the store has answers for) pairs


@dataclass
class MemberRows:
    """What a worker hands back: the member's rows and where it ran."""

    rows: Any  # codesign.store.VariantRows
    pid: int
    host: str
    sqlite_files: list[str] = field(default_factory=list)  # SQLite databases the worker opened (files only)
    cpu_s: float = 0.0  # CPU time of the job in the worker (all its threads)


def _tasks(job: MemberJob) -> list:
    from codesign.evaluate import get_task

    selected = dict(job.subtasks)
    return [get_task(t, subtasks=selected.get(t), protocol=job.protocol) for t in job.tasks]


def _load(job: MemberJob, spec):
    from codesign.evaluate.runner import load_for_eval
    from codesign.quantize import quantize_variant

    if not spec.is_dense:
        quantize_variant(spec, progress=job.progress)
    return load_for_eval(spec, job.device, job.dtype, job.packed)


def evaluate_member(job: MemberJob, store) -> dict[str, Any]:
    """Quantize (or reuse the cached checkpoint of) one variant and evaluate it into ``store``
    (in-process: answers are committed batch by batch, so a killed run loses at most one batch).

    Returns:
        Task -> score dict, as :func:`codesign.evaluate.evaluate_variant` returns it.
    """
    from codesign.evaluate import evaluate_variant
    from codesign.records import VariantSpec

    spec = VariantSpec.from_dict(job.spec)
    loaded = _load(job, spec)
    return evaluate_variant(loaded, spec, store, tasks=_tasks(job), mode=job.mode, limit=job.limit, seed=job.seed,
                            data_dir=job.data_dir, batch_size=job.batch_size, progress=job.progress,
                            prefill=job.prefill)


_SQLITE_OPENED: list[str] = []  # SQLite databases this process opened, once watch_sqlite() was called
_WATCHING = False


def _record_sqlite(event: str, args: tuple) -> None:
    if event == "sqlite3.connect":
        _SQLITE_OPENED.append(str(args[0]))


def watch_sqlite() -> int:
    """Start recording the SQLite databases this process opens (a Python audit hook: it sees every
    ``sqlite3.connect``, whoever calls it); returns a mark for :func:`sqlite_opened_since`."""
    global _WATCHING
    if not _WATCHING:  # audit hooks cannot be removed: one per process
        sys.addaudithook(_record_sqlite)
        _WATCHING = True
    return len(_SQLITE_OPENED)


def sqlite_opened_since(mark: int) -> list[str]:
    """SQLite database files opened since ``mark`` (in-memory databases left out)."""
    return [db for db in _SQLITE_OPENED[mark:] if db != ":memory:"]


def member_rows(job: MemberJob) -> MemberRows:
    """A worker's job: quantize and evaluate one member into a private in-memory store and return
    its rows (items the store lacks answers for, per ``job.done``). Never opens the result store."""
    from codesign.evaluate.runner import prepare_tasks, run_task, store_items
    from codesign.records import VariantSpec
    from codesign.store import ResultStore

    mark, cpu0 = watch_sqlite(), time.process_time()
    spec = VariantSpec.from_dict(job.spec)
    loaded = _load(job, spec)
    done = {t: set(ids) for t, ids in job.done}
    prepared = prepare_tasks(_tasks(job), job.data_dir, job.limit, job.seed)
    with ResultStore(":memory:") as scratch:
        vid = scratch.add_variant(spec)
        for name, (task, items) in prepared.items():
            store_items(scratch, task, items)
            todo = [it for it in items if it.item_id not in done.get(name, ())]
            run_task(loaded, vid, task, todo, scratch, mode=job.mode, batch_size=job.batch_size,
                     progress=job.progress, prefill=job.prefill)
        rows = scratch.variant_rows(vid)
    return MemberRows(rows, os.getpid(), socket.gethostname(), sqlite_opened_since(mark), time.process_time() - cpu0)


def for_worker(job: MemberJob, store) -> MemberJob:
    """``job`` as a worker gets it: with the item ids ``store`` already has answers for (the
    worker skips them), the data folder as this machine resolves it (each node needs it at that
    path), and no progress bars (workers' logs do not reach the terminal)."""
    from codesign.paths import data_dir
    from codesign.records import VariantSpec

    vid = VariantSpec.from_dict(job.spec).variant_id
    done = tuple((t.name, tuple(sorted(store.done_item_ids(vid, t.name, job.mode, t.protocol))))
                 for t in _tasks(job))
    return replace(job, done=done, data_dir=str(data_dir(job.data_dir).resolve()), progress=False)


class InProcessExecutor:
    """Runs jobs one after another in this process (the default), straight into the store."""

    name = "inprocess"

    def run(self, jobs: Sequence[MemberJob], store, on_done=None) -> list:
        """Evaluate ``jobs`` in order; ``on_done()`` is called as each member's rows are written."""
        out = []
        for j in jobs:
            out.append(evaluate_member(j, store))
            if on_done:
                on_done()
        return out


class PoolExecutor:
    """Runs jobs in ``workers`` local processes with one torch thread each; as with Ray, workers
    return rows (:func:`member_rows`) and this process alone writes the store.

    Why: quantizing and evaluating a 135M-parameter member multiplies small matrices, so one
    process keeps about one core busy whatever its thread count; on a 2-core CPU two members at
    once take about half the wall time of two in a row. Workers are spawned (a fresh interpreter:
    forking a process whose OpenMP pool already ran can hang) once, on the first batch of two or
    more jobs, and kept for later batches; a single job runs in-process. The base model's one-time
    conversion runs here first, so that workers do not each repeat it.

    Args:
        workers: processes (and members evaluated at once).
    """

    name = "pool"

    def __init__(self, workers: int = 2):
        self.workers = max(1, int(workers))
        self._pool = None

    def run(self, jobs: Sequence[MemberJob], store, on_done=None) -> list:
        """Evaluate ``jobs``; ``on_done()`` is called as each member's rows are written."""
        if len(jobs) < 2 or self.workers < 2:
            return InProcessExecutor().run(jobs, store, on_done)
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from multiprocessing import get_context

        _convert_base_models(jobs)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                             initializer=_worker_start)
        futures = [self._pool.submit(member_rows, for_worker(j, store)) for j in jobs]
        results = []
        try:
            for f in as_completed(futures):
                res = f.result()
                store.add_variant_rows(res.rows)
                results.append(res)
                if on_done:
                    on_done()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __del__(self):
        self.close()


def _worker_start() -> None:
    """Pool worker start: one thread for torch and its OpenMP/BLAS pools (set before torch loads),
    and no transformers progress bars (weight loading): the driver's stage bar is the only one."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()


def _convert_base_models(jobs: Sequence[MemberJob]) -> None:
    """The jobs' built-in base models converted into the cache now (once, here), not by every worker."""
    from codesign.models.loading import DEFAULT_MODEL, load_model, resolve_model
    from codesign.records import VariantSpec

    for base in dict.fromkeys(VariantSpec.from_dict(j.spec).model for j in jobs):
        if base.lower() in (DEFAULT_MODEL, "smollm2") and "gguf_file" in resolve_model(base)[1]:
            load_model(base)


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` / ``ray://host:port`` address nothing listens on (Ray itself
    retries for minutes); ``None``, ``auto`` and ``local`` are left to Ray."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address: {address!r} is not an address (allowed: auto, host:port, "
                          "ray://host:port, or none for a local Ray)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"--ray-address: nothing answers at {address!r} ({exc}); start the cluster with "
                          "`ray start --head` or leave --ray-address out for a local Ray") from None


class RayExecutor:
    """Runs jobs as Ray tasks, locally or on a cluster (``address``); this process alone writes
    the store (see the module docstring).

    Args:
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) or
            ``None`` for a local Ray (all this machine's CPUs, unless Ray is already initialized).
        num_cpus: CPUs reserved per job (also its torch thread count: Ray sets OMP_NUM_THREADS).
        max_retries: re-runs of a task whose worker process died.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1.0, max_retries: int = MAX_RETRIES):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray, which is not installed: pip install 'codesign[ray]'") from None
        self.ray = ray
        check_reachable(address)
        if not ray.is_initialized():
            import logging

            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"at {address!r}" if address else "locally"
                raise ConfigError(f"--ray-address: cannot start or reach Ray {where} ({exc}); allowed: a running "
                                  "cluster's address (auto, host:6379, ray://host:10001) or none for a local "
                                  "Ray") from None
        self.remote = ray.remote(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False)(member_rows)

    def submit(self, job: MemberJob):
        """One Ray task for ``job`` (a GPU job reserves a GPU)."""
        return self.remote.options(num_gpus=1 if job.device == "cuda" else 0).remote(job)

    def run(self, jobs: Sequence[MemberJob], store) -> list[MemberRows]:
        """Submit every job, write each member's rows as its task finishes; the first failed task
        cancels the rest (rows already written stay) and is raised."""
        from tqdm.auto import tqdm

        pending = {self.submit(for_worker(j, store)): j for j in jobs}
        results = []
        show = any(j.progress for j in jobs)
        with tqdm(total=len(pending), desc="members (ray)", unit="member", disable=not show, leave=False) as bar:
            while pending:
                ready, _ = self.ray.wait(list(pending), num_returns=1)
                pending.pop(ready[0])
                try:
                    res = self.ray.get(ready[0])
                except BaseException:
                    for ref in pending:
                        self.ray.cancel(ref, force=True)
                    raise
                store.add_variant_rows(res.rows)
                results.append(res)
                bar.update(1)
        return results


def get_executor(name: str = "inprocess", address: str | None = None):
    """Executor by name (one of :data:`EXECUTORS`); unknown names are a :class:`ConfigError`."""
    if name == "inprocess":
        return InProcessExecutor()
    if name == "pool":
        return PoolExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ConfigError(f"--executor: unknown executor {name!r} (allowed: {', '.join(EXECUTORS)})")
