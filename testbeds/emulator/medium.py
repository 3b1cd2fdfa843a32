"""The simulated air: who hears whom, after how long, and how often a frame is lost.

Two kinds of link exist. ``radio`` links are 2.4 GHz neighbourhoods (802.15.4 at 250 kbit/s); ``p2p``
links are the point-to-point link between two Alt HAN bridges, which carries the same 802.15.4 frames
tunnelled. A frame is delivered after its airtime plus the link's latency, unless the link's loss draw
drops it. Every transmission is shown to the sniffers once, as it leaves the sender, so the capture
holds exactly what went on air (including frames that were then lost).

A frame on a ``p2p`` link also carries the P2P protocol version it is written in: each station may
have a :class:`P2pPort` (a bridge's firmware, :class:`testbeds.emulator.p2p.P2pEndpoint`) that says
which version it writes to a peer and whether it understands a version it receives; a station
without one writes and understands version 1 only. A frame the receiver does not understand is lost.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# 802.15.4 O-QPSK at 2.4 GHz: 250 kbit/s, i.e. 32 us per octet; the PHY adds preamble (4), SFD (1)
# and length (1) octets to every PSDU.
OCTET_TIME_S = 32e-6
PHY_OVERHEAD_OCTETS = 6

Receiver = Callable[[bytes, str, str], None]
"""A radio's receive callback: (frame, sender name, medium kind)."""

Sniffer = Callable[[bytes, str, str, str], None]
"""A sniffer callback: (frame, sender name, intended receiver name or '*', medium kind)."""


class P2pPort(Protocol):
    """A station's P2P protocol: the version it writes to a peer, and whether it understands one."""

    def outgoing(self, peer: str) -> tuple[int, int]:
        """(version written, highest version spoken) of the next frame to ``peer``."""
        ...

    def incoming(self, peer: str, version: int, highest: int) -> bool:
        """Whether a frame from ``peer`` written in ``version`` is understood."""
        ...


_BASE_P2P = (1, 1)


def airtime(frame: bytes) -> float:
    """Seconds a frame of this length occupies the channel."""
    return (len(frame) + PHY_OVERHEAD_OCTETS) * OCTET_TIME_S


@dataclass(slots=True)
class Link:
    """One link of the premises: its kind, one-way latency (s) and per-frame loss probability."""

    a: str
    b: str
    kind: str
    latency: float
    loss: float


@dataclass
class _Station:
    name: str
    receive: Receiver
    listening: bool = True


@dataclass
class Medium:
    """All links of one premises and the stations attached to them, on one event loop."""

    loop: asyncio.AbstractEventLoop
    rng: random.Random
    _links: dict[tuple[str, str], Link] = field(default_factory=dict)
    _neighbours: dict[str, dict[str, Link]] = field(default_factory=dict)
    _stations: dict[str, _Station] = field(default_factory=dict)
    _sniffers: list[Sniffer] = field(default_factory=list)
    _p2p_ports: dict[str, P2pPort] = field(default_factory=dict)
    frames_sent: int = 0
    frames_lost: int = 0

    def connect(
        self, a: str, b: str, *, kind: str = "radio", latency: float = 0.002, loss: float = 0.0
    ) -> None:
        """Put a link between stations ``a`` and ``b`` (both directions)."""
        link = Link(a, b, kind, latency, loss)
        self._links[(a, b)] = link
        self._links[(b, a)] = link
        self._neighbours.setdefault(a, {})[b] = link
        self._neighbours.setdefault(b, {})[a] = link

    def link(self, a: str, b: str) -> Link | None:
        """The link between two stations, if any."""
        return self._links.get((a, b))

    def neighbours(self, name: str) -> dict[str, Link]:
        """Stations linked to ``name``, with the link to each."""
        return dict(self._neighbours.get(name, {}))

    def attach(self, name: str, receive: Receiver) -> None:
        """Switch a station's radio on: from now on it hears frames sent to it."""
        self._stations[name] = _Station(name, receive)

    def detach(self, name: str) -> None:
        """Switch a station's radio off (power cut): frames in flight to it are lost."""
        self._stations.pop(name, None)

    def set_listening(self, name: str, listening: bool) -> None:
        """A sleepy device turns its receiver off between polls; frames sent meanwhile are lost."""
        station = self._stations.get(name)
        if station is not None:
            station.listening = listening

    def set_p2p_port(self, name: str, port: P2pPort | None) -> None:
        """Give station ``name`` its P2P protocol (None: base version 1 only), e.g. at each boot."""
        if port is None:
            self._p2p_ports.pop(name, None)
        else:
            self._p2p_ports[name] = port

    def add_sniffer(self, sniffer: Sniffer) -> None:
        """Show every frame put on any link to ``sniffer`` (the capture)."""
        self._sniffers.append(sniffer)

    def transmit(self, sender: str, frame: bytes, to: str | None, kind: str = "radio") -> None:
        """Send ``frame`` from ``sender``: to one neighbour, or (``to=None``) to all on links of ``kind``.

        Unicast frames are delivered only to the addressed neighbour: the others would drop them on
        the MAC address filter anyway, and that spares the work.
        """
        self.frames_sent += 1
        for sniffer in self._sniffers:
            sniffer(frame, sender, to or "*", kind)
        links = self._neighbours.get(sender, {})
        if to is not None:
            link = links.get(to)
            targets = [(to, link)] if link is not None else []
        else:
            targets = [(name, link) for name, link in links.items() if link.kind == kind]
        duration = airtime(frame)
        for name, link in targets:
            if link.loss and self.rng.random() < link.loss:
                self.frames_lost += 1
                continue
            p2p = None
            if link.kind == "p2p":
                port = self._p2p_ports.get(sender)
                p2p = port.outgoing(name) if port is not None else _BASE_P2P
            self.loop.call_later(duration + link.latency, self._deliver, name, frame, sender, link.kind, p2p)

    def _deliver(
        self, name: str, frame: bytes, sender: str, kind: str, p2p: tuple[int, int] | None = None
    ) -> None:
        station = self._stations.get(name)
        if station is None or not station.listening:
            self.frames_lost += 1
            return
        if p2p is not None:
            port = self._p2p_ports.get(name)
            version, highest = p2p
            understood = port.incoming(sender, version, highest) if port is not None else version <= 1
            if not understood:
                self.frames_lost += 1
                return
        station.receive(frame, sender, kind)
