"""Known-answer vectors and round trips for the emulator's frame codecs (MAC, NWK, APS, ZCL, ZDO).

Every known-answer vector below is either built by hand from the specification's bit layout or copied
from a public source named next to it, never produced by the code under test.
"""

from __future__ import annotations

import itertools
import struct

import pytest

from testbeds.emulator import zcl_types as zcl
from testbeds.emulator import zdo
from testbeds.emulator.frames import (
    APS_ACK,
    APS_BROADCAST,
    APS_COMMAND,
    APS_DATA,
    APS_GROUP,
    APS_UNICAST,
    BROADCAST_SHORT,
    MAC_ACK,
    MAC_BEACON,
    MAC_CMD_DATA_REQUEST,
    MAC_COMMAND,
    MAC_DATA,
    NWK_BROADCAST_RX_ON,
    NWK_COMMAND,
    NWK_DATA,
    ApsFrame,
    FrameError,
    MacFrame,
    NwkFrame,
    ZclFrame,
    fcs,
    mac_ack,
)

EXT_A = bytes.fromhex("0102030405060708")
EXT_B = bytes.fromhex("a1a2a3a4a5a6a7a8")


def reference_fcs(data: bytes) -> int:
    """IEEE 802.15.4-2003 7.2.1.9 FCS computed bit by bit, as the standard describes it.

    Independent of the implementation under test: the bits of each octet enter least significant
    first, the register starts at 0, the generator is x^16 + x^12 + x^5 + 1 (0x8408 reflected).
    """
    crc = 0
    for byte in data:
        for i in range(8):
            bit = (byte >> i) & 1
            feedback = (crc ^ bit) & 1
            crc >>= 1
            if feedback:
                crc ^= 0x8408
    return crc


def bits_to_bytes(bits: str) -> bytes:
    """Octets from a bit string written in transmission order (b0 first, as the standard prints them)."""
    bits = bits.replace(" ", "")
    return bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))


# ------------------------------------------------------------------------------------------- FCS


def test_fcs_check_value() -> None:
    # CRC-16/KERMIT catalogue check value.
    assert fcs(b"123456789") == 0x2189
    assert reference_fcs(b"123456789") == 0x2189


def test_fcs_ieee_example_ack() -> None:
    # IEEE 802.15.4 "FCS" example (reproduced in Microchip's AT86RF/SAM R documentation, section
    # "CRC Calculation"): a 5-octet ACK frame whose MHR is 0100 0000 0000 0000 0101 0110 (b0 first)
    # has the FCS 0010 0111 1001 1110 (r0 first).
    mhr = bits_to_bytes("0100 0000 0000 0000 0101 0110")
    expected_fcs_octets = bits_to_bytes("0010 0111 1001 1110")
    assert mhr == bytes.fromhex("02006a")
    assert struct.pack("<H", fcs(mhr)) == expected_fcs_octets
    assert mac_ack(0x6A) == mhr + expected_fcs_octets
    frame = MacFrame.decode(mhr + expected_fcs_octets)
    assert frame == MacFrame(MAC_ACK, 0x6A)


@pytest.mark.parametrize("length", [0, 1, 2, 7, 64, 125])
def test_fcs_matches_bitwise_reference(length: int) -> None:
    data = bytes((i * 37 + 11) & 0xFF for i in range(length))
    assert fcs(data) == reference_fcs(data)


# Frames with their FCS from scapy's regression tests (secdev/scapy, test/scapy/layers/dot15d4.uts:
# "Dot15d4FCS - Beacon (without pending addresses)", "Dot15d4FCS - Coordinator Realignment (without
# the channel page)" and "Advanced packets - dissection & FCS computation", ieee802_iphc).
SCAPY_BEACON = (
    b"\x00\x80\x89\xaa\x99\x00\x00\xff\xcf\x00\x00\x00\x22\x84\xfe\xca\xef\xbe\xed\xfe\xce\xfa\xff"
    b"\xff\xff\x00\x58\xa4"
)
SCAPY_COORD_REALIGN = (
    b"\x23\xcc\x89\xff\xff\x88\x77\x66\x55\x44\x33\x22\x11\xaa\x99\xff\xee\xdd\xcc\xbb\xaa\x99\x88"
    b"\x08\xaa\x99\xde\xc0\x14\xad\xde\x5c\x21"
)
SCAPY_IPHC = (
    b"\x41\xcc\xb5\xcd\xab\x16\x15\x14\xfe\xff\x13\x12\x02\x55\x44\x33\xfe\xff\x22\x11\x02\x78\xf6"
    b"\x00\x06\x80\x00\x01\x00\x50\xc4\xfa\x00\x00\x01\xf7\x89\xf3\x02\x5f\x50\x18\x04\xc4\x48\x28"
    b"\x00\x00\x43\x6f\x6e\x74\x65\x6e\x74\x2d\x74\x79\x70\x65\x3a\x20\x74\x65\x78\x74\x2f\x63\x73"
    b"\x73\x0d\x0a\x0d\x0a\xc1\x16"
)


def test_scapy_beacon_vector() -> None:
    frame = MacFrame.decode(SCAPY_BEACON)
    assert frame.frame_type == MAC_BEACON
    assert frame.seq == 137
    assert frame.dst is None and frame.dst_pan is None
    assert frame.src_pan == 0x99AA and frame.src == 0x0000
    assert frame.payload[:2] == b"\xff\xcf"  # superframe specification
    assert fcs(SCAPY_BEACON[:-2]) == 0xA458
    assert frame.encode() == SCAPY_BEACON


def test_scapy_coordinator_realignment_vector() -> None:
    frame = MacFrame.decode(SCAPY_COORD_REALIGN)
    assert frame.frame_type == MAC_COMMAND and frame.ack_request
    assert frame.dst_pan == 0xFFFF
    assert frame.dst == (0x1122334455667788).to_bytes(8, "little")
    assert frame.src_pan == 0x99AA
    assert frame.src == (0x8899AABBCCDDEEFF).to_bytes(8, "little")
    assert frame.command_id == 0x08  # coordinator realignment
    assert fcs(SCAPY_COORD_REALIGN[:-2]) == 0x215C
    assert frame.encode() == SCAPY_COORD_REALIGN


def test_scapy_data_vector_extended_addresses_pan_compression() -> None:
    frame = MacFrame.decode(SCAPY_IPHC)
    assert frame.frame_type == MAC_DATA and not frame.ack_request  # FC 0xCC41: b0 data, b6 compression
    assert frame.dst_pan == 0xABCD and frame.src_pan is None and frame.source_pan == 0xABCD
    assert frame.dst == bytes.fromhex("161514feff131202")
    assert frame.src == bytes.fromhex("554433feff221102")
    assert frame.payload.startswith(b"\x78\xf6")
    assert fcs(SCAPY_IPHC[:-2]) == 0x16C1
    assert frame.encode() == SCAPY_IPHC


