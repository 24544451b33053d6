"""Bodies of /v1/webhooks: endpoints, their secrets and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from api.schemas.common import Body

EventType = Literal[
    "inventory.low_stock",
    "inventory.out_of_stock",
    "inventory.back_in_stock",
    "inventory.adjusted",
    "reservation.committed",
    "reservation.released",
    "reservation.expired",
    "reservation.fulfilled",
]
DeliveryStatus = Literal["pending", "delivered", "failed"]
# http(s) only, a host name or IPv4 address, optional port, then printable ASCII.
URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#][!-~]*)?$"
WebhookUrl = Annotated[
    str,
    StringConstraints(pattern=URL_PATTERN, max_length=2000),
    Field(description="Where events are POSTed: an http:// or https:// URL."),
]
Events = Annotated[
    list[EventType],
    Field(min_length=1, max_length=16, description="The event types to send (repeats ignored)."),
]
Description = Annotated[str, Field(max_length=500)]

_URL = "https://shop.example.com/hooks/flashsale"
_ENDPOINT_EXAMPLE: dict[str, Any] = {
    "id": "ep_6f1c2a9d0b3e4f5a6b7c8d9e",
    "url": _URL,
    "description": "storefront: grey out sold-out buttons",
    "events": ["inventory.back_in_stock", "inventory.out_of_stock"],
    "enabled": True,
    "disabled_reason": None,
    "disabled_at": None,
    "failing_since": None,
    "created_at": "2026-11-30T12:00:00Z",
    "updated_at": "2026-11-30T12:00:00Z",
}
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class WebhookIn(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": _URL,
                    "events": ["inventory.out_of_stock", "inventory.back_in_stock"],
                    "description": "storefront: grey out sold-out buttons",
                }
            ]
        }
    )

    url: WebhookUrl
    events: Events
    description: Description = ""


class WebhookPatch(Body):
    """Omitted members stay as they are. `enabled: true` also clears the failure record."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"enabled": False}, {"events": ["inventory.low_stock"]}]}
    )

    url: WebhookUrl | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: StrictBool | None = None


class WebhookOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ENDPOINT_EXAMPLE]})

    id: str
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why it is disabled (by an operator, or failing for too long)."
    )
    disabled_at: datetime | None
    failing_since: datetime | None = Field(
        description="First failure since the last success; null while deliveries succeed."
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreatedOut(WebhookOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_ENDPOINT_EXAMPLE, "secret": _SECRET}]}
    )

    secret: str = Field(description="The signing secret. Shown only now: store it.")


class WebhookListOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"webhooks": [_ENDPOINT_EXAMPLE]}]})

    webhooks: list[WebhookOut]


class SecretOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": _ENDPOINT_EXAMPLE["id"],
                    "secret": _SECRET,
                    "previous_secret_expires_at": "2026-12-01T12:00:00Z",
                }
            ]
        }
    )

    id: str
    secret: str = Field(description="The new signing secret. Shown only now: store it.")
    previous_secret_expires_at: datetime = Field(
        description="Until then every message is signed with both the old and the new secret."
    )


_DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": 4711,
    "message_id": "msg_1042_6f1c2a9d0b3e4f5a6b7c8d9e",
    "endpoint_id": _ENDPOINT_EXAMPLE["id"],
    "ledger_id": 1042,
    "event_type": "inventory.out_of_stock",
    "sku": "sneaker-42",
    "status": "pending",
    "attempts": 2,
    "next_attempt_at": "2026-11-30T12:00:20Z",
    "retry_until": "2026-12-01T12:00:05Z",
    "last_attempt_at": "2026-11-30T12:00:10Z",
    "last_status_code": 503,
    "last_error": "HTTP 503",
    "last_latency_ms": 38,
    "created_at": "2026-11-30T12:00:00Z",
    "finished_at": None,
    "payload": {
        "type": "inventory.out_of_stock",
        "timestamp": "2026-11-30T12:00:00.123Z",
        "data": {"ledger_id": 1042, "sku": "sneaker-42", "location": "", "available": 0},
    },
}


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY_EXAMPLE]})

    id: int
    message_id: str = Field(description="The webhook-id header: the same on every attempt.")
    endpoint_id: str
    ledger_id: int | None = Field(description="The ledger row it reports; null for a test.")
    event_type: str
    sku: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    retry_until: datetime | None = Field(
        description="Retried until then (set at the first failure), then failed."
    )
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]


class DeliveryPageOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"deliveries": [_DELIVERY_EXAMPLE], "next_cursor": 4711}]}
    )

    deliveries: list[DeliveryOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for older ones; null: no more.")
