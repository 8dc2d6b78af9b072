#!/usr/bin/env python3
"""The edge benchmark (issue 9): edgecorn, Caddy and nginx in front of the same upstream.

    python bench/edge.py                  # 10 s per measurement, 3 interleaved rounds, medians
    python bench/edge.py --quick --repeat 1
    python bench/edge.py --json out.json  # the table on stdout, every run in out.json
    python bench/edge.py --rss            # edgecorn's RSS over 200k proxied requests

One upstream (Uvicorn serving bench/app.py, pinned to the load core) and a static directory
with a 1 KiB and a 1 MiB file, both made at start. Each edge is started fresh for each
measurement, pinned to its own core, from a generated config: edgecorn (`-c edge.yaml`, a
`static:` and a `proxy:` route, `--workers 0`, uvloop), Caddy (a Caddyfile: `handle_path` +
`file_server`, `reverse_proxy`; h1/h2/h3) and nginx (one worker, upstream keep-alive, `alias`;
h1/h2, no QUIC in Debian's build). Rows: proxied HTTP/1.1 (wrk, cleartext), proxied HTTP/2 over
TLS (h2load), proxied HTTP/3 (gtlsclient; edgecorn and Caddy), static 1 KiB (wrk) and static
1 MiB (wrk, MB/s of body bytes). Loopback only; every load is bounded in time (and the RSS
loads in count too); every process started here is stopped with its process group, also on
errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as core  # noqa: E402  (bench/run.py: load generators, parsers, Server)

HOST = core.HOST
SMALL = bytes((i * 7) % 256 for i in range(1024))  # static 1 KiB, checked byte for byte
LARGE = bytes((i * 13) % 251 for i in range(1 << 20))  # static 1 MiB
SERVERS = ("edgecorn", "caddy", "nginx")
PEERS = ("caddy", "nginx")
RSS_REQUESTS = (20_000, 200_000)  # RSS is sampled after each of these totals
RSS_SECONDS = 300  # the bound on each RSS load, whatever the count
RSS_TOLERANCE = 0.05  # growth (of the first sample) still called flat: allocator noise


# --------------------------------------------------------------------------- the edges


@dataclass
class Site:
    tmp: Path
    static: Path
    certfile: str
    keyfile: str
    cafile: str
    upstream_port: int


@dataclass
class Ports:
    plain: int  # cleartext HTTP/1.1
    tls: int  # TLS over TCP (h1/h2) and QUIC (h3) on the same number


def edgecorn_cmd(site: Site, ports: Ports, work: Path) -> list[str]:
    config = work / "edge.yaml"
    config.write_text(
        f'insecure_bind: ["{HOST}:{ports.plain}"]\n'
        f'bind: ["{HOST}:{ports.tls}"]\n'
        f"certfile: {site.certfile}\n"
        f"keyfile: {site.keyfile}\n"
        f"keep_alive_max_requests: {core.MAX_REQUESTS}\n"  # h2load does not reconnect
        "routes:\n"
        "  - path: /static/\n"
        f"    static: {site.static}\n"
        f"  - proxy: http://{HOST}:{site.upstream_port}\n"
    )
    return [sys.executable, "-m", "edgecorn", "-c", str(config), "--workers", "0", "-k", "uvloop"]


def caddy_cmd(site: Site, ports: Ports, work: Path) -> list[str]:
    config = work / "Caddyfile"
    routes = (
        "\tbind " + HOST + "\n"
        "\thandle_path /static/* {\n"
        f"\t\troot * {site.static}\n"
        "\t\tfile_server\n"
        "\t}\n"
        "\thandle {\n"
        f"\t\treverse_proxy {HOST}:{site.upstream_port}\n"
        "\t}\n"
    )
    config.write_text(
        "{\n"
        "\tadmin off\n"
        "\tauto_https off\n"  # our certificate, no ACME, no redirects
        f"\tstorage file_system {work / 'data'}\n"
        "\tservers {\n\t\tprotocols h1 h2 h3\n\t}\n"
        "}\n"
        f"http://{HOST}:{ports.plain} {{\n{routes}}}\n"
        f"https://{HOST}:{ports.tls} {{\n"
        f"\ttls {site.certfile} {site.keyfile}\n{routes}}}\n"
    )
    # Caddy writes state under $HOME/$XDG_*: keep it in the run's temporary directory.
    return [
        "env",
        f"HOME={work}",
        f"XDG_DATA_HOME={work / 'data'}",
        f"XDG_CONFIG_HOME={work / 'config'}",
        "caddy",
        "run",
        "--config",
        str(config),
        "--adapter",
        "caddyfile",
    ]


def nginx_cmd(site: Site, ports: Ports, work: Path) -> list[str]:
    config = work / "nginx.conf"
    temps = "".join(
        f"\t{kind}_temp_path {work / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config.write_text(
        "worker_processes 1;\n"
        "daemon off;\n"
        f"pid {work / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "\taccess_log off;\n"
        f"{temps}"
        "\tdefault_type application/octet-stream;\n"
        "\tsendfile on;\n"
        f"\tkeepalive_requests {core.MAX_REQUESTS};\n"  # h2load does not reconnect
        f"\tupstream app {{ server {HOST}:{site.upstream_port}; keepalive 64; }}\n"
        "\tserver {\n"
        f"\t\tlisten {HOST}:{ports.plain};\n"
        f"\t\tlisten {HOST}:{ports.tls} ssl http2;\n"
        f"\t\tssl_certificate {site.certfile};\n"
        f"\t\tssl_certificate_key {site.keyfile};\n"
        f"\t\tlocation /static/ {{ alias {site.static}/; }}\n"
        "\t\tlocation / {\n"
        "\t\t\tproxy_pass http://app;\n"
        "\t\t\tproxy_http_version 1.1;\n"
        '\t\t\tproxy_set_header Connection "";\n'
        "\t\t\tproxy_set_header Host $host;\n"
        "\t\t}\n"
        "\t}\n"
        "}\n"
    )
    # -e: the error log before the config is read (else /var/log/nginx); -p: relative paths.
    return ["nginx", "-e", "stderr", "-p", str(work), "-c", str(config)]


EDGES: dict[str, Callable[[Site, Ports, Path], list[str]]] = {
    "edgecorn": edgecorn_cmd,
    "caddy": caddy_cmd,
    "nginx": nginx_cmd,
}


# --------------------------------------------------------------------------- rows


def _get(port: int, path: str, timeout: float) -> bytes:
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as response:
        body: bytes = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return body


def _smoke_static(path: str, expected: bytes) -> Callable[[Ports, Site], None]:
    def smoke(ports: Ports, _site: Site) -> None:
        body = _get(ports.plain, path, 10.0)
        if body != expected:
            raise RuntimeError(f"GET {path}: {len(body)} bytes, not the {len(expected)} expected")

    return smoke


def _smoke_h1(ports: Ports, _site: Site) -> None:
    core.h1_smoke(ports.plain, 10.0)


def _smoke_h2(ports: Ports, site: Site) -> None:
    argv = [
        "curl",
        "-sS",
        "--http2",
        "--max-time",
        "10",
        "--cacert",
        site.cafile,
        "-w",
        "\n%{http_version} %{http_code}",
        f"https://{HOST}:{ports.tls}/",
    ]
    out = subprocess.run(argv, capture_output=True, timeout=20, check=False)
    if out.stdout != core.BODY + b"\n2 200":
        raise RuntimeError(f"curl --http2 GET /: {out.stdout[-80:]!r} {out.stderr[-200:]!r}")


def _smoke_h3(ports: Ports, _site: Site) -> None:
    core.h3_smoke(ports.tls, 20.0)


def _wrk_mbps(size: int) -> Callable[[str, float, core.Settings], core.Result]:
    """wrk, with the rate as MB/s of body bytes (complete responses x size; no headers)."""

    def load(url: str, seconds: float, s: core.Settings) -> core.Result:
        result = core.wrk_load(url, seconds, s)
        if result.requests is not None and result.seconds:
            result.rps = result.requests * size / result.seconds / 1e6
        return result

    return load


@dataclass
class Row:
    name: str
    label: str
    tls: bool  # the load goes to the TLS port
    path: str
    load: Callable[[str, float, core.Settings], core.Result]
    smoke: Callable[[Ports, Site], None]
    unit: str = "req/s"
    servers: tuple[str, ...] = SERVERS

    def url(self, ports: Ports) -> str:
        if self.tls:
            return f"https://{HOST}:{ports.tls}{self.path}"
        return f"http://{HOST}:{ports.plain}{self.path}"


ROWS = [
    Row("proxy-h1", "proxied HTTP/1.1 (wrk)", False, "/", core.wrk_load, _smoke_h1),
    Row("proxy-h2", "proxied HTTP/2 TLS (h2load)", True, "/", core.h2load_load, _smoke_h2),
    Row(
        "proxy-h3",
        "proxied HTTP/3 (gtlsclient)",
        True,
        "/",
        core.h3_load,
        _smoke_h3,
        servers=("edgecorn", "caddy"),
    ),
    Row(
        "static-1k",
        "static 1 KiB (wrk)",
        False,
        "/static/1k.bin",
        core.wrk_load,
        _smoke_static("/static/1k.bin", SMALL),
    ),
    Row(
        "static-1m",
        "static 1 MiB, MB/s (wrk)",
        False,
        "/static/1m.bin",
        _wrk_mbps(len(LARGE)),
        _smoke_static("/static/1m.bin", LARGE),
        unit="MB/s",
    ),
]


# --------------------------------------------------------------------------- measuring


def _ports() -> Ports:
    plain = core.free_port()
    for _ in range(100):
        tls = core.free_port()
        if tls != plain:
            return Ports(plain, tls)
    raise RuntimeError("no second free port")


def start_edge(name: str, site: Site, s: core.Settings, tag: str) -> tuple[core.Server, Ports]:
    ports = _ports()
    work = Path(tempfile.mkdtemp(prefix=f"{name}-{tag}-", dir=site.tmp))
    argv = core._pin(s.server_cpu, EDGES[name](site, ports, work))
    server = core.Server(name, argv, ports.plain, work / "log")
    server.start()
    try:
        server.wait_ready(core.START_TIMEOUT)
        server.port = ports.tls
        server.wait_ready(core.START_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    return server, ports


@dataclass
class EdgeResult(core.Result):
    # The edge's CPU time per completed response: on a shared machine this moves much less
    # than req/s, since time stolen by other tenants is not counted.
    cpu_us: float | None = None
    upstream_cpu: float | None = None  # the upstream's CPU time / wall time (proxied rows)


def measure(name: str, row: Row, site: Site, s: core.Settings, upstream: core.Server) -> EdgeResult:
    try:
        server, ports = start_edge(name, site, s, row.name)
    except (RuntimeError, OSError) as exc:
        return EdgeResult(error=str(exc))
    try:
        row.smoke(ports, site)
        if s.warmup > 0:
            row.load(row.url(ports), s.warmup, s)
        if server.proc is None or server.proc.poll() is not None:
            raise RuntimeError(f"died during warm-up: {server.log_tail()}")
        cpu0, up0, t0 = server.cpu_seconds(), upstream.cpu_seconds(), time.monotonic()
        result = EdgeResult(**vars(row.load(row.url(ports), s.duration, s)))
        wall = time.monotonic() - t0
        cpu = server.cpu_seconds() - cpu0
        result.server_cpu = cpu / wall
        done = result.succeeded if result.succeeded is not None else result.requests
        if done:
            result.cpu_us = 1e6 * cpu / done
        if row.name.startswith("proxy"):
            result.upstream_cpu = (upstream.cpu_seconds() - up0) / wall
        if result.server_cpu < 0.7:
            result.notes.append(
                "edge core not saturated (other load on the machine, or the "
                "load generator/upstream was the limit)"
            )
        if server.proc.poll() is not None:
            result.error = result.error or f"exited during the run: {server.log_tail()}"
        return result
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return EdgeResult(error=f"{exc}")
    finally:
        server.stop()


@dataclass
class Summary:
    """A row's runs for one server: the median and the spread (min-max)."""

    median: float | None = None
    low: float | None = None
    high: float | None = None
    runs: list[float | None] = field(default_factory=list)
    server_cpu: float | None = None  # median over the runs
    cpu_us: float | None = None  # median edge CPU microseconds per response
    cpu_runs: list[float | None] = field(default_factory=list)  # each round's
    upstream_cpu: float | None = None  # median
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unsupported: bool = False

    @property
    def flagged(self) -> bool:
        return not self.unsupported and (self.median is None or bool(self.failed or self.errors))


