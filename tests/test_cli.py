"""The `flashsale` command: help everywhere, one-line config errors, real services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from flashsale.cli import app
from flashsale.embedded import EmbeddedPostgres, EmbeddedRedis
from flashsale.procs import free_port

SUBCOMMANDS = {
    "dev",
    "services",
    "serve",
    "worker",
    "sweeper",
    "stock",
    "reconcile",
    "restore",
    "db",
    "loadtest",
    "bench",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flashsale", *args],
        cwd=cwd,  # away from the repository's .env
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if hasattr(command, "commands"):
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


ALL_COMMANDS = command_paths(typer.main.get_group(app))


def test_the_command_tree_has_every_subcommand_the_design_names() -> None:
    top = {path[0] for path in ALL_COMMANDS}
    assert SUBCOMMANDS <= top
    assert {("services", "up"), ("services", "down"), ("services", "status")} <= set(ALL_COMMANDS)


@pytest.mark.parametrize("path", [(), *ALL_COMMANDS], ids=lambda p: " ".join(p) or "flashsale")
def test_help_works_for_every_subcommand(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLASHSALE_REDIS_URL", "garbage"),
        ("FLASHSALE_REDIS_URL", "redis://"),
        ("FLASHSALE_DATABASE_URL", "postgresql://db.internal:notaport/x"),
        ("FLASHSALE_DATABASE_URL", "mysql://db.internal/x"),
    ],
)
def test_a_garbled_url_is_one_line_naming_the_variable_and_exit_2(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = run_cli("services", "status", cwd=tmp_path, **{variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {variable}: ")
    assert "Traceback" not in result.stderr


def test_status_with_given_urls_probes_them_and_starts_nothing(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    result = run_cli(
        "services",
        "status",
        cwd=tmp_path,
        FLASHSALE_REDIS_URL=redis_url,
        FLASHSALE_DATABASE_URL=database_url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("external  reachable") == 2
    assert not (tmp_path / ".flashsale").exists()


@pytest.mark.slow
def test_services_up_status_down_across_processes(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    try:
        up = run_cli("services", "up", cwd=tmp_path, FLASHSALE_DATA_DIR=data)
        assert up.returncode == 0, up.stderr
        assert "redis://127.0.0.1:" in up.stdout and "postgresql://" in up.stdout
        # The servers outlive the command that started them.
        assert EmbeddedRedis(Path(data)).is_running()
        assert EmbeddedPostgres(Path(data)).is_running()

        status = run_cli("services", "status", cwd=tmp_path, FLASHSALE_DATA_DIR=data)
        assert status.returncode == 0 and status.stdout.count("running") == 2
    finally:
        down = run_cli("services", "down", cwd=tmp_path, FLASHSALE_DATA_DIR=data)
    assert down.returncode == 0, down.stderr
    assert not EmbeddedRedis(Path(data)).is_running()
    assert not EmbeddedPostgres(Path(data)).is_running()
    status = run_cli("services", "status", cwd=tmp_path, FLASHSALE_DATA_DIR=data)
    assert status.returncode == 1 and status.stdout.count("stopped") == 2


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment names `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            try:
                if text.encode() in (entry / part).read_bytes():
                    found.append(int(entry.name))
                    break
            except OSError:
                pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_dev_runs_the_stack_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    dev = subprocess.Popen(
        [sys.executable, "-m", "flashsale", "dev"],
        cwd=tmp_path,
        env=clean_env(FLASHSALE_DATA_DIR=str(data), FLASHSALE_API_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert dev.stdout is not None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = dev.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(output)
        assert "Ctrl-C stops everything" in text, text
        assert EmbeddedRedis(data).is_running() and EmbeddedPostgres(data).is_running()
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=10)
        assert docs.status_code == 200
    finally:
        dev.send_signal(signal.SIGINT)
        rest, _ = dev.communicate(timeout=120)
    assert dev.returncode == 0, "".join(output) + rest
    assert not EmbeddedRedis(data).is_running()
    assert not EmbeddedPostgres(data).is_running()
    assert processes_mentioning(str(data)) == []
