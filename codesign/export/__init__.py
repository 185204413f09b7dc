"""Export: codesign's variants and precision ensembles as checkpoints serving stacks load.

:func:`export_target` writes one variant as a Hugging Face checkpoint folder in the AutoGPTQ or
AutoAWQ-GEMM layout (:mod:`codesign.export.formats`), or an ensemble as one such folder per member
plus ``ensemble.json``, the voting rule a client applies to the members' answers. Every check that
can fail (names, formats, zero points, group order, the output folder) runs before anything is
written, and the result appears at ``out`` only once complete (built in a temporary sibling).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from codesign.config import ConfigError
from codesign.export.formats import EXPORT_FORMATS, ExportFormat, get_format
from codesign.export.resolve import Member, resolve_target

MANIFEST = "ensemble.json"
MANIFEST_FORMAT = "codesign-ensemble/1"

__all__ = ["EXPORT_FORMATS", "ExportResult", "export_target", "get_format", "resolve_target"]


@dataclass
class ExportResult:
    out: Path
    folders: dict[str, Path]  # variant id -> checkpoint folder
    notes: list[str] = field(default_factory=list)


def check_out_dir(out: Path, force: bool, keep: list[Path]) -> None:
    """``out`` must be new or empty (any folder with ``force``), and hold none of ``keep`` (the
    variant cache, the store), which replacing it would delete."""
    out = Path(out)
    for k in keep:
        if k is not None and (out.resolve() == k.resolve() or out.resolve() in k.resolve().parents):
            raise ConfigError(f"--out: {out} holds {k}, which must not be replaced (allowed: a folder outside it)")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file (allowed: a new or empty folder, or any folder with --force)")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out: {out} is not empty (allowed: a new or empty folder; pass --force to replace it)")


def check_members(members: list[Member], fmt: ExportFormat) -> None:
    """Spec-level checks of every quantized member, all reported in one error."""
    problems = [f"{m.spec.short_name} ({m.spec.variant_id}): {p}" for m in members if not m.spec.is_dense
                for p in fmt.spec_problems(m.spec)]
    if problems:
        others = [f.name for f in EXPORT_FORMATS.values() if f is not fmt
                  and all(not f.spec_problems(m.spec) for m in members if not m.spec.is_dense)]
        hint = f"; formats that fit: {others}" if others else ""
        raise ConfigError(f"--format {fmt.name} cannot hold {'; '.join(problems)}{hint}")


def ensure_cached(members: list[Member], root: Path | None, progress: bool) -> list[Member]:
    """Members whose variant is not in the cache are quantized now (deterministic: same spec, same
    weights); imported variants that left the cache raise."""
    from codesign.quantize.variant import quantize_variant

    out = []
    for m in members:
        if m.spec.is_dense or m.entry is not None:
            out.append(m)
        else:
            out.append(Member(m.spec, quantize_variant(m.spec, out=root, progress=progress)))
    return out


def check_weights(members: list[Member], fmt: ExportFormat) -> None:
    """Checks on the stored grids (zero points, group order, shapes), member by member."""
    from codesign.export.checkpoint import stored_grids

    for m in members:
        if m.spec.is_dense:
            continue
        problems = fmt.weight_problems(stored_grids(m))
        if problems:
            raise ConfigError(f"--format {fmt.name} cannot hold {m.spec.short_name} ({m.spec.variant_id}): "
                              + "; ".join(problems))


def member_folders(members: list[Member]) -> dict[str, str]:
    """Folder name of each member: its short name, or its variant id where short names collide."""
    shorts = [m.spec.short_name for m in members]
    return {m.spec.variant_id: (m.spec.short_name if shorts.count(m.spec.short_name) == 1 else m.spec.variant_id)
            for m in members}


def manifest(members: list[Member], folders: dict[str, str], fmt: ExportFormat, store: Path | None) -> dict:
    """The voting rule of an ensemble, as :mod:`codesign.voting` applies it."""
    from codesign.records import INVALID, REFUSED
    from codesign.voting import tie_priority

    bits = [m.spec.bits for m in members]
    prio = tie_priority(bits)
    order = sorted(range(len(members)), key=lambda i: prio[i])
    return {
        "format": MANIFEST_FORMAT,
        "label": "+".join(m.spec.short_name for m in members),
        "model": members[0].spec.model,
        "members": [{"variant_id": m.spec.variant_id, "short_name": m.spec.short_name, "folder": folders[m.spec.variant_id],
                     "bits": m.spec.bits, "method": m.spec.method, "format": "float" if m.spec.is_dense else fmt.name,
                     "tie_priority": int(prio[i])} for i, m in enumerate(members)],
        "rule": {
            "name": "precision-ensemble majority vote",
            "outcome_codes": {"invalid": INVALID, "refused": REFUSED},
            "tie_order": [members[i].spec.variant_id for i in order],
            "refusal_is_label": refusal_subtasks(store),
            "steps": [
                "parse each member's answer into a label, INVALID (unparseable) or REFUSED (abstention)",
                "drop INVALID answers",
                "drop REFUSED answers, except on subtasks where abstaining is an answer (refusal_is_label), "
                "where REFUSED is a label of its own",
                "if no answer remains, the ensemble answers REFUSED if some member refused, else INVALID",
                "otherwise take the unweighted majority label",
                "on a tie, take the label of the highest-precision member among the tied labels' voters "
                "(equal precision: listed first), i.e. the first of tie_order that voted for a tied label",
            ],
            "implementation": "codesign.voting.precision_ensemble_vote",
        },
    }


def refusal_subtasks(store: Path | None) -> dict[str, dict[str, list[str]]] | str:
    """Per evaluation protocol and task, the stored subtasks whose REFUSED answers count as a label
    (task registry's ``keeps_refusal``); without a store, where to find the rule."""
    if store is None:
        return ("per protocol and task: codesign.evaluate.tasks.get_task(task, protocol=protocol)"
                ".keeps_refusal(subtask) (OOD knowledge)")
    from codesign.evaluate.tasks import get_task, task_names
    from codesign.store import ResultStore

    out: dict[str, dict[str, list[str]]] = {}
    with ResultStore(store, read_only=True) as st:
        for protocol in st.protocols():
            for task in st.tasks(protocol):
                if task in task_names(protocol):
                    subs = sorted(set(st.items(task, protocol)["subtask"]))
                    keep = [s for s in subs if get_task(task, protocol=protocol).keeps_refusal(s)]
                    if keep:
                        out.setdefault(protocol, {})[task] = keep
    return out


def _write_members(members: list[Member], folders: dict[str, str], fmt: ExportFormat, tmp: Path, dtype: str,
                   store: Path | None, n_boot: int) -> list[str]:
    """Every member's checkpoint (and README) under ``tmp``, plus an ensemble's manifest; returns notes."""
    from codesign.export import card
    from codesign.export.checkpoint import write_dense, write_quantized

    notes: list[str] = []
    for m in members:
        folder = tmp / folders[m.spec.variant_id]
        folder.mkdir(parents=True, exist_ok=True)
        if m.spec.is_dense:
            notes += write_dense(m, folder, dtype)
            continue
        record, member_notes = write_quantized(m, fmt, folder, dtype)
        notes += member_notes
        scores, why = card.trust_scores(store, [m.spec.variant_id], n_boot)
        (folder / "README.md").write_text(card.variant_card(m.spec, record, fmt.name, scores, why, member_notes))
    if len(members) > 1:
        man = manifest(members, folders, fmt, store)
        (tmp / MANIFEST).write_text(json.dumps(man, indent=2))
        scores, why = card.trust_scores(store, [m.spec.variant_id for m in members], n_boot)
        (tmp / "README.md").write_text(card.ensemble_card(man, scores, why))
    return notes


def export_target(target: str, fmt_name: str, out: str | Path, *, force: bool = False, store: str | Path | None = None,
                  root: str | Path | None = None, dtype: str = "float16", n_boot: int = 1000,
                  progress: bool = True) -> ExportResult:
    """Export a variant or an ensemble (see the module docstring); returns where things went."""
    from codesign.export.checkpoint import FLOAT_DTYPES
    from codesign.quantize import cache

    fmt = get_format(fmt_name)
    if dtype not in FLOAT_DTYPES:
        raise ConfigError(f"--dtype: {dtype!r} is not allowed (allowed: {list(FLOAT_DTYPES)})")
    out, store = Path(out), (Path(store) if store is not None else None)
    root = Path(root) if root is not None else None
    members = resolve_target(target, store, root)
    check_members(members, fmt)
    check_out_dir(out, force, [root or cache.default_root(), store])
    members = ensure_cached(members, root, progress)
    check_weights(members, fmt)

    folders = member_folders(members) if len(members) > 1 else {members[0].spec.variant_id: "."}
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write next to {out} ({exc.strerror}; allowed: a writable place)") from None
    try:
        notes = _write_members(members, folders, fmt, tmp, dtype, store, n_boot)
        if out.exists():
            shutil.rmtree(out)  # --force: the old folder goes only once the new one is complete
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(out, {vid: (out / f).resolve() for vid, f in folders.items()}, sorted(set(notes)))
