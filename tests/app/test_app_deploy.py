"""Dockerfile and docker/compose.yaml (no Docker engine here): the services, their environment and volumes
are wired as the app expects, every command they run parses with the real CLI it names, and what the
Dockerfile copies, installs, exposes and health-checks agrees with the repository and the app."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
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


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln and not ln.startswith("#"):
            kw, _, rest = ln.partition(" ")
            out.append((kw.upper(), rest.strip()))
    return out


def _dockerignored(rel: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")] if (ROOT / ".dockerignore").is_file() else []
    parts = Path(rel).parts
    return any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(parts[0], pat) for pat in patterns)


def test_dockerfile_copies_existing_sources() -> None:
    """Every COPY source exists and is not excluded from the build context by .dockerignore, and the files
    pyproject.toml needs to build (its readme) are among them: otherwise `docker build` fails."""
    copies = [shlex.split(args) for kw, args in _dockerfile() if kw == "COPY"]
    assert copies
    sources = [src for argv in copies for src in argv[:-1] if not src.startswith("--")]
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile COPYs {src}, which is not in the repository"
        assert not _dockerignored(src), f"Dockerfile COPYs {src}, which .dockerignore leaves out of the context"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"pyproject.toml", project["readme"], "noble"} <= set(sources)


def test_dockerfile_installs_the_package_with_real_extras_and_a_matching_torch() -> None:
    """The torch pinned first satisfies the package's torch requirement (else pip would fetch another torch,
    CUDA wheels included), and every extra asked for exists (pip only warns about an unknown one, and an
    image without psycopg cannot reach the compose file's PostgreSQL)."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runs = [args for kw, args in _dockerfile() if kw == "RUN"]
    torch_pin = next(m for r in runs if (m := re.search(r"torch==([0-9][0-9.]*)", r)))
    torch_req = next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "torch")
    assert torch_req.specifier.contains(torch_pin.group(1)), (torch_pin.group(1), str(torch_req))
    make_pin = re.search(r"torch==([0-9][0-9.]*)", (ROOT / "Makefile").read_text())
    assert make_pin is not None and make_pin.group(1) == torch_pin.group(1)  # the image runs what `make` tests
    installs = [m for r in runs if (m := re.search(r"pip install \"?\.(?:\[([^\]]*)\])?\"?(?:\s|$)", r + " "))]
    assert len(installs) == 1, runs
    extras = [e.strip() for e in (installs[0].group(1) or "").split(",") if e.strip()]
    assert "postgres" in extras
    for extra in extras:
        assert extra in project["optional-dependencies"], extra
    assert any(Requirement(d).name == "psycopg" for d in project["optional-dependencies"]["postgres"])
    torch_at = next(i for i, r in enumerate(runs) if torch_pin.group(0) in r)
    package_at = next(i for i, r in enumerate(runs) if installs[0].group(0).strip() in r)
    assert torch_at < package_at  # torch first: the package's torch requirement is then already met


def test_dockerfile_cmd_port_and_healthcheck_agree_with_the_app(compose: dict, tmp_path: Path) -> None:
    """CMD is a real `noble serve` invocation; its port is the one EXPOSEd, the health check polls and the
    settings default; the health check's path answers 200 without an API key (keys are set in production);
    every NOBLE_* ENV is a real setting with a valid value."""
    from noble.app.main import create_app
    from noble.config import settings_from_env

    inst = _dockerfile()
    cmd = [args for kw, args in inst if kw == "CMD"]
    assert len(cmd) == 1
    argv = yaml.safe_load(cmd[0])  # exec form: a JSON array
    ctx = _noble_command(argv)
    assert ctx.command.name == "serve" and ctx.params["host"] == "0.0.0.0"
    port = ctx.params["port"]
    assert argv == compose["services"]["api"]["command"]
    exposed = {int(p.split("/")[0]) for kw, args in inst if kw == "EXPOSE" for p in args.split()}
    assert port in exposed and port == Settings().port, (port, exposed, Settings().port)
    health = next(args for kw, args in inst if kw == "HEALTHCHECK")
    url = re.search(r"https?://[^'\"\s]+", health)
    assert url is not None, health
    parsed = httpx.URL(url.group(0))
    assert parsed.port == port

    env: dict[str, str] = {}
    for kw, args in inst:
        if kw == "ENV":
            for tok in shlex.split(args):
                k, _, v = tok.partition("=")
                env[k] = v
    noble_env = {k: v for k, v in env.items() if k.startswith("NOBLE_")}
    for k in noble_env:
        assert k[6:].lower() in Settings.model_fields, k
    with mock.patch.dict(os.environ, noble_env):
        s = settings_from_env()
    assert s.port == port

    async def probe() -> httpx.Response:
        app = create_app(Settings(data_dir=tmp_path, api_keys="production-key"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.get(parsed.path)

    assert asyncio.run(probe()).status_code == 200


def test_image_install_ships_every_package_file(tmp_path: Path) -> None:
    """`pip install .` in the image is not editable: a file under noble/ that package-data does not name (the
    shipped surrogate's weights, the NMODL files, the explorer's static files) would be missing in the
    container. Build the wheel from exactly what the Dockerfile COPYs and compare."""
    pytest.importorskip("setuptools")
    ctx = tmp_path / "context"
    ctx.mkdir()
    for kw, args in _dockerfile():  # COPY SRC... DEST, DEST relative to WORKDIR (the build runs there)
        if kw == "COPY":
            *srcs, dest = shlex.split(args)
            for src in srcs:
                to = ctx / dest / Path(src).name if dest.endswith("/") or len(srcs) > 1 else ctx / dest
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, to, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / src, to)
    out = tmp_path / "wheel"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out)], cwd=ctx, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (whl,) = out.glob("noble-*.whl")
    shipped = set(zipfile.ZipFile(whl).namelist())
    wanted = {p.relative_to(ctx).as_posix() for p in (ctx / "noble").rglob("*")
              if p.is_file() and not any(part.startswith(".") for part in p.relative_to(ctx).parts)}  # no editor temps
    assert wanted, "nothing copied"
    missing = sorted(wanted - shipped)
    assert not missing, f"in noble/ but not in the installed package: {missing[:20]}"
    from noble.operator import default_surrogate_path

    weights = default_surrogate_path() / "weights.safetensors"
    assert weights.relative_to(ROOT).as_posix() in shipped  # the default surrogate the image serves
