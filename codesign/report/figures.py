"""Report figures, each a function ``ReportData -> FigureFiles | None`` (None: no data for it).

- :func:`pareto_fronts`   trust vs time per output token / vs peak memory, dominated points faded,
  pairwise projections for 3+ objectives
- :func:`dimension_scores` per-dimension accuracy and refusal rate of every variant and the dense model
- :func:`ensemble_vs_single` ensemble vs best single precision vs dense, per dimension
- :func:`roofline`        operators of each precision's prefill and decode on the spec's roofline
- :func:`latency_check`   hardware-model prediction vs measured latency
- :func:`optimizer_trace` hypervolume per iteration for BO and the baselines
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from codesign.explore.results import primary_objective
from codesign.objectives import compared_with_members
from codesign.objectives import label as objective_label
from codesign.pareto import pareto_mask, to_maximization
from codesign.report import style
from codesign.report.data import ReportData
from codesign.report.style import FigureFiles, figure_style, new_figure, save_figure

#: Pareto points numbered and named in a key beside the plot (the rest: hover text in the SVG).
MAX_KEYED = 20

_SIZE_COLORS = ["#0072B2", "#009E73", "#E69F00", "#D55E00", "#CC79A7", "#56B4E9"]


def _size_color(n: int) -> str:
    return _SIZE_COLORS[min(max(n, 1), len(_SIZE_COLORS)) - 1]


def place_labels(ax, xs, ys, texts, *, fontsize: float = 7.5, color: str = "#333333", avoid=None) -> None:
    """Annotate points without labels overlapping each other: for each point (in order) try a ring
    of offsets and keep the first whose text box is free. Labels that find no room are skipped
    (they remain as hover text in the SVG)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    from matplotlib.transforms import Bbox

    taken = []
    if avoid is not None:  # keep labels off the highlighted markers themselves
        for px, py in ax.transData.transform(np.asarray(avoid, dtype=float).reshape(-1, 2)):
            taken.append(Bbox.from_extents(px - 5, py - 5, px + 5, py + 5))
    axbox = ax.get_window_extent(renderer)
    offsets = [(6, 4), (6, -10), (-6, 4), (-6, -10), (8, 12), (8, -18), (-8, 12), (-8, -18), (14, 0), (-14, 0),
               (0, 16), (0, -20), (18, 22), (18, -28), (-18, 22), (-18, -28), (30, 6), (-30, 6), (24, 34),
               (-24, 34), (24, -40), (-24, -40)]
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    for (px, py), text in zip(pts, texts):
        for dx, dy in offsets:
            far = abs(dx) > 8 or abs(dy) > 12  # a label moved away from its point gets a leader line
            ann = ax.annotate(text, ax.transData.inverted().transform((px, py)), fontsize=fontsize, color=color,
                              xytext=(dx, dy), textcoords="offset points",
                              ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top",
                              arrowprops=dict(arrowstyle="-", color="#999999", lw=0.6, shrinkA=1, shrinkB=4)
                              if far else None)
            bb = ann.get_window_extent(renderer).expanded(1.05, 1.15)
            inside = axbox.x0 - 40 <= bb.x0 and bb.x1 <= axbox.x1 + 40 and axbox.y0 <= bb.y0 and bb.y1 <= axbox.y1 + 8
            if inside and not any(bb.overlaps(t) for t in taken):
                taken.append(bb)
                break
            ann.remove()


def _log_if_wide(ax, values, axis: str) -> None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) and v.max() / v.min() > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


# -- Pareto fronts --------------------------------------------------------------------------

def _values(pts: pd.DataFrame, names: list[str]) -> np.ndarray:
    """``(n, len(names))`` objective columns of a points frame (NaN where absent)."""
    return np.column_stack([pts[n].astype(float).to_numpy() if n in pts else np.full(len(pts), np.nan)
                            for n in names]) if len(names) else np.zeros((len(pts), 0))


def pareto_fronts(data: ReportData, out_dir: Path) -> list[FigureFiles]:
    """The primary objective (trust) vs each other objective, one figure per pair."""
    if data.points.empty or len(data.objectives) < 2:
        return []
    objs = list(zip(data.objectives, data.directions))
    y = primary_objective(objs)
    others = [j for j in range(len(objs)) if j != y]
    figs = [_pareto_pair(data.points, objs[j], objs[y], out_dir, data) for j in others[:4]]
    return [f for f in figs if f is not None]