def test_hand_built_data_frame_from_bit_layout() -> None:
    # IEEE 802.15.4-2003 figure 35: frame type 001 (data) b0-2, security 0 b3, frame pending 0 b4,
    # ack request 1 b5, intra-PAN 1 b6, dst mode 10 (short) b10-11, version 00 b12-13, src mode 10 b14-15.
    fc_bits = "100 0 0 1 1 000 01 00 01"
    fc = bits_to_bytes(fc_bits)
    assert fc == b"\x61\x88"
    payload = b"\x48\x00\x34\x12\x00\x00\x1e\x2a"  # any bytes: the MAC does not look inside
    mhr = fc + bytes([0x2A]) + b"\x62\x1a" + b"\x01\x00" + b"\x00\x00"  # seq, PAN, dst, src (LE)
    expected = mhr + payload + struct.pack("<H", reference_fcs(mhr + payload))
    frame = MacFrame(MAC_DATA, 0x2A, 0x1A62, 0x0001, None, 0x0000, True, False, payload)
    assert frame.encode() == expected
    assert MacFrame.decode(expected) == frame


def test_hand_built_data_request_command() -> None:
    # Command frame (011), ack request, PAN compression, short dst/src; payload = command id 0x04.
    mhr = b"\x63\x88\x07\x62\x1a\x00\x00\x34\x12"
    body = mhr + bytes([MAC_CMD_DATA_REQUEST])
    expected = body + struct.pack("<H", reference_fcs(body))
    frame = MacFrame(MAC_COMMAND, 7, 0x1A62, 0x0000, None, 0x1234, True, False, b"\x04")
    assert frame.encode() == expected
    assert MacFrame.decode(expected).command_id == MAC_CMD_DATA_REQUEST


def test_mac_ack_frame_pending() -> None:
    body = b"\x12\x00\x99"  # frame type ack, frame pending bit 4
    assert mac_ack(0x99, frame_pending=True) == body + struct.pack("<H", reference_fcs(body))
    assert MacFrame.decode(mac_ack(0x99, True)) == MacFrame(MAC_ACK, 0x99, frame_pending=True)


# ------------------------------------------------------------------------------- MAC round trips

ADDRS: list[int | bytes | None] = [None, 0x1234, EXT_A]


def _mac_cases() -> list[MacFrame]:
    cases = []
    for ft, dst, src, span, ack, pending in itertools.product(
        (MAC_BEACON, MAC_DATA, MAC_COMMAND),
        ADDRS,
        ADDRS,
        ("none", "same", "other"),
        (False, True),
        (False, True),
    ):
        if dst is None and src is None:
            continue
        dst_pan = 0x1A62 if dst is not None else None
        if src is None:
            src_pan = None
            if span != "none":
                continue
        elif dst is None:
            if span == "none":
                continue
            src_pan = 0x1A62 if span == "same" else 0xBEEF
        else:
            src_pan = {"none": None, "same": 0x1A62, "other": 0xBEEF}[span]
        payload = b"\x04" if ft == MAC_COMMAND else b"payload"
        cases.append(MacFrame(ft, 200, dst_pan, dst, src_pan, src, ack, pending, payload))
    return cases


def _normalised(frame: MacFrame) -> MacFrame:
    # PAN ID compression: a source PAN equal to the destination PAN is not sent, so it decodes as None.
    if frame.dst is not None and frame.src is not None and frame.src_pan == frame.dst_pan:
        return MacFrame(
            frame.frame_type,
            frame.seq,
            frame.dst_pan,
            frame.dst,
            None,
            frame.src,
            frame.ack_request,
            frame.frame_pending,
            frame.payload,
        )
    return frame


@pytest.mark.parametrize("frame", _mac_cases(), ids=repr)
def test_mac_round_trip(frame: MacFrame) -> None:
    raw = frame.encode()
    assert fcs(raw[:-2]) == struct.unpack("<H", raw[-2:])[0]
    decoded = MacFrame.decode(raw)
    assert decoded == _normalised(frame)
    assert decoded.encode() == raw
    if frame.src is not None:
        assert decoded.source_pan == (frame.src_pan if frame.src_pan is not None else frame.dst_pan)


def test_mac_header_lengths() -> None:
    short = MacFrame(MAC_DATA, 1, 0x1A62, 0x0001, None, 0x0000).encode()
    assert len(short) == 9 + 2  # FC 2, seq 1, PAN 2, dst 2, src 2, FCS 2
    ext = MacFrame(MAC_DATA, 1, 0x1A62, EXT_A, 0x1A63, EXT_B).encode()
    assert len(ext) == 3 + 2 + 8 + 2 + 8 + 2
    assert ext[:2] == b"\x01\xcc"  # no PAN ID compression, both modes extended
    broadcast = MacFrame(MAC_DATA, 1, 0x1A62, BROADCAST_SHORT, None, 0x0000).encode()
    assert broadcast[5:7] == b"\xff\xff"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "length"),
        (b"\x02\x00", "length"),
        (b"\x02\x00\x01\x00\x00", "fcs"),
        (bytes(128), "length"),
    ],
)
def test_mac_decode_errors(raw: bytes, field: str) -> None:
    with pytest.raises(FrameError) as info:
        MacFrame.decode(raw)
    assert info.value.layer == "MAC"
    assert info.value.field == field
    assert str(info.value).startswith("MAC: ")


