"""The one look of every codesign figure: palette, fonts, sizes, and how figures are saved.

Every figure in :mod:`codesign.report.figures` is drawn inside :func:`figure_style` and written
with :func:`save_figure`, so PNG, SVG and the HTML report stay consistent. Matplotlib runs on the
non-interactive Agg backend (reports are written on headless machines and in CI).
"""

from __future__ import annotations

import io
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

#: Colour-blind-safe qualitative palette (Okabe & Ito 2008), in the order series are drawn.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

#: Fixed colours for things that mean the same in every figure.
DENSE_COLOR = "#222222"
ENSEMBLE_COLOR = "#D55E00"
BEST_SINGLE_COLOR = "#0072B2"
FADED_COLOR = "#B8B8B8"
INFEASIBLE_COLOR = "#DDDDDD"
FRONT_COLOR = "#D55E00"

#: Quantization methods keep one colour across figures; unknown methods take the next free colour.
METHOD_COLORS = {"rtn": "#0072B2", "gptq": "#009E73", "awq": "#E69F00", "dense": DENSE_COLOR}

#: Weight precision (bits) keeps one colour in the hardware figures (roofline, latency).
BITS_COLORS = {2: "#CC79A7", 3: "#D55E00", 4: "#009E73", 5: "#56B4E9", 6: "#F0E442", 8: "#E69F00", 16: "#0072B2",
               32: "#555555"}

#: Optimizers in the hypervolume trace.
OPTIMIZER_COLORS = {"bo": "#D55E00", "random": "#0072B2", "nsga2": "#009E73", "exhaustive": "#777777"}

#: Marker per ensemble schedule (Pareto plots): shape says schedule, colour says ensemble size.
SCHEDULE_MARKERS = {"sequential": "o", "parallel": "s", "batched": "D", "sliced": "^", "single": "*"}

#: Width of one figure column in inches; figures are laid out on this grid.
COL_W = 4.2
ROW_H = 3.3
DPI = 130

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#E6E6E6",
    "grid.linewidth": 0.7,
    "axes.axisbelow": True,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.08,
    "svg.fonttype": "none",  # keep text as text in SVG: small, searchable, selectable
    "svg.hashsalt": "codesign",  # deterministic ids, so re-running a report gives the same SVG
    "lines.linewidth": 1.6,
    "lines.markersize": 5.5,
}


def color_for(key: str, table: dict[str, str]) -> str:
    """Colour of ``key`` in ``table``; unknown keys get palette colours by stable hash."""
    if key in table:
        return table[key]
    return PALETTE[sum(map(ord, key)) % len(PALETTE)]


@contextmanager
def figure_style():
    """Context in which every report figure is drawn."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float | None = None, height: float | None = None,
               **kw):
    """A figure on the report grid (``COL_W`` x ``ROW_H`` per panel unless given)."""
    w = width if width is not None else COL_W * ncols
    h = height if height is not None else ROW_H * nrows
    return plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False, **kw)


@dataclass
class FigureFiles:
    """A figure written to disk, plus what the HTML report embeds."""

    name: str
    title: str
    png: Path
    svg: Path
    caption: str = ""
    inline_svg: bool = False  # embed the SVG itself (hover tooltips) instead of the PNG


_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


def save_figure(fig, out_dir: Path, name: str, title: str, caption: str = "", *, inline_svg: bool = False,
                tooltips: dict[str, str] | None = None) -> FigureFiles:
    """Write ``fig`` as ``<name>.png`` and ``<name>.svg`` and close it.

    ``tooltips`` maps artist gids (``artist.set_gid``) to hover text, inserted as SVG ``<title>``
    elements so every point of a crowded plot can be identified in the HTML report.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.savefig(png, format="png", metadata={"Software": None})
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = _SVG_METADATA.sub("", buf.getvalue())
    if tooltips:
        text = add_svg_tooltips(text, tooltips)
    svg.write_text(text)
    return FigureFiles(name=name, title=title, png=png, svg=svg, caption=caption, inline_svg=inline_svg)


def add_svg_tooltips(svg_text: str, tooltips: dict[str, str]) -> str:
    """Insert ``<title>`` (browser hover text) as the first child of each ``<g id=gid>``."""
    from html import escape

    for gid, tip in tooltips.items():
        svg_text = svg_text.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{escape(tip)}</title>', 1)
    return svg_text
