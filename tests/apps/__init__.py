"""Every app the tests serve, one module per purpose; servers load them as `module:attr`.

- `e2e`: the main end-to-end app (routes by path; anyio, so it runs on both backends),
  its WSGI twin and a lifespan that fails;
- `ws`: WebSocket apps (echo, scope, close, denial, reject);
- `backends`: `e2e` + `ws` + `/backend` (which event loop ran the request), for the
  tests that run one server on either worker class;
- `browser`: the page a real browser loads; `extensions`: ASGI extensions (tls, pathsend,
  push); `forwarded`: what the scope says about the client; `perf`: the HTTP/1 fast path;
- `middleware`: Hypercorn's documented middleware examples; `migration`: whoami, blocking,
  silent; `dispatch`, `dispatch_broken`: app shapes for the loader;
- `hardening`: a slow answer (drain), a body reader (slow clients), an answer held until
  the test releases it (listeners closed at a graceful stop);
  `cycles`: the memory-cycle tests' apps;
- upstreams that are not edgecorn: `upstream` (Uvicorn), `raw_upstream` (http.server),
  `ws_upstream` (`websockets`); `site/`: the `demo`/`legacy` modules of the edge example;
- `common`: what they share (ASGI types, `query()`, a lifespan that completes).
"""
