"""Header lists: `[(name, value), ...]` of bytes, as the protocol adapters deliver them
(names in lower case) and ASGI apps send them (names in any case). Reading them, and the
one check of what an app may put on the wire, for every protocol."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A field name is a token (RFC 9110 5.1); a value may not hold NUL, CR or LF (5.5), which
# would split a response or smuggle one into it.
BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
BAD_VALUE = re.compile(rb"[\x00\r\n]")

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


def check_fields(headers: Pairs) -> None:
    """App-supplied fields go onto the wire: refuse what would split or smuggle them."""
    for name, value in headers:
        if not name or BAD_NAME.search(name) or BAD_VALUE.search(value):
            raise ValueError(f"invalid response header {name!r}: {value!r}")
