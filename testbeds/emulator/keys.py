"""ZigBee link keys: install codes, the MMO hash, the keyed hash and APS-layer frame security.

Written from the ZigBee Specification 05-3474 (R22) and the ZigBee 3.0 Base Device Behaviour
specification, using the ``cryptography`` package's AES:

- **Install codes** (BDB §10.1): a 6, 8, 12 or 16 byte code followed by its CRC-16/X-25 (polynomial
  0x1021 reflected, initial value 0xFFFF, final XOR 0xFFFF), the CRC sent least significant byte
  first. The device's Trust Centre link key is the MMO hash of code and CRC together.
- **Matyas-Meyer-Oseas hash** (Annex B.6, AES-128, 16-byte blocks): the message is padded with a 1 bit
  and zero bits, then its length in bits, as 16 bits when it is shorter than 2^16 bits, else as 32 bits
  followed by 16 zero bits; Hash_0 is all zeros and Hash_j = E(Hash_{j-1}, M_j) XOR M_j.
- **Keyed hash** (Annex B.1.4, HMAC with the MMO hash, ipad 0x36, opad 0x5C): the key-transport key is
  the keyed hash of the link key and the one byte 0x00, the key-load key that of 0x02 (§4.5.3).
- **APS frame security** (§4.4.1, auxiliary header §4.5.1): security control byte (level 0 on air,
  key identifier, extended nonce bit), frame counter, source IEEE address when the nonce is extended,
  key sequence number when the key is the network key. AES-CCM* at level 5 (ENC-MIC-32): nonce = source
  IEEE + frame counter + security control with the level put back; associated data = APS header +
  auxiliary header (level put back); the APS payload (command identifier onwards) is encrypted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from testbeds.emulator.frames import ApsFrame, FrameError
from testbeds.emulator.security import SecurityError

__all__ = [
    "INSTALL_CODE_LENGTHS",
    "KEY_ID_DATA",
    "KEY_ID_KEY_LOAD",
    "KEY_ID_KEY_TRANSPORT",
    "KEY_ID_NETWORK",
    "ApsAuxHeader",
    "ApsOpened",
    "ApsSecurity",
    "InstallCodeError",
    "crc16_x25",
    "key_load_key",
    "key_transport_key",
    "keyed_hash",
    "link_key_from_install_code",
    "mmo_hash",
    "parse_aps_aux",
    "validate_install_code",
]

BLOCK = 16
INSTALL_CODE_LENGTHS = (6, 8, 12, 16)
"""Lengths of an install code without its 2-byte CRC (BDB §10.1)."""

# Key identifiers of the security control byte (§4.5.1.1.2).
KEY_ID_DATA, KEY_ID_NETWORK, KEY_ID_KEY_TRANSPORT, KEY_ID_KEY_LOAD = 0, 1, 2, 3
_EXTENDED_NONCE = 0x20
_LEVEL = 5
_MIC = 4
_AUX_FIXED = struct.Struct("<BI")  # security control, frame counter


class InstallCodeError(ValueError):
    """An install code of a length ZigBee does not define, or whose CRC does not match."""


# ------------------------------------------------------------------------------------ install codes
def crc16_x25(data: bytes) -> int:
    """The CRC-16/X-25 of ``data`` (check value 0x906E for b"123456789"), as install codes carry it."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def validate_install_code(code: bytes) -> bytes:
    """Check an install code written with its CRC (8, 10, 14 or 18 bytes); return it unchanged.

    Raises :class:`InstallCodeError` naming what is wrong (length, or the CRC found and expected).
    """
    if not isinstance(code, bytes | bytearray):
        raise InstallCodeError(f"an install code is bytes, not {type(code).__name__}")
    code = bytes(code)
    body = len(code) - 2
    if body not in INSTALL_CODE_LENGTHS:
        raise InstallCodeError(
            f"an install code has 6, 8, 12 or 16 bytes plus a 2-byte CRC; this one has {len(code)} bytes"
        )
    expected = crc16_x25(code[:body])
    found = code[body] | (code[body + 1] << 8)
    if found != expected:
        raise InstallCodeError(
            f"install code CRC is {code[body:].hex().upper()}, "
            f"the code's CRC-16/X-25 is {expected.to_bytes(2, 'little').hex().upper()}"
        )
    return code