def summarize(results: list[EdgeResult]) -> Summary:
    rates = [r.rps for r in results if r.rps is not None]
    cpus = [r.server_cpu for r in results if r.server_cpu is not None]
    costs = [r.cpu_us for r in results if r.cpu_us is not None]
    ups = [r.upstream_cpu for r in results if r.upstream_cpu is not None]
    return Summary(
        median=statistics.median(rates) if rates else None,
        low=min(rates) if rates else None,
        high=max(rates) if rates else None,
        runs=[r.rps for r in results],
        server_cpu=statistics.median(cpus) if cpus else None,
        cpu_us=statistics.median(costs) if costs else None,
        cpu_runs=[r.cpu_us for r in results],
        upstream_cpu=statistics.median(ups) if ups else None,
        failed=sum(r.failed for r in results),
        errors=[r.error for r in results if r.error],
        notes=list(dict.fromkeys(n for r in results for n in r.notes)),
    )


# --------------------------------------------------------------------------- RSS


def group_rss_kib(server: core.Server) -> int:
    """VmRSS (KiB) summed over the live processes of the server's process group."""
    assert server.proc is not None
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[2]) != server.proc.pid:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError, IndexError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


# wrk with a count as well as a time bound (-d): after `count` responses (one thread, -t1) the
# script stops the thread and sends wrk itself SIGINT, which ends its -d sleep at once (stopping
# the thread alone would leave wrk waiting out -d). io.popen, not os.execute: system() ignores
# SIGINT in the caller while its child runs, so the signal would be lost. A few in-flight
# responses may be lost.
WRK_COUNT = """\
local count, limit, pid = 0, 0, nil
function init(args)
  limit = tonumber(args[1])
  local stat = io.open("/proc/self/stat")
  pid = stat:read("*n")
  stat:close()
end
function response(status, headers, body)
  count = count + 1
  if count == limit then
    wrk.thread:stop()
    io.popen("kill -INT " .. pid):close()
  end
end
"""


