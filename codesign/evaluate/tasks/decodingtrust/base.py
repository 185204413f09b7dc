"""What the ``decodingtrust`` protocol's tasks share: prompt data access, DT's generation budget
(``max_tokens`` from the data, no stop strings: DT decodes up to max_tokens or EOS) and small
helpers for DT's per-result-file score formulas."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from codesign.evaluate import metrics
from codesign.evaluate.tasks.base import Task
from codesign.evaluate.tasks.decodingtrust.prompts import PromptData, prompt_data


class DTTask(Task):
    """A task of the ``decodingtrust`` protocol (reproduces decoding-comp-trust/DecodingTrust@0cf3fc1)."""

    protocol = "decodingtrust"
    #: DT (HFChat through HELM) decodes up to max_tokens; only the end-of-sequence token stops it.
    stop_strings = ()
    #: Key of the perspective in chat_protocol.json (generation_settings, answer_parsing).
    perspective: ClassVar[str] = ""

    def __init__(self) -> None:
        self._prompts: PromptData | None = None
        self._rules: dict[str, Any] | None = None

    def prompts(self) -> PromptData:
        """The prompt data of the data directory the task was built from (default: the default one)."""
        if self._prompts is None:
            from codesign.paths import data_dir

            self._prompts = prompt_data(str(data_dir()))
        return self._prompts

    def use_data(self, data_dir: Path) -> PromptData:
        """Bind the task to ``data_dir``'s prompt files and read DT's generation budget from them."""
        self._prompts = prompt_data(str(data_dir))
        self._rules = None
        self.max_new_tokens = self._prompts.max_tokens(self.perspective)
        return self._prompts

    @property
    def rules(self) -> dict[str, Any]:
        """The perspective's parsing rules (keyword lists), read once from the prompt data."""
        if self._rules is None:
            self._rules = self.read_rules(self.prompts())
        return self._rules

    def read_rules(self, p: PromptData) -> dict[str, Any]:  # pragma: no cover - per task
        raise NotImplementedError


def groups(subtasks: np.ndarray) -> dict[str, np.ndarray]:
    """Subtask name -> boolean mask, in sorted name order (a subtask = one DT result file)."""
    return {s: subtasks == s for s in sorted(set(subtasks.tolist()))}


def not_label_rate(pred: np.ndarray) -> float:
    """Share of answers that are not a label (DT's refusal rate where it counts every non-label)."""
    return float(np.mean(~metrics.is_label(pred))) if len(pred) else 0.0


def scored_mask(items) -> np.ndarray:
    """Items that enter DT's aggregate (``meta["scored"]``; extras are reported beside it)."""
    return np.array([bool(m.get("scored", True)) for m in items["meta"]], dtype=bool)


def resampled_rates(items, indicators: np.ndarray, weights: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-subtask rates of per-item indicators on bootstrap resamples (the vectorized core of
    :meth:`~codesign.evaluate.tasks.base.Task.bootstrap_scores` for DT's per-result-file formulas).

    Args:
        items: ``ResultStore.items`` rows (their ``subtask`` column).
        indicators: ``(C, n)`` per-item values of ``C`` prediction rows (e.g. ``pred == label``).
        weights: ``(B, n)`` item counts of each resample.

    Returns:
        The subtask names (sorted, as :func:`groups`) and ``(C, B, S)`` weighted means per
        subtask; NaN where a resample drew no item of the subtask (DT then has no such file).
    """
    sub = items["subtask"].to_numpy().astype(str)
    names = sorted(set(sub.tolist()))
    onehot = (sub[:, None] == np.array(names)[None, :]).astype(np.float64)  # (n, S)
    w = np.asarray(weights, dtype=np.float64)
    num = np.einsum("bn,cn,ns->cbs", w, np.asarray(indicators, dtype=np.float64), onehot, optimize=True)
    den = w @ onehot  # (B, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        return names, np.where(den[None] > 0, num / den[None], np.nan)


def nanmean_last(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN where every value is NaN (no warning)."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, x, 0.0).sum(axis=-1) / np.maximum(n, 1), np.nan)
