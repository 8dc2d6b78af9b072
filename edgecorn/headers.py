"""Reading header lists: `[(name, value), ...]` of bytes, as the protocol adapters deliver
them (names in lower case) and ASGI apps send them (names in any case)."""

from __future__ import annotations

from collections.abc import Iterable

Pairs = Iterable[tuple[bytes, bytes]]


def first(headers: Pairs, name: bytes) -> bytes | None:
    """The first value of header `name` (given in lower case); names match in any case."""
    for key, value in headers:
        if key.lower() == name:
            return bytes(value)
    return None


def values(headers: Pairs, name: bytes) -> list[bytes]:
    """Every value of header `name` (given in lower case), in order; names match in any case."""
    return [bytes(value) for key, value in headers if key.lower() == name]
