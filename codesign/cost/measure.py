"""Measured prefill and decode runs on the device at hand (``codesign measure``).

Latency does not depend on weight values, so any real shape (``random:llama-2-7b`` ...) can be
timed with random weights and no download, optionally truncated to its first ``layers`` decoder
layers so wide models fit a small box (the analytical model is then evaluated on the same
truncated shape: the truncated ``config`` is stored with every measurement).

One run of a configuration = prefill ``batch x prompt_len`` random tokens (timed), then
``gen_len`` single-token decode steps through the KV cache (each timed). ``prefill_ms`` is the
median over repeats of the prefill time; ``tpot_ms`` the median over repeats of the mean decode
step. Warm-up runs (kernel selection, allocator growth, page faults) are never timed.
"""

from __future__ import annotations

import inspect
import json
import platform
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from codesign.config import ConfigError
from codesign.cost.timers import (OtherLoad, PeakMemory, cpu_busy_fraction, device_kind, rss_high_water_bytes,
                                  timer_for, wait_for_quiet)

#: --dtype values -> bits of a dense weight in that dtype.
DTYPE_BITS = {"float32": 32, "bfloat16": 16, "float16": 16}
_VARIANT_RE = re.compile(r"^(?:(?P<method>[a-z]+)-)?w(?P<bits>\d+)g(?P<group>\d+|pc|-1)(?P<sym>-sym)?$")


@dataclass(frozen=True)
class WeightFormat:
    """How the weights of a measured model are stored.

    ``name`` is ``dense``, a packed format ``w<bits>g<group>[-sym]`` (RTN into packed
    ``QuantLinear`` modules that dequantize on the fly — timing only), or the id of a quantized
    variant in the result store (its real checkpoint, loaded packed).
    """

    name: str
    bits: int | None = None  # None: dense (bits follow the dtype)
    group_size: int = 128
    sym: bool = False
    variant_id: str | None = None

    @property
    def is_dense(self) -> bool:
        return self.bits is None and self.variant_id is None

    def wbits(self, dtype: str) -> int:
        return DTYPE_BITS[dtype] if self.bits is None else self.bits


def parse_weight_format(text: str, store=None) -> WeightFormat:
    """Parse one ``--variant`` value (see :class:`WeightFormat`); errors name the allowed forms."""
    t = text.strip()
    if t in ("dense", "fp", "none"):
        return WeightFormat("dense")
    m = _VARIANT_RE.match(t.lower())
    if m:
        bits = int(m["bits"])
        if not 2 <= bits <= 8:
            raise ConfigError(f"--variant: {t!r} has {bits} bits (allowed: 2..8)")
        g = m["group"]
        group = -1 if g in ("pc", "-1") else int(g)
        if group != -1 and group <= 0:
            raise ConfigError(f"--variant: {t!r} has group size {group} (allowed: a positive integer or pc)")
        return WeightFormat(f"w{bits}g{'pc' if group == -1 else group}" + ("-sym" if m["sym"] else ""),
                            bits=bits, group_size=group, sym=bool(m["sym"]))
    if store is not None:
        try:
            spec = store.variant_spec(t)
        except KeyError:
            spec = None
        if spec is not None:
            if spec.is_dense:
                return WeightFormat("dense")
            return WeightFormat(t, bits=spec.bits, group_size=spec.group_size, sym=spec.sym, variant_id=t)
    raise ConfigError(
        f"--variant: {t!r} is not a weight format (allowed: dense, w<bits>g<group>[-sym] such as w4g128 or w8gpc, "
        "or the variant_id of a quantized variant in --store)")


