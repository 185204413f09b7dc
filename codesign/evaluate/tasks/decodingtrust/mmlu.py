"""MMLU in the ``decodingtrust`` protocol: 5-shot, as the Decoding Compressed Trust study reports
it. MMLU is not a DecodingTrust perspective, so there is no DT prompt or parser to reproduce:
the items are codesign's 5-shot items (the subject's five ``mmlu/dev`` questions as earlier chat
turns), answers are read with codesign's letter parser, and the score follows the protocol's
rule: accuracy over all items (a refusal or unparseable answer is an error), with the refusal
rate counting every answer that is not a letter. The budget is DT's default ``max_tokens``
(chat.py:65) with no stop strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codesign.evaluate import metrics
from codesign.evaluate.tasks.base import Item
from codesign.evaluate.tasks.common import aligned
from codesign.evaluate.tasks.decodingtrust.base import DTTask, not_label_rate
from codesign.evaluate.tasks.decodingtrust.prompts import prompt_data
from codesign.evaluate.tasks.mmlu import MMLU
from codesign.evaluate.tasks.registry import register


@register
class DTMMLU(DTTask, MMLU):
    name = "mmlu"
    dimension = "MMLU"

    def __init__(self) -> None:
        DTTask.__init__(self)
        MMLU.__init__(self, subtasks=("5shot",))

    def build(self, data_dir: Path) -> list[Item]:
        self._prompts = prompt_data(str(data_dir))
        self.max_new_tokens = self._prompts.integer("chat_protocol", "do_classification", "generation",
                                                    "max_tokens_default")
        return MMLU.build(self, data_dir)

    def parse(self, text: str, item: Item) -> int:
        return MMLU.parse(self, text, item)

    def score(self, items, pred, policy: str = "decodingtrust") -> dict[str, Any]:
        """score = 100 * correct / all items; refusal_rate = share of answers that are not a letter."""
        _, y, p = aligned(items, pred)
        return {"n": int(len(p)), "invalid_rate": metrics.invalid_rate(p), "refusal_rate": not_label_rate(p),
                "acc_5shot": 100 * metrics.accuracy(y, p, "decodingtrust"),
                "score": 100 * metrics.accuracy(y, p, "decodingtrust")}
