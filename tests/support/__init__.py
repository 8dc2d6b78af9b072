"""Shared test helpers: one place for what several test modules need.

- `net`: free loopback ports; `wait`: bounded polling; `procs`: processes this run started
  (spawn, readiness, the /proc walk, RSS);
- `servers`: edgecorn subprocesses (`Server`, `ServerFactory`, behind the `server_factory`
  fixture); `clients`: the raw HTTP/1.1 and HTTP/2 clients behind the `h1` and `h2conn` fixtures;
- `h3`, `ws`, `quic_peer`, `browser`: HTTP/3, WebSocket, in-memory QUIC and Chromium clients;
- `edge`: the edge suites' site, upstreams and `fetch()`; `load`: steady request load, GOAWAY
  tolerance and a rebinding UDP relay; `data`: digests of the test payloads.

Every wait here is bounded in count and in time; every process started here is stopped by its
own pid.
"""
