"""ZigBee Device Object (ZDO / ZDP) messages the emulated devices send and answer.

Written from the ZigBee Specification 05-3474, clause 2.3.2 "Descriptors" (node descriptor 2.3.2.3,
simple descriptor 2.3.2.5) and clause 2.4 "ZigBee Device Profile" (requests 2.4.3, responses 2.4.4).
ZDO frames travel with APS profile 0x0000 on endpoint 0; each response's cluster id is the request's
with bit 15 set. Every ZDO payload starts with a 1-byte transaction sequence number (TSN), which the
response echoes. All multi-byte fields are little-endian; IEEE addresses are 8 ``bytes`` in on-air
order, as in :mod:`testbeds.emulator.frames`.

Decoders raise only :class:`~testbeds.emulator.frames.FrameError` (layer ``"ZDO"``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from testbeds.emulator.frames import FrameError

ZDO_PROFILE = 0x0000
ZDO_ENDPOINT = 0
RESPONSE = 0x8000  # response cluster id = request cluster id | RESPONSE

# Cluster ids (2.4.3 / 2.4.4)
NWK_ADDR_REQ = 0x0000
IEEE_ADDR_REQ = 0x0001
NODE_DESC_REQ = 0x0002
POWER_DESC_REQ = 0x0003
SIMPLE_DESC_REQ = 0x0004
ACTIVE_EP_REQ = 0x0005
MATCH_DESC_REQ = 0x0006
DEVICE_ANNCE = 0x0013
MGMT_LQI_REQ = 0x0031
MGMT_RTG_REQ = 0x0032
MGMT_LEAVE_REQ = 0x0034
MGMT_PERMIT_JOINING_REQ = 0x0036
NWK_ADDR_RSP = NWK_ADDR_REQ | RESPONSE
IEEE_ADDR_RSP = IEEE_ADDR_REQ | RESPONSE
NODE_DESC_RSP = NODE_DESC_REQ | RESPONSE
SIMPLE_DESC_RSP = SIMPLE_DESC_REQ | RESPONSE
ACTIVE_EP_RSP = ACTIVE_EP_REQ | RESPONSE
MATCH_DESC_RSP = MATCH_DESC_REQ | RESPONSE
MGMT_LQI_RSP = MGMT_LQI_REQ | RESPONSE
MGMT_LEAVE_RSP = MGMT_LEAVE_REQ | RESPONSE
MGMT_PERMIT_JOINING_RSP = MGMT_PERMIT_JOINING_REQ | RESPONSE

# ZDP status codes (2.4.5, table 2.138)
SUCCESS = 0x00
INV_REQUESTTYPE = 0x80
DEVICE_NOT_FOUND = 0x81
INVALID_EP = 0x82
NOT_ACTIVE = 0x83
NOT_SUPPORTED = 0x84
TIMEOUT = 0x85
NO_MATCH = 0x86
NO_ENTRY = 0x88
NO_DESCRIPTOR = 0x89
INSUFFICIENT_SPACE = 0x8A
NOT_PERMITTED = 0x8B
TABLE_FULL = 0x8C
NOT_AUTHORIZED = 0x8D

# NWK_addr_req / IEEE_addr_req request types (2.4.3.1.1)
REQUEST_SINGLE = 0x00
REQUEST_EXTENDED = 0x01

# Node descriptor: logical types (2.3.2.3.1)
LOGICAL_COORDINATOR = 0
LOGICAL_ROUTER = 1
LOGICAL_END_DEVICE = 2

# Node descriptor: frequency band field, 5 bits (2.3.2.3.5)
FREQ_BAND_868MHZ = 0x01
FREQ_BAND_902MHZ = 0x04
FREQ_BAND_2400MHZ = 0x08
FREQ_BAND_EU_SUB_GHZ = 0x10

# MAC capability flags (2.3.2.3.6; same bits as the 802.15.4 capability information field)
CAP_ALTERNATE_PAN_COORDINATOR = 0x01
CAP_FFD = 0x02  # device type: full-function device
CAP_MAINS_POWER = 0x04  # power source: mains
CAP_RX_ON_WHEN_IDLE = 0x08
CAP_SECURITY = 0x40
CAP_ALLOCATE_ADDRESS = 0x80

# Server mask (2.3.2.3.10): bits 0-6 server roles, bits 9-15 stack compliance revision
SERVER_PRIMARY_TRUST_CENTER = 0x0001
SERVER_BACKUP_TRUST_CENTER = 0x0002
SERVER_NETWORK_MANAGER = 0x0040
STACK_COMPLIANCE_REVISION_SHIFT = 9

# Mgmt_Lqi_rsp neighbour record fields (2.4.4.3.2, table 2.126)
NEIGHBOUR_COORDINATOR, NEIGHBOUR_ROUTER, NEIGHBOUR_END_DEVICE, NEIGHBOUR_UNKNOWN = 0, 1, 2, 3
RELATION_PARENT, RELATION_CHILD, RELATION_SIBLING, RELATION_NONE, RELATION_PREVIOUS_CHILD = 0, 1, 2, 3, 4

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_TSN_NWK = struct.Struct("<BH")
_TSN_NWK_EP = struct.Struct("<BHB")
_TSN_STATUS_NWK = struct.Struct("<BBH")
_TSN_STATUS_NWK_LEN = struct.Struct("<BBHB")
_ADDR_RSP = struct.Struct("<BB8sH")  # TSN, status, IEEE address, NWK address
_NWK_ADDR_REQ = struct.Struct("<B8sBB")  # TSN, IEEE address, request type, start index
_IEEE_ADDR_REQ = struct.Struct("<BHBB")  # TSN, NWK address, request type, start index
_DEVICE_ANNCE = struct.Struct("<BH8sB")  # TSN, NWK address, IEEE address, capability
_NODE_DESC = struct.Struct("<BBBHBHHHB")  # 13 bytes, 2.3.2.3
_SIMPLE_DESC_HEAD = struct.Struct("<BHHB")  # endpoint, profile, device id, version (+ reserved bits)
_MGMT_LQI_HEAD = struct.Struct("<BBBBB")  # TSN, status, table entries, start index, list count
_NEIGHBOUR = struct.Struct("<8s8sHBBBB")  # 22 bytes
_MGMT_LEAVE_REQ = struct.Struct("<B8sB")  # TSN, device address, flags
_MATCH_HEAD = struct.Struct("<BHH")  # TSN, NWK address of interest, profile
_TSN_STATUS = struct.Struct("<BB")


def _err(message: str, field: str, offset: int | None = None) -> FrameError:
    return FrameError(message, "ZDO", field, offset)


def _need(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise _err(f"{len(payload)} bytes, needs {size}", what, len(payload))


def _ieee(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 8:
        raise _err(f"IEEE address must be 8 bytes, got {value!r}", what)
    return value


def _pack(st: struct.Struct, what: str, *values: object) -> bytes:
    try:
        return st.pack(*values)
    except (struct.error, TypeError) as exc:
        raise _err(f"field out of range: {exc}", what) from None


def _u16_list(values: Sequence[int], what: str) -> bytes:
    try:
        return b"".join([_U16.pack(v) for v in values])
    except (struct.error, TypeError) as exc:
        raise _err(f"bad 16-bit list entry: {exc}", what) from None


def decode_tsn(payload: bytes) -> int:
    """Return the transaction sequence number that starts every ZDO payload."""
    _need(payload, 1, "tsn")
    return payload[0]


# ---------------------------------------------------------------------------------------------------
# Descriptors
# ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class NodeDescriptor:
    """Node descriptor (2.3.2.3): 13 bytes describing the node's type and capabilities.

    ``frequency_band`` is the 5-bit band field (``FREQ_BAND_2400MHZ`` = 2.4 GHz);
    ``mac_capability_flags`` uses the ``CAP_*`` bits; ``server_mask`` the ``SERVER_*`` bits plus the
    stack compliance revision in bits 9-15.
    """

    logical_type: int
    frequency_band: int = FREQ_BAND_2400MHZ
    mac_capability_flags: int = 0
    manufacturer_code: int = 0
    max_buffer_size: int = 82
    max_incoming_transfer_size: int = 82
    server_mask: int = 22 << STACK_COMPLIANCE_REVISION_SHIFT  # revision 22 (R22), no server roles
    max_outgoing_transfer_size: int = 82
    descriptor_capability: int = 0
    complex_descriptor_available: bool = False
    user_descriptor_available: bool = False
    aps_flags: int = 0

    SIZE = 13  # not a dataclass field: class constant

    def encode(self) -> bytes:
        """Return the 13-byte descriptor."""
        lt = self.logical_type
        if type(lt) is not int or not 0 <= lt <= 7:
            raise _err(f"logical type {lt!r} out of range 0..7", "logical_type")
        if not 0 <= self.frequency_band <= 0x1F or not 0 <= self.aps_flags <= 7:
            raise _err("frequency band (5 bits) or APS flags (3 bits) out of range", "frequency_band")
        b0 = (
            lt
            | (0x08 if self.complex_descriptor_available else 0)
            | (0x10 if self.user_descriptor_available else 0)
        )
        b1 = self.aps_flags | (self.frequency_band << 3)
        return _pack(
            _NODE_DESC,
            "node descriptor",
            b0,
            b1,
            self.mac_capability_flags,
            self.manufacturer_code,
            self.max_buffer_size,
            self.max_incoming_transfer_size,
            self.server_mask,
            self.max_outgoing_transfer_size,
            self.descriptor_capability,
        )

    @classmethod
    def decode(cls, data: bytes, offset: int = 0) -> NodeDescriptor:
        """Parse a node descriptor starting at ``offset``."""
        if offset < 0 or len(data) < offset + 13:
            raise _err(
                f"needs 13 bytes at offset {offset}, have {max(0, len(data) - offset)}", "node descriptor"
            )
        b0, b1, cap, mfr, buf, inc, server, out, dcap = _NODE_DESC.unpack_from(data, offset)
        return cls(
            b0 & 7,
            b1 >> 3,
            cap,
            mfr,
            buf,
            inc,
            server,
            out,
            dcap,
            bool(b0 & 0x08),
            bool(b0 & 0x10),
            b1 & 7,
        )


@dataclass(slots=True)
class SimpleDescriptor:
    """Simple descriptor (2.3.2.5): one endpoint's profile, device id/version and cluster lists."""

    endpoint: int
    profile: int
    device_type: int
    device_version: int = 0
    input_clusters: list[int] = field(default_factory=list)
    output_clusters: list[int] = field(default_factory=list)

    def encode(self) -> bytes:
        """Return the descriptor bytes (8 + 2 per cluster)."""
        ins, outs = self.input_clusters, self.output_clusters
        if len(ins) > 255 or len(outs) > 255:
            raise _err("more than 255 clusters in a list", "cluster list")
        if not 0 <= self.device_version <= 0x0F:
            raise _err(f"device version {self.device_version} out of range 0..15", "device_version")
        return (
            _pack(
                _SIMPLE_DESC_HEAD,
                "simple descriptor",
                self.endpoint,
                self.profile,
                self.device_type,
                self.device_version,
            )
            + bytes((len(ins),))
            + _u16_list(ins, "input clusters")
            + bytes((len(outs),))
            + _u16_list(outs, "output clusters")
        )

    @classmethod
    def decode(cls, data: bytes, offset: int = 0) -> SimpleDescriptor:
        """Parse a simple descriptor starting at ``offset`` (it must fit inside ``data``)."""
        return cls.decode_from(data, offset)[0]

    @classmethod
    def decode_from(cls, data: bytes, offset: int = 0) -> tuple[SimpleDescriptor, int]:
        """Parse a simple descriptor at ``offset``; return it and the offset just past it."""
        n = len(data)
        if offset < 0 or offset + 8 > n:
            raise _err("truncated header", "simple descriptor", offset)
        ep, profile, device, version = _SIMPLE_DESC_HEAD.unpack_from(data, offset)
        off = offset + 6
        lists: list[list[int]] = []
        for what in ("input cluster count", "output cluster count"):
            if off >= n:
                raise _err("truncated", what, off)
            count = data[off]
            off += 1
            end = off + 2 * count
            if end > n:
                raise _err(f"{count} clusters do not fit", what, off - 1)
            lists.append([c for (c,) in _U16.iter_unpack(data[off:end])])
            off = end
        return cls(ep, profile, device, version & 0x0F, lists[0], lists[1]), off


