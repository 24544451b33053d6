"""`flashsale dev`: the whole stack on one machine, restarted child by child until Ctrl-C.

Order: claim the data folder → check the API port → services → migrations → demo seed → keys →
API, worker, sweeper as children. Each child leads its own process group, not ours, so a
terminal's Ctrl-C reaches only this supervisor, which stops them first and the servers after: the
worker must never outlive the Redis it drains. A child that exits is started again after a
backoff. On the way out only the servers this run started are stopped, and only while they are
still the processes it started; the last lines say what stays running and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import typer

from flashsale.banner import demo_hint
from flashsale.embedded import Services, embedded_servers, start_services
from flashsale.procs import Progress, port_open, read_state, try_lock
from flashsale.settings import Settings
from flashsale.ui import console, fail, masked, settings_or_exit

# name shown → argv after `python -m flashsale`
CHILDREN: dict[str, list[str]] = {
    "api": ["serve"],
    "worker": ["worker", "run"],
    "sweeper": ["sweeper"],
    "webhooks": ["webhooks", "run"],
}
API_READY_TIMEOUT_S = 60.0
CHILD_STOP_TIMEOUT_S = 20.0
RESTART_DELAY_S = 1.0  # doubled after each exit in a row, up to RESTART_DELAY_MAX_S
RESTART_DELAY_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long before exiting starts the backoff afresh
SECRETS_FILE = "dev-secrets.json"
RUNNING_FILE = "dev.json"  # locked while a dev stack runs on the data folder: its pid and URL
_PR_SET_PDEATHSIG = 1


class _Stop(Exception):
    """SIGTERM, delivered like Ctrl-C so both unwind through the same cleanup."""


def dev() -> None:
    """Run the whole stack locally: services, migrations, demo sale, API, worker, sweeper.

    A child that exits is restarted. API keys and the token secret are kept in the data folder
    (dev-secrets.json), so they stay valid across runs; FLASHSALE_* variables override them."""
    raise typer.Exit(run_dev(settings_or_exit()))


def run_dev(settings: Settings) -> int:
    """Run until Ctrl-C/SIGTERM (exit 0); exit 1 when the stack cannot start."""
    claim = _claim_data_dir(settings)
    try:
        _check_api_port(settings)
    except BaseException:
        _release(claim, settings)
        raise
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    # Explicit: a shell starting us in the background leaves SIGINT ignored, and Ctrl-C (or
    # `kill -INT`) must still stop the stack.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    services: Services | None = None
    children: list[_Child] = []
    ours: list[str] = []  # the servers this run started
    try:
        with console.status("starting Redis and Postgres…") as status:
            services = start_services(settings, status.update)
            ours = [started.server.name for started in services.started]
            settings = settings.model_copy(
                update={"redis_url": services.redis_url, "database_url": services.database_url}
            )
            _prepare(settings, status.update)
        _say(f"Redis     {masked(services.redis_url)}")
        _say(f"Postgres  {masked(services.database_url)}")
        env = _child_env(settings)
        children = [_Child(name, argv, env) for name, argv in CHILDREN.items()]
        for child in children:
            child.start()
        storefront_keys = env.get("FLASHSALE_STOREFRONT_KEYS", settings.storefront_keys)
        _announce_api(settings, children[0], storefront_keys.split(",")[0].strip())
        _say(f"[dim]{_ctrl_c_stops(settings, services, ours)}[/dim]")
        _supervise(children)
    except (KeyboardInterrupt, _Stop):
        pass
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
        for line in _left_running(settings, services, ours):
            _say(f"[yellow]{line}[/yellow]")
        _release(claim, settings)
        _say("stopped.")
    return 0


def _say(text: str) -> None:
    # No wrapping at the terminal's width: a key or a URL cut in two cannot be pasted.
    console.print(text, soft_wrap=True)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


# ---- Before anything starts ---------------------------------------------------------------


def _claim_data_dir(settings: Settings) -> IO[str]:
    """Hold the data folder's dev lock for this run; refuse when another dev stack holds it."""
    path = settings.data_dir / RUNNING_FILE
    claim = try_lock(path)
    if claim is None:
        other = read_state(path) or {}
        url = other.get("url") or "?"
        fail(
            f"a dev stack already runs on {settings.data_dir} (pid {other.get('pid', '?')}, API "
            f"at {url}): use that one, stop it, or start another with its own FLASHSALE_DATA_DIR "
            "and FLASHSALE_API_PORT"
        )
    claim.seek(0)
    claim.truncate()
    claim.write(
        json.dumps({"pid": os.getpid(), "port": settings.api_port, "url": _api_url(settings)})
    )
    claim.flush()
    return claim