def _with_fcs(body: bytes) -> bytes:
    return body + struct.pack("<H", reference_fcs(body))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x04\x00\x01", "reserved frame type"),
        (b"\x09\x00\x01", "security"),
        (b"\x01\x04\x01\x00\x00", "reserved addressing mode"),
        (b"\x01\x20\x01", "frame version"),
        (b"\x41\x88\x01\x62\x1a\x01\x00", "header needs"),
        (b"\x43\x88\x01\x62\x1a\x01\x00\x00\x00", "command identifier"),
    ],
)
def test_mac_decode_rejects(body: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        MacFrame.decode(_with_fcs(body))


def test_mac_decode_without_fcs_check() -> None:
    raw = bytearray(MacFrame(MAC_DATA, 3, 0x1A62, 1, None, 2, payload=b"abc").encode())
    raw[-1] ^= 0xFF
    with pytest.raises(FrameError, match="bad FCS"):
        MacFrame.decode(bytes(raw))
    assert MacFrame.decode(raw, check_fcs=False).payload == b"abc"  # type: ignore[arg-type]  # bytearray too


@pytest.mark.parametrize(
    "frame",
    [
        MacFrame(MAC_DATA, 1, None, 0x0001, None, 0x0000),  # dst without PAN
        MacFrame(MAC_DATA, 1, 0x1A62, None, None, 0x0000),  # dst PAN without dst
        MacFrame(MAC_DATA, 1, None, None, None, 0x0000),  # src only, no src PAN
        MacFrame(MAC_DATA, 1, 0x1A62, 0x0001, 0x1A62, None),  # src PAN without src
        MacFrame(MAC_DATA, 1, 0x1A62, b"\x01\x02", None, 0x0000),  # short extended address
        MacFrame(MAC_DATA, 256, 0x1A62, 0x0001, None, 0x0000),  # seq out of range
        MacFrame(MAC_DATA, 1, 0x1A62, 0x10000, None, 0x0000),  # address out of range
        MacFrame(MAC_COMMAND, 1, 0x1A62, 0x0001, None, 0x0000),  # command without id
        MacFrame(7, 1, 0x1A62, 0x0001, None, 0x0000),  # reserved type
        MacFrame(MAC_DATA, 1, 0x1A62, 0x0001, None, 0x0000, payload=bytes(120)),  # too long
    ],
    ids=repr,
)
def test_mac_encode_rejects(frame: MacFrame) -> None:
    with pytest.raises(FrameError):
        frame.encode()


def test_mac_ack_rejects_bad_seq() -> None:
    with pytest.raises(FrameError):
        mac_ack(256)


def test_frame_error_message_names_layer_field_offset() -> None:
    err = FrameError("truncated", "NWK", "relay list", 12)
    assert str(err) == "NWK: relay list at offset 12: truncated"
    assert (err.layer, err.field, err.offset, err.reason) == ("NWK", "relay list", 12, "truncated")
    assert str(FrameError("unsupported")) == "unsupported"
    assert isinstance(err, ValueError)


# ------------------------------------------------------------------------------------------- NWK


def test_nwk_known_bytes() -> None:
    # ZigBee spec 3.3.1.1: FC = type 00 (data) | version 0010 << 2 | discover route 01 << 6 = 0x0048.
    frame = NwkFrame(NWK_DATA, 0x1234, 0x0000, 30, 0x55, discover_route=1, payload=b"\xaa")
    assert frame.encode() == b"\x48\x00\x34\x12\x00\x00\x1e\x55\xaa"
    assert frame.header_bytes() == b"\x48\x00\x34\x12\x00\x00\x1e\x55"
    # Security (b9) and source IEEE (b12): FC 0x1208 on a command frame would be 0x1209.
    sec = NwkFrame(NWK_COMMAND, 0xFFFD, 0x0001, 1, 2, security=True, src_ieee=EXT_A, payload=b"\x28\x01")
    raw = sec.encode()
    assert raw[:2] == b"\x09\x12"
    assert raw[8:16] == EXT_A
    assert sec.header_bytes() == raw[:16]
    assert NwkFrame.decode(raw).payload == b"\x28\x01"


def _nwk_cases() -> list[NwkFrame]:
    cases = []
    for ft, dr, sec, dst_ieee, src_ieee, edi, mcast, relays in itertools.product(
        (NWK_DATA, NWK_COMMAND),
        (0, 1),
        (False, True),
        (None, EXT_A),
        (None, EXT_B),
        (False, True),
        (None, 0x0D),
        (None, (), (0x0001, 0x0002, 0xFFFE)),
    ):
        cases.append(
            NwkFrame(
                ft,
                NWK_BROADCAST_RX_ON if mcast is None else 0x1234,
                0x4321,
                7,
                250,
                dr,
                sec,
                dst_ieee,
                src_ieee,
                b"\x01payload",
                edi,
                mcast,
                relays,
                1 if relays else 0,
            )
        )
    return cases


@pytest.mark.parametrize("frame", _nwk_cases(), ids=repr)
def test_nwk_round_trip(frame: NwkFrame) -> None:
    raw = frame.encode()
    decoded = NwkFrame.decode(raw)
    assert decoded == frame
    assert raw == frame.header_bytes() + frame.payload


def test_nwk_source_route_layout() -> None:
    frame = NwkFrame(NWK_DATA, 0x0003, 0x0000, 5, 1, relays=(0x1111, 0x2222), relay_index=1, payload=b"x")
    raw = frame.encode()
    assert raw[1] & 0x04  # b10 source route
    assert raw[8:] == b"\x02\x01\x11\x11\x22\x22x"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x08\x00\x00\x00\x00\x00\x01", "fixed header"),
        (b"\x0b\x00\x00\x00\x00\x00\x01\x01", "inter-PAN"),
        (b"\x04\x00\x00\x00\x00\x00\x01\x01", "protocol version 1"),
        (b"\x08\x08\x00\x00\x00\x00\x01\x01\x01", "destination IEEE"),
        (b"\x08\x10\x00\x00\x00\x00\x01\x01" + bytes(7), "source IEEE"),
        (b"\x08\x04\x00\x00\x00\x00\x01\x01\x03\x00\x01\x00", "relay list"),
        (b"\x08\x04\x00\x00\x00\x00\x01\x01\x03", "source route"),
        (b"\x08\x01\x00\x00\x00\x00\x01\x01", "multicast"),
    ],
)
def test_nwk_decode_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason) as info:
        NwkFrame.decode(raw)
    assert info.value.layer == "NWK"


@pytest.mark.parametrize(
    "frame",
    [
        NwkFrame(2, 0, 0, 1, 1),
        NwkFrame(NWK_DATA, 0, 0, 1, 1, discover_route=4),
        NwkFrame(NWK_DATA, 0x10000, 0, 1, 1),
        NwkFrame(NWK_DATA, 0, 0, 256, 1),
        NwkFrame(NWK_DATA, 0, 0, 1, 1, dst_ieee=b"\x01"),
        NwkFrame(NWK_DATA, 0, 0, 1, 1, src_ieee=b"\x01" * 9),
        NwkFrame(NWK_DATA, 0, 0, 1, 1, relays=tuple(range(256))),
    ],
    ids=repr,
)
def test_nwk_encode_rejects(frame: NwkFrame) -> None:
    with pytest.raises(FrameError):
        frame.encode()


# ------------------------------------------------------------------------------------------- APS


