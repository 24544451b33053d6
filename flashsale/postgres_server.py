"""A real Postgres in a local folder: the binaries the `pgserver` wheel ships, else pg_ctl on PATH.

Postgres refuses to run as root. As root (containers, CI) the cluster belongs to an unprivileged
system user (`pgserver`, the one the pgserver package uses too) and initdb/pg_ctl run as it.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from flashsale import pg_user
from flashsale.procs import (
    EmbeddedServerError,
    Progress,
    free_port,
    locked,
    log_tail,
    no_progress,
    pid_alive,
    port_open,
    read_state,
    runs_program,
    terminate,
    write_state,
)

HOST = "127.0.0.1"
DATABASE = "flashsale"
SUPERUSER = "postgres"
PG_CTL_TIMEOUT_S = 120  # crash recovery of a big WAL can be slow; bounded all the same
UNIX_SOCKET_MAX = 100  # sun_path holds 104-108 bytes depending on the OS


def find_bin_dir() -> Path:
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if (bundled / "pg_ctl").is_file():
            return bundled
    on_path = shutil.which("pg_ctl")
    if on_path:
        # initdb finds `postgres` next to itself, so follow /usr/local/bin-style symlinks.
        return Path(on_path).resolve().parent
    raise EmbeddedServerError(
        "no Postgres binaries found: install the embedded extra (pip install -e '.[embedded]') "
        "or set FLASHSALE_DATABASE_URL"
    )


class EmbeddedPostgres:
    """Postgres in `data_dir/postgres`, on a free loopback port, trust auth, database `flashsale`.

    The postmaster detaches (pg_ctl starts it in its own session), so it outlives the process that
    started it; its `postmaster.pid` tells any process whether it runs and on which port.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "postgres"
        self.socket_dir = self.data_dir / "postgres-run"
        self.log_path = self.pgdata / "server.log"
        self.state_path = self.data_dir / "postgres.json"

    @property
    def url(self) -> str | None:
        """The `flashsale` database's URL while the server runs, else None."""
        live = self._postmaster()
        return _url(live[1]) if live else None

    def is_running(self) -> bool:
        return self._postmaster() is not None

    def start(self, progress: Progress = no_progress) -> str:
        with locked(self.data_dir / "postgres.lock"):
            live = self._postmaster()
            if live is None:
                bin_dir = find_bin_dir()
                user = pg_user.service_user()
                if user is not None:
                    pg_user.grant_access(bin_dir, self.data_dir)
                if not (self.pgdata / "PG_VERSION").exists():
                    progress(f"initialising a Postgres cluster in {self.pgdata}")
                    pg_user.make_private_dir(self.pgdata, user)
                    initdb_args = ["--auth=trust", "--encoding=UTF8", "-U", SUPERUSER]
                    self._run(bin_dir / "initdb", initdb_args, user)
                live = self._start_server(bin_dir, user, progress)
            _ensure_database(live[1])
            return _url(live[1])

    def stop(self, progress: Progress = no_progress) -> bool:
        """Stop the server if it runs; True when there was one to stop."""
        with locked(self.data_dir / "postgres.lock"):
            live = self._postmaster(accepting=False)
            if live is None:
                return False
            progress(f"stopping Postgres (pid {live[0]})")
            args = ["-m", "fast", "-w", "-t", str(PG_CTL_TIMEOUT_S), "stop"]
            try:
                self._run(find_bin_dir() / "pg_ctl", args, pg_user.service_user())
            except EmbeddedServerError:
                pass  # the signals below still end it
            if pid_alive(live[0]):
                terminate(live[0], grace=10.0)
            return True

    def _start_server(
        self, bin_dir: Path, user: pg_user.User | None, progress: Progress
    ) -> tuple[int, int]:
        socket_dir = ""  # none: a path too long for a unix socket would refuse to start
        if len(str(self.socket_dir)) + len("/.s.PGSQL.65535") <= UNIX_SOCKET_MAX:
            pg_user.make_private_dir(self.socket_dir, user)
            socket_dir = str(self.socket_dir)
        previous = (read_state(self.state_path) or {}).get("port")
        for attempt in range(3):
            # Another program may take the free port between our probe and the postmaster's bind.
            port = free_port(HOST, previous if attempt == 0 else None)
            progress(f"starting Postgres on {HOST}:{port} (data in {self.pgdata})")
            options = f"-p {port} -h {HOST} -k {shlex.quote(socket_dir)}"
            args = ["-w", "-t", str(PG_CTL_TIMEOUT_S), "-l", str(self.log_path)]
            try:
                self._run(bin_dir / "pg_ctl", [*args, "-o", options, "start"], user)
            except EmbeddedServerError:
                continue
            live = self._postmaster()
            if live is not None:
                write_state(self.state_path, pid=live[0], port=live[1])
                return live
        raise EmbeddedServerError(f"Postgres did not start: {log_tail(self.log_path)}")

    def _run(self, exe: Path, args: list[str], user: pg_user.User | None) -> None:
        # Output goes to a file, not a pipe: the postmaster inherits pg_ctl's stdout, and a pipe
        # it holds open would make us wait for EOF forever.
        with tempfile.TemporaryFile() as out:
            try:
                subprocess.run(
                    [str(exe), "-D", str(self.pgdata), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.pgdata,
                    start_new_session=True,
                    timeout=PG_CTL_TIMEOUT_S + 30,
                    check=True,
                    **pg_user.run_as(user),
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                out.seek(0)
                lines = out.read().decode(errors="replace").strip().splitlines()[-3:]
                raise EmbeddedServerError(f"{exe.name} failed: {' | '.join(lines)}") from exc

    def _postmaster(self, accepting: bool = True) -> tuple[int, int] | None:
        """(pid, port) of the postmaster running on this data (accepting TCP), else None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not runs_program(pid, "postgres") or (accepting and not port_open(HOST, port)):
            return None
        return pid, port


def _url(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{database}"


def _ensure_database(port: int) -> None:
    with psycopg.connect(_url(port, "postgres"), autocommit=True, connect_timeout=10) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if found.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
