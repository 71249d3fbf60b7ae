"""Fixtures for the service tests: a throwaway PostgreSQL cluster (initdb + pg_ctl in a temp dir).

As root, the cluster runs as the `postgres` system user (PostgreSQL refuses to run as root). Set
NOBLE_TEST_DATABASE_URL to use an existing server instead. Skips only when no PostgreSQL binaries exist.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path | None:
    env = os.environ.get("NOBLE_TEST_PG_BIN")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).resolve().parent if which else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server that lives for the test session."""
    external = os.environ.get("NOBLE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    bindir = _pg_bin()
    if bindir is None or not (bindir / "pg_ctl").exists():
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql, or set NOBLE_TEST_DATABASE_URL)")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="noble-pg-"))
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip("running as root and no 'postgres' user to run the server as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    port = free_port()
    init = subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "noble",
                           "-E", "UTF8", "--no-sync"], capture_output=True, text=True)
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr[-2000:]}")
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    start = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w",
                            "-t", "60", "-o", opts, "start"], capture_output=True, text=True)
    if start.returncode != 0:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {start.stderr[-1000:]} {log[-2000:]}")
    try:
        yield f"postgresql://noble@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
