"""Reports: Pareto fronts, trust charts, roofline views and tables as HTML, PNG, SVG, CSV and Markdown.

:func:`write_report` reads a result store (variants, items, answers, measurements, study points)
and writes into one folder: ``report.html`` (self-contained), every figure as PNG and SVG, and
every table as CSV and Markdown. Sections whose data is absent are left out with a one-line note.
"""

from __future__ import annotations

from pathlib import Path

from typing import Any


def write_report(store, study: str | None, out_dir: str | Path, spec: str | None = None, *,
                 mode: str | None = None, policy: str | None = None, protocol: str | None = None,
                 n_boot: int = 200, seed: int = 0, progress: bool = True) -> Path:
    """Write the report of ``store`` (a :class:`~codesign.store.ResultStore` or its path) to ``out_dir``.

    Args:
        study: explore study to report (default: the latest study in the store, if any).
        spec: accelerator spec for the roofline, and for measurements that name none and ran on a GPU
            (default: the study's first spec, else ``h100-sxm``).
        mode: answers to score, ``generate`` or ``loglik`` (default: the study's mode, else the mode
            with most stored answers).
        policy: scoring policy (``decodingtrust``; codesign's ``answered`` or ``strict``); alone it
            names the protocol whose answers are scored.
        protocol: evaluation protocol of the answers scored. Neither given: the study's protocol
            and policy, else the protocol with the most stored answers and its own policy.
        n_boot: bootstrap resamples for the ensembles' confidence intervals.

    Returns:
        Path of ``report.html``.
    """
    from codesign.config import ConfigError
    from codesign.store import ResultStore

    if policy is not None or protocol is not None:
        from codesign.evaluate.protocols import resolve_scoring

        resolve_scoring(protocol, policy)
    if mode not in (None, "generate", "loglik"):
        raise ConfigError(f"--mode: {mode!r} is not allowed (allowed: generate, loglik)")
    own = not isinstance(store, ResultStore)
    if own:
        store = ResultStore(store, read_only=True)  # a report never writes to the store
    try:
        if store.is_empty():
            raise ConfigError(f"--store: {store.path} is empty: nothing to report (allowed: a store that "
                              "codesign eval, measure or explore has written to)")
        from codesign.report.data import collect  # pandas & co. only when a report is written

        data = collect(store, study, spec, mode=mode, policy=policy, protocol=protocol, n_boot=n_boot, seed=seed)
    finally:
        if own:
            store.close()
    out = Path(out_dir)  # created only once the store is known to hold something to report
    out.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm  # matplotlib & co.: only once there is a report to draw

    from codesign.report import figures as F
    from codesign.report.html import render_html
    from codesign.report.tables import ALL_TABLES, write_table

    steps = [("pareto", F.pareto_fronts), ("pareto", F.pairwise_projections), ("variants", F.dimension_scores),
             ("ensembles", F.ensemble_vs_single), ("hardware", F.roofline), ("hardware", F.latency_check),
             ("optimizer", F.optimizer_trace)]
    figs: dict[str, list] = {}
    for key, fn in tqdm(steps, desc="report figures", disable=not progress):
        res = fn(data, out)
        for f in res if isinstance(res, list) else [res]:
            if f is not None:
                figs.setdefault(key, []).append(f)
    tables = {}
    for name, (title, build) in ALL_TABLES.items():
        df = build(data)
        if not df.empty:
            tables[name] = write_table(df, out, name, title)
    notes = out / "notes.txt"
    notes.write_text("".join(f"{k}: {v}\n" for k, v in data.notes.items()))
    return render_html(data, figs, tables, out / "report.html", extra_files=[notes])


__all__ = ["ReportData", "collect", "write_report"]


def __getattr__(name: str) -> Any:
    if name in ("ReportData", "collect"):
        from codesign.report import data

        return getattr(data, name)
    raise AttributeError(f"module 'codesign.report' has no attribute {name!r}")
