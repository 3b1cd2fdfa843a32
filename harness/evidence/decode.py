"""The harness's own decoder of captured IEEE 802.15.4 / ZigBee frames, down to the OTA cluster.

It is written from the specifications (IEEE 802.15.4-2006 §7.2 MAC frames, ZigBee PRO 2015 §3.3
NWK and §2.2.5 APS frames, ZCL §2.4 general frames and §11.13 OTA Upgrade commands), not from
the emulator's codec, so the evidence does not depend on the code it judges. It runs once for
every captured frame, so it reads fields with precompiled ``struct`` layouts and stops at the
first layer it cannot see into.

Frames secured at the NWK layer (ZigBee PRO 2015 §4.3, security level 5: AES-CCM* encryption
with a 4-byte MIC) are decrypted when the network key is given, and then read down to the OTA
fields like any other frame; without the right key they stop at ``NWK(secured)``. APS-layer
security (link keys, used for key transport) is not decrypted.

:func:`summarize` never raises: a damaged frame comes back as a :class:`FrameSummary` with the
layers it could read filled in and ``error`` saying what was wrong and where.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "APS_COMMAND_NAMES",
    "CLUSTER_NAMES",
    "MAC_COMMAND_NAMES",
    "NWK_COMMAND_NAMES",
    "OTA_COMMAND_NAMES",
    "OTA_STATUS_NAMES",
    "ZCL_GLOBAL_COMMAND_NAMES",
    "ZDO_CLUSTER_NAMES",
    "FrameSummary",
    "crc16_kermit",
    "summarize",
]

OTA_CLUSTER = 0x0019

MAC_FRAME_TYPES = ("beacon", "data", "ack", "command", "reserved", "multipurpose", "fragment", "extended")

MAC_COMMAND_NAMES: dict[int, str] = {
    0x01: "Association Request",
    0x02: "Association Response",
    0x03: "Disassociation Notification",
    0x04: "Data Request",
    0x05: "PAN ID Conflict Notification",
    0x06: "Orphan Notification",
    0x07: "Beacon Request",
    0x08: "Coordinator Realignment",
    0x09: "GTS Request",
}
"""IEEE 802.15.4-2006 Table 82, MAC command frame identifiers."""

NWK_COMMAND_NAMES: dict[int, str] = {
    0x01: "Route Request",
    0x02: "Route Reply",
    0x03: "Network Status",
    0x04: "Leave",
    0x05: "Route Record",
    0x06: "Rejoin Request",
    0x07: "Rejoin Response",
    0x08: "Link Status",
    0x09: "Network Report",
    0x0A: "Network Update",
    0x0B: "End Device Timeout Request",
    0x0C: "End Device Timeout Response",
}
"""ZigBee PRO 2015 Table 3-40, NWK command identifiers."""

APS_COMMAND_NAMES: dict[int, str] = {
    0x05: "Transport Key",
    0x06: "Update Device",
    0x07: "Remove Device",
    0x08: "Request Key",
    0x09: "Switch Key",
    0x0E: "Tunnel",
    0x0F: "Verify Key",
    0x10: "Confirm Key",
}
"""ZigBee PRO 2015 Table 4-27, APS command identifiers."""

ZCL_GLOBAL_COMMAND_NAMES: dict[int, str] = {
    0x00: "Read Attributes",
    0x01: "Read Attributes Response",
    0x02: "Write Attributes",
    0x03: "Write Attributes Undivided",
    0x04: "Write Attributes Response",
    0x05: "Write Attributes No Response",
    0x06: "Configure Reporting",
    0x07: "Configure Reporting Response",
    0x08: "Read Reporting Configuration",
    0x09: "Read Reporting Configuration Response",
    0x0A: "Report Attributes",
    0x0B: "Default Response",
    0x0C: "Discover Attributes",
    0x0D: "Discover Attributes Response",
    0x0E: "Read Attributes Structured",
    0x0F: "Write Attributes Structured",
    0x10: "Write Attributes Structured Response",
    0x11: "Discover Commands Received",
    0x12: "Discover Commands Received Response",
    0x13: "Discover Commands Generated",
    0x14: "Discover Commands Generated Response",
    0x15: "Discover Attributes Extended",
    0x16: "Discover Attributes Extended Response",
}
"""ZCL §2.4 Table 2-3, profile-wide (global) command identifiers."""

OTA_COMMAND_NAMES: dict[int, str] = {
    0x00: "Image Notify",
    0x01: "Query Next Image Request",
    0x02: "Query Next Image Response",
    0x03: "Image Block Request",
    0x04: "Image Page Request",
    0x05: "Image Block Response",
    0x06: "Upgrade End Request",
    0x07: "Upgrade End Response",
    0x08: "Query Device Specific File Request",
    0x09: "Query Device Specific File Response",
}
"""ZCL §11.13 Table 11-16, OTA Upgrade cluster command identifiers."""

OTA_STATUS_NAMES: dict[int, str] = {
    0x00: "SUCCESS",
    0x01: "FAILURE",
    0x7E: "NOT_AUTHORIZED",
    0x80: "MALFORMED_COMMAND",
    0x81: "UNSUP_CLUSTER_COMMAND",
    0x95: "ABORT",
    0x96: "INVALID_IMAGE",
    0x97: "WAIT_FOR_DATA",
    0x98: "NO_IMAGE_AVAILABLE",
    0x99: "REQUIRE_MORE_IMAGE",
}
"""ZCL status codes that appear in OTA commands."""

CLUSTER_NAMES: dict[int, str] = {
    0x0000: "Basic",
    0x0001: "Power Configuration",
    0x0003: "Identify",
    0x000A: "Time",
    0x0019: "OTA",
    0x0700: "Price",
    0x0701: "DRLC",
    0x0702: "Metering",
    0x0703: "Messaging",
    0x0704: "Tunneling",
    0x0705: "Prepayment",
    0x0707: "Calendar",
    0x0708: "Device Management",
    0x0709: "Events",
    0x0800: "Key Establishment",
}
"""Short names of the ZCL clusters seen on a GB smart-metering HAN."""

ZDO_CLUSTER_NAMES: dict[int, str] = {
    0x0000: "NWK_addr_req",
    0x0001: "IEEE_addr_req",
    0x0002: "Node_Desc_req",
    0x0003: "Power_Desc_req",
    0x0004: "Simple_Desc_req",
    0x0005: "Active_EP_req",
    0x0006: "Match_Desc_req",
    0x0013: "Device_annce",
    0x0015: "System_Server_Discovery_req",
    0x0021: "Bind_req",
    0x0022: "Unbind_req",
    0x0030: "Mgmt_NWK_Disc_req",
    0x0031: "Mgmt_Lqi_req",
    0x0032: "Mgmt_Rtg_req",
    0x0033: "Mgmt_Bind_req",
    0x0034: "Mgmt_Leave_req",
    0x0036: "Mgmt_Permit_Joining_req",
    0x0038: "Mgmt_NWK_Update_req",
}
"""ZigBee PRO 2015 §2.4 ZDO requests; a response is the same cluster with bit 15 set (``_rsp``)."""
ZDO_CLUSTER_NAMES.update(
    {0x8000 | k: v.replace("_req", "_rsp") for k, v in list(ZDO_CLUSTER_NAMES.items()) if v.endswith("_req")}
)
ZDO_CLUSTER_NAMES[0x8038] = "Mgmt_NWK_Update_notify"


# --- CRC-16/KERMIT (the 802.15.4 FCS) -------------------------------------------------------
# Reflected polynomial 0x1021 (0x8408), initial value 0, no final XOR. It runs two bytes per
# step with a 65,536-entry table: for a 16-bit CRC the register is consumed entirely by one
# 16-bit word, so crc' = T16[crc ^ word]. That halves the Python loop against the byte table.
def _byte_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
        table.append(c)
    return table


_T8 = _byte_table()
_T8_HI = _T8
_T8_LO = [(_T8[i] >> 8) ^ _T8[_T8[i] & 0xFF] for i in range(256)]
_T16 = [_T8_HI[x >> 8] ^ _T8_LO[x & 0xFF] for x in range(65536)]
_WORDS: dict[int, struct.Struct] = {}


def crc16_kermit(data: bytes, crc: int = 0) -> int:
    """CRC-16/KERMIT of ``data``, the 802.15.4 frame check sequence (check value 0x2189).

    Running it over a whole frame including its FCS (stored little endian) gives 0 when the
    frame is intact.
    """
    n = len(data)
    half = n >> 1
    words = _WORDS.get(half)
    if words is None:
        words = _WORDS[half] = struct.Struct(f"<{half}H")
    table = _T16
    for w in words.unpack_from(data):
        crc = table[crc ^ w]
    if n & 1:
        crc = (crc >> 8) ^ _T8[(crc ^ data[n - 1]) & 0xFF]
    return crc


# --- the summary ---------------------------------------------------------------------------
@dataclass(slots=True)
class FrameSummary:
    """What one captured frame is, layer by layer, as far as can be seen without keys.

    Addresses are strings: short addresses as ``"0x1234"``, IEEE (EUI-64) addresses as
    ``"00:0d:6f:00:0a:bc:de:f0"`` (most significant byte first, as printed on labels).
    Fields of layers that the frame does not have, or that are encrypted, stay None.

    For a frame secured at the NWK layer (``nwk_secured``), the auxiliary security header is
    read in any case: ``nwk_frame_counter``, ``nwk_key_id`` (0 data key, 1 network key,
    2 key-transport key, 3 key-load key), ``nwk_key_seq`` (the network key's sequence number,
    when ``nwk_key_id`` is 1) and ``nwk_src_ieee``, the IEEE address of the device that secured
    the frame. NWK security is applied hop by hop, so on a relayed frame that is the relaying
    router (the MAC source), not the NWK source. ``nwk_decrypted`` is True when one of the keys
    given to :func:`summarize` verified the frame's MIC and the layers above were read from the
    plaintext; ``mic_failed`` is True when keys were given and none of them verified it (a
    wrong or outdated key, or a damaged frame).

    ``zdo_nwk_addr`` and ``zdo_ieee`` are the short and IEEE address pair a ZDO Device_annce,
    NWK_addr_rsp or IEEE_addr_rsp tells about.
    ``layers`` is a one-line description such as
    ``MAC data 0x0000→0x0001 / NWK 0x0000→0x1234 r30 #7 / APS data 0x0019@1 #12 / ZCL OTA Image
    Block Response off=64 len=50``. ``error`` is None for a well-formed frame and otherwise says
    which field did not fit and at which offset of its layer.
    """

    mac_type: str | None = None
    mac_seq: int | None = None
    mac_src: str | None = None
    mac_dst: str | None = None
    mac_pan: str | None = None
    mac_command: str | None = None
    fcs_ok: bool | None = None
    nwk_src: str | None = None
    nwk_dst: str | None = None
    nwk_seq: int | None = None
    nwk_radius: int | None = None
    nwk_secured: bool = False
    nwk_frame_counter: int | None = None
    nwk_key_id: int | None = None
    nwk_key_seq: int | None = None
    nwk_src_ieee: str | None = None
    nwk_decrypted: bool = False
    mic_failed: bool = False
    nwk_command: str | None = None
    aps_type: str | None = None
    aps_counter: int | None = None
    aps_secured: bool = False
    cluster: int | None = None
    profile: int | None = None
    src_ep: int | None = None
    dst_ep: int | None = None
    zcl_command: str | None = None
    zcl_tsn: int | None = None
    manufacturer_code: int | None = None
    image_type: int | None = None
    file_version: int | None = None
    ota_status: int | None = None
    file_offset: int | None = None
    data_size: int | None = None
    block_data: bytes | None = None
    image_size: int | None = None
    upgrade_time: int | None = None
    zdo_nwk_addr: str | None = None
    zdo_ieee: str | None = None
    layers: str = ""
    error: str | None = None

    @property
    def is_ota(self) -> bool:
        """True for a ZCL frame of the OTA Upgrade cluster (0x0019)."""
        return self.cluster == OTA_CLUSTER and self.zcl_command is not None


class _Malformed(Exception):
    """A field does not fit; carries the text that ends up in ``FrameSummary.error``."""


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_MAC_SHORT = struct.Struct("<HHH")  # PAN, destination, source
_NWK_HEAD = struct.Struct("<HHHBB")
_NWK_AUX = struct.Struct("<BI")  # security control, frame counter
_NWK_MIC_LEN = 4  # security level 5, ENC-MIC-32
_APS_DATA = struct.Struct("<BHHBB")  # dst ep, cluster, profile, src ep, counter
_APS_GROUP = struct.Struct("<HHHBB")  # group, cluster, profile, src ep, counter
_ZCL_MFR = struct.Struct("<HBB")
_ZCL_HEAD = struct.Struct("<BB")
_OTA_IDS = struct.Struct("<HHI")  # manufacturer code, image type, file version
_OTA_BLOCK_RSP = struct.Struct("<BHHIIB")  # status, mfr, type, version, offset, data size
_OTA_BLOCK_REQ = struct.Struct("<BHHIIB")  # field control, mfr, type, version, offset, max size
_OTA_PAGE_REQ = struct.Struct("<BHHIIBHH")  # ... + page size, response spacing
_OTA_QNI_REQ = struct.Struct("<BHHI")
_OTA_QNI_RSP = struct.Struct("<HHII")  # after the status byte
_OTA_END_RSP = struct.Struct("<HHIII")
_OTA_WAIT = struct.Struct("<II")


def _short(v: int) -> str:
    return f"0x{v:04x}"


def _eui64(raw: bytes, at: int) -> str:
    return raw[at : at + 8][::-1].hex(":")


def _status(code: int) -> str:
    return OTA_STATUS_NAMES.get(code, f"0x{code:02x}")


def _need(buf: bytes, at: int, n: int, what: str) -> None:
    # ``buf`` is the current layer's payload, so offsets count from the start of that layer.
    if at + n > len(buf):
        raise _Malformed(f"{what}: needs {n} bytes at layer offset {at}, only {max(len(buf) - at, 0)} left")


def summarize(
    raw: bytes, keys: Sequence[bytes] = (), ieee_by_nwk: Mapping[int, bytes] | None = None
) -> FrameSummary:
    """Decode one captured 802.15.4 frame (with its 2-byte FCS) into a :class:`FrameSummary`.

    Args:
        raw: the frame as captured, ending with its FCS.
        keys: network keys (16 bytes each, in AES order) to try on a frame secured at the NWK
            layer, in order; put the current key first. With none, secured frames stop at
            ``NWK(secured)`` as before.
        ieee_by_nwk: IEEE addresses by short address, each 8 bytes in over-the-air order (least
            significant byte first, the reverse of the printed form). Only needed for secured
            frames that do not carry the sender's IEEE address themselves (no extended nonce):
            the decryption nonce is built from it. The :class:`~harness.evidence.Recorder`
            learns this map from the frames it sees.

    Never raises: malformed input gives a summary with ``error`` set and every layer that could
    be read before the damage filled in.
    """
    s = FrameSummary()
    parts: list[str] = []
    try:
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise _Malformed(f"not a frame: expected bytes, got {type(raw).__name__}")
        _decode_mac(bytes(raw), s, parts, keys, ieee_by_nwk)
    except _Malformed as e:
        s.error = str(e)
    except Exception as e:  # the contract is "never raises"; any slip in here becomes evidence
        s.error = f"decoder fault: {type(e).__name__}: {e}"
    if s.error is not None:
        parts.append(f"MALFORMED ({s.error})")
    s.layers = " / ".join(parts)
    return s


def _decode_mac(
    raw: bytes,
    s: FrameSummary,
    parts: list[str],
    keys: Sequence[bytes],
    ieee_by_nwk: Mapping[int, bytes] | None,
) -> None:
    n = len(raw)
    if n < 5:
        if n >= 2:
            s.fcs_ok = crc16_kermit(raw) == 0
        raise _Malformed(f"MAC: {n} bytes is too short for a frame (at least 5 with FCS)")
    s.fcs_ok = crc16_kermit(raw) == 0
    end = n - 2  # the FCS is not payload
    fcf = raw[0] | (raw[1] << 8)
    ftype = fcf & 0x7
    s.mac_type = mtype = MAC_FRAME_TYPES[ftype]
    dst_mode = (fcf >> 10) & 0x3
    src_mode = (fcf >> 14) & 0x3
    version = (fcf >> 12) & 0x3
    at = 2
    if version == 2 and fcf & 0x0100:
        pass  # 802.15.4-2015: sequence number suppressed
    else:
        s.mac_seq = raw[2]
        at = 3
    fcs_note = "" if s.fcs_ok else " FCS BAD"
    if mtype == "ack":
        parts.append(f"MAC ack #{s.mac_seq}{fcs_note}")
        return
    if dst_mode == 1 or src_mode == 1:
        raise _Malformed(f"MAC: reserved addressing mode in frame control 0x{fcf:04x}")
    if fcf & 0xCC40 == 0x8840 and at + 6 <= end:
        # ZigBee's usual header (short addresses, one PAN ID) in one read.
        pan, dst, src = _MAC_SHORT.unpack_from(raw, at)
        s.mac_pan = f"0x{pan:04x}"
        s.mac_dst = f"0x{dst:04x}"
        s.mac_src = f"0x{src:04x}"
        hop: int | bytes | None = src
        at += 6
        dst_mode = src_mode = 0
    else:
        hop = None
    if dst_mode:
        _need(raw, at, 2, "MAC destination PAN")
        s.mac_pan = _short(raw[at] | (raw[at + 1] << 8))
        at += 2
        if dst_mode == 2:
            _need(raw, at, 2, "MAC destination address")
            s.mac_dst = _short(raw[at] | (raw[at + 1] << 8))
            at += 2
        else:
            _need(raw, at, 8, "MAC destination address")
            s.mac_dst = _eui64(raw, at)
            at += 8
    if src_mode:
        if not (fcf & 0x0040) or not dst_mode:
            _need(raw, at, 2, "MAC source PAN")
            if s.mac_pan is None:
                s.mac_pan = _short(raw[at] | (raw[at + 1] << 8))
            at += 2
        if src_mode == 2:
            _need(raw, at, 2, "MAC source address")
            hop = raw[at] | (raw[at + 1] << 8)
            s.mac_src = _short(hop)
            at += 2
        else:
            _need(raw, at, 8, "MAC source address")
            hop = raw[at : at + 8]
            s.mac_src = _eui64(raw, at)
            at += 8
    if at > end:
        raise _Malformed(f"MAC: header runs into the FCS (header {at} bytes, frame {n})")
    head = f"MAC {mtype} {s.mac_src or '-'}→{s.mac_dst or '-'}{fcs_note}"
    if fcf & 0x0008:
        parts.append(head + " (secured)")
        return
    if version == 2 and fcf & 0x0200:
        parts.append(head + " (IEs not decoded)")
        return
    if mtype == "command":
        _need(raw[:end], at, 1, "MAC command identifier")
        cid = raw[at]
        s.mac_command = MAC_COMMAND_NAMES.get(cid, f"0x{cid:02x}")
        parts.append(f"MAC command {s.mac_command} {s.mac_src or '-'}→{s.mac_dst or '-'}{fcs_note}")
        return
    if mtype == "beacon":
        parts.append(f"MAC beacon {s.mac_src or '-'} PAN {s.mac_pan}{fcs_note}")
        return
    parts.append(head)
    if mtype != "data":
        return
    _decode_nwk(raw[at:end], s, parts, keys, ieee_by_nwk, hop)


def _decode_nwk(
    p: bytes,
    s: FrameSummary,
    parts: list[str],
    keys: Sequence[bytes],
    ieee_by_nwk: Mapping[int, bytes] | None,
    hop: int | bytes | None,
) -> None:
    """NWK frame (ZigBee PRO 2015 §3.3.1); ``hop`` is the MAC source (short address as an int,
    or an extended address in over-the-air order): the device that applied NWK security."""
    if len(p) < 2:
        raise _Malformed(f"NWK: payload of {len(p)} bytes has no frame control")
    fcf = p[0] | (p[1] << 8)
    ftype = fcf & 0x3
    proto = (fcf >> 2) & 0xF
    if proto == 3:
        parts.append("ZGP (green power, not decoded)")
        return
    if ftype == 3:
        parts.append("NWK inter-PAN")
        _decode_aps(p[2:], s, parts, inter_pan=True)
        return
    _need(p, 0, 8, "NWK header")
    _, dst, src, radius, seq = _NWK_HEAD.unpack_from(p)
    s.nwk_dst = _short(dst)
    s.nwk_src = _short(src)
    s.nwk_radius = radius
    s.nwk_seq = seq
    at = 8
    if fcf & 0x0800:
        at += 8
    src_ieee_at = -1
    if fcf & 0x1000:
        src_ieee_at = at
        at += 8
    if fcf & 0x0100:
        at += 1
    _need(p, 0, at, "NWK header")
    if fcf & 0x0400:
        _need(p, at, 2, "NWK source route subframe")
        at += 2 + 2 * p[at]
        _need(p, 0, at, "NWK source route relay list")
    head = f"NWK {s.nwk_src}→{s.nwk_dst} r{radius} #{seq}"
    if fcf & 0x0200:
        s.nwk_secured = True
        plain = _nwk_unsecure(p, at, src, src_ieee_at, s, keys, ieee_by_nwk, hop, head, parts)
        if plain is None:
            return
        key_seq = "" if s.nwk_key_seq is None else f" kseq={s.nwk_key_seq}"
        parts.append(head)
        parts.append(f"NWK(decrypted) fc={s.nwk_frame_counter}{key_seq}")
        if ftype == 1:
            _need(plain, 0, 1, "NWK command identifier (decrypted)")
            cid = plain[0]
            s.nwk_command = NWK_COMMAND_NAMES.get(cid, f"0x{cid:02x}")
            parts.append(f"NWK command {s.nwk_command}")
            return
        if ftype != 0:
            parts.append(f"NWK frame type {ftype} (reserved)")
            return
        _decode_aps(plain, s, parts, inter_pan=False)
        return
    if ftype == 1:
        _need(p, at, 1, "NWK command identifier")
        cid = p[at]
        s.nwk_command = NWK_COMMAND_NAMES.get(cid, f"0x{cid:02x}")
        parts.append(f"{head} / NWK command {s.nwk_command}")
        return
    if ftype != 0:
        parts.append(f"{head} / NWK frame type {ftype} (reserved)")
        return
    parts.append(head)
    _decode_aps(p[at:], s, parts, inter_pan=False)


# --- NWK security (ZigBee PRO 2015 §4.3.1 and §4.5) ----------------------------------------
class _NotImportedYet(Exception):
    """Stands in for cryptography's InvalidTag until the first key is used."""