@dataclass(slots=True)
class Neighbour:
    """One Mgmt_Lqi_rsp neighbour table record (2.4.4.3.2): 22 bytes on air.

    ``device_type`` NEIGHBOUR_COORDINATOR/ROUTER/END_DEVICE/UNKNOWN; ``rx_on_when_idle`` 0 off,
    1 on, 2 unknown; ``relationship`` RELATION_*; ``permit_joining`` 0 no, 1 yes, 2 unknown.
    """

    extended_pan_id: bytes
    ieee: bytes
    nwk: int
    device_type: int = NEIGHBOUR_ROUTER
    rx_on_when_idle: int = 1
    relationship: int = RELATION_SIBLING
    permit_joining: int = 2
    depth: int = 1
    lqi: int = 255

    SIZE = 22  # class constant, not a field

    def encode(self) -> bytes:
        """Return the 22-byte record."""
        _ieee(self.extended_pan_id, "extended_pan_id")
        _ieee(self.ieee, "ieee")
        if not (
            0 <= self.device_type <= 3 and 0 <= self.rx_on_when_idle <= 3 and 0 <= self.relationship <= 7
        ):
            raise _err("device type / rx on when idle / relationship out of range", "neighbour")
        if not 0 <= self.permit_joining <= 3:
            raise _err(f"permit joining {self.permit_joining} out of range 0..3", "neighbour")
        # byte 18: b0-1 device type, b2-3 RxOnWhenIdle, b4-6 relationship, b7 reserved
        # byte 19: b0-1 permit joining, b2-7 reserved
        flags = self.device_type | (self.rx_on_when_idle << 2) | (self.relationship << 4)
        return _pack(
            _NEIGHBOUR,
            "neighbour",
            self.extended_pan_id,
            self.ieee,
            self.nwk,
            flags,
            self.permit_joining,
            self.depth,
            self.lqi,
        )

    @classmethod
    def decode(cls, data: bytes, offset: int = 0) -> Neighbour:
        """Parse a 22-byte neighbour record at ``offset``."""
        if offset < 0 or offset + 22 > len(data):
            raise _err("truncated neighbour record", "neighbour", offset)
        epid, ieee, nwk, flags, pj, depth, lqi = _NEIGHBOUR.unpack_from(data, offset)
        return cls(epid, ieee, nwk, flags & 3, (flags >> 2) & 3, (flags >> 4) & 7, pj & 3, depth, lqi)