def _interval_bars(ax, pts: pd.DataFrame, x_name: str, y_name: str, vals: np.ndarray, front: np.ndarray,
                   feas: np.ndarray) -> None:
    """Bootstrap interval bars (explore's stored ``<objective>_low/_high``) on every feasible point:
    dark on the front, faint elsewhere."""
    err = []
    for j, name in enumerate((x_name, y_name)):
        if f"{name}_low" in pts:
            lo, hi = pts[f"{name}_low"].to_numpy(float), pts[f"{name}_high"].to_numpy(float)
            e = np.stack([np.clip(vals[:, j] - lo, 0, None), np.clip(hi - vals[:, j], 0, None)])
            err.append(np.where(np.isfinite(e), e, 0.0))
        else:
            err.append(None)
    if err[0] is None and err[1] is None:
        return
    for sel, kw in ((feas & ~front, dict(color="#BBBBBB", alpha=0.5, lw=0.6, zorder=1)),
                    (front, dict(color="#333333", lw=0.9, capsize=2, zorder=3))):
        if sel.any():
            ax.errorbar(vals[sel, 0], vals[sel, 1], xerr=None if err[0] is None else err[0][:, sel],
                        yerr=None if err[1] is None else err[1][:, sel], fmt="none", **kw)


def _pareto_pair(pts: pd.DataFrame, x_obj: tuple[str, str], y_obj: tuple[str, str], out_dir: Path,
                 data: ReportData) -> FigureFiles | None:
    (x_name, x_dir), (y_name, y_dir) = x_obj, y_obj
    vals = _values(pts, [x_name, y_name])
    ok = np.isfinite(vals).all(axis=1)
    if ok.sum() == 0:
        return None
    pts, vals = pts[ok].reset_index(drop=True), vals[ok]
    feas = pts["feasible"].to_numpy(bool)
    Y = to_maximization(vals, [x_dir, y_dir])
    front = np.zeros(len(pts), bool)
    front[np.flatnonzero(feas)] = pareto_mask(Y[feas])
    tips: dict[str, str] = {}
    with figure_style():
        fig, axes = new_figure(width=7.6, height=4.8)
        ax = axes[0, 0]
        for i, r in pts.iterrows():
            sched = r["schedule"] if r["n_members"] > 1 else "single"
            marker = style.SCHEDULE_MARKERS.get(sched, "o")
            if not feas[i]:
                kw = dict(color=style.INFEASIBLE_COLOR, marker="x", s=22, zorder=1, linewidths=1.0)
            elif front[i]:
                kw = dict(color=_size_color(r["n_members"]), marker=marker, s=46, zorder=4, edgecolors="black",
                          linewidths=0.7)
            else:
                kw = dict(color=_size_color(r["n_members"]), marker=marker, s=26, zorder=2, alpha=0.25,
                          linewidths=0)
            sc = ax.scatter([vals[i, 0]], [vals[i, 1]], **kw)
            gid = f"pt-{x_name}-{i}"
            sc.set_gid(gid)
            status = "Pareto-optimal" if front[i] else ("infeasible" if not feas[i] else "dominated")
            knobs = ", ".join(f"{k[5:]}={r[k]:.4g}" for k in pts.columns if k.startswith("knob_") and pd.notna(r[k]))
            sure = "".join(f" [{r[f'{n}_low']:.1f}, {r[f'{n}_high']:.1f}]" if pd.notna(r.get(f"{n}_low")) else ""
                           for n in (y_name,))
            prob = f"; P(on front) = {r['p_pareto']:.2f}" if pd.notna(r.get("p_pareto")) else ""
            tips[gid] = (f"{r['configuration']}\n{objective_label(y_name)} = {vals[i, 1]:.4g}{sure}\n"
                         f"{objective_label(x_name)} = {vals[i, 0]:.4g}\n" + (f"knobs: {knobs}\n" if knobs else "")
                         + f"{status}{prob}; found by {r['found_by']}")
        _interval_bars(ax, pts, x_name, y_name, vals, front, feas)
        if front.any():
            f = np.flatnonzero(front)
            f = f[np.argsort(vals[f, 0])]
            ax.step(vals[f, 0], vals[f, 1], where="post", color=style.FRONT_COLOR, lw=1.2, alpha=0.8, zorder=3)
        _log_if_wide(ax, vals[:, 0], "x")
        ax.set_xlabel(objective_label(x_name) + ("  (log scale)" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel(objective_label(y_name))
        ax.set_title(f"{y_name.capitalize()} vs {objective_label(x_name).split(' (')[0].lower()}")
        xlo, xhi = ax.get_xlim()
        ylo, yhi = ax.get_ylim()
        outside = []
        for objective, op, bound in data.constraints:
            text = f"{objective} {op} {bound:g}"
            # a bound beyond every point would squash the data into a corner: state it instead
            if objective == x_name and xlo < bound < xhi:
                ax.axvline(bound, color="#999999", ls="--", lw=1)
                ax.axvspan(bound if op == "<=" else xlo, xhi if op == "<=" else bound, color="#999999",
                           alpha=0.08, lw=0)
                ax.annotate(f"constraint {text}", (bound, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                            fontsize=7, color="#777777", ha="right", va="bottom")
            elif objective == y_name and ylo < bound < yhi:
                ax.axhline(bound, color="#999999", ls="--", lw=1)
                ax.annotate(f"constraint {text}", (0.99, bound), xycoords=("axes fraction", "data"),
                            fontsize=7, color="#777777", ha="right", va="bottom")
            elif objective in (x_name, y_name):
                outside.append(text)
        ax.set_xlim(xlo, xhi)
        ax.set_ylim(ylo, yhi)
        if outside:
            ax.text(0.99, 0.01, "every point meets " + ", ".join(outside), transform=ax.transAxes, ha="right",
                    va="bottom", fontsize=7, color="#777777")
        # legend: colour = ensemble size, shape = schedule, faded = dominated
        from matplotlib.lines import Line2D

        handles = []
        for n in sorted(set(pts["n_members"])):
            handles.append(Line2D([], [], ls="", marker=style.SCHEDULE_MARKERS["single"] if n == 1 else "o",
                                  markersize=8 if n == 1 else 6, color=_size_color(n),
                                  label="single variant" if n == 1 else f"{n}-member ensemble"))
        for s in sorted({r for r, n in zip(pts["schedule"], pts["n_members"]) if n > 1}):
            handles.append(Line2D([], [], ls="", marker=style.SCHEDULE_MARKERS.get(s, "o"), color="#555555",
                                  label=f"schedule: {s}"))
        handles.append(Line2D([], [], ls="-", color=style.FRONT_COLOR, label="Pareto front"))
        handles.append(Line2D([], [], ls="", marker="o", color="#999999", alpha=0.3, label="dominated"))
        if (~feas).any():
            handles.append(Line2D([], [], ls="", marker="x", color="#AAAAAA", label="infeasible"))
        enc = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        ax.add_artist(enc)
        # Pareto points carry a number; the key beside the plot names each one's ensemble and schedule
        # (long ensemble names written into the plot would cover the points they label)
        f = np.flatnonzero(front)
        f = f[np.argsort(vals[f, 0])][:MAX_KEYED]
        place_labels(ax, vals[f, 0], vals[f, 1], [str(k + 1) for k in range(len(f))], avoid=vals[f],
                     fontsize=8, color="#000000")
        key = [Line2D([], [], ls="", marker=f"${k + 1}$", markersize=7 if k < 9 else 9, color="black",
                      label=pts.loc[i, "configuration"]) for k, i in enumerate(f)]
        if key:
            ax.legend(handles=key, loc="upper left", bbox_to_anchor=(1.01, 0.56 if len(handles) > 6 else 0.66),
                      borderaxespad=0, title="Pareto front", title_fontsize=8.5, alignment="left",
                      handletextpad=0.6, labelspacing=0.35)
        name = f"pareto_{y_name}_vs_{x_name}"
        return save_figure(fig, out_dir, name, f"{y_name.capitalize()} vs {objective_label(x_name)}",
                           caption=f"Every configuration the study evaluated ({len(pts)} distinct). Pareto-optimal "
                                   "points (in this projection) are solid and numbered, the key names their ensemble "
                                   "and schedule; dominated points are faded. Bars: the interval of the quality objectives from a "
                                   "paired bootstrap over the benchmark items (when the study stored one). Hover any "
                                   "point for its ensemble, schedule, objectives and probability of being on the front.",
                           inline_svg=True, tooltips=tips)


def pairwise_projections(data: ReportData, out_dir: Path) -> FigureFiles | None:
    """For 3+ objectives: every pair of objectives, highlighting the full-dimensional Pareto set."""
    objs = data.objectives
    if data.points.empty or len(objs) < 3:
        return None
    pts = data.points
    vals = _values(pts, objs)
    # the study's own front (stored by explore), not one recomputed here
    key = ["method", "seed", "point_id"]
    on_front = set(map(tuple, data.front[key].to_numpy().tolist())) if not data.front.empty else set()
    front = np.array([tuple(k) in on_front for k in pts[key].to_numpy().tolist()], dtype=bool)
    pairs = list(combinations(range(len(objs)), 2))
    ncols = min(3, len(pairs))
    nrows = int(np.ceil(len(pairs) / ncols))
    with figure_style():
        fig, axes = new_figure(ncols, nrows, width=4.0 * ncols, height=3.4 * nrows)
        for k, (a, b) in enumerate(pairs):
            ax = axes[k // ncols, k % ncols]
            # x: a cost if there is one in the pair, so "better" reads up-and-left like the main fronts
            dirs = data.directions
            xi, yi = (a, b) if dirs[a] == "min" or dirs[b] == "max" else (b, a)
            ax.scatter(vals[~front, xi], vals[~front, yi], s=16, color=style.FADED_COLOR, alpha=0.6,
                       label="dominated / infeasible")
            ax.scatter(vals[front, xi], vals[front, yi], s=30, color=style.FRONT_COLOR, edgecolors="black",
                       linewidths=0.6, label=f"Pareto set ({len(objs)} objectives)")
            _log_if_wide(ax, vals[:, xi], "x")
            ax.set_xlabel(objective_label(objs[xi]))
            ax.set_ylabel(objective_label(objs[yi]))
        for k in range(len(pairs), nrows * ncols):
            axes[k // ncols, k % ncols].set_visible(False)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.02))
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        return save_figure(fig, out_dir, "pareto_projections", "Pairwise projections of all objectives",
                           caption=f"The study's {len(objs)} objectives two at a time; points on the "
                                   f"{len(objs)}-objective Pareto set are highlighted.")


# -- Figure 1: per-dimension scores ---------------------------------------------------------

def dimension_scores(data: ReportData, out_dir: Path) -> FigureFiles | None:
    """Accuracy (top row) and refusal rate (bottom row) per dimension vs weight precision."""
    if data.scores.empty:
        return None
    df = data.scores.merge(data.variants, on="variant_id")
    tasks = [t for t in data.tasks if t in set(df["task"])]
    quant = df[~df["is_dense"]]
    dense = df[df["is_dense"]]
    all_bits = sorted(set(quant["bits"]))
    with figure_style():
        # narrow panels: the whole grid must stay legible when the HTML scales it to the page width
        fig, axes = new_figure(len(tasks), 2, width=max(2.45 * len(tasks) + 0.6, 7.0), height=5.2, sharex=True)
        series = sorted(quant.groupby(["method", "group_size"]).groups)
        for col, task in enumerate(tasks):
            for row, (metric, ylabel) in enumerate([("score", "Score (%)"), ("refusal_rate", "Refusal rate (%)")]):
                ax = axes[row, col]
                for method, gs in series:
                    s = quant[(quant["task"] == task) & (quant["method"] == method) & (quant["group_size"] == gs)]
                    s = s.sort_values("bits")
                    if s.empty:
                        continue
                    scale = 100.0 if metric == "refusal_rate" else 1.0
                    g = "per-channel" if gs == -1 else f"g{gs}"
                    ax.plot(s["bits"], s[metric] * scale, marker="o", color=style.color_for(method, style.METHOD_COLORS),
                            ls="-" if gs in (128, -1) else "--", label=f"{method.upper()} {g}")
                d = dense[dense["task"] == task]
                if not d.empty:
                    scale = 100.0 if metric == "refusal_rate" else 1.0
                    ax.axhline(float(d[metric].iloc[0]) * scale, color=style.DENSE_COLOR, ls=":", lw=1.4,
                               label="dense (16-bit)")
                if row == 0:
                    ax.set_title(data.dimensions.get(task, task))
                if col == 0:
                    ax.set_ylabel(ylabel)
                if row == 1:
                    ax.set_xlabel("Weight precision (bits)")
                    ax.set_xticks(all_bits or [16])
                lo, hi = ax.get_ylim()
                ax.set_ylim(max(0.0, lo) if metric == "score" else 0.0, min(100.0, hi) if hi > 0 else 1.0)
        handles, labels = [], []
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 1.04))
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        return save_figure(fig, out_dir, "dimension_scores", "Per-dimension score and refusal rate per variant",
                           caption=f"Each point is one quantized variant; the dotted line is the dense model. "
                                   f"Scores use the {data.protocol!r} protocol's {data.policy!r} policy on "
                                   f"{data.mode!r} answers.")


# -- Figure 3: ensemble vs best single vs dense ---------------------------------------------

_KIND_COLORS = {"dense": style.DENSE_COLOR, "best single": style.BEST_SINGLE_COLOR, "ensemble": style.ENSEMBLE_COLOR}


def ensemble_vs_single(data: ReportData, out_dir: Path) -> FigureFiles | None:
    if data.ensembles.empty:
        return None
    ens_names = list(dict.fromkeys(data.ensembles["ensemble"]))
    tasks = [t for t in data.tasks if t in set(data.ensembles["task"])]
    kinds = [k for k in ("dense", "best single", "ensemble") if k in set(data.ensembles["kind"])]
    with figure_style():
        fig, axes = new_figure(1, len(ens_names), width=max(1.5 * len(tasks) + 2.5, 7.0), height=3.2 * len(ens_names),
                               sharey=True)
        width = 0.8 / len(kinds)
        for r, ens in enumerate(ens_names):
            ax = axes[r, 0]
            e = data.ensembles[data.ensembles["ensemble"] == ens]
            x = np.arange(len(tasks))
            for k, kind in enumerate(kinds):
                s = e[e["kind"] == kind].set_index("task").reindex(tasks)
                pos = x + (k - (len(kinds) - 1) / 2) * width
                yerr = None
                if kind == "ensemble" and s["ci_low"].notna().any():
                    yerr = np.vstack([(s["score"] - s["ci_low"]).clip(lower=0).fillna(0),
                                      (s["ci_high"] - s["score"]).clip(lower=0).fillna(0)])
                ax.bar(pos, s["score"], width * 0.95, color=_KIND_COLORS[kind], yerr=yerr, capsize=2.5,
                       error_kw=dict(lw=0.9), label={"best single": "best single precision",
                                                      "dense": "dense (16-bit)",
                                                      "ensemble": "precision ensemble (95% CI)"}[kind])
                if kind == "best single":
                    # the member's name runs up inside its bar: no collision with neighbouring error bars
                    for p, v, name in zip(pos, s["score"], s["variant"]):
                        if pd.notna(v) and v > 25:
                            ax.text(p, 3, str(name), rotation=90, ha="center", va="bottom", fontsize=7,
                                    color="white")
            ax.set_xticks(x, [data.dimensions.get(t, t) + ("" if compared_with_members(t) else "\n(not compared)")
                              for t in tasks])
            ax.set_ylabel("Score (%)")
            ax.set_title(f"Ensemble {ens}")
            ax.set_ylim(0, 100)
            ax.grid(axis="x", visible=False)
        axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        return save_figure(fig, out_dir, "ensemble_vs_single", "Ensemble vs best single precision vs dense",
                           caption="Precision-ensemble vote vs its best member on each dimension (named inside "
                                   "its bar) vs the dense model. Error bars: bootstrap 95% CI. Fairness measures "
                                   "group disparity, not correctness: the ensemble's score is shown, not compared.")


# -- hardware -------------------------------------------------------------------------------

def _peaks(spec) -> tuple[float | None, dict[str, float]]:
    """(memory bandwidth in byte/s, {dtype: peak FLOP/s}) of a spec (pydantic or dict)."""
    bw = spec.memory.bandwidth_gbs
    comp = dict(spec.compute_tflops)
    peaks = {k: float(v) * 1e12 for k, v in comp.items() if isinstance(v, (int, float)) and v}
    return (float(bw) * 1e9 if bw else None), peaks


def roofline(data: ReportData, out_dir: Path) -> FigureFiles | None:
    if data.roofline.empty or data.spec is None:
        return None
    df = data.roofline
    bw, peaks = _peaks(data.spec)
    bits = sorted(set(df["bits"]), reverse=True)
    cmap = {b: style.color_for(str(b), {str(k): v for k, v in style.BITS_COLORS.items()}) for b in bits}
    with figure_style():
        fig, axes = new_figure(width=8.0, height=5.0)
        ax = axes[0, 0]
        x_lo = max(min(df["intensity"].min() / 3, 0.1), 1e-3)
        x_hi = max(df["intensity"].max() * 3, 1e3)
        xs = np.logspace(np.log10(x_lo), np.log10(x_hi), 200)
        used = {str(d) for d in df.get("dtype", pd.Series(dtype=str))} | {"fp16"}
        shown: dict[float, list[str]] = {}
        for dt, peak in peaks.items():
            if dt in used:  # roofs of datatypes no operator runs in would only clutter the chart
                shown.setdefault(peak, []).append(dt)
        shown_items = [("/".join(v), k) for k, v in shown.items()] or list(peaks.items())
        for j, (dt, peak) in enumerate(sorted(shown_items, key=lambda kv: kv[1])):
            if bw:
                ax.plot(xs, np.minimum(bw * xs, peak), color="#888888", lw=1.0, ls=["-", "--", ":", "-."][j % 4])
                ridge = peak / bw
                ax.annotate(f"{dt} peak {peak / 1e12:g} TFLOP/s", (min(max(ridge, x_lo), x_hi), peak),
                            xytext=(4, 3), textcoords="offset points", fontsize=7, color="#555555")
            else:
                ax.axhline(peak, color="#888888", lw=1.0)
        if bw:
            x_txt = x_lo * 2
            ax.annotate(f"memory {bw / 1e9:g} GB/s", (x_txt, bw * x_txt), xytext=(2, 6), textcoords="offset points",
                        rotation=0, fontsize=7, color="#555555")
        for b in bits:
            for phase, marker in (("prefill", "s"), ("decode", "o")):
                s = df[(df["bits"] == b) & (df["phase"].astype(str).str.lower().str.startswith(phase))]
                if s.empty:
                    continue
                ax.scatter(s["intensity"], s["attained_flops"], marker=marker, s=28, color=cmap[b], alpha=0.85,
                           edgecolors="white", linewidths=0.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("Attained performance (FLOP/s)")
        ax.set_title(f"Roofline: {data.shape_name or 'model'} on {data.spec_name}")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", color=cmap[b], label=f"{'dense 16' if b == 16 else b}-bit weights")
                   for b in bits]
        handles += [Line2D([], [], ls="", marker="o", color="#555555", label="decode operator"),
                    Line2D([], [], ls="", marker="s", color="#555555", label="prefill operator"),
                    Line2D([], [], color="#888888", label="roof (peak per dtype)")]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return save_figure(fig, out_dir, "roofline", f"Roofline of {data.spec_name}",
                           caption="Each marker is one operator of a forward pass (decode: circles, prefill: "
                                   "squares), placed by the analytical model at its arithmetic intensity and "
                                   "attained FLOP/s.")


def latency_check(data: ReportData, out_dir: Path) -> FigureFiles | None:
    df = data.latency
    if df.empty or "predicted_tpot_ms" not in df:
        return None
    pairs = [(m, p, t) for m, p, t in (("prefill_ms", "predicted_prefill_ms", "Prefill (time to first token)"),
                                       ("tpot_ms", "predicted_tpot_ms", "Decode (time per output token)"))
             if df[[m, p]].notna().all(axis=1).any()]
    if not pairs:
        return None
    with figure_style():
        fig, axes = new_figure(len(pairs), 1, width=4.4 * len(pairs), height=4.2)
        wb = sorted({int(b) for b in df["wbits"].dropna()})
        cmap = {b: style.color_for(str(b), {str(k): v for k, v in style.BITS_COLORS.items()}) for b in wb}
        for k, (m, p, title) in enumerate(pairs):
            ax = axes[0, k]
            s = df[df[[m, p]].notna().all(axis=1)]
            for b in wb:
                t = s[s["wbits"] == b]
                ax.scatter(t[p], t[m], s=30, color=cmap[b], label=f"{b}-bit weights", edgecolors="white",
                           linewidths=0.4)
            lo = float(min(s[m].min(), s[p].min()))
            hi = float(max(s[m].max(), s[p].max()))
            wide = hi / max(lo, 1e-12) > 20
            lo, hi = (lo * 0.7, hi * 1.4) if wide else (0.0, hi * 1.15)
            line = np.linspace(lo, hi, 50)
            ax.plot(line, line, color="#555555", lw=1, label="prediction = measurement")
            ax.fill_between(line, line / 1.25, line * 1.25, color="#999999", alpha=0.15, lw=0, label="±25%")
            if wide:  # several decades (CPU and GPU runs together): log axes with plain-number ticks
                ax.set_xscale("log")
                ax.set_yscale("log")
                from matplotlib.ticker import FuncFormatter, NullFormatter

                for axis in (ax.xaxis, ax.yaxis):
                    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                    axis.set_minor_formatter(NullFormatter())
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_xlabel("Predicted (ms)")
            ax.set_ylabel("Measured (ms)")
            ax.set_title(title)
            err = np.median(np.abs(s[p] / s[m] - 1)) * 100
            ax.text(0.97, 0.04, f"median |error| {err:.0f}%  (n={len(s)})", transform=ax.transAxes, ha="right",
                    fontsize=8, color="#333333")
        axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        devices = ", ".join(sorted({str(d) for d in df["device_name"].fillna(df["device"])}))
        return save_figure(fig, out_dir, "latency_check", "Predicted vs measured latency",
                           caption=f"Hardware-model predictions against timed runs on {devices}.")


# -- optimizer trace ------------------------------------------------------------------------

def optimizer_trace(data: ReportData, out_dir: Path) -> FigureFiles | None:
    hv = data.hv
    if hv.empty or hv["iteration"].nunique() < 1:
        return None
    with figure_style():
        fig, axes = new_figure(width=6.4, height=4.2)
        ax = axes[0, 0]
        for method in sorted(set(hv["method"]), key=lambda m: (m != "bo", m)):
            h = hv[hv["method"] == method]
            if method == "exhaustive" or h["iteration"].nunique() == 1:
                # enumeration is not iterative: its front is the reference the others climb towards
                ax.axhline(h["hv"].max(), color=style.color_for(method, style.OPTIMIZER_COLORS), ls="--", lw=1.2,
                           label=f"{method} (every configuration, reference)")
                continue
            # seeds may stop at different budgets: carry each seed's last value forward
            wide = h.pivot_table(index="n_evals", columns="seed", values="hv").sort_index().ffill()
            mean, lo, hi = wide.mean(axis=1), wide.min(axis=1), wide.max(axis=1)
            color = style.color_for(method, style.OPTIMIZER_COLORS)
            algo = data.algorithm.replace("qlog", "qLog")
            algo = algo.replace("nehvi", "NEHVI").replace("nparego", "NParEGO")
            name = {"bo": f"BO ({algo})" if algo else "BO", "nsga2": "NSGA-II", "random": "random search",
                    "exhaustive": "exhaustive"}.get(method, method)
            ax.plot(mean.index, mean.values, color=color, marker="o" if len(mean) < 25 else None, ms=3.5,
                    drawstyle="steps-post", label=f"{name} (mean of {wide.shape[1]} seeds)" if wide.shape[1] > 1
                    else name)
            # iteration boundaries (BO proposes a batch of q per iteration)
            firsts = h[h["seed"] == h["seed"].min()].groupby("iteration")["n_evals"].min()
            if method == "bo" and len(firsts) > 1:
                ax.plot(firsts.values, mean.reindex(firsts.values).values, ls="", marker="|", ms=10, color=color)
            if wide.shape[1] > 1:
                ax.fill_between(mean.index, lo.values, hi.values, color=color, alpha=0.15, lw=0, step="post")
        ax.set_xlabel("Configurations evaluated")
        ax.set_ylabel("Dominated hypervolume (higher is better)")
        ax.set_title("Optimizer trace: dominated hypervolume")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return save_figure(fig, out_dir, "optimizer_trace", "Hypervolume per iteration",
                           caption=f"Hypervolume of the feasible points found so far over {', '.join(data.objectives)}"
                                   ", against the number of configurations evaluated, so methods are compared at "
                                   "equal budget (ticks on the BO curve: start of each BO iteration; one reference "
                                   "point for all methods; band: min–max over seeds).")


ALL_FIGURES = [pareto_fronts, pairwise_projections, dimension_scores, ensemble_vs_single, roofline, latency_check,
               optimizer_trace]
