"""`noble datagen ...`: validate and run dataset-generation jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="Simulate neuron populations into HDF5 datasets (Brian2 + Dask).")
console = Console(stderr=True)


@app.command("run")
def run(
    config: Path = typer.Argument(..., help="dataset config (YAML or JSON)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="dataset directory (default: data/<name>)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="address of a running Dask scheduler"),
    workers: int = typer.Option(2, "--workers", min=1, max=256, help="LocalCluster worker processes"),
    retries: int = typer.Option(2, "--retries", min=0, max=10),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Generate (or finish) a dataset; finished shards are never recomputed."""
    from .config import load_config
    from .jobs import run_datagen

    try:
        cfg = load_config(config)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    directory = out or Path("data") / cfg.name
    summary = run_datagen(cfg, directory, scheduler=scheduler, workers=workers, retries=retries, progress=not quiet)
    console.print(f"{directory}: {len(summary.skipped)} shard(s) already done, {len(summary.computed)} computed, "
                  f"{len(summary.failed)} failed of {summary.n_shards}")
    for i, why in summary.failed.items():
        console.print(f"[red]shard {i}: {why}[/red]")
    if not summary.ok:
        raise typer.Exit(1)


@app.command("validate")
def validate(config: Path = typer.Argument(..., help="dataset config (YAML or JSON)")) -> None:
    """Check a config without simulating anything."""
    from .config import load_config

    try:
        cfg = load_config(config)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    typer.echo(json.dumps({"ok": True, "name": cfg.name, "n_shards": cfg.n_shards, "digest": cfg.digest()}))


@app.command("families")
def families() -> None:
    """List the model families with their presets."""
    from .models import available, get

    for name in available():
        fam = get(name)
        typer.echo(f"{name}: presets {sorted(fam.presets)}")
