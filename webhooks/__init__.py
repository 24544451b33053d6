"""Webhooks on the Standard Webhooks specification: stock and reservation events, signed.

    events      the event types and how a ledger row becomes one (`{type, timestamp, data}`)
    signing     the `webhook-id` / `webhook-timestamp` / `webhook-signature` headers
    store       endpoints and deliveries in Postgres (plain SQL; the API uses it too)
    dispatcher  ledger rows after a persisted cursor → deliveries → signed POSTs, retried
    settings    FLASHSALE_WEBHOOK_* (timeouts, backoff, retry horizon, disable window)
    metrics     flashsale_webhook_* for Prometheus

Reads the sync worker's ledger table with its own SQL and imports neither the API nor the
worker, so both the API and the dispatcher can depend on it.
"""
