"""Items/s of codesign's batched evaluation path vs the simple baseline, on the same SmolLM2 items.

Baseline (what comparable studies run): Hugging Face ``model.generate``, batch 1, greedy,
16 new tokens (stopping at EOS), then the same parser. Ours: :class:`BatchGenerator` (on CPU:
prompts one at a time in lexicographic order through a prefix KV cache, each distinct prefix
computed once, then batched decoding with per-sequence early stop and the task's short budget).
Both run in one process on the same items; to be fair on a shared, noisy CPU they alternate
chunk by chunk (each chunk = one of our batches), so load changes hit both alike.

Reports, per task: items/s of each path, the speed-up, and the agreement of the parsed answers
(greedy decoding, so they should match; padding changes floating-point rounding and the shorter
budget truncates long answers, so the rate is measured, not assumed). Writes ``results.json``
and ``results.csv`` next to this script.

    python experiments/eval_speed/bench.py --limit 48 --batch-size 16
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pick(items, limit: int, seed: int, sample: str):
    """The benchmark's items: a stratified random sample, or each subtask's first items in id order."""
    from codesign.evaluate.tasks import stratified_subsample

    if sample == "stratified":
        return stratified_subsample(items, limit, seed)
    if sample != "contiguous":
        raise SystemExit(f"--samples: {sample!r} is not allowed (allowed: stratified, contiguous)")
    subs = sorted({it.subtask for it in items})
    share = {s: limit // len(subs) + (1 if j < limit % len(subs) else 0) for j, s in enumerate(subs)}
    out = []
    for s in subs:
        out += sorted((it for it in items if it.subtask == s), key=lambda it: it.item_id)[: share[s]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tasks", default="mmlu,ethics")
    ap.add_argument("--limit", type=int, default=48, help="items per task (seeded, stratified per subtask)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", default="stratified,contiguous",
                    help="stratified: the seeded per-subtask random sample of --limit (items from many "
                         "subjects/prompts: little shared prefix, the worst case); contiguous: the first items "
                         "of each subtask in id order (same subject / demonstration set, as a full run sees them)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--pack-tokens", type=int, default=512, help="tree prefill: tokens per packed pass at most")
    ap.add_argument("--prefill", default="auto", help="codesign's prefill mode: auto (tree on CPU), tree, rows or batch")
    ap.add_argument("--baseline-tokens", type=int, default=16)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from codesign.evaluate.generation import BatchGenerator, chat_ids
    from codesign.evaluate.runner import prepare_tasks
    from codesign.models import load_model

    lm = load_model(args.model)
    tok, model = lm.tokenizer, lm.model
    rows, details = [], {}
    cases = []
    for name, (task, items) in prepare_tasks(args.tasks.split(","), args.data_dir, None, args.seed).items():
        for sample in args.samples.split(","):
            cases.append((name, sample, task, pick(items, args.limit, args.seed, sample)))
    for name, sample, task, items in cases:
        prompts = [chat_ids(tok, it.messages) for it in items]
        gen = BatchGenerator(model, tok, prefill=args.prefill, pack_tokens=args.pack_tokens)
        t_base = t_ours = 0.0
        base_lab, ours_lab, base_txt, ours_txt = {}, {}, {}, {}
        for batch in gen.plan(prompts, args.batch_size):
            t0 = time.perf_counter()
            outs = gen.generate([prompts[i] for i in batch], task.max_new_tokens)
            t_ours += time.perf_counter() - t0
            for i, o in zip(batch, outs):
                ours_txt[i], ours_lab[i] = o.text, task.parse(o.text, items[i])
            t0 = time.perf_counter()
            for i in batch:
                ids = torch.tensor([prompts[i]])
                with torch.inference_mode():
                    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=args.baseline_tokens, pad_token_id=tok.pad_token_id)
                text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
                base_txt[i], base_lab[i] = text, task.parse(text, items[i])
            t_base += time.perf_counter() - t0
        n = len(items)
        agree = sum(base_lab[i] == ours_lab[i] for i in range(n))
        prefix = sum(base_txt[i].strip().startswith(ours_txt[i].strip()) for i in range(n))
        row = {
            "task": name, "sample": sample, "n_items": n, "batch_size": args.batch_size,
            "baseline_items_s": n / t_base, "ours_items_s": n / t_ours, "speedup": t_base / t_ours,
            "label_agreement": agree / n, "text_prefix_agreement": prefix / n,
            "ours_max_new_tokens": task.max_new_tokens, "baseline_max_new_tokens": args.baseline_tokens,
            "mean_prompt_tokens": sum(map(len, prompts)) / n,
            "prefill": gen.prefill_mode, "pack_tokens": args.pack_tokens,
            # Prompt tokens the baseline runs over those codesign ran: the speed-up's prefill bound.
            "prompt_token_ratio": sum(map(len, prompts)) / max(1, gen.stats.computed_prompt_tokens),
        }
        rows.append(row)
        details[f"{name}/{sample}"] = [{"item_id": items[i].item_id, "baseline": base_txt[i], "ours": ours_txt[i],
                          "baseline_label": base_lab[i], "ours_label": ours_lab[i]}
                         for i in range(n) if base_lab[i] != ours_lab[i]]
        print(f"{name:7s} {sample:11s} n={n:4d}  baseline {row['baseline_items_s']:.2f} items/s   ours {row['ours_items_s']:.2f} "
              f"items/s   speed-up {row['speedup']:.2f}x   (prompt tokens {row['prompt_token_ratio']:.2f}x fewer)   label agreement {100 * row['label_agreement']:.1f}%",
              flush=True)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
           "model": args.model, "device": "cpu", "seed": args.seed}
    Path(args.out).write_text(json.dumps({"env": env, "results": rows, "disagreements": details}, indent=2))
    with open(Path(args.out).with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
