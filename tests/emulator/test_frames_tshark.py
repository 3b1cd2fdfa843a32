"""tshark as an independent oracle for the emulator's frame codecs.

The frames are built with the codecs under test, written to a pcap of link type 195 (IEEE 802.15.4
with FCS) whose file and record headers are packed here by hand, and dissected by Wireshark's
dissectors (wpan, zbee_nwk, zbee_aps, zbee_zcl, zbee_zdp). tshark must find every FCS good and read
back every field value we put in, so a bit-layout mistake cannot hide behind a symmetric
encoder/decoder pair.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from testbeds.emulator import zcl_types as zcl
from testbeds.emulator import zdo
from testbeds.emulator.frames import (
    APS_BROADCAST,
    APS_DATA,
    APS_UNICAST,
    BROADCAST_SHORT,
    MAC_COMMAND,
    MAC_DATA,
    NWK_BROADCAST_RX_ON,
    NWK_DATA,
    ApsFrame,
    MacFrame,
    NwkFrame,
    ZclFrame,
    mac_ack,
)

pytestmark = pytest.mark.tshark

PAN = 0x1A62
LINKTYPE_IEEE802_15_4_WITHFCS = 195
DEVICE_IEEE = bytes.fromhex("0807060504030201")  # on air, little-endian: EUI-64 01:02:03:04:05:06:07:08
DEVICE_EUI64 = "01:02:03:04:05:06:07:08"
COORD_IEEE = bytes.fromhex("1122334455667788")
COORD_EUI64 = "88:77:66:55:44:33:22:11"

FIELDS = [
    "frame.number",
    "wpan.fcs_ok",
    "wpan.frame_type",
    "wpan.seq_no",
    "wpan.ack_request",
    "wpan.pan_id_compression",
    "wpan.dst_pan",
    "wpan.dst16",
    "wpan.src16",
    "wpan.dst64",
    "wpan.src64",
    "wpan.cmd",
    "zbee_nwk.dst",
    "zbee_nwk.src",
    "zbee_nwk.radius",
    "zbee_nwk.seqno",
    "zbee_nwk.discovery",
    "zbee_nwk.src64",
    "zbee_aps.dst",
    "zbee_aps.src",
    "zbee_aps.cluster",
    "zbee_aps.zdp_cluster",
    "zbee_aps.profile",
    "zbee_aps.counter",
    "zbee_aps.ack_req",
    "zbee_zcl.cmd.tsn",
    "zbee_zcl.cmd.id",
    "zbee_zcl_general.ota.cmd.srv_tx.id",
    "zbee_zcl_general.ota.cmd.srv_rx.id",
    "zbee_zcl_general.ota.status",
    "zbee_zcl_general.ota.manufacturer_code",
    "zbee_zcl_general.ota.image.type",
    "zbee_zcl_general.ota.file.version",
    "zbee_zcl_general.ota.file.offset",
    "zbee_zcl_general.ota.data_size",
    "zbee_zcl_general.ota.image.data",
    "zbee_zcl_general.ota.max_data_size",
    "zbee_zdp.seqno",
    "zbee_zdp.status",
    "zbee_zdp.nwk_addr",
    "zbee_zdp.ext_addr",
    "zbee_zdp.node.type",
    "zbee_zdp.node.manufacturer",
    "zbee_zdp.node.max_buffer",
    "zbee_zdp.node.max_incoming_transfer",
    "zbee_zdp.node.max_outgoing_transfer",
    "zbee_zdp.cinfo",
    "zbee_zdp.server",
    "zbee_zcl_general.basic.attr_id",
    "zbee_zcl.attr.status",
    "zbee_zcl.attr.data.type",
    "zbee_zcl.attr.uint8",
    "zbee_zcl.attr.str",
    "_ws.expert.message",
    "_ws.malformed",
]


def _stack(
    mac_seq: int, mac_dst: int, mac_src: int, nwk: NwkFrame, aps: ApsFrame, zcl_frame: ZclFrame | None
) -> bytes:
    if zcl_frame is not None:
        aps.payload = zcl_frame.encode()
    nwk.payload = aps.encode()
    return MacFrame(
        MAC_DATA, mac_seq, PAN, mac_dst, None, mac_src, mac_dst != BROADCAST_SHORT, payload=nwk.encode()
    ).encode()


def _frames() -> list[bytes]:
    # 1: Image Block Response, CH (0x0000) -> B1 (0x0001) -> device 0x1234.
    # OTA 11.13.8.1: status, manufacturer code, image type, file version, file offset, data size, data.
    block_rsp = struct.pack("<BHHIIB", 0x00, 0x1234, 0x0001, 0x01020000, 64, 3) + b"\x01\x02\x03"
    f1 = _stack(
        10,
        0x0001,
        0x0000,
        NwkFrame(NWK_DATA, 0x1234, 0x0000, 30, 101, discover_route=1),
        ApsFrame(APS_DATA, APS_UNICAST, False, 1, 0x0019, 0x0104, 1, 5),
        ZclFrame(True, 0x05, 7, to_client=True, payload=block_rsp),
    )
    f2 = mac_ack(10)
    f3 = MacFrame(MAC_COMMAND, 11, PAN, 0x0000, None, 0x1234, True, False, b"\x04").encode()  # Data Request
    # 4: Image Block Request, device -> CH (OTA 11.13.6.1: field control, mfr, type, version, offset, max).
    block_req = struct.pack("<BHHIIB", 0x00, 0x1234, 0x0001, 0x01020000, 64, 50)
    f4 = _stack(
        12,
        0x0000,
        0x1234,
        NwkFrame(NWK_DATA, 0x0000, 0x1234, 30, 102, discover_route=1),
        ApsFrame(APS_DATA, APS_UNICAST, True, 1, 0x0019, 0x0104, 1, 6),
        ZclFrame(True, 0x03, 8, payload=block_req),
    )
    # 5: ZDO Node_Desc_rsp.
    desc = zdo.NodeDescriptor(
        zdo.LOGICAL_ROUTER,
        mac_capability_flags=zdo.CAP_FFD
        | zdo.CAP_MAINS_POWER
        | zdo.CAP_RX_ON_WHEN_IDLE
        | zdo.CAP_ALLOCATE_ADDRESS,
        manufacturer_code=0x1234,
        max_buffer_size=82,
        max_incoming_transfer_size=100,
        server_mask=0x2C00,
        max_outgoing_transfer_size=90,
    )
    aps5 = ApsFrame(APS_DATA, APS_UNICAST, False, 0, zdo.NODE_DESC_RSP, zdo.ZDO_PROFILE, 0, 7)
    aps5.payload = zdo.encode_node_desc_rsp(9, zdo.SUCCESS, 0x1234, desc)
    f5 = _stack(13, 0x0000, 0x1234, NwkFrame(NWK_DATA, 0x0000, 0x1234, 30, 103), aps5, None)
    # 6: Read Attributes Response (Basic cluster): one uint8, one string, one unsupported attribute.
    rar = zcl.encode_read_attributes_response(
        [
            (0x0000, zcl.SUCCESS, zcl.UINT8, 8),
            (0x0004, zcl.SUCCESS, zcl.CHAR_STRING, "Althan"),
            (0x0099, zcl.UNSUPPORTED_ATTRIBUTE, None, None),
        ]
    )
    f6 = _stack(
        14,
        0x0000,
        0x1234,
        NwkFrame(NWK_DATA, 0x0000, 0x1234, 30, 104),
        ApsFrame(APS_DATA, APS_UNICAST, False, 1, 0x0000, 0x0104, 1, 8),
        ZclFrame(False, zcl.READ_ATTRIBUTES_RESPONSE, 9, to_client=True, payload=rar),
    )
    # 7: Device_annce broadcast with the source IEEE in the NWK header (checks EUI-64 byte order).
    aps7 = ApsFrame(APS_DATA, APS_BROADCAST, False, 0xFF, zdo.DEVICE_ANNCE, zdo.ZDO_PROFILE, 0, 9)
    aps7.payload = zdo.encode_device_annce(3, 0x1234, DEVICE_IEEE, 0x8E)
    f7 = _stack(
        15,
        BROADCAST_SHORT,
        0x1234,
        NwkFrame(NWK_DATA, NWK_BROADCAST_RX_ON, 0x1234, 30, 105, src_ieee=DEVICE_IEEE),
        aps7,
        None,
    )
    # 8: MAC data frame with extended addresses and distinct PANs (no PAN ID compression).
    nwk8 = NwkFrame(NWK_DATA, 0x0000, 0x1234, 1, 106)
    nwk8.payload = ApsFrame(
        APS_DATA, APS_UNICAST, False, 1, 0x0000, 0x0104, 1, 10, payload=b"\x10\x01\x00\x00\x00"
    ).encode()
    f8 = MacFrame(MAC_DATA, 16, 0xFFFF, COORD_IEEE, PAN, DEVICE_IEEE, True, payload=nwk8.encode()).encode()
    return [f1, f2, f3, f4, f5, f6, f7, f8]


def _write_pcap(path: Path, frames: list[bytes]) -> None:
    # libpcap format: global header (magic, version 2.4, thiszone, sigfigs, snaplen, link type), then
    # per record ts_sec, ts_usec, captured length, original length, data.
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_IEEE802_15_4_WITHFCS))
        for i, frame in enumerate(frames):
            fh.write(struct.pack("<IIII", 1_700_000_000 + i, 1000 * i, len(frame), len(frame)))
            fh.write(frame)


def _tshark(pcap: Path, home: Path) -> list[dict[str, str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip(
            "tshark not installed: the independent decoder check did not run; apt-get install tshark",
        )
    cmd = [tshark, "-r", str(pcap), "-T", "fields", "-E", "separator=,", "-E", "aggregator=;"]
    for name in FIELDS:
        cmd += ["-e", name]
    # A private profile folder so a user's Wireshark preferences (decode-as, keys) cannot interfere.
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rows = []
    for line in result.stdout.splitlines():
        values = line.split(",")
        assert len(values) == len(FIELDS), line
        rows.append(dict(zip(FIELDS, values, strict=True)))
    return rows


def _int(value: str) -> int:
    return int(value, 0)


def _true(value: str) -> bool:
    return value in ("1", "True")  # tshark 4.0 prints 1, newer releases True


@pytest.fixture(scope="module")
def dissected(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("tshark")
    pcap = tmp / "frames.pcap"
    _write_pcap(pcap, _frames())
    return _tshark(pcap, tmp)


def test_every_frame_dissects_with_a_good_fcs_and_no_warning(dissected: list[dict[str, str]]) -> None:
    assert len(dissected) == 8
    for row in dissected:
        assert _true(row["wpan.fcs_ok"]), row
        assert row["_ws.malformed"] == "", row
        assert row["_ws.expert.message"] == "", row


def test_image_block_response(dissected: list[dict[str, str]]) -> None:
    row = dissected[0]
    assert _int(row["wpan.frame_type"]) == 1 and _int(row["wpan.seq_no"]) == 10
    assert _true(row["wpan.ack_request"]) and _true(row["wpan.pan_id_compression"])
    assert _int(row["wpan.dst_pan"]) == PAN
    assert _int(row["wpan.dst16"]) == 0x0001 and _int(row["wpan.src16"]) == 0x0000
    assert _int(row["zbee_nwk.dst"]) == 0x1234 and _int(row["zbee_nwk.src"]) == 0x0000
    assert _int(row["zbee_nwk.radius"]) == 30 and _int(row["zbee_nwk.seqno"]) == 101
    assert _int(row["zbee_nwk.discovery"]) == 1
    assert _int(row["zbee_aps.dst"]) == 1 and _int(row["zbee_aps.src"]) == 1
    assert _int(row["zbee_aps.cluster"]) == 0x0019 and _int(row["zbee_aps.profile"]) == 0x0104
    assert _int(row["zbee_aps.counter"]) == 5 and not _true(row["zbee_aps.ack_req"])
    assert _int(row["zbee_zcl.cmd.tsn"]) == 7
    assert _int(row["zbee_zcl_general.ota.cmd.srv_tx.id"]) == 0x05
    assert _int(row["zbee_zcl_general.ota.status"]) == 0x00
    assert _int(row["zbee_zcl_general.ota.manufacturer_code"]) == 0x1234
    assert _int(row["zbee_zcl_general.ota.image.type"]) == 0x0001
    assert _int(row["zbee_zcl_general.ota.file.version"]) == 0x01020000
    assert _int(row["zbee_zcl_general.ota.file.offset"]) == 64
    assert _int(row["zbee_zcl_general.ota.data_size"]) == 3
    assert bytes.fromhex(row["zbee_zcl_general.ota.image.data"].replace(":", "")) == b"\x01\x02\x03"


def test_mac_ack_and_data_request(dissected: list[dict[str, str]]) -> None:
    ack, poll = dissected[1], dissected[2]
    assert _int(ack["wpan.frame_type"]) == 2 and _int(ack["wpan.seq_no"]) == 10
    assert _int(poll["wpan.frame_type"]) == 3 and _int(poll["wpan.seq_no"]) == 11
    assert _int(poll["wpan.cmd"]) == 0x04
    assert _int(poll["wpan.dst16"]) == 0x0000 and _int(poll["wpan.src16"]) == 0x1234
    assert _int(poll["wpan.dst_pan"]) == PAN and _true(poll["wpan.ack_request"])


def test_image_block_request(dissected: list[dict[str, str]]) -> None:
    row = dissected[3]
    assert _int(row["wpan.src16"]) == 0x1234 and _int(row["wpan.dst16"]) == 0x0000
    assert _int(row["zbee_nwk.src"]) == 0x1234 and _int(row["zbee_nwk.dst"]) == 0x0000
    assert _true(row["zbee_aps.ack_req"]) and _int(row["zbee_aps.counter"]) == 6
    assert _int(row["zbee_zcl_general.ota.cmd.srv_rx.id"]) == 0x03
    assert _int(row["zbee_zcl_general.ota.manufacturer_code"]) == 0x1234
    assert _int(row["zbee_zcl_general.ota.image.type"]) == 0x0001
    assert _int(row["zbee_zcl_general.ota.file.version"]) == 0x01020000
    assert _int(row["zbee_zcl_general.ota.file.offset"]) == 64
    assert _int(row["zbee_zcl_general.ota.max_data_size"]) == 50


def test_node_desc_rsp(dissected: list[dict[str, str]]) -> None:
    row = dissected[4]
    assert _int(row["zbee_aps.zdp_cluster"]) == zdo.NODE_DESC_RSP and _int(row["zbee_aps.profile"]) == 0
    assert _int(row["zbee_zdp.seqno"]) == 9 and _int(row["zbee_zdp.status"]) == zdo.SUCCESS
    assert _int(row["zbee_zdp.nwk_addr"]) == 0x1234
    assert _int(row["zbee_zdp.node.type"]) & 0x7 == zdo.LOGICAL_ROUTER
    assert _int(row["zbee_zdp.node.manufacturer"]) == 0x1234
    assert _int(row["zbee_zdp.node.max_buffer"]) == 82
    assert _int(row["zbee_zdp.node.max_incoming_transfer"]) == 100
    assert _int(row["zbee_zdp.node.max_outgoing_transfer"]) == 90
    assert _int(row["zbee_zdp.cinfo"]) == 0x8E
    assert _int(row["zbee_zdp.server"]) == 0x2C00


def test_read_attributes_response(dissected: list[dict[str, str]]) -> None:
    row = dissected[5]
    assert _int(row["zbee_aps.cluster"]) == 0x0000
    assert _int(row["zbee_zcl.cmd.id"]) == zcl.READ_ATTRIBUTES_RESPONSE and _int(row["zbee_zcl.cmd.tsn"]) == 9
    assert [_int(v) for v in row["zbee_zcl_general.basic.attr_id"].split(";")] == [0x0000, 0x0004, 0x0099]
    assert [_int(v) for v in row["zbee_zcl.attr.status"].split(";")] == [0x00, 0x00, 0x86]
    assert [_int(v) for v in row["zbee_zcl.attr.data.type"].split(";")] == [zcl.UINT8, zcl.CHAR_STRING]
    assert _int(row["zbee_zcl.attr.uint8"]) == 8
    assert row["zbee_zcl.attr.str"] == "Althan"


def test_device_annce_and_ieee_byte_order(dissected: list[dict[str, str]]) -> None:
    row = dissected[6]
    assert _int(row["wpan.dst16"]) == BROADCAST_SHORT and not _true(row["wpan.ack_request"])
    assert _int(row["zbee_nwk.dst"]) == NWK_BROADCAST_RX_ON
    assert row["zbee_nwk.src64"] == DEVICE_EUI64
    assert _int(row["zbee_aps.zdp_cluster"]) == zdo.DEVICE_ANNCE and _int(row["zbee_aps.dst"]) == 0xFF
    assert _int(row["zbee_zdp.nwk_addr"]) == 0x1234
    assert row["zbee_zdp.ext_addr"] == DEVICE_EUI64
    assert _int(row["zbee_zdp.cinfo"]) == 0x8E


def test_extended_mac_addresses(dissected: list[dict[str, str]]) -> None:
    row = dissected[7]
    assert not _true(row["wpan.pan_id_compression"])
    assert _int(row["wpan.dst_pan"]) == 0xFFFF
    assert row["wpan.dst64"] == COORD_EUI64
    assert row["wpan.src64"] == DEVICE_EUI64
