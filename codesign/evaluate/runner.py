"""Evaluate variants on tasks into the result store, resumably, measuring what it costs.

For each (variant, task): the task's items (seeded stratified subsample under ``limit``) go
into ``items`` under the task's protocol; items without a stored answer for this variant and mode are prompted in
length-sorted batches; every batch's answers are committed at once, so a killed run loses at
most one batch and a re-run picks up where it stopped (``INSERT OR IGNORE`` keeps answers
unique). Each run that did work adds an ``eval_runs`` row: prompt and generation tokens/s,
time per output token, peak memory (CUDA max-allocated on GPU, process RSS high-water on CPU).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

from codesign.evaluate.generation import BatchGenerator, OptionScorer, chat_ids, context_length, fit_context
from codesign.evaluate.tasks import Item, Task, get_task
from codesign.records import ANSWER_MODES, EvalRun, VariantSpec
from codesign.store import ItemRow, OutputRow, ResultStore

MODES = ANSWER_MODES


def check_mode(mode: str) -> str:
    if mode not in MODES:
        from codesign.config import ConfigError

        raise ConfigError(f"--mode: {mode!r} is not an evaluation mode (allowed: {list(MODES)})")
    return mode


def prepare_tasks(tasks: Sequence[str | Task], data_dir=None, limit: int | None = None,
                  seed: int = 0, protocol: str | None = None) -> dict[str, tuple[Task, list[Item]]]:
    """Task objects and their (subsampled) items, by task name (names are looked up under
    ``protocol``; task objects keep their own)."""
    out = {}
    for t in tasks:
        task = get_task(t, protocol=protocol) if isinstance(t, str) else t
        out[task.name] = (task, task.load(data_dir, limit=limit, seed=seed))
    return out


def store_items(store: ResultStore, task: Task, items: Sequence[Item]) -> None:
    store.add_items(ItemRow(task.name, it.item_id, it.subtask, it.label, it.meta, task.protocol) for it in items)


def peak_memory_bytes(device) -> int:
    """CUDA max-allocated on a GPU, else this process's resident-set high-water mark."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=not enabled, leave=False)


def _answer(engine, mode: str, task: Task, variant_id: str, items: Sequence[Item],
            prompts: Sequence[Sequence[int]]) -> list[OutputRow]:
    """Answers of one batch: generated and parsed, or the best-scoring option."""
    rows = []
    if mode == "generate":
        for it, o in zip(items, engine.generate(prompts, task.max_new_tokens)):
            rows.append(OutputRow(variant_id, task.name, it.item_id, task.parse(o.text, it), o.text, mode,
                                  o.latency_s, task.protocol))
        return rows
    tb = time.perf_counter()
    scores = engine.score(prompts, [it.continuations for it in items])
    lat = (time.perf_counter() - tb) / len(items)
    for it, sc in zip(items, scores):
        k = int(sc.argmax())
        rows.append(OutputRow(variant_id, task.name, it.item_id, it.continuation_label(k), it.continuations[k], mode,
                              lat, task.protocol))
    return rows


def run_task(loaded, variant_id: str, task: Task, items: Sequence[Item], store: ResultStore, *,
             mode: str = "generate", batch_size: int = 8, progress: bool = True, prefill: str = "auto") -> int:
    """Answer every item of ``items`` this variant has no stored answer for; returns how many were added."""
    import torch

    check_mode(mode)
    done = store.done_item_ids(variant_id, task.name, mode, task.protocol)
    todo = [it for it in items if it.item_id not in done]
    if not todo:
        return 0
    tok, model = loaded.tokenizer, loaded.model
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx = context_length(model)
    reserve = task.max_new_tokens + max((len(tok.encode(c, add_special_tokens=False)) for it in todo[:50]
                                         for c in it.continuations), default=0)
    prompts = [fit_context(chat_ids(tok, it.messages), ctx, reserve) for it in todo]
    engine = BatchGenerator(model, tok, prefill=prefill, stop_strings=task.stop_strings) if mode == "generate" else \
        OptionScorer(model, tok, prefill=prefill)
    added = answered = skipped = 0
    t0 = time.perf_counter()
    with _progress(len(todo), f"{task.name} [{mode}]", progress) as bar:
        # Each batch is claimed first (claim_items): items another process answered or is answering
        # meanwhile are skipped, so two runs of the same variant split the work; the items another
        # live process holds are re-checked at the end until its answers are stored (or it dies).
        pending = [list(b) for b in engine.plan(prompts, batch_size)]
        while pending:
            batch = pending.pop(0)
            mine, held = store.claim_items(variant_id, task.name, mode, task.protocol,
                                           [todo[i].item_id for i in batch])
            run = [i for i in batch if todo[i].item_id in mine]
            if run:
                rows = _answer(engine, mode, task, variant_id, [todo[i] for i in run], [prompts[i] for i in run])
                added += store.add_outputs(rows)
                store.release_claims(variant_id, task.name, mode, task.protocol, [todo[i].item_id for i in run])
                answered += len(run)
            waiting = [i for i in batch if todo[i].item_id in held]
            skipped += len(batch) - len(run) - len(waiting)
            bar.update(len(batch) - len(waiting))
            if waiting:
                if not pending:
                    time.sleep(0.5)  # only items another process is answering are left
                pending.append(waiting)
    if skipped:
        print(f"{task.name} [{mode}]: {skipped} of {len(todo)} items were answered by another process meanwhile "
              f"(skipped); {answered} answered here", file=sys.stderr)
    if not answered:
        return added
    st = engine.stats
    store.add_eval_run(EvalRun(
        variant_id=variant_id, task=task.name, mode=mode, device=device.type, n_items=answered,
        prompt_tokens=st.prompt_tokens, gen_tokens=st.gen_tokens, prompt_tok_s=st.prompt_tok_s,
        gen_tok_s=st.gen_tok_s, tpot_ms=st.tpot_ms, peak_mem_bytes=peak_memory_bytes(device),
        wall_s=time.perf_counter() - t0, protocol=task.protocol))
    return added