def wrk_count(url: str, count: int, s: core.Settings, script: Path) -> core.Result:
    argv = core._pin(
        s.client_cpu,
        [
            "wrk",
            "-t1",
            f"-c{s.connections}",
            f"-d{RSS_SECONDS}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
            "--",
            str(count),
        ],
    )
    return core.parse_wrk(core._run_tool(argv, RSS_SECONDS + core.SLACK))


def rss_run(site: Site, s: core.Settings) -> dict[str, Any]:
    script = site.tmp / "count.lua"
    script.write_text(WRK_COUNT)
    server, ports = start_edge("edgecorn", site, s, "rss")
    url = f"http://{HOST}:{ports.plain}/"
    samples: list[dict[str, int]] = []
    done = 0
    try:
        _smoke_h1(ports, site)
        for target in RSS_REQUESTS:
            result = wrk_count(url, target - done, s, script)
            if result.failed or result.requests is None:
                raise RuntimeError(f"wrk: {result.error or '; '.join(result.notes)}")
            if result.requests < target - done:
                raise RuntimeError(
                    f"wrk stopped after {result.requests:,} of "
                    f"{target - done:,} requests (the {RSS_SECONDS} s bound)"
                )
            done += result.requests
            samples.append({"requests": done, "rss_kib": group_rss_kib(server)})
            print(
                f"  after {done:,} proxied requests: RSS {samples[-1]['rss_kib']:,} KiB",
                file=sys.stderr,
                flush=True,
            )
    finally:
        server.stop()
    first, last = samples[0]["rss_kib"], samples[-1]["rss_kib"]
    return {
        "samples": samples,
        "growth_kib": last - first,
        "growth_pct": 100.0 * (last - first) / first,
    }


