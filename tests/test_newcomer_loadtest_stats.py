"""The load-test headline reads Locust's final figures, not the CSV it rewrites while running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from loadtests.runner import FINAL_STATS, final_stats

STALE_CSV = (
    "Type,Name,Request Count,Failure Count,Requests/s,50%,99%\n"
    "POST,reserve,7000,0,190,45,500\n"
    ",Aggregated,7907,0,200,45,520\n"
)


def entry(name: str, requests: int, failures: int, times: dict[int, int]) -> dict[str, object]:
    return {
        "name": name,
        "method": "POST",
        "last_request_timestamp": 1040.0,
        "start_time": 1000.0,
        "num_requests": requests,
        "num_none_requests": 0,
        "num_failures": failures,
        "response_times": times,
    }


def test_the_headline_counts_every_request_of_the_final_figures(tmp_path: Path) -> None:
    (tmp_path / "locust_stats.csv").write_text(STALE_CSV)
    entries = [
        entry("reserve", 8000, 2, {40: 4000, 50: 3800, 500: 200}),
        entry("commit", 299, 0, {30: 299}),
    ]
    (tmp_path / FINAL_STATS).write_text(json.dumps(entries))  # json turns the keys into strings

    stats = final_stats(tmp_path / FINAL_STATS)

    assert (stats.requests, stats.failures) == (8299, 2)
    assert stats.requests_per_s == 8299 / 40
    assert (stats.p50_ms, stats.p99_ms) == (40, 500)
    assert "8299 requests, 2 failures" in stats.headline()


LOCUSTFILE = """
from locust import User, constant, task


class Clock(User):
    wait_time = constant(0.01)

    @task
    def tick(self):
        self.environment.events.request.fire(
            request_type="GET", name="tick", response_time=10, response_length=0,
            exception=None, context={},
        )
"""


def test_locust_writes_the_final_figures_where_the_runner_reads_them(tmp_path: Path) -> None:
    locustfile = tmp_path / "clock.py"
    locustfile.write_text(LOCUSTFILE)
    base = str(tmp_path / FINAL_STATS.removesuffix(".json"))
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--users", "2"]
    argv += ["--spawn-rate", "2", "--run-time", "2s", "--host", "http://127.0.0.1:9"]
    argv += ["--only-summary", "--json-file", base]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)

    stats = final_stats(tmp_path / FINAL_STATS)
    written = json.loads((tmp_path / FINAL_STATS).read_text())
    assert stats.requests == sum(e["num_requests"] for e in written) > 0
    assert (stats.p50_ms, stats.p99_ms, stats.failures) == (10, 10, 0)
