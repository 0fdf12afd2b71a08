"""A throwaway Redis server on loopback, for the Celery tests: the broker and result backend of
Dagster's Celery executor (tests/test_celery_multiworker.py).

``redis-server`` in a temporary directory on 127.0.0.1 and a free port, no persistence (no RDB
snapshots, no append-only file), no password; ``stop()`` shuts it down and removes the
directory. Nothing here is for production: a deployment points the executor at a managed Redis
(see docs/DEPLOYMENT.md).

The binary comes from the system (Debian: ``apt-get install redis-server``, which
``make system-deps`` does).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from aios_pipelines.storage.postgres_server import HOST, free_port


class RedisUnavailable(RuntimeError):
    """Redis cannot be brought up here; the message says why and what to install."""


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (str(p) for p in (Path("/usr/bin/redis-server"), Path("/usr/sbin/redis-server")) if p.exists()), None)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ping(port: int, timeout: float = 1.0) -> bool:
    """A Redis PING over a plain socket (no client library needed)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One throwaway server. ``start()`` then ``url(db)``, ``stop()`` at the end (also a
    context manager)."""

    def __init__(self, *, prefix: str = "aios_redis_"):
        self.prefix = prefix
        self.root: Path | None = None
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        assert self.root is not None, "start() the server first"
        return self.root / "redis.log"

    def start(self, timeout: float = 30.0) -> "RedisServer":
        if self.process is not None:
            return self
        binary = redis_server_binary()
        if binary is None:
            raise RedisUnavailable("no redis-server binary on PATH; install it with `make system-deps` "
                                   "(Debian: apt-get install redis-server)")
        self.root = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.port = free_port()
        args = [binary, "--bind", HOST, "--port", str(self.port), "--dir", str(self.root),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", str(self.log_path)]
        try:
            self.process = subprocess.Popen(args, cwd=self.root, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + timeout
            while not _ping(self.port):
                if self.process.poll() is not None:
                    error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    raise RedisUnavailable(f"redis-server exited ({self.process.returncode}): "
                                           f"{error.strip()[-800:]}\n{_tail(self.log_path)}")
                if time.monotonic() > deadline:
                    raise RedisUnavailable(f"redis-server did not answer on {HOST}:{self.port} within {timeout:.0f} s"
                                           f"\n{_tail(self.log_path)}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its directory."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, db: int = 0) -> str:
        if self.process is None or self.port is None:
            raise RuntimeError("the Redis server is not running")
        return f"redis://{HOST}:{self.port}/{db}"

    def ping(self) -> bool:
        return self.port is not None and _ping(self.port)