def link_key_from_install_code(code: bytes) -> bytes:
    """The Trust Centre link key a device with this install code (CRC included) joins with."""
    return mmo_hash(validate_install_code(code))


# ---------------------------------------------------------------------------------- MMO, keyed hash
def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def mmo_hash(message: bytes) -> bytes:
    """The ZigBee cryptographic hash (AES-MMO, Annex B.6) of ``message``: 16 bytes."""
    bits = len(message) * 8
    padded = bytearray(message)
    padded.append(0x80)
    if bits < 1 << 16:
        while len(padded) % BLOCK != BLOCK - 2:
            padded.append(0)
        padded += struct.pack(">H", bits)
    else:
        # Longer messages carry a 32-bit length and 16 zero bits (B.6 step 1, second form).
        while len(padded) % BLOCK != BLOCK - 6:
            padded.append(0)
        padded += struct.pack(">I", bits) + b"\x00\x00"
    digest = bytes(BLOCK)
    for start in range(0, len(padded), BLOCK):
        block = bytes(padded[start : start + BLOCK])
        digest = bytes(a ^ b for a, b in zip(_aes_block(digest, block), block, strict=True))
    return digest


def keyed_hash(key: bytes, message: bytes) -> bytes:
    """HMAC with the MMO hash (Annex B.1.4): Hash((key ^ opad) || Hash((key ^ ipad) || message))."""
    if len(key) > BLOCK:
        key = mmo_hash(key)
    key = key.ljust(BLOCK, b"\x00")
    inner = mmo_hash(bytes(b ^ 0x36 for b in key) + message)
    return mmo_hash(bytes(b ^ 0x5C for b in key) + inner)


def key_transport_key(link_key: bytes) -> bytes:
    """The key that secures a Transport Key command sent under ``link_key`` (keyed hash of 0x00)."""
    return keyed_hash(link_key, b"\x00")


def key_load_key(link_key: bytes) -> bytes:
    """The key that secures a link key sent under ``link_key`` (keyed hash of 0x02)."""
    return keyed_hash(link_key, b"\x02")


# ------------------------------------------------------------------------------------- APS security
@dataclass(frozen=True, slots=True)
class ApsAuxHeader:
    """The auxiliary header of an APS-secured frame."""

    key_id: int
    frame_counter: int
    source_ieee: bytes | None
    key_sequence: int | None = None


@dataclass(frozen=True, slots=True)
class ApsOpened:
    """An APS-secured frame whose MIC checked out: its header, auxiliary header and plaintext payload."""

    frame: ApsFrame
    aux: ApsAuxHeader
    plaintext: bytes


def _aux_bytes(aux: ApsAuxHeader, level: int) -> bytes:
    control = level | (aux.key_id << 3)
    if aux.source_ieee is not None:
        control |= _EXTENDED_NONCE
    out = _AUX_FIXED.pack(control, aux.frame_counter)
    if aux.source_ieee is not None:
        out += aux.source_ieee
    if aux.key_id == KEY_ID_NETWORK:
        out += bytes([aux.key_sequence or 0])
    return out


