"""Measured prefill and decode runs on the device at hand (``codesign measure``).

Latency does not depend on weight values, so any real shape (``random:llama-2-7b`` ...) can be
timed with random weights and no download, optionally truncated to its first ``layers`` decoder
layers so wide models fit a small box (the analytical model is then evaluated on the same
truncated shape: the truncated ``config`` is stored with every measurement).

One run of a configuration = prefill ``batch x prompt_len`` random tokens (timed), then
``gen_len`` single-token decode steps through the KV cache (each timed). ``prefill_ms`` is the
median over repeats of the prefill time; ``tpot_ms`` the median over repeats of the mean decode
step. Warm-up runs (kernel selection, allocator growth, page faults) are never timed.

Quantized linears run on the kernel :mod:`codesign.quantize.kernels` selects for the device, dtype
and weight format (or the one ``kernel`` names); every row says which ran. The choice is per phase:
decode steps run the packed kernel (the ``kernel`` column); prefill runs it too, or (``prefill``,
``auto``: where the packed op is a GEMV that many rows make slow, torch's CPU ops) a dense GEMM on a
dequantized copy of each weight kept for it. ``extra.prefill_kernel`` / ``extra.decode_kernel`` say
what ran in each phase; the copy's bytes are in ``extra.weight_bytes`` and the peak memory. The lm head stays in
the row's dtype (``torch-matmul``), as in the serving stacks whose numbers the model is fitted to.

A precision ensemble (several formats of one model) runs its members for real under a schedule
(:data:`SCHEDULES`): ``sequential`` runs each member's prefill and decode steps after the
previous member's (the row's times are the sums of the members' times, which are stored too);
``batched`` interleaves them in one process: all members' prefills, then each decode step of
every member before the next step (one timer around each interleaved step, so on a GPU one
member's launches overlap another's work).
"""

from __future__ import annotations

import inspect
import json
import platform
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from codesign.config import ConfigError
from codesign.cost.timers import (OtherLoad, PeakMemory, cpu_busy_fraction, device_kind, release_freed_memory,
                                  timer_for, torch_threads, wait_for_quiet)
from codesign.records import SINGLE, Measurement

#: --dtype values -> bits of a dense weight in that dtype.
DTYPE_BITS = {"float32": 32, "bfloat16": 16, "float16": 16}
_VARIANT_RE = re.compile(r"^(?:(?P<method>[a-z]+)-)?w(?P<bits>\d+)g(?P<group>\d+|pc|-1)(?P<sym>-sym)?$")


