"""Where on-demand member evaluations (quantize + evaluate) run: in-process, or on Ray.

The expensive part of a study is evaluating a catalogue member that has no stored answers yet.
An executor maps :func:`evaluate_member` over such members. Each job opens the result store by
path and writes its answers there (SQLite WAL: several processes may write one file), so a Ray
cluster needs the store on a shared filesystem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from codesign.config import ConfigError

EXECUTORS = ("inprocess", "ray")


@dataclass(frozen=True)
class MemberJob:
    """Everything one on-demand evaluation needs (plain data, so it pickles to Ray workers)."""

    store_path: str
    spec: dict[str, Any]  # VariantSpec.to_dict()
    tasks: tuple[str, ...]
    mode: str
    limit: int | None
    seed: int
    data_dir: str | None
    progress: bool = True
    subtasks: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (task, selected subtasks) pairs
    protocol: str | None = None  # evaluation protocol (None: the default one)


def evaluate_member(job: MemberJob) -> dict[str, Any]:
    """Quantize (or reuse the cached checkpoint of) one variant and evaluate it into the store.

    Returns:
        Task -> score dict, as :func:`codesign.evaluate.evaluate_variant` returns it.
    """
    from codesign.evaluate import evaluate_variant, get_task
    from codesign.quantize import load_variant, quantize_variant
    from codesign.records import VariantSpec
    from codesign.store import ResultStore

    spec = VariantSpec.from_dict(job.spec)
    if not spec.is_dense:
        quantize_variant(spec, progress=job.progress)
    loaded = load_variant(spec)
    with ResultStore(job.store_path) as store:
        store.add_variant(spec)
        selected = dict(job.subtasks)
        tasks = [get_task(t, subtasks=selected.get(t), protocol=job.protocol) for t in job.tasks]
        return evaluate_variant(loaded, spec, store, tasks=tasks, mode=job.mode, limit=job.limit,
                                seed=job.seed, data_dir=job.data_dir, progress=job.progress)


class InProcessExecutor:
    """Runs jobs one after another in this process (the default)."""

    name = "inprocess"

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        return [fn(j) for j in jobs]


class RayExecutor:
    """Runs jobs as Ray tasks, locally or on a cluster (``address``), one CPU-set per job.

    Args:
        address: Ray cluster address (``"auto"``, ``"ray://host:10001"``) or ``None`` for a local Ray.
        num_cpus: CPUs reserved per job.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1.0):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray, which is not installed: pip install 'codesign[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        self.num_cpus = num_cpus

    def map(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        remote = self.ray.remote(num_cpus=self.num_cpus)(fn)
        return self.ray.get([remote.remote(j) for j in jobs])


def get_executor(name: str = "inprocess", address: str | None = None):
    """Executor by name (``inprocess`` or ``ray``); unknown names are a :class:`ConfigError`."""
    if name == "inprocess":
        return InProcessExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ConfigError(f"--executor: unknown executor {name!r} (allowed: {', '.join(EXECUTORS)})")
