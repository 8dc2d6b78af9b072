"""What a worker sets up once for all its QUIC sockets, on either event loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aioquic.quic.configuration import QuicConfiguration

from ..certificates import store_for
from ..sockets import Sockets, describe
from .configuration import quic_configuration
from .engine import ChooseCertificate
from .lb import LEGACY, CidFormat, cid_format
from .tickets import TicketStore

if TYPE_CHECKING:
    from ..config import Config
    from ..manager import ConnectionManager

log = logging.getLogger("edgecorn.error")


@dataclass(frozen=True)
class QuicSetup:
    """Shared by a worker's endpoints: one TLS configuration and ticket store (a ticket
    from one socket resumes on another), the Retry secret every worker of the server
    shares, and this worker's connection ID tag (several workers) or None."""

    configuration: QuicConfiguration
    tickets: TicketStore
    retry_key: bytes
    cid_tag: int | None = None
    # the certificate store's choice for a ClientHello (see engine.py)
    choose_certificate: ChooseCertificate | None = None
    cid_format: CidFormat = LEGACY  # QUIC-LB server ID etc. (quic/lb.py)


def quic_setup(config: Config, sockets: Sockets) -> QuicSetup | None:
    """None when this worker has no QUIC sockets."""
    if not sockets.quic:
        return None
    return QuicSetup(
        quic_configuration(config),
        TicketStore(),
        sockets.quic_secret,
        sockets.quic_tag,
        store_for(config).quic_for_hello,
        cid_format=cid_format(config.quic_lb_server_id, config.quic_lb_config_id),
    )


def announce(manager: ConnectionManager, sockets: Sockets) -> None:
    """Log each QUIC listener and advertise them (Alt-Svc) on the TCP listeners."""
    for sock in sockets.quic:
        log.info("Running on %s (h3; CTRL + C to quit)", describe(sock, True))
    manager.advertise_h3([sock.getsockname()[1] for sock in sockets.quic])
    if not sockets.secure:
        log.warning("QUIC is on but no TLS listener exists to advertise it (Alt-Svc) from")
