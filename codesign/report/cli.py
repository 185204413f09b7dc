"""``codesign report``: the HTML report with figures and tables from a result store."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        store: Path = typer.Option(Path("results.db"), "--store", help="Result store (SQLite) to report on."),
        study: str = typer.Option(None, "--study", help="Explore study to report (default: the latest in the store)."),
        out: Path = typer.Option(Path("report"), "--out", help="Output folder for report.html, PNG/SVG figures and "
                                                                 "CSV/Markdown tables."),
        spec: str = typer.Option(None, "--spec", help="Accelerator spec for the roofline and latency predictions "
                                                      "(built-in name or YAML path; default: the study's spec, "
                                                      "else h100-sxm)."),
        mode: str = typer.Option(None, "--mode", help="Answers to score: generate or loglik (default: the study's "
                                                      "mode, else the mode with most stored answers)."),
        policy: str = typer.Option(None, "--policy", help="Scoring policy, naming the protocol of the answers: "
                                                          "decodingtrust, or codesign's answered / strict; "
                                                          "default: the study's."),
        n_boot: int = typer.Option(200, "--n-boot", min=0, help="Bootstrap resamples for ensemble confidence "
                                                                 "intervals (0 = none)."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Write a self-contained HTML report (figures embedded, no network) plus PNG/SVG figures and
        CSV/Markdown tables: Pareto fronts, per-dimension trust, ensembles, roofline, optimizer trace."""
        from codesign.report import write_report

        path = write_report(store, study, out, spec, mode=mode, policy=policy, n_boot=n_boot, progress=progress)
        typer.echo(f"report written to {path}")
