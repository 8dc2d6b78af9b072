"""Issue 9 end to end: the `routes:` file itself. Bad routes stop `edgecorn -c bad.yaml` with
one line naming the file line of the route and what is allowed; paths in the file are
relative to the file, whatever the working directory; with `routes:` and an app argument,
the argument is the last route; without a match, 404.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.edge import (
    PROTOCOLS,
    STYLE_CSS,
    fetch,
    make_site,
    print_logs_on_failure,
    start_edge,
)
from tests.support.net import free_port
from tests.support.procs import Proc, spawn, subprocess_env, wait_tcp

pytestmark = pytest.mark.timeout(60)

# The two routes every bad file starts with (lines 3-6); the bad route is routes[2] on line 7,
# its first key on the same line, so "the route's line" and "the bad key's line" agree.
HEAD = """\
bind: ["127.0.0.1:{port}"]
routes:
  - path: =/healthz
    respond: {{status: 200, body: "ok\\n"}}
  - path: /static/
    static: ./public
"""

# The bad route, and the one line `edgecorn -c bad.yaml` prints for it (wording pinned from
# the implementation; what the contract asks: the file line, the route, what is allowed).
BAD_ROUTES = {
    "unknown action": (
        "  - serve: ./public\n    path: /files/\n",
        "bad.yaml:7: routes[2].serve: unknown key; a route takes host, path, strip_prefix, "
        "one action of app, wsgi, static, proxy, respond, redirect and that action's options",
    ),
    "two actions": (
        "  - static: ./public\n    proxy: http://127.0.0.1:9\n    path: /both/\n",
        "bad.yaml:7: routes[2]: a route needs exactly one action of app, wsgi, static, proxy, "
        "respond, redirect (found static and proxy)",
    ),
    "shadowed by a catch-all": (
        "  - app: demo:app\n  - path: /late/\n    static: ./public\n",
        "bad.yaml:8: routes[3]: unreachable: every request it matches is taken by routes[2] "
        "(*/ -> app demo:app); put the more specific route first",
    ),
    "missing static directory": (
        "  - static: ./no-such-dir\n    path: /files/\n",
        "bad.yaml:7: routes[2].static: no such directory: {tmp}/no-such-dir",
    ),
    "bad URL scheme": (
        '  - proxy: "ftp://127.0.0.1:21"\n    path: /up/\n',
        "bad.yaml:7: routes[2].proxy: bad upstream URL 'ftp://127.0.0.1:21': the scheme must be "
        "http or https",
    ),
    "URL without host": (
        '  - proxy: "http://"\n    path: /up/\n',
        "bad.yaml:7: routes[2].proxy: bad upstream URL 'http://': no host",
    ),
}


def _run_bad(tmp_path: Path, text: str) -> tuple[int, str]:
    (tmp_path / "public").mkdir(exist_ok=True)
    (tmp_path / "bad.yaml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "edgecorn", "-c", "bad.yaml"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stderr.decode(errors="replace")


@pytest.mark.parametrize("case", list(BAD_ROUTES))
def test_bad_route_names_its_line(tmp_path: Path, case: str) -> None:
    route, expected = BAD_ROUTES[case]
    rc, err = _run_bad(tmp_path, HEAD.format(port=free_port()) + route)
    assert rc == 2, err
    assert err.strip() == "edgecorn: error: " + expected.format(tmp=os.path.realpath(tmp_path))


def test_good_file_starts(tmp_path: Path) -> None:
    """The control for the cases above: the same head with a good third route serves."""
    port = free_port()
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "a.txt").write_bytes(b"a\n")
    config = tmp_path / "ok.yaml"
    config.write_text(HEAD.format(port=port) + "  - path: /files/\n    static: ./public\n")
    edge = spawn("ok", [sys.executable, "-m", "edgecorn", "-c", str(config)], tmp_path, tmp_path)
    try:
        wait_tcp(edge, port)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"GET /files/a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\na\n"), data
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        edge.stop()


# --------------------------------------------------------------------------- running files

SITE_YAML = """\
bind: ["127.0.0.1:{port}"]
certfile: certs/localhost.pem
keyfile: certs/localhost.key
routes:
  - path: /static/
    static: ./public
  - path: =/healthz
    respond: {{status: 200, body: "ok\\n", headers: {{x-from: respond}}}}
"""


@pytest.fixture(scope="module")
def site(certs: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_site(tmp_path_factory.mktemp("edge-config") / "site", certs)


def _start(site: Path, name: str, *args: str) -> Proc:
    port = free_port()
    config = site / f"{name}.yaml"
    config.write_text(SITE_YAML.format(port=port))
    elsewhere = site.parent / f"cwd-{name}"
    elsewhere.mkdir(exist_ok=True)
    # Not the file's directory: certs/ and ./public must resolve against the file.
    return start_edge(config, port, site.parent / f"logs-{name}", *args, cwd=elsewhere)


@pytest.fixture(scope="module")
def relative(site: Path) -> Iterator[Proc]:
    try:
        edge = _start(site, "relative")
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield edge
    edge.stop()


@pytest.fixture
def with_app(site: Path, request: pytest.FixtureRequest) -> Iterator[Proc]:
    try:
        edge = _start(site, "with-app", "tests.apps.e2e:app")
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield edge
    print_logs_on_failure(request, edge)
    edge.stop()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_paths_relative_to_the_file_and_no_match_is_404(
    relative: Proc, cafile: str, proto: str, tmp_path: Path
) -> None:
    base = f"https://127.0.0.1:{relative.port}"
    try:
        css = fetch(proto, f"{base}/static/style.css", cafile, tmp_path)
        assert (css.status, css.body) == (200, STYLE_CSS), css
        health = fetch(proto, f"{base}/healthz", cafile, tmp_path)
        assert (health.status, health.body) == (200, b"ok\n"), health
        assert health.header("x-from") == "respond", health
        for path in ("/", "/other", "/healthz/x", "/statics/x"):
            r = fetch(proto, base + path, cafile, tmp_path)
            assert r.status == 404, (path, r)
    except AssertionError:
        print(relative.describe())
        raise


def test_command_line_app_is_the_last_route(with_app: Proc, cafile: str, tmp_path: Path) -> None:
    base = f"https://127.0.0.1:{with_app.port}"
    assert fetch("h2", f"{base}/healthz", cafile, tmp_path).body == b"ok\n"
    assert fetch("h2", f"{base}/static/style.css", cafile, tmp_path).body == STYLE_CSS
    r = fetch("h2", f"{base}/scope/from-cli?x=1", cafile, tmp_path)
    assert r.status == 200, r
    scope = json.loads(r.body)
    assert scope["path"] == "/scope/from-cli" and scope["query_string"] == "x=1", scope
    missing = fetch("h3", f"{base}/static/missing.txt", cafile, tmp_path)
    assert missing.status == 404, missing  # the static route answered; no fall-through