def _api_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    return f"http://{host}:{settings.api_port}"


def _release(claim: IO[str], settings: Settings) -> None:
    # Unlinked while still locked: a dev starting now finds no file, or a locked one.
    with contextlib.suppress(OSError):
        (settings.data_dir / RUNNING_FILE).unlink()
    claim.close()


def _check_api_port(settings: Settings) -> None:
    if settings.api_port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in settings.api_host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((settings.api_host, settings.api_port))
        except OSError as exc:
            fail(
                f"the API address {settings.api_host}:{settings.api_port} is taken by another "
                f"program ({exc.strerror}): set FLASHSALE_API_PORT to a free port"
            )


# ---- Starting -----------------------------------------------------------------------------


def _prepare(settings: Settings, progress: Progress) -> None:
    from flashsale.demo import seed
    from sync_worker.migrations import upgrade

    progress("migrating the database…")
    upgrade(str(settings.database_url))
    progress("seeding the demo sale…")
    asyncio.run(seed(settings))


def _child_env(settings: Settings) -> dict[str, str]:
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
    secrets_env, lines = dev_secrets(settings)
    env.update(secrets_env)
    for line in lines:
        _say(line)
    return env


def dev_secrets(settings: Settings) -> tuple[dict[str, str], list[str]]:
    """The FLASHSALE_* variables that give the API this data folder's keys and token secret
    (made on the first run, kept in dev-secrets.json, mode 0600), and the lines that say so.

    Variables already set win: they are not overridden, stored, or printed."""
    path = settings.data_dir / SECRETS_FILE
    kept = _read_secrets(path)
    if kept is None:
        kept = {
            "admin_key": f"adm_{secrets.token_urlsafe(24)}",
            "storefront_key": f"sf_{secrets.token_urlsafe(24)}",
            "token_secret": secrets.token_urlsafe(32),
        }
        _write_private(path, json.dumps(kept, indent=2))
    env: dict[str, str] = {}
    lines: list[str] = []
    if settings.admin_key_list or settings.storefront_key_list:
        lines.append("API keys  from FLASHSALE_ADMIN_KEYS / FLASHSALE_STOREFRONT_KEYS")
    else:
        env["FLASHSALE_ADMIN_KEYS"] = kept["admin_key"]
        env["FLASHSALE_STOREFRONT_KEYS"] = kept["storefront_key"]
        lines += [
            f"API keys  (kept in {path})",
            f"  admin       {kept['admin_key']}",
            f"  storefront  {kept['storefront_key']}",
        ]
    if settings.token_secret:
        lines.append("[dim]reservation tokens signed with FLASHSALE_TOKEN_SECRET[/dim]")
    else:
        env["FLASHSALE_TOKEN_SECRET"] = kept["token_secret"]
        lines.append(f"[dim]reservation tokens stay valid across runs (secret in {path})[/dim]")
    return env, lines


def _read_secrets(path: Path) -> dict[str, str] | None:
    data = read_state(path)
    names = ("admin_key", "storefront_key", "token_secret")
    if data is None or not all(isinstance(data.get(n), str) and data[n] for n in names):
        return None  # none yet, or damaged: new ones (old keys and tokens stop working)
    return {n: data[n] for n in names}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    # Created 0600: the secret is never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


