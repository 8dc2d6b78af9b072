"""Digests of the payloads the test apps send (compared, never held whole in memory)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.apps.e2e import big_chunk


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def big_sha(mb: int) -> str:
    """The SHA-256 of `/big?mb=N` (N times `big_chunk()`)."""
    digest = hashlib.sha256()
    chunk = big_chunk()
    for _ in range(mb):
        digest.update(chunk)
    return digest.hexdigest()
