"""Byte codecs for the commands that join devices to the network and keep them on it.

Written from IEEE Std 802.15.4-2003 (7.2.2.1 beacon frame, 7.3.1 association request and response),
and the ZigBee Specification 05-3474 R22 (3.6.7 NWK beacon payload, 3.4.4 Leave, 3.4.6 Rejoin
Request, 3.4.7 Rejoin Response, 4.4.10 APS command frames: Transport Key, Update Device, Remove Device,
Tunnel). Payloads here start with the command identifier, as the MAC, NWK or APS payload does.

Every ``decode_*`` raises only :class:`~testbeds.emulator.frames.FrameError`, whatever the bytes.
IEEE addresses are 8 ``bytes`` in on-air (little-endian) order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from testbeds.emulator.frames import (
    MAC_CMD_ASSOCIATION_REQUEST,
    MAC_CMD_ASSOCIATION_RESPONSE,
    NWK_CMD_LEAVE,
    NWK_CMD_REJOIN_REQUEST,
    NWK_CMD_REJOIN_RESPONSE,
    FrameError,
)

__all__ = [
    "APS_CMD_REMOVE_DEVICE",
    "APS_CMD_TRANSPORT_KEY",
    "APS_CMD_TUNNEL",
    "APS_CMD_UPDATE_DEVICE",
    "ASSOCIATION_DENIED",
    "ASSOCIATION_SUCCESS",
    "KEY_TYPE_NETWORK",
    "KEY_TYPE_TC_LINK",
    "UPDATE_DEVICE_LEFT",
    "UPDATE_SECURED_REJOIN",
    "UPDATE_TC_REJOIN",
    "UPDATE_UNSECURED_JOIN",
    "Beacon",
    "Leave",
    "TransportKey",
    "UpdateDevice",
    "decode_association_request",
    "decode_association_response",
    "decode_beacon",
    "decode_leave",
    "decode_rejoin_request",
    "decode_rejoin_response",
    "decode_remove_device",
    "decode_transport_key",
    "decode_tunnel",
    "decode_update_device",
    "encode_association_request",
    "encode_association_response",
    "encode_beacon",
    "encode_leave",
    "encode_rejoin_request",
    "encode_rejoin_response",
    "encode_remove_device",
    "encode_transport_key",
    "encode_tunnel",
    "encode_update_device",
]

# 802.15.4-2003 Table 68: association status
ASSOCIATION_SUCCESS = 0x00
ASSOCIATION_AT_CAPACITY = 0x01
ASSOCIATION_DENIED = 0x02

# ZigBee Table 4-27: APS command identifiers
APS_CMD_TRANSPORT_KEY = 0x05
APS_CMD_UPDATE_DEVICE = 0x06
APS_CMD_REMOVE_DEVICE = 0x07
APS_CMD_TUNNEL = 0x0E

# Transport Key key types (Table 4-12)
KEY_TYPE_TC_LINK = 0x04
KEY_TYPE_NETWORK = 0x01

# Update Device status (Table 4-17)
UPDATE_SECURED_REJOIN = 0x00
UPDATE_UNSECURED_JOIN = 0x01
UPDATE_DEVICE_LEFT = 0x02
UPDATE_TC_REJOIN = 0x03

_ZIGBEE_PROTOCOL_ID = 0x00
_STACK_PROFILE_PRO = 2
_NWK_PROTOCOL_VERSION = 2
# superframe spec, GTS, pending addresses, protocol id, stack profile, depth/capacity, xPAN, tx offset,
# update id
_BEACON = struct.Struct("<HBBBBB8s3sB")
_LEAVE_REMOVE_CHILDREN = 0x80
_LEAVE_REQUEST = 0x40
_LEAVE_REJOIN = 0x20


def _need(payload: bytes, size: int, layer: str, what: str) -> None:
    if not isinstance(payload, bytes | bytearray):
        raise FrameError(f"expected bytes, got {type(payload).__name__}", layer, what)
    if len(payload) < size:
        raise FrameError(f"{len(payload)} bytes, needs {size}", layer, what, len(payload))


def _command(payload: bytes, command_id: int, size: int, layer: str, what: str) -> None:
    _need(payload, size, layer, what)
    if payload[0] != command_id:
        raise FrameError(f"command 0x{payload[0]:02X} is not 0x{command_id:02X}", layer, what, 0)


def _ieee(value: bytes, layer: str, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 8:
        raise FrameError(f"must be 8 bytes, got {value!r}", layer, what)
    return value


# ------------------------------------------------------------------------------------------ beacon
@dataclass(frozen=True, slots=True)
class Beacon:
    """What a router's beacon tells a device looking for a parent."""

    pan_coordinator: bool
    association_permit: bool
    router_capacity: bool
    end_device_capacity: bool
    depth: int
    extended_pan_id: bytes
    update_id: int = 0


