"""``codesign vote``: score a precision ensemble from the result store beside its members."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer

from codesign.config import ConfigError


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


def register(app: typer.Typer) -> None:
    @app.command("vote")
    def vote(
        store: Path = typer.Option(..., "--store", help="Result store (SQLite) written by `codesign eval`."),
        members: Optional[str] = typer.Option(
            None, "--members", "-m",
            help="Comma-separated ensemble members: variant ids, short names (e.g. rtn-w4g128, dense) or unique "
                 "id prefixes. Default: every variant with stored answers."),
        task: Optional[str] = typer.Option(
            None, "--task", "-t", help="Comma-separated tasks (mmlu, advglue, fairness, ethics, ood). "
                                       "Default: every task with stored answers."),
        mode: str = typer.Option("generate", "--mode", help="Which stored answers to vote: generate or loglik."),
        protocol: Optional[str] = typer.Option(
            None, "--protocol", help="Evaluation protocol of the answers to vote: decodingtrust or codesign "
                                     "(default: the one --policy belongs to, else decodingtrust)."),
        policy: Optional[str] = typer.Option(
            None, "--policy",
            help="Scoring policy of the protocol: decodingtrust (DecodingTrust's formulas); codesign: answered "
                 "(metrics over items not refused, its default) or strict (refusals count as wrong)."),
        n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples over items for 95% CIs (0 = none)."),
        confidence: float = typer.Option(0.95, "--confidence", help="Confidence level of the bootstrap intervals."),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and of the validation split."),
        weighting: str = typer.Option(
            "none", "--weighting",
            help="none: the study's unweighted majority; accuracy: votes weigh each member's accuracy on a held-out "
                 "validation slice (numbers are then reported on the other items)."),
        val_fraction: float = typer.Option(0.3, "--val-fraction", help="Share of items held out for --weighting accuracy."),
        gated: bool = typer.Option(
            False, "--gated", help="Also report agreement-gated evaluation: cheapest members first, higher precisions "
                                   "only on disagreement, with the fraction of items that needed them."),
        gate_size: Optional[int] = typer.Option(
            None, "--gate-size", help="Members always run under --gated (default: the smallest majority)."),
        escalation: str = typer.Option(
            "unanimous", "--escalation", help="--gated rule: unanimous (escalate when the gate disagrees) or decisive "
                                              "(add members until the majority cannot change)."),
        all_subsets: bool = typer.Option(
            False, "--all-subsets", help="Also score every subset of the members (2^m-1 ensembles) per task."),
        subset_metric: str = typer.Option(
            "task", "--subset-metric", help="--all-subsets scoring: task (the task's own score()) or accuracy "
                                            "(vectorized, for large catalogues)."),
        top: int = typer.Option(10, "--top", help="Subsets shown per task with --all-subsets."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write the per-task ensemble rows to this CSV."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    ):
        """Score a precision ensemble of stored variants, per trust dimension, beside each member."""
        from codesign.store import ResultStore
        from codesign.vote.ensemble import (MODES, check_choice, resolve_members, score_ensemble,
                                            score_members, scoring)

        check_choice(mode, MODES, "mode")
        protocol, policy = scoring(protocol, policy)
        if not store.exists():
            raise ConfigError(f"--store: {store} does not exist (run `codesign eval --store {store}` first)")
        if top < 1:
            raise ConfigError(f"--top: {top} is not allowed (allowed: >= 1)")
        with ResultStore(store, readonly=True) as rs:  # voting only reads the store
            ids = resolve_members(rs, members, mode)
            df = score_ensemble(rs, ids, task, mode=mode, policy=policy, n_boot=n_boot, seed=seed,
                                confidence=confidence, weighting=weighting, val_fraction=val_fraction,
                                progress=progress and not as_json, protocol=protocol)
            names = {v: rs.variant_spec(v).short_name for v in ids}
            bits = dict(zip(ids, rs.variant_bits(ids).tolist()))
            gdf = None
            if gated:
                from codesign.vote.gating import gated_scores

                gdf = gated_scores(rs, ids, list(df["task"]), mode, policy, gate_size, escalation,
                                   protocol=protocol)
            subsets = {}
            if all_subsets:
                from codesign.vote.subsets import score_all_subsets

                for t in df["task"]:
                    subsets[t] = score_all_subsets(rs, ids, t, mode, policy, metric=subset_metric,
                                                   progress=progress and not as_json, protocol=protocol)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(out, index=False)
        if as_json:
            doc = {
                "store": str(store), "mode": mode, "protocol": protocol, "policy": policy, "weighting": weighting,
                "members": [{"variant_id": v, "name": names[v], "bits": bits[v]} for v in ids],
                "tasks": _jsonable(df.to_dict(orient="records")),
            }
            if gdf is not None:
                doc["gated"] = _jsonable(gdf.to_dict(orient="records"))
            if subsets:
                doc["subsets"] = {t: _jsonable(s.head(top).to_dict(orient="records")) for t, s in subsets.items()}
            typer.echo(json.dumps(doc, indent=2))
            return
        _print_tables(df, ids, names, bits, gdf, subsets, top, confidence, n_boot)


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
    table.add_row("best member", *[f"{names[r['best_member']]}: {_fmt(r['best_member_score'])}"
                                   for _, r in df.iterrows()])
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
