"""`access_log_format: json`: one JSON object per line, whatever the client sent, and a line
for responses cut short too. Every line the server writes is parsed with json.loads."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from typing import Any

import pytest

from edgecorn.logging import json_line

HOSTILE = [  # (bytes on the wire, what the log must hold)
    (b'say "hi"', 'say "hi"'),
    (b"back\\slash\\\\ and \\u0000 and \\n", "back\\slash\\\\ and \\u0000 and \\n"),
    (b'"}, {"status": 999, "x": "', '"}, {"status": 999, "x": "'),
    (b"tab\there", "tab\there"),
    (b"caf\xc3\xa9 \xe2\x80\xa8 sep", "caf\u00e9 \u2028 sep"),
    (b"latin1 \xff\xfe\x80 bytes", "latin1 \\xff\\xfe\\x80 bytes"),
]


def test_json_line_escapes_everything() -> None:
    """Sans-IO: values no HTTP parser would let through still make one valid line."""
    scope: dict[str, Any] = {
        "method": "GET",
        "http_version": "1.1",
        "scheme": "https",
        "raw_path": b"/a\xff%22",
        "query_string": b'q="\x00"',
        "client": ("192.0.2.7", 5000),
        "headers": [
            (b"user-agent", b'evil\r\n{"forged": true}\x00\x1b[31m\xff'),
            (b"host", b"example.com"),
        ],
    }
    line = json_line(scope, 200, [(b"content-type", b"text/plain")], 12, 0.25, complete=False)
    assert "\n" not in line and "\r" not in line and line.isascii()
    record = json.loads(line)
    assert record["user_agent"] == 'evil\r\n{"forged": true}\x00\x1b[31m\\xff'
    assert record["path"] == "/a\\xff%22"
    assert record["query"] == 'q="\x00"'
    assert record["referer"] is None
    expected = {
        "client": "192.0.2.7",
        "method": "GET",
        "protocol": "HTTP/1.1",
        "scheme": "https",
        "host": "example.com",
        "status": 200,
        "bytes": 12,
        "duration": 0.25,
        "content_type": "text/plain",
        "complete": False,
    }
    assert {key: record[key] for key in expected} == expected


def log_records(server: Any, count: int) -> list[dict[str, Any]]:
    """Every stdout line as JSON (failing on any line that is not), once `count` are there."""
    deadline = time.monotonic() + 10
    while len(server.stdout().splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [json.loads(line) for line in server.stdout().splitlines()]


def raw_request(port: int, head: bytes, cafile: str) -> bytes:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        with ctx.wrap_socket(plain, server_hostname="localhost") as sock:
            sock.sendall(head)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    return data


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_hostile_headers_over_http1(server_factory: Any, cafile: str, parser: str) -> None:
    server = server_factory.start("--access-logformat", "json", parser=parser)
    for value, _ in HOSTILE:
        head = (
            b"GET /echo?x=%22 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: "
            + value
            + b"\r\nReferer: "
            + value
            + b"\r\nConnection: close\r\n\r\n"
        )
        reply = raw_request(server.port, head, cafile)
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    records = log_records(server, len(HOSTILE))
    assert [(r["user_agent"], r["referer"]) for r in records] == [(s, s) for _, s in HOSTILE]
    assert {
        (r["method"], r["path"], r["query"], r["status"], r["protocol"], r["complete"])
        for r in records
    } == {("GET", "/echo", "x=%22", 200, "HTTP/1.1", True)}


def test_hostile_headers_over_http2(server_factory: Any, cafile: str) -> None:
    server = server_factory.start("--access-logformat", "json")
    for value, _ in HOSTILE[:5]:  # curl's -H takes the text as it is
        result = subprocess.run(
            [
                "curl",
                "-sS",
                "--http2",
                "--cacert",
                cafile,
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                "-H",
                b"User-Agent: ".decode() + value.decode("utf-8"),
                f"https://localhost:{server.port}/",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.stdout == "2 200", result.stderr
    records = log_records(server, 5)
    assert [r["user_agent"] for r in records] == [s for _, s in HOSTILE[:5]]
    assert {(r["protocol"], r["bytes"], r["complete"]) for r in records} == {
        ("HTTP/2", len(b"Hello, world!"), True)
    }


def test_response_cut_by_the_app_still_logged(server_factory: Any, cafile: str) -> None:
    """The app raises after sending 7 bytes: a line with those 7 bytes, marked incomplete."""
    server = server_factory.start("--access-logformat", "json")
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "--cacert",
            cafile,
            "--max-time",
            "10",
            f"https://localhost:{server.port}/error?after=1",
        ],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode != 0  # the stream was reset: curl sees a broken transfer
    [record] = log_records(server, 1)
    assert (record["path"], record["status"], record["bytes"], record["complete"]) == (
        "/error",
        200,
        len(b"partial"),
        False,
    )


def test_client_gone_mid_download_still_logged(server_factory: Any, cafile: str) -> None:
    """A client that reads 1 MiB of an endless body and closes: one incomplete line that
    counts at least the bytes the client read; then a complete request logs as complete."""
    server = server_factory.start("--access-logformat", "json")
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    received = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain:
        with ctx.wrap_socket(plain, server_hostname="localhost") as sock:
            sock.sendall(b"GET /big?mb=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            for _ in range(10_000):  # bounded: stop after 1 MiB
                chunk = sock.recv(65536)
                assert chunk
                received += len(chunk)
                if received >= 1024 * 1024:
                    break
    raw_request(
        server.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", cafile
    )
    records = log_records(server, 2)
    by_path = {record["path"]: record for record in records}
    assert len(records) == 2 and set(by_path) == {"/big", "/"}
    assert by_path["/big"]["complete"] is False and by_path["/big"]["status"] == 200
    assert by_path["/big"]["bytes"] >= received - 1024  # minus the response head at most
    assert by_path["/"]["complete"] is True and by_path["/"]["bytes"] == len(b"Hello, world!")
