"""accept() errors (edgecorn/tcp.py): one policy for both backends.

- The table: out of descriptors or memory backs off (one log line per interval), an error
  of the one queued connection retries at once, an empty queue waits, the rest raise: the
  listener closes and serve() ends with the error on both backends (the worker exits).
- End to end, on asyncio, uvloop and trio: a server whose descriptor limit is lowered (prlimit on
  the running process) until accept() fails with EMFILE logs it, keeps the connections in
  the kernel's queue, and answers every one of them once descriptors are free again.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import socket
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from edgecorn.tcp import ACCEPT_ERRORS, Accept, AcceptErrors, addresses
from tests.support.net import head_status

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (errno.EMFILE, Accept.BACK_OFF),
        (errno.ENFILE, Accept.BACK_OFF),
        (errno.ENOBUFS, Accept.BACK_OFF),
        (errno.ENOMEM, Accept.BACK_OFF),
        (errno.ECONNABORTED, Accept.RETRY),
        (errno.EPROTO, Accept.RETRY),
        (errno.EPERM, Accept.RETRY),
        (errno.ECONNRESET, Accept.RETRY),
        (errno.ENETUNREACH, Accept.RETRY),
        (errno.EINTR, Accept.RETRY),
        (errno.EAGAIN, Accept.WAIT),
        (errno.EBADF, Accept.RAISE),
        (errno.EINVAL, Accept.RAISE),
        (errno.ENOTSOCK, Accept.RAISE),
    ],
)
def test_policy_table(code: int, action: Accept) -> None:
    assert AcceptErrors().decide(OSError(code, os.strerror(code)), 0.0)[0] is action


def test_the_exceptions_python_raises_map_like_their_errno() -> None:
    errors = AcceptErrors()
    assert errors.decide(BlockingIOError(errno.EAGAIN, "again"), 0.0)[0] is Accept.WAIT
    assert errors.decide(ConnectionAbortedError(errno.ECONNABORTED, "x"), 0.0)[0] is Accept.RETRY
    assert errors.decide(OSError("no errno at all"), 0.0)[0] is Accept.RAISE


def test_every_errno_in_the_table_has_one_meaning() -> None:
    back_off = {c for c, a in ACCEPT_ERRORS.items() if a is Accept.BACK_OFF}
    assert back_off == {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def test_back_off_log_lines_are_rate_limited() -> None:
    errors = AcceptErrors(interval=10.0)
    emfile = OSError(errno.EMFILE, "Too many open files")
    action, line = errors.decide(emfile, 100.0)
    assert action is Accept.BACK_OFF
    assert line is not None and "Too many open files" in line and "0.5 s" in line
    assert errors.decide(emfile, 100.5) == (Accept.BACK_OFF, None)
    assert errors.decide(OSError(errno.ECONNABORTED, "aborted"), 101.0) == (Accept.RETRY, None)
    assert errors.decide(emfile, 109.9) == (Accept.BACK_OFF, None)
    action, line = errors.decide(emfile, 110.0)
    assert line is not None and "2 more pauses since the last line" in line
    _, line = errors.decide(emfile, 125.0)
    assert line is not None and "more pauses" not in line  # nothing left out since


def test_addresses() -> None:
    assert addresses(("10.0.0.1", 5555), ("10.0.0.2", 443)) == (
        ("10.0.0.1", 5555),
        ("10.0.0.2", 443),
    )
    assert addresses(("::1", 5555, 0, 0), ("::1", 443, 0, 0)) == (("::1", 5555), ("::1", 443))
    assert addresses("", "/run/edgecorn.sock") == (None, ("/run/edgecorn.sock", None))
    assert addresses("", "") == (None, None)


def _not_listening() -> socket.socket:
    """A bound TCP socket nobody called listen() on: accept() fails with EINVAL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def test_asyncio_listener_stops_and_fails_on_a_broken_socket() -> None:
    from edgecorn.asyncio.listen import Listener

    async def main() -> None:
        sock = _not_listening()
        listener = Listener(sock, lambda: asyncio.Protocol(), None, 1.0, 8, set())
        listener._accept()
        with pytest.raises(OSError) as info:
            await listener.failed  # what serve() waits on
        assert info.value.errno == errno.EINVAL
        assert listener.closed and sock.fileno() == -1  # no reader left to spin on

    asyncio.run(main())


