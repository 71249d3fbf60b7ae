"""`noble serve`: run the HTTP service with uvicorn (JSON logs, settings from NOBLE_* variables)."""

from __future__ import annotations

import os
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command("serve")
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="interface to bind (default NOBLE_HOST or 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, "--port", min=0, max=65535, help="port (default NOBLE_PORT or 8000)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, max=64,
                                          help="uvicorn worker processes (>1: set NOBLE_DASK_ADDRESS)"),
    log_level: Optional[str] = typer.Option(None, "--log-level", help="critical|error|warning|info|debug"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="job store and results (NOBLE_DATA_DIR)"),
) -> None:
    """Serve the API (OpenAPI docs at /docs) with the default surrogate and an in-process Dask cluster."""
    import uvicorn

    from ..config import settings_from_env
    from .observability import log_config

    # The app reads NOBLE_* in every worker process: pass CLI choices on through the environment.
    if data_dir is not None:
        os.environ["NOBLE_DATA_DIR"] = data_dir
    if log_level is not None:
        os.environ["NOBLE_LOG_LEVEL"] = log_level
    try:
        s = settings_from_env()
    except Exception as exc:  # noqa: BLE001 - a bad NOBLE_* value: say which, exit 2
        typer.echo(f"invalid NOBLE_* settings: {exc}", err=True)
        raise typer.Exit(2) from None
    n_workers = workers or s.workers
    if n_workers > 1 and not s.dask_address:
        typer.echo("warning: --workers > 1 without NOBLE_DASK_ADDRESS starts one LocalCluster per worker process; "
                   "point them at one Dask scheduler instead", err=True)
    uvicorn.run("noble.app.main:create_app", factory=True, host=host or s.host, port=port if port is not None else s.port,
                workers=n_workers, log_config=log_config(s.log_level, s.log_json), access_log=False,
                proxy_headers=True, timeout_graceful_shutdown=30)
