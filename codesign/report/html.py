"""The self-contained HTML report: one file, figures embedded (base64 PNG or inline SVG), CSS
inline, no script and no external request of any kind, so it opens offline and can be mailed."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from codesign.report.data import ReportData
from codesign.objectives import label as objective_label
from codesign.report.style import DPI, FigureFiles
from codesign.report.tables import TableFiles

_CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222; margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #0072B2; }
h3 { font-size: 15px; margin: 22px 0 6px; }
.meta { color: #666; font-size: 13px; margin-bottom: 16px; }
.note { color: #7a5a00; background: #fff8e1; border-left: 4px solid #E69F00; padding: 6px 10px; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0; }
.card { flex: 1 1 300px; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; background: #fdfdfd; }
.card .role { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #D55E00; font-weight: bold; }
.card .name { font-size: 16px; font-weight: bold; margin: 4px 0; }
.card .why { font-size: 12px; color: #666; }
.card table { margin-top: 6px; }
figure { margin: 14px 0 20px; }
figure img, figure svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 12.5px; color: #555; margin-top: 4px; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e5e5e5; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; text-align: center; white-space: normal; vertical-align: bottom; max-width: 110px; }
td.text, th.text { text-align: left; }
.tablewrap { overflow-x: auto; max-width: 100%; }
nav a { margin-right: 14px; font-size: 13px; color: #0072B2; text-decoration: none; }
code { background: #f2f2f2; padding: 0 3px; border-radius: 3px; }
ul.files { font-size: 12.5px; columns: 2; }
"""

SECTIONS = [("summary", "Summary"), ("pareto", "Pareto fronts"), ("variants", "Trust per variant"),
            ("ensembles", "Precision ensembles"), ("hardware", "Hardware view"), ("optimizer", "Optimizer trace"),
            ("files", "Files")]


@dataclass
class Section:
    key: str
    title: str
    body: list[str] = field(default_factory=list)
    note: str | None = None


def embed_figure(fig: FigureFiles) -> str:
    """A ``<figure>`` with the SVG inlined (hover tooltips) or the PNG as a data URI."""
    if fig.inline_svg:
        svg = fig.svg.read_text()
        svg = re.sub(r"^<\?xml[^>]*>\s*", "", svg)
        svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
        # show the SVG at the PNG's pixel size (its width is in points at 72/in; PNGs are DPI/in)
        m = re.search(r'<svg[^>]*?\swidth="([\d.]+)pt"', svg)
        if m:
            px = float(m.group(1)) / 72 * DPI
            svg = svg.replace("<svg ", f'<svg style="width:{px:.0f}px;max-width:100%;height:auto" ', 1)
        content = svg
    else:
        b64 = base64.b64encode(fig.png.read_bytes()).decode("ascii")
        content = f'<img alt="{html.escape(fig.title)}" src="data:image/png;base64,{b64}">'
    links = f'(<a href="{fig.png.name}">PNG</a> · <a href="{fig.svg.name}">SVG</a>)'
    return (f'<figure id="fig-{fig.name}">{content}<figcaption><b>{html.escape(fig.title)}.</b> '
            f'{html.escape(fig.caption)} {links}</figcaption></figure>')


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return ""
        a = abs(v)
        if a != 0 and (a >= 1e5 or a < 1e-3):
            return f"{v:.3g}"
        return f"{v:.2f}"
    return html.escape(str(v))


#: Column headers with units for objective columns (CSV files keep the plain objective names).
_HEADERS = {"trust": "trust (%)", "mmlu": "MMLU (%)", "adv": "adv. robustness (%)", "fairness": "fairness (%)",
            "ethics": "ethics (%)", "ood": "OOD (%)", "tpot_ms": "TPOT (ms)", "peak_memory_gb": "peak memory (GB)",
            "energy_per_token_j": "energy / token (J)", "area_mm2": "area (mm²)", "group_size": "group size"}


def embed_table(t: TableFiles | pd.DataFrame, max_rows: int = 40, drop: tuple[str, ...] = ()) -> str:
    df = t.frame if isinstance(t, TableFiles) else t
    df = df.drop(columns=[c for c in drop if c in df.columns])
    shown = df.head(max_rows)
    text_cols = {c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])}
    head = "".join(f'<th class="{"text" if c in text_cols else ""}">{html.escape(_HEADERS.get(str(c), str(c)))}</th>'
                   for c in df.columns)
    rows = "".join("<tr>" + "".join(f'<td class="{"text" if c in text_cols else ""}">{_fmt(v)}</td>'
                                    for c, v in zip(df.columns, r)) + "</tr>"
                   for r in shown.itertuples(index=False))
    more = ""
    if isinstance(t, TableFiles):
        extra = f"{len(df) - max_rows} more rows in " if len(df) > max_rows else "As "
        more = (f'<div class="meta">{extra}<a href="{t.csv.name}">{t.csv.name}</a> · '
                f'<a href="{t.md.name}">{t.md.name}</a></div>')
    return f'<div class="tablewrap"><table><tr>{head}</tr>{rows}</table></div>{more}'


