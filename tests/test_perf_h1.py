"""Correctness of the HTTP/1 fast path (issue 12); no timing here, bench/ measures speed.

The speed work changed who checks response fields (the connection alone), how a flush
finds its bytes (straight from the adapter), and how an app starts (eagerly on Python
3.12+). Each test pins down what those must not change, on every event loop and both
HTTP/1 parsers, with real servers over loopback and raw-socket clients.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

APP = "tests.apps.perf:app"
LOOPS = ("asyncio", "uvloop", "trio")

pytestmark = pytest.mark.timeout(60)
every_loop = pytest.mark.parametrize("worker_class", LOOPS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def perf_server(session_factory: Any, parser: str) -> Any:
    server = session_factory.start(app=APP, parser=parser, tls=False)
    yield server
    server.stop()


@every_loop
def test_injected_response_header_becomes_a_500(perf_server: Any, h1: Any) -> None:
    conn = h1(perf_server.insecure_port)
    conn.request("GET", "/inject-header")
    resp = conn.read_response()
    assert resp.status == 500
    assert b"x-evil" not in resp.raw_head.lower()
    # The connection still serves the next request.
    conn.request("GET", "/after")
    assert conn.read_response().body == b"hello /after"


@every_loop
def test_injected_trailer_cuts_the_response(perf_server: Any, h1: Any) -> None:
    conn = h1(perf_server.insecure_port)
    conn.request("GET", "/inject-trailer", headers=[("TE", "trailers")])
    data = conn.read_until_close()  # a chunked body that cannot end well ends the connection
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"x-evil" not in data.lower()
    assert not data.endswith(b"0\r\n\r\n")  # no clean end of the chunked body


@every_loop
@pytest.mark.parametrize("path", ["/raise-at-once", "/raise-later"])
def test_app_errors_are_500s_wherever_they_happen(perf_server: Any, h1: Any, path: str) -> None:
    conn = h1(perf_server.insecure_port)
    for _ in range(3):  # the same connection goes on after each failure
        conn.request("GET", path)
        resp = conn.read_response()
        assert (resp.status, resp.body) == (500, b"500 Internal Server Error\n")
    assert perf_server.wait_stderr("before any await" if "once" in path else "after an await")


@every_loop
def test_each_request_has_its_own_context(perf_server: Any, h1: Any) -> None:
    conn = h1(perf_server.insecure_port)
    for i in range(3):
        # A body sent after the head makes the app suspend in `receive`.
        conn.send(b"POST /context/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n" % i)
        conn.send(b"ok")
        assert conn.read_response().body == b"unset|/context/%d" % i
        conn.request("GET", f"/context/get{i}")  # the whole request at once
        assert conn.read_response().body == f"unset|/context/get{i}".encode()


@every_loop
def test_async_library_is_detectable_before_any_await(
    perf_server: Any, h1: Any, worker_class: str
) -> None:
    conn = h1(perf_server.insecure_port)
    conn.request("GET", "/library")
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"trio" if worker_class == "trio" else b"asyncio")


@every_loop
def test_pipelined_requests_answered_whole_and_in_order(perf_server: Any, h1: Any) -> None:
    conn = h1(perf_server.insecure_port)
    count = 200
    wire = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(count - 1))
    conn.send(wire + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    bodies = [conn.read_response().body for _ in range(count)]
    assert bodies == [b"hello /p%d" % i for i in range(count - 1)] + [b"hello /last"]
    assert conn.closed_by_peer(5)  # `Connection: close` still ends it after the last one


EAGER_CHECK = textwrap.dedent(
    """
    import asyncio, contextvars, importlib.util, sys
    spec = importlib.util.spec_from_file_location("runtime", sys.argv[1])
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)
    assert runtime.EAGER_TASKS
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    async def at_once():
        seen.append(("at once", asyncio.current_task() is not None, var.get()))
        var.set("leaked?")

    async def suspends(gate):
        seen.append(("before", asyncio.current_task() is not None, var.get()))
        var.set("mine")
        await gate
        seen.append(("after", asyncio.current_task() is not None, var.get()))

    async def main():
        host = runtime.AsyncioRuntime(asyncio.get_running_loop())
        host.spawn(at_once())
        assert seen == [("at once", True, "unset")] and not host.tasks, (seen, host.tasks)
        gate = host.create_future()
        host.spawn(suspends(gate))
        assert seen[-1] == ("before", True, "unset") and len(host.tasks) == 1
        gate.set_result(None)
        await asyncio.wait(list(host.tasks))
        assert seen[-1] == ("after", True, "mine") and not host.tasks
        assert var.get() == "unset"
        # An app ending in its eager part starts the next pipelined one (stream_done):
        # that one is a plain task, so a long pipeline is no deep recursion.
        done = []

        async def chain(n):
            done.append(n)
            if n:
                host.spawn(chain(n - 1))

        host.spawn(chain(3 * sys.getrecursionlimit()))
        while host.tasks:
            await asyncio.wait(list(host.tasks))
        assert len(done) == 3 * sys.getrecursionlimit() + 1, len(done)
        print("ok")

    asyncio.run(main())
    """
)


def _python_312() -> tuple[str, dict[str, str] | None] | None:
    """A working Python 3.12+ on PATH, with the environment it needs (a pyenv shim runs
    another installed version only when PYENV_VERSION names it)."""
    envs: list[dict[str, str] | None] = [None]
    pyenv = shutil.which("pyenv")
    if pyenv is not None:
        listed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True)
        versions = [v for v in listed.stdout.split() if v.startswith(("3.12", "3.13"))]
        envs += [{**os.environ, "PYENV_VERSION": v} for v in versions]
    for name in ("python3.13", "python3.12"):
        exe = shutil.which(name)
        for env in envs if exe is not None else []:
            check = [exe, "-c", "import sys; assert sys.version_info >= (3, 12)"]
            if subprocess.run(check, capture_output=True, env=env, timeout=30).returncode == 0:
                return exe, env
    return None


def test_eager_start_on_python_312() -> None:
    """The eager path runs only on 3.12+; this checks it there (runtime.py needs only the
    standard library), whatever Python runs the suite."""
    found = (sys.executable, None) if sys.version_info >= (3, 12) else _python_312()
    if found is None:
        pytest.skip("no Python 3.12+ here to check the eager-start path")
    exe, env = found
    runtime = Path(__file__).parent.parent / "edgecorn" / "asyncio" / "runtime.py"
    proc = subprocess.run(
        [exe, "-c", EAGER_CHECK, str(runtime)], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