def test_aps_known_bytes_from_scapy() -> None:
    # ZigbeeAppDataPayload vector from secdev/scapy test/scapy/layers/dot15d4.uts ("Zigbee -
    # ZigbeeAppDataPayload"): APS data with ack request, endpoint 1 -> 1, Basic cluster, HA profile,
    # counter 13, carrying a ZCL Read Attributes Response (ZCL version 1, manufacturer "sengled").
    raw = b"@\x01\x00\x00\x04\x01\x01\r\x18 \x01\x00\x00\x00 \x01\x04\x00\x00B\x07sengled"
    aps = ApsFrame.decode(raw)
    assert aps == ApsFrame(APS_DATA, APS_UNICAST, True, 1, 0x0000, 0x0104, 1, 13, payload=raw[8:])
    assert aps.encode() == raw
    zf = ZclFrame.decode(aps.payload)
    assert zf == ZclFrame(False, zcl.READ_ATTRIBUTES_RESPONSE, 0x20, True, True, None, raw[11:])
    assert zf.encode() == aps.payload
    assert zcl.decode_read_attributes_response(zf.payload) == [
        (0x0000, zcl.SUCCESS, zcl.UINT8, 1),
        (0x0004, zcl.SUCCESS, zcl.CHAR_STRING, "sengled"),
    ]
    assert zcl.encode_read_attributes_response(zcl.decode_read_attributes_response(zf.payload)) == zf.payload


def test_aps_layouts() -> None:
    # ZigBee spec 2.2.5.2.1 (data), 2.2.5.2.3 (ack), 2.2.5.2.2 (command)
    data = ApsFrame(APS_DATA, APS_UNICAST, True, 1, 0x0019, 0x0104, 1, 9, payload=b"p")
    assert data.encode() == b"\x40\x01\x19\x00\x04\x01\x01\x09p"
    group = ApsFrame(APS_DATA, APS_GROUP, False, None, 0x0006, 0x0104, 1, 9, group=0xABCD)
    assert group.encode() == b"\x0c\xcd\xab\x06\x00\x04\x01\x01\x09"
    ack = ApsFrame(APS_ACK, dst_endpoint=1, cluster=0x0019, profile=0x0104, src_endpoint=2, counter=9)
    assert ack.encode() == b"\x02\x01\x19\x00\x04\x01\x02\x09"
    cmd_ack = ApsFrame(APS_ACK, counter=9, ack_format=True)
    assert cmd_ack.encode() == b"\x12\x09"
    cmd = ApsFrame(APS_COMMAND, counter=4, payload=b"\x05key")
    assert cmd.encode() == b"\x01\x04\x05key"
    bcast = ApsFrame(APS_DATA, APS_BROADCAST, False, 0xFF, 0x0019, 0x0104, 1, 0, payload=b"")
    assert bcast.encode() == b"\x08\xff\x19\x00\x04\x01\x01\x00"
    frag = ApsFrame(APS_DATA, APS_UNICAST, True, 1, 0x0019, 0x0104, 1, 9, fragmentation=1, block_number=4)
    assert frag.encode() == b"\xc0\x01\x19\x00\x04\x01\x01\x09\x01\x04"
    frag_ack = ApsFrame(
        APS_ACK,
        APS_UNICAST,
        False,
        1,
        0x0019,
        0x0104,
        1,
        9,
        fragmentation=2,
        block_number=3,
        ack_bitfield=0x0F,
    )
    assert frag_ack.encode() == b"\x82\x01\x19\x00\x04\x01\x01\x09\x02\x03\x0f"
    assert ApsFrame(APS_DATA, APS_UNICAST, False, 1, 1, 1, 1, 1, security=True).header_bytes()[0] == 0x20


def _aps_cases() -> list[ApsFrame]:
    cases = []
    for delivery, ack_req, sec, frag in itertools.product(
        (APS_UNICAST, APS_BROADCAST, APS_GROUP), (False, True), (False, True), (None, 0, 1, 2)
    ):
        group = 0x0102 if delivery == APS_GROUP else None
        dst_ep = None if delivery == APS_GROUP else 0xFF if delivery == APS_BROADCAST else 1
        cases.append(
            ApsFrame(
                APS_DATA,
                delivery,
                ack_req,
                dst_ep,
                0x0019,
                0x0104,
                2,
                77,
                group,
                b"zcl",
                sec,
                fragmentation=frag,
                block_number=5 if frag else 0,
            )
        )
    for frag in (None, 0, 1, 2):
        cases.append(
            ApsFrame(
                APS_ACK,
                APS_UNICAST,
                False,
                2,
                0x0019,
                0x0104,
                1,
                77,
                fragmentation=frag,
                block_number=6 if frag else 0,
                ack_bitfield=0x81 if frag else 0,
            )
        )
    for delivery, sec in itertools.product((APS_UNICAST, APS_BROADCAST), (False, True)):
        cases.append(
            ApsFrame(APS_COMMAND, delivery, True, counter=3, payload=b"\x05" + bytes(20), security=sec)
        )
        cases.append(ApsFrame(APS_ACK, delivery, counter=3, security=sec, ack_format=True))
    return cases


@pytest.mark.parametrize("frame", _aps_cases(), ids=repr)
def test_aps_round_trip(frame: ApsFrame) -> None:
    raw = frame.encode()
    assert ApsFrame.decode(raw) == frame
    assert raw == frame.header_bytes() + frame.payload


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00", "shortest"),
        (b"\x03\x00", "inter-PAN"),
        (b"\x04\x01", "indirect"),
        (b"\x00\x01\x19\x00\x04\x01\x01", "header needs 8"),
        (b"\x0c\x01\x00\x19\x00\x04\x01\x01", "group data header"),
        (b"\x0e\x01\x00\x19\x00\x04\x01\x01\x00", "group"),
        (b"\x80\x01\x19\x00\x04\x01\x01\x01", "extended frame control"),
        (b"\x80\x01\x19\x00\x04\x01\x01\x01\x03", "reserved fragmentation"),
        (b"\x80\x01\x19\x00\x04\x01\x01\x01\x01", "block number"),
        (b"\x82\x01\x19\x00\x04\x01\x01\x01\x01\x00", "block number"),
    ],
)
def test_aps_decode_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason) as info:
        ApsFrame.decode(raw)
    assert info.value.layer == "APS"


@pytest.mark.parametrize(
    "frame",
    [
        ApsFrame(APS_DATA),  # unicast data without endpoints
        ApsFrame(3),
        ApsFrame(APS_DATA, delivery=1, dst_endpoint=1, cluster=1, profile=1, src_endpoint=1),
        ApsFrame(APS_ACK, APS_GROUP, group=1, cluster=1, profile=1, src_endpoint=1),
        ApsFrame(APS_DATA, dst_endpoint=256, cluster=1, profile=1, src_endpoint=1),
        ApsFrame(APS_DATA, dst_endpoint=1, cluster=1, profile=1, src_endpoint=1, fragmentation=3),
        ApsFrame(APS_COMMAND, counter=256),
    ],
    ids=repr,
)
def test_aps_encode_rejects(frame: ApsFrame) -> None:
    with pytest.raises(FrameError):
        frame.encode()


