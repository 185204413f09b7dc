"""Precision ensembles: several quantized variants of one model voting on every answer.

A schedule policy says how the members share hardware; policies live in :data:`SCHEDULES` (add your
own with :func:`register_schedule`):

- ``sequential``: members run one after another on one device; all weights and KV caches resident.
- ``parallel``: one device per member, run concurrently; latency is the slowest member, memory is
  per device (``fits`` means every member fits its own device), area counts every device's units.
- ``batched``: members share one device and interleave decode steps, so one member's memory-bound
  operators overlap another's compute: step time ``max(sum compute, sum memory)`` plus one fixed
  overhead (an optimistic bound; ``sequential`` is the pessimistic one). Under a runtime profile the
  members' launch floors, host time and framework steps do not overlap: they add up.
- ``sliced``: any-precision bit-sliced storage (lower precisions are the top bit-planes of the widest
  member): weight memory is the widest member plus the other members' scales; each member still reads
  its own bit-planes, so time is sequential.

Agreement-gated evaluation (``gated_fraction=f``): a majority vote of k members is decided once the
``k//2 + 1`` lowest-precision members (the quorum) agree, so they always run and the others run only
for the fraction ``f`` of items where the quorum disagrees. Times and energies are then expectations
``(1-f) * cost(quorum) + f * cost(all)``; memory still holds every member.

Energy per token: dynamic energy of each member (times its run fraction) plus ``idle_w`` of every
device over the ensemble's time per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import numpy as np

from codesign.config import ConfigError
from hwmodels.estimate import CostEstimate, _f
from hwmodels.roofline import evaluate_points
from hwmodels.shapes import ModelShape, load_shape
from hwmodels.spec import AcceleratorSpec, load_spec

Arrays = dict[str, np.ndarray]  # per-member outputs of evaluate_points, member axis 0


@dataclass(frozen=True)
class Schedule:
    """A schedule policy: how ``time`` and ``memory`` of members combine.

    ``time(m, mask) -> (ttft_ms, tpot_ms)`` over the members selected by the boolean ``mask`` (k,);
    ``memory(m) -> (weight_bytes, kv_bytes, peak_bytes_per_device, n_devices)``.
    """

    name: str
    description: str
    time: Callable[[Arrays, np.ndarray], tuple[float, float]]
    memory: Callable[[Arrays], tuple[float, float, float, int]]
    per_device_area: bool = False


SCHEDULES: dict[str, Schedule] = {}


def register_schedule(schedule: Schedule) -> Schedule:
    SCHEDULES[schedule.name] = schedule
    return schedule


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise ConfigError(f"--schedule: unknown schedule {name!r} (allowed: {', '.join(SCHEDULES)})")
    return SCHEDULES[name]


def _sum_time(m: Arrays, mask: np.ndarray) -> tuple[float, float]:
    return float((m["ttft_ms"] * mask).sum()), float((m["tpot_ms"] * mask).sum())


def _max_time(m: Arrays, mask: np.ndarray) -> tuple[float, float]:
    return float(m["ttft_ms"][mask].max()), float(m["tpot_ms"][mask].max())


def _overlap_time(m: Arrays, mask: np.ndarray) -> tuple[float, float]:
    return _interleaved(m, mask, "prefill"), _interleaved(m, mask, "decode")


def _interleaved(m: Arrays, mask: np.ndarray, phase: str) -> float:
    """One interleaved step of the selected members: their compute and memory traffic overlap
    (max of the sums), launch floors and host time do not (they add over members; host time overlaps
    the device when the stack launches asynchronously), each member runs its framework step, and the
    spec's fixed overhead is paid once."""
    def total(key: str) -> float:
        return float((m[f"{phase}_{key}_ms"] * mask).sum())

    device = max(total("compute"), total("memory")) + total("floor")
    host = total("host")
    busy = max(device, host) if bool(m["host_overlaps"][mask].all()) else device + host
    return busy + float((m["framework_ms"] * mask).sum()) + float(m["fixed_ms"][mask].max())


def _shared_memory(m: Arrays) -> tuple[float, float, float, int]:
    w, kv = float(m["weight_bytes"].sum()), float(m["kv_bytes"].sum())
    return w, kv, w + kv + float(m["workspace_bytes"].max()), 1


def _per_device_memory(m: Arrays) -> tuple[float, float, float, int]:
    return (float(m["weight_bytes"].sum()), float(m["kv_bytes"].sum()), float(m["peak_memory_bytes"].max()),
            len(m["weight_bytes"]))


def _sliced_memory(m: Arrays) -> tuple[float, float, float, int]:
    widest = int(np.argmax(m["weight_bytes"]))
    w = float(m["weight_bytes"][widest] + np.delete(m["weight_meta_bytes"], widest).sum())
    kv = float(m["kv_bytes"].sum())
    return w, kv, w + kv + float(m["workspace_bytes"].max()), 1


register_schedule(Schedule("sequential", "members run one after another on one device", _sum_time, _shared_memory))
register_schedule(Schedule("parallel", "one device per member, concurrently", _max_time, _per_device_memory,
                           per_device_area=True))
register_schedule(Schedule("batched", "members share one device, interleaved decode steps overlap",
                           _overlap_time, _shared_memory))
register_schedule(Schedule("sliced", "bit-sliced nested weights: memory of the widest member", _sum_time,
                           _sliced_memory))


