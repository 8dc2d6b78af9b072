"""Which library does the framing behind an adapter, and which event loop runs a worker.

The choices themselves (and their validation) live in config.py, the one options table.

The adapters are written against the h2 API. jh2 is a maintained fork of h2 with the same
API, its own copy of hyperframe and a compiled HPACK: the adapter takes the engine's modules
from here instead of importing them, so one adapter serves both. `auto` picks the fast
engine when it is installed (`pip install edgecorn[fast]`) and the reference one otherwise.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

_FAST_HINT = "pip install 'edgecorn[fast]'"


def installed(module: str) -> bool:
    """Importable here. Imported, not only found: a broken install must count as missing
    (the library is about to be used anyway, so the import is not wasted)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def missing_engine(choice: str) -> str | None:
    """Why an explicit choice cannot run here, or None. `auto` always can."""
    if choice in ("jh2", "qh3", "uvloop", "trio") and not installed(choice):
        extra = _FAST_HINT if choice in ("jh2", "qh3") else f"pip install {choice}"
        return f"{choice} is not installed; {extra}"
    return None


def resolve_h2(choice: str) -> str:
    if choice == "auto":
        return "jh2" if installed("jh2") else "h2"
    return choice


def resolve_worker_class(choice: str) -> str:
    """`auto` is uvloop when it is importable, else asyncio (like Uvicorn's --loop auto)."""
    if choice == "auto":
        return "uvloop" if installed("uvloop") else "asyncio"
    return choice


CLOSED_STREAMS_KEPT = 2048


@dataclass(frozen=True)
class H2Engine:
    """The modules of one h2-API library; the adapter reaches h2 only through these."""

    name: str
    config: Any
    connection: Any
    errors: Any
    events: Any
    exceptions: Any
    settings: Any
    GoAwayFrame: Any  # noqa: N815  # the class, named as in hyperframe
    H2Connection: Any  # noqa: N815  # the engine's H2Connection, with our closed-stream bound


@cache
def h2_engine(choice: str = "auto") -> H2Engine:
    name = resolve_h2(choice)
    if name not in ("h2", "jh2"):
        raise ValueError(f"unknown HTTP/2 engine {choice!r}: 'auto', 'h2' or 'jh2'")
    # jh2 carries its own hyperframe (jh2.hyperframe); h2 uses the separate package.
    frames = "jh2.hyperframe.frame" if name == "jh2" else "hyperframe.frame"
    mods = {
        m: importlib.import_module(f"{name}.{m}")
        for m in ("config", "connection", "errors", "events", "exceptions", "settings")
    }
    base = mods["connection"].H2Connection
    # Both libraries remember the last 2**16 closed streams of a connection (~150 bytes each):
    # on a long-lived connection that is ~10 MB, grown one request at a time, which the memory
    # bench saw as +43% RSS over 200k h2 requests. A few thousand still tell a late frame on a
    # recently closed stream from one on a stream that never existed.
    bounded = type("H2Connection", (base,), {"MAX_CLOSED_STREAMS": CLOSED_STREAMS_KEPT})
    return H2Engine(
        name=name,
        GoAwayFrame=importlib.import_module(frames).GoAwayFrame,
        H2Connection=bounded,
        **mods,
    )
