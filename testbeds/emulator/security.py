"""ZigBee PRO NWK frame security: the auxiliary header and AES-CCM* at security level 5 (ENC-MIC-32).

Written from ZigBee PRO 2015 §4.3.1 (NWK frame security) and §4.5.1 (auxiliary frame header), using
the ``cryptography`` package's AES-CCM (CCM* with a 4-byte MIC is CCM with tag length 4):

- on air the security control byte carries level 0 (§4.3.1.1: the level is a network-wide setting,
  nwkSecurityLevel, and is substituted back before the MIC is computed and checked);
- nonce (§4.5.2.2): source IEEE address (8 bytes, little endian as on air), frame counter (4, LE),
  security control byte with the level substituted;
- associated data: the NWK header followed by the auxiliary header, level substituted.

NWK security is hop by hop: every relay checks the frame with the network key, then secures it again
with its own IEEE address and its own outgoing frame counter. A receiver keeps the last frame counter
it accepted from each neighbour and drops anything not newer (replays and stale counters, §4.3.1.2).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from testbeds.emulator.frames import NwkFrame

SECURITY_LEVEL = 5  # ENC-MIC-32, the only level ZigBee PRO uses
MIC_LENGTH = 4
KEY_ID_NETWORK = 1
EXTENDED_NONCE = 0x20
_SECURITY_CONTROL_ON_AIR = (KEY_ID_NETWORK << 3) | EXTENDED_NONCE
_SECURITY_CONTROL_FULL = _SECURITY_CONTROL_ON_AIR | SECURITY_LEVEL
_AUX = struct.Struct("<BI8sB")  # security control, frame counter, source IEEE, key sequence number
MAX_FRAME_COUNTER = 0xFFFFFFFF


class SecurityError(ValueError):
    """A secured frame could not be accepted: bad MIC, unknown key, malformed header, or replay."""


@dataclass(frozen=True, slots=True)
class AuxHeader:
    """The auxiliary security header of a NWK frame secured with the network key."""

    frame_counter: int
    source_ieee: bytes
    key_sequence: int


@dataclass(frozen=True, slots=True)
class Unprotected:
    """A secured frame after its MIC checked out."""

    aux: AuxHeader
    plaintext: bytes


class NwkSecurity:
    """Secure and check NWK frames with one network key (the device's active key)."""

    def __init__(self, key: bytes, key_sequence: int = 0) -> None:
        if len(key) != 16:
            raise ValueError(f"a ZigBee network key is 16 bytes, not {len(key)}")
        self.key_sequence = key_sequence
        self._ccm = AESCCM(key, tag_length=MIC_LENGTH)

    def protect(self, frame: NwkFrame, *, source_ieee: bytes, frame_counter: int) -> bytes:
        """The NWK frame on air: header with the security bit, auxiliary header, ciphertext and MIC.

        ``frame.payload`` is the plaintext (the APS frame).
        """
        secured = NwkFrame(
            frame_type=frame.frame_type,
            dst=frame.dst,
            src=frame.src,
            radius=frame.radius,
            seq=frame.seq,
            discover_route=frame.discover_route,
            security=True,
            dst_ieee=frame.dst_ieee,
            src_ieee=frame.src_ieee,
        )
        header = secured.header_bytes()
        aux_on_air = _AUX.pack(_SECURITY_CONTROL_ON_AIR, frame_counter, source_ieee, self.key_sequence)
        aux_full = _AUX.pack(_SECURITY_CONTROL_FULL, frame_counter, source_ieee, self.key_sequence)
        nonce = source_ieee + struct.pack("<IB", frame_counter, _SECURITY_CONTROL_FULL)
        sealed = self._ccm.encrypt(nonce, frame.payload, header + aux_full)
        return header + aux_on_air + sealed

    def unprotect(self, frame: NwkFrame) -> Unprotected:
        """Check and decrypt a received secured frame (``frame.payload`` is everything after the header)."""
        data = frame.payload
        if len(data) < _AUX.size + MIC_LENGTH:
            raise SecurityError(f"secured NWK frame too short ({len(data)} bytes after the header)")
        control, counter, source_ieee, key_sequence = _AUX.unpack_from(data)
        if control & ~0x07 != _SECURITY_CONTROL_ON_AIR:
            raise SecurityError(
                f"unsupported security control 0x{control:02X} (need network key, extended nonce)"
            )
        if key_sequence != self.key_sequence:
            raise SecurityError(f"key sequence {key_sequence} is not the active key {self.key_sequence}")
        full_control = control | SECURITY_LEVEL
        aux_full = bytes([full_control]) + data[1 : _AUX.size]
        nonce = source_ieee + struct.pack("<IB", counter, full_control)
        try:
            plaintext = self._ccm.decrypt(nonce, data[_AUX.size :], frame.header_bytes() + aux_full)
        except InvalidTag:
            raise SecurityError("MIC check failed (wrong key or altered frame)") from None
        return Unprotected(AuxHeader(counter, source_ieee, key_sequence), plaintext)


class IncomingCounters:
    """The last frame counter accepted from each neighbour (by IEEE address): replays are refused."""

    def __init__(self) -> None:
        self._last: dict[bytes, int] = {}

    def accept(self, source_ieee: bytes, counter: int) -> bool:
        """Record ``counter`` from ``source_ieee``; False (drop the frame) unless it is newer."""
        last = self._last.get(source_ieee)
        if last is not None and counter <= last:
            return False
        self._last[source_ieee] = counter
        return True

    def last(self, source_ieee: bytes) -> int | None:
        """The last counter accepted from that neighbour, if any."""
        return self._last.get(source_ieee)
