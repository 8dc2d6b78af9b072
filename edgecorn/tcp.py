"""What the asyncio and trio TCP listeners share, with no event loop in it: what each
accept() error means, a connection's addresses, and the timing, the wait-for-acks decision
and the kernel query of a lingering close. The backends do the waiting and the logging
this module decides on.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import math
import socket
import struct
import termios
from typing import Any


class Accept(enum.Enum):
    """What a listener does after accept() failed."""

    RETRY = "retry"  # that one connection died in the queue (or a signal): take the next now
    WAIT = "wait"  # the queue is empty: wait until the socket is readable again
    BACK_OFF = "back off"  # out of descriptors or memory: stop accepting for ACCEPT_BACK_OFF
    RAISE = "raise"  # the listening socket itself is broken: the listener ends with the error


# Out of descriptors or memory, accept() fails at once for as long as the shortage lasts,
# while the connections stay queued in the kernel. Accepting again immediately would spin;
# waiting long makes every queued client wait long after a descriptor is free. 500 ms is
# nginx's choice (it pauses accepting for accept_mutex_delay on EMFILE/ENFILE); asyncio's
# own 1 s doubles the wait for nothing, and trio's listener retried after 100 ms.
ACCEPT_BACK_OFF = 0.5
# One log line per listener per this many seconds while accept() keeps failing.
ACCEPT_LOG_INTERVAL = 10.0


def _errnos(*names: str) -> list[int]:
    return [getattr(errno, name) for name in names if hasattr(errno, name)]  # ENONET: Linux


ACCEPT_ERRORS: dict[int, Accept] = {
    **{code: Accept.BACK_OFF for code in _errnos("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")},
    # accept(2) on Linux: errors pending on the new connection are reported by accept()
    # itself and "should be treated like EAGAIN by retrying"; EPERM is a firewall refusal.
    **{
        code: Accept.RETRY
        for code in _errnos(
            "ECONNABORTED",
            "EPROTO",
            "EINTR",
            "EPERM",
            "ENETDOWN",
            "ENOPROTOOPT",
            "EHOSTDOWN",
            "ENONET",
            "EHOSTUNREACH",
            "EOPNOTSUPP",
            "ENETUNREACH",
            "ETIMEDOUT",
            "ECONNRESET",
        )
    },
    **{code: Accept.WAIT for code in _errnos("EAGAIN", "EWOULDBLOCK")},
}


class AcceptErrors:
    """One listener's accept() failures: what to do about each, and the log line to write
    (at most one per `interval` while shortages last, counting the ones left out)."""

    def __init__(self, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self.interval = interval
        self.logged_at = -math.inf
        self.unlogged = 0  # back-offs since the last line

    def decide(self, exc: OSError, now: float) -> tuple[Accept, str | None]:
        action = ACCEPT_ERRORS.get(exc.errno or 0, Accept.RAISE)
        if action is not Accept.BACK_OFF:
            return action, None
        if now - self.logged_at < self.interval:
            self.unlogged += 1
            return action, None
        line = f"cannot accept connections ({exc}): pausing accept for {ACCEPT_BACK_OFF:g} s"
        if self.unlogged:
            line += f" ({self.unlogged} more pauses since the last line)"
        self.logged_at, self.unlogged = now, 0
        return action, line


Address = tuple[str, int | None]


def addresses(peer: Any, local: Any) -> tuple[tuple[str, int] | None, Address | None]:
    """(client, server) for a scope from getpeername()/getsockname() results: IP sockets
    give (host, port) tuples, a Unix socket its path (or "" when unnamed: no server)."""
    client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
    if isinstance(local, tuple):
        return client, (local[0], local[1])
    return client, ((str(local), None) if local else None)


# A graceful close first waits until the peer has acknowledged every byte we wrote (as
# long as it makes progress: FLUSH_TIMEOUT without any ends the wait), then shuts down
# writing and reads and discards (up to LINGER_TIMEOUT) until the peer closes: closing a
# socket with unread input makes the kernel send RST and drop whatever the peer has not
# yet received (nginx's lingering_close). The graceful timeout or a forced close cut it.
FLUSH_TIMEOUT = 10.0
LINGER_TIMEOUT = 2.0
FLUSH_POLL = 0.01  # how often the unacknowledged count is asked while waiting


class Flush(enum.Enum):
    """What a graceful close does after asking how much the peer has not acknowledged."""

    WAIT = "wait"  # ask again after FLUSH_POLL
    DONE = "done"  # everything acknowledged: half-close and linger
    GIVE_UP = "give up"  # no progress for the whole timeout: half-close and linger anyway


class FlushWait:
    """One graceful close's wait for the peer's acks, while the peer makes progress: a
    slow reader that still reads gets its time, one that stopped gets `timeout`."""

    def __init__(self, now: float, timeout: float = FLUSH_TIMEOUT) -> None:
        self.timeout = timeout
        self.left = 1 << 62  # unacknowledged bytes at the last progress
        self.deadline = now + timeout

    def decide(self, left: int, now: float) -> Flush:
        """`left`: bytes written but not yet acknowledged (buffers included), now."""
        if not left:
            return Flush.DONE
        if left < self.left:  # progress: the timeout starts again
            self.left = left
            self.deadline = now + self.timeout
        return Flush.WAIT if now < self.deadline else Flush.GIVE_UP


# Linux's tcp_states.h: a connection the peer reset (or that ended) is CLOSE.
TCP_CLOSE = 7


def unacked_bytes(sock: Any) -> int:
    """Bytes written to a TCP socket that the peer has not acknowledged (Linux SIOCOUTQ);
    0 where that cannot be asked, and 0 once the connection is gone: a peer that closed
    and then got our last bytes answers them with RST, after which SIOCOUTQ keeps
    counting them forever (trio's close waited FLUSH_TIMEOUT for acks that never come)."""
    try:
        out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError, AttributeError):
        return 0
    count: int = struct.unpack("i", out)[0]
    if count and _tcp_state(sock) == TCP_CLOSE:
        return 0  # reset: nothing more will be acknowledged
    return count


def _tcp_state(sock: Any) -> int | None:
    """The first byte of Linux's struct tcp_info; None where there is none (Unix sockets)."""
    try:
        info: bytes = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
    except (OSError, ValueError, AttributeError):
        return None
    return info[0] if info else None
