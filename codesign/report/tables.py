"""Report tables: each a function ``ReportData -> pandas.DataFrame`` (empty when there is no data),
written as CSV (full precision, for scripts) and Markdown (rounded, for people) by :func:`write_table`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from codesign import objectives
from codesign.report.data import ReportData


@dataclass
class TableFiles:
    name: str
    title: str
    csv: Path
    md: Path
    frame: pd.DataFrame


def to_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency; numbers rounded to ``digits``)."""
    def cell(v) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |",
             "| " + " | ".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, out_dir: Path, name: str, title: str) -> TableFiles:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv, index=False)
    md.write_text(f"# {title}\n\n" + to_markdown(df))
    return TableFiles(name, title, csv, md, df)


# -- the tables -----------------------------------------------------------------------------

def variant_table(data: ReportData) -> pd.DataFrame:
    """One row per variant: score and refusal rate per dimension, and the trust score."""
    if data.scores.empty:
        return pd.DataFrame()
    s = data.scores.merge(data.variants[["variant_id", "label", "method", "bits", "group_size", "is_dense"]],
                          on="variant_id")
    wide = s.pivot_table(index="variant_id", columns="task", values=["score", "refusal_rate"])
    out = data.variants.set_index("variant_id")[["label", "method", "bits", "group_size"]].loc[wide.index].copy()
    trust_cols = []
    for t in data.tasks:
        if ("score", t) in wide:
            out[f"{t} score (%)"] = wide[("score", t)]
            if t in data.trust_tasks:
                trust_cols.append(f"{t} score (%)")
        if ("refusal_rate", t) in wide:
            out[f"{t} refusal (%)"] = wide[("refusal_rate", t)] * 100
    if trust_cols:  # the study's trust dimensions (objectives.trust_score over the tasks scored)
        out["trust (%)"] = out[trust_cols].mean(axis=1)
    out = out.reset_index().rename(columns={"label": "variant"})
    dense_first = out["method"].eq("dense").map({True: 0, False: 1})
    return out.assign(_o=dense_first).sort_values(["_o", "method", "bits", "group_size"]).drop(columns="_o")


def ensemble_table(data: ReportData) -> pd.DataFrame:
    """Ensemble vs best single precision vs dense per dimension (the study's Figure 3 as numbers)."""
    if data.ensembles.empty:
        return pd.DataFrame()
    e = data.ensembles.assign(kind=data.ensembles["kind"] + " (%)")
    wide = e.pivot_table(index=["ensemble", "task"], columns="kind", values="score")
    wide.columns = list(wide.columns)
    ens = e[e["kind"] == "ensemble (%)"].set_index(["ensemble", "task"])
    wide = wide.join(ens[["ci_low", "ci_high"]].rename(columns={"ci_low": "ensemble CI low",
                                                                 "ci_high": "ensemble CI high"}))
    best = e[e["kind"] == "best single (%)"].set_index(["ensemble", "task"])["variant"]
    wide["best single variant"] = best
    if {"ensemble (%)", "best single (%)"} <= set(wide.columns):
        wide["ensemble - best single"] = wide["ensemble (%)"] - wide["best single (%)"]
    if {"ensemble (%)", "dense (%)"} <= set(wide.columns):
        wide["ensemble - dense"] = wide["ensemble (%)"] - wide["dense (%)"]
    wide = wide.reset_index()
    order = {t: i for i, t in enumerate(data.tasks)}
    first = {e: i for i, e in enumerate(dict.fromkeys(data.ensembles["ensemble"]))}
    wide = wide.assign(_e=wide["ensemble"].map(first), _o=wide["task"].map(order)).sort_values(["_e", "_o"])
    wide = wide.drop(columns=["_e", "_o"])
    wide.insert(1, "dimension", wide.pop("task").map(lambda t: data.dimensions.get(t, t)))
    cols = ["ensemble", "dimension"] + [c for c in ("dense (%)", "best single (%)", "best single variant",
                                                   "ensemble (%)", "ensemble CI low", "ensemble CI high",
                                                   "ensemble - best single", "ensemble - dense")
                                        if c in wide.columns]
    return wide[cols].reset_index(drop=True)


