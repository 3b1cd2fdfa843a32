"""The protocol version spoken over an Alt HAN bridge pair's point-to-point (P2P) link.

The P2P link tunnels 802.15.4 frames between two bridges; its own framing is not ZigBee and is not
in the capture. The emulator models only the two fields of that framing that decide whether the
far end understands a frame: the protocol version the frame is written in, and the highest version
the sender speaks. A bridge's version comes from its running firmware (the ``p2p_protocol`` of the
firmware manifest, :mod:`testbeds.emulator.firmware`; factory default 1).

Healthy firmware is backward compatible: it understands every version up to its own, learns from
each frame the highest version its peer speaks, and writes to that peer in the lower of the two
(starting at the base version 1 until it has heard from the peer). So upgrading one end of a
pair first keeps the link up, and both ends move to the new version once both speak it.

The ``p2p-protocol-skew`` defect: firmware speaking version 2 or later writes and accepts only its
own version, so after upgrading one bridge alone its old-protocol peer and it no longer understand
each other, and whatever sits behind the pair (the GSME) is cut off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BASE_PROTOCOL", "P2pEndpoint"]

BASE_PROTOCOL = 1
"""The version every bridge speaks: the one a healthy bridge uses until it knows better."""


@dataclass
class P2pEndpoint:
    """One bridge's end of its P2P links: the version it writes to each peer and what it accepts.

    ``protocol`` is the highest version its firmware speaks; ``own_version_only`` is the
    ``p2p-protocol-skew`` defect. What it learnt of its peers is RAM: a new endpoint at every boot.
    """

    name: str
    protocol: int = BASE_PROTOCOL
    own_version_only: bool = False
    log: Callable[[str], None] = lambda _text: None
    peer_highest: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    _reported: set[tuple[str, int]] = field(default_factory=set)

    @property
    def strict(self) -> bool:
        """Whether this end speaks only its own version (the defect, on a version-2-or-later firmware)."""
        return self.own_version_only and self.protocol > BASE_PROTOCOL

    def outgoing(self, peer: str) -> tuple[int, int]:
        """(version written, highest version spoken) of the next frame to ``peer``."""
        if self.strict:
            return self.protocol, self.protocol
        return min(self.protocol, self.peer_highest.get(peer, BASE_PROTOCOL)), self.protocol

    def incoming(self, peer: str, version: int, highest: int) -> bool:
        """Whether a frame from ``peer`` written in ``version`` is understood (and learn ``highest``)."""
        understood = version == self.protocol if self.strict else version <= self.protocol
        if understood and not self.strict:
            before = min(self.protocol, self.peer_highest.get(peer, BASE_PROTOCOL))
            self.peer_highest[peer] = highest
            after = min(self.protocol, highest)
            if after != before:
                self.log(f"P2P link to {peer}: now writing protocol version {after}")
        if not understood:
            self.refused += 1
            if (peer, version) not in self._reported:
                self._reported.add((peer, version))
                speaks = f"only {self.protocol}" if self.strict else f"up to {self.protocol}"
                self.log(
                    f"P2P frame from {peer} in protocol version {version} not understood "
                    f"(this firmware speaks {speaks}): dropped"
                )
        return understood