def evaluate_variant(loaded, variant: VariantSpec, store: ResultStore, tasks: Sequence[str | Task] = ("mmlu",),
                     mode: str = "generate", limit: int | None = None, seed: int = 0, data_dir=None,
                     batch_size: int = 8, progress: bool = True, policy: str | None = None,
                     prepared: dict[str, tuple[Task, list[Item]]] | None = None,
                     prefill: str = "auto", protocol: str | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate one loaded variant on ``tasks`` (names under ``protocol``); returns task name ->
    score dict (over this run's items, with ``policy``, default the protocol's own)."""
    from codesign.evaluate.scoring import score_items

    check_mode(mode)
    prepared = prepared or prepare_tasks(tasks, data_dir, limit, seed, protocol)
    vid = store.add_variant(variant)
    results = {}
    for name, (task, items) in prepared.items():
        store_items(store, task, items)
        run_task(loaded, vid, task, items, store, mode=mode, batch_size=batch_size, progress=progress,
                 prefill=prefill)
        results[name] = score_items(store, vid, name, [it.item_id for it in items], mode, policy, task.protocol)
    return results


def evaluate_catalogue(specs: Sequence[VariantSpec], store: ResultStore, tasks: Sequence[str | Task] = ("mmlu",),
                       mode: str = "generate", limit: int | None = None, seed: int = 0, data_dir=None,
                       batch_size: int = 8, progress: bool = True, device: str | None = None,
                       dtype: str = "float32", policy: str | None = None,
                       packed: bool = False, prefill: str = "auto", protocol: str | None = None,
                       prepared: dict[str, tuple[Task, list[Item]]] | None = None,
                       ) -> dict[str, dict[str, dict[str, Any]]]:
    """Evaluate every variant (loaded with ``codesign.quantize.load_variant``); variant id -> task -> scores.

    Task names are looked up under ``protocol``; ``prepared`` (from :func:`prepare_tasks`) skips
    reading the data again. A variant whose answers are all stored already is scored without
    loading its model.
    """
    from codesign.evaluate.scoring import score_items

    check_mode(mode)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    prepared = prepared or prepare_tasks(tasks, data_dir, limit, seed, protocol)
    for task, items in prepared.values():
        store_items(store, task, items)
    out = {}
    for spec in specs:
        vid = store.add_variant(spec)
        missing = any(set(it.item_id for it in items) - store.done_item_ids(vid, name, mode, task.protocol)
                      for name, (task, items) in prepared.items())
        if missing:
            loaded = load_for_eval(spec, device, dtype, packed)
            out[vid] = evaluate_variant(loaded, spec, store, mode=mode, batch_size=batch_size,
                                        progress=progress, policy=policy, prepared=prepared, prefill=prefill)
            del loaded
        else:
            out[vid] = {name: score_items(store, vid, name, [it.item_id for it in items], mode, policy,
                                          task.protocol)
                        for name, (task, items) in prepared.items()}
    return out


def load_for_eval(spec: VariantSpec, device: str, dtype: str, packed: bool):
    """The variant's model: ``codesign.quantize.load_variant`` (the dense base model needs only
    ``codesign.models``)."""
    try:
        from codesign.quantize import load_variant
    except ImportError:
        if not spec.is_dense:
            raise
        from codesign.models import load_model

        return load_model(spec.model, dtype=dtype, device=device, seed=spec.seed)
    loaded = load_variant(spec, device=device, dtype=dtype, packed=packed)
    if packed and not spec.is_dense:  # quantized linears onto the kernel chosen for device, dtype, format
        import torch

        from codesign.quantize.kernels import pack_model

        pack_model(loaded.model, device=device, dtype=getattr(torch, dtype))
    return loaded
