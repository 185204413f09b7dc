"""Benchmark: vote and score all 4,095 subsets of 12 variants over 5,000 items.

Target: under 1 s on this machine, and the speed-up over a per-item Python loop.

Measured side by side in one run, on the same synthetic answers (gold labels over 4 options;
members right with a probability that grows with precision, plus refusals and invalid answers):

- ``vectorized``: :func:`codesign.voting.subset_votes` (all subsets and items at once) followed by
  the vectorized per-subtask accuracy / refusal rate (:func:`codesign.vote.subsets.subset_accuracy`);
- ``matmul``: the same votes through the matrix-product path used for catalogues over 16 members;
- ``core_per_subset``: :func:`codesign.voting.precision_ensemble_vote` called once per subset
  (vectorized over items only);
- ``python_loop``: :func:`codesign.voting.vote_loop`, a plain per-item Python loop, on a random
  sample of subsets (``--loop-subsets``; ``--full-loop`` runs all of them), extrapolated linearly
  to every subset. Its answers are checked against the vectorized ones on the sampled subsets.

Run: ``python experiments/vote_speed/bench.py`` (writes ``results.json`` next to this file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from codesign.records import INVALID, REFUSED
from codesign.vote.subsets import subset_accuracy
from codesign.voting import (
    _compact,
    _subset_votes_matmul,
    precision_ensemble_vote,
    subset_masks,
    subset_votes,
    tie_priority,
    vote_loop,
)

HERE = Path(__file__).resolve().parent


def synthetic_answers(members: int, items: int, seed: int = 0):
    """``(labels (members, items), bits (members,), gold (items,), subtasks (items,))``."""
    rng = np.random.default_rng(seed)
    bits = np.array(([2, 3, 4, 5, 6, 8, 16] * members)[:members])
    gold = rng.integers(0, 4, size=items)
    subtasks = np.where(np.arange(items) % 2 == 0, "0shot", "5shot")
    p_right = 0.3 + 0.4 * (bits - bits.min()) / max(1, bits.max() - bits.min())
    r = rng.random((members, items))
    wrong = (gold[None, :] + rng.integers(1, 4, size=(members, items))) % 4
    labels = np.where(r < p_right[:, None], gold[None, :], wrong)
    labels = np.where(rng.random((members, items)) < 0.05, REFUSED, labels)
    labels = np.where(rng.random((members, items)) < 0.03, INVALID, labels)
    return labels.astype(np.int64), bits, gold, subtasks


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=12, help="catalogue size m (2^m - 1 subsets)")
    ap.add_argument("--items", type=int, default=5000, help="items per task")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (best is reported)")
    ap.add_argument("--loop-subsets", type=int, default=40, help="subsets timed with the Python loop")
    ap.add_argument("--full-loop", action="store_true", help="run the Python loop on every subset (minutes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args()

    labels, bits, gold, subtasks = synthetic_answers(args.members, args.items, args.seed)
    masks = subset_masks(args.members)
    n_sub = masks.shape[0]
    print(f"{n_sub} subsets of {args.members} variants x {args.items} items "
          f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, numpy {np.__version__})")

    def vectorized():
        pred = subset_votes(labels, bits, masks)
        return pred, subset_accuracy(pred, gold, "decodingtrust", subtasks)

    t_vec, (pred, scores) = best_of(vectorized, args.repeats)
    t_votes, _ = best_of(lambda: subset_votes(labels, bits, masks), args.repeats)

    def matmul():
        cols, values, _ = _compact(labels, False)
        out = np.full((n_sub, args.items), REFUSED, dtype=np.int8)
        _subset_votes_matmul(cols, values, tie_priority(bits), masks, out, None)
        return out

    t_mm, pred_mm = best_of(matmul, 1)
    assert np.array_equal(pred_mm, pred), "matmul path disagrees with the doubling path"

    t = time.perf_counter()
    for s in range(n_sub):
        precision_ensemble_vote(labels[masks[s]], bits[masks[s]])
    t_core = time.perf_counter() - t

    rng = np.random.default_rng(args.seed)
    sample = np.arange(n_sub) if args.full_loop else rng.choice(n_sub, size=min(args.loop_subsets, n_sub),
                                                                replace=False)
    t = time.perf_counter()
    for s in sample:
        ref = vote_loop(labels[masks[s]], bits[masks[s]])
        assert np.array_equal(ref, pred[s]), f"subset {s}: vectorized votes differ from the Python loop"
    t_loop_sample = time.perf_counter() - t
    t_loop = t_loop_sample * n_sub / len(sample)

    best = int(np.nanargmax(scores["score"]))
    result = {
        "members": args.members, "items": args.items, "subsets": int(n_sub),
        "time_s": {
            "vectorized_votes_and_scores": t_vec,
            "vectorized_votes_only": t_votes,
            "matmul_votes": t_mm,
            "core_per_subset": t_core,
            "python_loop_all_subsets": t_loop,
        },
        "python_loop_measured": {"subsets": int(len(sample)), "time_s": t_loop_sample,
                                 "extrapolated": not args.full_loop},
        "speedup_vs_python_loop": t_loop / t_vec,
        "speedup_vs_core_per_subset": t_core / t_vec,
        "target_s": 1.0,
        "target_met": t_vec < 1.0,
        "best_subset": {"bits": bits[masks[best]].tolist(), "score": float(scores["score"][best])},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "numpy": np.__version__, "load_avg_1min": os.getloadavg()[0]},
    }
    print(f"vectorized votes + scores, all subsets : {t_vec:8.3f} s   (target < 1 s: "
          f"{'met' if t_vec < 1 else 'MISSED'})")
    print(f"  votes only                          : {t_votes:8.3f} s")
    print(f"  matrix-product path (m > 16)        : {t_mm:8.3f} s")
    print(f"core vote called once per subset      : {t_core:8.3f} s   ({t_core / t_vec:6.1f}x slower)")
    print(f"per-item Python loop (all subsets)    : {t_loop:8.3f} s   ({t_loop / t_vec:6.0f}x slower; "
          f"{'measured' if args.full_loop else f'extrapolated from {len(sample)} subsets'})")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
