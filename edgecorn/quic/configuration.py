"""aioquic's QuicConfiguration from edgecorn's Config: certificates, key log, qlog.

The file work (certificate loading, the key log, the qlog directory) happens here,
once per worker, so the sans-IO modules never touch the file system.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.logger import QuicFileLogger
from aioquic.tls import CipherSuite

from ..certificates import store_for
from .engine import CID_LENGTH
from .routing import SUPPORTED_VERSIONS

if TYPE_CHECKING:
    from ..config import Config


def server_options(config: Config) -> dict[str, Any]:
    """QuicConfiguration's keyword arguments for a server, the same for every engine."""
    return {
        "is_client": False,
        "alpn_protocols": list(config.quic_alpn_protocols),  # h3; hq-interop for interop runs
        "connection_id_length": CID_LENGTH,
        "idle_timeout": config.quic_idle_timeout,
        "supported_versions": list(SUPPORTED_VERSIONS),
        "max_datagram_frame_size": 65536,
        # aioquic's cost is per packet: 1350 (as quiche and Chromium's servers use) carries
        # 12% more per packet than the 1200 minimum and fits nearly every path's MTU.
        "max_datagram_size": config.quic_max_datagram_size,
    }


def finish(
    configuration: Any,
    config: Config,
    certificate: tuple[Any, Any, Any],
    cipher_suite: Any,
    file_logger: Any,
) -> Any:
    """The file work and TLS choices on an engine's configuration object (aioquic's or qh3's,
    with that engine's CipherSuite enum and QuicFileLogger class)."""
    if config.quic_ciphers:  # e.g. ChaCha20 only, as the interop runner's chacha20 case asks
        configuration.cipher_suites = [cipher_suite[name] for name in config.quic_ciphers]
    configuration.certificate, configuration.certificate_chain = certificate[0], certificate[1]
    configuration.private_key = certificate[2]
    if config.ca_certs:
        configuration.load_verify_locations(cafile=config.ca_certs)
    if config.verify_mode is not None:
        configuration.verify_mode = config.verify_mode
    keylog = config.ssl_keylog_file or os.environ.get("SSLKEYLOGFILE")
    if keylog:
        configuration.secrets_log_file = open(keylog, "a", buffering=1)  # noqa: SIM115
    if config.qlog_dir:
        os.makedirs(config.qlog_dir, exist_ok=True)
        configuration.quic_logger = file_logger(config.qlog_dir)
    return configuration


def quic_configuration(config: Config) -> QuicConfiguration:
    # The default certificate; engine.py swaps in the one the ClientHello's SNI names.
    certificate = store_for(config).quic_certificate(None)
    configuration = QuicConfiguration(**server_options(config))
    result: QuicConfiguration = finish(
        configuration, config, certificate, CipherSuite, QuicFileLogger
    )
    return result