# --------------------------------------------------------------------------- report


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def cell(summary: Summary | None, key: str, spread: bool) -> str:
    """`key` is "median" (the rate, with its spread) or "cpu_us"."""
    if summary is None:
        return "-"
    if summary.unsupported:
        return "n/a"
    value = getattr(summary, key)
    if value is None:
        return "error"
    text = _num(value)
    if key == "median" and spread and summary.low is not None and summary.high is not None:
        text += f" ({_num(summary.low)}-{_num(summary.high)})"
    return text + ("*" if summary.flagged else "")


def ratio(a: Summary | None, b: Summary | None, key: str = "median") -> float | None:
    if a is None or b is None:
        return None
    x, y = getattr(a, key), getattr(b, key)
    return None if x is None or not y else float(x / y)


def print_table(
    table: dict[str, dict[str, Summary]],
    rows: list[Row],
    servers: list[str],
    spread: bool,
    key: str = "median",
) -> None:
    peers = [p for p in PEERS if p in servers] if "edgecorn" in servers else []
    head = ["row", *servers, *(f"edgecorn/{p}" for p in peers)]
    lines = []
    for row in rows:
        got = table[row.name]
        cells = [row.label, *(cell(got.get(name), key, spread) for name in servers)]
        for peer in peers:
            r = ratio(got.get("edgecorn"), got.get(peer), key)
            cells.append("n/a" if r is None else f"{r:.2f}x")
        lines.append(cells)
    core.print_markdown(head, lines)


