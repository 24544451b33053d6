"""Prometheus metrics: requests by route and status, latency, engine refusals, stream lag.

Each app owns its registry (tests build many apps). With several uvicorn workers,
`flashsale serve` turns on prometheus_client's multiprocess mode, and a scrape of any worker
sums all of them; the stream lag is read from Redis at scrape time, so it is never stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.fencing import FenceStatus
from engine.streams import PartitionLag

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flashsale_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flashsale_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "flashsale_engine_refusals_total",
            "Requests the engine refused, by error code.",
            ["code"],
            registry=self.registry,
        )

        # Each labelled child once per label set: `labels()` validates and locks on every call,
        # a visible share of a request's CPU time. The sets are bounded (methods, route
        # templates, statuses, error codes), so are these maps.
        self._observed: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._refused: dict[str, Counter] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._observed.get((method, route, status))
        if children is None:
            children = self._observed[method, route, status] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def refused(self, code: str) -> None:
        child = self._refused.get(code)
        if child is None:
            child = self._refused[code] = self.refusals.labels(code)
        child.inc()

    def render(self, lag: Sequence[PartitionLag], states: Sequence[FenceStatus] = ()) -> bytes:
        if _multiprocess_mode():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        text = generate_latest(registry)
        return text + generate_latest(_one_off(_LagCollector(lag, states)))


class _LagCollector(Collector):
    """The sync worker's backlog per partition stream, as read for this scrape."""

    def __init__(self, lag: Sequence[PartitionLag], states: Sequence[FenceStatus]) -> None:
        self.lag = lag
        self.states = states

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = {
            "length": GaugeMetricFamily(
                "flashsale_stream_length", "Entries in the partition stream.", labels=["partition"]
            ),
            "pending": GaugeMetricFamily(
                "flashsale_stream_pending",
                "Entries delivered to the sync worker and not yet acknowledged.",
                labels=["partition"],
            ),
            "age": GaugeMetricFamily(
                "flashsale_stream_oldest_unsynced_age_seconds",
                "Age of the oldest event not yet in Postgres (0 when synced).",
                labels=["partition"],
            ),
        }
        for row in self.lag:
            label = [str(row.partition)]
            families["length"].add_metric(label, row.length)
            families["pending"].add_metric(label, row.pending)
            families["age"].add_metric(label, row.oldest_unsynced_age_ms / 1000)
        yield from families.values()
        # The same names the sync worker exports: a dashboard reads either process.
        fenced = GaugeMetricFamily(
            "flashsale_partition_fenced",
            "1 while the partition is fenced (its Redis was found behind Postgres; restore it).",
            labels=["partition"],
        )
        unverified = GaugeMetricFamily(
            "flashsale_partition_unverified",
            "1 while the partition's Redis is not verified against Postgres (it sells nothing).",
            labels=["partition"],
        )
        for st in self.states:
            label = [str(st.partition)]
            fenced.add_metric(label, 1 if st.state == "fenced" else 0)
            unverified.add_metric(label, 1 if st.state in ("recovering", "fenced") else 0)
        yield from (fenced, unverified)


def _one_off(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _multiprocess_mode() -> bool:
    # prometheus_client picks its value store when first imported, from PROMETHEUS_MULTIPROC_DIR
    # (set by `flashsale serve --workers N`); ask the library instead of reading the env again.
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue
