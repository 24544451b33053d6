"""A throwaway redis-server child process, optionally a replica of another Redis: what the bench
needs to price zero-loss mode (a primary with one replica), and what tests stop and pause.

No AOF and no RDB: it holds a copy for as long as it runs, nothing more.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flashsale.procs import HOST, EmbeddedServerError, free_port, log_tail, wait_until
from flashsale.redis_server import find_redis_server

START_TIMEOUT_S = 30.0


class ChildRedis:
    """redis-server on a free port in `home`, a replica of `replica_of` (a URL) when given."""

    def __init__(self, home: Path, replica_of: str | None = None) -> None:
        self.home = home
        self.replica_of = replica_of
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise EmbeddedServerError("this Redis was not started")
        return self._process.pid

    def start(self) -> str:
        """Starts the server; a replica returns once its link to the primary is up and synced."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port(HOST)
        args = [
            find_redis_server(),
            *("--port", str(self.port), "--bind", HOST, "--dir", str(self.home)),
            *("--appendonly", "no", "--save", ""),
            *("--logfile", str(self.home / "redis.log")),
        ]
        if self.replica_of is not None:
            primary = urlsplit(self.replica_of)
            args += ["--replicaof", str(primary.hostname), str(primary.port or 6379)]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        if not wait_until(self._ready, START_TIMEOUT_S) or self._process.poll() is not None:
            self.stop()
            raise EmbeddedServerError(f"Redis did not start: {log_tail(self.home / 'redis.log')}")
        return self.url

    def linked(self) -> bool:
        """A replica whose link to its primary is up (always True for a primary)."""
        try:
            with self._client() as client:
                info = client.info("replication")
        except redis.RedisError:
            return False
        return info.get("role") == "master" or info.get("master_link_status") == "up"

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers and acknowledges nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self.resume()  # a stopped process would not see SIGTERM until continued
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            return True  # died: start() reads the log
        return self.linked()

    def _client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
