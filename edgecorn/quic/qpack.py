"""How large a QPACK header block can decode to, found before it is decoded.

pylsqpack decodes a whole header block before anyone can count it: 64 KiB of one-byte
references to a 4 KiB dynamic-table entry would expand to ~256 MiB first. So the sizes
of the peer's dynamic-table entries are followed from its encoder stream (RFC 9204 4.3),
and a header block's field lines (4.5) are walked to add up the names and values they
would decode to, without building anything. Huffman strings count as their longest
decoding (8/5 of their length), static entries as the longest in the table.
"""

from __future__ import annotations

from collections import deque

ENTRY_OVERHEAD = 32  # RFC 9204 3.2.1: what a table entry costs beyond name and value
STATIC_NAME_MAX = 32  # access-control-allow-credentials
STATIC_ENTRY_MAX = 80  # content-security-policy: script-src 'none'; object-src ...
MAX_INT = 1 << 62


class Blocked(Exception):
    """The block refers to entries not received yet (the decoder will block on it)."""


def _int(data: bytes | bytearray, pos: int, prefix: int) -> tuple[int, int]:
    """An RFC 7541 5.1 integer with an N-bit prefix at `pos`: (value, next position).
    IndexError when incomplete, ValueError when absurd."""
    mask = (1 << prefix) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if value > MAX_INT:
            raise ValueError("QPACK integer too large")
        if not byte & 0x80:
            return value, pos
        shift += 7


def _string(data: bytes | bytearray, pos: int, prefix: int) -> tuple[int, int]:
    """A string literal whose Huffman bit is just above its N-bit length prefix:
    (longest decoded length, next position)."""
    huffman = data[pos] & (1 << prefix)
    length, pos = _int(data, pos, prefix)
    if pos + length > len(data):
        raise IndexError("incomplete string")
    return (length * 8 // 5 if huffman else length), pos + length


class QpackSizes:
    """The peer's dynamic table as (name length, value length) per entry."""

    def __init__(self, max_table_capacity: int) -> None:
        self.max_entries = max_table_capacity // ENTRY_OVERHEAD
        self.limit = max_table_capacity + 64  # an unfinished instruction never needs more
        self.entries: deque[tuple[int, int]] = deque(maxlen=max(1, self.max_entries))
        self.inserted = 0  # absolute index of the next entry
        self.pending = bytearray()
        self.broken = False  # lsqpack reports the peer's error; we stop following

    # --- the encoder stream ------------------------------------------------------------

    def feed_encoder(self, data: bytes) -> None:
        if self.broken:
            return
        buf = self.pending
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                pos = self._instruction(buf, pos)
        except IndexError:  # an unfinished instruction: wait for the rest
            pass
        except ValueError:
            self.broken = True
        del buf[:pos]
        if len(buf) > self.limit:
            self.broken = True  # longer than any entry the table could take
            buf.clear()

    def _instruction(self, buf: bytearray, pos: int) -> int:
        first = buf[pos]
        if first & 0x80:  # Insert with Name Reference
            index, pos = _int(buf, pos, 6)
            name = STATIC_NAME_MAX if first & 0x40 else self._entry(self.inserted - 1 - index)[0]
            value, pos = _string(buf, pos, 7)
            self._insert(name, value)
        elif first & 0x40:  # Insert with Literal Name
            name, pos = _string(buf, pos, 5)
            value, pos = _string(buf, pos, 7)
            self._insert(name, value)
        elif first & 0x20:  # Set Dynamic Table Capacity: sizes are unchanged
            _, pos = _int(buf, pos, 5)
        else:  # Duplicate
            index, pos = _int(buf, pos, 5)
            self._insert(*self._entry(self.inserted - 1 - index))
        return pos

    def _insert(self, name: int, value: int) -> None:
        self.entries.append((name, value))
        self.inserted += 1

    def _entry(self, absolute: int) -> tuple[int, int]:
        if absolute >= self.inserted:
            raise Blocked
        oldest = self.inserted - len(self.entries)
        if absolute < oldest:
            raise ValueError("QPACK reference to an evicted entry")
        return self.entries[absolute - oldest]

    # --- header blocks -----------------------------------------------------------------

    def expanded_size(self, block: bytes, stop: int) -> int | None:
        """The most bytes of names and values `block` can decode to, or a value past `stop`
        as soon as it passes it; None when that cannot be told (malformed: lsqpack says
        so). Raises Blocked when it refers to entries still to come."""
        if self.broken:
            return None
        try:
            return self._walk(block, stop)
        except (IndexError, ValueError):
            return None

    def _walk(self, block: bytes, stop: int) -> int:
        encoded, pos = _int(block, 0, 8)
        required = self._required_insert_count(encoded)
        if required > self.inserted:
            raise Blocked
        sign = block[pos] & 0x80
        delta, pos = _int(block, pos, 7)
        base = required - delta - 1 if sign else required + delta
        total = 0
        end = len(block)
        while pos < end and total <= stop:
            first = block[pos]
            if first & 0x80:  # Indexed Field Line
                index, pos = _int(block, pos, 6)
                if first & 0x40:
                    total += STATIC_ENTRY_MAX
                else:
                    total += sum(self._entry(base - 1 - index))
            elif first & 0x40:  # Literal Field Line with Name Reference
                index, pos = _int(block, pos, 4)
                name = STATIC_NAME_MAX if first & 0x10 else self._entry(base - 1 - index)[0]
                value, pos = _string(block, pos, 7)
                total += name + value
            elif first & 0x20:  # Literal Field Line with Literal Name
                name, pos = _string(block, pos, 3)
                value, pos = _string(block, pos, 7)
                total += name + value
            elif first & 0x10:  # Indexed Field Line with Post-Base Index
                index, pos = _int(block, pos, 4)
                total += sum(self._entry(base + index))
            else:  # Literal Field Line with Post-Base Name Reference
                index, pos = _int(block, pos, 3)
                value, pos = _string(block, pos, 7)
                total += self._entry(base + index)[0] + value
        return total

    def _required_insert_count(self, encoded: int) -> int:
        """RFC 9204 4.5.1.1."""
        if encoded == 0:
            return 0
        full_range = 2 * self.max_entries
        if not full_range or encoded > full_range:
            raise ValueError("bad Required Insert Count")
        max_value = self.inserted + self.max_entries
        max_wrapped = (max_value // full_range) * full_range
        required = max_wrapped + encoded - 1
        if required > max_value:
            if required <= full_range:
                raise ValueError("bad Required Insert Count")
            required -= full_range
        if required == 0:
            raise ValueError("bad Required Insert Count")
        return required
