"""Shape checks for the server's JSON answers: one place that says what an answer must look like.

IDR's JSON is parsed by the standard library, so any value can stand where an object, a list or an
id is expected (a `"link": "x"`, `"values": 5`, an `@id` of `"5"` or of 10^30). Readers take values
through these helpers, which raise `MalformedAnswer` naming where the answer broke and what was
there; the caller then skips that item, or that answer, with the message as its reason.
"""

from __future__ import annotations

from typing import Any

from idrcell.client import ProtocolError

# OMERO ids are Java longs; index.parquet stores them as int64.
MAX_OBJECT_ID = 2**63 - 1


class MalformedAnswer(ProtocolError):
    """A JSON answer (or a part of one) that does not have the shape the API documents."""


def describe(value: Any) -> str:
    """A short description of a JSON value for a message: its type and, if short, its text."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
    text = repr(value)
    return f"{kind} ({text})" if len(text) <= 24 else f"{kind} of {len(text)} characters"


def as_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedAnswer(f"{where} is {describe(value)}, expected an object")
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedAnswer(f"{where} is {describe(value)}, expected a list")
    return value


def optional_dict(value: Any, where: str) -> dict[str, Any]:
    """An object, or {} for a missing (null) one."""
    return {} if value is None else as_dict(value, where)


def optional_list(value: Any, where: str) -> list[Any]:
    """A list, or [] for a missing (null) one."""
    return [] if value is None else as_list(value, where)


def object_id(item: Any, where: str) -> int:
    """The `@id` of an OMERO object: an integer in 0 .. 2^63 - 1."""
    value = as_dict(item, where).get("@id")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_OBJECT_ID:
        raise MalformedAnswer(f"{where} has an @id that is {describe(value)}, not an OMERO id")
    return value


def optional_int(value: Any) -> int | None:
    """An integer, or None for anything else (a field whose absence is normal)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
