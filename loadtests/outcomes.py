"""Client-side counts that the verdict compares with the server (e.g. units the buyers were told
were committed). Kept out of Locust's request stats so requests/s and percentiles stay honest.

In distributed mode (--processes, master/workers) each worker ships its counts with its regular
report to the master (`report_to_master` / `worker_report`), and the master writes the total.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

OUTCOMES_FILE_ENV = "FLASHSALE_LT_OUTCOMES"
_local: Counter[str] = Counter()  # this process's counts
_total: Counter[str] = Counter()  # the master's sum of its workers' reports


def count(name: str, n: int = 1) -> None:
    _local[name] += n


@events.report_to_master.add_listener
def _ship(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["flashsale_outcomes"] = dict(_local)
    _local.clear()  # each report carries the delta since the last one


@events.worker_report.add_listener
def _collect(client_id: str, data: dict[str, Any], **_: Any) -> None:
    _total.update(data.get("flashsale_outcomes", {}))


@events.quitting.add_listener
def _write(environment: Environment, **_: Any) -> None:
    path = os.environ.get(OUTCOMES_FILE_ENV)
    if not path or isinstance(environment.runner, WorkerRunner):
        return
    counts = _total if isinstance(environment.runner, MasterRunner) else _local
    with open(path, "w", encoding="utf-8") as out:
        json.dump(dict(counts), out)
