"""Files a study writes: the Pareto CSV, every point, the hypervolume trace, and one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

_LABELS = {"trust": "trust (mean of dimensions, 0-100)", "mmlu": "MMLU accuracy (%)", "tpot_ms": "time per token (ms)",
           "peak_memory_gb": "peak memory (GB)", "energy_per_token_j": "energy per token (J)", "area_mm2": "area (mm²)"}


def points_frame(result, members: dict[str, str]) -> pd.DataFrame:
    """Every stored point flattened: method, seed, iteration, ensemble, schedule, spec, knobs, objectives."""
    rows = []
    for _, p in result.points.iterrows():
        c = p["config"]
        rows.append(dict(method=p["method"], seed=p["seed"], point_id=p["point_id"], iteration=p["iteration"],
                         ensemble="+".join(members.get(m, m) for m in c["members"]), schedule=c["schedule"],
                         spec=c["spec"], **{f"knob_{k}": v for k, v in c["knobs"].items()}, **p["objectives"],
                         feasible=bool(p["feasible"])))
    return pd.DataFrame(rows)


def write_outputs(ctx, result, out_dir: str | Path) -> list[Path]:
    """Write ``pareto.csv``, ``points.csv``, ``hypervolume.csv`` and ``pareto.png`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    short = {m.variant_id: m.short_name for m in ctx.members}
    files = [out / "pareto.csv", out / "points.csv", out / "hypervolume.csv", out / "pareto.png"]
    result.pareto.to_csv(files[0], index=False)
    pts = points_frame(result, short)
    pts.to_csv(files[1], index=False)
    result.hv.to_csv(files[2], index=False)

    objs = ctx.cfg.objectives
    x, y = objs[1].name, objs[0].name  # first objective (usually trust) up, second (usually a cost) across
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    if not pts.empty and x in pts and y in pts:
        feas = pts["feasible"].to_numpy(bool)
        ax.scatter(pts.loc[~feas, x], pts.loc[~feas, y], s=10, c="#dddddd", label="infeasible")
        for method, grp in pts[feas].groupby("method"):
            ax.scatter(grp[x], grp[y], s=12, alpha=0.5, label=method)
        if not result.pareto.empty:
            front = result.pareto.sort_values(x)
            ax.step(front[x], front[y], where="post" if objs[1].direction == "min" else "pre", c="k", lw=1)
            ax.scatter(front[x], front[y], s=40, facecolors="none", edgecolors="k", label="Pareto front")
            for _, r in front.head(8).iterrows():
                ax.annotate(r["ensemble"], (r[x], r[y]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(_LABELS.get(x, x))
    ax.set_ylabel(_LABELS.get(y, y))
    ax.set_title(f"study {result.name}: {y} vs {x}")
    ax.legend(fontsize=7)
    ax = axes[1]
    hv = result.hv
    if not hv.empty:
        for method, grp in hv[hv["method"] != "exhaustive"].groupby("method"):
            g = grp.groupby("n_evals")["hv"].mean()
            ax.plot(g.index, g.values, label=method)
        if result.reference_hv:
            ax.axhline(result.reference_hv, c="k", ls="--", lw=1, label="exhaustive front")
    ax.set_xlabel("configurations evaluated")
    ax.set_ylabel("hypervolume (" + ", ".join(o.name for o in objs) + ")")
    ax.set_title("hypervolume of the feasible front found")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(files[3], dpi=120)
    plt.close(fig)
    return files


def describe_front(ctx, result, max_rows: int = 12) -> str:
    """A plain-text table of the Pareto front for the terminal."""
    if result.pareto.empty:
        return "no feasible configuration found"
    cols = ["ensemble", "schedule", "spec"] + [o.name for o in ctx.cfg.objectives]
    df = result.pareto[[c for c in cols if c in result.pareto]].head(max_rows).copy()
    for o in ctx.cfg.objectives:
        if o.name in df:
            df[o.name] = df[o.name].map(lambda v: f"{v:.4g}" if isinstance(v, (float, np.floating)) else v)
    return df.to_string(index=False)

