"""Issue 9 end to end: the issue's example file, verbatim (only its port numbers changed),
served by `python -m edgecorn -c edge.yaml` (no app argument) from the file's directory, in
front of Uvicorn. Every route kind over HTTP/1.1 and HTTP/2 (curl) and HTTP/3 (curl_cffi;
ngtcp2's gtlsclient for one multiplexed run), 10 MiB both ways through the proxy, static
files (conditional, range, precompressed, traversal).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.apps.e2e import MIB
from tests.support.data import sha256_file
from tests.support.edge import (
    APP_JS,
    APP_JS_BR,
    BIG_STATIC,
    INDEX_HTML,
    PROTOCOLS,
    SECRET,
    STYLE_CSS,
    SUB2_INDEX,
    Reply,
    example_yaml,
    expected_version,
    fetch,
    forwarded_elements,
    make_site,
    pattern_bytes,
    pattern_sha,
    print_logs_on_failure,
    sha256,
    start_edge,
    start_uvicorn,
)
from tests.support.h3 import gtlsclient
from tests.support.net import free_port
from tests.support.procs import Proc

pytestmark = pytest.mark.timeout(60)


@dataclass
class Example:
    edge: Proc
    upstream: Proc
    site: Path
    port: int
    cafile: str

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def get(self, proto: str, path: str, tmp: Path, **kwargs: Any) -> Reply:
        return fetch(proto, self.url(path), self.cafile, tmp, **kwargs)


@pytest.fixture(scope="module")
def example(
    certs: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("edge-example")
    site = make_site(root / "site", certs)
    logs = root / "logs"
    upstream = start_uvicorn(logs)
    port = free_port()
    (site / "edge.yaml").write_text(example_yaml(port, upstream.port))
    try:
        # As a user runs it: in the file's directory, no app argument.
        edge = start_edge(site / "edge.yaml", port, logs, cwd=site)
    except RuntimeError as exc:
        upstream.stop()
        pytest.fail(str(exc), pytrace=False)
    yield Example(edge, upstream, site, port, certs[2])
    edge.stop()
    upstream.stop()


@pytest.fixture(autouse=True)
def _logs(request: pytest.FixtureRequest, example: Example) -> Iterator[None]:
    yield
    print_logs_on_failure(request, example.edge, example.upstream)


def _is_demo(reply: Reply) -> bool:
    try:
        return bool(reply.json().get("app") == "demo")
    except ValueError:
        return False


# --------------------------------------------------------------------------- every route kind


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_proxy_route_strips_prefix_and_adds_forwarded_headers(
    example: Example, proto: str, tmp_path: Path
) -> None:
    r = example.get(proto, "/v1/users?x=1", tmp_path, headers=[("Host", "api.localhost")])
    assert r.status == 200 and not r.error, r
    assert r.version == expected_version(proto)
    info = r.json()
    assert (info["method"], info["path"], info["query"]) == ("GET", "/users", "x=1"), info
    seen = r.upstream_headers()
    assert seen.get("host") == ["api.localhost"], seen  # Host preserved by default
    assert seen.get("x-forwarded-for") == ["127.0.0.1"], seen
    assert seen.get("x-forwarded-proto") == ["https"], seen
    assert seen.get("x-forwarded-host") == ["api.localhost"], seen
    assert len(seen.get("forwarded", [])) == 1, seen
    (element,) = forwarded_elements(seen["forwarded"][0])
    assert element.get("for") == "127.0.0.1", seen["forwarded"]
    assert element.get("proto") == "https", seen["forwarded"]
    assert element.get("host") == "api.localhost", seen["forwarded"]
    via = seen.get("via", [""])[-1]
    # RFC 9110 7.6.3: the received-protocol is the version the edge got the request in.
    received = via.split(",")[-1].split()[0] if via.strip() else ""
    assert received in (expected_version(proto), f"HTTP/{expected_version(proto)}"), seen


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_host_route_needs_its_host(example: Example, proto: str, tmp_path: Path) -> None:
    with_port = example.get(
        proto, "/v1/users", tmp_path, headers=[("Host", f"api.localhost:{example.port}")]
    )
    assert with_port.status == 200 and with_port.json().get("path") == "/users", with_port
    other = example.get(proto, "/v1/users", tmp_path, headers=[("Host", "other.localhost")])
    assert other.status == 200 and _is_demo(other), other  # falls through to the catch-all
    assert other.json()["path"] == "/v1/users"


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_static_route(example: Example, proto: str, tmp_path: Path) -> None:
    index = example.get(proto, "/static/", tmp_path)
    assert index.status == 200 and index.body == INDEX_HTML, index
    assert (index.header("content-type") or "").startswith("text/html"), index
    css = example.get(proto, "/static/style.css", tmp_path)
    assert css.status == 200 and css.body == STYLE_CSS, css
    assert (css.header("content-type") or "").startswith("text/css"), css
    assert example.get(proto, "/static/sub2/", tmp_path).body == SUB2_INDEX
    listing = example.get(proto, "/static/sub/", tmp_path)  # no index.html, no `listing: true`
    assert listing.status == 404 and b"a.txt" not in listing.body, listing
    assert example.get(proto, "/static/missing.txt", tmp_path).status == 404


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_wsgi_route(example: Example, proto: str, tmp_path: Path) -> None:
    r = example.get(proto, "/legacy/page?q=1", tmp_path, method="POST", data=b"abc")
    assert r.status == 200, r
    info = r.json()
    assert info["app"] == "legacy" and info["method"] == "POST", info
    assert info["script_name"] + info["path_info"] == "/legacy/page", info
    assert info["query"] == "q=1" and info["body_length"] == 3, info
    assert info["url_scheme"] == "https", info
    assert info["main_thread"] is False, info  # run in the thread pool


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_respond_route_is_exact(example: Example, proto: str, tmp_path: Path) -> None:
    r = example.get(proto, "/healthz", tmp_path)
    assert (r.status, r.body) == (200, b"ok\n"), r
    for path in ("/healthz/more", "/healthzz"):
        other = example.get(proto, path, tmp_path)
        assert other.status == 200 and _is_demo(other), other


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_redirect_route_appends_the_rest(example: Example, proto: str, tmp_path: Path) -> None:
    base = f"https://localhost:{example.port}/new/"
    r = example.get(proto, "/old/x/y?y=1", tmp_path)
    assert r.status == 308, r
    assert r.header("location") == base + "x/y?y=1", r
    bare = example.get(proto, "/old/", tmp_path)
    assert bare.status == 308 and bare.header("location") == base, bare


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_app_route_has_its_own_lifespan(example: Example, proto: str, tmp_path: Path) -> None:
    r = example.get(proto, "/some/where?z=2", tmp_path)
    assert r.status == 200, r
    info = r.json()
    assert info["app"] == "demo" and info["path"] == "/some/where", info
    assert info["query"] == "z=2" and info["scheme"] == "https", info
    assert info["http_version"] == expected_version(proto), info
    assert info["state"] is True, f"the app's startup state is not in its scope: {info}"
    assert info["startups"] == 1, info


def test_gtlsclient_multiplexed_routes(example: Example, tmp_path: Path) -> None:
    base = f"https://127.0.0.1:{example.port}"
    run = gtlsclient(
        example.port,
        f"{base}/healthz",
        f"{base}/static/big.bin",
        f"{base}/old/x",
        f"{base}/legacy/w",
        download=tmp_path / "dl",
    )
    assert run.alpn == "h3", run.summary()
    assert sorted(run.statuses()) == [200, 200, 200, 308], run.summary()
    assert run.file("healthz").read_bytes() == b"ok\n"
    assert run.file("big.bin").stat().st_size == BIG_STATIC
    assert sha256_file(run.file("big.bin")) == pattern_sha(BIG_STATIC)
    assert b'"legacy"' in run.file("w").read_bytes()


# --------------------------------------------------------------------------- 10 MiB through


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_10mib_download_through_proxy(example: Example, proto: str, tmp_path: Path) -> None:
    size = 10 * MIB
    r = example.get(
        proto, f"/v1/bytes?n={size}", tmp_path, headers=[("Host", "api.localhost")], timeout=60
    )
    assert r.status == 200 and not r.error, r.error or r
    assert len(r.body) == size
    assert sha256(r.body) == pattern_sha(size)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_10mib_upload_through_proxy(example: Example, proto: str, tmp_path: Path) -> None:
    body = tmp_path / "up.bin"
    body.write_bytes(os.urandom(10 * MIB))
    r = example.get(
        proto,
        "/v1/upload",
        tmp_path,
        method="POST",
        data_file=body,
        headers=[("Host", "api.localhost"), ("Content-Type", "application/octet-stream")],
        timeout=60,
    )
    assert r.status == 200 and not r.error, r
    info = r.json()
    assert info["path"] == "/upload"
    assert info["body_length"] == 10 * MIB
    assert info["body_sha256"] == sha256_file(body)


# --------------------------------------------------------------------------- static details


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_static_conditional_requests(example: Example, proto: str, tmp_path: Path) -> None:
    first = example.get(proto, "/static/style.css", tmp_path)
    etag, modified = first.header("etag"), first.header("last-modified")
    assert first.status == 200 and etag and modified, first
    assert first.header("content-length") == str(len(STYLE_CSS)), first
    same = example.get(proto, "/static/style.css", tmp_path, headers=[("If-None-Match", etag)])
    assert (same.status, same.body) == (304, b""), same
    assert same.header("etag") == etag, same
    since = example.get(
        proto, "/static/style.css", tmp_path, headers=[("If-Modified-Since", modified)]
    )
    assert (since.status, since.body) == (304, b""), since
    changed = example.get(
        proto, "/static/style.css", tmp_path, headers=[("If-None-Match", '"not-the-etag"')]
    )
    assert (changed.status, changed.body) == (200, STYLE_CSS), changed
    old = example.get(
        proto,
        "/static/style.css",
        tmp_path,
        headers=[("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
    )
    assert (old.status, old.body) == (200, STYLE_CSS), old
    head = example.get(proto, "/static/style.css", tmp_path, method="HEAD")
    assert head.status == 200 and head.body == b"", head
    assert head.header("content-length") == str(len(STYLE_CSS)), head
    assert head.header("etag") == etag, head


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_static_ranges(example: Example, proto: str, tmp_path: Path) -> None:
    size = len(STYLE_CSS)

    def ranged(spec: str) -> Reply:
        return example.get(proto, "/static/style.css", tmp_path, headers=[("Range", spec)])

    r = ranged("bytes=0-9")
    assert (r.status, r.body) == (206, STYLE_CSS[:10]), r
    assert r.header("content-range") == f"bytes 0-9/{size}", r
    r = ranged("bytes=-5")
    assert (r.status, r.body) == (206, STYLE_CSS[-5:]), r
    assert r.header("content-range") == f"bytes {size - 5}-{size - 1}/{size}", r
    r = ranged("bytes=5-")
    assert (r.status, r.body) == (206, STYLE_CSS[5:]), r
    r = ranged(f"bytes={size}-")
    assert r.status == 416, r
    assert r.header("content-range") == f"bytes */{size}", r
    # A range across a MiB boundary of the 10 MiB file.
    start, end = MIB - 10, MIB + 9
    big = example.get(
        proto, "/static/big.bin", tmp_path, headers=[("Range", f"bytes={start}-{end}")]
    )
    assert big.status == 206, big
    assert big.body == b"".join(pattern_bytes(end + 1))[start:], big
    assert big.header("content-range") == f"bytes {start}-{end}/{BIG_STATIC}", big


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_static_precompressed_siblings(example: Example, proto: str, tmp_path: Path) -> None:
    gz = (example.site / "public" / "app.js.gz").read_bytes()
    plain = example.get(proto, "/static/app.js", tmp_path)
    assert plain.status == 200 and plain.body == APP_JS, plain
    assert plain.header("content-encoding") in (None, "identity"), plain
    assert "javascript" in (plain.header("content-type") or ""), plain
    gzipped = example.get(proto, "/static/app.js", tmp_path, headers=[("Accept-Encoding", "gzip")])
    assert gzipped.status == 200 and gzipped.header("content-encoding") == "gzip", gzipped
    assert gzipped.body == gz
    assert "javascript" in (gzipped.header("content-type") or ""), gzipped
    brotli = example.get(
        proto, "/static/app.js", tmp_path, headers=[("Accept-Encoding", "gzip, br")]
    )
    assert brotli.status == 200 and brotli.header("content-encoding") == "br", brotli
    assert brotli.body == APP_JS_BR


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/sub/../../secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/escape.txt",
    "/static/escape_dir/secret.txt",
    "/static/.hidden",
    "/static/%2ehidden",
    "/static/.git/config",
    "/static/sub/.env",
]


def test_static_traversal_h1(example: Example, h1: Any) -> None:
    """Raw request targets (curl would normalize them). After normalization some of these
    leave /static/ and land on the catch-all demo app: that is fine; the file is not."""
    for target in TRAVERSALS:
        conn = h1(example.port, tls=True)
        conn.request("GET", target)
        resp = conn.read_response()
        assert SECRET not in resp.body, (target, resp)
        demo = resp.status == 200 and b'"app": "demo"' in resp.body
        assert resp.status == 404 or demo, (target, resp.status, resp.body[:200])
        if (
            target.startswith("/static/escape")
            or "hidden" in target
            or ".git" in target
            or ".env" in target
        ):
            assert resp.status == 404, (target, resp.status, resp.body[:200])


def test_static_traversal_h2(example: Example, h2conn: Any) -> None:
    conn = h2conn(example.port)
    for target in TRAVERSALS:
        resp = conn.get(target)
        assert SECRET not in resp.body, (target, resp)
        demo = resp.status == 200 and b'"app": "demo"' in resp.body
        assert resp.status == 404 or demo, (target, resp.status, resp.body[:200])
