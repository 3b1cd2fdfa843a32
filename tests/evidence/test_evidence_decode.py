"""The harness's own frame decoder against frames built by hand from the specifications."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.evidence.decode import FrameSummary, crc16_kermit, summarize
from harness.evidence.pcap import PcapWriter

IEEE_B2 = bytes.fromhex("000d6f000abcdef0")  # as printed: 00:0d:6f:00:0a:bc:de:f0


def ota_frame(
    frames, command: int, body: bytes, *, server_to_client: bool, src: int = 0x0000, dst: int = 0x1234
) -> bytes:
    return frames.mac_data(
        frames.nwk(
            frames.aps_data(frames.zcl(command, body, server_to_client=server_to_client)), src=src, dst=dst
        ),
        src=src,
        dst=dst,
    )


# --- FCS ---------------------------------------------------------------------------------
def test_fcs_crc_has_the_kermit_check_value() -> None:
    assert crc16_kermit(b"123456789") == 0x2189


# The ``frames`` fixture only hands out pure functions, so sharing it across examples is safe.
@given(data=st.binary(max_size=140))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fcs_crc_matches_a_bitwise_reference(frames, data: bytes) -> None:
    assert crc16_kermit(data) == frames.crc16_bitwise(data)


# --- OTA commands --------------------------------------------------------------------------
def test_image_block_response(frames) -> None:
    data = bytes(range(50))
    s = summarize(frames.block_response(64, data, src=0x0000, dst=0x1234, tsn=9, seq=77))
    assert s.error is None and s.fcs_ok is True
    assert (s.mac_type, s.mac_seq, s.mac_src, s.mac_dst, s.mac_pan) == (
        "data",
        77,
        "0x0000",
        "0x1234",
        "0x1a62",
    )
    assert (s.nwk_src, s.nwk_dst, s.nwk_seq, s.nwk_radius, s.nwk_secured) == (
        "0x0000",
        "0x1234",
        7,
        30,
        False,
    )
    assert (s.aps_type, s.aps_counter, s.cluster, s.profile, s.src_ep, s.dst_ep) == (
        "data",
        9,
        0x0019,
        0x0104,
        1,
        1,
    )
    assert (s.zcl_command, s.zcl_tsn, s.ota_status) == ("Image Block Response", 9, 0x00)
    assert (s.manufacturer_code, s.image_type, s.file_version) == (
        frames.MFR,
        frames.IMAGE_TYPE,
        frames.VERSION,
    )
    assert (s.file_offset, s.data_size, s.block_data) == (64, 50, data)
    assert s.is_ota
    assert s.layers == (
        "MAC data 0x0000→0x1234 / NWK 0x0000→0x1234 r30 #7 / APS data 0x0019@1 #9"
        " / ZCL OTA Image Block Response off=64 len=50"
    )


def test_image_block_request_with_minimum_block_period(frames) -> None:
    s = summarize(frames.block_request(4096, 48, src=0x1234, dst=0x0000, min_period=250))
    assert s.error is None
    assert (s.zcl_command, s.file_offset, s.data_size, s.file_version) == (
        "Image Block Request",
        4096,
        48,
        frames.VERSION,
    )
    assert s.block_data is None and s.ota_status is None
    assert "ZCL OTA Image Block Request off=4096 max=48" in s.layers


def test_image_block_request_missing_its_announced_ieee_address_is_malformed(frames) -> None:
    body = struct.pack("<BHHIIB", 0x01, frames.MFR, frames.IMAGE_TYPE, frames.VERSION, 0, 50)
    s = summarize(ota_frame(frames, 0x03, body, server_to_client=False))
    assert s.zcl_command == "Image Block Request" and s.file_offset == 0
    assert s.error is not None and "IEEE" in s.error


def test_wait_for_data_block_response(frames) -> None:
    body = struct.pack("<BIIH", 0x97, 1000, 1030, 0)
    s = summarize(ota_frame(frames, 0x05, body, server_to_client=True))
    assert (s.zcl_command, s.ota_status, s.file_offset, s.error) == ("Image Block Response", 0x97, None, None)
    assert "WAIT_FOR_DATA retry in 30s" in s.layers


def test_query_next_image_request_and_response(frames) -> None:
    req = struct.pack("<BHHIH", 0x01, frames.MFR, frames.IMAGE_TYPE, 0x01000000, 0x0002)
    s = summarize(ota_frame(frames, 0x01, req, server_to_client=False, src=0x1234, dst=0x0000))
    assert (s.zcl_command, s.file_version, s.manufacturer_code, s.error) == (
        "Query Next Image Request",
        0x01000000,
        frames.MFR,
        None,
    )
    rsp = struct.pack("<BHHII", 0x00, frames.MFR, frames.IMAGE_TYPE, frames.VERSION, 204_800)
    s = summarize(ota_frame(frames, 0x02, rsp, server_to_client=True))
    assert (s.zcl_command, s.ota_status, s.file_version, s.image_size) == (
        "Query Next Image Response",
        0,
        frames.VERSION,
        204_800,
    )
    s = summarize(ota_frame(frames, 0x02, b"\x98", server_to_client=True))
    assert (s.ota_status, s.image_size, s.error) == (0x98, None, None)
    assert s.layers.endswith("Query Next Image Response NO_IMAGE_AVAILABLE")


def test_upgrade_end_request_and_response(frames) -> None:
    req = struct.pack("<BHHI", 0x00, frames.MFR, frames.IMAGE_TYPE, frames.VERSION)
    s = summarize(ota_frame(frames, 0x06, req, server_to_client=False))
    assert (s.zcl_command, s.ota_status, s.file_version) == ("Upgrade End Request", 0, frames.VERSION)
    rsp = struct.pack("<HHIII", frames.MFR, frames.IMAGE_TYPE, frames.VERSION, 5000, 0xFFFFFFFF)
    s = summarize(ota_frame(frames, 0x07, rsp, server_to_client=True))
    assert (s.zcl_command, s.upgrade_time, s.file_version, s.error) == (
        "Upgrade End Response",
        0xFFFFFFFF,
        frames.VERSION,
        None,
    )
    assert "upgrade on activate" in s.layers


def test_image_notify(frames) -> None:
    body = struct.pack("<BBHHI", 0x03, 100, frames.MFR, frames.IMAGE_TYPE, frames.VERSION)
    s = summarize(ota_frame(frames, 0x00, body, server_to_client=True))
    assert (s.zcl_command, s.file_version, s.error) == ("Image Notify", frames.VERSION, None)


def test_default_response_on_the_ota_cluster_carries_its_status(frames) -> None:
    body = struct.pack("<BB", 0x05, 0x95)  # answering an Image Block Response with ABORT
    payload = frames.aps_data(frames.zcl(0x0B, body, cluster_specific=False))
    s = summarize(frames.mac_data(frames.nwk(payload, src=0x1234, dst=0), src=0x1234, dst=0))
    assert (s.zcl_command, s.ota_status) == ("Default Response", 0x95)
    assert "ABORT" in s.layers


def test_global_read_attributes_on_another_cluster(frames) -> None:
    payload = frames.zcl(0x00, struct.pack("<H", 0x0000), cluster_specific=False)
    s = summarize(frames.mac_data(frames.nwk(frames.aps_data(payload, cluster=0x0702), src=0, dst=0x1234)))
    assert (s.cluster, s.zcl_command, s.ota_status) == (0x0702, "Read Attributes", None)
    assert s.layers.endswith("ZCL Metering Read Attributes")


def test_zdo_frame_is_named_by_cluster(frames) -> None:
    payload = struct.pack("<BH", 0x42, 0x1234)  # ZDO TSN, NWK address of interest
    s = summarize(
        frames.mac_data(
            frames.nwk(
                frames.aps_data(payload, cluster=0x0002, profile=0x0000, dst_ep=0, src_ep=0),
                src=0,
                dst=0x1234,
            )
        )
    )
    assert (s.profile, s.zcl_command, s.zcl_tsn) == (0, "Node_Desc_req", 0x42)
    s = summarize(
        frames.mac_data(
            frames.nwk(
                frames.aps_data(payload, cluster=0x8002, profile=0x0000, dst_ep=0, src_ep=0),
                src=0,
                dst=0x1234,
            )
        )
    )
    assert s.zcl_command == "Node_Desc_rsp"


# --- other layers ------------------------------------------------------------------------
def test_mac_ack(frames) -> None:
    s = summarize(frames.mac_ack(23, pending=True))
    assert (s.mac_type, s.mac_seq, s.fcs_ok, s.mac_src, s.nwk_src, s.error) == (
        "ack",
        23,
        True,
        None,
        None,
        None,
    )
    assert s.layers == "MAC ack #23"


def test_mac_data_request_command(frames) -> None:
    s = summarize(frames.mac_data_request(src=0x5678, dst=0x0000, seq=9))
    assert (s.mac_type, s.mac_command, s.mac_src, s.mac_dst, s.mac_seq) == (
        "command",
        "Data Request",
        "0x5678",
        "0x0000",
        9,
    )
    assert s.nwk_src is None and s.error is None
    assert s.layers == "MAC command Data Request 0x5678→0x0000"


def test_mac_association_request_from_an_extended_address(frames) -> None:
    # dst short + PAN, src extended with broadcast PAN (no compression), version 0
    fcf = 0x3 | 0x20 | (2 << 10) | (3 << 14)
    raw = frames.with_fcs(
        struct.pack("<HBHHH", fcf, 1, frames.PAN, 0x0000, 0xFFFF) + IEEE_B2[::-1] + b"\x01\x8e"
    )
    s = summarize(raw)
    assert (s.mac_command, s.mac_src, s.mac_dst, s.mac_pan, s.error) == (
        "Association Request",
        "00:0d:6f:00:0a:bc:de:f0",
        "0x0000",
        "0x1a62",
        None,
    )


def test_secured_nwk_frame_stops_at_nwk(frames) -> None:
    nwk = frames.nwk_secured(os.urandom(40), src=0x1234, dst=0x0000, frame_counter=123_456, src_ieee=IEEE_B2)
    s = summarize(frames.mac_data(nwk, src=0x1234, dst=0x0000))
    assert s.error is None and s.nwk_secured is True
    assert (s.nwk_src, s.nwk_dst, s.nwk_frame_counter) == ("0x1234", "0x0000", 123_456)
    assert (s.aps_type, s.cluster, s.zcl_command, s.file_offset) == (None, None, None, None)
    assert s.layers.endswith("/ NWK(secured) fc=123456")


def test_nwk_with_source_ieee_still_reaches_zcl(frames) -> None:
    body = struct.pack("<BHHIIB", 0, frames.MFR, frames.IMAGE_TYPE, frames.VERSION, 0, 2) + b"ok"
    payload = frames.aps_data(frames.zcl(0x05, body, server_to_client=True))
    s = summarize(
        frames.mac_data(frames.nwk(payload, src=0, dst=0x1234, src_ieee=IEEE_B2), src=0, dst=0x1234)
    )
    assert (s.file_offset, s.block_data, s.error) == (0, b"ok", None)


def test_aps_ack(frames) -> None:
    s = summarize(
        frames.mac_data(frames.nwk(frames.aps_ack(counter=77), src=0x1234, dst=0), src=0x1234, dst=0)
    )
    assert (s.aps_type, s.aps_counter, s.cluster, s.zcl_command, s.error) == ("ack", 77, 0x0019, None, None)
    assert s.layers.endswith("APS ack 0x0019@1 #77")


def test_bad_fcs_is_flagged_but_still_decoded(frames) -> None:
    raw = bytearray(frames.block_response(128, b"x" * 10))
    raw[-1] ^= 0xFF
    s = summarize(bytes(raw))
    assert s.fcs_ok is False and s.file_offset == 128 and s.error is None
    assert "FCS BAD" in s.layers


def test_truncated_block_response_keeps_what_it_could_read(frames) -> None:
    whole = frames.block_response(640, bytes(50))
    # cut 20 bytes of block data but keep a valid FCS, as a buggy sender would
    raw = frames.with_fcs(whole[:-2][:-20])
    s = summarize(raw)
    assert s.fcs_ok is True
    assert (s.zcl_command, s.file_offset, s.data_size, len(s.block_data or b"")) == (
        "Image Block Response",
        640,
        50,
        30,
    )
    assert s.error is not None and "data size 50" in s.error
    assert "MALFORMED" in s.layers and s.layers.startswith("MAC data")


@pytest.mark.parametrize("raw", [b"", b"\x41", b"\x41\x88", b"\x41\x88\x01\x62"])
def test_too_short_frames_give_an_error(raw: bytes) -> None:
    s = summarize(raw)
    assert isinstance(s, FrameSummary) and s.error is not None and "too short" in s.error


# --- robustness and cost -----------------------------------------------------------------
@given(st.binary(max_size=160))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_summarize_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    s = summarize(raw)
    assert isinstance(s, FrameSummary) and isinstance(s.layers, str)


@given(
    cut=st.integers(min_value=0, max_value=93),
    flip=st.integers(min_value=0, max_value=93),
    mask=st.integers(min_value=1, max_value=255),
)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_summarize_never_raises_on_damaged_ota_frames(frames, cut: int, flip: int, mask: int) -> None:
    raw = bytearray(frames.block_response(64, bytes(range(50)))[:-2])
    if flip < len(raw):
        raw[flip] ^= mask
    s = summarize(frames.with_fcs(bytes(raw[:cut])))
    assert isinstance(s, FrameSummary)


def test_decoding_is_cheap_enough_to_run_for_every_frame(frames) -> None:
    raw = frames.block_response(64, bytes(50))
    n = 5000
    start = time.perf_counter()
    for _ in range(n):
        summarize(raw)
    per_frame = (time.perf_counter() - start) / n
    # About 10 µs here; 200 µs catches a 20x regression (say, zigpy types) on a loaded CI machine.
    assert per_frame < 200e-6, f"{per_frame * 1e6:.1f} µs per frame"


@pytest.mark.tshark
def test_decoder_agrees_with_tshark(tmp_path: Path, frames) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed (apt-get install tshark); decoder cross-check NOT run")
    written = [
        frames.block_request(0, src=0x1234),
        frames.block_response(0, bytes(50), dst=0x1234),
        frames.block_request(50, src=0x1234),
        frames.block_response(50, bytes(40), dst=0x1234),
        frames.mac_ack(4),
        frames.mac_data_request(),
    ]
    with PcapWriter(tmp_path / "air.pcap") as writer:
        for i, raw in enumerate(written):
            writer.write(raw, 1000.0 + i)
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(tmp_path / "air.pcap"),
            "-T",
            "fields",
            "-e",
            "wpan.seq_no",
            "-e",
            "zbee_nwk.dst",
            "-e",
            "zbee_zcl_general.ota.file.offset",
            "-e",
            "zbee_zcl_general.ota.data_size",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    ).stdout.splitlines()
    for raw, line in zip(written, out, strict=True):
        seq, nwk_dst, offset, size = line.split("\t")
        s = summarize(raw)
        assert str(s.mac_seq) == seq
        assert (s.nwk_dst or "") == nwk_dst
        assert ("" if s.file_offset is None else str(s.file_offset)) == offset
        expected_size = str(s.data_size) if s.zcl_command == "Image Block Response" else ""
        assert expected_size == size