def print_details(table: dict[str, dict[str, Summary]], rows: list[Row]) -> None:
    print()
    for row in rows:
        for name, summary in table[row.name].items():
            if summary.unsupported:
                continue
            bits = []
            if summary.server_cpu is not None:
                bits.append(f"edge CPU {summary.server_cpu:.0%} of a core")
            if summary.cpu_us is not None:
                bits.append(f"{summary.cpu_us:,.0f} us of edge CPU per response")
            if summary.upstream_cpu is not None:
                bits.append(f"upstream CPU {summary.upstream_cpu:.0%} of the load core")
            if summary.failed:
                bits.append(f"{summary.failed:,} FAILED")
            bits += [f"ERROR: {e}" for e in summary.errors] + summary.notes
            print(f"  {row.name:9} {name:8} " + "; ".join(bits))
    if any(s.flagged for got in table.values() for s in got.values()):
        print("\n* flagged: failed requests or errors in a run; the number is not comparable.")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    p.add_argument("--warmup", type=int, default=None, help="seconds (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-up")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds per row, servers interleaved; medians and min-max (default 3)",
    )
    p.add_argument("--servers", default=",".join(SERVERS), help="subset of " + ",".join(SERVERS))
    p.add_argument(
        "--rows",
        default=",".join(r.name for r in ROWS),
        help="subset of " + ",".join(r.name for r in ROWS),
    )
    p.add_argument("--json", metavar="FILE", help="also write every run and the ratios here")
    p.add_argument(
        "--rss",
        action="store_true",
        help=f"instead: edgecorn's RSS after {RSS_REQUESTS[0]:,} and "
        f"{RSS_REQUESTS[-1]:,} proxied HTTP/1.1 requests",
    )
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument("--server-cpu", default="0", help="core for the edge (taskset -c)")
    p.add_argument("--client-cpu", default="1", help="core for the load generator and upstream")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 3
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        p.error("--duration must be > 0, --warmup >= 0, --repeat >= 1")
    args.servers = [x for x in args.servers.split(",") if x]
    args.rows = [x for x in args.rows.split(",") if x]
    for x in args.servers:
        if x not in SERVERS:
            p.error(f"unknown server {x!r}")
    for x in args.rows:
        if x not in {r.name for r in ROWS}:
            p.error(f"unknown row {x!r}")
    return args


