"""One run: seed → Locust headless → wait for holds and the worker to settle → verdict → report.

The stack under test is given: a host and its keys, started by whoever calls (`flashsale loadtest`
starts a local one when no --host is given). Locust runs as `python -m locust` in a child process:
importing it here would gevent-patch this process (httpx, pytest's event loop).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from loadtests.admin import Admin
from loadtests.scenarios import NAMES
from loadtests.verdict import Verdict

REPORTS = Path(__file__).parent / "reports"
FINAL_STATS = "locust_final.json"  # Locust's figures at its shutdown, in each report folder
LOCUST_STARTUP_S = 2.0  # between launching Locust and its first user, roughly
SETTLE_TIMEOUT_S = 120.0


@dataclass
class RunOptions:
    users: int = 200
    spawn_rate: float = 50
    run_time: int = 30  # seconds
    host: str | None = None
    admin_key: str | None = None
    storefront_key: str | None = None
    processes: int = 0  # Locust's --processes: 0 = one process, -1 = one per core
    units: int | None = None  # default: one unit for every 20 users, at least 10

    @property
    def sized_units(self) -> int:
        return self.units or max(10, self.users // 20)


class Target(Protocol):
    """A running API and the keys a run uses on it."""

    @property
    def host(self) -> str: ...
    @property
    def admin_key(self) -> str: ...
    @property
    def storefront_key(self) -> str: ...


@dataclass
class RunResult:
    scenario: str
    verdict: Verdict
    report_dir: Path
    summary: str

    @property
    def passed(self) -> bool:
        return self.verdict.passed


def new_report_dir(scenario: str, reports: Path = REPORTS) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir = reports / f"{scenario}-{stamp}-{uuid.uuid4().hex[:4]}"
    report_dir.mkdir(parents=True)
    return report_dir


def run(
    scenario: str,
    options: RunOptions,
    stack: Target | None = None,
    reports: Path = REPORTS,
    report_dir: Path | None = None,
) -> RunResult:
    """Against options.host with its keys, else against the given stack."""
    if scenario not in NAMES:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(NAMES)}")
    if options.host:
        host, admin_key, sf_key = options.host, options.admin_key, options.storefront_key
        if not admin_key or not sf_key:
            raise ValueError("--host needs an admin and a storefront key")
    elif stack is not None:
        host, admin_key, sf_key = stack.host, stack.admin_key, stack.storefront_key
    else:
        raise ValueError("a run needs options.host or a running stack")
    admin = Admin(host, admin_key, sf_key)
    try:
        return _run(scenario, options, admin, host, report_dir or new_report_dir(scenario, reports))
    finally:
        admin.close()


def _run(
    scenario: str, options: RunOptions, admin: Admin, host: str, report_dir: Path
) -> RunResult:
    checks: Any = importlib.import_module(f"loadtests.checks.{scenario}")
    run_id = f"lt{uuid.uuid4().hex[:8]}"  # fresh SKUs: runs on a shared stack never mix
    units = options.sized_units
    checks.seed(admin, run_id, units)
    _locust(scenario, options, host, admin, run_id, units, report_dir)
    skus = checks.skus(run_id)
    admin.wait_settled(skus, SETTLE_TIMEOUT_S)
    state = admin.final_state(skus)
    counts = _read_counts(report_dir / "outcomes.json")
    stats = final_stats(report_dir / FINAL_STATS)
    verdict: Verdict = checks.verdict(state, counts, units, stats.failures)
    line = verdict.line(scenario)
    summary = f"{scenario}: {stats.headline()} | {line}"
    (report_dir / "verdict.txt").write_text(line + "\n")
    (report_dir / "summary.txt").write_text(summary + "\n")
    final = {
        s: {"inventory": st.inventory, "ledger_rows": len(st.ledger)} for s, st in state.items()
    }
    (report_dir / "final_state.json").write_text(
        json.dumps({"counts": counts, "facts": verdict.facts, "final": final}, indent=2)
    )
    return RunResult(scenario, verdict, report_dir, summary)


def _locust(
    scenario: str,
    options: RunOptions,
    host: str,
    admin: Admin,
    run_id: str,
    units: int,
    report_dir: Path,
) -> None:
    locustfile = Path(__file__).parent / "scenarios" / f"{scenario}.py"
    # The last seconds of the sale only buy (see users.calm): a window of a quarter, 2-10 s.
    calm_window = min(10.0, max(2.0, options.run_time / 4))
    env = {
        **_child_env(),
        "FLASHSALE_LT_RUN": run_id,
        "FLASHSALE_LT_UNITS": str(units),
        "FLASHSALE_LT_CALM_AFTER": str(
            time.time() + LOCUST_STARTUP_S + options.run_time - calm_window
        ),
        "FLASHSALE_LT_ADMIN_KEY": admin.admin["Authorization"].removeprefix("Bearer "),
        "FLASHSALE_LT_STOREFRONT_KEY": admin.storefront["Authorization"].removeprefix("Bearer "),
        "FLASHSALE_LT_OUTCOMES": str(report_dir / "outcomes.json"),
    }
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless"]
    argv += ["--users", str(options.users), "--spawn-rate", str(options.spawn_rate)]
    argv += ["--run-time", f"{options.run_time}s", "--stop-timeout", "5", "--host", host]
    argv += ["--csv", str(report_dir / "locust"), "--html", str(report_dir / "report.html")]
    # Locust appends ".json"; written at shutdown, unlike the CSV (rewritten every second).
    argv += ["--json-file", str(report_dir / FINAL_STATS.removesuffix(".json"))]
    argv += ["--only-summary", "--exit-code-on-error", "0"]
    if options.processes:
        argv += ["--processes", str(options.processes)]
    with (report_dir / "locust.log").open("wb") as log:
        code = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = (report_dir / "locust.log").read_text()[-2000:]
        raise RuntimeError(f"locust exited {code}:\n{tail}")


def _child_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_LT_")}


@dataclass
class LocustStats:
    """The whole run's figures over every request type, as Locust held them at its shutdown."""

    requests: int = 0
    failures: int = 0
    requests_per_s: float = 0.0
    p50_ms: int = 0
    p99_ms: int = 0

    def headline(self) -> str:
        return (
            f"{self.requests_per_s:.0f} req/s, p50 {self.p50_ms} ms, p99 {self.p99_ms} ms, "
            f"{self.requests} requests, {self.failures} failures"
        )


