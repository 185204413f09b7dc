"""Single-configuration cost estimates: a thin wrapper over the vectorized core in
:mod:`hwmodels.roofline` that also keeps the per-operator table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwmodels.roofline import OPS, evaluate_points
from hwmodels.runtime import RuntimeProfile
from hwmodels.shapes import ModelShape, load_shape
from hwmodels.spec import AcceleratorSpec, load_spec


@dataclass
class CostEstimate:
    """Cost of one configuration (or one ensemble) on one accelerator.

    Times in ms, memory in bytes, energy in J. ``ops`` is a pandas DataFrame with one row per
    (phase, operator): flops, bytes, time_ms, bound ('compute' | 'memory'), dtype, energy_j.
    ``area_mm2`` is None when the spec has no area data.
    """

    spec: str
    model: str
    wbits: int
    group_size: int
    abits: int
    kvbits: int
    batch: int
    prompt_len: int
    gen_len: int
    ttft_ms: float
    tpot_ms: float
    tokens_per_s: float
    e2e_ms: float
    weight_bytes: float
    kv_bytes: float
    peak_memory_bytes: float
    capacity_bytes: float
    fits: bool
    energy_per_token_j: float
    prefill_energy_j: float
    avg_power_w: float
    area_mm2: float | None
    compute_dtype: str
    dequantized: bool
    decode_bound: str
    prefill_bound: str
    ops: Any = None  # pandas.DataFrame
    schedule: str | None = None
    members: list[dict] | None = None
    n_devices: int = 1
    gated_fraction: float | None = None
    runtime: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, ops: bool = True) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None); ``ops=True`` includes the per-operator rows."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "ops"}
        if ops:
            d["ops"] = self.ops.to_dict(orient="records") if self.ops is not None else None
        return _jsonable(d)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def _f(x) -> float:
    return float(np.asarray(x).reshape(-1)[0])


def ops_frame(res: dict, index: tuple = ()) -> Any:
    """Per-operator table of one configuration from an ``evaluate_points(..., want_ops=True)`` result."""
    import pandas as pd

    rows = []
    names = res["dtypes"]
    for phase in ("prefill", "decode"):
        o = {k: np.asarray(v)[index] for k, v in res[f"ops_{phase}"].items()}
        total = float(o["time"].sum()) or 1.0
        for j, op in enumerate(OPS):
            if o["flops"][j] == 0 and o["bytes"][j] == 0 and o["onchip_bytes"][j] == 0:
                continue
            tc, tm = float(o["t_compute"][j]), float(o["t_memory"][j])
            rows.append(dict(phase=phase, op=op, count=int(o["count"][j]), dtype=names[int(o["dtype"][j])] if o["mat_flops"][j] else "vector",
                             flops=float(o["flops"][j]), mat_flops=float(o["mat_flops"][j]),
                             vec_flops=float(o["vec_flops"][j]), bytes=float(o["bytes"][j]),
                             compute_ms=tc * 1e3, memory_ms=tm * 1e3, time_ms=float(o["time"][j]) * 1e3,
                             bound="compute" if tc > tm else "memory", share=float(o["time"][j]) / total,
                             energy_j=float(o["energy"][j])))
    return pd.DataFrame(rows)


def estimate(spec: str | AcceleratorSpec, shape: str | ModelShape, wbits: int = 16, group_size: int = 128,
             abits: int = 16, kvbits: int = 16, batch: int = 1, prompt_len: int = 512, gen_len: int = 128, *,
             sym: bool = False, ideal: bool = False, float_dtype: str | None = None,
             runtime: str | RuntimeProfile | None = None, kernel: str | None = None,
             prefill_kernel: str | None = None) -> CostEstimate:
    """Cost of one configuration (see :mod:`hwmodels.roofline` for the model).

    ``ideal=True`` gives the roofline floor: peak rates, no efficiency factors, no fixed overheads.
    ``float_dtype`` ('fp16' | 'bf16') pins the 16-bit activation format (default: the faster unit).
    ``runtime``: software-stack profile (name, path or object; default: no stack terms); ``kernel``:
    the kernel the linears run (default: the profile's choice for ``wbits``); ``prefill_kernel``: the
    kernel of their prefill calls (default: ``kernel``, or the dense copy where ``codesign measure
    --prefill auto`` keeps one, :data:`hwmodels.runtime.PREFILL_ON_DENSE_COPY`).
    """
    sp, sh = load_spec(spec), load_shape(shape)
    res = evaluate_points([sp], [sh], wbits=wbits, group_size=group_size, abits=abits, kvbits=kvbits,
                          batch=batch, prompt_len=prompt_len, gen_len=gen_len, sym=sym, ideal=ideal, want_ops=True,
                          float_dtype=float_dtype, runtime=runtime, kernel=kernel,
                          prefill_kernel=prefill_kernel)
    area = _f(res["area_mm2"])
    return CostEstimate(
        spec=sp.name, model=sh.name, wbits=int(wbits), group_size=int(group_size), abits=int(abits),
        kvbits=int(kvbits), batch=int(batch), prompt_len=int(prompt_len), gen_len=int(gen_len),
        ttft_ms=_f(res["ttft_ms"]), tpot_ms=_f(res["tpot_ms"]), tokens_per_s=_f(res["tokens_per_s"]),
        e2e_ms=_f(res["e2e_ms"]), weight_bytes=_f(res["weight_bytes"]), kv_bytes=_f(res["kv_bytes"]),
        peak_memory_bytes=_f(res["peak_memory_bytes"]), capacity_bytes=sp.memory.capacity_gb * 1e9,
        fits=bool(np.asarray(res["fits"]).reshape(-1)[0]), energy_per_token_j=_f(res["energy_per_token_j"]),
        prefill_energy_j=_f(res["prefill_energy_j"]), avg_power_w=_f(res["avg_power_w"]),
        area_mm2=None if not np.isfinite(area) else area,
        compute_dtype=res["dtypes"][int(_f(res["compute_dtype"]))],
        dequantized=bool(np.asarray(res["dequantized"]).reshape(-1)[0]),
        decode_bound="memory" if _f(res["decode_memory_bound"]) >= 0.5 else "compute",
        prefill_bound="memory" if _f(res["prefill_memory_bound"]) >= 0.5 else "compute",
        ops=ops_frame(res), runtime=res["runtime"],
        extra={k: _f(res[k]) for k in ("weight_meta_bytes", "workspace_bytes", "decode_compute_ms",
                                       "decode_memory_ms", "prefill_compute_ms", "prefill_memory_ms",
                                       "overhead_ms", "decode_energy_j", "decode_floor_ms", "decode_host_ms",
                                       "framework_ms")},
    )