# ---------------------------------------------------------------------------------------------------
# Address requests / responses (2.4.3.1.1-2, 2.4.4.2.1-2)
# ---------------------------------------------------------------------------------------------------


def encode_nwk_addr_req(
    tsn: int, ieee: bytes, request_type: int = REQUEST_SINGLE, start_index: int = 0
) -> bytes:
    """Encode NWK_addr_req: who has this IEEE address?"""
    return _pack(_NWK_ADDR_REQ, "NWK_addr_req", tsn, _ieee(ieee, "ieee"), request_type, start_index)


def decode_nwk_addr_req(payload: bytes) -> tuple[int, bytes, int, int]:
    """Decode NWK_addr_req into ``(tsn, ieee, request_type, start_index)``."""
    _need(payload, 11, "NWK_addr_req")
    tsn, ieee, rtype, start = _NWK_ADDR_REQ.unpack_from(payload)
    return tsn, ieee, rtype, start


def encode_ieee_addr_req(
    tsn: int, nwk: int, request_type: int = REQUEST_SINGLE, start_index: int = 0
) -> bytes:
    """Encode IEEE_addr_req: what is the IEEE address of this NWK address?"""
    return _pack(_IEEE_ADDR_REQ, "IEEE_addr_req", tsn, nwk, request_type, start_index)


