"""Listening sockets from bind strings: host:port, [v6]:port, unix:path, fd://N.

Sockets are made before the event loop starts so a supervisor can make them
once and hand them to every worker.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass, field

from .config import Config


@dataclass
class Sockets:
    secure: list[socket.socket] = field(default_factory=list)
    insecure: list[socket.socket] = field(default_factory=list)
    quic: list[socket.socket] = field(default_factory=list)
    quic_tag: int | None = None  # this worker's connection ID tag (several workers)
    # The Retry token key: made with the supervisor's sockets and handed to every
    # worker, so a token one worker issued validates in any other.
    quic_secret: bytes = field(default_factory=lambda: os.urandom(32))
    redirect: list[socket.socket] = field(default_factory=list)  # redirect_https listeners

    def all(self) -> list[socket.socket]:
        return self.secure + self.insecure + self.quic + self.redirect

    def close(self) -> None:
        for sock in self.all():
            sock.close()


def parse_host_port(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


def create_socket(bind: str, backlog: int) -> socket.socket:
    if bind.startswith("unix:"):
        path = bind[5:]
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.remove(path)  # a stale socket from an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o666)
    elif bind.startswith("fd://"):
        fd = int(bind[5:])
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            raise OSError(f"fd://{fd} is not a stream socket")
    else:
        host, port = parse_host_port(bind)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


# Bursts of datagrams must not be dropped because a kernel queue is small.
UDP_BUFFER = 4 * 1024 * 1024


def create_udp_socket(bind: str) -> socket.socket:
    return udp_socket(*parse_host_port(bind))


def udp_socket(host: str, port: int, reuseport: bool = False) -> socket.socket:
    """The one QUIC socket factory: a single process's socket, or (`reuseport`) one of a
    multi-worker group on one port (see reuseport.py); both get the large buffers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    for forced, plain in (
        (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
        (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF),
    ):
        try:  # the FORCE variants pass rmem_max/wmem_max when we may
            sock.setsockopt(socket.SOL_SOCKET, forced or plain, UDP_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, UDP_BUFFER)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def quic_binds(config: Config, secure: list[socket.socket]) -> list[str]:
    """`quic_bind`, plus each TLS listener's address when `quic_on_tls_binds` is on."""
    binds = list(config.quic_bind)
    if config.ssl_enabled and config.quic_on_tls_binds:
        for sock in secure:
            name = sock.getsockname()
            if isinstance(name, tuple):
                host = f"[{name[0]}]" if ":" in name[0] else name[0]
                bind = f"{host}:{name[1]}"
                if bind not in binds:
                    binds.append(bind)
    return binds


def tcp_binds(config: Config) -> list[str]:
    """The `bind` addresses to listen on: none when `bind` is still its default and cleartext
    `insecure_bind`s are given without TLS (the default one would only surprise)."""
    if not config.ssl_enabled and config.insecure_bind and config.bind == Config.bind:
        return []
    return list(config.bind)


def create_sockets(config: Config, quic: bool = True) -> Sockets:
    sockets = Sockets()
    try:
        secure = sockets.secure if config.ssl_enabled else sockets.insecure
        for bind in tcp_binds(config):
            secure.append(create_socket(bind, config.backlog))
        for bind in config.insecure_bind:
            sockets.insecure.append(create_socket(bind, config.backlog))
        for bind in config.redirect_https:
            sockets.redirect.append(create_socket(bind, config.backlog))
        if config.quic_bind and not config.ssl_enabled:
            raise OSError("quic_bind needs a certificate (certfile and keyfile): QUIC is TLS only")
        for bind in quic_binds(config, sockets.secure) if quic else []:
            sockets.quic.append(create_udp_socket(bind))
    except BaseException:
        sockets.close()
        raise
    return sockets


def describe(sock: socket.socket, secure: bool) -> str:
    name = sock.getsockname()
    scheme = "https" if secure else "http"
    if sock.type == socket.SOCK_DGRAM:
        scheme = "quic"
    if isinstance(name, str) or isinstance(name, bytes):
        return f"{scheme}+unix://{name!s}"
    host, port = name[0], name[1]
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"
