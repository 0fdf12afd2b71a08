"""A throwaway PostgreSQL server on loopback, for the test suite and the benchmarks.

``initdb`` in a temporary directory, ``pg_ctl start`` on 127.0.0.1 and a free port (its Unix
socket in that directory too), trust authentication for one local superuser, databases created
on demand; ``stop()`` shuts it down and removes the directory. Nothing here is for production:
a deployment points ``--store-url``, the MLflow tracking URI and the Dagster instance at a
managed server (see docs/DEPLOYMENT.md).

The server binaries come from the system (Debian: ``apt-get install postgresql``, which
``make system-deps`` does; they live in ``/usr/lib/postgresql/<major>/bin``, not on PATH). As
root the server runs as the ``postgres`` OS user through ``runuser``, because ``initdb`` and
``postgres`` refuse to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

HOST = "127.0.0.1"
DEFAULT_SUPERUSER = "aios"
# For tests: no fsync, no synchronous commit; a crash loses the server, which is thrown away anyway.
FAST_SETTINGS: Mapping[str, str] = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be brought up here; the message says why and what to install."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: from PATH, else the newest
    ``/usr/lib/postgresql/<major>/bin`` (Debian keeps them off PATH)."""
    found = shutil.which("pg_ctl")
    if found and Path(found).resolve().with_name("initdb").exists():
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    candidates = [c for c in candidates if c.with_name("initdb").exists()]
    return candidates[-1].parent if candidates else None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class PostgresServer:
    """One throwaway cluster. ``start()`` then ``url(database)``/``create_database(name)``,
    ``stop()`` at the end (also a context manager)."""

    def __init__(self, *, superuser: str = DEFAULT_SUPERUSER, settings: Mapping[str, str] | None = None,
                 log_connections: bool = False, prefix: str = "aios_pg_"):
        if not _NAME.match(superuser):
            raise ValueError(f"superuser {superuser!r}: use lower-case letters, digits and _")
        self.superuser = superuser
        self.settings = dict(settings or {})
        self.log_connections = log_connections
        self.prefix = prefix
        self.root: Path | None = None
        self.port: int | None = None
        self.pid: int | None = None
        self.bin_dir: Path | None = None
        self.run_as_user: str | None = None
        self._run_as: list[str] = []
        self._started = False

    # ------------------------------------------------------------------ life cycle

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "start() the server first"
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        assert self.root is not None, "start() the server first"
        return self.root / "server.log"

    def _prepare(self) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise PostgresUnavailable(
                "the psycopg driver is not installed in this environment (install the optional extra: "
                "uv pip install -e '.[postgres]', which `make install` does)") from None
        self.bin_dir = postgres_bin_dir()
        if self.bin_dir is None:
            raise PostgresUnavailable(
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under /usr/lib/postgresql/*/bin; "
                "install them with `make system-deps` (Debian: apt-get install postgresql)")
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, and initdb refuses root; there is no 'postgres' OS "
                                          "user to run the server as (Debian's postgresql package creates it)") from None
            runuser = shutil.which("runuser")
            if runuser is None:
                raise PostgresUnavailable("running as root, and initdb refuses root; runuser is not available")
            self._run_as = [runuser, "-u", owner.pw_name, "--"]
            self.run_as_user = owner.pw_name
        # not under pytest's tmp_path: that is root-only (0700), and the server runs as 'postgres'
        self.root = Path(tempfile.mkdtemp(prefix=self.prefix))
        if self.run_as_user is not None:
            owner = pwd.getpwnam(self.run_as_user)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        completed = subprocess.run([*self._run_as, *args], capture_output=True, text=True, check=False,
                                   cwd=self.root, stdin=subprocess.DEVNULL, timeout=timeout)
        if completed.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed ({completed.returncode}): "
                f"{(completed.stderr or completed.stdout).strip()[-800:]}\n{_tail(self.log_path)}")
        return completed

    def start(self) -> "PostgresServer":
        if self._started:
            return self
        self._prepare()
        try:
            self._run(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                      "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
            self.port = free_port()
            options = [f"-k {self.root}", f"-p {self.port}", f"-c listen_addresses={HOST}"]
            if self.log_connections:
                options.append("-c log_connections=on")
            options += [f"-c {name}={value}" for name, value in self.settings.items()]
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                      "-w", "-t", "120", "-o", " ".join(options), "start")
            self._started = True
            self.pid = int((self.data_dir / "postmaster.pid").read_text(encoding="ascii").splitlines()[0])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended) and remove its directory."""
        if self._started and self.bin_dir is not None:
            subprocess.run([*self._run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                            "-w", "-t", "60", "stop"], capture_output=True, text=True, check=False, cwd=self.root,
                           stdin=subprocess.DEVNULL, timeout=120)
            self._started = False
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ use

    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy URL of a database (``driver`` ``psycopg`` is psycopg 3; ``psycopg2`` for
        libraries that use psycopg2, such as dagster-postgres)."""
        if not self._started:
            raise RuntimeError("the PostgreSQL server is not running")
        return f"postgresql+{driver}://{self.superuser}@{HOST}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host=HOST, port=self.port, user=self.superuser, dbname=database, autocommit=True)

    def create_database(self, name: str, driver: str = "psycopg") -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        if not _NAME.match(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _ (at most 63)")
        with self.connect() as conn:
            conn.execute(f'create database "{name}"')
        return self.url(name, driver)

    def version(self) -> str:
        with self.connect() as conn:
            return conn.execute("show server_version").fetchone()[0]

    def current_settings(self, names: tuple[str, ...] = ("shared_buffers", "fsync", "synchronous_commit",
                                                         "max_connections", "wal_level")) -> dict[str, str]:
        with self.connect() as conn:
            rows = conn.execute("select name, setting from pg_settings where name = any(%s)", [list(names)]).fetchall()
        return dict(rows)


@contextlib.contextmanager
def postgres_cluster(database_names: list[str], *, superuser: str = DEFAULT_SUPERUSER,
                     settings: Mapping[str, str] | None = None, log_connections: bool = False,
                     prefix: str = "aios_pg_") -> Iterator[dict[str, Any]]:
    """A started server with ``database_names`` created empty, described as a dict (urls by
    database, pid, port, version, settings, bin_dir, run_as, log_path, server); stopped and
    removed when the block ends."""
    server = PostgresServer(superuser=superuser, settings=settings, log_connections=log_connections, prefix=prefix)
    with server:
        urls = {name: server.create_database(name) for name in database_names}
        yield {
            "urls": urls,
            "pid": server.pid,
            "port": server.port,
            "version": server.version(),
            "settings": server.current_settings(),
            "bin_dir": str(server.bin_dir),
            "run_as": server.run_as_user,
            "log_path": server.log_path,
            "server": server,
        }
