"""Both evaluation protocols side by side on one model: score and refusal rate per dimension.

    python experiments/protocol_compare/run.py [--store runs/protocol_compare.db] [--limit 200]

Evaluates the dense model (default SmolLM2-135M-Instruct) in generation mode with ``--limit``
items per dimension (seeded, stratified by subtask) under the ``decodingtrust`` protocol
(DecodingTrust's prompts, budgets, parsing and formulas) and the ``codesign`` protocol (its own
prompts and three-valued parser, scored with both of its policies), then writes
``results.md`` / ``results.json`` here. The store makes it resumable: re-run the same command
after an interruption. Wall time = the evaluation time the store recorded (``eval_runs``), summed
over every run that added answers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def evaluate(store, spec, limit: int, seed: int, data_dir, batch_size: int) -> None:
    from codesign.evaluate import evaluate_catalogue
    from codesign.evaluate.tasks import task_names

    for protocol in ("decodingtrust", "codesign"):
        t0 = time.perf_counter()
        evaluate_catalogue([spec], store, task_names(protocol), mode="generate", limit=limit, seed=seed,
                           data_dir=data_dir, batch_size=batch_size, protocol=protocol, device="cpu")
        print(f"{protocol}: {time.perf_counter() - t0:.0f} s in this invocation", flush=True)


def table(store, spec, limit: int, seed: int, data_dir) -> list[dict]:
    from codesign.evaluate.runner import prepare_tasks
    from codesign.evaluate.scoring import score_items
    from codesign.evaluate.tasks import task_names

    rows = []
    runs = store.frame("eval_runs", "variant_id=? AND mode='generate'", (spec.variant_id,))
    for protocol, policies in (("decodingtrust", ("decodingtrust",)), ("codesign", ("answered", "strict"))):
        for name, (task, items) in prepare_tasks(task_names(protocol), data_dir, limit, seed, protocol).items():
            ids = [it.item_id for it in items]
            for policy in policies:
                r = score_items(store, spec.variant_id, name, ids, "generate", policy, protocol)
                rows.append({"protocol": protocol, "policy": policy, "task": name, "dimension": task.dimension,
                             "n": r["n"], "score": r["score"], "refusal_rate": r["refusal_rate"],
                             "invalid_rate": r["invalid_rate"],
                             "max_new_tokens": task.max_new_tokens,
                             "wall_s": float(runs.query("protocol == @protocol and task == @name")["wall_s"].sum())})
    return rows


def markdown(rows: list[dict]) -> str:
    by = {(r["protocol"], r["policy"], r["task"]): r for r in rows}
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    out = ["| dimension | DT score | DT refusal % | codesign answered | codesign strict | codesign refusal % "
           "| codesign invalid % |", "|---|---:|---:|---:|---:|---:|---:|"]
    for t in tasks:
        dt, ca, cs = by[("decodingtrust", "decodingtrust", t)], by[("codesign", "answered", t)], \
            by[("codesign", "strict", t)]
        out.append(f"| {dt['dimension']} | {dt['score']:.1f} | {100 * dt['refusal_rate']:.1f} | {ca['score']:.1f} "
                   f"| {cs['score']:.1f} | {100 * ca['refusal_rate']:.1f} | {100 * ca['invalid_rate']:.1f} |")
    walls = {p: sum(r["wall_s"] for r in rows if r["protocol"] == p and r["policy"] != "strict")
             for p in ("decodingtrust", "codesign")}
    out.append("")
    out.append(f"Evaluation wall time (store's eval_runs): decodingtrust {walls['decodingtrust']:.0f} s, "
               f"codesign {walls['codesign']:.0f} s.")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=Path("runs/protocol_compare.db"))
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    from codesign.paths import data_dir
    from codesign.records import VariantSpec
    from codesign.store import ResultStore

    data = data_dir(args.data_dir)
    spec = VariantSpec(model=args.model)
    with ResultStore(args.store) as store:
        evaluate(store, spec, args.limit, args.seed, data, args.batch_size)
        rows = table(store, spec, args.limit, args.seed, data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"model": args.model, "limit": args.limit, "seed": args.seed,
                                                       "rows": rows}, indent=1, default=float))
    md = markdown(rows)
    (args.out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
