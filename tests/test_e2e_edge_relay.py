"""What a transparent edge relays besides bodies: 103 Early Hints, response trailers and
`Expect: 100-continue` (both the 100 and a refusal before the body), over h1 and h2 with curl,
from an upstream that is not edgecorn (http.server, which can send what Uvicorn cannot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.edge import free_port, spawn, start_edge, wait_tcp

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, certs: tuple[str, str, str]) -> object:
    tmp = tmp_path_factory.mktemp("relay")
    up_port = free_port()
    upstream = spawn(
        "raw-upstream", [sys.executable, "-m", "tests.apps.raw_upstream", str(up_port)], tmp
    )
    wait_tcp(upstream, up_port)
    port = free_port()
    config = tmp / "edge.yaml"
    config.write_text(
        f'bind: ["127.0.0.1:{port}"]\ncertfile: {certs[0]}\nkeyfile: {certs[1]}\n'
        f"routes:\n  - proxy: http://127.0.0.1:{up_port}\n"
    )
    proc = start_edge(config, port, tmp)
    yield port
    proc.stop()
    upstream.stop()


def curl(port: int, cafile: str, proto: str, path: str, *args: str) -> str:
    cmd = [
        "curl",
        "-sS",
        "-v",
        "--max-time",
        "20",
        "--cacert",
        cafile,
        "--http1.1" if proto == "h1" else "--http2",
        *args,
        f"https://localhost:{port}{path}",
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=30)
    return done.stdout.decode("latin-1") + "\n---\n" + done.stderr.decode("latin-1")


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_early_hints_reach_the_client(edge: int, cafile: str, proto: str) -> None:
    out = curl(edge, cafile, proto, "/hints")
    lines = [line for line in out.splitlines() if line.startswith("< ")]
    statuses = [line.split()[2] for line in lines if line.startswith("< HTTP/")]
    assert statuses == ["103", "200"], out
    assert "< link: </style.css>; rel=preload" in lines, out
    assert out.startswith("hinted"), out


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_response_trailers_pass_through(edge: int, cafile: str, proto: str) -> None:
    out = curl(edge, cafile, proto, "/trailers", "-H", "TE: trailers", "-D", "-")
    body_and_trailers = out.split("\r\n\r\n", 1)[1]
    assert body_and_trailers.startswith("hello"), out
    assert "x-checksum: abc123" in body_and_trailers, out


def test_expect_100_continue_then_the_body(edge: int, cafile: str, tmp_path: Path) -> None:
    body = tmp_path / "body"
    body.write_bytes(b"x" * 3_000_000)
    out = curl(
        edge, cafile, "h1", "/post", "-H", "Expect: 100-continue", "--data-binary", f"@{body}"
    )
    assert "< HTTP/1.1 100 Continue" in out, out
    assert out.startswith("got 3000000"), out


def test_expect_refused_before_the_body_is_sent(edge: int, cafile: str, tmp_path: Path) -> None:
    body = tmp_path / "body"
    body.write_bytes(b"x" * 10_000_000)
    out = curl(
        edge,
        cafile,
        "h1",
        "/refuse",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{body}",
        "-w",
        "\nuploaded=%{size_upload}\n",
    )
    assert "< HTTP/1.1 413" in out, out
    assert "< HTTP/1.1 100" not in out, out
    uploaded = int(out.split("uploaded=")[1].split()[0])
    assert uploaded < 1_000_000, out  # the upstream said no before the 10 MB went up