def quorum_mask(member_bits: list[int], n_always: int | None = None) -> np.ndarray:
    """Members that always run under agreement gating: the ``k//2 + 1`` lowest precisions."""
    k = len(member_bits)
    n = k // 2 + 1 if n_always is None else int(n_always)
    if not 1 <= n <= k:
        raise ConfigError(f"gated_always = {n_always!r} is not allowed (allowed: 1..{k})")
    order = np.argsort(np.asarray(member_bits), kind="stable")
    mask = np.zeros(k, dtype=bool)
    mask[order[:n]] = True
    return mask


def estimate_ensemble(spec: str | AcceleratorSpec, shape: str | ModelShape, member_bits: list[int],
                      group_size: int = 128, schedule: str = "sequential", abits: int = 16, kvbits: int = 16,
                      batch: int = 1, prompt_len: int = 512, gen_len: int = 128, *, gated_fraction: float | None = None,
                      gated_always: int | None = None, sym: bool = False, ideal: bool = False,
                      float_dtype: str | None = None, runtime=None) -> CostEstimate:
    """Cost of a precision ensemble (members = weight bit-widths of one model) under a schedule.

    All members are evaluated in one vectorized call; the schedule combines them. ``wbits`` of the
    result is the widest member; per-member costs are in ``members``. ``runtime``: the software-stack
    profile every member runs under (name, path or object; default: no stack terms).
    """
    bits = [int(b) for b in member_bits]
    if not bits:
        raise ConfigError("--ensemble: give at least one member bit-width, e.g. 3,4,8")
    if gated_fraction is not None and not 0.0 <= float(gated_fraction) <= 1.0:
        raise ConfigError(f"gated_fraction = {gated_fraction!r} is not allowed (allowed: 0..1)")
    sch = get_schedule(schedule)
    sp, sh = load_spec(spec), load_shape(shape)
    res = evaluate_points([sp], [sh], wbits=np.array(bits), group_size=group_size, abits=abits, kvbits=kvbits,
                          batch=batch, prompt_len=prompt_len, gen_len=gen_len, sym=sym, ideal=ideal,
                          float_dtype=float_dtype, runtime=runtime)
    names = res["dtypes"]
    all_mask = np.ones(len(bits), dtype=bool)
    w, kv, peak, n_dev = sch.memory(res)
    if gated_fraction is None:
        weights = all_mask.astype(float)
        ttft, tpot = sch.time(res, all_mask)
    else:
        f = float(gated_fraction)
        q = quorum_mask(bits, gated_always)
        weights = np.where(q, 1.0, f)
        t_q, t_a = sch.time(res, q), sch.time(res, all_mask)
        ttft, tpot = (1 - f) * t_q[0] + f * t_a[0], (1 - f) * t_q[1] + f * t_a[1]
    b = int(batch)
    # dynamic energy of the members that run, plus static power of every device over the combined time
    idle = sp.idle_w or 0.0
    dyn_prefill = res["prefill_energy_j"] - idle * res["ttft_ms"] / 1e3
    energy_tok = float((res["decode_energy_j"] * weights).sum() + idle * n_dev * tpot / 1e3) / int(batch)
    prefill_e = float((dyn_prefill * weights).sum() + idle * n_dev * ttft / 1e3)

    def dtypes_of(i: int) -> set[str]:
        return {names[int(res[k][i])] for k in ("compute_dtype", "attn_dtype", "head_dtype")}

    if sch.per_device_area:
        areas = [sp.area_for(dtypes_of(i)) for i in range(len(bits))]
        area = None if any(a is None for a in areas) else float(sum(areas))
    else:
        area = sp.area_for(set().union(*(dtypes_of(i) for i in range(len(bits)))))
    members = [dict(bits=bits[i], gated=bool(weights[i] < 1.0), run_fraction=float(weights[i]),
                    ttft_ms=float(res["ttft_ms"][i]), tpot_ms=float(res["tpot_ms"][i]),
                    weight_bytes=float(res["weight_bytes"][i]), kv_bytes=float(res["kv_bytes"][i]),
                    energy_per_token_j=float(res["energy_per_token_j"][i]),
                    compute_dtype=names[int(res["compute_dtype"][i])],
                    dequantized=bool(res["dequantized"][i])) for i in range(len(bits))]
    widest = int(np.argmax(bits))
    return CostEstimate(
        spec=sp.name, model=sh.name, wbits=max(bits), group_size=int(group_size), abits=int(abits), kvbits=int(kvbits),
        batch=b, prompt_len=int(prompt_len), gen_len=int(gen_len), ttft_ms=ttft, tpot_ms=tpot,
        tokens_per_s=b * 1e3 / tpot, e2e_ms=ttft + (int(gen_len) - 1) * tpot, weight_bytes=w, kv_bytes=kv,
        peak_memory_bytes=peak, capacity_bytes=sp.memory.capacity_gb * 1e9,
        fits=bool(peak <= sp.memory.capacity_gb * 1e9),
        energy_per_token_j=energy_tok, prefill_energy_j=prefill_e, avg_power_w=energy_tok * b / tpot * 1e3 / n_dev,
        area_mm2=area, compute_dtype=",".join(sorted({m["compute_dtype"] for m in members})),
        dequantized=any(m["dequantized"] for m in members),
        decode_bound="memory" if _f(res["decode_memory_bound"][widest]) >= 0.5 else "compute",
        prefill_bound="memory" if _f(res["prefill_memory_bound"][widest]) >= 0.5 else "compute",
        ops=None, schedule=sch.name, members=members, n_devices=n_dev, gated_fraction=gated_fraction,
        runtime=res["runtime"])
