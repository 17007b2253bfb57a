"""One way to say what is wrong with input that failed a pydantic model."""

from __future__ import annotations

from typing import Any, Final

from pydantic import ValidationError as PydanticValidationError

MAX_DB_ID: Final = 2**31 - 1
"""Ids are 32-bit integer columns (PostgreSQL ``integer``): a larger id is no id."""


def show_value(value: Any, limit: int = 60) -> str:
    """A value quoted for an error message, cut short when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(err: PydanticValidationError, *, where: str = "message",
             within: str = "") -> tuple[str, str]:
    """The first problem as ``(field, sentence)``: the field and the value are named."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or where
    if first["type"] == "missing":
        return field, f"field {field!r} is missing"
    if first["type"] == "extra_forbidden":
        suffix = f" in {within!r}" if within else ""
        return field, f"field {field!r} is not allowed{suffix}"
    return field, f"field {field!r}: {first['msg']} (got {show_value(first.get('input'))})"