def decode_ieee_addr_req(payload: bytes) -> tuple[int, int, int, int]:
    """Decode IEEE_addr_req into ``(tsn, nwk, request_type, start_index)``."""
    _need(payload, 5, "IEEE_addr_req")
    tsn, nwk, rtype, start = _IEEE_ADDR_REQ.unpack_from(payload)
    return tsn, nwk, rtype, start


def _encode_addr_rsp(
    what: str,
    tsn: int,
    status: int,
    ieee: bytes,
    nwk: int,
    associated: Sequence[int] | None,
    start_index: int,
) -> bytes:
    out = _pack(_ADDR_RSP, what, tsn, status, _ieee(ieee, "ieee"), nwk)
    if associated is None:
        return out
    # Extended response: NumAssocDev, then StartIndex and the list only when there are any (2.4.4.2.1.1).
    if len(associated) > 255:
        raise _err("more than 255 associated devices", what)
    out += bytes((len(associated),))
    if associated:
        out += _pack(_U8, what, start_index) + _u16_list(associated, what)
    return out


def encode_nwk_addr_rsp(
    tsn: int,
    status: int,
    ieee: bytes,
    nwk: int,
    associated: Sequence[int] | None = None,
    start_index: int = 0,
) -> bytes:
    """Encode NWK_addr_rsp; ``associated`` (children's NWK addresses) only for an extended request."""
    return _encode_addr_rsp("NWK_addr_rsp", tsn, status, ieee, nwk, associated, start_index)


