"""Small typed records that flow down the pipeline (quantize -> evaluate -> vote -> cost -> explore).

Outcome codes are shared by every stage: a task's parser returns a label id (>= 0) or one of
:data:`INVALID` / :data:`REFUSED`; the store keeps them as integers; voting consumes arrays of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

INVALID = -1  #: empty, unparseable, or several labels at once
REFUSED = -2  #: explicit abstention ("I cannot", "I don't know", neutral non-answer)

OUTCOME_NAMES = {INVALID: "invalid", REFUSED: "refused"}

#: Precision (bits) given to the unquantized model in votes and cost models.
DENSE_BITS = 16

#: Evaluation protocol of stored items/answers when none is named (see codesign.evaluate.protocols).
DEFAULT_PROTOCOL = "decodingtrust"


def outcome_name(code: int) -> str:
    """'label' for label ids, else 'invalid' / 'refused'."""
    return OUTCOME_NAMES.get(int(code), "label")


@dataclass(frozen=True)
class VariantSpec:
    """One quantized (or dense) variant of a model.

    ``method='dense'`` is the unquantized baseline (``bits`` = :data:`DENSE_BITS`).
    ``group_size=-1`` means per-output-channel scales.
    """

    model: str
    method: str = "dense"
    bits: int = DENSE_BITS
    group_size: int = 128
    sym: bool = False
    calib: str = "none"
    seed: int = 0
    extra: tuple[tuple[str, Any], ...] = field(default=())  # method options, e.g. (("act_order", True),)

    @property
    def is_dense(self) -> bool:
        return self.method == "dense"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VariantSpec":
        d = dict(d)
        extra = d.pop("extra", {}) or {}
        return cls(**d, extra=tuple(sorted(dict(extra).items())))

    def content_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    @property
    def short_name(self) -> str:
        """Readable label for tables and plots, e.g. ``gptq-w4g128``."""
        if self.is_dense:
            return "dense"
        g = "pc" if self.group_size == -1 else str(self.group_size)
        return f"{self.method}-w{self.bits}g{g}" + ("-sym" if self.sym else "")

    @property
    def variant_id(self) -> str:
        """Stable id: readable name plus a content hash of every field."""
        model = self.model.rstrip("/").split("/")[-1].lower().replace(".gguf", "")
        return f"{model}--{self.short_name}-s{self.seed}-{self.content_hash()}"
