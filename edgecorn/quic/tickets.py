"""Session tickets for resumption and 0-RTT, in one of two ways.

Without a key file (`TicketStore`): tickets are random labels for session state kept in
this worker's memory, each usable once. Single use is what makes a replayed 0-RTT
ticket fail (RFC 8446 8.1), and a ticket resumes only on the worker that issued it.

With `quic_ticket_key_file` (`SealedTickets`): the ticket *is* the session state,
sealed with AES-256-GCM under a key every host and worker reads from the same file, so
any of them resumes it. Single use cannot be enforced across processes any more, so
0-RTT gets RFC 8446 8.2-style protection per worker (`EarlyDataGuard`): a ticket's
early data is accepted once per worker within a freshness window, and never outside it.
A replay sent to another worker or host inside the window can still be accepted: that
is why 0-RTT only carries idempotent methods unless `quic_early_data_unsafe`.

This module knows nothing of the QUIC engines: they turn `TicketState` into their own
SessionTicket class (engine.py, qh3_engine.py).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_MIN_BYTES = 32
VERSION = 1
NONCE_SIZE = 12
KEY_ID_SIZE = 4
HEADER = struct.Struct("!B4s")  # version, key id (also the AEAD's associated data)
# issued and expiry (ms since the epoch, UTC), age_add, cipher suite, has max_early_data,
# max_early_data, then server name (u16 length) and resumption secret (u8 length)
FIXED = struct.Struct("!QQIHBI")
# RFC 8446 8.3: how far the client's idea of the ticket's age may stray from ours (clock
# skew between hosts plus network delay); also how long a seen ticket is remembered.
EARLY_DATA_WINDOW = 10.0
UTC = datetime.timezone.utc
# Tickets kept per generation (two generations), so at most ~4 MB: each is kept packed
# (`_pack`) under a 16-byte hash of its label, ~200 B with the dict's slot, rather than as
# the engine's SessionTicket under its 64-byte label (~850 B with its datetimes and the
# transport-parameter extension), which grew a worker by ~16 MB in bench/soak.py's 1M run
# before the bound held. A client past the bound just does a full handshake.
TICKETS_PER_GENERATION = 10_000


class TicketStore:
    """Single use is what makes 0-RTT replay of a ticket fail here (RFC 8446 8.1).
    Tickets live in two generations that rotate every `rotation` seconds, so a
    ticket is forgotten after one to two rotations and the store stays bounded.

    `add` and `pop` are the engine's session ticket handler and fetcher (aioquic's and
    qh3's SessionTicket have the same fields); a popped ticket is rebuilt as the class
    the engine added, without the extensions the server side never reads back.
    """

    def __init__(self, rotation: float = 3600.0, max_size: int = TICKETS_PER_GENERATION) -> None:
        self.rotation = rotation
        self.max_size = max_size
        self.current: dict[bytes, bytes] = {}  # _key(label) -> packed TicketState
        self.previous: dict[bytes, bytes] = {}
        self.rotated_at = time.monotonic()
        self.kind: Callable[..., Any] | None = None  # the engine's SessionTicket class
        self.suites: dict[int, Any] = {}  # cipher suite number -> the engine's enum member
        self.naive = False  # qh3's tickets carry naive UTC times, aioquic's aware ones

    def _maybe_rotate(self) -> None:
        full = len(self.current) >= self.max_size
        if full or time.monotonic() - self.rotated_at >= self.rotation:
            self.previous, self.current = self.current, {}
            self.rotated_at = time.monotonic()

    def add(self, ticket: Any) -> None:
        self._maybe_rotate()
        self.kind = type(ticket)
        self.naive = ticket.not_valid_before.tzinfo is None
        suite = ticket.cipher_suite
        self.suites[int(suite)] = suite
        self.current[_key(ticket.ticket)] = _pack(state_of(ticket))

    def pop(self, label: bytes) -> Any:
        self._maybe_rotate()
        key = _key(label)
        body = self.current.pop(key, None) or self.previous.pop(key, None)
        state = _unpack(body) if body is not None else None
        if state is None or self.kind is None:
            return None
        start, end = state.not_valid_before, state.not_valid_after
        if self.naive:
            start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
        return self.kind(
            age_add=state.age_add,
            cipher_suite=self.suites[state.cipher_suite],
            not_valid_after=end,
            not_valid_before=start,
            resumption_secret=state.resumption_secret,
            server_name=state.server_name,
            ticket=label,
            max_early_data_size=state.max_early_data_size,
        )


@dataclass(frozen=True)
class TicketState:
    """What a QUIC engine's TLS needs to resume a session (its SessionTicket's fields)."""

    age_add: int
    cipher_suite: int
    not_valid_before: datetime.datetime  # aware, UTC (state_of reads a naive one as UTC)
    not_valid_after: datetime.datetime
    resumption_secret: bytes
    server_name: str
    max_early_data_size: int | None = None


def state_of(ticket: Any) -> TicketState:
    """The session state in an engine's SessionTicket (aioquic's or qh3's)."""
    return TicketState(
        age_add=ticket.age_add,
        cipher_suite=int(ticket.cipher_suite),
        not_valid_before=_utc(ticket.not_valid_before),
        not_valid_after=_utc(ticket.not_valid_after),
        resumption_secret=ticket.resumption_secret,
        server_name=ticket.server_name or "",
        max_early_data_size=ticket.max_early_data_size,
    )


