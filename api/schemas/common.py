"""Field types shared by the bodies: the same limits the engine enforces, stated in the schema.

JSON's rules, not Python's: an integer is a JSON number with no fraction (`2` or `2.0`, never
`"2"` or `true`), a time is an RFC 3339 string with its offset (never a bare number). Pydantic's
lax mode would take `"2"` and `0`; its strict mode would refuse `2.0`; neither is what the
OpenAPI document promises, so integers are strict after `Body` turns `2.0` into `2`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)

from engine.types import ID_PATTERN, Reason
from engine.validation import QUANTITY_LIMIT, TIME_RANGE, time_in_range


def _json_time(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string with an offset")
    return datetime.fromisoformat(value)  # not pydantic's: it reads "0" as a Unix time


def _in_range(value: datetime) -> datetime:
    if not time_in_range(value):
        raise ValueError(f"must be {TIME_RANGE}")
    return value


Int = StrictInt
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_json_time),
    AfterValidator(_in_range),
    Field(description=f"RFC 3339 with an offset, {TIME_RANGE}."),
]

# Ids travel inside Redis key names: the engine's own pattern, so /docs states the real rule.
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern, max_length=64)]
# Stock quantities: the engine's ceiling for any stock total, so also for one change.
MAX_UNITS = QUANTITY_LIMIT
Units = Annotated[Int, Field(ge=0, le=MAX_UNITS)]
Reference = Annotated[
    str,
    StringConstraints(pattern=r"^[!-~]*$", max_length=512),  # printable ASCII, as URIs are
    Field(description="A URI naming the cause, e.g. po://4711 (printable ASCII, no spaces)."),
]


class Body(BaseModel):
    """Request bodies refuse unknown members: a typo such as `quantiy` must not pass silently."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers(cls, data: Any) -> Any:
        # Before the fields: a constraint (ge, le) then still applies to the integer. No body
        # has a float field, so every integral float here is meant as an integer.
        if isinstance(data, dict):
            return {
                key: int(value) if isinstance(value, float) and value.is_integer() else value
                for key, value in data.items()
            }
        return data


__all__ = ["MAX_UNITS", "Body", "Id", "Int", "Reason", "Reference", "Timestamp", "Units"]