@dataclass
class Measurement:
    """One measured configuration (a row of the store's ``measurements`` table)."""

    model: str
    variant: str
    wbits: int
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
    versions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def software_versions() -> dict[str, Any]:
    """Versions that change kernels and therefore timings (stored with every measurement)."""
    import importlib.metadata as md

    import torch

    import codesign

    out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                           "codesign": codesign.__version__, "threads": torch.get_num_threads()}
    for pkg in ("transformers", "gptqmodel"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def device_name(device: str) -> str:
    if device_kind(device) == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    if device_kind(device) == "mps":
        return f"Apple {platform.machine()} (MPS)"
    from codesign.cost.probe import cpu_name

    return cpu_name()


# -- building the model to time ------------------------------------------------------------------
def _truncate_config(cfg, layers: int | None):
    if layers is None:
        return cfg
    key = "n_layer" if hasattr(cfg, "n_layer") and not hasattr(cfg, "num_hidden_layers") else "num_hidden_layers"
    full = getattr(cfg, key)
    if not 1 <= layers <= full:
        raise ConfigError(f"--layers: {layers} is out of range for this model (allowed: 1..{full})")
    setattr(cfg, key, layers)
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = list(cfg.layer_types)[:layers]
    return cfg


def build_model(model: str, fmt: WeightFormat, *, dtype: str = "float32", layers: int | None = None,
                device: str = "cpu", seed: int = 0, store=None):
    """The model to time and its (possibly truncated) config as a dict.

    Random-weight names (``random:<shape>``, ``tiny-*``) are built directly from their config, so
    truncation happens before any weight is allocated. Other names are loaded, then truncated.
    Packed formats go through ``codesign.quantize.qlinear.replace_linears`` (the native
    dequantize path); store variants through ``codesign.quantize.load_variant(packed=True)``.
    """
    import torch

    if dtype not in DTYPE_BITS:
        raise ConfigError(f"--dtype: {dtype!r} is not supported (allowed: {list(DTYPE_BITS)})")
    torch_dtype = getattr(torch, dtype)
    if fmt.variant_id is not None:
        from codesign.quantize import load_variant

        m = load_variant(store.variant_spec(fmt.variant_id), device="cpu", dtype=dtype, packed=True).model
        m.config = _truncate_config(m.config, layers)
        if layers is not None:
            m.model.layers = m.model.layers[:layers]
    elif model.startswith("random:") or model.startswith("tiny-"):
        from transformers import AutoModelForCausalLM

        from codesign.models import model_config

        cfg = _truncate_config(model_config(model), layers)
        torch.manual_seed(seed)
        with torch.device("cpu"):
            m = AutoModelForCausalLM.from_config(cfg, dtype=torch_dtype).eval()
    else:
        from codesign.models import load_model

        m = load_model(model, dtype=dtype, seed=seed).model
        if layers is not None:
            m.config = _truncate_config(m.config, layers)
            m.model.layers = m.model.layers[:layers]
    if fmt.bits is not None and fmt.variant_id is None:
        from codesign.quantize.qlinear import replace_linears

        m = replace_linears(m, fmt.bits, fmt.group_size, sym=fmt.sym)
    m = m.to(device).eval()
    cfg = m.config.to_dict()
    return m, {k: v for k, v in cfg.items() if not k.startswith("_") and _jsonable(v)}


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


# -- timing ---------------------------------------------------------------------------------------
def time_generation(model, *, batch: int, prompt_len: int, gen_len: int, repeats: int = 3, warmup: int = 1,
                    device: str = "cpu", seed: int = 0, clock: str = "wall") -> dict[str, Any]:
    """Time prefill and KV-cached decode of ``model`` on random tokens.

    Input ids have shape (batch, prompt_len); each decode step feeds (batch, 1). Returns
    ``prefill_ms`` / ``tpot_ms`` (medians over ``repeats``), every run's numbers, and the peak
    memory over all runs (warm-up included: it allocates what the timed runs reuse).
    """
    import torch

    if min(batch, prompt_len, repeats) < 1 or gen_len < 1 or warmup < 0:
        raise ConfigError(f"batch, prompt_len, gen_len, repeats must be >= 1 and warmup >= 0 "
                          f"(got {batch}, {prompt_len}, {gen_len}, {repeats}, {warmup})")
    vocab = int(getattr(model.config, "vocab_size", 256))
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, prompt_len), generator=gen).to(device)
    # generate() only computes the last position's logits in prefill; do the same.
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    timer, mem = timer_for(device, clock), PeakMemory(device)
    prefill, tpot, steps_all = [], [], []
    mem.reset()
    with torch.inference_mode():
        for r in range(warmup + repeats):
            timer.start()
            out = model(input_ids=ids, use_cache=True, **keep)
            pf = timer.stop()
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            steps = []
            for _ in range(gen_len if r >= warmup else min(gen_len, 2)):
                timer.start()
                out = model(input_ids=nxt, past_key_values=past, use_cache=True)
                steps.append(timer.stop())
                past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            del past, out
            if r >= warmup:
                prefill.append(pf)
                tpot.append(sum(steps) / len(steps))
                steps_all.append(steps)
    return {"prefill_ms": statistics.median(prefill), "tpot_ms": statistics.median(tpot),
            "prefill_runs_ms": prefill, "tpot_runs_ms": tpot,
            "step_median_ms": statistics.median(s for run in steps_all for s in run),
            "peak_mem_bytes": mem.peak_bytes(), "peak_mem_resettable": mem.resettable}


def _already_measured(store, key: dict[str, Any], layers: int | None) -> bool:
    where = " AND ".join(f"{k}=?" for k in key)
    df = store.frame("measurements", where, list(key.values()))
    return any(json.loads(e or "{}").get("layers") == layers for e in df.get("extra_json", []))


