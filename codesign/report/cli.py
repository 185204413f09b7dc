"""``codesign report``: the HTML report with figures and tables from a result store.

:func:`report` is the command as a plain function over :class:`ReportOptions`; :func:`register`
binds it to the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from codesign.commands import Mode, Policy, ScoringOptions, bind, option


class ReportOptions(ScoringOptions):
    scoring_from_store: ClassVar[bool] = True  # neither --protocol nor --policy: the study's

    store: Path = option(Path("results.db"), "--store", help="Result store (SQLite) to report on.")
    study: str | None = option(None, "--study", help="Explore study to report (default: the latest in the store).")
    out: Path = option(Path("report"), "--out", help="Output folder for report.html, PNG/SVG figures and CSV/Markdown "
                                                     "tables.")
    spec: str | None = option(None, "--spec", help="Accelerator spec for the roofline, and for GPU measurements that "
                                                   "name no spec (built-in name or YAML path; default: the study's "
                                                   "first spec, else h100-sxm).")
    mode: Mode | None = option(
        None, "--mode", help="Answers to score: generate or loglik (default: the study's mode, else the mode with "
                             "most stored answers).")
    protocol: str | None = option(
        None, "--protocol", help="Evaluation protocol of the answers to score: decodingtrust or codesign (default: "
                                 "the study's, else the one --policy belongs to, else the protocol with most stored "
                                 "answers).")
    policy: Policy | None = option(
        None, "--policy", help="Scoring policy of the protocol: decodingtrust, or codesign's answered / strict; "
                               "default: the study's when neither flag is given, else the protocol's own.")
    n_boot: int = option(200, "--n-boot", help="Bootstrap resamples for ensemble confidence intervals (0 = none).",
                         ge=0, le=1_000_000)
    progress: bool = option(True, "--progress/--no-progress", help="Show a progress bar.")


def report(opts: ReportOptions) -> Path:
    """Write the report; returns the path of ``report.html``."""
    from codesign.report import write_report

    return write_report(opts.store, opts.study, opts.out, opts.spec, mode=opts.mode, policy=opts.policy,
                        protocol=opts.protocol, n_boot=opts.n_boot, progress=opts.progress)


def register(app) -> None:
    import typer

    bind(app, "report", ReportOptions, report, lambda opts, path: typer.echo(f"report written to {path}"),
         doc="Write a self-contained HTML report (figures embedded, no network) plus PNG/SVG figures and "
             "CSV/Markdown tables: Pareto fronts, per-dimension trust, ensembles, roofline, optimizer trace.")