@dataclass(frozen=True)
class WeightFormat:
    """How the weights of a measured model are stored.

    ``name`` is ``dense``, a packed format ``w<bits>g<group>[-sym]`` (RTN of the random weights,
    run on the selected kernel — timing only), or the id of a quantized variant in the result
    store (its real checkpoint, loaded packed, run on the selected kernel).
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


def parse_ensemble(text: str, store=None) -> tuple[WeightFormat, ...]:
    """Parse ``--ensemble``: comma-separated members, each a width (``4`` -> ``w4g128``; ``16`` ->
    dense) or anything ``--variant`` takes. At least two distinct members, lowest precision first."""
    members = []
    for t in (x.strip() for x in str(text).split(",") if x.strip()):
        if t.isdigit():
            bits = int(t)
            if bits == 16:
                t = "dense"
            elif not 2 <= bits <= 8:
                raise ConfigError(f"--ensemble: member {t!r} (allowed: widths 2..8 or 16, or weight formats)")
            else:
                t = f"w{bits}g128"
        members.append(parse_weight_format(t, store))
    if len(set(members)) < 2 or len(set(members)) != len(members):
        raise ConfigError(f"--ensemble: {text!r} needs at least two distinct members (e.g. 4,8 or w4g128,w8g128)")
    return tuple(sorted(members, key=lambda f: 99 if f.is_dense else f.bits))


#: Ensemble schedules measured for real (a subset of ``hwmodels.ensemble.SCHEDULES``).
SCHEDULES = ("sequential", "batched")


def check_schedules(names: Sequence[str]) -> list[str]:
    bad = [n for n in names if n not in SCHEDULES]
    if bad or not names:
        raise ConfigError(f"--schedule: {bad or names!r} (allowed: {', '.join(SCHEDULES)}; "
                          "parallel needs one device per member, sliced a bit-sliced kernel: both are modelled only)")
    return list(names)


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


#: GPU name pattern -> the built-in spec a measurement on it is compared against.
GPU_SPECS = (("H100", "h100-sxm"), ("A100", "a100-80gb"), (r"\bL4\b", "l4"), ("Orin", "jetson-orin"))


def default_spec(device: str, name: str) -> str | None:
    """The spec a row is compared against when ``--spec`` is not given: on CPU the probed
    ``host-cpu`` spec if ``codesign probe`` wrote one, else ``dev-cpu``; on CUDA the built-in spec
    of that GPU (by name), None for a GPU without one."""
    if device_kind(device) == "cpu":
        from codesign.cost.probe import default_spec_path

        return "host-cpu" if default_spec_path("host-cpu").exists() else "dev-cpu"
    return next((spec for pat, spec in GPU_SPECS if re.search(pat, name)), None)


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


@dataclass
class BuiltModel:
    """A model ready to time: its (possibly truncated) config as a dict, which kernel runs each
    quantized linear, and the bytes of its weights (parameters and buffers)."""

    model: Any
    config: dict[str, Any]
    kernel: str
    kernel_counts: dict[str, int] = field(default_factory=dict)
    kernel_reasons: dict[str, str] = field(default_factory=dict)
    weight_bytes: int = 0
    prefill_kernel: str = ""  # what multiplies prefill calls ("" -> ``kernel``)
    prefill_copy_bytes: int = 0  # bytes of the dequantized copies kept for prefill

    @property
    def prefill(self) -> str:
        return self.prefill_kernel or self.kernel


def build_model(model: str, fmt: WeightFormat, *, dtype: str = "float32", layers: int | None = None,
                device: str = "cpu", seed: int = 0, store=None, kernel: str = "auto",
                prefill: str = "auto") -> BuiltModel:
    """The model to time (see :class:`BuiltModel`).

    Random-weight names (``random:<shape>``, ``tiny-*``) are built directly from their config, so
    truncation happens before any weight is allocated. Other names are loaded, then truncated.
    Packed formats are RTN-quantized linear by linear onto their kernel
    (:func:`codesign.quantize.qlinear.replace_linears`); store variants are loaded packed and
    moved onto their kernel (:func:`codesign.quantize.kernels.pack_model`); their prefill calls run
    on ``prefill`` (:data:`codesign.quantize.kernels.PREFILL_PATHS`).
    """
    import torch

    if dtype not in DTYPE_BITS:
        raise ConfigError(f"--dtype: {dtype!r} is not supported (allowed: {list(DTYPE_BITS)})")
    torch_dtype = getattr(torch, dtype)
    plan = None
    if fmt.variant_id is not None:
        from codesign.quantize import load_variant
        from codesign.quantize.kernels import pack_model

        m = load_variant(store.variant_spec(fmt.variant_id), device=device, dtype=dtype, packed=True).model
        m.config = _truncate_config(m.config, layers)
        if layers is not None:
            m.model.layers = m.model.layers[:layers]
        plan = pack_model(m, device=device, dtype=torch_dtype, kernel=kernel, prefill=prefill)
    elif model.startswith("random:") or model.startswith("tiny-"):
        from codesign.models import model_config

        m = random_model(_truncate_config(model_config(model), layers), torch_dtype, seed)
    else:
        from codesign.models import load_model

        m = load_model(model, dtype=dtype, seed=seed).model
        if layers is not None:
            m.config = _truncate_config(m.config, layers)
            m.model.layers = m.model.layers[:layers]
    m = m.to(device).eval()
    if fmt.bits is not None and fmt.variant_id is None:
        from codesign.quantize.qlinear import replace_linears

        plan = replace_linears(m, fmt.bits, fmt.group_size, sym=fmt.sym, kernel=kernel, prefill=prefill)
    cfg = {k: v for k, v in m.config.to_dict().items() if not k.startswith("_") and _jsonable(v)}
    nbytes = sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])
    if plan is None:
        from codesign.quantize.kernels import DENSE_KERNEL

        return BuiltModel(m, cfg, DENSE_KERNEL, weight_bytes=nbytes)
    copies = sum(b.numel() * b.element_size() for n, b in m.named_buffers() if n.endswith(".prefill_weight"))
    return BuiltModel(m, cfg, plan.label, plan.counts, plan.reasons, nbytes, plan.prefill_label, copies)


def random_model(cfg, dtype, seed: int = 0, block_rows: int = 256):
    """A model of ``cfg`` with random weights, built fast enough to time 7B-wide layers on a laptop.

    Drawing every weight (transformers' own init) takes longer than timing the model, and latency
    does not depend on the values, so each matrix repeats a block of ``block_rows`` random rows
    (normal, the config's ``initializer_range``); norms are ones, biases zeros. No denormals, NaNs
    or zeros: dense kernels and the quantizer see ordinary weights.
    """
    import torch
    from transformers import AutoModelForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5: its own (slower) initialisation
        torch.manual_seed(seed)
        with torch.device("cpu"):
            return AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
    with torch.device("cpu"), no_init_weights():
        m = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
    gen = torch.Generator().manual_seed(seed)
    std = float(getattr(cfg, "initializer_range", 0.02))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() < 2:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
                continue
            rows = p.view(p.shape[0], -1)
            block = (torch.randn(min(block_rows, rows.shape[0]), rows.shape[1], generator=gen) * std).to(p.dtype)
            for i in range(0, rows.shape[0], block.shape[0]):
                rows[i:i + block.shape[0]].copy_(block[:rows.shape[0] - i])
    return m


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


# -- timing ---------------------------------------------------------------------------------------
class _Generation:
    """One member's KV-cached greedy generation on fixed random prompts: ``prefill()`` then ``step()``."""

    def __init__(self, model, ids):
        self.model, self.ids = model, ids
        params = inspect.signature(model.forward).parameters
        # generate() only computes the last position's logits in prefill; do the same.
        self.keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self.cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.24 renamed it
        self.past = self.next = None

    def _keep(self, out) -> None:
        cache = out.get("cache")
        self.past = out.past_key_values if cache is None else cache
        self.next = out.logits[:, -1:].argmax(-1)

    def prefill(self) -> None:
        self._keep(self.model(input_ids=self.ids, use_cache=True, **self.keep))

    def step(self) -> None:
        self._keep(self.model(input_ids=self.next, use_cache=True, **{self.cache_arg: self.past}))

    def release(self) -> None:
        self.past = self.next = None


def _timed(timer, fn) -> float:
    timer.start()
    fn()
    return timer.stop()


def _run_sequential(gens: list[_Generation], timer, steps: int) -> tuple[list[float], list[float]]:
    """Each member's prefill then its decode steps, member after member; per member (prefill, mean step)."""
    pre, tpot = [], []
    for g in gens:
        pre.append(_timed(timer, g.prefill))
        tpot.append(statistics.fmean(_timed(timer, g.step) for _ in range(steps)))
        g.release()
    return pre, tpot


def _run_batched(gens: list[_Generation], timer, steps: int) -> tuple[float, float]:
    """All members' prefills under one timer, then each decode step of every member under one timer."""
    pre = _timed(timer, lambda: [g.prefill() for g in gens])
    tpot = statistics.fmean(_timed(timer, lambda: [g.step() for g in gens]) for _ in range(steps))
    for g in gens:
        g.release()
    return pre, tpot


def time_schedule(models: Sequence[Any], schedule: str = SINGLE, *, batch: int, prompt_len: int, gen_len: int,
                  repeats: int = 3, warmup: int = 1, device: str = "cpu", seed: int = 0,
                  clock: str = "wall") -> dict[str, Any]:
    """Time prefill and KV-cached decode of one model (``single``) or an ensemble's members under a
    schedule (see module docstring), on the same random prompts ``(batch, prompt_len)``.

    Returns ``prefill_ms`` / ``tpot_ms`` (medians over ``repeats``), every repeat's numbers, for
    ``sequential`` each member's medians, and the peak memory of the timed runs (weights of every
    member, activations, KV caches; warm-up included: it allocates what the timed runs reuse).
    """
    import torch

    if min(batch, prompt_len, repeats) < 1 or gen_len < 1 or warmup < 0:
        raise ConfigError(f"batch, prompt_len, gen_len, repeats must be >= 1 and warmup >= 0 "
                          f"(got {batch}, {prompt_len}, {gen_len}, {repeats}, {warmup})")
    vocab = int(getattr(models[0].config, "vocab_size", 256))
    ids = torch.randint(0, vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(seed)).to(device)
    gens = [_Generation(m, ids) for m in models]
    timer, mem = timer_for(device, clock), PeakMemory(device)
    release_freed_memory()
    mem.reset()
    pre_runs, tpot_runs, member_pre, member_tpot = [], [], [], []
    with torch.inference_mode():
        for r in range(warmup + repeats):
            steps = gen_len if r >= warmup else min(gen_len, 2)
            if schedule == "batched":
                pre, tpot = _run_batched(gens, timer, steps)
            else:
                pres, tpots = _run_sequential(gens, timer, steps)
                pre, tpot = sum(pres), sum(tpots)
            if r >= warmup:
                pre_runs.append(pre)
                tpot_runs.append(tpot)
                if schedule == "sequential":
                    member_pre.append(pres)
                    member_tpot.append(tpots)
    out = {"prefill_ms": statistics.median(pre_runs), "tpot_ms": statistics.median(tpot_runs),
           "prefill_runs_ms": pre_runs, "tpot_runs_ms": tpot_runs,
           "peak_mem_bytes": mem.peak_bytes(), "peak_mem_method": mem.method if mem.resettable else "process"}
    if member_pre:
        out["member_prefill_ms"] = [statistics.median(c) for c in zip(*member_pre)]
        out["member_tpot_ms"] = [statistics.median(c) for c in zip(*member_tpot)]
    return out


def time_generation(model, **kw) -> dict[str, Any]:
    """:func:`time_schedule` of one model."""
    return time_schedule([model], SINGLE, **kw)


# -- the sweep --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subject:
    """What one row measures: one weight format, or an ensemble's members under a schedule."""

    members: tuple[WeightFormat, ...]
    schedule: str = SINGLE

    @property
    def label(self) -> str:
        return "+".join(f.name for f in self.members)


def _already_measured(store, key: dict[str, Any], layers: int | None, kernel: str, prefill: str) -> bool:
    for m in store.measurements("model=? AND variant=? AND dtype=? AND device=? AND batch=? AND prompt_len=? "
                                "AND gen_len=?", [key[k] for k in ("model", "variant", "dtype", "device", "batch",
                                                                   "prompt_len", "gen_len")]):
        if (m.schedule == key["schedule"] and m.extra.get("layers") == layers
                and m.extra.get("kernel_request", "auto") == kernel
                and _prefill_request(m) in (prefill, None)):
            return True
    return False


def _prefill_request(m) -> str | None:
    """The prefill path a row asked for. Rows from before per-phase kernels ran prefill on the decode
    kernel ("packed"); a dense row has one path whatever was asked (None: matches any request)."""
    if "prefill_request" in m.extra:
        return m.extra["prefill_request"]
    return None if m.variant == "dense" else "packed"


@dataclass
class MeasureOptions:
    """How ``measure`` times (everything but what it measures)."""

    gen_len: int = 16
    layers: int | None = None
    repeats: int = 3
    warmup: int = 1
    device: str = "cpu"
    seed: int = 0
    force: bool = False
    threads: int | None = None
    wait_quiet: float | None = None
    wait_timeout_s: float = 120.0
    max_other_load: float | None = None
    retries: int = 2
    clock: str = "wall"
    kernel: str = "auto"
    prefill: str = "auto"
    spec: str | None = None
    progress: bool = True


def _check(opts: MeasureOptions) -> None:
    import torch

    kind = device_kind(opts.device)
    if opts.threads is not None and opts.threads < 1:
        raise ConfigError(f"--threads: {opts.threads} (allowed: >= 1)")
    timer_for(opts.device, opts.clock)  # validates the clock for the device
    if opts.clock == "cpu" and torch.get_num_threads() != 1:
        raise ConfigError(f"--clock cpu needs --threads 1 (this run has {torch.get_num_threads()} threads; "
                          "multi-threaded runtimes spin-wait, which CPU time would count as work)")
    if opts.wait_quiet is not None and not 0.0 <= opts.wait_quiet <= 1.0:
        raise ConfigError(f"--wait-quiet: {opts.wait_quiet} is out of range (allowed: 0..1, a busy fraction of all CPUs)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device: {opts.device!r} requested but this torch has no CUDA device (allowed: cpu)")
    from codesign.quantize.kernels import PREFILL_PATHS, get_kernel

    if opts.kernel != "auto":
        get_kernel(opts.kernel)
    if opts.prefill not in PREFILL_PATHS:
        raise ConfigError(f"--prefill: {opts.prefill!r} (allowed: {', '.join(PREFILL_PATHS)})")
    if opts.spec is not None:
        from hwmodels import load_spec

        load_spec(opts.spec)


def measure(model: str, formats: Sequence[WeightFormat] = (), *, ensembles: Sequence[Sequence[WeightFormat]] = (),
            schedules: Sequence[str] = ("sequential",), dtypes: Sequence[str] = ("float32",),
            batches: Sequence[int] = (1,), prompt_lens: Sequence[int] = (128,), store=None,
            **options: Any) -> list[Measurement]:
    """Measure every (subject, dtype, batch, prompt_len) combination; store each as it completes.

    Subjects are the single ``formats`` and every ensemble of ``ensembles`` under every schedule of
    ``schedules``. ``options`` are :class:`MeasureOptions` fields. With a ``store``, combinations
    already measured on this device (same model, subject, dtype, batch, lengths, layers, kernel
    request) are skipped unless ``force``: an interrupted sweep resumes.

    ``wait_quiet`` (0-1): before each configuration, wait up to ``wait_timeout_s`` until the CPUs
    are at most that busy; the busy fraction seen is stored with the measurement either way. The
    share of the CPUs other processes used during the timed runs is stored as
    ``extra.other_load``; with ``max_other_load`` a configuration measured under more is retried
    (``retries`` times, waiting for quiet first) and skipped (not stored) if it never gets a clean
    run, so a later resumed sweep can fill it in. ``clock='cpu'`` times this process's CPU time
    instead of wall time (CPU only, ``threads=1``): robust on a machine busy with other work.
    Torch's thread count is restored on return.
    """
    opts = MeasureOptions(**options)
    subjects = [Subject((f,)) for f in formats]
    subjects += [Subject(tuple(e), s) for e in ensembles for s in check_schedules(schedules)]
    with torch_threads(opts.threads):
        _check(opts)
        return _sweep(model, subjects, dtypes, batches, prompt_lens, store, opts)


def _sweep(model: str, subjects: list[Subject], dtypes, batches, prompt_lens, store,
           opts: MeasureOptions) -> list[Measurement]:
    from tqdm.auto import tqdm

    kind, dname = device_kind(opts.device), device_name(opts.device)
    spec = opts.spec or default_spec(opts.device, dname)
    versions = software_versions()
    combos = [(s, d, b, p) for s in subjects for d in dtypes for b in batches for p in prompt_lens]
    results: list[Measurement] = []
    bar = tqdm(total=len(combos), desc=f"measure {model}", disable=not opts.progress)
    built: dict[tuple[WeightFormat, str], BuiltModel] = {}
    for subj, dtype, batch, plen in combos:
        bar.set_postfix_str(f"{subj.label} {subj.schedule} {dtype} b{batch} p{plen}")
        key = dict(model=model, variant=subj.label, dtype=dtype, device=kind, batch=batch, prompt_len=plen,
                   gen_len=opts.gen_len, schedule=subj.schedule)
        if store is not None and not opts.force and _already_measured(store, key, opts.layers, opts.kernel,
                                                                      opts.prefill):
            bar.update()
            continue
        need = {(f, dtype) for f in subj.members}
        for k in [k for k in built if k not in need]:  # free what this subject does not run
            del built[k]
        release_freed_memory()
        for f in subj.members:
            if (f, dtype) not in built:
                built[(f, dtype)] = build_model(model, f, dtype=dtype, layers=opts.layers, device=opts.device,
                                                seed=opts.seed, store=store, kernel=opts.kernel,
                                                prefill=opts.prefill)
        members = [built[(f, dtype)] for f in subj.members]
        t, busy, load = _time_clean(members, subj, batch, plen, opts)
        if t is None:
            bar.update()
            continue
        rec = _record(model, subj, members, dtype, batch, plen, t, busy, load, opts,
                      device=(kind, dname), spec=spec, versions=versions)
        if store is not None:
            store.add_measurement(rec)
        results.append(rec)
        bar.update()
    bar.close()
    return results


def _time_clean(members: list[BuiltModel], subj: Subject, batch: int, plen: int, opts: MeasureOptions):
    """Time a configuration, retrying while other processes load the CPUs (see :func:`measure`).
    Returns (timings or None when no clean run was had, busy fraction before, other load)."""
    busy = load = None
    for _ in range(1 + (opts.retries if opts.max_other_load is not None else 0)):
        busy = wait_for_quiet(opts.wait_quiet, opts.wait_timeout_s) if opts.wait_quiet is not None \
            else cpu_busy_fraction(0.2)
        if opts.max_other_load is not None and opts.wait_quiet is not None and busy is not None \
                and busy > opts.wait_quiet:
            continue  # never got quiet: do not spend the machine on a run that would be discarded
        with OtherLoad() as other:
            t = time_schedule([m.model for m in members], subj.schedule, batch=batch, prompt_len=plen,
                              gen_len=opts.gen_len, repeats=opts.repeats, warmup=opts.warmup, device=opts.device,
                              seed=opts.seed, clock=opts.clock)
        load = other.fraction
        if opts.max_other_load is None or load is None or load <= opts.max_other_load:
            return t, busy, load
    return None, busy, load


def _record(model: str, subj: Subject, members: list[BuiltModel], dtype: str, batch: int, plen: int,
            t: dict[str, Any], busy, load, opts: MeasureOptions, *, device: tuple[str, str], spec: str | None,
            versions: dict[str, Any]) -> Measurement:
    """The row of one timed configuration."""
    import torch

    single = subj.schedule == SINGLE
    fmt, built = subj.members[0], members[0]
    groups = {None if f.is_dense else f.group_size for f in subj.members}
    extra = {"layers": opts.layers, "config": built.config, "sym": fmt.sym, "warmup": opts.warmup, "seed": opts.seed,
             "prefill_runs_ms": t["prefill_runs_ms"], "tpot_runs_ms": t["tpot_runs_ms"],
             "peak_mem_method": t["peak_mem_method"], "weight_bytes": sum(m.weight_bytes for m in members),
             "device_index": opts.device, "cpu_busy_before": busy, "other_load": load, "clock": opts.clock,
             "threads": torch.get_num_threads(), "kernel_request": opts.kernel, "lm_head_kernel": "torch-matmul",
             "prefill_request": opts.prefill, "prefill_kernel": "+".join(dict.fromkeys(m.prefill for m in members)),
             "decode_kernel": "+".join(dict.fromkeys(m.kernel for m in members)),
             "prefill_copy_bytes": sum(m.prefill_copy_bytes for m in members)}
    if single:
        extra.update(kernel_counts=built.kernel_counts, kernel_reasons=built.kernel_reasons)
    else:
        extra["members"] = [
            {"variant": f.name, "wbits": f.wbits(dtype), "group_size": None if f.is_dense else f.group_size,
             "sym": f.sym, "kernel": m.kernel, "prefill_kernel": m.prefill, "kernel_counts": m.kernel_counts,
             "weight_bytes": m.weight_bytes}
            for f, m in zip(subj.members, members)]
        for name in ("member_prefill_ms", "member_tpot_ms"):
            for mem, v in zip(extra["members"], t.get(name, [])):
                mem[name.removeprefix("member_")] = v
    return Measurement(
        model=model, variant=subj.label, wbits=fmt.wbits(dtype) if single else None,
        group_size=groups.pop() if len(groups) == 1 else None, dtype=dtype, device=device[0],
        device_name=device[1], batch=batch, prompt_len=plen, gen_len=opts.gen_len, prefill_ms=t["prefill_ms"],
        tpot_ms=t["tpot_ms"], peak_mem_bytes=t["peak_mem_bytes"], repeats=opts.repeats,
        kernel="+".join(dict.fromkeys(m.kernel for m in members)), spec=spec, schedule=subj.schedule,
        versions=versions, extra=extra)
