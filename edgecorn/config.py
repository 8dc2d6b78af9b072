"""The one Config object. CLI flags, files, env and the Python API all end here.

Option names and defaults follow Hypercorn where they overlap, so a Hypercorn
user can switch by changing the import.
"""

from __future__ import annotations

import ssl
from typing import Any

SECONDS = 1.0


class Config:
    # Listeners. `bind` is TLS when a certificate is configured, cleartext otherwise
    # (as in Hypercorn); `insecure_bind` is always cleartext.
    bind: list[str] = ["127.0.0.1:8000"]
    insecure_bind: list[str] = []
    quic_bind: list[str] = []
    backlog: int = 100

    # TLS
    certfile: str | None = None
    keyfile: str | None = None
    keyfile_password: str | None = None
    ca_certs: str | None = None
    verify_mode: ssl.VerifyMode | None = None
    ciphers: str = "ECDHE+AESGCM"
    alpn_protocols: list[str] = ["h2", "http/1.1"]
    ssl_handshake_timeout: float = 60 * SECONDS

    # HTTP
    keep_alive_timeout: float = 5 * SECONDS
    keep_alive_max_requests: int = 1000
    read_timeout: float | None = None
    graceful_timeout: float = 3 * SECONDS
    h11_max_incomplete_size: int = 16 * 1024
    http1_parser: str = "auto"  # auto | h11 | httptools
    h2_max_concurrent_streams: int = 100
    h2_max_header_list_size: int = 2**16
    h2_max_inbound_frame_size: int = 2**14
    include_server_header: bool = True
    include_date_header: bool = True
    server_names: list[str] = []
    root_path: str = ""
    max_app_queue_size: int = 10
    wsgi_max_body_size: int = 16 * 1024 * 1024

    # App
    application_path: str | None = None
    factory: bool = False
    lifespan: str = "auto"  # auto | on | off
    startup_timeout: float = 60 * SECONDS
    shutdown_timeout: float = 60 * SECONDS

    # Logging
    access_log_format: str = '%(h)s %(l)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    accesslog: str | None = None
    errorlog: str | None = "-"
    loglevel: str = "INFO"

    # Processes
    workers: int = 1
    worker_class: str = "asyncio"  # asyncio | uvloop | trio
    pid_path: str | None = None

    def __init__(self, **values: Any) -> None:
        for key, value in values.items():
            setattr(self, key, value)

    @property
    def ssl_enabled(self) -> bool:
        return self.certfile is not None and self.keyfile is not None
