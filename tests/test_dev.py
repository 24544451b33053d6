"""`flashsale dev` as a user runs it: children restarted, only its own servers stopped, one stack
per data folder, keys and token secret kept across runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from flashsale.commands.dev import SECRETS_FILE, dev_secrets
from flashsale.embedded import EmbeddedPostgres, EmbeddedRedis
from flashsale.procs import free_port, pid_alive, wait_until
from flashsale.settings import Settings
from tests.test_cli import clean_env, run_cli

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


class Dev:
    """A `flashsale dev` process whose output goes to a file the test reads as it grows."""

    def __init__(self, cwd: Path, log: Path, **env: str) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flashsale", "dev"],
                cwd=cwd,
                env=clean_env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float = 120) -> None:
        found = wait_until(lambda: text in self.output or self.process.poll() is not None, timeout)
        assert found and text in self.output, self.output

    def child(self, word: str) -> int:
        """The pid of dev's child running `flashsale <word>`."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.process.pid and word.encode() in argv:
                return int(entry.name)
        raise AssertionError(f"no child running {word}:\n{self.output}")

    def interrupt(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=120)
        return self.output


@contextmanager
def dev_stack(cwd: Path, **env: str) -> Iterator[Dev]:
    run = Dev(cwd, cwd / f"dev-{free_port()}.log", **env)
    try:
        yield run
    finally:
        run.interrupt()


# ---- keys and token secret ---------------------------------------------------------------


def test_dev_secrets_are_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    env, lines = dev_secrets(settings)
    path = tmp_path / "data" / SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kept = json.loads(path.read_text())
    assert env == {
        "FLASHSALE_ADMIN_KEYS": kept["admin_key"],
        "FLASHSALE_STOREFRONT_KEYS": kept["storefront_key"],
        "FLASHSALE_TOKEN_SECRET": kept["token_secret"],
    }
    assert any(kept["admin_key"] in line for line in lines)
    assert any(kept["storefront_key"] in line for line in lines)
    assert not any(kept["token_secret"] in line for line in lines)
    # The next run: the same keys and secret, so old keys and tokens keep working.
    assert dev_secrets(settings)[0] == env


def test_variables_override_the_kept_secrets_and_are_not_stored(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", admin_keys="mine", token_secret="my-secret-value"
    )
    env, lines = dev_secrets(settings)
    assert env == {}  # the API reads the variables themselves
    kept = (tmp_path / "data" / SECRETS_FILE).read_text()
    assert "mine" not in kept and "my-secret-value" not in kept
    assert not any("mine" in line or "my-secret-value" in line for line in lines)


# ---- one stack per data folder, a port nobody else holds ---------------------------------


def test_an_api_port_taken_by_another_program_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        data = tmp_path / "data"
        result = run_cli(
            "dev",
            cwd=tmp_path,
            timeout=60,
            FLASHSALE_DATA_DIR=str(data),
            FLASHSALE_API_PORT=str(port),
        )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "FLASHSALE_API_PORT" in lines[0]
    assert not (data / "redis").exists() and not (data / "postgres").exists()


