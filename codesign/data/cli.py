"""``codesign data``: where the benchmarks come from (``status``), download them from their public
homes into the cache (``fetch``), and build DecodingTrust's prompt files from its code
(``dt-prompts``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

SOURCE_HELP = ("A local clone (or git directory) of decoding-comp-trust/DecodingTrust holding the pinned commit; "
               "default: download the files from GitHub.")


def register(app: typer.Typer) -> None:
    data = typer.Typer(help="Benchmark data: status, fetch from the Hub / DecodingTrust, build DT's prompt files.",
                       no_args_is_help=True)
    app.add_typer(data, name="data")

    @data.command("status")
    def status(data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Local data folder to look at "
                                                        "(default: $CODESIGN_DATA or ../shared/data)."),
               cache: Optional[Path] = typer.Option(None, "--cache", help="Hub data cache (default: "
                                                    "$CODESIGN_CACHE/data).")) -> None:
        """Each data source: where it comes from, and whether the local folder and the hub cache have it."""
        from rich.console import Console
        from rich.table import Table

        from codesign.data.hub import hub_root, status as source_status
        from codesign.paths import data_dir as resolve

        chosen = data_dir if data_dir is not None else os.environ.get("CODESIGN_DATA")
        local = None if str(chosen) == "hub" else resolve(data_dir, required=False)  # status never downloads
        t = Table("source", "origin", "local", "hub cache", title=f"local: {local}   hub cache: {cache or hub_root()}")
        for row in source_status(local, cache):
            t.add_row(row["source"], row["origin"], "yes" if row["local"] else "-", "yes" if row["hub_cache"] else "-")
        Console().print(t)

    @data.command("fetch")
    def fetch(names: Optional[list[str]] = typer.Argument(None, help="Sources to fetch (default all): mmlu, "
                                                          "advglue, ethics, decodingtrust, dt-prompts, adult."),
              cache: Optional[Path] = typer.Option(None, "--cache", help="Folder to fill (default: "
                                                   "$CODESIGN_CACHE/data, what --data-dir hub reads)."),
              source: Optional[Path] = typer.Option(None, "--source", help=SOURCE_HELP),
              force: bool = typer.Option(False, "--force", help="Fetch again sources already in the cache.")) -> None:
        """Download benchmarks into the layout the task loaders read; then use --data-dir hub."""
        from codesign.data.hub import materialise, status as source_status

        root = materialise(names, cache, force=force, dt_source=source)
        done = [r["source"] for r in source_status(None, root) if r["hub_cache"]]
        typer.echo(f"{root}: {', '.join(done)}")

    @data.command("dt-prompts")
    def dt_prompts(out: Path = typer.Option(..., "--out", "-o", help="Folder for the JSON files."),
                   source: Optional[Path] = typer.Option(None, "--source", help=SOURCE_HELP),
                   compare: Optional[Path] = typer.Option(None, "--compare", help="A curated prompts folder of the "
                                                          "same layout to check the built values against."),
                   force: bool = typer.Option(False, "--force", help="Overwrite existing JSON files in --out.")) -> None:
        """Build DecodingTrust's prompt files (decodingtrust/prompts/ layout) from its code at the pinned commit."""
        from rich.console import Console
        from rich.table import Table

        from codesign.config import ConfigError
        from codesign.data.dt_prompts import build_prompt_files, compare_with, write_prompt_files
        from codesign.data.repo import RepoFiles

        if compare is not None and not compare.is_dir():
            raise ConfigError(f"--compare: {compare} is not a folder (allowed: a prompts folder such as "
                              "../shared/data/decodingtrust/prompts)")
        docs = build_prompt_files(RepoFiles(source))
        written = write_prompt_files(docs, out, force=force)
        console = Console()
        console.print(f"wrote {', '.join(p.name for p in written)} to {out}")
        if compare is not None:
            rows = compare_with(docs, compare)
            t = Table("file", "values", "same", "differ", "absent there", "same source", title=f"against {compare}")
            for f in sorted({r["file"] for r in rows}):
                rs = [r for r in rows if r["file"] == f]
                count = lambda k, v: sum(r[k] == v for r in rs)  # noqa: E731
                t.add_row(f, str(len(rs)), str(count("status", "same")), str(count("status", "differs")),
                          str(count("status", "absent")), str(count("same_source", True)))
            console.print(t)
            for r in rows:
                if r["status"] != "same":
                    console.print(f"{r['status']}: {r['file']} {r['path']}")