# ------------------------------------------------------------------------------------------- ZCL


def test_zcl_known_bytes() -> None:
    # ZCL 2.4.1.1: cluster specific (b0), manufacturer specific (b2), server->client (b3), DDR (b4).
    frame = ZclFrame(True, 0x05, 0x42, True, False, None, b"\x00")
    assert frame.encode() == b"\x09\x42\x05\x00"
    mfr = ZclFrame(False, 0x00, 0x01, False, True, 0x1234, b"\x00\x00")
    assert mfr.encode() == b"\x14\x34\x12\x01\x00\x00\x00"


@pytest.mark.parametrize(
    ("cs", "to_client", "ddr", "mfr"),
    list(itertools.product((False, True), (False, True), (False, True), (None, 0x1234))),
)
def test_zcl_round_trip(cs: bool, to_client: bool, ddr: bool, mfr: int | None) -> None:
    frame = ZclFrame(cs, 0x03, 0xFE, to_client, ddr, mfr, b"\x00\x34\x12")
    assert ZclFrame.decode(frame.encode()) == frame


def test_zcl_ignores_reserved_bits() -> None:
    assert ZclFrame.decode(b"\xe1\x01\x02") == ZclFrame(True, 2, 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00\x01", "needs 3"),
        (b"\x02\x01\x00", "reserved frame type"),
        (b"\x04\x01\x00\x01", "manufacturer"),
    ],
)
def test_zcl_decode_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        ZclFrame.decode(raw)


@pytest.mark.parametrize(
    "frame",
    [ZclFrame(True, 256, 0), ZclFrame(True, 1, -1), ZclFrame(True, 1, 0, manufacturer_code=0x10000)],
    ids=repr,
)
def test_zcl_encode_rejects(frame: ZclFrame) -> None:
    with pytest.raises(FrameError):
        frame.encode()


# ----------------------------------------------------------------------------------- ZCL data types

VALUE_CASES: list[tuple[int, object, bytes]] = [
    (zcl.BOOL, False, b"\x00"),
    (zcl.BOOL, True, b"\x01"),
    (zcl.BOOL, None, b"\xff"),
    (zcl.MAP8, 0xA5, b"\xa5"),
    (zcl.MAP16, 0x1234, b"\x34\x12"),
    (zcl.DATA8, 7, b"\x07"),
    (zcl.UINT8, 255, b"\xff"),
    (zcl.UINT16, 0xBEEF, b"\xef\xbe"),
    (zcl.UINT24, 0x123456, b"\x56\x34\x12"),
    (zcl.UINT32, 0x01020304, b"\x04\x03\x02\x01"),
    (zcl.UINT48, 0x010203040506, b"\x06\x05\x04\x03\x02\x01"),
    (zcl.UINT64, 2**64 - 1, b"\xff" * 8),
    (zcl.INT8, -1, b"\xff"),
    (zcl.INT16, -2, b"\xfe\xff"),
    (zcl.INT24, -0x800000, b"\x00\x00\x80"),
    (zcl.INT32, -(2**31), b"\x00\x00\x00\x80"),
    (zcl.ENUM8, 3, b"\x03"),
    (zcl.ENUM16, 0x0102, b"\x02\x01"),
    (zcl.SINGLE_FLOAT, 1.5, b"\x00\x00\xc0\x3f"),
    (zcl.DOUBLE_FLOAT, -2.0, b"\x00" * 7 + b"\xc0"),
    (zcl.SEMI_FLOAT, 1.0, b"\x00\x3c"),
    (zcl.OCTET_STRING, b"\x01\x02", b"\x02\x01\x02"),
    (zcl.OCTET_STRING, b"", b"\x00"),
    (zcl.OCTET_STRING, None, b"\xff"),
    (zcl.CHAR_STRING, "Althan", b"\x06Althan"),
    (zcl.CHAR_STRING, None, b"\xff"),
    (zcl.LONG_OCTET_STRING, b"\xaa", b"\x01\x00\xaa"),
    (zcl.LONG_CHAR_STRING, "ok", b"\x02\x00ok"),
    (zcl.UTC_TIME, 0x2A000000, b"\x00\x00\x00\x2a"),
    (zcl.CLUSTER_ID, 0x0019, b"\x19\x00"),
    (zcl.ATTRIBUTE_ID, 0x0002, b"\x02\x00"),
    (zcl.IEEE_ADDRESS, EXT_A, EXT_A),
    (zcl.SECURITY_KEY, bytes(range(16)), bytes(range(16))),
]


@pytest.mark.parametrize(("type_id", "value", "raw"), VALUE_CASES)
def test_zcl_value_known_bytes(type_id: int, value: object, raw: bytes) -> None:
    assert zcl.encode_value(type_id, value) == raw
    assert zcl.decode_value(type_id, b"\x99" + raw + b"\x77", 1) == (value, 1 + len(raw))


@pytest.mark.parametrize(
    ("type_id", "value"),
    [
        (zcl.UINT8, 256),
        (zcl.UINT8, -1),
        (zcl.INT16, 40000),
        (zcl.UINT16, "1"),
        (zcl.BOOL, 1),
        (zcl.CHAR_STRING, b"bytes"),
        (zcl.OCTET_STRING, "text"),
        (zcl.OCTET_STRING, bytes(255)),
        (zcl.IEEE_ADDRESS, b"\x01"),
        (zcl.SINGLE_FLOAT, "x"),
        (0x4C, [1]),  # struct: unsupported
    ],
)
def test_zcl_value_encode_rejects(type_id: int, value: object) -> None:
    with pytest.raises(FrameError):
        zcl.encode_value(type_id, value)


@pytest.mark.parametrize(
    ("type_id", "raw", "field"),
    [
        (zcl.UINT16, b"\x01", "value"),
        (zcl.UINT24, b"\x01\x02", "value"),
        (zcl.BOOL, b"\x02", "bool value"),
        (zcl.CHAR_STRING, b"\x05abc", "string"),
        (zcl.CHAR_STRING, b"\x01\xff", "value"),  # not UTF-8
        (zcl.LONG_OCTET_STRING, b"\x01", "value"),
        (zcl.IEEE_ADDRESS, b"\x01" * 7, "value"),
        (zcl.UINT8, b"", "value"),
        (0x4C, b"\x00", "data type"),
    ],
)
def test_zcl_value_decode_rejects(type_id: int, raw: bytes, field: str) -> None:
    with pytest.raises(FrameError) as info:
        zcl.decode_value(type_id, raw, 0)
    assert info.value.field == field
    assert info.value.layer == "ZCL"


