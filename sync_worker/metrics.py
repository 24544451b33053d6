"""The worker's Prometheus metrics, in a registry of its own (nothing registered at import).

The lag gauges carry the same names as the API's (`flashsale_stream_*`), so a dashboard reads
either process; the worker refreshes them every upkeep round (about once a second).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from engine.streams import PartitionLag


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "flashsale_sync_events",
            "Stream entries handled, by outcome (inserted, duplicate, dead_letter).",
            ["outcome"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "flashsale_sync_batch_seconds", "Time to write and acknowledge one batch.", registry=r
        )
        self.postgres_errors = Counter(
            "flashsale_sync_postgres_errors", "Failed Postgres attempts (retried).", registry=r
        )
        self.redis_errors = Counter(
            "flashsale_sync_redis_errors", "Failed Redis calls (retried).", registry=r
        )
        self.trimmed = Counter(
            "flashsale_sync_trimmed_entries", "Entries trimmed from the streams.", registry=r
        )
        labels = ["partition"]
        self.length = Gauge(
            "flashsale_stream_length", "Entries in the partition stream.", labels, registry=r
        )
        self.pending = Gauge(
            "flashsale_stream_pending",
            "Entries delivered to the sync worker and not yet acknowledged.",
            labels,
            registry=r,
        )
        self.age = Gauge(
            "flashsale_stream_oldest_unsynced_age_seconds",
            "Age of the oldest event not yet in Postgres (0 when synced).",
            labels,
            registry=r,
        )

        self.fenced = Gauge(
            "flashsale_partition_fenced",
            "1 while the partition is fenced (its Redis was found behind Postgres; restore it).",
            labels,
            registry=r,
        )
        self.unverified = Gauge(
            "flashsale_partition_unverified",
            "1 while the partition's Redis is not verified against Postgres (it sells nothing).",
            labels,
            registry=r,
        )

    def observe_lag(self, lags: Sequence[PartitionLag]) -> None:
        for lag in lags:
            label = str(lag.partition)
            self.length.labels(label).set(lag.length)
            self.pending.labels(label).set(lag.pending)
            self.age.labels(label).set(lag.oldest_unsynced_age_ms / 1000)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