def missing_tools(servers: list[str], pin: bool) -> list[str]:
    packages = {
        "wrk": "wrk",
        "h2load": "nghttp2-client",
        "gtlsclient": "ngtcp2-client",
        "curl": "curl",
        "taskset": "util-linux",
        "caddy": "caddy",
        "nginx": "nginx",
    }
    tools = ["wrk", "h2load", "gtlsclient", "curl", *[x for x in servers if x != "edgecorn"]]
    tools += ["taskset"] if pin else []
    missing = [f"{t} (apt-get install {packages[t]})" for t in tools if shutil.which(t) is None]
    with contextlib.suppress(ImportError):
        import uvicorn  # noqa: F401

        return missing
    return [*missing, "uvicorn (pip install -e '.[bench]')"]


def make_site(tmp: Path, upstream_port: int) -> Site:
    sys.path.insert(0, str(core.ROOT))
    from edgecorn.certs import ensure_dev_certs

    certfile, keyfile, cafile = ensure_dev_certs(tmp / "certs")
    # nginx's worker runs as `nobody` when started as root: let it reach the files.
    tmp.chmod(0o755)
    static = tmp / "static"
    static.mkdir(mode=0o755)
    (static / "1k.bin").write_bytes(SMALL)
    (static / "1m.bin").write_bytes(LARGE)
    for name in ("1k.bin", "1m.bin"):
        (static / name).chmod(0o644)
    return Site(tmp, static, certfile, keyfile, cafile, upstream_port)


def start_upstream(site: Site, s: core.Settings) -> core.Server:
    argv = core.uvicorn_argv(site.upstream_port)
    upstream = core.Server(
        "uvicorn", core._pin(s.client_cpu, argv), site.upstream_port, site.tmp / "upstream.log"
    )
    upstream.start()
    try:
        upstream.wait_ready(core.START_TIMEOUT)
        core.h1_smoke(site.upstream_port, 10.0)
    except BaseException:
        upstream.stop()
        raise
    return upstream


