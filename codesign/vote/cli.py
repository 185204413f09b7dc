"""``codesign vote``: score a precision ensemble from the result store beside its members.

:func:`vote` is the command as a plain function over :class:`VoteOptions`; :func:`register` binds
it to the command line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from codesign.commands import Mode, Policy, ScoringOptions, bind, option


def _fmt(x, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.1f}"


def _jsonable(obj):
    """DataFrame cells -> plain JSON (NaN -> null, numpy scalars -> Python)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


class VoteOptions(ScoringOptions):
    store: Path = option(..., "--store", help="Result store (SQLite) written by `codesign eval`.")
    members: list[str] | None = option(
        None, "--members", "-m", help="Comma-separated ensemble members: variant ids, short names (e.g. rtn-w4g128, "
                                      "dense) or unique id prefixes. Default: every variant with stored answers.")
    task: list[str] | None = option(None, "--task", "-t", help="Comma-separated tasks (mmlu, advglue, fairness, "
                                                               "ethics, ood). Default: every task with stored answers.")
    mode: Mode = option("generate", "--mode", help="Which stored answers to vote: generate or loglik.")
    protocol: str | None = option(None, "--protocol", help="Evaluation protocol of the answers to vote: decodingtrust "
                                                           "or codesign (default: the one --policy belongs to, else "
                                                           "decodingtrust).")
    policy: Policy | None = option(None, "--policy", help="Scoring policy of the protocol: decodingtrust "
                                                          "(DecodingTrust's formulas); codesign: answered (metrics "
                                                          "over items not refused, its default) or strict (refusals "
                                                          "count as wrong).")
    n_boot: int = option(1000, "--n-boot", help="Bootstrap resamples over items for 95% CIs (0 = none).",
                        ge=0, le=1_000_000)
    confidence: float = option(0.95, "--confidence", help="Confidence level of the bootstrap intervals.", gt=0,
                               lt=1)
    seed: int = option(0, "--seed", help="Seed of the bootstrap and of the validation split.")
    weighting: Literal["none", "accuracy"] = option("none", "--weighting", help="none: the study's unweighted majority; accuracy: votes weigh "
                                                        "each member's accuracy on a held-out validation slice "
                                                        "(numbers are then reported on the other items).")
    val_fraction: float = option(0.3, "--val-fraction", help="Share of items held out for --weighting accuracy.",
                                 gt=0, lt=1)
    gated: bool = option(False, "--gated", help="Also report agreement-gated evaluation: cheapest members first, "
                                                "higher precisions only on disagreement, with the fraction of items "
                                                "that needed them.")
    gate_size: int | None = option(None, "--gate-size", help="Members always run under --gated (default: the "
                                                             "smallest majority).", ge=1)
    escalation: Literal["unanimous", "decisive"] = option("unanimous", "--escalation", help="--gated rule: unanimous (escalate when the gate "
                                                               "disagrees) or decisive (add members until the "
                                                               "majority cannot change).")
    all_subsets: bool = option(False, "--all-subsets", help="Also score every subset of the members (2^m-1 "
                                                            "ensembles) per task.")
    subset_metric: Literal["task", "accuracy"] = option("task", "--subset-metric", help="--all-subsets scoring: task (the task's own "
                                                                "score()) or accuracy (vectorized, for large "
                                                                "catalogues).")
    top: int = option(10, "--top", help="Subsets shown per task with --all-subsets.", ge=1)
    as_json: bool = option(False, "--json", help="Print one JSON document instead of tables.")
    out: Path | None = option(None, "--out", help="Also write the per-task ensemble rows to this CSV.")
    progress: bool = option(True, "--progress/--no-progress", help="Show progress bars.")


@dataclass
class VoteResult:
    """What :func:`vote` computed: per-task ensemble rows, members' names and bits, gated and subset tables."""

    scores: Any  # pandas.DataFrame, one row per task (codesign.vote.score_ensemble)
    members: list[str]
    names: dict[str, str]
    bits: dict[str, int]
    gated: Any = None
    subsets: dict[str, Any] = field(default_factory=dict)


def vote(opts: VoteOptions) -> VoteResult:
    """Score the precision ensemble of ``opts.members`` per task beside its members (and gated / subsets)."""
    from codesign.store import ResultStore
    from codesign.vote.ensemble import resolve_members, score_ensemble

    progress = opts.progress and not opts.as_json
    with ResultStore(opts.store, read_only=True) as rs:  # voting only reads the store
        ids = resolve_members(rs, opts.members, opts.mode)
        df = score_ensemble(rs, ids, opts.task, mode=opts.mode, policy=opts.policy, n_boot=opts.n_boot,
                            seed=opts.seed, confidence=opts.confidence, weighting=opts.weighting,
                            val_fraction=opts.val_fraction, progress=progress, protocol=opts.protocol)
        res = VoteResult(df, ids, {v: rs.variant_spec(v).short_name for v in ids},
                         dict(zip(ids, rs.variant_bits(ids).tolist())))
        if opts.gated:
            from codesign.vote.gating import gated_scores

            res.gated = gated_scores(rs, ids, list(df["task"]), opts.mode, opts.policy, opts.gate_size,
                                     opts.escalation, protocol=opts.protocol)
        if opts.all_subsets:
            from codesign.vote.subsets import score_all_subsets

            for t in df["task"]:
                res.subsets[t] = score_all_subsets(rs, ids, t, opts.mode, opts.policy, metric=opts.subset_metric,
                                                   progress=progress, protocol=opts.protocol)
    if opts.out is not None:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(opts.out, index=False)
    return res