_CCM_CACHE: dict[bytes, Any] = {}
_CCM_CACHE_MAX = 64
_AESCCM: Any = None
_InvalidTag: type[Exception] = _NotImportedYet


def _ccm(key: object) -> Any:
    """The AES-CCM* cipher with a 4-byte MIC for ``key``, built once per key (building one costs
    about half as much as decrypting a frame); None for anything that is not a 16-byte key."""
    global _AESCCM, _InvalidTag
    if type(key) is not bytes:
        if not isinstance(key, bytearray | memoryview):
            return None
        key = bytes(key)
    ccm = _CCM_CACHE.get(key)
    if ccm is None:
        if len(key) != 16:  # ZigBee uses AES-128 only
            return None
        if _AESCCM is None:
            # Imported on first use: it costs ~10 ms, which runs without keys never pay.
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESCCM

            _AESCCM, _InvalidTag = AESCCM, InvalidTag
        if len(_CCM_CACHE) >= _CCM_CACHE_MAX:
            _CCM_CACHE.clear()  # keys are few; this only bounds memory against a flood of junk keys
        ccm = _CCM_CACHE[key] = _AESCCM(key, tag_length=_NWK_MIC_LEN)
    return ccm


def _nwk_unsecure(
    p: bytes,
    aux_at: int,
    nwk_src: int,
    src_ieee_at: int,
    s: FrameSummary,
    keys: Sequence[bytes],
    ieee_by_nwk: Mapping[int, bytes] | None,
    hop: int | bytes | None,
    head: str,
    parts: list[str],
) -> bytes | None:
    """Read the auxiliary security header at ``p[aux_at:]`` and decrypt the rest with ``keys``.

    Returns the plaintext NWK payload, or None (after adding the ``NWK(secured)`` layer text)
    when no key verifies the MIC or the frame cannot be decrypted at all.
    """
    # §4.5.1: security control (1), frame counter (4), source address (8, if extended nonce),
    # key sequence number (1, if the key identifier says network key).
    n = len(p)
    if aux_at + 5 > n:
        parts.append(f"{head} / NWK(secured)")
        raise _Malformed(
            f"NWK auxiliary header: needs 5 bytes at layer offset {aux_at}, only {n - aux_at} left"
        )
    control, counter = _NWK_AUX.unpack_from(p, aux_at)
    s.nwk_frame_counter = counter
    key_id = s.nwk_key_id = (control >> 3) & 0x3
    at = aux_at + 5
    nonce_source: bytes | None = None
    try:
        if control & 0x20:  # extended nonce: the sender's IEEE address travels with the frame
            _need(p, at, 8, "NWK auxiliary header source address")
            nonce_source = p[at : at + 8]
            at += 8
        if key_id == 1:
            _need(p, at, 1, "NWK auxiliary header key sequence number")
            s.nwk_key_seq = p[at]
            at += 1
        if n - at < _NWK_MIC_LEN:
            raise _Malformed(
                f"NWK secured payload: needs its {_NWK_MIC_LEN}-byte MIC at layer offset {at}, "
                f"only {n - at} left"
            )
    except _Malformed:
        parts.append(f"{head} / NWK(secured) fc={counter}")
        raise
    if nonce_source is None:
        # Without the extended nonce the receiver must know the securing device's IEEE address
        # (§4.3.1.2): NWK security is hop by hop, so that device is the MAC source.
        if isinstance(hop, bytes):
            nonce_source = hop
        elif ieee_by_nwk is not None and hop is not None:
            nonce_source = ieee_by_nwk.get(hop)
        if nonce_source is None and src_ieee_at >= 0 and (hop is None or hop == nwk_src):
            nonce_source = p[src_ieee_at : src_ieee_at + 8]  # first hop: the originator secured it
        if not isinstance(nonce_source, bytes | bytearray) or len(nonce_source) != 8:
            nonce_source = None
    if nonce_source is not None:
        s.nwk_src_ieee = bytes(nonce_source)[::-1].hex(":")
    if keys and nonce_source is not None:
        # The security level is not sent (§4.3.1.1 zeroes bits 0-2 before transmission): the
        # nonce (§4.5.2.2: source IEEE, frame counter, security control) and the authenticated
        # data both use the control byte with nwkSecurityLevel 5 put back in.
        level5 = (control & 0xF8) | 0x05
        nonce = bytes(nonce_source) + p[aux_at + 1 : aux_at + 5] + bytes((level5,))
        # §4.3.1.1 and Annex A: a = NWK header || auxiliary header, m = NWK payload, and the
        # 4-byte MIC follows the ciphertext at the end of the frame.
        aad = p[:aux_at] + bytes((level5,)) + p[aux_at + 1 : at]
        sealed = p[at:]
        for key in keys:
            ccm = _ccm(key)
            if ccm is None:
                continue
            try:
                plain: bytes = ccm.decrypt(nonce, sealed, aad)
            except _InvalidTag:  # the MIC does not verify with this key
                continue
            s.nwk_decrypted = True
            return plain
        s.mic_failed = True
    parts.append(f"{head} / NWK(secured) fc={counter}")
    return None


