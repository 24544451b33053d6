"""Field types shared by the bodies: the same limits the engine enforces, stated in the schema."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from engine.types import ID_PATTERN, Reason

# Ids travel inside Redis key names: the engine's own pattern, so /docs states the real rule.
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN.pattern, max_length=64)]
Reference = Annotated[
    str,
    StringConstraints(pattern=r"^\S*$", max_length=512),
    Field(description="A URI naming the cause, e.g. a purchase order (no whitespace)."),
]


class Body(BaseModel):
    """Request bodies refuse unknown members: a typo such as `quantiy` must not pass silently."""

    model_config = ConfigDict(extra="forbid")


__all__ = ["Body", "Id", "Reason", "Reference"]
