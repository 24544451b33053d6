"""`flashsale dev`: the whole stack on one machine, and nothing left behind on Ctrl-C.

Order: services → migrations → demo seed → API, worker, sweeper as children in one process group.
The children get their own group, not ours, so a terminal's Ctrl-C reaches only this supervisor,
which stops them first and the servers after: the worker must never outlive the Redis it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import FrameType

import typer

from flashsale.embedded import Services, start_services
from flashsale.procs import Progress, port_open
from flashsale.settings import Settings
from flashsale.ui import console, settings_or_exit

# name shown → argv after `python -m flashsale`
CHILDREN: dict[str, list[str]] = {
    "api": ["serve"],
    "worker": ["worker", "run"],
    "sweeper": ["sweeper"],
}
API_READY_TIMEOUT_S = 60.0
CHILD_STOP_TIMEOUT_S = 20.0
_PR_SET_PDEATHSIG = 1


class _Stop(Exception):
    """SIGTERM, delivered like Ctrl-C so both unwind through the same cleanup."""


def dev() -> None:
    """Run the whole stack locally: services, migrations, demo sale, API, worker, sweeper."""
    raise typer.Exit(run_dev(settings_or_exit()))


def run_dev(settings: Settings) -> int:
    """Run until Ctrl-C/SIGTERM (exit 0) or a child dies (exit 1)."""
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    # Explicit: a shell starting us in the background leaves SIGINT ignored, and Ctrl-C (or
    # `kill -INT`) must still stop the stack.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    services: Services | None = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with console.status("starting Redis and Postgres…") as status:
            services = start_services(settings, status.update)
            settings = settings.model_copy(
                update={"redis_url": services.redis_url, "database_url": services.database_url}
            )
            _prepare(settings, status.update)
        console.print(f"Redis     {services.redis_url}")
        console.print(f"Postgres  {services.database_url}")
        children = _spawn_children(settings)
        _announce_api(settings, children["api"])
        console.print("[dim]Ctrl-C stops everything.[/dim]")
        return _supervise(children)
    except (KeyboardInterrupt, _Stop):
        return 0
    finally:
        # A second Ctrl-C must not cut the cleanup short and strand a server.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with console.status("stopping…") as status:
            _stop_children(children)
            if services is not None:
                services.stop(status.update)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)
        console.print("stopped.")


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _prepare(settings: Settings, progress: Progress) -> None:
    from flashsale.demo import seed
    from sync_worker.migrations import upgrade

    progress("migrating the database…")
    upgrade(str(settings.database_url))
    progress("seeding the demo sale…")
    asyncio.run(seed(settings))


def _spawn_children(settings: Settings) -> dict[str, subprocess.Popen[bytes]]:
    env = dict(os.environ)
    # Children must use the servers just started, never start their own.
    env.update(
        FLASHSALE_REDIS_URL=str(settings.redis_url),
        FLASHSALE_DATABASE_URL=str(settings.database_url),
        FLASHSALE_REDIS_CLUSTER=str(settings.redis_cluster).lower(),
        FLASHSALE_DATA_DIR=str(settings.data_dir.resolve()),
        FLASHSALE_API_HOST=settings.api_host,
        FLASHSALE_API_PORT=str(settings.api_port),
        PYTHONUNBUFFERED="1",
    )
    children: dict[str, subprocess.Popen[bytes]] = {}
    group = 0  # 0: the first child leads a new group, the others join it
    for name, argv in CHILDREN.items():
        child = subprocess.Popen(
            [sys.executable, "-m", "flashsale", *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            process_group=group,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        group = group or child.pid
        children[name] = child
    return children


def _die_with_parent() -> None:
    # Even a SIGKILLed supervisor must not leave an API holding the port.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _announce_api(settings: Settings, api: subprocess.Popen[bytes]) -> None:
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    docs = f"http://{host}:{settings.api_port}/docs"
    deadline = time.monotonic() + API_READY_TIMEOUT_S
    while api.poll() is None and time.monotonic() < deadline:
        if port_open(host, settings.api_port):
            console.print(f"[bold green]API docs  {docs}[/bold green]")
            return
        time.sleep(0.2)
    console.print(f"[yellow]API not answering on {host}:{settings.api_port} yet[/yellow]")


def _supervise(children: Mapping[str, subprocess.Popen[bytes]]) -> int:
    while True:
        for name, child in children.items():
            code = child.poll()
            if code is not None:
                console.print(f"[red]{name} exited with code {code}; stopping the stack[/red]")
                return 1
        time.sleep(0.5)


def _stop_children(children: Mapping[str, subprocess.Popen[bytes]]) -> None:
    if not children:
        return
    group = next(iter(children.values())).pid
    # The whole group: uvicorn's worker processes are grandchildren.
    for sig, wait_s in ((signal.SIGTERM, CHILD_STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
        deadline = time.monotonic() + wait_s
        for child in children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
        if all(child.poll() is not None for child in children.values()) and not _group_alive(group):
            return


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
