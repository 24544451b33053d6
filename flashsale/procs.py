"""Process plumbing shared by the embedded servers (ports, pids, state files, locks, waiting) and
the start/stop shape they have in common (EmbeddedServer)."""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from engine.errors import FlashsaleError

Progress = Callable[[str], None]
# A running process told apart from a later one that got the same pid: (pid, start time).
Identity = tuple[int, str | None]

HOST = "127.0.0.1"  # loopback only: the embedded servers ask no password of whoever connects


class EmbeddedServerError(FlashsaleError):
    """An embedded server could not be found, started or stopped; the message is one line."""


def no_progress(message: str) -> None:
    """Default progress sink: library callers that pass none see nothing."""


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """A port nobody listens on now; the previous one when still free, so URLs stay stable."""
    candidates = ([preferred] if preferred else []) + [0]
    for candidate in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers bind: a port whose old connections linger in TIME_WAIT after a stop
            # is free to them, and only a listener makes it busy (Linux refuses that even so).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise EmbeddedServerError(f"no free TCP port on {host}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    # Reap first: a server we spawned and that died stays a zombie (kill(0) succeeds on it)
    # until its parent waits for it.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runs_program(pid: int, program: str) -> bool:
    """Alive and still `program`: after a reboot a recorded pid may belong to anyone."""
    if pid <= 0 or not pid_alive(pid):
        return False
    with contextlib.suppress(OSError):
        return program.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    return True  # no /proc (macOS): trust the pid


def started_at(pid: int) -> str | None:
    """When the process started (clock ticks since boot, from /proc), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so count from its closing parenthesis.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL once `grace` seconds pass; returns when the pid is gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_until(lambda: not pid_alive(pid), wait):
            return
    raise EmbeddedServerError(f"process {pid} survived SIGKILL")


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)  # atomic: a concurrent `status` never reads half a file


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise start/stop of one server across processes (`dev` and `services up` racing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def try_lock(path: Path) -> IO[str] | None:
    """An exclusive lock held while the returned file stays open (and released if the process
    dies, however), or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in tail) or "(empty log)"


class EmbeddedServer(abc.ABC):
    """What the embedded servers share: a lock that serialises their start and stop, a JSON state
    file that keeps the last port, and starting on that port again when it is still free.

    A subclass says how to launch its server, find it running, and ask it to stop.
    """

    def __init__(self, name: str, data_dir: Path, log_name: str) -> None:
        self.name = name
        self.data_dir = Path(data_dir).resolve()
        key = name.lower()
        self.home = self.data_dir / key
        self.log_path = self.home / log_name
        self.state_path = self.data_dir / f"{key}.json"
        self.lock_path = self.data_dir / f"{key}.lock"

    @abc.abstractmethod
    def start(self, progress: Progress = no_progress) -> str:
        """Start the server unless it runs; its URL either way."""

    @abc.abstractmethod
    def _live(self, answering: bool = True) -> tuple[int, int] | None:
        """(pid, port) of the server running on this data (and answering on its port), else None."""

    @abc.abstractmethod
    def _url(self, port: int) -> str: ...

    @abc.abstractmethod
    def _shut_down(self, pid: int, port: int) -> None:
        """Return once the server is gone."""

    @property
    def url(self) -> str | None:
        """The URL to use while the server runs, else None."""
        live = self._live()
        return self._url(live[1]) if live else None

    def is_running(self) -> bool:
        return self._live() is not None

    def identity(self) -> Identity | None:
        """Which process runs the server now (answering or not), else None."""
        live = self._live(answering=False)
        return (live[0], started_at(live[0])) if live else None

    def stop(self, progress: Progress = no_progress, only: Identity | None = None) -> bool:
        """Stop the server if it runs (with `only`: if it still is that process, not one another
        program started since); True when there was one to stop."""
        with locked(self.lock_path):
            # A server that hangs without answering must still be stopped.
            live = self._live(answering=False)
            if live is None:
                return False
            pid, port = live
            if only is not None and (pid, started_at(pid)) != only:
                return False
            progress(f"stopping {self.name} (pid {pid})")
            self._shut_down(pid, port)
            return True

    def _start_on_free_port(
        self, launch: Callable[[int], int | None], progress: Progress, **state: Any
    ) -> int:
        """Launch (which returns the server's pid, or None when it did not come up) on the last
        port when it is free, so URLs stay stable; records pid and port and returns the port."""
        previous = (read_state(self.state_path) or {}).get("port")
        for attempt in range(3):
            # Another program may take the free port between our probe and the server's bind.
            port = free_port(HOST, previous if attempt == 0 else None)
            progress(f"starting {self.name} on {HOST}:{port} (data in {self.home})")
            pid = launch(port)
            if pid is not None:
                write_state(self.state_path, pid=pid, port=port, **state)
                return port
        raise EmbeddedServerError(f"{self.name} did not start: {log_tail(self.log_path)}")