def encode_beacon(beacon: Beacon) -> bytes:
    """The MAC payload of a ZigBee PRO beacon (non-beacon-enabled network, no GTS, nothing pending)."""
    superframe = 0x0FFF  # beacon order 15, superframe order 15, final CAP slot 15
    if beacon.pan_coordinator:
        superframe |= 0x4000
    if beacon.association_permit:
        superframe |= 0x8000
    if not 0 <= beacon.depth <= 15:
        raise FrameError(f"depth {beacon.depth} not in 0..15", "beacon", "depth")
    capacity = (beacon.depth << 3) | (0x04 if beacon.router_capacity else 0)
    capacity |= 0x80 if beacon.end_device_capacity else 0
    try:
        return _BEACON.pack(
            superframe,
            0,
            0,
            _ZIGBEE_PROTOCOL_ID,
            _STACK_PROFILE_PRO | (_NWK_PROTOCOL_VERSION << 4),
            capacity,
            _ieee(beacon.extended_pan_id, "beacon", "extended PAN ID"),
            b"\xff\xff\xff",
            beacon.update_id,
        )
    except struct.error as exc:
        raise FrameError(f"field out of range: {exc}", "beacon", "payload") from None


def decode_beacon(payload: bytes) -> Beacon:
    """Parse the MAC payload of a beacon; only ZigBee PRO beacons without GTS or pending addresses."""
    _need(payload, 4, "beacon", "superframe specification")
    superframe, gts, pending = struct.unpack_from("<HBB", payload)
    if gts & 0x07 or pending & 0x77:
        raise FrameError("GTS or pending address fields are not supported", "beacon", "GTS", 2)
    _need(payload, _BEACON.size, "beacon", "ZigBee beacon payload")
    _, _, _, protocol, stack, capacity, xpan, _tx, update = _BEACON.unpack_from(payload)
    if protocol != _ZIGBEE_PROTOCOL_ID or stack != _STACK_PROFILE_PRO | (_NWK_PROTOCOL_VERSION << 4):
        what = f"not a ZigBee PRO beacon (protocol {protocol}, stack 0x{stack:02X})"
        raise FrameError(what, "beacon", "protocol", 4)
    return Beacon(
        pan_coordinator=bool(superframe & 0x4000),
        association_permit=bool(superframe & 0x8000),
        router_capacity=bool(capacity & 0x04),
        end_device_capacity=bool(capacity & 0x80),
        depth=(capacity >> 3) & 0x0F,
        extended_pan_id=xpan,
        update_id=update,
    )


# ------------------------------------------------------------------------------------- association
def encode_association_request(capability: int) -> bytes:
    """MAC Association Request command payload (identifier, capability information)."""
    if not 0 <= capability <= 0xFF:
        raise FrameError(f"capability {capability} out of range", "MAC", "capability")
    return bytes([MAC_CMD_ASSOCIATION_REQUEST, capability])


def decode_association_request(payload: bytes) -> int:
    """The capability information of a MAC Association Request."""
    _command(payload, MAC_CMD_ASSOCIATION_REQUEST, 2, "MAC", "association request")
    return payload[1]


def encode_association_response(short_address: int, status: int) -> bytes:
    """MAC Association Response command payload (identifier, short address, status)."""
    try:
        return struct.pack("<BHB", MAC_CMD_ASSOCIATION_RESPONSE, short_address, status)
    except struct.error as exc:
        raise FrameError(f"field out of range: {exc}", "MAC", "association response") from None


def decode_association_response(payload: bytes) -> tuple[int, int]:
    """(short address, status) of a MAC Association Response."""
    _command(payload, MAC_CMD_ASSOCIATION_RESPONSE, 4, "MAC", "association response")
    _, short, status = struct.unpack_from("<BHB", payload)
    return short, status


# -------------------------------------------------------------------------------------------- NWK
def encode_rejoin_request(capability: int) -> bytes:
    """NWK Rejoin Request command payload (identifier, capability information)."""
    if not 0 <= capability <= 0xFF:
        raise FrameError(f"capability {capability} out of range", "NWK", "capability")
    return bytes([NWK_CMD_REJOIN_REQUEST, capability])


def decode_rejoin_request(payload: bytes) -> int:
    """The capability information of a NWK Rejoin Request."""
    _command(payload, NWK_CMD_REJOIN_REQUEST, 2, "NWK", "rejoin request")
    return payload[1]


def encode_rejoin_response(nwk: int, status: int) -> bytes:
    """NWK Rejoin Response command payload (identifier, network address, rejoin status)."""
    try:
        return struct.pack("<BHB", NWK_CMD_REJOIN_RESPONSE, nwk, status)
    except struct.error as exc:
        raise FrameError(f"field out of range: {exc}", "NWK", "rejoin response") from None


def decode_rejoin_response(payload: bytes) -> tuple[int, int]:
    """(network address, status) of a NWK Rejoin Response."""
    _command(payload, NWK_CMD_REJOIN_RESPONSE, 4, "NWK", "rejoin response")
    _, nwk, status = struct.unpack_from("<BHB", payload)
    return nwk, status


@dataclass(frozen=True, slots=True)
class Leave:
    """A NWK Leave command: ``request`` asks the receiver to leave; ``rejoin`` says to come back."""

    request: bool
    rejoin: bool
    remove_children: bool = False