def run_rows(
    args: argparse.Namespace, site: Site, s: core.Settings, upstream: core.Server
) -> dict[str, dict[str, list[EdgeResult]]]:
    rows = [r for r in ROWS if r.name in args.rows]
    runs: dict[str, dict[str, list[EdgeResult]]] = {r.name: {} for r in rows}
    total = args.repeat * sum(n in r.servers for r in rows for n in args.servers)
    done = 0
    for row in rows:
        serving = [n for n in args.servers if n in row.servers]
        for name in serving:
            runs[row.name][name] = []
        for round_ in range(args.repeat):
            # Rotate the order every round, so drift on a shared machine hits each edge alike.
            k = round_ % len(serving) if serving else 0
            for name in serving[k:] + serving[:k]:
                done += 1
                print(
                    f"[{done}/{total}] {row.name} {name} ...", end=" ", file=sys.stderr, flush=True
                )
                if upstream.proc is None or upstream.proc.poll() is not None:
                    raise RuntimeError(f"the upstream died: {upstream.log_tail()}")
                result = measure(name, row, site, s, upstream)
                runs[row.name][name].append(result)
                print(
                    f"{result.rps:,.1f} {row.unit}"
                    if result.rps is not None
                    else f"error: {result.error}",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    missing = missing_tools(args.servers, pin)
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    s = core.Settings(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        h2_clients=16,
        h2_streams=10,
        h3_clients=4,
        h3_requests=500,
        h3_downloads=4,
        client_cpu=args.client_cpu if pin else None,
        server_cpu=args.server_cpu if pin else None,
    )
    signal.signal(signal.SIGTERM, core._raise_interrupt)  # run the finally blocks on kill too
    rows = [r for r in ROWS if r.name in args.rows]
    rss: dict[str, Any] | None = None
    runs: dict[str, dict[str, list[EdgeResult]]] = {}
    with tempfile.TemporaryDirectory(prefix="edgecorn-edge-bench-") as tmp:
        site = make_site(Path(tmp), core.free_port())
        upstream: core.Server | None = None
        try:
            upstream = start_upstream(site, s)
            if args.rss:
                rss = rss_run(site, s)
            else:
                runs = run_rows(args, site, s, upstream)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        except (RuntimeError, OSError) as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            return 1
        finally:
            if upstream is not None:
                upstream.stop()

    out: dict[str, Any] = {"settings": asdict(s) | {"repeat": args.repeat, "pinned": pin}}
    if rss is not None:
        growth = rss["growth_kib"]
        print(
            f"\nedgecorn RSS after {rss['samples'][0]['requests']:,} proxied HTTP/1.1 requests: "
            f"{rss['samples'][0]['rss_kib']:,} KiB; after {rss['samples'][-1]['requests']:,}: "
            f"{rss['samples'][-1]['rss_kib']:,} KiB; growth {growth:+,} KiB "
            f"({rss['growth_pct']:+.1f}%)"
        )
        out["rss"] = rss
        flagged = rss["growth_pct"] > 100 * RSS_TOLERANCE
        print(
            f"GREW by more than {RSS_TOLERANCE:.0%}"
            if flagged
            else f"flat (within {RSS_TOLERANCE:.0%})"
        )
    else:
        table = {
            row: {name: summarize(rs) for name, rs in got.items()} for row, got in runs.items()
        }
        for row in rows:
            for name in args.servers:
                if name not in row.servers:
                    table[row.name][name] = Summary(unsupported=True)
        print(
            f"\nmedian of {args.repeat} (min-max); {s.duration:g} s per measurement after "
            f"{s.warmup:g} s warm-up; edge on core {s.server_cpu}, load and upstream (Uvicorn) "
            f"on core {s.client_cpu}; wrk -c{s.connections}, h2load -c{s.h2_clients} "
            f"-m{s.h2_streams}, gtlsclient {s.h3_clients} at once x -n {s.h3_requests}\n"
        )
        print_table(table, rows, args.servers, args.repeat > 1)
        print(
            "\nedge CPU time per response, microseconds (median; lower is better; "
            "edgecorn/peer > 1 means edgecorn spends more)\n"
        )
        print_table(table, rows, args.servers, False, "cpu_us")
        print_details(table, rows)
        out["units"] = {r.name: r.unit for r in rows}
        out["results"] = {
            row: {name: asdict(x) | {"flagged": x.flagged} for name, x in got.items()}
            for row, got in table.items()
        }
        out["ratios"] = {
            row: {
                f"edgecorn/{p}": ratio(got.get("edgecorn"), got.get(p))
                for p in PEERS
                if p in got and "edgecorn" in got
            }
            for row, got in table.items()
        }
        out["cpu_us_ratios"] = {
            row: {
                f"edgecorn/{p}": ratio(got.get("edgecorn"), got.get(p), "cpu_us")
                for p in PEERS
                if p in got and "edgecorn" in got
            }
            for row, got in table.items()
        }
        flagged = any(x.flagged for got in table.values() for x in got.values())
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
