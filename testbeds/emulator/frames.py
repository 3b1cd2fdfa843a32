"""Byte codecs for the emulated radio stack: IEEE 802.15.4 MAC, ZigBee PRO NWK, APS and the ZCL header.

Written from the specifications (IEEE Std 802.15.4-2003 clause 7.2 "MAC frame formats"; ZigBee
Specification 05-3474 (R21/R22) clause 3.3 "NWK frame formats" and clause 2.2.5 "APS frame formats";
ZigBee Cluster Library 07-5123 clause 2.4 "General ZCL frame format"), not from another stack, so that
the emulator and the harness (which uses zigpy) cannot share a bug.

Why hand-written ``struct`` code: these codecs run for every frame on the simulated air, thousands of
times per second of wall time; zigpy's types are about 100x slower (``research/perf-limits.md``). So:
precompiled :class:`struct.Struct` objects, ``slots`` dataclasses, table look-ups instead of branches
where it helps, and no reflection or regular expressions per call.

Contract for every ``decode``: the only exception it raises is :class:`FrameError`, whatever the input
bytes; the message names the layer, the field and the byte offset. Encoders raise :class:`FrameError`
too when a field cannot be represented (out of range, wrong address length, inconsistent fields).
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

__all__ = [
    "APS_ACK",
    "APS_BROADCAST",
    "APS_COMMAND",
    "APS_DATA",
    "APS_GROUP",
    "APS_UNICAST",
    "BROADCAST_PAN",
    "BROADCAST_SHORT",
    "MAC_ACK",
    "MAC_BEACON",
    "MAC_CMD_ASSOCIATION_REQUEST",
    "MAC_CMD_ASSOCIATION_RESPONSE",
    "MAC_CMD_BEACON_REQUEST",
    "MAC_CMD_DATA_REQUEST",
    "MAC_CMD_DISASSOCIATION_NOTIFICATION",
    "MAC_CMD_ORPHAN_NOTIFICATION",
    "MAC_COMMAND",
    "MAC_DATA",
    "MAX_PSDU",
    "NWK_BROADCAST_ALL",
    "NWK_BROADCAST_ROUTERS",
    "NWK_BROADCAST_RX_ON",
    "NWK_COMMAND",
    "NWK_DATA",
    "NWK_PROTOCOL_VERSION",
    "ApsFrame",
    "FrameError",
    "MacFrame",
    "NwkFrame",
    "ZclFrame",
    "fcs",
    "mac_ack",
]


class FrameError(ValueError):
    """A frame that cannot be decoded (or encoded): the only exception the codecs raise.

    ``str(err)`` reads ``"<layer>: <field> at offset <n>: <message>"``; the parts are also kept as the
    attributes ``layer``, ``field``, ``offset`` and ``reason`` so callers (e.g. a ZCL Default Response
    with MALFORMED_COMMAND, or a timeline note) can use them without parsing text. ``FrameError("x")``
    with a message only is allowed too.
    """

    def __init__(self, message: str, layer: str = "", field: str = "", offset: int | None = None) -> None:
        self.reason = message
        self.layer = layer
        self.field = field
        self.offset = offset
        text = message
        if offset is not None:
            text = f"at offset {offset}: {text}"
        if field:
            text = f"{field} {text}" if offset is not None else f"{field}: {text}"
        if layer:
            text = f"{layer}: {text}"
        super().__init__(text)


# ---------------------------------------------------------------------------------------------------
# FCS (IEEE 802.15.4-2003 7.2.1.9): 16-bit ITU-T CRC, x^16 + x^12 + x^5 + 1, register initialised to
# 0, bits processed least significant first (the order they go on air), no final XOR. That is the
# catalogued CRC-16/KERMIT (check value 0x2189 for b"123456789").
#
# Why the bit-reverse trick: binascii.crc_hqx is the same polynomial in C, but MSB-first
# (CRC-16/XMODEM). A reflected CRC equals the bit-reversal of the non-reflected CRC computed over the
# bit-reversed input bytes. bytes.translate() reverses every byte in C, crc_hqx runs in C, and one
# table look-up per result byte reverses the 16-bit result: about 20x faster than a Python loop.
# ---------------------------------------------------------------------------------------------------
_BITREV = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def fcs(data: bytes) -> int:
    """Return the IEEE 802.15.4 FCS of ``data`` (CRC-16/KERMIT); sent little-endian after the MPDU."""
    crc = binascii.crc_hqx(data.translate(_BITREV), 0)
    return (_BITREV[crc & 0xFF] << 8) | _BITREV[crc >> 8]


def _fcs_ok(frame: bytes) -> bool:
    # A reflected CRC without final XOR has residue 0 over data + CRC (CRC appended LSB first), so
    # the whole PSDU can be checked without slicing the FCS off. Same reversed-domain trick as fcs().
    return binascii.crc_hqx(frame.translate(_BITREV), 0) == 0


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U8U8 = struct.Struct("<BB")

# ---------------------------------------------------------------------------------------------------
# MAC (IEEE 802.15.4-2003 7.2.1 "General MAC frame format")
# Frame control: b0-2 frame type, b3 security enabled, b4 frame pending, b5 ack request,
# b6 PAN ID compression ("intra-PAN" in 2003), b7-9 reserved, b10-11 destination addressing mode,
# b12-13 frame version, b14-15 source addressing mode. Addressing modes: 0 none, 1 reserved,
# 2 short (16-bit), 3 extended (64-bit). Then sequence number, dst PAN, dst address, src PAN (absent
# when compressed), src address, payload, FCS.
# ---------------------------------------------------------------------------------------------------
MAC_BEACON, MAC_DATA, MAC_ACK, MAC_COMMAND = 0, 1, 2, 3
MAC_CMD_ASSOCIATION_REQUEST = 0x01
MAC_CMD_ASSOCIATION_RESPONSE = 0x02
MAC_CMD_DISASSOCIATION_NOTIFICATION = 0x03
MAC_CMD_DATA_REQUEST = 0x04
MAC_CMD_ORPHAN_NOTIFICATION = 0x06
MAC_CMD_BEACON_REQUEST = 0x07
BROADCAST_SHORT = 0xFFFF
BROADCAST_PAN = 0xFFFF
MAX_PSDU = 127  # aMaxPHYPacketSize (6.4.1): MPDU including the FCS

_FC_SECURITY = 0x0008
_FC_PENDING = 0x0010
_FC_ACK_REQ = 0x0020
_FC_PANID_COMP = 0x0040
_FC_LAYOUT_MASK = 0xCC40  # dst mode, src mode, PAN ID compression: everything the layout depends on


def _mac_layouts() -> dict[int, tuple[struct.Struct, int, int, int, int]]:
    """Precompute, per (dst mode, src mode, compression), the header Struct and field positions.

    Positions index the unpacked tuple with a trailing ``None`` appended, so -1 means "absent".
    """
    layouts: dict[int, tuple[struct.Struct, int, int, int, int]] = {}
    for dmode in (0, 2, 3):
        for smode in (0, 2, 3):
            for comp in (0, 1):
                fmt = "<HB"  # frame control, sequence number
                pos = 2
                i_dpan = i_dst = i_span = i_src = -1
                if dmode:
                    fmt += "H" + ("H" if dmode == 2 else "8s")
                    i_dpan, i_dst = pos, pos + 1
                    pos += 2
                if smode:
                    # The compression bit only drops the source PAN when both addresses are present.
                    if not (comp and dmode):
                        fmt += "H"
                        i_span = pos
                        pos += 1
                    fmt += "H" if smode == 2 else "8s"
                    i_src = pos
                key = (dmode << 10) | (smode << 14) | (comp << 6)
                layouts[key] = (struct.Struct(fmt), i_dpan, i_dst, i_span, i_src)
    return layouts


_MAC_LAYOUTS = _mac_layouts()


def _addr_mode(addr: int | bytes | None, field: str) -> int:
    if addr is None:
        return 0
    if type(addr) is int:
        return 2
    if isinstance(addr, bytes) and len(addr) == 8:
        return 3
    raise FrameError(
        f"must be None, an int (short address) or 8 bytes (extended address), got {addr!r}", "MAC", field
    )


@dataclass(slots=True)
class MacFrame:
    """An IEEE 802.15.4 MAC frame (2003 format, frame version 0).

    Addresses: an ``int`` is a 16-bit short address, 8 ``bytes`` an extended address in on-air
    (little-endian) order, ``None`` absent. ``src_pan`` is ``None`` when PAN ID compression applies
    (both addresses present, source PAN equal to ``dst_pan``); use :attr:`source_pan` for the
    effective value. For ``MAC_COMMAND`` the payload starts with the command identifier.
    """

    frame_type: int
    seq: int
    dst_pan: int | None = None
    dst: int | bytes | None = None
    src_pan: int | None = None
    src: int | bytes | None = None
    ack_request: bool = False
    frame_pending: bool = False
    payload: bytes = b""

    @property
    def source_pan(self) -> int | None:
        """Source PAN identifier, taking PAN ID compression into account."""
        return self.dst_pan if self.src_pan is None and self.src is not None else self.src_pan

    @property
    def command_id(self) -> int | None:
        """MAC command identifier (first payload byte) for command frames, else ``None``."""
        if self.frame_type == MAC_COMMAND and self.payload:
            return self.payload[0]
        return None

    def encode(self) -> bytes:
        """Return the PSDU (MHR + payload + 2-byte FCS)."""
        ft = self.frame_type
        if type(ft) is not int or not 0 <= ft <= 3:
            raise FrameError(f"unsupported frame type {ft!r}", "MAC", "frame_type")
        dst, src = self.dst, self.src
        dmode = _addr_mode(dst, "dst")
        smode = _addr_mode(src, "src")
        dst_pan, src_pan = self.dst_pan, self.src_pan
        fc = ft
        if self.frame_pending:
            fc |= _FC_PENDING
        if self.ack_request:
            fc |= _FC_ACK_REQ
        fields: list[int | bytes] = []
        if dmode:
            if dst_pan is None:
                raise FrameError("dst_pan is required with a destination address", "MAC", "dst_pan")
            fields.append(dst_pan)
            fields.append(dst)  # type: ignore[arg-type]  # checked by _addr_mode
        elif dst_pan is not None:
            raise FrameError("dst_pan given without a destination address", "MAC", "dst_pan")
        if smode:
            if dmode and (src_pan is None or src_pan == dst_pan):
                fc |= _FC_PANID_COMP
            elif src_pan is None:
                raise FrameError("src_pan is required when there is no destination address", "MAC", "src_pan")
            else:
                fields.append(src_pan)
            fields.append(src)  # type: ignore[arg-type]
        elif src_pan is not None:
            raise FrameError("src_pan given without a source address", "MAC", "src_pan")
        if ft == MAC_COMMAND and not self.payload:
            raise FrameError("command frame needs a command identifier", "MAC", "payload")
        fc |= (dmode << 10) | (smode << 14)
        layout = _MAC_LAYOUTS[fc & _FC_LAYOUT_MASK]
        try:
            body = layout[0].pack(fc, self.seq, *fields) + self.payload
        except (struct.error, TypeError) as exc:
            raise FrameError(f"field out of range: {exc}", "MAC", "header") from None
        if len(body) + 2 > MAX_PSDU:
            raise FrameError(f"PSDU of {len(body) + 2} bytes exceeds {MAX_PSDU}", "MAC", "payload")
        return body + _U16.pack(fcs(body))

    @classmethod
    def decode(cls, raw: bytes, *, check_fcs: bool = True) -> MacFrame:
        """Parse a PSDU including its FCS.

        ``check_fcs=False`` skips the FCS check (the last two bytes are still taken as the FCS).
        """
        if type(raw) is not bytes:
            raw = bytes(raw)
        n = len(raw)
        if n < 5:
            raise FrameError(f"PSDU of {n} bytes is shorter than the 5-byte minimum", "MAC", "length", 0)
        if n > MAX_PSDU:
            raise FrameError(f"PSDU of {n} bytes exceeds {MAX_PSDU}", "MAC", "length", 0)
        if check_fcs and not _fcs_ok(raw):
            raise FrameError(
                f"bad FCS 0x{_U16.unpack_from(raw, n - 2)[0]:04x}, computed 0x{fcs(raw[:-2]):04x}",
                "MAC",
                "fcs",
                n - 2,
            )
        fc = raw[0] | (raw[1] << 8)
        ft = fc & 7
        if ft > 3:
            raise FrameError(f"reserved frame type {ft}", "MAC", "frame control", 0)
        if fc & _FC_SECURITY:
            raise FrameError("unsupported: MAC security enabled", "MAC", "frame control", 0)
        if fc & 0x2000:  # frame version 2 (802.15.4e/2015: IEs, different addressing rules)
            raise FrameError(f"unsupported frame version {(fc >> 12) & 3}", "MAC", "frame control", 1)
        layout = _MAC_LAYOUTS.get(fc & _FC_LAYOUT_MASK)
        if layout is None:
            raise FrameError("reserved addressing mode 1", "MAC", "frame control", 1)
        st, i_dpan, i_dst, i_span, i_src = layout
        hdr_len = st.size
        if hdr_len > n - 2:
            raise FrameError(
                f"header needs {hdr_len} bytes, only {n - 2} before the FCS", "MAC", "header", n - 2
            )
        vals = (*st.unpack_from(raw), None)
        payload = raw[hdr_len : n - 2]
        if ft == MAC_COMMAND and not payload:
            raise FrameError("command frame without a command identifier", "MAC", "command id", hdr_len)
        return cls(
            ft,
            vals[1],
            vals[i_dpan],
            vals[i_dst],
            vals[i_span],
            vals[i_src],
            bool(fc & _FC_ACK_REQ),
            bool(fc & _FC_PENDING),
            payload,
        )


def _build_acks() -> tuple[bytes, ...]:
    acks = []
    for pending in (0, 1):
        for seq in range(256):
            body = bytes((MAC_ACK | (pending << 4), 0, seq))
            acks.append(body + _U16.pack(fcs(body)))
    return tuple(acks)


# All 512 possible 2003-format acks, built once: an ack goes out for every acked frame.
_ACKS = _build_acks()


def mac_ack(seq: int, frame_pending: bool = False) -> bytes:
    """Return the 5-byte acknowledgment PSDU (FC, sequence number, FCS) for ``seq``."""
    if type(seq) is not int or not 0 <= seq <= 255:
        raise FrameError(f"sequence number {seq!r} out of range", "MAC", "seq")
    return _ACKS[(256 if frame_pending else 0) + seq]


# ---------------------------------------------------------------------------------------------------
# NWK (ZigBee Specification 3.3.1 "General NPDU frame format")
# Frame control: b0-1 frame type, b2-5 protocol version, b6-7 discover route, b8 multicast flag,
# b9 security, b10 source route, b11 destination IEEE address, b12 source IEEE address,
# b13 end device initiator, b14-15 reserved. Then destination (2), source (2), radius (1), sequence
# number (1), destination IEEE (8), source IEEE (8), multicast control (1), source route subframe
# (relay count, relay index, relay list of 2-byte addresses), then the payload (with security: the
# auxiliary header, the ciphertext and the MIC).
# ---------------------------------------------------------------------------------------------------
NWK_DATA, NWK_COMMAND = 0, 1
NWK_PROTOCOL_VERSION = 2  # ZigBee PRO (2007 onwards)
NWK_BROADCAST_ALL, NWK_BROADCAST_RX_ON, NWK_BROADCAST_ROUTERS = 0xFFFF, 0xFFFD, 0xFFFC
NWK_BROADCAST_LOW_POWER_ROUTERS = 0xFFFB

# NWK command identifiers (3.4, table 3.40), for frames of type NWK_COMMAND (first payload byte).
NWK_CMD_ROUTE_REQUEST = 0x01
NWK_CMD_ROUTE_REPLY = 0x02
NWK_CMD_NETWORK_STATUS = 0x03
NWK_CMD_LEAVE = 0x04
NWK_CMD_ROUTE_RECORD = 0x05
NWK_CMD_REJOIN_REQUEST = 0x06
NWK_CMD_REJOIN_RESPONSE = 0x07
NWK_CMD_LINK_STATUS = 0x08
NWK_CMD_NETWORK_REPORT = 0x09
NWK_CMD_NETWORK_UPDATE = 0x0A
NWK_CMD_END_DEVICE_TIMEOUT_REQUEST = 0x0B
NWK_CMD_END_DEVICE_TIMEOUT_RESPONSE = 0x0C

_NWK_FIXED = struct.Struct("<HHHBB")  # frame control, destination, source, radius, sequence number
_NWK_VERSION_BITS = NWK_PROTOCOL_VERSION << 2
_NWK_MULTICAST = 0x0100
_NWK_SECURITY = 0x0200
_NWK_SOURCE_ROUTE = 0x0400
_NWK_DST_IEEE = 0x0800
_NWK_SRC_IEEE = 0x1000
_NWK_EDI = 0x2000


@dataclass(slots=True)
class NwkFrame:
    """A ZigBee PRO NWK frame (protocol version 2).

    With ``security`` set, ``payload`` holds everything after the NWK header (auxiliary security
    header, encrypted payload, MIC) for the security layer; :meth:`header_bytes` gives the header,
    which is the CCM* associated data together with the auxiliary header. ``relays`` is the source
    route subframe's relay list (``None`` = no source route), ``multicast_control`` the raw multicast
    control byte (``None`` = not a multicast frame).
    """

    frame_type: int
    dst: int
    src: int
    radius: int
    seq: int
    discover_route: int = 0
    security: bool = False
    dst_ieee: bytes | None = None
    src_ieee: bytes | None = None
    payload: bytes = b""
    end_device_initiator: bool = False
    multicast_control: int | None = None
    relays: tuple[int, ...] | None = None
    relay_index: int = 0

    def header_bytes(self) -> bytes:
        """Return the NWK header exactly as :meth:`encode` puts it on air."""
        ft = self.frame_type
        if type(ft) is not int or not 0 <= ft <= 1:
            raise FrameError(f"unsupported frame type {ft!r}", "NWK", "frame_type")
        dr = self.discover_route
        if type(dr) is not int or not 0 <= dr <= 3:
            raise FrameError(f"discover_route {dr!r} out of range 0..3", "NWK", "discover_route")
        fc = ft | _NWK_VERSION_BITS | (dr << 6)
        if self.security:
            fc |= _NWK_SECURITY
        if self.end_device_initiator:
            fc |= _NWK_EDI
        dst_ieee, src_ieee = self.dst_ieee, self.src_ieee
        tail = b""
        if dst_ieee is not None:
            if not isinstance(dst_ieee, bytes) or len(dst_ieee) != 8:
                raise FrameError(f"must be 8 bytes, got {dst_ieee!r}", "NWK", "dst_ieee")
            fc |= _NWK_DST_IEEE
            tail = dst_ieee
        if src_ieee is not None:
            if not isinstance(src_ieee, bytes) or len(src_ieee) != 8:
                raise FrameError(f"must be 8 bytes, got {src_ieee!r}", "NWK", "src_ieee")
            fc |= _NWK_SRC_IEEE
            tail += src_ieee
        try:
            if self.multicast_control is not None:
                fc |= _NWK_MULTICAST
                tail += _U8.pack(self.multicast_control)
            relays = self.relays
            if relays is not None:
                fc |= _NWK_SOURCE_ROUTE
                tail += _U8U8.pack(len(relays), self.relay_index)
                tail += struct.pack(f"<{len(relays)}H", *relays)
            return _NWK_FIXED.pack(fc, self.dst, self.src, self.radius, self.seq) + tail
        except (struct.error, TypeError) as exc:
            raise FrameError(f"field out of range: {exc}", "NWK", "header") from None

    def encode(self) -> bytes:
        """Return the NPDU: header followed by the payload."""
        return self.header_bytes() + self.payload

    @classmethod
    def decode(cls, raw: bytes) -> NwkFrame:
        """Parse an NPDU (the MAC payload of a data frame)."""
        if type(raw) is not bytes:
            raw = bytes(raw)
        n = len(raw)
        if n < 8:
            raise FrameError(f"{n} bytes, the fixed header needs 8", "NWK", "header", 0)
        fc, dst, src, radius, seq = _NWK_FIXED.unpack_from(raw)
        ft = fc & 3
        if ft > 1:
            what = "inter-PAN" if ft == 3 else "reserved"
            raise FrameError(f"unsupported frame type {ft} ({what})", "NWK", "frame control", 0)
        version = (fc >> 2) & 0xF
        if version != NWK_PROTOCOL_VERSION:
            raise FrameError(f"unsupported protocol version {version}", "NWK", "frame control", 0)
        off = 8
        dst_ieee = src_ieee = None
        mcast = None
        relays = None
        relay_index = 0
        if fc & _NWK_DST_IEEE:
            if off + 8 > n:
                raise FrameError("truncated", "NWK", "destination IEEE address", off)
            dst_ieee = raw[off : off + 8]
            off += 8
        if fc & _NWK_SRC_IEEE:
            if off + 8 > n:
                raise FrameError("truncated", "NWK", "source IEEE address", off)
            src_ieee = raw[off : off + 8]
            off += 8
        if fc & _NWK_MULTICAST:
            if off + 1 > n:
                raise FrameError("truncated", "NWK", "multicast control", off)
            mcast = raw[off]
            off += 1
        if fc & _NWK_SOURCE_ROUTE:
            if off + 2 > n:
                raise FrameError("truncated", "NWK", "source route subframe", off)
            count, relay_index = raw[off], raw[off + 1]
            off += 2
            end = off + 2 * count
            if end > n:
                raise FrameError(f"relay list of {count} entries truncated", "NWK", "relay list", off)
            relays = struct.unpack_from(f"<{count}H", raw, off)
            off = end
        return cls(
            ft,
            dst,
            src,
            radius,
            seq,
            (fc >> 6) & 3,
            bool(fc & _NWK_SECURITY),
            dst_ieee,
            src_ieee,
            raw[off:],
            bool(fc & _NWK_EDI),
            mcast,
            relays,
            relay_index,
        )


# ---------------------------------------------------------------------------------------------------
# APS (ZigBee Specification 2.2.5.1 "General APDU frame format")
# Frame control: b0-1 frame type (0 data, 1 command, 2 ack, 3 inter-PAN), b2-3 delivery mode
# (0 unicast, 1 indirect (reserved since 2007), 2 broadcast, 3 group), b4 ack format (1 = ack of an APS
# command: no endpoint/cluster/profile fields), b5 security, b6 ack request, b7 extended header.
# Data frame: FC, dst endpoint (unicast/broadcast) or group address (group), cluster, profile,
# src endpoint, APS counter, [extended header], payload. Ack frame (ack format 0): the same addressing
# without the group address; ack format 1: FC, counter. Command frame: FC, counter, payload (command
# id first). Extended header (2.2.5.1.8): extended FC (b0-1 fragmentation: 0 none, 1 first,
# 2 subsequent), block number when fragmented, ack bitfield for fragmented ack frames.
# ---------------------------------------------------------------------------------------------------
APS_DATA, APS_COMMAND, APS_ACK = 0, 1, 2
APS_UNICAST, APS_BROADCAST, APS_GROUP = 0, 2, 3
_APS_INDIRECT = 1
_APS_ACK_FORMAT = 0x10
_APS_SECURITY = 0x20
_APS_ACK_REQ = 0x40
_APS_EXT_HDR = 0x80

_APS_EP_HDR = struct.Struct("<BBHHBB")  # FC, dst endpoint, cluster, profile, src endpoint, counter
_APS_GROUP_HDR = struct.Struct("<BHHHBB")  # FC, group address, cluster, profile, src endpoint, counter
_APS_SHORT_HDR = _U8U8  # FC, counter (commands, command acks)


@dataclass(slots=True)
class ApsFrame:
    """A ZigBee APS frame.

    ``security`` marks an APS-secured frame; ``payload`` then holds the auxiliary header, ciphertext
    and MIC, and :meth:`header_bytes` the associated data. ``ack_format`` selects the short ack of an
    APS command. ``fragmentation`` is ``None`` when there is no extended header, else 0 (none),
    1 (first block) or 2 (subsequent block), with ``block_number`` and, for acks, ``ack_bitfield``.
    """

    frame_type: int
    delivery: int = APS_UNICAST
    ack_request: bool = False
    dst_endpoint: int | None = None
    cluster: int | None = None
    profile: int | None = None
    src_endpoint: int | None = None
    counter: int = 0
    group: int | None = None
    payload: bytes = b""
    security: bool = False
    ack_format: bool = False
    fragmentation: int | None = None
    block_number: int = 0
    ack_bitfield: int = 0

    def header_bytes(self) -> bytes:
        """Return the APS header exactly as :meth:`encode` puts it on air."""
        ft = self.frame_type
        delivery = self.delivery
        if type(ft) is not int or not 0 <= ft <= 2:
            raise FrameError(f"unsupported frame type {ft!r}", "APS", "frame_type")
        if delivery not in (APS_UNICAST, APS_BROADCAST, APS_GROUP):
            raise FrameError(f"unsupported delivery mode {delivery!r}", "APS", "delivery")
        fc = ft | (delivery << 2)
        if self.security:
            fc |= _APS_SECURITY
        if self.ack_request:
            fc |= _APS_ACK_REQ
        frag = self.fragmentation
        if frag is not None:
            fc |= _APS_EXT_HDR
        try:
            if ft == APS_COMMAND:
                hdr = _APS_SHORT_HDR.pack(fc, self.counter)
            elif ft == APS_ACK and self.ack_format:
                hdr = _APS_SHORT_HDR.pack(fc | _APS_ACK_FORMAT, self.counter)
            elif delivery == APS_GROUP:
                if ft == APS_ACK:
                    raise FrameError("an ack cannot use group delivery", "APS", "delivery")
                hdr = _APS_GROUP_HDR.pack(
                    fc, self.group, self.cluster, self.profile, self.src_endpoint, self.counter
                )
            else:
                hdr = _APS_EP_HDR.pack(
                    fc, self.dst_endpoint, self.cluster, self.profile, self.src_endpoint, self.counter
                )
            if frag is not None:
                if frag == 0:
                    hdr += b"\x00"
                elif frag in (1, 2):
                    hdr += _U8U8.pack(frag, self.block_number)
                    if ft == APS_ACK:
                        hdr += _U8.pack(self.ack_bitfield)
                else:
                    raise FrameError(f"fragmentation {frag!r} not in 0..2", "APS", "fragmentation")
        except (struct.error, TypeError) as exc:
            raise FrameError(f"missing or out-of-range field: {exc}", "APS", "header") from None
        return hdr

    def encode(self) -> bytes:
        """Return the APDU: header followed by the payload (nothing follows an ack)."""
        return self.header_bytes() + self.payload

    @classmethod
    def decode(cls, raw: bytes) -> ApsFrame:
        """Parse an APDU (the NWK payload of a data frame)."""
        if type(raw) is not bytes:
            raw = bytes(raw)
        n = len(raw)
        if n < 2:
            raise FrameError(f"{n} bytes, the shortest APS frame has 2", "APS", "header", 0)
        fc = raw[0]
        ft = fc & 3
        delivery = (fc >> 2) & 3
        if ft == 3:
            raise FrameError("unsupported frame type 3 (inter-PAN)", "APS", "frame control", 0)
        if delivery == _APS_INDIRECT:
            raise FrameError("unsupported delivery mode 1 (indirect)", "APS", "frame control", 0)
        dst_ep = cluster = profile = src_ep = group = None
        ack_format = False
        if ft == APS_COMMAND or (ft == APS_ACK and fc & _APS_ACK_FORMAT):
            ack_format = ft == APS_ACK
            counter = raw[1]
            off = 2
        elif delivery == APS_GROUP:
            if ft == APS_ACK:
                raise FrameError("ack with group delivery", "APS", "frame control", 0)
            if n < 9:
                raise FrameError(f"{n} bytes, group data header needs 9", "APS", "header", 0)
            _, group, cluster, profile, src_ep, counter = _APS_GROUP_HDR.unpack_from(raw)
            off = 9
        else:
            if n < 8:
                raise FrameError(f"{n} bytes, data/ack header needs 8", "APS", "header", 0)
            _, dst_ep, cluster, profile, src_ep, counter = _APS_EP_HDR.unpack_from(raw)
            off = 8
        frag = None
        block = bitfield = 0
        if fc & _APS_EXT_HDR:
            if off >= n:
                raise FrameError("truncated", "APS", "extended frame control", off)
            ext = raw[off]
            frag = ext & 3
            off += 1
            if frag == 3:
                raise FrameError("reserved fragmentation value 3", "APS", "extended frame control", off - 1)
            if frag:
                need = 2 if ft == APS_ACK else 1
                if off + need > n:
                    raise FrameError("truncated", "APS", "block number", off)
                block = raw[off]
                if ft == APS_ACK:
                    bitfield = raw[off + 1]
                off += need
        return cls(
            ft,
            delivery,
            bool(fc & _APS_ACK_REQ),
            dst_ep,
            cluster,
            profile,
            src_ep,
            counter,
            group,
            raw[off:],
            bool(fc & _APS_SECURITY),
            ack_format,
            frag,
            block,
            bitfield,
        )


# ---------------------------------------------------------------------------------------------------
# ZCL (ZCL 2.4.1 "General ZCL frame format")
# Frame control: b0-1 frame type (0 global / profile-wide, 1 cluster specific), b2 manufacturer
# specific, b3 direction (1 = server to client), b4 disable default response, b5-7 reserved (ignored
# on receipt). Then manufacturer code (2, only if manufacturer specific), transaction sequence
# number, command identifier, payload.
# ---------------------------------------------------------------------------------------------------
_ZCL_CLUSTER_SPECIFIC = 0x01
_ZCL_MFR_SPECIFIC = 0x04
_ZCL_TO_CLIENT = 0x08
_ZCL_DISABLE_DEFAULT_RSP = 0x10
_ZCL_HDR = struct.Struct("<BBB")  # FC, TSN, command id
_ZCL_MFR_HDR = struct.Struct("<BHBB")  # FC, manufacturer code, TSN, command id


@dataclass(slots=True)
class ZclFrame:
    """A ZCL frame: header plus the command payload, left raw (see ``zcl_types`` for global commands)."""

    cluster_specific: bool
    command_id: int
    tsn: int
    to_client: bool = False
    disable_default_response: bool = False
    manufacturer_code: int | None = None
    payload: bytes = b""

    def encode(self) -> bytes:
        """Return the ZCL frame bytes (the APS payload)."""
        fc = _ZCL_CLUSTER_SPECIFIC if self.cluster_specific else 0
        if self.to_client:
            fc |= _ZCL_TO_CLIENT
        if self.disable_default_response:
            fc |= _ZCL_DISABLE_DEFAULT_RSP
        try:
            if self.manufacturer_code is None:
                return _ZCL_HDR.pack(fc, self.tsn, self.command_id) + self.payload
            return (
                _ZCL_MFR_HDR.pack(fc | _ZCL_MFR_SPECIFIC, self.manufacturer_code, self.tsn, self.command_id)
                + self.payload
            )
        except (struct.error, TypeError) as exc:
            raise FrameError(f"field out of range: {exc}", "ZCL", "header") from None

    @classmethod
    def decode(cls, raw: bytes) -> ZclFrame:
        """Parse a ZCL frame (the APS payload of a ZCL profile data frame)."""
        if type(raw) is not bytes:
            raw = bytes(raw)
        n = len(raw)
        if n < 3:
            raise FrameError(f"{n} bytes, the header needs 3", "ZCL", "header", 0)
        fc = raw[0]
        if fc & 0x02:
            raise FrameError(f"reserved frame type {fc & 3}", "ZCL", "frame control", 0)
        if fc & _ZCL_MFR_SPECIFIC:
            if n < 5:
                raise FrameError(f"{n} bytes, a manufacturer-specific header needs 5", "ZCL", "header", 0)
            _, mfr, tsn, cmd = _ZCL_MFR_HDR.unpack_from(raw)
            off = 5
        else:
            mfr = None
            tsn, cmd = raw[1], raw[2]
            off = 3
        return cls(
            bool(fc & _ZCL_CLUSTER_SPECIFIC),
            cmd,
            tsn,
            bool(fc & _ZCL_TO_CLIENT),
            bool(fc & _ZCL_DISABLE_DEFAULT_RSP),
            mfr,
            raw[off:],
        )