def test_trio_accept_loop_raises_on_a_broken_socket() -> None:
    from edgecorn.trio.tcp import serve_tcp

    manager: Any = SimpleNamespace(
        config=SimpleNamespace(ssl_handshake_timeout=1.0), has_room=lambda: True
    )

    async def main() -> None:
        sock = _not_listening()
        with trio.fail_after(10):  # a retry would spin
            async with trio.open_nursery() as nursery:
                with pytest.raises(OSError) as info:
                    await serve_tcp(sock, manager, None, None, nursery)  # type: ignore[arg-type]
        assert info.value.errno == errno.EINVAL
        assert sock.fileno() == -1

    trio.run(main)


async def _plain_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to do
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _leaves(exc: BaseException) -> list[BaseException]:
    """The errors in (nested) exception groups; duck-typed, as Python 3.10 has no builtin."""
    inner: tuple[BaseException, ...] | None = getattr(exc, "exceptions", None)
    if inner is None:
        return [exc]
    return [leaf for one in inner for leaf in _leaves(one)]


def test_asyncio_serve_ends_with_a_broken_listener() -> None:
    # As on trio: the worker ends (non-zero, so the supervisor starts a new one) instead of
    # running on without that listener.
    from edgecorn.asyncio import serve
    from edgecorn.config import Config
    from edgecorn.sockets import Sockets

    async def main() -> None:
        sock = _not_listening()
        never = asyncio.Event()
        config = Config(graceful_timeout=1.0)
        with pytest.raises(OSError) as info:
            run = serve(
                _plain_app, config, sockets=Sockets(insecure=[sock]), shutdown_trigger=never.wait
            )
            await asyncio.wait_for(run, 10)  # before: served on without the listener
        assert info.value.errno == errno.EINVAL
        assert sock.fileno() == -1

    asyncio.run(main())


def test_trio_serve_ends_with_a_broken_listener() -> None:
    from edgecorn.config import Config
    from edgecorn.sockets import Sockets
    from edgecorn.trio import serve

    async def main() -> None:
        sock = _not_listening()
        never = trio.Event()
        config = Config(graceful_timeout=1.0)
        with pytest.raises(BaseException) as info:
            with trio.fail_after(10):
                await serve(
                    _plain_app,
                    config,
                    sockets=Sockets(insecure=[sock]),
                    shutdown_trigger=never.wait,
                )
        errors = [e for e in _leaves(info.value) if isinstance(e, OSError)]
        assert [e.errno for e in errors] == [errno.EINVAL], info.value
        assert sock.fileno() == -1

    trio.run(main)


# --------------------------------------------------------------------------- end to end

HOLDERS = 2  # connections that use up the descriptors left
WAITING = 5  # connections that arrive while accept() fails


def _request(sock: socket.socket, close: bool) -> None:
    extra = "Connection: close\r\n" if close else ""
    sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.both_backends
def test_server_keeps_serving_after_emfile(server_factory: Any) -> None:
    _emfile_then_served(server_factory)


def test_server_keeps_serving_after_emfile_uvloop(server_factory: Any) -> None:
    """uvloop is what `-k auto` (the default) runs when it is installed."""
    pytest.importorskip("uvloop")
    server_factory.worker_class = "uvloop"
    _emfile_then_served(server_factory)


def _emfile_then_served(server_factory: Any) -> None:
    server = server_factory.start(tls=False, config="keep_alive_timeout: 60\n")
    pid, port = server.proc.pid, server.insecure_port
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    # Room for exactly HOLDERS more descriptors: one per accepted cleartext connection.
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (_open_fds(pid) + HOLDERS, hard))
    holders: list[socket.socket] = []
    waiting: list[socket.socket] = []
    try:
        for _ in range(HOLDERS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=15)
            holders.append(sock)
            _request(sock, close=False)
            assert head_status(sock) == 200, server.stderr()[-2000:]
        for _ in range(WAITING):  # they wait in the kernel's queue: accept() gets EMFILE
            sock = socket.create_connection(("127.0.0.1", port), timeout=15)
            waiting.append(sock)
            _request(sock, close=True)
        assert server.wait_stderr("cannot accept connections", 15), server.stderr()[-2000:]
        assert "Too many open files" in server.stderr()
        for sock in holders:  # descriptors free up: every waiting connection is answered
            sock.close()
        for sock in waiting:  # (accepted in queue order; each close frees one more)
            assert head_status(sock) == 200, server.stderr()[-2000:]
            sock.close()
    finally:
        for sock in holders + waiting:
            sock.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert server.alive(), server.describe()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        _request(sock, close=True)
        assert head_status(sock) == 200
