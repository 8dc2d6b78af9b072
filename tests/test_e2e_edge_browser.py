"""Chromium's WebSockets through the edge's proxy route, over HTTP/1.1, HTTP/2 (RFC 8441)
and HTTP/3 (RFC 9220), to an upstream that is not edgecorn (the `websockets` package).

The page comes from a `static:` route of the same edge; it opens a WebSocket to the `proxy:`
route, sends a text, and writes what came back (and the protocol its page load used) into
its body, which `--dump-dom` prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Chromium, find_chromium
from tests.support.edge import free_port, start_edge, start_ws_upstream

CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test does)"),
]

PAGE = """<!doctype html><title>ws</title><pre id="out">waiting</pre><script>
const out = document.getElementById("out");
const done = (result) => { out.textContent = "RESULT " + JSON.stringify(result); };
try {
  const ws = new WebSocket("wss://" + location.host + "/ws/chat");
  ws.onopen = () => ws.send("through the edge");
  let echo = null;
  ws.onmessage = (e) => {
    if (echo === null) { echo = e.data; ws.send("hello?"); return; }
    const via = JSON.parse(e.data).headers.filter(h => h[0] == "via").map(h => h[1]);
    const nav = performance.getEntriesByType("navigation")[0];
    done({echo: echo, via: via, nav: nav ? nav.nextHopProtocol : null});
    ws.close();
  };
  ws.onerror = () => done({error: "websocket error"});
} catch (e) { done({error: String(e)}); }
</script>
"""

FLAGS = {
    "h1": ["--disable-quic", "--disable-http2"],
    "h2": ["--disable-quic"],
    "h3": ["--enable-quic", "--enable-features=EnableWebsocketsOverHttp3"],
}


@pytest.mark.parametrize("proto", ["h1", "h2", "h3"])
def test_chromium_websocket_through_the_edge(
    proto: str, tmp_path: Path, certs: tuple[str, str, str]
) -> None:
    from edgecorn.certs import spki_sha256_b64

    public = tmp_path / "public"
    public.mkdir()
    (public / "ws.html").write_text(PAGE)
    upstream = start_ws_upstream(tmp_path)
    port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(
        f'bind: ["127.0.0.1:{port}"]\ncertfile: {certs[0]}\nkeyfile: {certs[1]}\n'
        "routes:\n"
        f"  - path: /ws/\n    proxy: http://127.0.0.1:{upstream.port}\n"
        "  - static: ./public\n"
    )
    edge = start_edge(config, port, tmp_path)
    flags = [f"--ignore-certificate-errors-spki-list={spki_sha256_b64(certs[0])}", *FLAGS[proto]]
    if proto == "h3":
        flags.append(f"--origin-to-force-quic-on=127.0.0.1:{port}")
    assert CHROMIUM is not None
    browser = Chromium(CHROMIUM, tmp_path / "chromium", flags)
    try:
        # DevTools, not --dump-dom: virtual time would never let the socket's events happen.
        with browser.devtools() as page:
            page.navigate(f"https://127.0.0.1:{port}/ws.html")
            text = page.poll(
                "(t => t.startsWith('RESULT ') && t)(document.getElementById('out').textContent)",
                timeout=20,
            )
        assert text, f"page did not finish\n{browser.stderr()[-3000:]}"
        result: dict[str, Any] = json.loads(text[len("RESULT ") :])
        assert result.get("echo") == "through the edge", result
        expected = {"h1": "http/1.1", "h2": "h2", "h3": "h3"}[proto]
        assert result["nav"] == expected, result
        # The upstream's Via names the protocol the browser's WebSocket reached the edge on
        # (RFC 8441 over h2, RFC 9220 over h3); the upstream itself always gets HTTP/1.1.
        version = {"h1": "1.1", "h2": "2", "h3": "3"}[proto]
        assert result["via"] == [f"{version} edgecorn"], result
    finally:
        browser.kill()
        edge.stop()
        upstream.stop()
