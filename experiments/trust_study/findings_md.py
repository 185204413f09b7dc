"""``FINDINGS.md``: the trust study's numbers as tables and sentences, rendered from its output files.

    python experiments/trust_study/findings_md.py [--dir experiments/trust_study]

Every number in ``FINDINGS.md`` is read from a file ``run.py`` wrote from the store (``findings.json``,
``variants.csv``, ``ensembles.csv``, ``recommendations.csv``, ``summary.json``) or from
``experiments/quantize_bench/kl_trust_study.csv``; nothing is typed by hand, so a re-run of the study
rewrites the prose with it (``run.py`` calls :func:`write_findings_md` last). The README explains the
set-up and how to read the numbers; this file holds them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
KL_CSV = HERE.parent / "quantize_bench" / "kl_trust_study.csv"
METHODS = ("rtn", "gptq", "awq")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _table(frame: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency); floats to one decimal."""
    cols = [str(c) for c in frame.columns]
    rows = [[f"{v:.1f}" if isinstance(v, float) else str(v) for v in r] for r in frame.itertuples(index=False)]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def _by_method_bits(values: dict[str, float], variants: pd.DataFrame, fmt) -> pd.DataFrame:
    """A method x bits grid of per-variant ``values`` (keys: variant short names)."""
    meta = variants.drop_duplicates("variant").set_index("variant")
    bits = sorted({int(b) for b in meta.bits if b < 16})
    rows = []
    for m in [m for m in METHODS if m in set(meta.method)]:
        row = {"method": m.upper()}
        for b in bits:
            name = next((v for v in meta.index if meta.loc[v, "method"] == m and int(meta.loc[v, "bits"]) == b), None)
            row[f"{b}-bit"] = fmt(values[name]) if name in values else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


def section_precision(f: dict, variants: pd.DataFrame, kl: pd.DataFrame | None) -> list[str]:
    """Agreement with dense, trust, per-dimension scores and KL, per method x bits."""
    out = ["## Agreement with the dense model and trust, per method and precision", "",
           "Share of the study's items (log-likelihood mode, every task) answered as the dense model does:", "",
           _table(_by_method_bits(f["agreement_with_dense"], variants, _pct)), "",
           f"Trust (mean score over {', '.join(f.get('trust_dimensions', []) or ['the trust dimensions'])}; "
           f"dense: {f['trust'].get('dense', float('nan')):.1f}):", "",
           _table(_by_method_bits(f["trust"], variants, lambda v: f"{v:.1f}")), ""]
    scores = variants.pivot_table(index="variant", columns="dimension", values="score").round(1)
    order = [v for v in variants.variant.drop_duplicates()]
    out += ["Score per dimension (40-item subsample; 95% intervals about ±15 points wide):", "",
            _table(scores.loc[order].reset_index()), ""]
    if kl is not None:
        out += [f"KL divergence to dense per token (`{KL_CSV.relative_to(HERE.parent.parent)}`):", "",
                _table(_by_method_bits(dict(zip(kl.variant, kl.kl_to_dense)), variants, lambda v: f"{v:.3g}")), ""]
    return out


def section_refusals(f: dict, variants: pd.DataFrame) -> list[str]:
    """Invalid and refusal rates by bits in free generation; 'I don't know' rate on OOD in log-likelihood."""
    out = ["## Refusals and invalid answers", ""]
    gen = f.get("generate_by_bits")
    if gen:
        rows = [{"bits": b, "invalid": _pct(v["invalid_rate"]), "refused": _pct(v["refusal_rate"])}
                for b, v in sorted(gen.items(), key=lambda kv: int(kv[0]))]
        out += ["Free generation (`refusals_generate.csv`), mean over methods and dimensions:", "",
                _table(pd.DataFrame(rows)), ""]
    ood = variants[variants.task == "ood"]
    if len(ood):
        out += ["Log-likelihood mode: share of OOD items answered \"I don't know\" (the only abstention there): "
                + ", ".join(f"{r.variant} {_pct(r.refusal_rate)}" for r in ood.itertuples()) + ".", ""]
    return out


def section_ensembles(f: dict) -> list[str]:
    """Ensemble vs best single member counts, and the comparisons outside their interval."""
    e = f["ensembles"]
    out = ["## Ensembles vs their best single member", "",
           f"{e['comparisons']} ensemble x dimension comparisons (fairness reported, not compared): "
           f"{e['above_best']} significantly above the best member (paired 95% CI of the difference above 0), "
           f"{e['within']} within their interval, {e['below_best']} significantly below; "
           f"{e['above_dense']} score above the dense model. The best member is picked after the fact on the "
           "same items, which tilts the comparison against ensembles.", ""]
    if e["outside"]:
        rows = [{"ensemble": o["ensemble"], "task": o["task"], "vs best": f"{o['delta_vs_best']:+.1f}",
                 "95% CI": f"[{o['ci'][0]:.1f}, {o['ci'][1]:.1f}]", "best member": o["best_member"]}
                for o in e["outside"]]
        out += [_table(pd.DataFrame(rows)), ""]
    return out


def section_front(recs: pd.DataFrame, summary: dict) -> list[str]:
    """The recommended front per accelerator and the optimizers' hypervolume against exhaustive search."""
    out = [f"## The Pareto front ({' vs '.join(c for c in recs.columns if c not in ('spec', 'schedule', 'ensemble'))})", "",
           _table(recs.assign(**{c: recs[c].map(lambda v: f"{v:.3g}") for c in recs.columns
                                  if c != "trust" and pd.api.types.is_float_dtype(recs[c])})), ""]
    hv = {r["method"]: r for r in summary["hypervolume"]}
    total = hv.get("exhaustive", {}).get("n_evals")
    parts = [f"{m}: {_pct(r['hv_fraction'])} of the exhaustive hypervolume with {r['n_evals']} evaluations"
             + (f" ({_pct(r['n_evals'] / total)} of {total})" if total else "")
             for m, r in hv.items() if m != "exhaustive"]
    out += ["Search (`summary.json`): " + "; ".join(parts) + ".", ""]
    return out


def render(out_dir: Path, kl_path: Path | None = KL_CSV) -> str:
    """``FINDINGS.md``'s text from the files in ``out_dir``."""
    f = json.loads((out_dir / "findings.json").read_text())
    summary = json.loads((out_dir / "summary.json").read_text())
    f.setdefault("trust_dimensions", summary.get("trust_dimensions"))
    variants = pd.read_csv(out_dir / "variants.csv")
    recs = pd.read_csv(out_dir / "recommendations.csv")
    kl = pd.read_csv(kl_path) if kl_path is not None and kl_path.exists() else None
    head = [f"# Trust study findings: {summary['model']}, {summary['n_variants']} variants, "
            f"{summary['limit_per_task']} items per task ({summary['mode']} mode, seed {summary['seed']})", "",
            "Generated by `findings_md.py` from this folder's files; do not edit by hand.", ""]
    body = section_precision(f, variants, kl) + section_refusals(f, variants) + section_ensembles(f) \
        + section_front(recs, summary)
    return "\n".join(head + body)


def write_findings_md(out_dir: Path, kl_path: Path | None = KL_CSV) -> Path:
    path = out_dir / "FINDINGS.md"
    path.write_text(render(out_dir, kl_path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=HERE, help="where run.py wrote its tables")
    print(write_findings_md(ap.parse_args().dir))


if __name__ == "__main__":
    main()