def _configurations(data: ReportData, df: pd.DataFrame) -> pd.DataFrame:
    """Rows of :mod:`codesign.explore.results` frames as the report shows configurations."""
    objs = objectives.order(data.objectives)
    out = pd.DataFrame({"configuration": df["configuration"], "schedule": df["schedule"], "members": df["n_members"]})
    for o in objs:
        out[o] = df[o] if o in df else np.nan
        if f"{o}_low" in df:  # the paired item bootstrap's interval (codesign.explore.uncertainty)
            r = data.study.result if data.study is not None else None
            level = f"{100 * r.bootstrap.level:g}% " if r is not None and r.bootstrap is not None else ""
            out[f"{o} {level}interval"] = [f"[{lo:.1f}, {hi:.1f}]" if pd.notna(lo) else ""
                                        for lo, hi in zip(df[f"{o}_low"], df[f"{o}_high"])]
    if "p_pareto" in df:
        out["P(on front)"] = df["p_pareto"].to_numpy()
    out["spec"] = df["spec"]
    knobs = [c for c in df.columns if c.startswith("knob_")]
    if knobs:
        out["knobs"] = [", ".join(f"{k[5:]}={v:.4g}" for k, v in r.items() if pd.notna(v))
                        for r in df[knobs].to_dict("records")]
    out["found by"] = df["found_by"] if "found_by" in df else df["method"]
    out["variant ids"] = df["members"]
    return out.reset_index(drop=True)


def pareto_table(data: ReportData) -> pd.DataFrame:
    """The study's stored Pareto front (feasible, all objectives), best in the first objective first."""
    if data.front.empty:
        return pd.DataFrame()
    return _configurations(data, data.front)


def recommendation_table(data: ReportData) -> pd.DataFrame:
    """The study's stored recommendations."""
    if data.recommendations.empty:
        return pd.DataFrame()
    out = _configurations(data, data.recommendations)
    out.insert(0, "recommended as", data.recommendations["role"].to_numpy())
    if "alternatives" in data.recommendations:
        out["statistically indistinguishable alternatives"] = [
            _short_list(a) for a in data.recommendations["alternatives"]]
    return out


def _short_list(joined: str, n: int = 3) -> str:
    parts = [p for p in str(joined).split("; ") if p]
    if not parts:
        return "none"
    return "; ".join(parts[:n]) + (f"; +{len(parts) - n} more" if len(parts) > n else "")


def hv_table(data: ReportData) -> pd.DataFrame:
    """Final hypervolume per optimizer (the stored trace's last step of each seed): mean and spread over
    seeds, and configurations evaluated."""
    if data.hv.empty:
        return pd.DataFrame()
    last = data.hv.loc[data.hv.groupby(["method", "seed"])["n_evals"].idxmax()]
    g = last.groupby("method")
    out = pd.DataFrame({"seeds": g["seed"].nunique(), "iterations": data.hv.groupby("method")["iteration"].nunique(),
                        "points evaluated (mean)": g["n_evals"].mean(), "final HV (mean)": g["hv"].mean(),
                        "final HV (min)": g["hv"].min(), "final HV (max)": g["hv"].max()}).reset_index()
    best = out["final HV (mean)"].max()
    out["% of best"] = 100 * out["final HV (mean)"] / best if best > 0 else np.nan
    return out.sort_values("final HV (mean)", ascending=False)


def latency_table(data: ReportData) -> pd.DataFrame:
    if data.latency.empty:
        return pd.DataFrame()
    d = data.latency
    cols = {"model": "model", "variant": "variant", "wbits": "wbits", "dtype": "dtype", "device_name": "device",
            "spec": "spec", "batch": "batch", "prompt_len": "prompt", "gen_len": "gen",
            "prefill_ms": "prefill measured (ms)", "predicted_prefill_ms": "prefill predicted (ms)",
            "tpot_ms": "TPOT measured (ms)", "predicted_tpot_ms": "TPOT predicted (ms)"}
    out = d[[c for c in cols if c in d.columns]].rename(columns=cols)
    if {"TPOT measured (ms)", "TPOT predicted (ms)"} <= set(out.columns):
        out["TPOT error (%)"] = 100 * (out["TPOT predicted (ms)"] / out["TPOT measured (ms)"] - 1)
    return out


def roofline_table(data: ReportData) -> pd.DataFrame:
    if data.roofline.empty:
        return pd.DataFrame()
    cols = [c for c in ("bits", "phase", "op", "dtype", "flops", "bytes", "intensity", "attained_flops", "bound")
            if c in data.roofline.columns]
    return data.roofline[cols].rename(columns={"intensity": "intensity (FLOP/byte)",
                                               "attained_flops": "attained (FLOP/s)"})


#: name -> (title, builder), in report order
ALL_TABLES = {
    "recommendations": ("Recommended configurations", recommendation_table),
    "pareto_front": ("Pareto-optimal configurations", pareto_table),
    "variant_scores": ("Per-variant scores", variant_table),
    "ensembles": ("Ensemble vs best single precision vs dense", ensemble_table),
    "roofline_ops": ("Operators on the roofline", roofline_table),
    "latency": ("Predicted vs measured latency", latency_table),
    "optimizer_hv": ("Final hypervolume per optimizer", hv_table),
}
