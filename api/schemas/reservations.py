"""Bodies of /v1/reservations. The shapes are a contract with clients: add members, never rename."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import MAX_UNITS, Body, Id, Int
from engine.types import Reservation, ReservationStatus

# Structural bounds only: the configured maxima (lines per cart, quantity, TTL range) are the
# engine's to check, so one schema serves every deployment.
_MAX_LINES = 500
# Beyond these no deployment's maximum lies; they keep a refusal's echo of the value within what
# JSON tools read as an integer (a 26-digit quantity once made the problem body unwritable: 500).
_MAX_TTL_SECONDS = 10**9


class CartLineIn(Body):
    sku: Id
    quantity: Int = Field(ge=1, le=MAX_UNITS)
    location: Id | None = Field(None, description="Hold at this location only (default: any).")


class ReserveIn(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "c1",
                    "lines": [{"sku": "s1", "quantity": 1, "location": None}],
                    "ttl_seconds": 600,
                }
            ]
        }
    )

    customer_id: Id
    lines: list[CartLineIn] = Field(min_length=1, max_length=_MAX_LINES)
    ttl_seconds: Int | None = Field(
        None, ge=1, le=_MAX_TTL_SECONDS, description="Default: the server's TTL."
    )
    reservation_id: Id | None = Field(
        None, description="Idempotency key (or send the Idempotency-Key header)."
    )


class ExtendIn(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ttl_seconds": 300}]})

    ttl_seconds: Int | None = Field(
        None, ge=1, le=_MAX_TTL_SECONDS, description="New TTL from now."
    )


class CommitIn(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"order_id": "o-1001"}]})

    order_id: Id


class FulfilLineIn(Body):
    sku: Id
    quantity: Int = Field(ge=1, le=MAX_UNITS)
    location: Id | None = None


class FulfilIn(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"lines": [{"sku": "s1", "quantity": 1}], "fulfilment_id": "f-1"}, {}]
        }
    )

    lines: list[FulfilLineIn] | None = Field(
        None, min_length=1, max_length=_MAX_LINES, description="Default: everything committed."
    )
    fulfilment_id: Id | None = Field(
        None, description="Makes a partial fulfilment safe to retry (or send Idempotency-Key)."
    )


class AllocationOut(BaseModel):
    location: str
    quantity: int
    backordered: int = Field(description="Units taken beyond available (ship when restocked).")
    fulfilled: int


class ReservationLineOut(BaseModel):
    sku: str
    quantity: int
    backordered: int
    allocations: list[AllocationOut]


class ReservationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9b2f6c1e4d7a4f0e8a1b2c3d4e5f6a7b",
                    "status": "held",
                    "expires_at": "2025-01-01T12:10:00Z",
                    "reservation_token": "9f2c41d07a3be815."
                    "q0nq3o0G2pD8c1pVb0pA8y9fZ3x7m2Qe1rT5uW4vY6s",
                    "customer_id": "c1",
                    "order_id": None,
                    "extensions": 0,
                    "lines": [
                        {
                            "sku": "s1",
                            "quantity": 1,
                            "backordered": 0,
                            "allocations": [
                                {
                                    "location": "wh-1",
                                    "quantity": 1,
                                    "backordered": 0,
                                    "fulfilled": 0,
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )

    id: str
    status: ReservationStatus
    expires_at: datetime
    reservation_token: str = Field(
        description="Send as X-Reservation-Token to act on this cart. It opens this cart only: "
        "not another id, nor a later cart made under this id once this one has gone."
    )
    customer_id: str
    order_id: str | None
    extensions: int
    lines: list[ReservationLineOut]

    @classmethod
    def of(cls, reservation: Reservation, token: str) -> ReservationOut:
        # Built without validation: the engine's Reservation is already typed and checked, and
        # validating it again was a visible share of every reserve's CPU time.
        return cls.model_construct(
            id=reservation.id,
            status=reservation.status,
            expires_at=reservation.expires_at,
            reservation_token=token,
            customer_id=reservation.customer_id,
            order_id=reservation.order_id,
            extensions=reservation.extensions,
            lines=[
                ReservationLineOut.model_construct(
                    sku=line.sku,
                    quantity=line.quantity,
                    backordered=line.backordered,
                    allocations=[
                        AllocationOut.model_construct(
                            location=a.location,
                            quantity=a.quantity,
                            backordered=a.backordered,
                            fulfilled=a.fulfilled,
                        )
                        for a in line.allocations
                    ],
                )
                for line in reservation.lines
            ],
        )
