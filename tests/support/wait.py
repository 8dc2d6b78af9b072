"""Bounded polling: every wait ends at its deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds passed; one last try at the end."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(interval)


def wait_for_lines(
    path: Path, wanted: str, timeout: float = 10.0, prefix: bool = False
) -> list[str]:
    """The lines of a record file once one equals `wanted` (starts with it if `prefix`),
    or whatever it holds at the deadline (the caller's assert then shows it)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if prefix:
            found = any(line.startswith(wanted) for line in lines)
        else:
            found = wanted in lines
        if found or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)