def test_every_supported_type_round_trips() -> None:
    samples = {bytes: b"\x01" * 8}
    for type_id in sorted(zcl.SUPPORTED_TYPES):
        if type_id == zcl.BOOL:
            value: object = True
        elif type_id in (zcl.SEMI_FLOAT, zcl.SINGLE_FLOAT, zcl.DOUBLE_FLOAT):
            value = 0.5
        elif type_id in (zcl.OCTET_STRING, zcl.LONG_OCTET_STRING, zcl.IEEE_ADDRESS):
            value = samples[bytes]
        elif type_id == zcl.SECURITY_KEY:
            value = bytes(16)
        elif type_id in (zcl.CHAR_STRING, zcl.LONG_CHAR_STRING):
            value = "é"
        else:
            value = 1
        raw = zcl.encode_value(type_id, value)
        assert zcl.decode_value(type_id, raw) == (value, len(raw)), hex(type_id)


# --------------------------------------------------------------------------- ZCL global commands


def test_read_attributes() -> None:
    assert zcl.encode_read_attributes([0x0000, 0x0004]) == b"\x00\x00\x04\x00"
    assert zcl.decode_read_attributes(b"\x00\x00\x04\x00") == [0x0000, 0x0004]
    assert zcl.decode_read_attributes(b"") == []
    with pytest.raises(FrameError, match="odd"):
        zcl.decode_read_attributes(b"\x00\x00\x04")


def test_read_attributes_response_layout() -> None:
    records = [
        (0x0002, zcl.SUCCESS, zcl.UINT32, 0x01020000),
        (0x0099, zcl.UNSUPPORTED_ATTRIBUTE, None, None),
        (0x0006, zcl.SUCCESS, zcl.ENUM8, 1),
    ]
    raw = zcl.encode_read_attributes_response(records)
    # ZCL 2.5.2.1: attr id, status, [type, value] only for SUCCESS
    assert raw == b"\x02\x00\x00\x23\x00\x00\x02\x01" + b"\x99\x00\x86" + b"\x06\x00\x00\x30\x01"
    assert zcl.decode_read_attributes_response(raw) == records
    with pytest.raises(FrameError):
        zcl.decode_read_attributes_response(raw[:-1])
    with pytest.raises(FrameError):
        zcl.encode_read_attributes_response([(1, zcl.SUCCESS, None, 1)])


def test_write_attributes() -> None:
    raw = zcl.encode_write_attributes([(0x0000, zcl.UINT32, 64), (0x0010, zcl.CHAR_STRING, "x")])
    assert raw == b"\x00\x00\x23\x40\x00\x00\x00" + b"\x10\x00\x42\x01x"
    assert zcl.decode_write_attributes(raw) == [(0x0000, zcl.UINT32, 64), (0x0010, zcl.CHAR_STRING, "x")]
    with pytest.raises(FrameError, match="data type"):
        zcl.decode_write_attributes(b"\x00\x00\x4c\x00")
    with pytest.raises(FrameError):
        zcl.decode_write_attributes(b"\x00\x00")


def test_write_attributes_response() -> None:
    # ZCL 2.5.5.1: all success -> one SUCCESS byte; else (status, attr id) records for failures only.
    assert zcl.encode_write_attributes_response([(zcl.SUCCESS, 1), (zcl.SUCCESS, 2)]) == b"\x00"
    assert zcl.encode_write_attributes_response([]) == b"\x00"
    raw = zcl.encode_write_attributes_response([(zcl.SUCCESS, 1), (zcl.READ_ONLY, 2), (zcl.INVALID_VALUE, 3)])
    assert raw == b"\x88\x02\x00\x87\x03\x00"
    assert zcl.decode_write_attributes_response(raw) == [(zcl.READ_ONLY, 2), (zcl.INVALID_VALUE, 3)]
    assert zcl.decode_write_attributes_response(b"\x00") == []
    with pytest.raises(FrameError):
        zcl.decode_write_attributes_response(b"\x88\x02")


def test_report_attributes() -> None:
    raw = zcl.encode_report_attributes([(0x0000, zcl.UINT48, 123456)])
    assert raw == b"\x00\x00\x25" + (123456).to_bytes(6, "little")
    assert zcl.decode_report_attributes(raw) == [(0x0000, zcl.UINT48, 123456)]


def test_configure_reporting() -> None:
    records = [
        zcl.ReportingConfig(zcl.REPORT_SEND, 0x0000, zcl.UINT16, 1, 300, 5),
        zcl.ReportingConfig(zcl.REPORT_SEND, 0x0001, zcl.BOOL, 0, 60),  # discrete: no reportable change
        zcl.ReportingConfig(zcl.REPORT_RECEIVE, 0x0002, timeout=900),
    ]
    raw = zcl.encode_configure_reporting(records)
    # ZCL 2.5.7.1: direction, attr, type, min, max, [change]; direction 1: direction, attr, timeout
    assert raw == (
        b"\x00\x00\x00\x21\x01\x00\x2c\x01\x05\x00"
        + b"\x00\x01\x00\x10\x00\x00\x3c\x00"
        + b"\x01\x02\x00\x84\x03"
    )
    assert zcl.decode_configure_reporting(raw) == records
    with pytest.raises(FrameError, match="direction"):
        zcl.decode_configure_reporting(b"\x02\x00\x00")
    with pytest.raises(FrameError):
        zcl.decode_configure_reporting(raw[:-1])
    with pytest.raises(FrameError):
        zcl.encode_configure_reporting([zcl.ReportingConfig(zcl.REPORT_SEND, 0)])
    # Configure Reporting Response (2.5.8): single SUCCESS or (status, direction, attr) for failures.
    assert zcl.encode_configure_reporting_response([(zcl.SUCCESS, 0, 1)]) == b"\x00"
    rsp = zcl.encode_configure_reporting_response([(zcl.UNREPORTABLE_ATTRIBUTE, 0, 0x0005)])
    assert rsp == b"\x8c\x00\x05\x00"
    assert zcl.decode_configure_reporting_response(rsp) == [(zcl.UNREPORTABLE_ATTRIBUTE, 0, 0x0005)]
    assert zcl.decode_configure_reporting_response(b"\x00") == []


def test_default_response_and_discover() -> None:
    assert zcl.encode_default_response(0x03, zcl.UNSUP_CLUSTER_COMMAND) == b"\x03\x81"
    assert zcl.decode_default_response(b"\x03\x81") == (0x03, 0x81)
    with pytest.raises(FrameError):
        zcl.decode_default_response(b"\x03")
    with pytest.raises(FrameError):
        zcl.encode_default_response(256, 0)
    assert zcl.decode_discover_attributes(zcl.encode_discover_attributes(0x0000, 16)) == (0, 16)
    raw = zcl.encode_discover_attributes_response(True, [(0x0000, zcl.UINT32), (0x0006, zcl.ENUM8)])
    assert raw == b"\x01\x00\x00\x23\x06\x00\x30"
    assert zcl.decode_discover_attributes_response(raw) == (True, [(0x0000, zcl.UINT32), (0x0006, zcl.ENUM8)])


