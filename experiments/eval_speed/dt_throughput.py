"""DecodingTrust-protocol generation throughput, before vs after, side by side per dimension.

    python experiments/eval_speed/dt_throughput.py [--before c079f68] [--items 8] [--threads 2]

"Before" is the code at git ref ``--before`` (exported with ``git archive`` to a temporary
folder) run as main ran it: OpenMP's default (spinning) wait policy. "After" is this working
tree with ``OMP_WAIT_POLICY=PASSIVE`` (what ``codesign`` and the experiment scripts now set).
Two worker processes (same torch threads) hold the model; the driver hands them the same items
one dimension at a time, alternating which goes first, so load swings on the shared machine hit
both alike. Per dimension it prints items/s on the wall clock and process CPU seconds per item
(robust to load), the ratios, and whether the greedy answers are identical.

Items: per dimension the seeded stratified ``--items`` subsample of the ``decodingtrust`` task
(the same selection rule as ``--limit``), so every kind of prompt (fairness: one per Adult file,
zero-shot and 16/32-shot) is in it. Results: ``dt_throughput.json`` / ``.md`` here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DIMENSIONS = ("advglue", "ethics", "ood", "mmlu", "fairness")


def worker(threads: int, items: int, batch_size: int) -> None:
    """Serve dimension names read from stdin: generate its items' answers, print one JSON line."""
    import torch

    from codesign.evaluate.generation import BatchGenerator, chat_ids, context_length, fit_context
    from codesign.evaluate.runner import prepare_tasks
    from codesign.models import load_model

    torch.set_num_threads(threads)
    loaded = load_model("smollm2-135m-instruct", device="cpu")
    tok, model = loaded.tokenizer, loaded.model
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        name, n = line.split()
        (task, its), = prepare_tasks([name], None, int(n), 0, "decodingtrust").values()
        reserve = task.max_new_tokens
        prompts = [fit_context(chat_ids(tok, it.messages), context_length(model), reserve) for it in its]
        w0, c0 = time.perf_counter(), time.process_time()
        engine = BatchGenerator(model, tok, prefill="auto", stop_strings=task.stop_strings)
        texts = [""] * len(prompts)
        for batch in engine.plan(prompts, batch_size):
            for i, o in zip(batch, engine.generate([prompts[i] for i in batch], task.max_new_tokens)):
                texts[i] = o.text
        st = engine.stats
        print(json.dumps({"task": name, "n": len(prompts), "wall_s": time.perf_counter() - w0,
                          "cpu_s": time.process_time() - c0, "prompt_tokens": st.prompt_tokens,
                          "computed_tokens": st.computed_prompt_tokens, "gen_tokens": st.gen_tokens,
                          "prefill_s": st.prefill_s, "decode_s": st.decode_s, "texts": texts}), flush=True)


def export_ref(ref: str, dest: Path) -> Path:
    """The tree of git ``ref`` unpacked under ``dest`` (``git archive``)."""
    tar = dest / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), ref], check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest / "src", filter="data")
    return dest / "src"


def start(src: Path, env_extra: dict, args) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.update(PYTHONPATH=str(src), **env_extra)
    p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", "--threads", str(args.threads),
                          "--items", str(args.items), "--batch-size", str(args.batch_size)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(src))
    assert json.loads(p.stdout.readline())["ready"]
    return p


def ask(p: subprocess.Popen, name: str, items: int) -> dict:
    p.stdin.write(f"{name} {items}\n")
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def markdown(rows: list[dict], meta: dict) -> str:
    out = [f"SmolLM2-135M-Instruct, decodingtrust protocol, generation, n items per dimension "
           f"(seeded stratified), {meta['threads']} torch threads, batch {meta['batch_size']}; before = "
           f"{meta['before']}, after = {meta['after']}; load average {meta['load_start']:.1f} -> "
           f"{meta['load_end']:.1f} on {os.cpu_count()} cores.", "",
           "| dimension | n | before items/s | after items/s | wall ratio | before CPU s/item "
           "| after CPU s/item | CPU ratio | after tok/s | same answers |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b, a = r["before"], r["after"]
        same = sum(x == y for x, y in zip(b["texts"], a["texts"]))
        tok_s = (a["prompt_tokens"] + a["gen_tokens"]) / a["wall_s"]
        out.append(f"| {r['task']} | {a['n']} | {b['n'] / b['wall_s']:.3f} | {a['n'] / a['wall_s']:.3f} "
                   f"| {b['wall_s'] / a['wall_s']:.2f}x | {b['cpu_s'] / b['n']:.2f} | {a['cpu_s'] / a['n']:.2f} "
                   f"| {b['cpu_s'] / a['cpu_s']:.2f}x | {tok_s:.0f} | {same}/{a['n']} |")
    tb = sum(r["before"]["wall_s"] for r in rows)
    ta = sum(r["after"]["wall_s"] for r in rows)
    cb = sum(r["before"]["cpu_s"] for r in rows)
    ca = sum(r["after"]["cpu_s"] for r in rows)
    out.append(f"| all | {sum(r['after']['n'] for r in rows)} | | | {tb / ta:.2f}x | | | {cb / ca:.2f}x | | |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="c079f68", help="git ref of the 'before' code")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tasks", default=",".join(DIMENSIONS),
                    help="comma list in run order; task:n overrides --items for one task (fairness:3)")
    ap.add_argument("--out", type=Path, default=HERE / "dt_throughput")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.threads, args.items, args.batch_size)
    tasks = [(t.split(":")[0], int(t.split(":")[1]) if ":" in t else args.items) for t in args.tasks.split(",") if t]
    meta = {"before": args.before, "after": "working tree", "threads": args.threads,
            "batch_size": args.batch_size, "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        src = export_ref(args.before, Path(tmp))
        workers = {"before": start(src, {}, args), "after": start(ROOT, {"OMP_WAIT_POLICY": "PASSIVE"}, args)}
        rows = []
        for k, (name, n) in enumerate(tasks):
            order = ("before", "after") if k % 2 == 0 else ("after", "before")
            row = {"task": name}
            for which in order:
                row[which] = ask(workers[which], name, n)
                print(f"{name} {which}: {row[which]['wall_s']:.1f} s wall, {row[which]['cpu_s']:.1f} s CPU",
                      flush=True)
            rows.append(row)
            meta["load_end"] = os.getloadavg()[0]
            md = write(rows, meta, args.out)  # after each dimension: a cut run keeps what it measured
        for p in workers.values():
            p.stdin.close()
            p.wait()
    print(md)


def write(rows: list[dict], meta: dict, out: Path) -> str:
    md = markdown(rows, meta)
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(md)
    return md


if __name__ == "__main__":
    main()
