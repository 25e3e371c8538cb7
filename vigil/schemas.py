"""Pydantic types the domains' schemas share."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

# Surrogate keys are 32-bit integers on PostgreSQL: a larger id names nothing, and is
# refused as invalid input before it reaches the database.
MAX_ID = 2**31 - 1

DbId = Annotated[int, Field(ge=1, le=MAX_ID)]


def not_null(*fields: str) -> Any:
    """A validator refusing an explicit null for fields a patch may omit but not clear."""

    def check(value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    return field_validator(*fields)(check)
