"""What a worker sets up once for all its QUIC sockets, on either event loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aioquic.quic.configuration import QuicConfiguration

from ..certificates import store_for
from ..config import ConfigError
from ..sockets import Sockets, describe
from .configuration import quic_configuration
from .engine import ChooseCertificate
from .lb import LEGACY, CidFormat, cid_format
from .tickets import SealedTickets, TicketKeyError, TicketStore

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
    tickets: TicketStore | SealedTickets
    retry_key: bytes
    cid_tag: int | None = None
    # the certificate store's choice for a ClientHello (see engine.py)
    choose_certificate: ChooseCertificate | None = None
    cid_format: CidFormat = LEGACY  # QUIC-LB server ID etc. (quic/lb.py)
    connection_class: Any = None  # the engine's QUIC connection; None: aioquic's (engine.py)

    @property
    def alone(self) -> bool:
        """No other worker's socket shares this port (workers: 0): the supervisor tags
        every worker's connection IDs, even with `workers: 1`, whose rolling restart
        starts the replacement before the old worker drains."""
        return self.cid_tag is None


def quic_setup(config: Config, sockets: Sockets) -> QuicSetup | None:
    """None when this worker has no QUIC sockets."""
    if not sockets.quic:
        return None
    engine, why = choose_engine(config)
    log.info("QUIC engine %s%s", engine, why)
    configuration: Any
    connection_class: Any = None
    if engine == "qh3":
        from . import qh3_engine

        certificate = store_for(config).quic_certificate(None)
        configuration = qh3_engine.qh3_configuration(config, certificate)
        connection_class = qh3_engine.Qh3Connection
    else:
        configuration = quic_configuration(config)
    return QuicSetup(
        configuration,
        ticket_store(config),
        sockets.quic_secret,
        sockets.quic_tag,
        store_for(config).quic_for_hello,
        cid_format=cid_format(config.quic_lb_server_id, config.quic_lb_config_id),
        connection_class=connection_class,
    )


def ticket_store(config: Config) -> TicketStore | SealedTickets:
    """In-memory, single-use tickets; or, with a key file, sealed tickets any worker of
    any host with the same file resumes (tickets.py)."""
    path = config.quic_ticket_key_file
    if path is None:
        return TicketStore()
    try:
        tickets = SealedTickets.from_file(path)
    except TicketKeyError as exc:
        raise ConfigError(str(exc), key="quic_ticket_key_file") from None
    return tickets


def choose_engine(config: Config) -> tuple[str, str]:
    """The QUIC engine for this configuration and, for the start-up line, why not qh3.
    An explicit qh3 that cannot serve this configuration is a config error."""
    choice = config.quic_engine
    if choice == "aioquic":
        return "aioquic", ""
    try:
        from . import qh3_engine
    except ImportError as exc:
        if choice == "qh3":
            raise ConfigError(str(exc), key="quic_engine") from None
        return "aioquic", f" (qh3 not used: {exc})"
    problems = qh3_engine.unsupported(config)
    defect = qh3_engine.KNOWN_DEFECTS.get(qh3_engine.VERSION)
    if not problems and (choice == "qh3" or defect is None):
        return "qh3", ""
    if choice == "qh3":
        raise ConfigError(
            "qh3 cannot serve this configuration: " + "; ".join(problems), key="quic_engine"
        )
    return "aioquic", " (qh3 not used: " + "; ".join(problems or [str(defect)]) + ")"


def announce(manager: ConnectionManager, sockets: Sockets) -> None:
    """Log each QUIC listener and advertise them (Alt-Svc) on the TCP listeners."""
    for sock in sockets.quic:
        log.info("Running on %s (h3; CTRL + C to quit)", describe(sock, True))
    manager.advertise_h3([sock.getsockname()[1] for sock in sockets.quic])
    if not sockets.secure:
        log.warning("QUIC is on but no TLS listener exists to advertise it (Alt-Svc) from")
