"""Small typed records that flow down the pipeline (quantize -> evaluate -> vote -> cost -> explore).

Outcome codes are shared by every stage: a task's parser returns a label id (>= 0) or one of
:data:`INVALID` / :data:`REFUSED`; the store keeps them as integers; voting consumes arrays of them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

INVALID = -1  #: empty, unparseable, or several labels at once
REFUSED = -2  #: explicit abstention ("I cannot", "I don't know", neutral non-answer)

OUTCOME_NAMES = {INVALID: "invalid", REFUSED: "refused"}

#: Precision (bits) given to the unquantized model in votes and cost models.
DENSE_BITS = 16


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


#: ``Measurement.schedule`` of a single model (not an ensemble).
SINGLE = "single"


@dataclass
class Measurement:
    """One measured configuration: a row of the store's ``measurements`` table (``codesign measure``).

    ``kernel`` names what ran the quantized linears (a kernel of :mod:`codesign.quantize.kernels`,
    ``torch-matmul`` for dense weights; several joined by ``+``, most linears first); ``spec`` the
    accelerator spec the row is to be compared against; ``schedule`` is :data:`SINGLE` for one
    model, else the ensemble schedule its members ran under (``variant`` is then the members'
    formats joined by ``+``, and ``extra["members"]`` holds each member's format and kernel).
    Stores written before a field existed read back as None.
    """

    model: str
    variant: str
    wbits: int | None
    group_size: int | None
    dtype: str
    device: str
    device_name: str
    batch: int
    prompt_len: int
    gen_len: int
    prefill_ms: float
    tpot_ms: float
    peak_mem_bytes: int
    repeats: int
    kernel: str | None = None
    spec: str | None = None
    schedule: str | None = SINGLE
    versions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    #: Plain columns of the table (``versions`` and ``extra`` are stored as JSON).
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "model", "variant", "wbits", "group_size", "dtype", "device", "device_name", "batch", "prompt_len",
        "gen_len", "prefill_ms", "tpot_ms", "peak_mem_bytes", "repeats", "kernel", "spec", "schedule")

    def to_row(self) -> dict[str, Any]:
        """Column -> value, with ``versions_json`` and ``extra_json``."""
        row = {c: getattr(self, c) for c in self.COLUMNS}
        row["versions_json"] = json.dumps(self.versions)
        row["extra_json"] = json.dumps(self.extra, default=str)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Measurement":
        """A stored row (a dict or a pandas row); columns an old store lacks become None."""
        def get(c):
            v = row.get(c)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        vals = {c: get(c) for c in cls.COLUMNS}
        vals["schedule"] = vals["schedule"] or SINGLE  # rows from before ensembles were measured
        for c in ("wbits", "group_size", "batch", "prompt_len", "gen_len", "peak_mem_bytes", "repeats"):
            vals[c] = None if vals[c] is None else int(vals[c])
        return cls(**vals, versions=json.loads(get("versions_json") or "{}"),
                   extra=json.loads(get("extra_json") or "{}"))
