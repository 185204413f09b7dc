"""Files a study writes: the Pareto CSV, every point, the hypervolume trace, and one PNG.

Everything is read from the study's stored :class:`~codesign.records.StudyResult` and points
(tabulated by :mod:`codesign.explore.results`, as the report tabulates them).
"""

from __future__ import annotations

from pathlib import Path

from codesign import objectives
from codesign.explore.results import front_frame, hypervolume_frame, points_frame


def write_outputs(store, result, specs, out_dir: str | Path) -> list[Path]:
    """Write ``pareto.csv``, ``points.csv``, ``hypervolume.csv`` and ``pareto.png`` into ``out_dir``.

    Args:
        store: the result store holding the study's points.
        result: the study's :class:`~codesign.records.StudyResult`.
        specs: variant id -> :class:`~codesign.records.VariantSpec` (for ensemble labels).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = store.study_points(result.study)
    files = [out / "pareto.csv", out / "points.csv", out / "hypervolume.csv", out / "pareto.png"]
    front = front_frame(result, points, specs)
    front.to_csv(files[0], index=False)
    pts = points_frame(points, specs)
    pts.to_csv(files[1], index=False)
    hv = hypervolume_frame(result)
    hv.to_csv(files[2], index=False)
    _plot(result, pts, front, hv, files[3])
    return files


def _plot(result, pts, front, hv, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (y, _), (x, x_dir) = result.objectives[0], result.objectives[1]  # first objective up, second across
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    if not pts.empty and x in pts and y in pts:
        feas = pts["feasible"].to_numpy(bool)
        ax.scatter(pts.loc[~feas, x], pts.loc[~feas, y], s=10, c="#dddddd", label="infeasible")
        for method, grp in pts[feas].groupby("method"):
            ax.scatter(grp[x], grp[y], s=12, alpha=0.5, label=method)
        if not front.empty:
            f = front.sort_values(x)
            if f"{y}_low" in f:  # bootstrap interval of a quality objective (codesign.explore.uncertainty)
                yerr = [(f[y] - f[f"{y}_low"]).clip(lower=0), (f[f"{y}_high"] - f[y]).clip(lower=0)]
                ax.errorbar(f[x], f[y], yerr=yerr, fmt="none", c="k", lw=0.8, capsize=2,
                            label=f"{100 * result.bootstrap.level:g}% interval (item bootstrap)")
            ax.step(f[x], f[y], where="post" if x_dir == "min" else "pre", c="k", lw=1)
            ax.scatter(f[x], f[y], s=40, facecolors="none", edgecolors="k", label="Pareto front")
            for _, r in f.head(8).iterrows():
                ax.annotate(r["ensemble"], (r[x], r[y]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(objectives.label(x))
    ax.set_ylabel(objectives.label(y))
    ax.set_title(f"study {result.study}: {y} vs {x}")
    ax.legend(fontsize=7)
    ax = axes[1]
    if not hv.empty:
        for method, grp in hv[hv["method"] != "exhaustive"].groupby("method"):
            g = grp.groupby("n_evals")["hv"].mean()
            ax.plot(g.index, g.values, label=method)
        if result.reference_hv:
            ax.axhline(result.reference_hv, c="k", ls="--", lw=1, label="exhaustive front")
    ax.set_xlabel("configurations evaluated")
    ax.set_ylabel("hypervolume (" + ", ".join(result.objective_names) + ")")
    ax.set_title("hypervolume of the feasible front found")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