def parse_aps_aux(payload: bytes) -> tuple[ApsAuxHeader, int]:
    """Read the auxiliary header at the start of a secured APS payload: (header, its length).

    Raises :class:`FrameError` when it is truncated or names a level other than 0 on air.
    """
    if len(payload) < _AUX_FIXED.size:
        raise FrameError(f"{len(payload)} bytes, the auxiliary header needs 5", "APS", "auxiliary header", 0)
    control, counter = _AUX_FIXED.unpack_from(payload)
    if control & 0x07:
        raise FrameError(f"security level {control & 7} on air (must be 0)", "APS", "security control", 0)
    if control & 0xC0:
        raise FrameError(f"reserved bits set in 0x{control:02X}", "APS", "security control", 0)
    key_id = (control >> 3) & 0x03
    at = _AUX_FIXED.size
    source = None
    if control & _EXTENDED_NONCE:
        if at + 8 > len(payload):
            raise FrameError("truncated", "APS", "auxiliary header source address", at)
        source = payload[at : at + 8]
        at += 8
    sequence = None
    if key_id == KEY_ID_NETWORK:
        if at >= len(payload):
            raise FrameError("truncated", "APS", "auxiliary header key sequence number", at)
        sequence = payload[at]
        at += 1
    return ApsAuxHeader(key_id, counter, source, sequence), at


class ApsSecurity:
    """Secure and check APS frames with one key (e.g. a key-transport key derived from a link key)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError(f"an APS key is 16 bytes, not {len(key)}")
        self._ccm = AESCCM(key, tag_length=_MIC)

    def protect(self, frame: ApsFrame, aux: ApsAuxHeader) -> bytes:
        """The APS frame on air: header with the security bit, auxiliary header, ciphertext, MIC.

        ``frame.payload`` is the plaintext (for a command, the command identifier onwards).
        ``aux.source_ieee`` must be given (this emulator always sends the extended nonce).
        """
        if aux.source_ieee is None or len(aux.source_ieee) != 8:
            raise ValueError("the APS auxiliary header needs the 8-byte source IEEE address")
        secured = ApsFrame(
            frame_type=frame.frame_type,
            delivery=frame.delivery,
            ack_request=frame.ack_request,
            dst_endpoint=frame.dst_endpoint,
            cluster=frame.cluster,
            profile=frame.profile,
            src_endpoint=frame.src_endpoint,
            counter=frame.counter,
            group=frame.group,
            security=True,
            ack_format=frame.ack_format,
            fragmentation=frame.fragmentation,
            block_number=frame.block_number,
            ack_bitfield=frame.ack_bitfield,
        )
        header = secured.header_bytes()
        aux_air = _aux_bytes(aux, 0)
        aux_full = _aux_bytes(aux, _LEVEL)
        nonce = aux.source_ieee + struct.pack("<IB", aux.frame_counter, aux_full[0])
        return header + aux_air + self._ccm.encrypt(nonce, frame.payload, header + aux_full)

    def unprotect(self, raw: bytes, *, source_ieee: bytes | None = None) -> ApsOpened:
        """Check and decrypt an APS-secured frame (the whole APDU).

        ``source_ieee`` is the sender's IEEE address, needed only when the frame does not carry it
        (no extended nonce). Raises :class:`FrameError` for a malformed frame and
        :class:`~testbeds.emulator.security.SecurityError` when the MIC does not verify.
        """
        frame = ApsFrame.decode(raw)
        if not frame.security:
            raise FrameError("frame is not secured", "APS", "frame control", 0)
        aux, length = parse_aps_aux(frame.payload)
        source = aux.source_ieee if aux.source_ieee is not None else source_ieee
        if source is None or len(source) != 8:
            raise SecurityError("no source IEEE address for the nonce")
        sealed = frame.payload[length:]
        if len(sealed) < _MIC:
            raise FrameError(f"{len(sealed)} bytes left, the MIC needs {_MIC}", "APS", "MIC", length)
        header = frame.header_bytes()
        aux_full = bytes([frame.payload[0] | _LEVEL]) + frame.payload[1:length]
        nonce = source + struct.pack("<IB", aux.frame_counter, aux_full[0])
        try:
            plaintext = self._ccm.decrypt(nonce, sealed, header + aux_full)
        except InvalidTag:
            raise SecurityError("APS MIC check failed (wrong key or altered frame)") from None
        return ApsOpened(frame, aux, plaintext)
