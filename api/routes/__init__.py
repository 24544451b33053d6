"""The routers: reservations, inventory (and SKUs), operations (health, readiness, metrics)."""
