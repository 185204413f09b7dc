"""MMLU (Hendrycks et al.): 57 subjects, 0-shot and 5-shot, answer letter A-D.

Files: ``mmlu/test/<subject>_test.csv`` (evaluated) and ``mmlu/dev/<subject>_dev.csv`` (the five
demonstrations per subject of the 5-shot setting; never evaluated). Item ids:
``<0shot|5shot>/<subject>/<row:05d>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from codesign.config import ConfigError
from codesign.evaluate import metrics
from codesign.evaluate.parsing import parse_letter
from codesign.evaluate.tasks.base import Item, Task, data_file, few_shot_messages
from codesign.evaluate.tasks.common import aligned, base_record, mean_or_nan
from codesign.evaluate.tasks.registry import register

LETTERS = "ABCD"
SUBTASKS = ("0shot", "5shot")
ANSWERS = ("0", "1", "2", "3")


def _read(path: Path) -> pd.DataFrame:
    """An MMLU CSV with its header and every answer checked (0-3), so a broken file fails here,
    naming the file, the row and the value."""
    with data_file(path, "MMLU file (CSV)"):
        df = pd.read_csv(path, keep_default_na=False, dtype=str)
    need = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: missing columns {missing} (expected header {','.join(need)})")
    bad = ~df["answer"].str.strip().isin(ANSWERS)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise ConfigError(f"{path}: row {row + 1}: answer = {df['answer'].iloc[row]!r} is not allowed "
                          f"(allowed: {', '.join(ANSWERS)}, the index of the correct choice)")
    return df


def _format(subject: str, row) -> str:
    body = "\n".join(f"{LETTERS[k]}. {row[f'choice{k}']}" for k in range(4))
    return f"{row['question']}\n{body}"


@register
class MMLU(Task):
    name = "mmlu"
    dimension = "MMLU"
    trust = False  # capability, reported beside the trust dimensions
    max_new_tokens = 8

    def __init__(self, subtasks: tuple[str, ...] = SUBTASKS):
        bad = [s for s in subtasks if s not in SUBTASKS]
        if bad:
            raise ConfigError(f"mmlu: unknown subtasks {bad} (allowed: {list(SUBTASKS)})")
        self.subtasks = tuple(subtasks)

    def build(self, data_dir: Path) -> list[Item]:
        test_dir, dev_dir = data_dir / "mmlu" / "test", data_dir / "mmlu" / "dev"
        files = sorted(test_dir.glob("*_test.csv"))
        if not files:
            raise ConfigError(f"{test_dir}: no MMLU *_test.csv files (is --data-dir right?)")
        items: list[Item] = []
        for f in files:
            subject = f.name[: -len("_test.csv")]
            readable = subject.replace("_", " ")
            head = (f"The following is a multiple choice question about {readable}. "
                    "Answer with the letter of the correct option (A, B, C or D).\n\n")
            df = _read(f)
            demos: list[tuple[str, str]] = []
            if "5shot" in self.subtasks:
                dev = _read(dev_dir / f"{subject}_dev.csv")
                demos = [(head + _format(subject, r), LETTERS[int(r["answer"])]) for _, r in dev.iterrows()]
            for i, r in df.iterrows():
                query = _format(subject, r)
                meta = {"subject": subject, "choices": [r[f"choice{k}"] for k in range(4)]}
                label = int(r["answer"])
                for sub in self.subtasks:
                    if sub == "0shot":
                        msgs = few_shot_messages(None, [], head + query)
                    else:
                        # Demonstrations as earlier chat turns; the instruction repeats in each.
                        msgs = few_shot_messages(None, demos, head + query)
                    items.append(Item(f"{sub}/{subject}/{i:05d}", sub, label, msgs, list(LETTERS), dict(meta)))
        return items

    def parse(self, text: str, item: Item) -> int:
        return parse_letter(text, item.meta.get("choices"))

    def score(self, items, pred, policy: str = "answered") -> dict[str, Any]:
        """score = mean over settings (0-shot, 5-shot) of accuracy, x100; ``acc_<setting>`` each."""
        sub, y, p = aligned(items, pred)
        out = base_record(p)
        accs = {}
        for s in sorted(set(sub)):
            m = sub == s
            accs[s] = metrics.accuracy(y[m], p[m], policy)
            out[f"acc_{s}"] = accs[s] * 100
        out["score"] = mean_or_nan(accs.values()) * 100
        return out