def test_status_and_command_constants() -> None:
    assert (zcl.READ_ATTRIBUTES, zcl.READ_ATTRIBUTES_RESPONSE, zcl.WRITE_ATTRIBUTES) == (0x00, 0x01, 0x02)
    assert (zcl.WRITE_ATTRIBUTES_RESPONSE, zcl.CONFIGURE_REPORTING, zcl.DEFAULT_RESPONSE) == (
        0x04,
        0x06,
        0x0B,
    )
    assert (zcl.SUCCESS, zcl.FAILURE, zcl.MALFORMED_COMMAND) == (0x00, 0x01, 0x80)
    assert (zcl.UNSUP_CLUSTER_COMMAND, zcl.UNSUP_GENERAL_COMMAND, zcl.UNSUPPORTED_ATTRIBUTE) == (
        0x81,
        0x82,
        0x86,
    )
    assert (zcl.INVALID_VALUE, zcl.READ_ONLY) == (0x87, 0x88)
    assert (zcl.BOOL, zcl.MAP8, zcl.UINT8, zcl.UINT16, zcl.UINT24, zcl.UINT32) == (
        0x10,
        0x18,
        0x20,
        0x21,
        0x22,
        0x23,
    )
    assert (zcl.INT16, zcl.ENUM8, zcl.ENUM16, zcl.OCTET_STRING, zcl.CHAR_STRING) == (
        0x29,
        0x30,
        0x31,
        0x41,
        0x42,
    )
    assert (zcl.UTC_TIME, zcl.IEEE_ADDRESS) == (0xE2, 0xF0)


# ------------------------------------------------------------------------------------------- ZDO


def test_node_descriptor_layout() -> None:
    # ZigBee spec 2.3.2.3 (13 bytes): router, 2.4 GHz, capability FFD|mains|rx-on|allocate = 0x8E,
    # manufacturer 0x1234, buffer 82, incoming 82, server mask rev 22 (0x2C00), outgoing 82, dcap 0.
    desc = zdo.NodeDescriptor(
        logical_type=zdo.LOGICAL_ROUTER,
        mac_capability_flags=zdo.CAP_FFD
        | zdo.CAP_MAINS_POWER
        | zdo.CAP_RX_ON_WHEN_IDLE
        | zdo.CAP_ALLOCATE_ADDRESS,
        manufacturer_code=0x1234,
        max_buffer_size=82,
        max_incoming_transfer_size=82,
        server_mask=0x2C00,
        max_outgoing_transfer_size=82,
        descriptor_capability=0,
    )
    raw = desc.encode()
    assert raw == bytes.fromhex("01408e3412525200002c520000")
    assert len(raw) == zdo.NodeDescriptor.SIZE
    assert zdo.NodeDescriptor.decode(raw) == desc
    end_device = zdo.NodeDescriptor(zdo.LOGICAL_END_DEVICE, complex_descriptor_available=True, aps_flags=0)
    assert end_device.encode()[0] == 0x0A
    assert zdo.NodeDescriptor.decode(end_device.encode()) == end_device
    with pytest.raises(FrameError):
        zdo.NodeDescriptor.decode(raw[:12])
    with pytest.raises(FrameError):
        zdo.NodeDescriptor(8).encode()


def test_node_desc_rsp() -> None:
    desc = zdo.NodeDescriptor(zdo.LOGICAL_END_DEVICE, manufacturer_code=0x1001)
    raw = zdo.encode_node_desc_rsp(0x11, zdo.SUCCESS, 0xABCD, desc)
    assert raw[:4] == b"\x11\x00\xcd\xab" and len(raw) == 17
    assert zdo.decode_node_desc_rsp(raw) == (0x11, zdo.SUCCESS, 0xABCD, desc)
    err = zdo.encode_node_desc_rsp(0x11, zdo.DEVICE_NOT_FOUND, 0xABCD, None)
    assert err == b"\x11\x81\xcd\xab"
    assert zdo.decode_node_desc_rsp(err) == (0x11, zdo.DEVICE_NOT_FOUND, 0xABCD, None)


def test_simple_descriptor_and_rsp() -> None:
    sd = zdo.SimpleDescriptor(1, 0x0104, 0x0008, 1, [0x0000, 0x0003], [0x0019])
    raw = sd.encode()
    # 2.3.2.5: endpoint, profile, device id, version (4 bits), in count, in list, out count, out list
    assert raw == b"\x01\x04\x01\x08\x00\x01\x02\x00\x00\x03\x00\x01\x19\x00"
    assert zdo.SimpleDescriptor.decode(raw) == sd
    rsp = zdo.encode_simple_desc_rsp(5, zdo.SUCCESS, 0x1234, sd)
    assert rsp == b"\x05\x00\x34\x12" + bytes([len(raw)]) + raw
    assert zdo.decode_simple_desc_rsp(rsp) == (5, zdo.SUCCESS, 0x1234, sd)
    not_active = zdo.encode_simple_desc_rsp(5, zdo.NOT_ACTIVE, 0x1234, None)
    assert not_active == b"\x05\x83\x34\x12\x00"
    assert zdo.decode_simple_desc_rsp(not_active) == (5, zdo.NOT_ACTIVE, 0x1234, None)
    with pytest.raises(FrameError):
        zdo.decode_simple_desc_rsp(rsp[:-1])
    with pytest.raises(FrameError):
        zdo.decode_simple_desc_rsp(rsp[:4] + bytes([len(raw) + 1]) + raw + b"\x00")
    assert zdo.decode_simple_desc_req(zdo.encode_simple_desc_req(9, 0x1234, 1)) == (9, 0x1234, 1)


def test_active_ep_and_match_desc() -> None:
    assert zdo.encode_active_ep_rsp(3, zdo.SUCCESS, 0x0001, [1, 242]) == b"\x03\x00\x01\x00\x02\x01\xf2"
    assert zdo.decode_active_ep_rsp(b"\x03\x00\x01\x00\x02\x01\xf2") == (3, 0, 1, [1, 242])
    assert zdo.encode_active_ep_rsp(3, zdo.DEVICE_NOT_FOUND, 0x0001, [1]) == b"\x03\x81\x01\x00\x00"
    assert zdo.decode_nwk_addr_of_interest(zdo.encode_nwk_addr_of_interest(4, 0x1234)) == (4, 0x1234)
    req = zdo.encode_match_desc_req(6, 0xFFFD, 0x0104, [], [0x0019])
    assert req == b"\x06\xfd\xff\x04\x01\x00\x01\x19\x00"
    assert zdo.decode_match_desc_req(req) == (6, 0xFFFD, 0x0104, [], [0x0019])
    assert zdo.decode_match_desc_rsp(zdo.encode_match_desc_rsp(6, 0, 0x0000, [1])) == (6, 0, 0, [1])


