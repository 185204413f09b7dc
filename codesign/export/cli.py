"""``codesign export``: write a variant or a precision ensemble as serving checkpoints
(AutoGPTQ / AutoAWQ-GEMM layouts). torch is imported inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        target: str = typer.Argument(..., help="A variant (id, short name such as gptq-w4g128, unique prefix, or "
                                               "cache entry folder), or an ensemble: members joined by '+'."),
        fmt: str = typer.Option(..., "--format", "-f",
                                help="gptq (bits 2,3,4,8; v1 zero points, every loader), gptq_v2 (same bits, "
                                     "any asymmetric grid), awq (4 bits, groups 32/64/128, no act-order)."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder to write (new or empty, or replaced with --force)."),
        force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
        store: Optional[Path] = typer.Option(None, "--store",
                                             help="Result store: resolve names there and list trust scores "
                                                  "in the README (read only)."),
        variants: Optional[Path] = typer.Option(None, "--variants",
                                                help="Variant cache folder (default: $CODESIGN_CACHE/variants)."),
        dtype: str = typer.Option("float16", "--dtype", help="dtype of the float tensors: float16, bfloat16, float32."),
        n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the scores' 95% intervals."),
    ) -> None:
        """Export a variant or an ensemble as Hugging Face checkpoints for vLLM, transformers, TGI."""
        from rich.console import Console
        from rich.table import Table

        from codesign.config import ConfigError
        from codesign.export import export_target

        if n_boot < 0:
            raise ConfigError(f"--n-boot: {n_boot} is not allowed (allowed: >= 0)")
        res = export_target(target, fmt, out, force=force, store=store, root=variants, dtype=dtype, n_boot=n_boot)
        t = Table("variant id", "folder", title=f"exported to {res.out}")
        for vid, folder in res.folders.items():
            t.add_row(vid, str(folder))
        console = Console()
        console.print(t)
        for n in res.notes:
            console.print(f"note: {n}")
