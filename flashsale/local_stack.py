"""Whole stacks in child processes, for the load tests and the bench.

    LocalStack(settings, log_dir)      embedded Redis/Postgres, migrations, `flashsale serve
                                       --workers 2`, `flashsale worker run`, `flashsale sweeper`
    served_api(overrides, workers)     `flashsale serve` alone on a free port (the bench's
                                       engine-http design), stopped on exit

LocalStack gets fresh API keys (the run is the only client) and, with embedded servers, its own
data folder with 4 partitions (16 on the embedded Redis Cluster, FLASHSALE_EMBEDDED_CLUSTER), so
multi-SKU carts really cross partitions (on the cluster: primaries too).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from flashsale.embedded import Services, start_services
from flashsale.procs import free_port
from flashsale.settings import Settings
from loadtests.bench.http_design import ApiProcess

LOCAL_PARTITIONS = 4
CLUSTER_PARTITIONS = 16  # on the embedded cluster: 4-7 partitions per primary, carts span them
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class LocalStack:
    def __init__(self, settings: Settings, log_dir: Path, api_workers: int = 2) -> None:
        if not settings.redis_url:
            # Our own embedded servers: a separate folder, so partitions can differ from dev's.
            partitions = CLUSTER_PARTITIONS if settings.embedded_cluster else LOCAL_PARTITIONS
            settings = settings.model_copy(
                update={"data_dir": settings.data_dir / "loadtest", "partitions": partitions}
            )
        self.settings = settings
        self.log_dir = log_dir
        self.api_workers = api_workers
        self.admin_key = secrets.token_urlsafe(24)
        self.storefront_key = secrets.token_urlsafe(24)
        self.host = ""
        self._services: Services | None = None
        self._children: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from sync_worker.migrations import upgrade

        self._services = start_services(self.settings)
        self.settings = self.settings.model_copy(
            update={
                "redis_url": self._services.redis_url,
                "database_url": self._services.database_url,
            }
        )
        upgrade(self.settings.database_url or "")
        port = free_port()
        self.host = f"http://127.0.0.1:{port}"
        serve = ["serve", "--workers", str(self.api_workers), "--host", "127.0.0.1"]
        self._spawn("api", [*serve, "--port", str(port)])
        self._spawn("worker", ["worker", "run"])
        # An expired hold nobody reclaims would read as a leak in the verdict.
        self._spawn("sweeper", ["sweeper"])
        wait_healthy(self.host, self._children, lambda: f"logs in {self.log_dir}")

    def stop(self) -> None:
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            _reap(child)
        self._children.clear()
        if self._services is not None:
            self._services.stop()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
        s = self.settings
        env.update(
            FLASHSALE_REDIS_URL=str(s.redis_url),
            FLASHSALE_DATABASE_URL=str(s.database_url),
            FLASHSALE_DATA_DIR=str(s.data_dir.resolve()),
            FLASHSALE_PARTITIONS=str(s.partitions),
            FLASHSALE_REDIS_CLUSTER=str(s.redis_cluster).lower(),
            FLASHSALE_ADMIN_KEYS=self.admin_key,
            FLASHSALE_STOREFRONT_KEYS=self.storefront_key,
            FLASHSALE_TOKEN_SECRET=secrets.token_urlsafe(32),
            # Thousands of requests per customer per minute are the test, not abuse.
            FLASHSALE_RATE_LIMIT_PER_CUSTOMER="0",
            FLASHSALE_RATE_LIMIT_PER_KEY="0",
            FLASHSALE_WORKER_BLOCK_MS="200",
            PYTHONUNBUFFERED="1",
        )
        if s.lua_dir is not None:
            env["FLASHSALE_LUA_DIR"] = str(s.lua_dir.resolve())
        return env

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._children.append(spawn(argv, self._env(), self.log_dir / f"{name}.log"))


@contextlib.contextmanager
def served_api(overrides: Mapping[str, str], workers: int) -> Iterator[ApiProcess]:
    """`flashsale serve --workers N` on a free port, with this environment plus `overrides`."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **overrides, "PYTHONUNBUFFERED": "1"}
    # A log line per request would be what the bench measures.
    argv = ["serve", "--workers", str(workers), "--port", str(port), "--no-access-log"]
    with tempfile.TemporaryDirectory(prefix="flashsale-serve-") as tmp:
        log = Path(tmp) / "serve.log"
        server = spawn(argv, env, log)
        try:
            wait_healthy(base_url, [server], lambda: f"serve log:\n{_tail(log)}")
            yield ApiProcess(base_url, server.pid, log)
        finally:
            server.send_signal(signal.SIGTERM)
            _reap(server)


def spawn(argv: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m flashsale ARGV` in the background, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flashsale", *argv],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_healthy(
    base_url: str, children: Sequence[subprocess.Popen[bytes]], where: Callable[[], str]
) -> None:
    """Until /healthz answers 200; a child that exits or a timeout raises, saying `where()`."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"{child.args!r} exited early; {where()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"API not healthy after {START_TIMEOUT_S:.0f} s; {where()}")


def _reap(child: subprocess.Popen[bytes]) -> None:
    try:
        child.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