def _summary(data: ReportData, tables: dict[str, TableFiles]) -> Section:
    sec = Section("summary", "Summary")
    if data.study is not None:
        cons = ", ".join(f"{o} {op} {b:g}" for o, op, b in data.constraints) or "none besides fitting in memory"
        objs = ", ".join(f"{html.escape(objective_label(o))} ({d})" for o, d in zip(data.objectives, data.directions))
        sec.body.append(f"<p>Study <code>{html.escape(data.study.name)}</code>: {data.study.n_points} evaluated "
                        f"points, objectives {objs or 'not summarised yet'}; constraints: {html.escape(cons)}.</p>")
    if not data.recommendations.empty:
        cards = []
        for _, r in data.recommendations.iterrows():
            rows = "".join(f'<tr><td class="text">{html.escape(objective_label(o))}</td><td>{_fmt(r.get(o))}</td></tr>'
                           for o in data.objectives if o in r)
            extra = f'<div class="why">schedule {html.escape(str(r["schedule"] or "-"))} · spec ' \
                    f'{html.escape(str(r["spec"]))}</div>'
            cards.append(f'<div class="card"><div class="role">{html.escape(r["role"])}</div>'
                         f'<div class="name">{html.escape(str(r["configuration"]))}</div>{extra}'
                         f'<div class="why">{html.escape(r["reason"])}</div><table>{rows}</table></div>')
        sec.body.append('<div class="cards">' + "".join(cards) + "</div>")
    elif data.study is not None and data.study.result is not None and not data.points.empty:
        sec.note = "No evaluated configuration meets every constraint of the study; relax the constraints."
    if "variant_scores" in tables and not tables["variant_scores"].frame.empty:
        vt = tables["variant_scores"].frame
        if "trust (%)" in vt:
            top = vt.sort_values("trust (%)", ascending=False).head(3)
            names = ", ".join(f"{r['variant']} ({r['trust (%)']:.1f})" for _, r in top.iterrows())
            sec.body.append(f"<p>Highest trust score among single variants: {html.escape(names)}.</p>")
    if not sec.body and sec.note is None:
        sec.note = data.notes.get("study") or "Nothing to summarize: the store holds no study and no scores."
    return sec


def render_html(data: ReportData, figures: dict[str, list[FigureFiles]], tables: dict[str, TableFiles],
                out_path: Path, extra_files: list[Path] | None = None) -> Path:
    """Write the report. ``figures`` maps section key -> figures; missing sections get their note."""
    secs = [_summary(data, tables)]
    if "recommendations" in tables:
        secs[0].body.append(embed_table(tables["recommendations"], drop=("variant ids",)))

    def section(key: str, title: str, table_keys: list[str], default_note: str) -> Section:
        s = Section(key, title)
        for f in figures.get(key, []):
            s.body.append(embed_figure(f))
        for tk in table_keys:
            if tk in tables and not tables[tk].frame.empty:
                s.body.append(f"<h3>{html.escape(tables[tk].title)}</h3>" + embed_table(tables[tk], drop=("variant ids", "variant_id")))
        if not s.body:
            s.note = default_note
        return s

    notes = data.notes
    secs.append(section("pareto", "Pareto fronts", ["pareto_front"],
                        notes.get("study", "No study points to draw a Pareto front from.")))
    secs.append(section("variants", "Trust per variant (accuracy and refusal rate)", ["variant_scores"],
                        notes.get("scores", "No per-variant scores.")))
    secs.append(section("ensembles", "Precision ensembles vs best single precision vs dense", ["ensembles"],
                        notes.get("ensembles", notes.get("scores", "No ensemble scores."))))
    hw = section("hardware", f"Hardware view ({data.spec_name or 'no spec'})", ["latency"],
                 notes.get("hardware") or notes.get("roofline") or "No hardware data.")
    if "roofline_ops" in tables:  # one row per operator and precision: a file, not a page of table
        t = tables["roofline_ops"]
        hw.body.append(f'<p class="meta">Every operator placed on the roofline: <a href="{t.csv.name}">{t.csv.name}</a>'
                       f' · <a href="{t.md.name}">{t.md.name}</a></p>')
        hw.note = None
    for k in ("hardware", "roofline", "latency"):
        if k in notes and hw.note is None:
            hw.body.append(f'<p class="note">{html.escape(notes[k])}</p>')
    secs.append(hw)
    secs.append(section("optimizer", "Optimizer trace", ["optimizer_hv"],
                        notes.get("study", "No study trace (needs a study with 2+ objectives).")))
    files = sorted({p.name for fs in figures.values() for f in fs for p in (f.png, f.svg)}
                   | {p.name for t in tables.values() for p in (t.csv, t.md)}
                   | {p.name for p in (extra_files or [])})
    secs.append(Section("files", "Files", ['<ul class="files">' + "".join(
        f'<li><a href="{html.escape(n)}">{html.escape(n)}</a></li>' for n in files) + "</ul>"]))

    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        from importlib.metadata import version

        ver = version("codesign")
    except Exception:  # noqa: BLE001
        ver = "dev"
    meta = (f"store <code>{html.escape(data.store_path)}</code> · study <code>{html.escape(str(data.study_name))}</code>"
            f" · answers <code>{html.escape(data.mode)}</code> · protocol <code>{html.escape(data.protocol)}</code>"
            f" · policy <code>{html.escape(data.policy)}</code>"
            f" · generated {now} by codesign {html.escape(ver)}")
    nav = "".join(f'<a href="#sec-{s.key}">{html.escape(s.title.split(" (")[0])}</a>' for s in secs)
    parts = []
    for s in secs:
        body = "".join(s.body)
        note = f'<p class="note">{html.escape(s.note)}</p>' if s.note else ""
        parts.append(f'<section id="sec-{s.key}"><h2>{html.escape(s.title)}</h2>{note}{body}</section>')
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>codesign report{(' — ' + html.escape(data.study_name)) if data.study else ''}</title>"
           f"<style>{_CSS}</style></head><body><main>"
           f"<h1>codesign report{(': ' + html.escape(data.study_name)) if data.study else ''}</h1>"
           f'<div class="meta">{meta}</div><nav>{nav}</nav>{"".join(parts)}</main></body></html>\n')
    out_path.write_text(doc, encoding="utf-8")
    return out_path