@pytest.fixture
def external(redis_url: str, pg_database_url: str, tmp_path: Path) -> dict[str, str]:
    """A dev stack's environment on the session's servers (given URLs: dev starts none)."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    return {
        "FLASHSALE_REDIS_URL": redis_url,
        "FLASHSALE_DATABASE_URL": pg_database_url,
        "FLASHSALE_DATA_DIR": str(tmp_path / "data"),
        "FLASHSALE_API_PORT": str(free_port()),
    }


@pytest.mark.slow
def test_a_crashed_child_is_restarted_and_a_second_dev_on_the_folder_is_refused(
    external: dict[str, str], tmp_path: Path
) -> None:
    port = external["FLASHSALE_API_PORT"]
    with dev_stack(tmp_path, **external) as run:
        run.wait_for("Ctrl-C stops")
        kept = json.loads((tmp_path / "data" / SECRETS_FILE).read_text())
        assert kept["admin_key"] in run.output  # printed at each start
        admin = {"Authorization": f"Bearer {kept['admin_key']}"}
        url = f"http://127.0.0.1:{port}/v1/inventory/demo-sneaker"
        assert httpx.get(url, headers=admin, timeout=10).status_code == 200

        # A second `make run` on the same folder names the first and its port variable.
        second = run_cli("dev", cwd=tmp_path, timeout=60, **external)
        assert second.returncode == 1, second.stdout + second.stderr
        line = second.stderr.strip()
        assert len(line.splitlines()) == 1, second.stderr
        assert f"http://127.0.0.1:{port}" in line and "FLASHSALE_API_PORT" in line
        assert str(run.process.pid) in line

        for name, word in (("api", "serve"), ("sweeper", "sweeper"), ("worker", "worker")):
            pid = run.child(word)
            os.kill(pid, signal.SIGKILL)
            run.wait_for(f"{name} was killed by SIGKILL; restarting it in")
            run.wait_for(f"{name} restarted (pid", timeout=30)
            assert run.child(word) != pid
            assert run.process.poll() is None, run.output
        # The restarted API answers, with the same keys.
        assert wait_until(lambda: _answers(url, admin), 60), run.output
        output = run.interrupt()
    assert run.process.returncode == 0, output
    assert "left running: Redis at redis://127.0.0.1:" in output
    assert "left running: Postgres at postgresql://" in output


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# ---- only its own servers stopped -----------------------------------------------------------


def _pid(server: EmbeddedRedis) -> int:
    return int(json.loads(server.state_path.read_text())["pid"])


@pytest.mark.slow
def test_dev_stops_only_the_servers_it_started_and_says_what_it_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"FLASHSALE_DATA_DIR": str(data), "FLASHSALE_API_PORT": str(free_port())}
    postgres, redis_server = EmbeddedPostgres(data), EmbeddedRedis(data)
    try:
        postgres.start()  # already running when dev starts: not dev's to stop
        with dev_stack(tmp_path, **env) as run:
            run.wait_for("Ctrl-C stops")
            assert "Ctrl-C stops the API, worker, sweeper, Redis; stays up: Postgres" in run.output
            # Redis (dev's) dies, and `flashsale services up` starts a new one meanwhile.
            first = _pid(redis_server)
            os.kill(first, signal.SIGKILL)
            assert wait_until(lambda: not pid_alive(first), 10)
            up = run_cli("services", "up", cwd=tmp_path, **env)
            assert up.returncode == 0, up.stderr
            assert run.process.poll() is None, run.output
            output = run.interrupt()
        assert run.process.returncode == 0, output
        assert redis_server.is_running() and _pid(redis_server) != first
        assert postgres.is_running()
        assert "left running: Postgres (already running when dev started" in output
        assert "left running: Redis (started again by another process while dev ran" in output
    finally:
        down = run_cli("services", "down", cwd=tmp_path, **env)
        assert down.returncode == 0, down.stderr


def test_dev_counts_the_embedded_cluster_it_started_as_its_redis(tmp_path: Path) -> None:
    # Once "left running: Redis (given by FLASHSALE_REDIS_URL …)" after stopping its own cluster.
    from flashsale.commands.dev import _not_ours
    from flashsale.embedded import Services
    from flashsale.settings import Settings

    url, db = "redis://127.0.0.1:7000/0", "postgresql://postgres@127.0.0.1:5432/flashsale"
    settings = Settings(redis_url=url, database_url=db, data_dir=tmp_path)
    services = Services(redis_url=url, database_url=db)
    assert _not_ours(settings, services, ["Redis-cluster", "Postgres"]) == []
    assert _not_ours(settings, services, ["Postgres"]) == [
        "Redis at redis://127.0.0.1:7000/0 (given by FLASHSALE_REDIS_URL, not dev's to stop)"
    ]