def measure(model: str, formats: Sequence[WeightFormat], *, dtypes: Sequence[str] = ("float32",),
            batches: Sequence[int] = (1,), prompt_lens: Sequence[int] = (128,), gen_len: int = 16,
            layers: int | None = None, repeats: int = 3, warmup: int = 1, device: str = "cpu", seed: int = 0,
            store=None, force: bool = False, threads: int | None = None, wait_quiet: float | None = None,
            wait_timeout_s: float = 120.0, max_other_load: float | None = None, retries: int = 2, clock: str = "wall",
            progress: bool = True) -> list[Measurement]:
    """Measure every (format, dtype, batch, prompt_len) combination; store each as it completes.

    With a ``store``, combinations already measured on this device (same model, format, dtype,
    batch, lengths, layers) are skipped unless ``force`` — an interrupted sweep resumes.
    ``wait_quiet`` (0-1): before each configuration, wait up to ``wait_timeout_s`` until the CPUs
    are at most that busy; the busy fraction seen is stored with the measurement either way.
    The share of the CPUs other processes used during the timed runs is stored as
    ``extra.other_load``; with ``max_other_load`` a configuration measured under more is retried
    (``retries`` times, waiting for quiet first) and skipped — not stored — if it never gets a
    clean run, so a later resumed sweep can fill it in. ``clock='cpu'`` times this process's CPU
    time instead of wall time (CPU only, ``threads=1``): robust on a machine busy with other work.
    """
    import gc

    from tqdm.auto import tqdm

    import torch

    kind = device_kind(device)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads: {threads} (allowed: >= 1)")
        torch.set_num_threads(threads)
    timer_for(device, clock)  # validates the clock for the device
    if clock == "cpu" and torch.get_num_threads() != 1:
        raise ConfigError(f"--clock cpu needs --threads 1 (this run has {torch.get_num_threads()} threads; "
                          "multi-threaded runtimes spin-wait, which CPU time would count as work)")
    if wait_quiet is not None and not 0.0 <= wait_quiet <= 1.0:
        raise ConfigError(f"--wait-quiet: {wait_quiet} is out of range (allowed: 0..1, a busy fraction of all CPUs)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device: {device!r} requested but this torch has no CUDA device (allowed: cpu)")
    versions, dname = software_versions(), device_name(device)
    baseline_rss = rss_high_water_bytes()
    combos = [(f, d, b, p) for f in formats for d in dtypes for b in batches for p in prompt_lens]
    results: list[Measurement] = []
    bar = tqdm(total=len(combos), desc=f"measure {model}", disable=not progress)
    built: tuple[Any, ...] | None = None
    for fmt, dtype, batch, plen in combos:
        bar.set_postfix_str(f"{fmt.name} {dtype} b{batch} p{plen}")
        key = dict(model=model, variant=fmt.name, dtype=dtype, device=kind, batch=batch, prompt_len=plen,
                   gen_len=gen_len)
        if store is not None and not force and _already_measured(store, key, layers):
            bar.update()
            continue
        for attempt in range(1 + (retries if max_other_load is not None else 0)):
            busy = wait_for_quiet(wait_quiet, wait_timeout_s) if wait_quiet is not None else cpu_busy_fraction(0.2)
            if max_other_load is not None and wait_quiet is not None and busy is not None and busy > wait_quiet:
                clean = False  # never got quiet: do not spend the machine on a run that would be discarded
                continue
            if built is None or built[0] != (fmt, dtype):
                built = None
                gc.collect()
                m, cfg = build_model(model, fmt, dtype=dtype, layers=layers, device=device, seed=seed, store=store)
                built = ((fmt, dtype), m, cfg)
            _, m, cfg = built
            with OtherLoad() as load:
                t = time_generation(m, batch=batch, prompt_len=plen, gen_len=gen_len, repeats=repeats,
                                    warmup=warmup, device=device, seed=seed, clock=clock)
            clean = max_other_load is None or load.fraction is None or load.fraction <= max_other_load
            if clean:
                break
        if not clean:
            bar.update()
            continue
        rec = Measurement(
            model=model, variant=fmt.name, wbits=fmt.wbits(dtype), group_size=None if fmt.is_dense else fmt.group_size,
            dtype=dtype, device=kind, device_name=dname, batch=batch, prompt_len=plen, gen_len=gen_len,
            prefill_ms=t["prefill_ms"], tpot_ms=t["tpot_ms"], peak_mem_bytes=t["peak_mem_bytes"], repeats=repeats,
            versions=versions,
            extra={"layers": layers, "config": cfg, "sym": fmt.sym, "warmup": warmup, "seed": seed,
                   "prefill_runs_ms": t["prefill_runs_ms"], "tpot_runs_ms": t["tpot_runs_ms"],
                   "step_median_ms": t["step_median_ms"], "rss_before_bytes": baseline_rss,
                   "peak_mem_resettable": t["peak_mem_resettable"], "device_index": device,
                   "cpu_busy_before": busy, "other_load": load.fraction, "clock": clock},
        )
        if store is not None:
            store.add_measurement(**rec.row())
        results.append(rec)
        bar.update()
    bar.close()
    return results
