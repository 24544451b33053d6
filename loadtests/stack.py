"""The local stack a run starts when no --host is given: embedded Redis/Postgres, migrations,
`flashsale serve --workers 2`, `flashsale worker run`, and the sweeper.

Fresh API keys per stack (the run is the only client). Its own data folder with 4 partitions,
so multi-SKU carts really cross partition streams. The sweeper: `flashsale sweeper` once that
command exists; until then the engine's own sweep loop in a thread of this process, because an
expired hold nobody reclaims would read as a leak in the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from engine.config import Settings
from flashsale.embedded import Services, start_services

LOCAL_PARTITIONS = 4
SWEEP_INTERVAL_S = 0.25  # holds in the runs live 1 s: reclaim them promptly


class LocalStack:
    def __init__(self, settings: Settings, log_dir: Path, api_workers: int = 2) -> None:
        if not settings.redis_url:
            # Our own embedded servers: a separate folder, so partitions can differ from dev's.
            settings = settings.model_copy(
                update={"data_dir": settings.data_dir / "loadtest", "partitions": LOCAL_PARTITIONS}
            )
        self.settings = settings
        self.log_dir = log_dir
        self.api_workers = api_workers
        self.admin_key = secrets.token_urlsafe(24)
        self.storefront_key = secrets.token_urlsafe(24)
        self.host = ""
        self._services: Services | None = None
        self._children: list[subprocess.Popen[bytes]] = []
        self._stop_sweeper = threading.Event()
        self._sweeper: threading.Thread | None = None

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
        port = _free_port()
        self.host = f"http://127.0.0.1:{port}"
        serve = ["serve", "--workers", str(self.api_workers), "--host", "127.0.0.1"]
        self._spawn("api", [*serve, "--port", str(port)])
        self._spawn("worker", ["worker", "run"])
        if _sweeper_command_exists():
            self._spawn("sweeper", ["sweeper"])
        else:
            self._sweeper = threading.Thread(target=self._sweep, daemon=True)
            self._sweeper.start()
        self._wait_healthy()

    def stop(self) -> None:
        self._stop_sweeper.set()
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
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
        with (self.log_dir / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "flashsale", *argv],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._children.append(child)

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self._children:
                if child.poll() is not None:
                    raise RuntimeError(f"{child.args!r} exited early; logs in {self.log_dir}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.host}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"API not healthy after {timeout} s; logs in {self.log_dir}")

    def _sweep(self) -> None:
        from engine.engine import ReservationEngine

        async def loop() -> None:
            engine = ReservationEngine.from_settings(self.settings)
            await engine.start()
            try:
                while not self._stop_sweeper.is_set():
                    await engine.sweep()
                    await asyncio.sleep(SWEEP_INTERVAL_S)
            finally:
                await engine.aclose()

        asyncio.run(loop())


def _sweeper_command_exists() -> bool:
    from flashsale.cli import STUBS

    return "sweeper" not in STUBS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
