"""A UDP relay between one client and the server that plays the simulator's scenarios.

Per direction: a fixed delay, a loss rate, a corruption rate, blackhole periods and a
list of packets to drop (1-based, as the simulator's droplist counts them); on the
client's side, NAT rebinding: from `first_rebind` on, every `rebind_every` seconds the
relay talks to the server from a new port (`rebind_addr`: and a new 127.0.0.x
address), as a NAT that forgot the mapping would. Everything that reaches either side
is recorded, parsed, in a `Trace`.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from .trace import Trace, parse_datagram


@dataclass
class Scenario:
    delay: float = 0.0  # seconds, each way
    bandwidth: float = 0.0  # bits per second, each way (0: as fast as loopback)
    queue: int = 25  # packets a direction holds at `bandwidth` before it drops (tail drop)
    loss: float = 0.0  # probability, each way
    corrupt: float = 0.0  # probability, each way
    drops_to_server: frozenset[int] = frozenset()  # 1-based client->server packet numbers
    blackhole_on: float = 0.0  # seconds of traffic, then ...
    blackhole_off: float = 0.0  # ... seconds of nothing at all (0: no blackhole)
    first_rebind: float = 0.0  # seconds after the first packet (0: no rebinding)
    rebind_every: float = 0.0
    rebind_addr: bool = False

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in vars(self).items() if v]
        return " ".join(parts) or "clean"


@dataclass
class Counters:
    to_server: int = 0  # datagrams that reached the server
    to_client: int = 0
    dropped: int = 0
    corrupted: int = 0
    rebinds: int = 0
    client_addrs: set[Any] = field(default_factory=set)  # as the server saw them


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, addr)


class Relay:
    def __init__(self, server: tuple[str, int], scenario: Scenario, seed: int = 1) -> None:
        self.server = server
        self.scenario = scenario
        self.random = random.Random(seed)
        self.trace = Trace()
        self.counters = Counters()
        self.client_addr: Any = None
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None
        self.started: float | None = None
        self.next_rebind: float | None = None
        self.from_client = 0
        self.addr_index = 1
        self.link_free = {True: 0.0, False: 0.0}  # per direction: when the link is idle

    async def start(self, host: str = "127.0.0.1") -> int:
        loop = asyncio.get_running_loop()
        self.front, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_client), local_addr=(host, 0)
        )
        await self._new_back()
        return int(self.front.get_extra_info("sockname")[1])

    async def _new_back(self) -> None:
        loop = asyncio.get_running_loop()
        if self.scenario.rebind_addr and self.back is not None:
            self.addr_index = self.addr_index % 250 + 1
        local = (f"127.0.0.{self.addr_index}", 0)
        old = self.back
        self.back, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_server), local_addr=local, family=socket.AF_INET
        )
        if old is not None:
            old.close()  # packets to the old mapping are lost, as behind a real NAT
        self.counters.client_addrs.add(self.back.get_extra_info("sockname"))

    def close(self) -> None:
        for transport in (self.front, self.back):
            if transport is not None:
                transport.close()

    # --- the two directions --------------------------------------------------------

    def _blackholed(self, now: float) -> bool:
        s = self.scenario
        if not s.blackhole_off or self.started is None:
            return False
        return (now - self.started) % (s.blackhole_on + s.blackhole_off) >= s.blackhole_on

    def _impair(self, data: bytes, now: float) -> bytes | None:
        s = self.scenario
        if self._blackholed(now) or (s.loss and self.random.random() < s.loss):
            self.counters.dropped += 1
            return None
        if s.corrupt and self.random.random() < s.corrupt:
            self.counters.corrupted += 1
            buf = bytearray(data)
            index = self.random.randrange(min(len(buf), 20), len(buf)) if len(buf) > 20 else 0
            buf[index] ^= 0xFF
            return bytes(buf)
        return data

    def _from_client(self, data: bytes, addr: Any) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
            if self.scenario.first_rebind:
                self.next_rebind = now + self.scenario.first_rebind
        self.client_addr = addr
        self.from_client += 1
        if self.from_client in self.scenario.drops_to_server:
            self.counters.dropped += 1
            return
        out = self._impair(data, now)
        if out is not None:
            self._later(self._to_server, out, True)
        if self.next_rebind is not None and now >= self.next_rebind:
            self.next_rebind = now + (self.scenario.rebind_every or 1e9)
            self.counters.rebinds += 1
            asyncio.ensure_future(self._new_back())

    def _to_server(self, data: bytes) -> None:
        if self.back is None or self.back.is_closing():
            return  # a delayed datagram after a rebind or the end
        self.back.sendto(data, self.server)
        self.counters.to_server += 1
        self.trace.to_server.append((time.monotonic(), len(data), parse_datagram(data)))

    def _from_server(self, data: bytes, addr: Any) -> None:
        now = time.monotonic()
        self.trace.to_client.append((now, len(data), parse_datagram(data)))
        out = self._impair(data, now)
        if out is not None:
            self._later(self._to_client, out, False)

    def _to_client(self, data: bytes) -> None:
        front = self.front
        if front is not None and not front.is_closing() and self.client_addr is not None:
            front.sendto(data, self.client_addr)
            self.counters.to_client += 1

    def _later(self, send: Any, data: bytes, to_server: bool) -> None:
        s = self.scenario
        wait = s.delay
        if s.bandwidth:
            # A link of `bandwidth` with a `queue`-packet buffer: each datagram leaves
            # when the ones before it have, and one that finds the buffer full is lost.
            now = time.monotonic()
            start = max(now, self.link_free[to_server])
            if start - now > s.queue * 1500 * 8 / s.bandwidth:
                self.counters.dropped += 1
                return
            self.link_free[to_server] = start + len(data) * 8 / s.bandwidth
            wait += self.link_free[to_server] - now
        if wait:
            asyncio.get_running_loop().call_later(wait, send, data)
        else:
            send(data)
