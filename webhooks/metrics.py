"""The dispatcher's Prometheus metrics, `flashsale_webhook_*`, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.attempts = Counter(
            "flashsale_webhook_attempts",
            "HTTP attempts, by outcome (success: a 2xx answer; failure: anything else).",
            ["outcome"],
            registry=r,
        )
        self.finished = Counter(
            "flashsale_webhook_deliveries",
            "Deliveries finished, by status (delivered, failed after the retry horizon).",
            ["status"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "flashsale_webhook_attempt_seconds", "Time of one HTTP attempt.", registry=r
        )
        self.disabled = Counter(
            "flashsale_webhook_endpoints_disabled",
            "Endpoints disabled for failing longer than the disable window.",
            registry=r,
        )
        self.fanned_out = Counter(
            "flashsale_webhook_events", "Deliveries created from ledger rows.", registry=r
        )
        self.lag = Gauge(
            "flashsale_webhook_lag_seconds",
            "Age of the oldest ledger row not yet turned into deliveries (0 when caught up).",
            registry=r,
        )
        self.pending = Gauge(
            "flashsale_webhook_pending_deliveries",
            "Deliveries waiting to be sent or retried.",
            registry=r,
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