def show(opts: VoteOptions, res: VoteResult) -> None:
    """Print the result as tables, or as one JSON document with ``--json``."""
    if not opts.as_json:
        _print_tables(res.scores, res.members, res.names, res.bits, res.gated, res.subsets, opts.top,
                      opts.confidence, opts.n_boot)
        return
    doc = {
        "store": str(opts.store), "mode": opts.mode, "protocol": opts.protocol, "policy": opts.policy,
        "weighting": opts.weighting,
        "members": [{"variant_id": v, "name": res.names[v], "bits": res.bits[v]} for v in res.members],
        "tasks": _jsonable(res.scores.to_dict(orient="records")),
    }
    if res.gated is not None:
        doc["gated"] = _jsonable(res.gated.to_dict(orient="records"))
    if res.subsets:
        doc["subsets"] = {t: _jsonable(s.head(opts.top).to_dict(orient="records")) for t, s in res.subsets.items()}
    print(json.dumps(doc, indent=2))


def register(app) -> None:
    bind(app, "vote", VoteOptions, vote, show,
         doc="Score a precision ensemble of stored variants, per trust dimension, beside each member.")


def _print_tables(df, ids, names, bits, gdf, subsets, top, confidence, n_boot) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped to a file: do not wrap the table at 80 columns
        console = Console(width=max(console.width, 200))
    title = f"{df['ensemble'].iloc[0]}  (weighting: {df['weighting'].iloc[0]})"
    caption = "cells: score (refusal rate)"
    if n_boot:
        caption += escape(f"; [low, high]: {int(round(100 * confidence))}% bootstrap CI over items")
    table = Table(title=title, caption=caption)
    table.add_column("")
    for _, r in df.iterrows():
        table.add_column(escape(f"{r['dimension']}\n{r['task']}, n={r['n']}"), justify="right")
    table.add_row("[bold]ensemble[/bold]",
                  *[f"[bold]{_fmt(r['score'])}[/bold] ({_fmt(r['refusal_rate'], True)})" for _, r in df.iterrows()])
    if n_boot:
        table.add_row("  CI", *[escape(f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]") for _, r in df.iterrows()])
    table.add_section()
    for v in ids:
        table.add_row(f"{names[v]} ({bits[v]}b)",
                      *[f"{_fmt(r['members_score'][v])} ({_fmt(r['members_refusal_rate'][v], True)})"
                        for _, r in df.iterrows()])
    table.add_section()
    # dimensions not compared with members (fairness: group disparity, not correctness) show "-"
    table.add_row("best member", *[f"{names[r['best_member']]}: {_fmt(r['best_member_score'])}"
                                   if r["compared_with_members"] else "not compared" for _, r in df.iterrows()])
    table.add_row("ensemble - best", *[f"{'+' if (r['delta_vs_best'] or 0) >= 0 else ''}{_fmt(r['delta_vs_best'])}"
                                       for _, r in df.iterrows()])
    if n_boot:  # paired bootstrap: the same resamples for the ensemble and its best member
        table.add_row("  CI", *[escape(f"[{_fmt(r['delta_ci_low'])}, {_fmt(r['delta_ci_high'])}]")
                                for _, r in df.iterrows()])
    console.print(table)
    if "weights" in df.columns:
        for _, r in df.iterrows():
            w = ", ".join(f"{names[v]}={x:.2f}" for v, x in r["weights"].items())
            console.print(escape(f"vote weights on {r['task']} (validation accuracy): {w}"))
    if gdf is not None:
        g = Table(title="agreement-gated evaluation (cheapest members first)")
        for c in ("task", "rule", "gate", "score", "full vote", "same answer", "escalated", "rel. cost"):
            g.add_column(c, justify="right")
        for _, r in gdf.iterrows():
            g.add_row(r["task"], r["escalation"], str(r["gate_size"]), _fmt(r["score"]), _fmt(r["full_score"]),
                      _fmt(r["agreement_with_full"], True), _fmt(r["escalated_fraction"], True),
                      _fmt(r["relative_cost"], True))
        console.print(g)
    for t, s in subsets.items():
        st = Table(title=f"best subsets on {t} (of {len(s)})")
        for c in ("rank", "members", "size", "score", "refusal"):
            st.add_column(c, justify="right")
        for i, r in s.head(top).iterrows():
            st.add_row(str(i + 1), r["names"], str(r["size"]), _fmt(r["score"]), _fmt(r["refusal_rate"], True))
        console.print(st)