def encode_ieee_addr_rsp(
    tsn: int,
    status: int,
    ieee: bytes,
    nwk: int,
    associated: Sequence[int] | None = None,
    start_index: int = 0,
) -> bytes:
    """Encode IEEE_addr_rsp (same layout as NWK_addr_rsp)."""
    return _encode_addr_rsp("IEEE_addr_rsp", tsn, status, ieee, nwk, associated, start_index)


def decode_addr_rsp(payload: bytes) -> tuple[int, int, bytes, int, list[int] | None, int]:
    """Decode NWK_addr_rsp or IEEE_addr_rsp.

    Returns ``(tsn, status, ieee, nwk, associated, start_index)``; ``associated`` is ``None`` for a
    single-device response.
    """
    _need(payload, 12, "address response")
    tsn, status, ieee, nwk = _ADDR_RSP.unpack_from(payload)
    n = len(payload)
    if n == 12:
        return tsn, status, ieee, nwk, None, 0
    count = payload[12]
    if count == 0:
        return tsn, status, ieee, nwk, [], 0
    end = 14 + 2 * count
    if n < end:
        raise _err(f"{count} associated devices do not fit", "associated device list", 12)
    return tsn, status, ieee, nwk, [a for (a,) in _U16.iter_unpack(payload[14:end])], payload[13]


# ---------------------------------------------------------------------------------------------------
# Node / simple / active endpoint descriptors (2.4.3.1.3-6, 2.4.4.2.3-6)
# ---------------------------------------------------------------------------------------------------


def encode_nwk_addr_of_interest(tsn: int, nwk: int) -> bytes:
    """Encode a request that carries only NWKAddrOfInterest (Node_Desc_req, Active_EP_req, ...)."""
    return _pack(_TSN_NWK, "NWKAddrOfInterest", tsn, nwk)


def decode_nwk_addr_of_interest(payload: bytes) -> tuple[int, int]:
    """Decode Node_Desc_req / Power_Desc_req / Active_EP_req into ``(tsn, nwk_addr_of_interest)``."""
    _need(payload, 3, "NWKAddrOfInterest")
    tsn, nwk = _TSN_NWK.unpack_from(payload)
    return tsn, nwk