def _decode_aps(p: bytes, s: FrameSummary, parts: list[str], *, inter_pan: bool) -> None:
    _need(p, 0, 1, "APS frame control")
    fcf = p[0]
    ftype = fcf & 0x3
    mode = (fcf >> 2) & 0x3
    at = 1
    if inter_pan or ftype == 3:
        s.aps_type = "inter-pan"
        if mode == 3:
            at += 2
        _need(p, at, 4, "APS inter-PAN header")
        s.cluster, s.profile = struct.unpack_from("<HH", p, at)
        at += 4
        parts.append(f"APS inter-PAN 0x{s.cluster:04x}")
        _decode_zcl(p[at:], s, parts)
        return
    if ftype == 0:
        s.aps_type = "data"
        if mode == 3:
            _need(p, at, _APS_GROUP.size, "APS data header")
            group, s.cluster, s.profile, s.src_ep, s.aps_counter = _APS_GROUP.unpack_from(p, at)
            target = f"g0x{group:04x}"
            at += _APS_GROUP.size
        else:
            _need(p, at, _APS_DATA.size, "APS data header")
            s.dst_ep, s.cluster, s.profile, s.src_ep, s.aps_counter = _APS_DATA.unpack_from(p, at)
            target = str(s.dst_ep)
            at += _APS_DATA.size
        text = f"APS data 0x{s.cluster:04x}@{target} #{s.aps_counter}"
    elif ftype == 2:
        s.aps_type = "ack"
        if not fcf & 0x10:
            _need(p, at, _APS_DATA.size, "APS ack header")
            s.dst_ep, s.cluster, s.profile, s.src_ep, s.aps_counter = _APS_DATA.unpack_from(p, at)
            at += _APS_DATA.size
            text = f"APS ack 0x{s.cluster:04x}@{s.dst_ep} #{s.aps_counter}"
        else:
            _need(p, at, 1, "APS ack counter")
            s.aps_counter = p[at]
            at += 1
            text = f"APS ack #{s.aps_counter}"
    else:
        s.aps_type = "command"
        _need(p, at, 1, "APS counter")
        s.aps_counter = p[at]
        at += 1
        text = f"APS command #{s.aps_counter}"
    fragmented = False
    if fcf & 0x80:
        _need(p, at, 1, "APS extended header")
        ext = p[at]
        at += 1
        if ext & 0x3:
            _need(p, at, 1, "APS fragment block number")
            text += f" frag {p[at]}"
            fragmented = True
            at += 1
            if ftype == 2:
                at += 1  # ack bitfield
    if fcf & 0x20:
        s.aps_secured = True
        parts.append(f"{text} / APS(secured)")
        return
    if ftype == 1:
        _need(p, at, 1, "APS command identifier")
        cid = p[at]
        parts.append(f"{text} {APS_COMMAND_NAMES.get(cid, f'0x{cid:02x}')}")
        return
    parts.append(text)
    if ftype == 2 or fragmented:
        return
    if s.profile == 0x0000:
        _decode_zdo(p[at:], s, parts)
    else:
        _decode_zcl(p[at:], s, parts)


