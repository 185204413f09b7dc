"""``codesign report``: the HTML report with figures and tables from a result store.

:func:`report` is the command as a plain function over :class:`ReportOptions`; :func:`register`
binds it to the command line.
"""

from __future__ import annotations

from pathlib import Path
from codesign.commands import CommandOptions, Mode, Policy, bind, option


class ReportOptions(CommandOptions):
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
    policy: Policy | None = option(
        None, "--policy", help="Scoring policy: decodingtrust (over answered items) or strict (refusals count as "
                               "wrong); default: the study's.")
    n_boot: int = option(200, "--n-boot", help="Bootstrap resamples for ensemble confidence intervals (0 = none).",
                         ge=0)
    progress: bool = option(True, "--progress/--no-progress", help="Show a progress bar.")


def report(opts: ReportOptions) -> Path:
    """Write the report; returns the path of ``report.html``."""
    from codesign.report import write_report

    return write_report(opts.store, opts.study, opts.out, opts.spec, mode=opts.mode, policy=opts.policy,
                        n_boot=opts.n_boot, progress=opts.progress)


def register(app) -> None:
    import typer

    bind(app, "report", ReportOptions, report, lambda opts, path: typer.echo(f"report written to {path}"),
         doc="Write a self-contained HTML report (figures embedded, no network) plus PNG/SVG figures and "
             "CSV/Markdown tables: Pareto fronts, per-dimension trust, ensembles, roofline, optimizer trace.")