def encode_simple_desc_req(tsn: int, nwk: int, endpoint: int) -> bytes:
    """Encode Simple_Desc_req."""
    return _pack(_TSN_NWK_EP, "Simple_Desc_req", tsn, nwk, endpoint)


def decode_simple_desc_req(payload: bytes) -> tuple[int, int, int]:
    """Decode Simple_Desc_req into ``(tsn, nwk, endpoint)``."""
    _need(payload, 4, "Simple_Desc_req")
    tsn, nwk, ep = _TSN_NWK_EP.unpack_from(payload)
    return tsn, nwk, ep


def encode_node_desc_rsp(tsn: int, status: int, nwk: int, desc: NodeDescriptor | None) -> bytes:
    """Encode Node_Desc_rsp; the descriptor is included only with status SUCCESS."""
    head = _pack(_TSN_STATUS_NWK, "Node_Desc_rsp", tsn, status, nwk)
    if status != SUCCESS:
        return head
    if desc is None:
        raise _err("SUCCESS needs a node descriptor", "Node_Desc_rsp")
    return head + desc.encode()


def decode_node_desc_rsp(payload: bytes) -> tuple[int, int, int, NodeDescriptor | None]:
    """Decode Node_Desc_rsp into ``(tsn, status, nwk, descriptor or None)``."""
    _need(payload, 4, "Node_Desc_rsp")
    tsn, status, nwk = _TSN_STATUS_NWK.unpack_from(payload)
    if status != SUCCESS:
        return tsn, status, nwk, None
    return tsn, status, nwk, NodeDescriptor.decode(payload, 4)


def encode_simple_desc_rsp(tsn: int, status: int, nwk: int, sd: SimpleDescriptor | None) -> bytes:
    """Encode Simple_Desc_rsp: status, NWK address, length, then the descriptor (SUCCESS only)."""
    if status != SUCCESS:
        return _pack(_TSN_STATUS_NWK_LEN, "Simple_Desc_rsp", tsn, status, nwk, 0)
    if sd is None:
        raise _err("SUCCESS needs a simple descriptor", "Simple_Desc_rsp")
    body = sd.encode()
    if len(body) > 255:
        raise _err(f"descriptor of {len(body)} bytes exceeds 255", "Simple_Desc_rsp")
    return _pack(_TSN_STATUS_NWK_LEN, "Simple_Desc_rsp", tsn, status, nwk, len(body)) + body


def decode_simple_desc_rsp(payload: bytes) -> tuple[int, int, int, SimpleDescriptor | None]:
    """Decode Simple_Desc_rsp into ``(tsn, status, nwk, descriptor or None)``."""
    _need(payload, 4, "Simple_Desc_rsp")
    tsn, status, nwk = _TSN_STATUS_NWK.unpack_from(payload)
    if status != SUCCESS:
        return tsn, status, nwk, None
    _need(payload, 5, "Simple_Desc_rsp length")
    length = payload[4]
    if 5 + length > len(payload):
        raise _err(f"length {length} runs past the end", "Simple_Desc_rsp length", 4)
    sd, end = SimpleDescriptor.decode_from(payload[: 5 + length], 5)
    if end != 5 + length:
        raise _err(f"length {length} but the descriptor has {end - 5} bytes", "Simple_Desc_rsp length", 4)
    return tsn, status, nwk, sd


def encode_active_ep_rsp(tsn: int, status: int, nwk: int, endpoints: Sequence[int]) -> bytes:
    """Encode Active_EP_rsp: status, NWK address, count, endpoint list (empty unless SUCCESS)."""
    eps = bytes(endpoints) if status == SUCCESS else b""
    if len(eps) > 255:
        raise _err("more than 255 endpoints", "Active_EP_rsp")
    return _pack(_TSN_STATUS_NWK_LEN, "Active_EP_rsp", tsn, status, nwk, len(eps)) + eps