def _decode_zdo(p: bytes, s: FrameSummary, parts: list[str]) -> None:
    cluster = s.cluster if s.cluster is not None else -1
    s.zcl_command = ZDO_CLUSTER_NAMES.get(cluster, f"ZDO 0x{cluster:04x}")
    if p:
        s.zcl_tsn = p[0]
    # Frames that pair a short address with an IEEE address (ZigBee PRO 2015 §2.4.3.1.11
    # Device_annce: NWK, IEEE, capability; §2.4.4.2.1/2 NWK_addr_rsp and IEEE_addr_rsp: status,
    # IEEE, NWK). They let a recorder build the map that decrypting frames without an extended
    # nonce needs.
    if cluster == 0x0013 and len(p) >= 11:
        s.zdo_nwk_addr = _short(p[1] | (p[2] << 8))
        s.zdo_ieee = _eui64(p, 3)
    elif (cluster == 0x8000 or cluster == 0x8001) and len(p) >= 12 and p[1] == 0x00:
        s.zdo_ieee = _eui64(p, 2)
        s.zdo_nwk_addr = _short(p[10] | (p[11] << 8))
    parts.append(f"ZDO {s.zcl_command}")


def _decode_zcl(p: bytes, s: FrameSummary, parts: list[str]) -> None:
    _need(p, 0, 3, "ZCL header")
    fc = p[0]
    if fc & 0x04:
        _need(p, 0, 5, "ZCL header")
        _mfr, s.zcl_tsn, cid = _ZCL_MFR.unpack_from(p, 1)
        at = 5
    else:
        s.zcl_tsn, cid = _ZCL_HEAD.unpack_from(p, 1)
        at = 3
    cluster = s.cluster if s.cluster is not None else -1
    cname = CLUSTER_NAMES.get(cluster, f"0x{cluster:04x}")
    if fc & 0x3 == 0:
        s.zcl_command = ZCL_GLOBAL_COMMAND_NAMES.get(cid, f"global 0x{cid:02x}")
        if cid == 0x0B and cluster == OTA_CLUSTER and len(p) >= at + 2:
            s.ota_status = p[at + 1]
            parts.append(f"ZCL {cname} Default Response cmd 0x{p[at]:02x} {_status(s.ota_status)}")
            return
        parts.append(f"ZCL {cname} {s.zcl_command}")
        return
    if fc & 0x3 != 1:
        s.zcl_command = f"frame type {fc & 0x3} 0x{cid:02x}"
        parts.append(f"ZCL {cname} {s.zcl_command}")
        return
    if cluster != OTA_CLUSTER or fc & 0x04:
        s.zcl_command = f"cmd 0x{cid:02x}"
        parts.append(f"ZCL {cname} {s.zcl_command}")
        return
    name = OTA_COMMAND_NAMES.get(cid)
    if name is None:
        s.zcl_command = f"cmd 0x{cid:02x}"
        parts.append(f"ZCL OTA {s.zcl_command}")
        return
    s.zcl_command = name
    try:
        detail = _decode_ota(cid, p, at, s)
    except _Malformed:
        parts.append(f"ZCL OTA {name}")
        raise
    parts.append(f"ZCL OTA {name}{detail}")


