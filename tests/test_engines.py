"""Engine and event-loop choices: `worker_class: auto` (uvloop when installed) and
`http2_engine: auto | h2 | jh2`, end to end and sans-IO.

A library is made "not installed" for one server by a directory on its PYTHONPATH whose
package of that name raises ImportError, so these tests need no second environment.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from edgecorn.config import Config, ConfigError
from edgecorn.manager import ConnectionManager
from edgecorn.protocol.engines import h2_engine, resolve_h2, resolve_worker_class
from edgecorn.protocol.events import Request
from edgecorn.protocol.h2 import H2Adapter

APP = "tests.apps.backends:loop_app"
# Tests naming `http2_engine` run once per engine; the rest use the default (auto).
engines = pytest.mark.parametrize("http2_engine", ["h2", "jh2"])


def blocker(tmp_path: Path, *names: str) -> str:
    """A directory that makes `names` fail to import when it comes first on the path."""
    root = tmp_path / "blocked"
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(f"raise ImportError('{name} blocked by a test')\n")
    return str(root)


def serve(server_factory: Any, *args: str) -> Any:
    """Start a server on the loop app with exactly `args` (no -k unless given)."""
    from tests.support.net import free_port

    port = free_port()
    server = server_factory.spawn([APP, "--workers", "0", "--bind", f"127.0.0.1:{port}", *args])
    server.port = server.insecure_port = port
    deadline = time.monotonic() + 15
    while "Running on" not in server.stderr():
        assert server.alive(), server.describe()
        assert time.monotonic() < deadline, server.describe()
        time.sleep(0.05)
    return server


def startup_line(server: Any) -> str:
    lines = [line for line in server.stderr().splitlines() if "event loop" in line]
    assert len(lines) == 1, server.describe()
    return lines[0]


# --- worker_class ------------------------------------------------------------------------------


def test_worker_class_defaults_to_auto() -> None:
    assert Config().worker_class == "auto"
    assert resolve_worker_class("auto") == "uvloop"  # uvloop is a dependency on Linux
    assert resolve_worker_class("asyncio") == "asyncio"


def test_auto_runs_uvloop_and_says_so(server_factory: Any, curl: Any) -> None:
    server = serve(server_factory)
    assert "uvloop event loop" in startup_line(server)
    assert curl(f"{server.http}/").text == "uvloop"


def test_auto_falls_back_to_asyncio_without_uvloop(
    server_factory: Any, curl: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", blocker(tmp_path, "uvloop"))
    server = serve(server_factory)
    assert "asyncio event loop" in startup_line(server)
    assert curl(f"{server.http}/").text == "asyncio"


@pytest.mark.parametrize("worker_class", ["asyncio", "uvloop", "trio"])
def test_explicit_worker_class_is_what_runs(
    server_factory: Any, curl: Any, worker_class: str
) -> None:
    server = serve(server_factory, "-k", worker_class)
    assert f"{worker_class} event loop" in startup_line(server)
    assert curl(f"{server.http}/").text == worker_class


# --- http2_engine ------------------------------------------------------------------------------


def test_unknown_engine_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^http2_engine: expected one of 'auto', 'h2', 'jh2'"):
        Config(http2_engine="spdy")


def test_auto_engine_is_jh2_when_installed() -> None:
    assert Config().http2_engine == "auto"
    assert resolve_h2("auto") == "jh2"  # jh2 is in the test extras


@engines
def test_engine_reaches_the_adapter_through_config(http2_engine: str) -> None:
    manager = ConnectionManager(Config(http2_engine=http2_engine), None, {}, None)  # type: ignore[arg-type]
    adapter = manager.new_h2()
    assert adapter.h2.name == http2_engine
    base = type(adapter.conn).__mro__[1]  # the engine's class, under our closed-stream bound
    assert base.__module__ == f"{http2_engine}.connection"
    assert adapter.conn.MAX_CLOSED_STREAMS == 2048


@pytest.mark.parametrize("http2_engine", ["h2", "jh2"])
def test_closed_streams_remembered_are_bounded(http2_engine: str) -> None:
    """A long-lived connection's record of closed streams stays bounded (the libraries keep
    2**16, ~10 MB, which the memory bench saw grow one request at a time)."""
    from edgecorn.protocol.engines import h2_engine

    engine = h2_engine(http2_engine)
    client = engine.connection.H2Connection(engine.config.H2Configuration(client_side=True))
    client.initiate_connection()
    server = engine.H2Connection(engine.config.H2Configuration(client_side=False))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    for stream_id in range(1, 2 * 3000, 2):
        client.send_headers(
            stream_id,
            [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")],
            end_stream=True,
        )
        server.receive_data(client.data_to_send())
        server.send_headers(stream_id, [(":status", "200")], end_stream=True)
        client.receive_data(server.data_to_send())
    assert len(server._closed_streams) <= 2048


def test_missing_engine_asked_for_is_one_config_error(tmp_path: Path) -> None:
    from tests.support.net import free_port

    env = {"PYTHONPATH": blocker(tmp_path, "jh2") + ":" + str(Path(__file__).parent.parent)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecorn",
            APP,
            "--workers",
            "0",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--http2-engine",
            "jh2",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, proc.stderr
    assert "--http2-engine" in errors[0] and "pip install 'edgecorn[fast]'" in errors[0]


def test_auto_engine_falls_back_to_h2_without_jh2(
    server_factory: Any, curl: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", blocker(tmp_path, "jh2"))
    server = serve(server_factory)
    assert "HTTP/2 engine h2" in startup_line(server)
    result = curl("--http2-prior-knowledge", "-w", "%{http_version}", f"{server.http}/")
    assert result.text == "uvloop2"


@engines
@pytest.mark.parametrize("loop", ["uvloop", "trio"])
def test_explicit_engine_serves_h2(
    server_factory: Any, curl: Any, http2_engine: str, loop: str
) -> None:
    server = serve(server_factory, "-k", loop, "--http2-engine", http2_engine)
    assert f"HTTP/2 engine {http2_engine}" in startup_line(server)
    result = curl("--http2-prior-knowledge", "-w", "%{http_version}", f"{server.http}/")
    assert result.text == f"{loop}2"


# --- sans-IO: what the engines must agree on ---------------------------------------------------


def _client() -> h2.connection.H2Connection:
    return h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )


def _adapter(engine: str) -> H2Adapter:
    server = H2Adapter(
        max_concurrent_streams=10,
        max_header_list_size=65536,
        max_inbound_frame_size=16384,
        max_requests=100,
        engine=h2_engine(engine),
    )
    server.initiate()
    return server


def _settings_sent(server: H2Adapter) -> dict[int, int]:
    data = server.data_to_send()
    length = int.from_bytes(data[:3], "big")
    assert data[3] == 0x4, "the server's first frame is its SETTINGS"
    payload = data[9 : 9 + length]
    return {
        int.from_bytes(payload[i : i + 2], "big"): int.from_bytes(payload[i + 2 : i + 6], "big")
        for i in range(0, length, 6)
    }


@engines
def test_engines_advertise_the_same_settings(http2_engine: str) -> None:
    sent = _settings_sent(_adapter(http2_engine))
    assert sent == _settings_sent(_adapter("h2"))
    assert sent[0x4] == 65535 and sent[0x1] == 4096  # INITIAL_WINDOW_SIZE, HEADER_TABLE_SIZE


@engines
def test_peer_default_stream_window_is_respected(http2_engine: str) -> None:
    """A peer whose SETTINGS names no window has 65535-byte stream windows (RFC 9113 6.5.2),
    even when it opens the connection window wide."""
    server = _adapter(http2_engine)
    client = _client()
    client.initiate_connection()
    client.data_to_send()
    empty_settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    client.send_headers(
        1,
        [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")],
        end_stream=True,
    )
    client.increment_flow_control_window(10 * 2**20)  # connection window only
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    events = server.receive_data(preface + empty_settings + client.data_to_send())
    assert any(isinstance(e, Request) for e in events)
    assert server.sendable(1) == 65535
    server.send_response(1, 200, [], b"", end=False)
    server.send_data(1, b"x" * server.sendable(1), end=False)
    assert server.sendable(1) == 0
