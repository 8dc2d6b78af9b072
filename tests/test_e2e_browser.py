"""A real browser against the server: headless Chromium over HTTP/3 (forced and via Alt-Svc)
and over QUIC v2.

Chromium runs on loopback with a fresh profile; the page (`tests.apps.browser`) fetches
`/proto`, which answers the scope's `http_version`, and records `nextHopProtocol` from the
resource-timing entries. Each Chromium run is bounded and its whole process group is killed
at the end (`tests.browser.Chromium.kill`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Chromium, find_chromium

APP = "tests.apps.browser:app"
CHROMIUM = find_chromium()
QUIC_V2 = "6b3343cf"  # RFC 9369

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium is not installed (Debian package `chromium`; scripts/test installs it)",
    ),
]


@pytest.fixture
def browser_server(server_factory: Any) -> Any:
    """TLS (h1/h2) on TCP PORT and HTTP/3 on UDP PORT, serving the browser pages."""
    return server_factory.start(app=APP, insecure=False)


@pytest.fixture
def chromium(tmp_path: Path, certs: tuple[str, str, str]) -> Any:
    """`chromium(*flags, net_log=False)` → a `Chromium` trusting the dev leaf by SPKI hash."""
    from edgecorn.certs import spki_sha256_b64

    spki = spki_sha256_b64(certs[0])
    started: list[Chromium] = []

    def make(*flags: str, net_log: bool = False) -> Chromium:
        assert CHROMIUM is not None
        browser = Chromium(
            CHROMIUM,
            tmp_path / "chromium",
            [f"--ignore-certificate-errors-spki-list={spki}", *flags],
            net_log=net_log,
        )
        started.append(browser)
        return browser

    yield make
    for browser in started:
        browser.kill()


def _result(dom: str, context: str) -> dict[str, Any]:
    """The JSON the page wrote after `RESULT ` in its body."""
    match = re.search(r"RESULT (\{.*?\})</pre>", dom, re.S)
    assert match, f"the page did not finish; chromium printed:\n{dom[-3000:]}\n{context}"
    text = match.group(1).replace("&quot;", '"').replace("&amp;", "&")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _diagnostics(browser: Chromium, server: Any) -> str:
    return f"--- chromium stderr ---\n{browser.stderr()}\n{server.describe()}"


def test_chromium_forced_http3(browser_server: Any, chromium: Any) -> None:
    port = browser_server.port
    browser = chromium("--enable-quic", f"--origin-to-force-quic-on=127.0.0.1:{port}")
    dom = browser.dump_dom(f"https://127.0.0.1:{port}/page?n=2")
    info = _result(dom, _diagnostics(browser, browser_server))
    assert info["error"] is None, info
    assert info["nav"] == "h3", info
    assert info["entries"] and all(hop == "h3" for hop in info["entries"]), info
    assert [f["hop"] for f in info["fetches"]] == ["h3", "h3"], info
    assert info["server_page"] == "3", info
    assert [f["server"] for f in info["fetches"]] == ["3", "3"], info
    access_log = browser_server.wait_stdout("GET /proto?i=1")
    assert re.search(r'"GET /proto\?i=1\S* HTTP/3" 200', access_log), access_log


def test_chromium_alt_svc_upgrade_h2_to_h3(browser_server: Any, chromium: Any) -> None:
    """First load over h2 (TLS, ALPN); Alt-Svc from the server moves later fetches to h3.

    The dummy `--origin-to-force-quic-on=127.0.0.1:9` makes Chromium accept a QUIC
    alternative service with a certificate that has no public root (see CLIENTS.md).
    """
    port = browser_server.port
    browser = chromium("--enable-quic", "--origin-to-force-quic-on=127.0.0.1:9")
    url = f"https://127.0.0.1:{port}/page?n=60&delay=250"
    with browser.devtools() as page:
        page.navigate(url)
        upgraded = page.poll(
            "window.__edgecorn && (window.__edgecorn.error !== null ||"
            " window.__edgecorn.done ||"
            " window.__edgecorn.fetches.some(f => f.hop.startsWith('h3')))"
            " && JSON.stringify(window.__edgecorn)",
            timeout=20.0,
        )
        assert upgraded, (
            f"the page made no progress in 20 s: "
            f"{page.evaluate('JSON.stringify(window.__edgecorn || null)')}\n"
            + _diagnostics(browser, browser_server)
        )
        info = json.loads(upgraded)
        nav = page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        # A second load: the origin's alternative service is known, so it goes over h3.
        page.navigate(url.replace("n=60&delay=250", "n=1"))
        second = page.poll(
            "window.__edgecorn && window.__edgecorn.done && JSON.stringify(window.__edgecorn)",
            timeout=10.0,
        )
    diag = f"{info}\n{_diagnostics(browser, browser_server)}"
    assert info["error"] is None, diag
    assert nav == "h2", diag
    assert info["server_page"] == "2", diag
    # Every fetch: what the browser reports matches what the server saw. The first fetch
    # may already be on h3 when Chromium's QUIC connection won the race to the origin.
    expected = {"h2": "2", "h3": "3"}
    assert all(expected.get(f["hop"]) == f["server"] for f in info["fetches"]), diag
    assert any(f["hop"] == "h3" for f in info["fetches"]), f"no fetch went over h3: {diag}"
    assert second, f"the second load did not finish: {diag}"
    again = json.loads(second)
    assert (again["nav"], again["server_page"]) == ("h3", "3"), f"{again}\n{diag}"


def test_chromium_quic_v2(browser_server: Any, chromium: Any) -> None:
    port = browser_server.port
    browser = chromium(
        "--enable-quic",
        f"--origin-to-force-quic-on=127.0.0.1:{port}",
        "--quic-version=RFCv2",
        net_log=True,
    )
    dom = browser.dump_dom(f"https://127.0.0.1:{port}/page?n=2")
    info = _result(dom, _diagnostics(browser, browser_server))
    assert info["error"] is None, info
    hops = [info["nav"], *(f["hop"] for f in info["fetches"])]
    for hop in hops:  # Chromium 156 reports "h3/quic2draft08" for RFC 9369 QUIC v2
        assert hop not in ("h2", "http/1.1") and "h3" in hop, info
    assert info["server_page"] == "3", info
    assert [f["server"] for f in info["fetches"]] == ["3", "3"], info

    # The wire version, from Chromium's own net-log: both ends chose QUIC v2.
    log = browser.net_log()
    assert log is not None, f"no net-log at {browser.net_log_path}"
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    negotiated, server_params = [], []
    for event in log["events"]:
        name = names.get(event.get("type"), "")
        params = event.get("params", {})
        if name == "QUIC_SESSION_VERSION_NEGOTIATED":
            negotiated.append(params.get("version"))
        elif name == "QUIC_SESSION_TRANSPORT_PARAMETERS_RECEIVED":
            server_params.append(params.get("quic_transport_parameters", ""))
    assert negotiated and set(negotiated) == {"RFCv2"}, negotiated
    assert server_params and all(f"chosen_version {QUIC_V2}" in p for p in server_params), (
        server_params
    )