def encode_leave(leave: Leave) -> bytes:
    """NWK Leave command payload (identifier, options)."""
    options = (_LEAVE_REQUEST if leave.request else 0) | (_LEAVE_REJOIN if leave.rejoin else 0)
    options |= _LEAVE_REMOVE_CHILDREN if leave.remove_children else 0
    return bytes([NWK_CMD_LEAVE, options])


def decode_leave(payload: bytes) -> Leave:
    """Parse a NWK Leave command payload."""
    _command(payload, NWK_CMD_LEAVE, 2, "NWK", "leave")
    options = payload[1]
    return Leave(
        request=bool(options & _LEAVE_REQUEST),
        rejoin=bool(options & _LEAVE_REJOIN),
        remove_children=bool(options & _LEAVE_REMOVE_CHILDREN),
    )


# -------------------------------------------------------------------------------------------- APS
@dataclass(frozen=True, slots=True)
class TransportKey:
    """An APS Transport Key command: a network key (with its sequence number) or a TC link key."""

    key_type: int
    key: bytes
    destination: bytes
    source: bytes
    key_sequence: int = 0


def encode_transport_key(tk: TransportKey) -> bytes:
    """APS Transport Key command payload (identifier onwards)."""
    if not isinstance(tk.key, bytes) or len(tk.key) != 16:
        raise FrameError("key must be 16 bytes", "APS", "transport key")
    dst = _ieee(tk.destination, "APS", "transport key destination")
    src = _ieee(tk.source, "APS", "transport key source")
    if tk.key_type == KEY_TYPE_NETWORK:
        if not 0 <= tk.key_sequence <= 0xFF:
            raise FrameError(f"key sequence {tk.key_sequence} out of range", "APS", "transport key")
        return bytes([APS_CMD_TRANSPORT_KEY, tk.key_type]) + tk.key + bytes([tk.key_sequence]) + dst + src
    if tk.key_type == KEY_TYPE_TC_LINK:
        return bytes([APS_CMD_TRANSPORT_KEY, tk.key_type]) + tk.key + dst + src
    raise FrameError(f"key type {tk.key_type} not supported", "APS", "transport key")


def decode_transport_key(payload: bytes) -> TransportKey:
    """Parse an APS Transport Key command (network key or TC link key)."""
    _command(payload, APS_CMD_TRANSPORT_KEY, 2, "APS", "transport key")
    key_type = payload[1]
    if key_type == KEY_TYPE_NETWORK:
        _need(payload, 35, "APS", "transport key (network key)")
        return TransportKey(key_type, payload[2:18], payload[19:27], payload[27:35], payload[18])
    if key_type == KEY_TYPE_TC_LINK:
        _need(payload, 34, "APS", "transport key (TC link key)")
        return TransportKey(key_type, payload[2:18], payload[18:26], payload[26:34])
    raise FrameError(f"key type 0x{key_type:02X} not supported", "APS", "transport key", 1)


@dataclass(frozen=True, slots=True)
class UpdateDevice:
    """An APS Update Device command: a router tells the Trust Centre a device joined, rejoined or left."""

    ieee: bytes
    nwk: int
    status: int


def encode_update_device(update: UpdateDevice) -> bytes:
    """APS Update Device command payload (identifier, IEEE, short address, status)."""
    try:
        ieee = _ieee(update.ieee, "APS", "update device")
        return struct.pack("<B8sHB", APS_CMD_UPDATE_DEVICE, ieee, update.nwk, update.status)
    except struct.error as exc:
        raise FrameError(f"field out of range: {exc}", "APS", "update device") from None


def decode_update_device(payload: bytes) -> UpdateDevice:
    """Parse an APS Update Device command."""
    _command(payload, APS_CMD_UPDATE_DEVICE, 12, "APS", "update device")
    _, ieee, nwk, status = struct.unpack_from("<B8sHB", payload)
    return UpdateDevice(ieee, nwk, status)


def encode_remove_device(target: bytes) -> bytes:
    """APS Remove Device command payload: the Trust Centre asks a parent to remove ``target``."""
    return bytes([APS_CMD_REMOVE_DEVICE]) + _ieee(target, "APS", "remove device")


def decode_remove_device(payload: bytes) -> bytes:
    """The IEEE address an APS Remove Device command names."""
    _command(payload, APS_CMD_REMOVE_DEVICE, 9, "APS", "remove device")
    return payload[1:9]


def encode_tunnel(destination: bytes, tunnelled_aps: bytes) -> bytes:
    """APS Tunnel command payload: destination IEEE and the whole (secured) APS frame to pass on."""
    if not tunnelled_aps:
        raise FrameError("nothing to tunnel", "APS", "tunnel")
    return bytes([APS_CMD_TUNNEL]) + _ieee(destination, "APS", "tunnel destination") + tunnelled_aps


def decode_tunnel(payload: bytes) -> tuple[bytes, bytes]:
    """(destination IEEE, tunnelled APS frame) of an APS Tunnel command."""
    _command(payload, APS_CMD_TUNNEL, 11, "APS", "tunnel")
    return payload[1:9], payload[9:]