def test_address_requests_and_responses() -> None:
    req = zdo.encode_nwk_addr_req(1, EXT_A)
    assert req == b"\x01" + EXT_A + b"\x00\x00"
    assert zdo.decode_nwk_addr_req(req) == (1, EXT_A, zdo.REQUEST_SINGLE, 0)
    assert zdo.decode_ieee_addr_req(zdo.encode_ieee_addr_req(2, 0x1234, zdo.REQUEST_EXTENDED, 3)) == (
        2,
        0x1234,
        zdo.REQUEST_EXTENDED,
        3,
    )
    single = zdo.encode_ieee_addr_rsp(2, zdo.SUCCESS, EXT_A, 0x1234)
    assert single == b"\x02\x00" + EXT_A + b"\x34\x12"
    assert zdo.decode_addr_rsp(single) == (2, 0, EXT_A, 0x1234, None, 0)
    ext = zdo.encode_nwk_addr_rsp(3, zdo.SUCCESS, EXT_A, 0x0000, [0x1111, 0x2222], start_index=0)
    assert ext == b"\x03\x00" + EXT_A + b"\x00\x00" + b"\x02\x00\x11\x11\x22\x22"
    assert zdo.decode_addr_rsp(ext) == (3, 0, EXT_A, 0, [0x1111, 0x2222], 0)
    none = zdo.encode_nwk_addr_rsp(3, zdo.SUCCESS, EXT_A, 0x0000, [])
    assert none.endswith(b"\x00") and len(none) == 13
    assert zdo.decode_addr_rsp(none)[4] == []
    with pytest.raises(FrameError):
        zdo.encode_nwk_addr_rsp(3, 0, b"\x01", 0)


def test_device_annce() -> None:
    raw = zdo.encode_device_annce(7, 0x1234, EXT_A, 0x8E)
    assert raw == b"\x07\x34\x12" + EXT_A + b"\x8e"
    assert zdo.decode_device_annce(raw) == (7, 0x1234, EXT_A, 0x8E)
    with pytest.raises(FrameError):
        zdo.decode_device_annce(raw[:-1])


def test_mgmt_lqi() -> None:
    nb = zdo.Neighbour(EXT_B, EXT_A, 0x1234, zdo.NEIGHBOUR_ROUTER, 1, zdo.RELATION_SIBLING, 2, 1, 200)
    raw = nb.encode()
    # 2.4.4.3.2: ext PAN 8, ext addr 8, nwk 2, type|rx<<2|rel<<4, permit join, depth, LQI = 22 bytes
    assert raw == EXT_B + EXT_A + b"\x34\x12" + bytes([0x01 | 0x04 | 0x20, 0x02, 0x01, 200])
    assert len(raw) == zdo.Neighbour.SIZE
    rsp = zdo.encode_mgmt_lqi_rsp(9, zdo.SUCCESS, 3, 1, [nb, nb])
    assert rsp[:5] == b"\x09\x00\x03\x01\x02" and len(rsp) == 5 + 44
    assert zdo.decode_mgmt_lqi_rsp(rsp) == (9, 0, 3, 1, [nb, nb])
    assert zdo.encode_mgmt_lqi_rsp(9, zdo.NOT_SUPPORTED, 0, 0, []) == b"\x09\x84"
    assert zdo.decode_mgmt_lqi_req(zdo.encode_mgmt_lqi_req(9, 4)) == (9, 4)
    with pytest.raises(FrameError):
        zdo.decode_mgmt_lqi_rsp(rsp[:-1])


def test_mgmt_leave_and_permit_joining() -> None:
    raw = zdo.encode_mgmt_leave_req(1, EXT_A, remove_children=False, rejoin=True)
    assert raw == b"\x01" + EXT_A + b"\x80"
    assert zdo.decode_mgmt_leave_req(raw) == (1, EXT_A, False, True)
    assert zdo.encode_mgmt_leave_rsp(1, zdo.SUCCESS) == b"\x01\x00"
    assert zdo.decode_mgmt_permit_joining_req(zdo.encode_mgmt_permit_joining_req(2, 60)) == (2, 60, True)
    assert zdo.encode_mgmt_permit_joining_rsp(2, zdo.SUCCESS) == b"\x02\x00"
    assert zdo.decode_status_rsp(b"\x02\x84") == (2, zdo.NOT_SUPPORTED)
    assert zdo.decode_tsn(b"\x42") == 0x42


def test_zdo_constants() -> None:
    assert (zdo.NWK_ADDR_REQ, zdo.IEEE_ADDR_REQ, zdo.NODE_DESC_REQ, zdo.SIMPLE_DESC_REQ) == (0, 1, 2, 4)
    assert (zdo.ACTIVE_EP_REQ, zdo.DEVICE_ANNCE, zdo.MGMT_LQI_REQ) == (5, 0x13, 0x31)
    assert (zdo.MGMT_LEAVE_REQ, zdo.MGMT_PERMIT_JOINING_REQ) == (0x34, 0x36)
    assert zdo.NODE_DESC_RSP == 0x8002 and zdo.MGMT_LQI_RSP == 0x8031
    assert (zdo.SUCCESS, zdo.INV_REQUESTTYPE, zdo.DEVICE_NOT_FOUND, zdo.NOT_SUPPORTED) == (
        0,
        0x80,
        0x81,
        0x84,
    )


def test_full_stack_nesting() -> None:
    """MAC(NWK(APS(ZCL))) built and parsed back layer by layer."""
    zf = ZclFrame(True, 0x05, 3, True, payload=b"\x00\x34\x12")
    aps = ApsFrame(APS_DATA, APS_UNICAST, True, 1, 0x0019, 0x0104, 1, 8, payload=zf.encode())
    nwk = NwkFrame(NWK_DATA, 0x1234, 0x0000, 30, 9, payload=aps.encode())
    raw = MacFrame(MAC_DATA, 10, 0x1A62, 0x0001, None, 0x0000, True, payload=nwk.encode()).encode()
    mac = MacFrame.decode(raw)
    assert ZclFrame.decode(ApsFrame.decode(NwkFrame.decode(mac.payload).payload).payload) == zf
