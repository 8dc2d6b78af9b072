"""Byte-stream edits the fuzz tests share (tests/test_fuzz.py, tests/test_fuzz_ws.py)."""

from __future__ import annotations


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Flip, insert or delete single bytes (edit kind 0/1/2 at a position)."""
    out = bytearray(data)
    for kind, pos, value in edits:
        if not out:
            out.append(value)
            continue
        pos %= len(out)
        if kind == 0:
            out[pos] = value
        elif kind == 1:
            out.insert(pos, value)
        else:
            del out[pos]
    return bytes(out)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given positions (modulo its length), as reads would deliver it."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]
