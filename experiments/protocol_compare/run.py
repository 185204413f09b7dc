"""Both evaluation protocols side by side on one model: score and refusal rate per dimension.

    nice -n 5 python experiments/protocol_compare/run.py \
        [--store runs/protocol_compare.db] [--limit 200] [--threads 2]

Evaluates the dense model (default SmolLM2-135M-Instruct) in generation mode with ``--limit``
items per dimension (seeded, stratified by subtask) under the ``decodingtrust`` protocol
(DecodingTrust's prompts, budgets, parsing and formulas) and the ``codesign`` protocol (its own
prompts and three-valued parser, scored with both of its policies), then writes
``results.md`` / ``results.json`` / ``results.csv`` here.

Dimensions run cheapest first (by prompt tokens to compute), both protocols per dimension, and
the tables are rewritten after each (dimension, protocol), so an interrupted run leaves a
partial table: a dimension with fewer answered items than selected shows ``done/selected`` and
its score over the answered ones. The store makes it resumable: re-run the same command.
Throughput per (dimension, protocol) comes from the store's ``eval_runs`` (items, tokens and
wall time of every run that added answers; wall time on a shared machine, load stated in the
README).

OMP_WAIT_POLICY=PASSIVE (set here unless given): on a machine with more runnable threads than
cores, OpenMP's default spin-waiting made a 2-thread forward pass of SmolLM2 cost 3x the CPU time of a 1-thread one
(experiments/eval_speed/README.md, "threads"); passive waiting removes that.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see the docstring

HERE = Path(__file__).resolve().parent
#: Cheapest first (prompt tokens to compute at --limit 200 on SmolLM2's tokenizer, both protocols:
#: advglue 21k, ood 28k, ethics 31k, mmlu 113k, fairness 807k), so a cut run has the most dimensions.
TASK_ORDER = ("advglue", "ood", "ethics", "mmlu", "fairness")
PROTOCOLS = (("decodingtrust", ("decodingtrust",)), ("codesign", ("answered", "strict")))


def evaluate_task(loaded, store, spec, task_name: str, prepared: dict, batch_size: int) -> float:
    """Answer every selected item of one task (``prepared``: one protocol's :func:`prepare_tasks`);
    returns the seconds it took."""
    from codesign.evaluate import evaluate_variant

    t0 = time.perf_counter()
    evaluate_variant(loaded, spec, store, mode="generate", batch_size=batch_size,
                     prepared={task_name: prepared[task_name]})
    return time.perf_counter() - t0


def throughput(store, variant_id: str, protocol: str, task: str) -> dict:
    """Items/s and tokens/s (prompt + generated over wall) of the stored eval runs of one task."""
    runs = store.frame("eval_runs", "variant_id=? AND mode='generate' AND protocol=? AND task=?",
                       (variant_id, protocol, task))
    wall = float(runs["wall_s"].sum()) if len(runs) else 0.0
    n = int(runs["n_items"].sum()) if len(runs) else 0
    toks = int(runs["prompt_tokens"].sum() + runs["gen_tokens"].sum()) if len(runs) else 0
    gen = int(runs["gen_tokens"].sum()) if len(runs) else 0
    return {"wall_s": wall, "run_items": n, "items_per_s": n / wall if wall else float("nan"),
            "tok_per_s": toks / wall if wall else float("nan"), "gen_tokens": gen}


def _store_with_items(stores: list, spec, name: str, protocol: str):
    """The first store holding answers of (task, protocol) (runs of two protocols may go to two
    stores, one process each), else the first store; returns (store, answered item ids)."""
    for store in stores:
        done = store.done_item_ids(spec.variant_id, name, "generate", protocol)
        if done:
            return store, done
    return stores[0], set()


def table(stores: list, spec, prepared: dict, prior: dict | None = None) -> list[dict]:
    """One row per (protocol, policy, task) over the items answered so far (``prepared``: protocol
    -> :func:`prepare_tasks`). ``prior``: (protocol, policy, task) -> a row of an earlier
    ``results.json``, kept where no store holds that (task, protocol) (its store did not outlive
    the session that wrote it); such rows say so in ``source``."""
    from codesign.evaluate.scoring import score_items

    rows = []
    for protocol, policies in PROTOCOLS:
        for name, (task, items) in prepared[protocol].items():
            store, done = _store_with_items(stores, spec, name, protocol)
            if not done and prior and all((protocol, p, name) in prior for p in policies):
                rows += [{**prior[(protocol, p, name)], "source": "prior results.json"} for p in policies]
                continue
            ids = [it.item_id for it in items if it.item_id in done]
            speed = throughput(store, spec.variant_id, protocol, name)
            for policy in policies:
                r = score_items(store, spec.variant_id, name, ids, "generate", policy, protocol) if ids else \
                    {"n": 0, "score": float("nan"), "refusal_rate": float("nan"), "invalid_rate": float("nan")}
                rows.append({"protocol": protocol, "policy": policy, "task": name, "dimension": task.dimension,
                             "selected": len(items), "n": r["n"], "score": r["score"],
                             "refusal_rate": r["refusal_rate"], "invalid_rate": r["invalid_rate"],
                             "max_new_tokens": task.max_new_tokens, **speed, "source": "store"})
    return rows


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{100 * v:.1f}"


def _num(v: float, fmt: str = ".1f") -> str:
    return "n/a" if v != v else format(v, fmt)


def markdown(rows: list[dict]) -> str:
    """Scores side by side, then throughput per (dimension, protocol)."""
    by = {(r["protocol"], r["policy"], r["task"]): r for r in rows}
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    out = ["| dimension | n DT | DT score | DT refusal % | n cs | cs answered | cs strict | cs refusal % "
           "| cs invalid % |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in tasks:
        dt, ca, cs = by[("decodingtrust", "decodingtrust", t)], by[("codesign", "answered", t)], \
            by[("codesign", "strict", t)]
        mark = "" if {dt.get("source"), ca.get("source")} <= {"store", None} else " †"
        out.append(f"| {dt['dimension']}{mark} | {dt['n']}/{dt['selected']} | {_num(dt['score'])} "
                   f"| {_pct(dt['refusal_rate'])} | {ca['n']}/{ca['selected']} | {_num(ca['score'])} "
                   f"| {_num(cs['score'])} | {_pct(ca['refusal_rate'])} | {_pct(ca['invalid_rate'])} |")
    if any(r.get("source", "store") != "store" for r in rows):
        out += ["", "† from an earlier `results.json` (`--prior`): a run whose store did not outlive its session."]
    out += ["", "Throughput (store's eval_runs: completed runs only; wall time on the shared machine):", "",
            "| dimension | protocol | max new tok | items | wall s | items/s | tok/s |", "|---|---|---:|---:|---:|---:|---:|"]
    for t in tasks:
        for protocol, policies in PROTOCOLS:
            r = by[(protocol, policies[0], t)]
            out.append(f"| {r['dimension']} | {protocol} | {r['max_new_tokens']} | {r['run_items']} "
                       f"| {r['wall_s']:.0f} | {_num(r['items_per_s'], '.3f')} | {_num(r['tok_per_s'], '.0f')} |")
    return "\n".join(out) + "\n"


def write(rows: list[dict], out: Path, meta: dict) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({**meta, "rows": rows}, indent=1, default=float))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md = markdown(rows)
    (out / "results.md").write_text(md)
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=Path("runs/protocol_compare.db"))
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--tasks", default=",".join(TASK_ORDER), help="comma list, run in this order")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--protocols", default=",".join(p for p, _ in PROTOCOLS),
                    help="comma list of protocols to run (one process per protocol may share the work)")
    ap.add_argument("--also-store", type=Path, action="append", default=[],
                    help="more stores to read for the tables (read-only), e.g. the other protocol's")
    ap.add_argument("--prior", type=Path, default=None,
                    help="an earlier results.json whose rows stand for (task, protocol) pairs no store holds")
    ap.add_argument("--table-only", action="store_true",
                    help="only write the tables from the store (read-only; e.g. while a run is under way)")
    args = ap.parse_args()

    import torch

    from codesign.evaluate.runner import prepare_tasks
    from codesign.models import load_model
    from codesign.paths import data_dir
    from codesign.records import VariantSpec
    from codesign.store import ResultStore

    torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    data = data_dir(args.data_dir)
    spec = VariantSpec(model=args.model)
    meta = {"model": args.model, "limit": args.limit, "seed": args.seed, "threads": args.threads,
            "batch_size": args.batch_size}
    prepared = {p: prepare_tasks(tasks, data, args.limit, args.seed, p) for p, _ in PROTOCOLS}
    run_protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = sorted(set(run_protocols) - {p for p, _ in PROTOCOLS})
    if unknown:
        raise SystemExit(f"error: --protocols {','.join(unknown)} unknown; allowed: "
                         f"{', '.join(p for p, _ in PROTOCOLS)}")
    prior = None
    if args.prior is not None:
        prior = {(r["protocol"], r["policy"], r["task"]): r
                 for r in json.loads(args.prior.read_text())["rows"] if r["n"]}
    extra = [ResultStore(p, read_only=True) for p in args.also_store]
    if args.table_only:
        with ResultStore(args.store, read_only=True) as store:
            print(write(table([store, *extra], spec, prepared, prior), args.out, meta))
        return
    args.store.parent.mkdir(parents=True, exist_ok=True)
    loaded = None
    with ResultStore(args.store) as store:
        for name in tasks:
            for protocol in run_protocols:
                if loaded is None:
                    loaded = load_model(args.model, device="cpu")
                s = evaluate_task(loaded, store, spec, name, prepared[protocol], args.batch_size)
                print(f"{name} / {protocol}: {s:.0f} s in this invocation", flush=True)
                md = write(table([store, *extra], spec, prepared, prior), args.out, meta)
        print(md)


if __name__ == "__main__":
    main()