class TicketKeyError(ValueError):
    """The key file cannot be used; the message says why."""


def _derive(secret: bytes, label: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, None, b"edgecorn quic ticket " + label).derive(secret)


def read_key_file(path: str) -> list[bytes]:
    """The secrets in a key file: one hex string of 32 or more bytes per line (e.g. from
    `openssl rand -hex 32`), the first one sealing new tickets, every one opening them.
    Blank lines and `#` comments are skipped."""
    try:
        with open(path, encoding="ascii") as file:
            text = file.read()
    except OSError as exc:
        raise TicketKeyError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TicketKeyError(f"{path} is not text (one hex key a line)") from None
    secrets = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            secret = bytes.fromhex(line)
        except ValueError:
            raise TicketKeyError(f"{path} line {number}: not a hex string") from None
        if len(secret) < KEY_MIN_BYTES:
            raise TicketKeyError(
                f"{path} line {number}: {len(secret)} bytes; a key needs {KEY_MIN_BYTES} or more"
            )
        secrets.append(secret)
    if not secrets:
        raise TicketKeyError(f"{path} holds no key (one hex string of 32+ bytes per line)")
    return secrets


class SealedTickets:
    """Tickets that carry their own session state, sealed under the key file's first key
    and opened under any of its keys (so a key can be rotated in: list the new one first
    and keep the old one until the tickets it sealed have expired)."""

    def __init__(self, secrets: list[bytes], guard: EarlyDataGuard | None = None) -> None:
        self.keys: list[tuple[bytes, AESGCM]] = [
            (_derive(secret, b"key id", KEY_ID_SIZE), AESGCM(_derive(secret, b"aead key", 32)))
            for secret in secrets
        ]
        self.guard = guard if guard is not None else EarlyDataGuard()

    @classmethod
    def from_file(cls, path: str) -> SealedTickets:
        return cls(read_key_file(path))

    def seal(self, state: TicketState) -> bytes:
        key_id, aead = self.keys[0]
        header = HEADER.pack(VERSION, key_id)
        nonce = os.urandom(NONCE_SIZE)
        return header + nonce + aead.encrypt(nonce, _pack(state), header)

    def open(self, label: bytes) -> TicketState | None:
        """The state a ticket carries; None when it is not one of ours (another key,
        tampered with, or another format): the client then gets a full handshake."""
        if len(label) < HEADER.size + NONCE_SIZE + 16:
            return None
        version, key_id = HEADER.unpack_from(label)
        if version != VERSION:
            return None
        nonce = label[HEADER.size : HEADER.size + NONCE_SIZE]
        for known_id, aead in self.keys:
            if known_id != key_id:
                continue
            try:
                body = aead.decrypt(nonce, label[HEADER.size + NONCE_SIZE :], label[: HEADER.size])
            except InvalidTag:
                continue
            return _unpack(body)
        return None

    # The engines call these as aioquic's session_ticket_fetcher / handler; the engine
    # door replaces both on connections that seal (engine.py).
    def pop(self, label: bytes) -> None:
        return None

    def add(self, ticket: object) -> None:
        """The ticket already left sealed: nothing to remember."""