def final_stats(path: Path) -> LocustStats:
    """Locust's --json-file, summed over its entries as Locust sums its "Aggregated" row.

    Not locust_stats.csv: Locust rewrites that every second while running and never after the
    last requests, so it can miss the end of the run (7 907 requests there, 8 299 in the HTML).
    """
    try:
        entries: list[dict[str, Any]] = json.loads(path.read_text())
    except FileNotFoundError:
        return LocustStats()
    times: dict[int, int] = {}
    for entry in entries:
        for ms, count in entry.get("response_times", {}).items():
            times[int(float(ms))] = times.get(int(float(ms)), 0) + int(count)
    requests = sum(int(e["num_requests"]) for e in entries)
    starts = [float(e["start_time"]) for e in entries if e.get("start_time")]
    ends = [float(e["last_request_timestamp"]) for e in entries if e.get("last_request_timestamp")]
    span = max(ends) - min(starts) if starts and ends else 0.0
    return LocustStats(
        requests=requests,
        failures=sum(int(e["num_failures"]) for e in entries),
        requests_per_s=requests / span if span > 0 else 0.0,
        p50_ms=_percentile(times, 0.50),
        p99_ms=_percentile(times, 0.99),
    )


def _percentile(times: dict[int, int], fraction: float) -> int:
    # Locust's own rule (stats.calculate_response_time_percentile), over the timed requests.
    timed = sum(times.values())
    below = int(timed * fraction)
    seen = 0
    for ms in sorted(times, reverse=True):
        seen += times[ms]
        if timed - seen <= below:
            return ms
    return 0


def _read_counts(path: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}
