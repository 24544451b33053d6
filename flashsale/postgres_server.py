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
    HOST,
    EmbeddedServer,
    EmbeddedServerError,
    Progress,
    locked,
    no_progress,
    pid_alive,
    port_open,
    runs_program,
    terminate,
)

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


class EmbeddedPostgres(EmbeddedServer):
    """Postgres in `data_dir/postgres`, on a free loopback port, trust auth, database `flashsale`.

    The postmaster detaches (pg_ctl starts it in its own session), so it outlives the process that
    started it; its `postmaster.pid` tells any process whether it runs and on which port.
    """

    def __init__(self, data_dir: Path) -> None:
        super().__init__("Postgres", data_dir, log_name="server.log")
        self.pgdata = self.home  # the name Postgres and its tools give this folder
        self.socket_dir = self.data_dir / "postgres-run"

    def start(self, progress: Progress = no_progress) -> str:
        with locked(self.lock_path):
            live = self._live()
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
                socket_dir = self._socket_dir(user)
                port = self._start_on_free_port(
                    lambda port: self._pg_ctl_start(bin_dir, user, socket_dir, port), progress
                )
            else:
                port = live[1]
            _ensure_database(port)
            return self._url(port)

    def _shut_down(self, pid: int, port: int) -> None:
        args = ["-m", "fast", "-w", "-t", str(PG_CTL_TIMEOUT_S), "stop"]
        try:
            self._run(find_bin_dir() / "pg_ctl", args, pg_user.service_user())
        except EmbeddedServerError:
            pass  # the signals below still end it
        if pid_alive(pid):
            terminate(pid, grace=10.0)

    def _socket_dir(self, user: pg_user.User | None) -> str:
        if len(str(self.socket_dir)) + len("/.s.PGSQL.65535") > UNIX_SOCKET_MAX:
            return ""  # none: a path too long for a unix socket would refuse to start
        pg_user.make_private_dir(self.socket_dir, user)
        return str(self.socket_dir)

    def _pg_ctl_start(
        self, bin_dir: Path, user: pg_user.User | None, socket_dir: str, port: int
    ) -> int | None:
        options = f"-p {port} -h {HOST} -k {shlex.quote(socket_dir)}"
        args = ["-w", "-t", str(PG_CTL_TIMEOUT_S), "-l", str(self.log_path)]
        try:
            self._run(bin_dir / "pg_ctl", [*args, "-o", options, "start"], user)
        except EmbeddedServerError:
            return None
        live = self._live()
        return live[0] if live else None

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

    def _live(self, answering: bool = True) -> tuple[int, int] | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not runs_program(pid, "postgres") or (answering and not port_open(HOST, port)):
            return None
        return pid, port

    def _url(self, port: int) -> str:
        return _database_url(port, DATABASE)


def _database_url(port: int, database: str) -> str:
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{database}"


def _ensure_database(port: int) -> None:
    with psycopg.connect(
        _database_url(port, "postgres"), autocommit=True, connect_timeout=10
    ) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if found.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