def _key(label: bytes) -> bytes:
    """A ticket's key in the store: 16 bytes of its label's hash rather than the label
    (64 bytes from both engines), ~48 B less per ticket, whatever the label looks like."""
    return hashlib.blake2b(label, digest_size=16).digest()


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _pack(state: TicketState) -> bytes:
    name = state.server_name.encode()
    early = state.max_early_data_size
    return (
        FIXED.pack(
            _ms(state.not_valid_before),
            _ms(state.not_valid_after),
            state.age_add,
            state.cipher_suite,
            early is not None,
            early or 0,
        )
        + struct.pack("!H", len(name))
        + name
        + struct.pack("!B", len(state.resumption_secret))
        + state.resumption_secret
    )


def _unpack(body: bytes) -> TicketState | None:
    try:
        issued, expires, age_add, suite, has_early, early = FIXED.unpack_from(body)
        at = FIXED.size
        (name_length,) = struct.unpack_from("!H", body, at)
        name = body[at + 2 : at + 2 + name_length].decode()
        at += 2 + name_length
        (secret_length,) = struct.unpack_from("!B", body, at)
        secret = body[at + 1 : at + 1 + secret_length]
    except (struct.error, UnicodeDecodeError):
        return None
    if len(secret) != secret_length:
        return None
    return TicketState(
        age_add=age_add,
        cipher_suite=suite,
        not_valid_before=datetime.datetime.fromtimestamp(issued / 1000, UTC),
        not_valid_after=datetime.datetime.fromtimestamp(expires / 1000, UTC),
        resumption_secret=secret,
        server_name=name,
        max_early_data_size=early if has_early else None,
    )


class EarlyDataGuard:
    """0-RTT replay protection for one worker (RFC 8446 8.2 and 8.3).

    Early data is accepted only when the client's view of the ticket's age (from the
    obfuscated age in its ClientHello) is within `window` seconds of ours: a ClientHello
    replayed later than that is stale. Inside the window each ticket's early data is
    accepted once: the ticket is remembered for twice the window (a replay is fresh for
    at most that long after the first use). Past `max_size`
    remembered tickets, 0-RTT is refused rather than forgetting one early.
    Hosts' clocks must agree to well within the window (NTP) for 0-RTT to be accepted.
    """

    def __init__(self, window: float = EARLY_DATA_WINDOW, max_size: int = 100_000) -> None:
        self.window_ms = int(window * 1000)
        self.max_size = max_size
        self.seen: dict[bytes, int] = {}  # ticket id -> when it may be forgotten (ms)

    def admit(
        self, label: bytes, state: TicketState, obfuscated_age: int, now_ms: int | None = None
    ) -> bool:
        now = _ms(datetime.datetime.now(UTC)) if now_ms is None else now_ms
        client_age = (obfuscated_age - state.age_add) % (1 << 32)
        our_age = now - _ms(state.not_valid_before)
        if abs(our_age - client_age) > self.window_ms:
            return False
        seen = self.seen
        while seen:  # insertion order is expiry order: drop the expired from the front
            first = next(iter(seen))
            if seen[first] > now:
                break
            del seen[first]
        ticket_id = hashlib.sha256(label).digest()[:16]
        if ticket_id in seen or len(seen) >= self.max_size:
            return False
        seen[ticket_id] = now + 2 * self.window_ms
        return True