@dataclass
class _Child:
    """One child process and its restart bookkeeping."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    exits_in_a_row: int = 0
    restart_at: float = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flashsale", *self.argv],
            env=self.env,
            stdin=subprocess.DEVNULL,
            process_group=0,  # its own group: uvicorn's worker processes are grandchildren
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.started = time.monotonic()

    def check(self) -> None:
        """Notice an exit (and schedule the restart), or restart once the delay has passed."""
        now = time.monotonic()
        if self.process is None:
            if now >= self.restart_at:
                self.start()
                assert self.process is not None
                _say(f"[green]{self.name} restarted (pid {self.process.pid})[/green]")
            return
        code = self.process.poll()
        if code is None:
            return
        _signal_group(self.process.pid, signal.SIGKILL)  # what it left behind (uvicorn workers)
        self.process = None
        ran_long = now - self.started >= STABLE_AFTER_S
        self.exits_in_a_row = 1 if ran_long else self.exits_in_a_row + 1
        delay = min(RESTART_DELAY_MAX_S, RESTART_DELAY_S * 2 ** (self.exits_in_a_row - 1))
        self.restart_at = now + delay
        _say(f"[red]{self.name} {_how_it_ended(code)}; restarting it in {delay:.0f} s[/red]")


def _how_it_ended(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _die_with_parent() -> None:
    # Even a SIGKILLed supervisor must not leave an API holding the port.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _announce_api(settings: Settings, api: _Child, storefront_key: str) -> None:
    url = _api_url(settings)
    host = url.rpartition("//")[2].rpartition(":")[0]
    deadline = time.monotonic() + API_READY_TIMEOUT_S
    while api.process is not None and api.process.poll() is None:
        if port_open(host, settings.api_port):
            _say(f"[bold green]API docs  {url}/docs[/bold green]")
            _say(f"[bold green]Console   {url}/console[/bold green] (log in with the admin key)")
            for line in demo_hint(url, storefront_key or "<a storefront key>"):
                console.print(line, soft_wrap=True, markup=False)  # JSON brackets are not markup
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    _say(f"[yellow]API not answering on {host}:{settings.api_port} yet[/yellow]")


def _ctrl_c_stops(settings: Settings, services: Services, ours: list[str]) -> str:
    staying = _not_ours(settings, services, ours)
    if not staying:
        return "Ctrl-C stops everything."
    stops = ", ".join(["the API", "worker", "sweeper", *ours])
    return f"Ctrl-C stops {stops}; stays up: {'; '.join(staying)}."


# ---- Running and stopping -----------------------------------------------------------------


def _supervise(children: list[_Child]) -> None:
    while True:
        for child in children:
            child.check()
        time.sleep(0.5)


def _stop_children(children: Iterable[_Child]) -> None:
    running = [child.process for child in children if child.process is not None]
    for sig, wait_s in ((signal.SIGTERM, CHILD_STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
        for process in running:
            _signal_group(process.pid, sig)
        deadline = time.monotonic() + wait_s
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        if not any(_group_alive(process.pid) for process in running):
            return


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _not_ours(settings: Settings, services: Services, ours: list[str]) -> list[str]:
    """The servers this run uses but did not start, and why they are not its to stop."""
    reasons = []
    for name, variable, url in (
        ("Redis", "FLASHSALE_REDIS_URL", settings.redis_url),
        ("Postgres", "FLASHSALE_DATABASE_URL", settings.database_url),
    ):
        if url and not any(_serves(server, name) for server in ours):
            if any(_serves(server.name, name) for server in services.already_running):
                reasons.append(
                    f"{name} (already running when dev started; `flashsale services down` stops it)"
                )
            else:
                reasons.append(f"{name} at {masked(url)} (given by {variable}, not dev's to stop)")
    return reasons


def _serves(server: str, name: str) -> bool:
    """Whether an embedded server (by its name) is the `name` server: "Redis-cluster" is Redis."""
    return server == name or server.startswith(f"{name}-")


def _left_running(settings: Settings, services: Services | None, ours: list[str]) -> list[str]:
    """What stays up after the cleanup, and why: one line each."""
    if services is None:
        return []
    lines = [f"left running: {reason}" for reason in _not_ours(settings, services, ours)]
    for server in embedded_servers(settings):
        if server.name in ours and server.is_running():
            lines.append(
                f"left running: {server.name} (started again by another process while dev "
                "ran, so not dev's to stop: `flashsale services down`)"
            )
    return lines