def _decode_ota(cid: int, p: bytes, at: int, s: FrameSummary) -> str:
    """Fill the OTA fields of ``s`` from the command payload at ``p[at:]``; returns layer detail."""
    if cid == 0x05:  # Image Block Response
        _need(p, at, 1, "Image Block Response status")
        status = s.ota_status = p[at]
        if status == 0x00:
            _need(p, at, _OTA_BLOCK_RSP.size, "Image Block Response")
            (_, s.manufacturer_code, s.image_type, s.file_version, offset, size) = _OTA_BLOCK_RSP.unpack_from(
                p, at
            )
            s.file_offset = offset
            s.data_size = size
            start = at + _OTA_BLOCK_RSP.size
            data = p[start : start + size]
            s.block_data = data
            if len(data) < size:
                raise _Malformed(
                    f"Image Block Response: data size {size} but {len(data)} bytes of data at offset {start}"
                )
            return f" off={offset} len={size}"
        if status == 0x97:
            if len(p) >= at + 1 + _OTA_WAIT.size:
                now, request_time = _OTA_WAIT.unpack_from(p, at + 1)
                return f" WAIT_FOR_DATA retry in {request_time - now}s"
            return " WAIT_FOR_DATA"
        return f" {_status(status)}"
    if cid == 0x03 or cid == 0x04:  # Image Block Request / Image Page Request
        layout = _OTA_BLOCK_REQ if cid == 0x03 else _OTA_PAGE_REQ
        _need(p, at, layout.size, OTA_COMMAND_NAMES[cid])
        fields = layout.unpack_from(p, at)
        fc, s.manufacturer_code, s.image_type, s.file_version, offset, size = fields[:6]
        s.file_offset = offset
        s.data_size = size
        tail = at + layout.size
        if cid == 0x03:
            if fc & 0x01:
                _need(p, tail, 8, "Image Block Request IEEE address")
                tail += 8
            if fc & 0x02:
                _need(p, tail, 2, "Image Block Request minimum block period")
        elif fc & 0x01:
            _need(p, tail, 8, "Image Page Request IEEE address")
        return f" off={offset} max={size} v=0x{s.file_version:08x}"
    if cid == 0x01:  # Query Next Image Request
        _need(p, at, _OTA_QNI_REQ.size, "Query Next Image Request")
        _, s.manufacturer_code, s.image_type, s.file_version = _OTA_QNI_REQ.unpack_from(p, at)
        return f" v=0x{s.file_version:08x}"
    if cid == 0x02:  # Query Next Image Response
        _need(p, at, 1, "Query Next Image Response status")
        status = s.ota_status = p[at]
        if status != 0x00:
            return f" {_status(status)}"
        _need(p, at + 1, _OTA_QNI_RSP.size, "Query Next Image Response")
        s.manufacturer_code, s.image_type, s.file_version, s.image_size = _OTA_QNI_RSP.unpack_from(p, at + 1)
        return f" SUCCESS v=0x{s.file_version:08x} size={s.image_size}"
    if cid == 0x06:  # Upgrade End Request
        _need(p, at, 1, "Upgrade End Request status")
        s.ota_status = p[at]
        _need(p, at + 1, _OTA_IDS.size, "Upgrade End Request")
        s.manufacturer_code, s.image_type, s.file_version = _OTA_IDS.unpack_from(p, at + 1)
        return f" {_status(s.ota_status)} v=0x{s.file_version:08x}"
    if cid == 0x07:  # Upgrade End Response
        _need(p, at, _OTA_END_RSP.size, "Upgrade End Response")
        s.manufacturer_code, s.image_type, s.file_version, now, s.upgrade_time = _OTA_END_RSP.unpack_from(
            p, at
        )
        when = "on activate" if s.upgrade_time == 0xFFFFFFFF else f"at {s.upgrade_time} (now {now})"
        return f" v=0x{s.file_version:08x} upgrade {when}"
    if cid == 0x00:  # Image Notify
        _need(p, at, 2, "Image Notify")
        payload_type = p[at]
        need = (0, 2, 4, 8)[min(payload_type, 3)]
        _need(p, at + 2, need, "Image Notify")
        if payload_type >= 1:
            s.manufacturer_code = _U16.unpack_from(p, at + 2)[0]
        if payload_type >= 2:
            s.image_type = _U16.unpack_from(p, at + 4)[0]
        if payload_type >= 3:
            s.file_version = _U32.unpack_from(p, at + 6)[0]
            return f" v=0x{s.file_version:08x}"
        return ""
    return ""
