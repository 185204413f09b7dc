"""Projected CPU cost of a generation-mode study under the ``decodingtrust`` protocol (issue 20's size).

    python experiments/protocol_compare/project.py [--limit 400] [--variants 14]

Cost model per dimension: the prompt tokens a run must compute (the distinct-prefix count of the
seeded ``--limit`` selection, tokenizer only: what the prefix cache computes at best) times the
measured CPU seconds per computed prompt token, plus the items times the measured decoding CPU
seconds per item, both from ``experiments/eval_speed/dt_throughput.json`` (its "after" worker:
process CPU time of 2 torch threads, i.e. core-seconds, split between prompt pass and decoding
in proportion to their wall time). Quantized variants are evaluated with dequantized
(fake-quant) weights, the dense cost. Prints core-hours per dimension and in all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent / "eval_speed" / "dt_throughput.json"


def distinct_prefix_tokens(prompts: list[list[int]]) -> int:
    """Tokens of the prefix tree of ``prompts``: each distinct prefix once."""
    from codesign.evaluate.prefix_cache import common_prefix

    s = sorted(prompts)
    return len(s[0]) + sum(len(b) - common_prefix(a, b) for a, b in zip(s, s[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--variants", type=int, default=14)
    ap.add_argument("--bench", type=Path, default=BENCH)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from codesign.evaluate.generation import chat_ids
    from codesign.evaluate.runner import prepare_tasks
    from codesign.models.loading import resolve_model

    path, kw = resolve_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(path, **kw)
    bench = {r["task"]: r["after"] for r in json.loads(args.bench.read_text())["rows"]}
    print(f"| dimension | items | prompt tokens | computed tokens | prefill CPU ms/token | decode CPU s/item "
          f"| core-h per variant | core-h x {args.variants} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    total = 0.0
    for name, (task, items) in prepare_tasks(list(bench), None, args.limit, 0, "decodingtrust").items():
        prompts = [chat_ids(tok, it.messages) for it in items]
        computed = distinct_prefix_tokens(prompts)
        b = bench[name]
        share = b["prefill_s"] / (b["prefill_s"] + b["decode_s"])
        per_token = b["cpu_s"] * share / b["computed_tokens"]
        per_item = b["cpu_s"] * (1 - share) / b["n"]
        hours = (computed * per_token + len(items) * per_item) / 3600
        total += hours * args.variants
        print(f"| {name} | {len(items)} | {sum(map(len, prompts))} | {computed} | {1000 * per_token:.2f} "
              f"| {per_item:.2f} | {hours:.2f} | {hours * args.variants:.1f} |")
    print(f"| all | | | | | | {total / args.variants:.2f} | {total:.1f} |")


if __name__ == "__main__":
    main()
