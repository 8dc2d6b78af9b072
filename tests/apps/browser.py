"""The ASGI app a real browser loads in the end-to-end browser tests (`tests.apps.browser:app`).

Routes:
- `/page`: an HTML page whose script fetches `/proto` and reports, in its title and body,
  the `nextHopProtocol` of every resource-timing entry plus what the server saw.
  Query `?n=N&delay=MS` makes it fetch N times with MS milliseconds between fetches
  (for the Alt-Svc upgrade, where later fetches move to HTTP/3). The results are also
  left in `window.__edgecorn` (a JSON-able object) with `done: true` at the end, for a
  DevTools-protocol driver to poll.
- `/proto`: the scope's `http_version` as text/plain, never cached.
- anything else: 404.
"""

from __future__ import annotations

from tests.apps.common import Receive, Scope, Send, lifespan, query

NO_STORE = (b"cache-control", b"no-store")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>pending</title></head>
<body><pre id="out">pending</pre>
<script>
(async () => {
  const N = %(n)d, DELAY = %(delay)d;
  const state = {server_page: "%(version)s", fetches: [], done: false, error: null};
  window.__edgecorn = state;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  try {
    for (let i = 0; i < N; i++) {
      if (i > 0 && DELAY > 0) await sleep(DELAY);
      const url = "/proto?i=" + i + "&t=" + Date.now();
      const resp = await fetch(url, {cache: "no-store"});
      const server = (await resp.text()).trim();
      const entries = performance.getEntriesByName(new URL(url, location.href).href);
      const hop = entries.length ? entries[entries.length - 1].nextHopProtocol : "?";
      state.fetches.push({i: i, server: server, hop: hop});
    }
  } catch (e) {
    state.error = String(e);
  }
  const nav = performance.getEntriesByType("navigation")[0];
  state.nav = nav ? nav.nextHopProtocol : "?";
  state.entries = performance.getEntries()
    .filter((e) => e.nextHopProtocol !== undefined)
    .map((e) => e.nextHopProtocol);
  const last = state.fetches.length ? state.fetches[state.fetches.length - 1] : {};
  state.done = true;
  document.title = "nav=" + state.nav + " hop=" + (last.hop || "?") +
    " server=" + (last.server || "?");
  document.getElementById("out").textContent = "RESULT " + JSON.stringify(state);
})();
</script></body></html>
"""


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value))) if value is not None else default
    except ValueError:
        return default


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        NO_STORE,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    version = str(scope.get("http_version", "?"))
    if path == "/page":
        params = query(scope)
        html = PAGE % {
            "n": _int(params.get("n"), 1, 1, 100),
            "delay": _int(params.get("delay"), 0, 0, 5000),
            "version": version,
        }
        await _respond(send, 200, html.encode(), b"text/html; charset=utf-8")
    elif path == "/proto":
        await _respond(send, 200, version.encode(), b"text/plain")
    else:
        await _respond(send, 404, b"not found", b"text/plain")