def decode_active_ep_rsp(payload: bytes) -> tuple[int, int, int, list[int]]:
    """Decode Active_EP_rsp into ``(tsn, status, nwk, endpoints)``."""
    _need(payload, 5, "Active_EP_rsp")
    tsn, status, nwk, count = _TSN_STATUS_NWK_LEN.unpack_from(payload)
    if 5 + count > len(payload):
        raise _err(f"{count} endpoints do not fit", "Active_EP_rsp count", 4)
    return tsn, status, nwk, list(payload[5 : 5 + count])


def encode_match_desc_req(
    tsn: int, nwk: int, profile: int, input_clusters: Sequence[int], output_clusters: Sequence[int]
) -> bytes:
    """Encode Match_Desc_req (how an OTA client finds the OTA server: output cluster 0x0019)."""
    if len(input_clusters) > 255 or len(output_clusters) > 255:
        raise _err("more than 255 clusters in a list", "Match_Desc_req")
    return (
        _pack(_MATCH_HEAD, "Match_Desc_req", tsn, nwk, profile)
        + bytes((len(input_clusters),))
        + _u16_list(input_clusters, "Match_Desc_req")
        + bytes((len(output_clusters),))
        + _u16_list(output_clusters, "Match_Desc_req")
    )


def decode_match_desc_req(payload: bytes) -> tuple[int, int, int, list[int], list[int]]:
    """Decode Match_Desc_req into ``(tsn, nwk, profile, input_clusters, output_clusters)``."""
    _need(payload, 7, "Match_Desc_req")
    tsn, nwk, profile = _MATCH_HEAD.unpack_from(payload)
    off = 5
    lists: list[list[int]] = []
    n = len(payload)
    for what in ("input cluster count", "output cluster count"):
        if off >= n:
            raise _err("truncated", what, off)
        count = payload[off]
        end = off + 1 + 2 * count
        if end > n:
            raise _err(f"{count} clusters do not fit", what, off)
        lists.append([c for (c,) in _U16.iter_unpack(payload[off + 1 : end])])
        off = end
    return tsn, nwk, profile, lists[0], lists[1]


def encode_match_desc_rsp(tsn: int, status: int, nwk: int, endpoints: Sequence[int]) -> bytes:
    """Encode Match_Desc_rsp: status, NWK address, match count, matching endpoints."""
    return encode_active_ep_rsp(tsn, status, nwk, endpoints)


decode_match_desc_rsp = decode_active_ep_rsp  # same layout: (tsn, status, nwk, endpoints)


# ---------------------------------------------------------------------------------------------------
# Device_annce (2.4.3.1.11)
# ---------------------------------------------------------------------------------------------------


def encode_device_annce(tsn: int, nwk: int, ieee_bytes: bytes, capability: int) -> bytes:
    """Encode Device_annce: NWK address, IEEE address, MAC capability flags."""
    return _pack(_DEVICE_ANNCE, "Device_annce", tsn, nwk, _ieee(ieee_bytes, "ieee"), capability)


def decode_device_annce(payload: bytes) -> tuple[int, int, bytes, int]:
    """Decode Device_annce into ``(tsn, nwk, ieee, capability)``."""
    _need(payload, 12, "Device_annce")
    tsn, nwk, ieee, cap = _DEVICE_ANNCE.unpack_from(payload)
    return tsn, nwk, ieee, cap


# ---------------------------------------------------------------------------------------------------
# Management (2.4.3.3, 2.4.4.3)
# ---------------------------------------------------------------------------------------------------


def encode_mgmt_lqi_req(tsn: int, start_index: int) -> bytes:
    """Encode Mgmt_Lqi_req."""
    return _pack(_TSN_STATUS, "Mgmt_Lqi_req", tsn, start_index)


def decode_mgmt_lqi_req(payload: bytes) -> tuple[int, int]:
    """Decode Mgmt_Lqi_req into ``(tsn, start_index)``."""
    _need(payload, 2, "Mgmt_Lqi_req")
    return payload[0], payload[1]


