"""A throwaway PostgreSQL server for tests: ``initdb`` in a temp directory as an unprivileged user, ``postgres`` on
127.0.0.1 at a free port, a fresh database per caller, stopped (only the PID started here) at the end.

``SQUALL_TEST_BACKEND=postgres`` makes the contract suite and the store-backed e2e tests run on it; ``both`` (what
scripts/test.sh sets) runs them a second time so, as modules of their own in the same pytest run (tests/conftest.py).  Binaries: Debian's ``postgresql`` package (``/usr/lib/postgresql/N/bin``
or ``PG_BIN``); tests that need it skip with the reason when it is missing.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from squall.store.db import DbTarget, PgTarget

__all__ = [
    "BACKEND_ENV",
    "PgServer",
    "backend",
    "backend_setting",
    "close_shared",
    "database_for",
    "find_pg_bin",
    "pg_database",
    "shared_server",
    "store_target",
]


BACKEND_ENV = "SQUALL_TEST_BACKEND"


def backend_setting() -> str:
    """``SQUALL_TEST_BACKEND``: ``sqlite`` (the default), ``postgres``, or ``both`` (tests/conftest.py)."""
    return os.environ.get(BACKEND_ENV, "sqlite").strip().lower() or "sqlite"


def backend() -> str:
    """``sqlite`` or ``postgres``: the store backend of the running test (``both`` is SQLite but in the PostgreSQL
    variants of tests/conftest.py's modules, which set ``postgres`` while they run)."""
    return "postgres" if backend_setting() == "postgres" else "sqlite"


def find_pg_bin() -> Path | None:
    """The directory holding initdb and postgres (the newest Debian version), or None."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster.  ``start()``, ``database()`` for a fresh database URL, ``stop()``/``restart()``."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix="squall-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # postgres refuses to run as root: as the postgres user where the package made one, else nobody
        self.user = "postgres" if _has_user("postgres") else "nobody"
        ent = pwd.getpwnam(self.user)
        self._uid, self._gid = ent.pw_uid, ent.pw_gid
        os.chown(self.root, self._uid, self._gid)
        os.chmod(self.root, 0o700)

    @property
    def base_url(self) -> str:
        return f"postgresql://squall@127.0.0.1:{self.port}"

    def _demote(self) -> None:
        os.setgid(self._gid)
        os.setgroups([])
        os.setuid(self._uid)

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, preexec_fn=self._demote, cwd=self.root)

    def start(self) -> PgServer:
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "squall", "--auth=trust", "-E", "UTF8",
                "--no-sync", "--locale=C.UTF-8",
            )  # fmt: skip
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
            ],
            stdout=log,
            stderr=log,
            preexec_fn=self._demote,
            cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'postgres.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if self._ready():
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not accept connections within 60 s")
            time.sleep(0.05)

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(f"{self.base_url}/postgres", connect_timeout=2) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}".lower()
        with psycopg.connect(f"{self.base_url}/postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return f"{self.base_url}/{name}"

    def stop(self) -> None:
        """Fast shutdown of the postgres this object started (its PID only); waits for it to exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # "fast" shutdown: clients disconnected, transactions rolled back
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


_shared: PgServer | None = None
_databases: dict[str, str] = {}


def shared_server() -> PgServer:
    """The suite's PostgreSQL server, started at first use and stopped at the end of the session (or at exit)."""
    global _shared
    if _shared is None:
        _shared = PgServer().start()
        atexit.register(close_shared)
    return _shared


def close_shared() -> None:
    global _shared
    server, _shared = _shared, None
    _databases.clear()
    if server is not None:
        server.close()


def database_for(key: Path) -> str:
    """One database per data directory (a server restarted on the same data dir finds its state again)."""
    k = str(key.resolve())
    if k not in _databases:
        _databases[k] = shared_server().database(Path(k).name[:20] or "t")
    return _databases[k]


def store_target(path: Path, name: str) -> DbTarget:
    """Where a test's store lives: the SQLite file ``path``, or (``SQUALL_TEST_BACKEND=postgres``) store ``name`` in
    the database of ``path``'s directory."""
    return PgTarget(database_for(path.parent), name) if backend() == "postgres" else path


def pg_database(root: Path, name: str) -> PgTarget | None:
    """For stores that take an optional database (the object store): store ``name`` there, or None on SQLite."""
    return PgTarget(database_for(root), name) if backend() == "postgres" else None
