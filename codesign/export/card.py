"""The README written beside an exported checkpoint: where the weights came from (variant spec,
calibration, per-layer error), their trust scores when a result store has them, how to load and
serve them. Plain Markdown tables that read at 80 columns."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from codesign.config import ConfigError
from codesign.records import VariantSpec

N_WORST = 5  # layers listed by reconstruction error


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def trust_scores(store: Path | None, members: list[str], n_boot: int) -> tuple[Any, str]:
    """``(frame, note)``: :func:`codesign.vote.ensemble.score_ensemble` rows of ``members`` voting
    (one member: that variant alone) with bootstrap intervals, under the first evaluation protocol
    with answers from every member (the default protocol first), from generated answers or else
    log-likelihood ones, scored with the protocol's own policy; ``(None, why not)`` when the store
    has none."""
    if store is None:
        return None, "No result store was given (`--store`), so no trust scores are listed."
    from codesign.evaluate.protocols import get_protocol
    from codesign.records import DEFAULT_PROTOCOL
    from codesign.store import ResultStore
    from codesign.vote.ensemble import MODES, score_ensemble

    why = []
    with ResultStore(store, read_only=True) as st:
        for protocol in sorted(st.protocols(), key=lambda p: p != DEFAULT_PROTOCOL):
            for mode in MODES:
                try:
                    frame = score_ensemble(st, members, mode=mode, n_boot=n_boot, seed=0, protocol=protocol)
                    return frame, (f"Answers: {protocol} protocol ({get_protocol(protocol).default_policy} "
                                   f"policy), {mode} mode.")
                except ConfigError as exc:
                    why.append(str(exc))
    return None, "No trust scores: " + (" / ".join(why) or f"{store} holds no answers.")


def scores_table(frame, with_delta: bool) -> str:
    """Markdown table of per-task scores (0-100) with 95% bootstrap intervals."""
    head = "| dimension | task | n | score | 95% CI | refusal | invalid |"
    rule = "|---|---|---:|---:|---|---:|---:|"
    if with_delta:
        head += " vs best member (95% CI) |"
        rule += "---|"
    lines = [head, rule]
    for r in frame.to_dict("records"):
        line = (f"| {r['dimension']} | {r['task']} | {r['n']} | {_fmt(r['score'])} | "
                f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {_fmt(100 * r['refusal_rate'])}% | "
                f"{_fmt(100 * r['invalid_rate'])}% |")
        if with_delta:
            line += f" {r['delta_vs_best']:+.1f} [{_fmt(r['delta_ci_low'])}, {_fmt(r['delta_ci_high'])}] |"
        lines.append(line)
    return "\n".join(lines)


def _provenance(spec: VariantSpec, record: dict) -> list[str]:
    calib = record.get("calibration") or {}
    rows = [("variant id", spec.variant_id), ("base model", spec.model), ("method", spec.method),
            ("bits", spec.bits), ("group size", "per channel" if spec.group_size == -1 else spec.group_size),
            ("grid", "symmetric" if spec.sym else "asymmetric"), ("seed", spec.seed),
            ("method options", ", ".join(f"{k}={v}" for k, v in spec.extra) or "defaults"),
            ("calibration", ", ".join(f"{k}={v}" for k, v in calib.items()) or spec.calib),
            ("quantization time", f"{record.get('seconds', 0.0):.1f} s"),
            ("versions", ", ".join(f"{k} {v}" for k, v in (record.get("versions") or {}).items()) or "n/a")]
    if record.get("imported_from"):
        rows.append(("imported from", record["imported_from"]))
    return ["| field | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def _layer_errors(record: dict) -> list[str]:
    errors = record.get("errors") or {}
    if not errors:
        return ["No per-layer errors were recorded (imported checkpoint)."]
    worst = sorted(errors.items(), key=lambda kv: -kv[1])[:N_WORST]
    vals = list(errors.values())
    out = [f"Metric: {record.get('error_metric', 'relative reconstruction error')}.",
           f"Mean over {len(vals)} linears {sum(vals) / len(vals):.3e}, max {max(vals):.3e}. "
           f"The {len(worst)} largest:", "", "| linear | error |", "|---|---:|"]
    return out + [f"| {n} | {e:.3e} |" for n, e in worst]


def variant_card(spec: VariantSpec, record: dict, fmt_name: str, scores, note: str,
                 serving_notes: list[str]) -> str:
    """README of one exported variant."""
    name = spec.short_name
    lines = [f"# {name}: {spec.model} quantized by codesign", "",
             f"Exported by `codesign export` in the `{fmt_name}` format. The dequantized weights are "
             "bit-identical to the variant codesign evaluated.", "", "## Provenance", "",
             *_provenance(spec, record), "", "## Per-layer reconstruction error", "", *_layer_errors(record), "",
             "## Trust scores", ""]
    lines += [scores_table(scores, with_delta=False), "", f"Scores 0-100 from the result store's answers. {note} "
              "Intervals: bootstrap over items, stratified by subtask."] if scores is not None else [note]
    lines += ["", *serving_section(serving_notes)]
    return "\n".join(lines) + "\n"


def serving_section(notes: list[str]) -> list[str]:
    out = ["## Load and serve", "", "vLLM reads the quantization method from `config.json`:", "", "```bash",
           "vllm serve . --dtype float16", "```", "",
           "```python", "from transformers import AutoModelForCausalLM  # needs gptqmodel installed",
           'model = AutoModelForCausalLM.from_pretrained(".", device_map="auto")', "```"]
    return out + (["", *(f"Note: {n}" for n in notes)] if notes else [])


def ensemble_card(manifest: dict, scores, note: str) -> str:
    """README of an exported ensemble: members, the voting rule, and its scores."""
    rule = manifest["rule"]
    lines = [f"# Precision ensemble: {manifest['label']}", "",
             "Exported by `codesign export`. Each member is a self-contained checkpoint in its folder; "
             "`ensemble.json` holds the voting rule for a client that queries every member.", "",
             "| member | folder | bits | tie priority |", "|---|---|---:|---:|"]
    for m in manifest["members"]:
        lines.append(f"| {m['short_name']} | {m['folder']}/ | {m['bits']} | {m['tie_priority']} |")
    lines += ["", "## Voting rule", "", *(f"{i}. {step}" for i, step in enumerate(rule["steps"], 1)), "",
              "## Trust scores of the ensemble", ""]
    lines += [scores_table(scores, with_delta=True), "", "Scores 0-100 from the members' stored answers voted "
              f"with the rule above. {note} Intervals: bootstrap over items, stratified by subtask."] \
        if scores is not None else [note]
    lines += ["", "## Serve", "", "Start one server per member, e.g.", "", "```bash"]
    for i, m in enumerate(manifest["members"]):
        lines.append(f"vllm serve {m['folder']} --dtype float16 --port {8000 + i} &")
    lines += ["```", "", "then send each prompt to every member and vote on the parsed answers with "
              "`codesign.voting.precision_ensemble_vote(labels, bits, keep_refusal)` "
              "(bits and tie order as in `ensemble.json`)."]
    return "\n".join(lines) + "\n"