def encode_mgmt_lqi_rsp(
    tsn: int, status: int, total: int, start: int, neighbours: Sequence[Neighbour]
) -> bytes:
    """Encode Mgmt_Lqi_rsp: ``total`` table entries, records from index ``start`` (22 bytes each)."""
    if len(neighbours) > 255:
        raise _err("more than 255 neighbour records", "Mgmt_Lqi_rsp")
    if status != SUCCESS:
        return _pack(_TSN_STATUS, "Mgmt_Lqi_rsp", tsn, status)
    head = _pack(_MGMT_LQI_HEAD, "Mgmt_Lqi_rsp", tsn, status, total, start, len(neighbours))
    return head + b"".join([nb.encode() for nb in neighbours])


def decode_mgmt_lqi_rsp(payload: bytes) -> tuple[int, int, int, int, list[Neighbour]]:
    """Decode Mgmt_Lqi_rsp into ``(tsn, status, total, start, neighbours)``."""
    _need(payload, 2, "Mgmt_Lqi_rsp")
    if payload[1] != SUCCESS:
        return payload[0], payload[1], 0, 0, []
    _need(payload, 5, "Mgmt_Lqi_rsp")
    tsn, status, total, start, count = _MGMT_LQI_HEAD.unpack_from(payload)
    if 5 + 22 * count > len(payload):
        raise _err(f"{count} neighbour records do not fit", "Mgmt_Lqi_rsp count", 4)
    return tsn, status, total, start, [Neighbour.decode(payload, 5 + 22 * i) for i in range(count)]


def encode_mgmt_leave_req(
    tsn: int, ieee: bytes, remove_children: bool = False, rejoin: bool = False
) -> bytes:
    """Encode Mgmt_Leave_req (flags byte: bit 6 remove children, bit 7 rejoin)."""
    flags = (0x40 if remove_children else 0) | (0x80 if rejoin else 0)
    return _pack(_MGMT_LEAVE_REQ, "Mgmt_Leave_req", tsn, _ieee(ieee, "ieee"), flags)


def decode_mgmt_leave_req(payload: bytes) -> tuple[int, bytes, bool, bool]:
    """Decode Mgmt_Leave_req into ``(tsn, ieee, remove_children, rejoin)``."""
    _need(payload, 10, "Mgmt_Leave_req")
    tsn, ieee, flags = _MGMT_LEAVE_REQ.unpack_from(payload)
    return tsn, ieee, bool(flags & 0x40), bool(flags & 0x80)


def encode_mgmt_leave_rsp(tsn: int, status: int) -> bytes:
    """Encode Mgmt_Leave_rsp."""
    return _pack(_TSN_STATUS, "Mgmt_Leave_rsp", tsn, status)


def encode_mgmt_permit_joining_req(tsn: int, duration: int, tc_significance: bool = True) -> bytes:
    """Encode Mgmt_Permit_Joining_req (duration in seconds; 0xFF = no time limit)."""
    return _pack(_TSN_STATUS, "Mgmt_Permit_Joining_req", tsn, duration) + (
        b"\x01" if tc_significance else b"\x00"
    )


def decode_mgmt_permit_joining_req(payload: bytes) -> tuple[int, int, bool]:
    """Decode Mgmt_Permit_Joining_req into ``(tsn, duration, tc_significance)``."""
    _need(payload, 3, "Mgmt_Permit_Joining_req")
    return payload[0], payload[1], bool(payload[2])


def encode_mgmt_permit_joining_rsp(tsn: int, status: int) -> bytes:
    """Encode Mgmt_Permit_Joining_rsp."""
    return _pack(_TSN_STATUS, "Mgmt_Permit_Joining_rsp", tsn, status)


def decode_status_rsp(payload: bytes) -> tuple[int, int]:
    """Decode a response that carries only ``(tsn, status)`` (Mgmt_Leave_rsp, Mgmt_Permit_Joining_rsp)."""
    _need(payload, 2, "status response")
    return payload[0], payload[1]
