"""Dockerfile and docker/compose.yaml (no Docker engine here): the services, their environment and volumes
are wired as the app expects, and every command they run parses with the real CLI it names."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from noble.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def _noble_command(argv: list[str]) -> Any:
    """Parse `noble SUBCOMMAND ...` with the real Typer app (without running it); unknown options raise."""
    from noble.cli import app

    assert argv[0] == "noble"
    group = typer.main.get_command(app)
    cmd = group.commands[argv[1]]  # type: ignore[attr-defined]
    return cmd.make_context(argv[1], list(argv[2:]))


def test_services_and_environment(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"api", "dask-scheduler", "dask-worker", "postgres"}
    api_env = services["api"]["environment"]
    worker_env = services["dask-worker"]["environment"]
    for env in (api_env, worker_env):
        assert env["NOBLE_DASK_ADDRESS"] == "tcp://dask-scheduler:8786"
        assert env["NOBLE_DATABASE_URL"].startswith("postgresql://")
        assert env["NOBLE_DATA_DIR"] == "/data"
    # Every NOBLE_* variable names a real setting.
    for key in {**api_env, **worker_env}:
        assert key.startswith("NOBLE_") and key[6:].lower() in Settings.model_fields, key
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    # API and workers share the data volume at NOBLE_DATA_DIR (workers write shards the API serves).
    assert "noble-data:/data" in services["api"]["volumes"] and "noble-data:/data" in services["dask-worker"]["volumes"]
    assert set(compose["volumes"]) >= {"noble-data", "pg-data"}


def test_database_url_matches_postgres_service(compose: dict) -> None:
    from sqlalchemy.engine import make_url

    from noble.app.store import normalise_url

    url = make_url(normalise_url(compose["services"]["api"]["environment"]["NOBLE_DATABASE_URL"]))
    pg = compose["services"]["postgres"]
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port) == ("postgres", 5432)
    assert (url.username, url.password, url.database) == (pg["environment"]["POSTGRES_USER"],
                                                          pg["environment"]["POSTGRES_PASSWORD"],
                                                          pg["environment"]["POSTGRES_DB"])
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert compose["services"]["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_commands_are_real_cli_commands(compose: dict) -> None:
    from distributed.cli.dask_scheduler import main as scheduler_cli
    from distributed.cli.dask_worker import main as worker_cli

    s = compose["services"]
    ctx = _noble_command(s["api"]["command"])
    assert ctx.command.name == "serve" and ctx.params["host"] == "0.0.0.0" and ctx.params["port"] == 8000
    with pytest.raises(Exception, match="bogus"):  # the parser is strict, so the check above means something
        _noble_command(["noble", "serve", "--bogus"])
    assert s["api"]["ports"] == ["8000:8000"]
    argv = s["dask-scheduler"]["command"]
    assert argv[:2] == ["dask", "scheduler"]
    sched = scheduler_cli.make_context("dask scheduler", argv[2:])
    assert sched.params["port"] == "8786"
    argv = s["dask-worker"]["command"]
    assert argv[:2] == ["dask", "worker"]
    work = worker_cli.make_context("dask worker", argv[2:])
    assert work.params["scheduler"] == s["api"]["environment"]["NOBLE_DASK_ADDRESS"]
    assert work.params["nthreads"] == 1  # Brian2 runs are CPU-bound, one per process


def test_dockerfile(compose: dict) -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.replace("\\\n", " ").splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("FROM python:3.11")
    torch_idx = next(i for i, ln in enumerate(lines) if "torch==2.13.0" in ln)
    assert "--index-url https://download.pytorch.org/whl/cpu" in lines[torch_idx]
    pkg_idx = next(i for i, ln in enumerate(lines) if re.search(r"pip install \"?\.(\[|\"|\s|$)", ln))
    assert torch_idx < pkg_idx  # torch first: the package's requirement is then already met
    cmd = next(ln for ln in lines if ln.startswith("CMD "))
    argv = yaml.safe_load(cmd[4:])  # exec form: a JSON array
    assert argv == compose["services"]["api"]["command"]
    assert _noble_command(argv).command.name == "serve"
    assert "EXPOSE 8000" in lines
    health = next(ln for ln in lines if ln.startswith("HEALTHCHECK"))
    assert "/health" in health
    assert any(ln.startswith("USER ") and "root" not in ln for ln in lines)
    assert "g++" in text  # Brian2 compiles generated code
    for ln in lines:
        if ln.startswith("COPY "):
            src = shlex.split(ln)[1:-1]
            for p in src:
                assert (ROOT / p).exists(), p
