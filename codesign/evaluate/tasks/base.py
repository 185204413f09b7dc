"""What every evaluation task is made of: :class:`Item` records and the :class:`Task` protocol.

A task turns benchmark files into :class:`Item` s (chat messages plus the label options), maps
a model's text back to a label id (or :data:`~codesign.records.INVALID` /
:data:`~codesign.records.REFUSED`), and scores an aligned array of answers.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from codesign.records import REFUSED

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}

#: What reading a broken benchmark file raises (pandas' ParserError and JSONDecodeError are
#: ValueErrors); :func:`data_file` turns each into one error naming the file.
_DATA_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError, EOFError, OSError)


def describe_data_error(exc: BaseException) -> str:
    """What is wrong with a data file, in words, from the exception reading it raised."""
    from codesign.config import echo_text

    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r}; a binary file?)"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; cut off?)"
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}" if exc.args else "a missing field"
    if isinstance(exc, EOFError):
        return "ends early (cut off?)"
    return f"{type(exc).__name__}: {echo_text(str(exc), 300)}"


@contextmanager
def data_file(path: Path, what: str = "benchmark data file") -> Iterator[None]:
    """Reading and parsing ``path`` inside this block: any failure becomes one
    :class:`~codesign.config.ConfigError` naming the file and what is wrong (innermost file wins)."""
    from codesign.config import ConfigError

    try:
        yield
    except ConfigError:
        raise
    except _DATA_ERRORS as exc:
        raise ConfigError(f"{path}: malformed {what}: {describe_data_error(exc)}") from None


def read_npy(path: Path) -> np.ndarray:
    """A plain NumPy array file. Never unpickled: an object (pickled) array is refused, since
    loading it would run code from the data folder."""
    from codesign.config import ConfigError

    if not path.is_file():
        raise ConfigError(f"{path}: NumPy array file not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        why = ("it holds pickled objects, which are never loaded (allowed: a plain numeric or string array)"
               if "pickle" in str(exc) else describe_data_error(exc))
        raise ConfigError(f"{path}: not a plain NumPy array: {why}") from None


@dataclass
class Item:
    """One benchmark item, ready to prompt.

    ``options`` are the label names in label-id order (``options[label]`` is the gold answer);
    the log-likelihood mode ranks them as continuations of the prompt. ``refusal_option``, when
    set, is one more continuation ("I don't know") that maps to REFUSED.
    """

    item_id: str
    subtask: str
    label: int
    messages: list[Message]
    options: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    refusal_option: str | None = None

    @property
    def continuations(self) -> list[str]:
        """Options scored in loglik mode: the labels, then the refusal option if any."""
        return self.options + ([self.refusal_option] if self.refusal_option is not None else [])

    def continuation_label(self, k: int) -> int:
        """Outcome code of continuation ``k`` (label id, or REFUSED for the refusal option)."""
        return k if k < len(self.options) else REFUSED


class Task:
    """Base class of the task registry's entries (subclass and register with ``@register``).

    A task belongs to one evaluation protocol (:mod:`codesign.evaluate.protocols`): the same
    name under two protocols is two tasks with their own prompts, parser and score.
    """

    name: ClassVar[str] = ""
    dimension: ClassVar[str] = ""
    protocol: ClassVar[str] = "codesign"
    #: The task as a study objective and trust dimension (read by :mod:`codesign.objectives`):
    #: its objective name in study configs (default: the task name), whether it is a trust
    #: dimension, and whether ensemble-vs-member comparisons include it. The same under every
    #: protocol implementing the task (the registry checks).
    objective: ClassVar[str] = ""
    trust: ClassVar[bool] = True
    compare_with_members: ClassVar[bool] = True
    #: Generation budget: answers are a word or two; a longer budget only costs time.
    max_new_tokens: ClassVar[int] = 8
    #: Generation stops at the first of these strings (the text before it is the answer).
    stop_strings: ClassVar[tuple[str, ...]] = ("\n\n",)

    #: Subtasks to keep (None = all); set through ``get_task(name, subtasks=[...])``. A name selects
    #: that subtask or the group of subtasks under it (``style`` selects ``style/shake_w``, ...).
    #: Scores leave absent subtasks out, so a cheaper selection (e.g. zero-shot only) still scores
    #: the dimension.
    only_subtasks: tuple[str, ...] | None = None

    def load(self, data_dir: str | Path | None = None, limit: int | None = None, seed: int = 0) -> list[Item]:
        """All items (or a seeded, per-subtask stratified subsample of ``limit``), sorted by item id."""
        from codesign.paths import data_dir as resolve

        folder = resolve(data_dir)
        with data_file(folder, f"{self.name} data (in this folder)"):  # a file-naming error is raised inside
            items = self.build(folder)
        if self.only_subtasks:
            known = sorted({it.subtask for it in items})
            bad = [s for s in self.only_subtasks if not any(selects(s, k) for k in known)]
            if bad:
                from codesign.config import ConfigError

                groups = sorted({k.split("/")[0] for k in known if "/" in k})
                raise ConfigError(f"{self.name} ({self.protocol} protocol): unknown subtasks {bad} (allowed: {known}"
                                  + (f", or the groups {groups})" if groups else ")"))
            items = [it for it in items if any(selects(s, it.subtask) for s in self.only_subtasks)]
        return stratified_subsample(items, limit, seed)

    def build(self, data_dir: Path) -> list[Item]:  # pragma: no cover - abstract
        raise NotImplementedError

    def parse(self, text: str, item: Item) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def keeps_refusal(self, subtask: str) -> bool:
        """Whether REFUSED is an answer of its own in this subtask (voting keeps it as a vote)."""
        return False

    def score(self, items, pred: np.ndarray, policy: str) -> dict[str, Any]:  # pragma: no cover
        """Scores of aligned answers: ``items`` as ``ResultStore.items`` rows, ``pred`` (n,) outcome
        codes. Returns ``score`` (0-100), ``refusal_rate``, ``invalid_rate``, ``n`` and sub-metrics."""
        raise NotImplementedError

    def bootstrap_scores(self, items, preds: np.ndarray, weights: np.ndarray, policy: str) -> np.ndarray:
        """``score`` of every row of ``preds`` on every bootstrap resample of the items.

        A resample is given by its item counts (``weights[b, i]``: how often item ``i`` was drawn),
        so all prediction rows share the same resamples (a paired bootstrap). This default runs
        the task's own :meth:`score` on each resample (exact, one call per row and resample);
        tasks whose score is a function of per-subtask rates override it with a vectorized
        equivalent (checked against this one in the tests).

        Args:
            items: ``ResultStore.items`` rows, aligned with the columns of ``preds``.
            preds: ``(C, n)`` outcome codes of ``C`` prediction rows (configurations).
            weights: ``(B, n)`` non-negative integer counts, each row summing to ``n``.

        Returns:
            ``(C, B)`` scores (0-100, NaN where the resample leaves nothing to score).
        """
        preds, weights = np.atleast_2d(preds), np.atleast_2d(weights)
        items = items.reset_index(drop=True)
        out = np.full((len(preds), len(weights)), np.nan)
        for b, w in enumerate(weights):
            idx = np.repeat(np.arange(len(items)), w.astype(np.int64))
            sample = items.iloc[idx].reset_index(drop=True)
            for c, pred in enumerate(preds):
                out[c, b] = self.score(sample, pred[idx], policy)["score"]
        return out

    def __repr__(self) -> str:
        return f"<task {self.name} ({self.protocol}): {self.dimension}>"


def selects(selector: str, subtask: str) -> bool:
    """Whether a subtask selector names ``subtask`` itself or a group above it (``a`` -> ``a/b``)."""
    return subtask == selector or subtask.startswith(selector + "/")


def stable_seed(*parts: object) -> int:
    """A seed derived from strings/ints that is identical across processes (unlike ``hash``)."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def stratified_subsample(items: list[Item], limit: int | None, seed: int = 0) -> list[Item]:
    """Keep ``limit`` items in total, an equal share per subtask (seeded; item ids unchanged).

    Each subtask's items are put in a seeded random order and its first ``k`` are kept, so a
    larger limit with the same seed is a superset of a smaller one (resuming with a larger
    ``--limit`` reuses every stored answer). Shares a small subtask cannot fill go to the others.
    """
    if limit is None or limit <= 0 or limit >= len(items):
        return sorted(items, key=lambda it: it.item_id)
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.subtask, []).append(it)
    order = {}
    for sub, group in groups.items():
        group.sort(key=lambda it: it.item_id)
        rng = np.random.default_rng(stable_seed("subsample", seed, sub))
        order[sub] = [group[i] for i in rng.permutation(len(group))]
    quota = {sub: 0 for sub in groups}
    left = limit
    open_subs = sorted(groups)
    while left > 0 and open_subs:
        share, extra = divmod(left, len(open_subs))
        for j, sub in enumerate(list(open_subs)):
            want = share + (1 if j < extra else 0)
            take = min(want, len(order[sub]) - quota[sub])
            quota[sub] += take
            left -= take
            if quota[sub] >= len(order[sub]):
                open_subs.remove(sub)
        if share == 0 and extra == 0:
            break
    kept = [it for sub in groups for it in order[sub][: quota[sub]]]
    return sorted(kept, key=lambda it: it.item_id)


def few_shot_messages(system: str | None, demos: list[tuple[str, str]], query: str) -> list[Message]:
    """Chat messages: optional system prompt, demonstrations as user/assistant turns, the query."""
    msgs: list[Message] = []
    if system:
        msgs.append({"role": "system", "content": system})
    for q, a in demos:
        msgs.append({"role": "user", "content": q})
        msgs.append({"role": "assistant", "content": a})
    msgs.append({"role": "user", "content": query})
    return msgs
