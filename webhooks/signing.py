"""Standard Webhooks headers: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

The `standardwebhooks` library signs; after a secret rotation the previous secret signs too
(space-separated `v1,…` signatures), so receivers verifying with either secret accept.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from math import floor

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh `whsec_…` secret: 32 random bytes, base64, as the specification suggests."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def headers(
    message_id: str, body: str, secrets_: Iterable[str], now: datetime | None = None
) -> dict[str, str]:
    moment = now or datetime.now(UTC)
    signatures = " ".join(Webhook(s).sign(message_id, moment, body) for s in secrets_)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(floor(moment.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }
