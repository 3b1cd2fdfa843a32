"""NWK-encrypted frames: the decoder and the recorder read them with the network key, tshark agrees,
and the key never leaks into the evidence.

The secured frames are built here from ZigBee PRO 2015 §4.3.1.1 (outgoing frame security) and
§4.5 (auxiliary header, CCM* nonce), with CCM* written out from Annex A over the bare AES block
cipher: neither the decoder's use of ``AESCCM`` nor the emulator's codec is used to make them.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import BadInputError
from harness.evidence.decode import FrameSummary, summarize
from harness.evidence.keys import (
    NetworkKey,
    tshark_decode_command,
    wireshark_key_line,
    write_wireshark_keys,
)
from harness.evidence.manifest import write_manifest
from harness.evidence.pcap import PcapWriter
from harness.evidence.record import RECORD_FILE, RunRecord, TestRecord
from harness.evidence.recorder import Recorder
from harness.evidence.timeline import read_timeline
from harness.report.html import write_html_report

# The key from DESIGN.md's tshark note, in AES order (as a testbed file writes it).
KEY = bytes.fromhex("01030507090B0D0F00020406080A0C0D")
OTHER_KEY = bytes.fromhex("a1a2a3a4a5a6a7a8a9aaabacadaeafb0")
IEEE_CH = bytes.fromhex("000d6f0000000001")  # as printed on the label, most significant first
IEEE_B2 = bytes.fromhex("000d6f000abcdef0")
IEEE_B1 = bytes.fromhex("000d6f00000b1b1b")
CH, B1, B2 = 0x0000, 0x0001, 0x1234
PAN, MFR, IMAGE_TYPE, VERSION = 0x1A62, 0x1234, 0x0201, 0x01010000
NWK_AT = 9  # MAC header: frame control, sequence number, PAN, destination, source


# --- frames below NWK security, packed field by field ---------------------------------------
def with_fcs(body: bytes) -> bytes:
    """Append the 802.15.4 FCS: CRC-16/KERMIT computed bit by bit."""
    crc = 0
    for byte in body:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return body + struct.pack("<H", crc)


def mac_data(payload: bytes, *, src: int, dst: int, seq: int = 23) -> bytes:
    # IEEE 802.15.4-2006 §7.2.1: data frame, ack request, PAN ID compression, short addresses
    fcf = 0x1 | 0x20 | 0x40 | (2 << 10) | (2 << 14)
    return with_fcs(struct.pack("<HBHHH", fcf, seq, PAN, dst, src) + payload)


def aps_data(
    payload: bytes,
    *,
    cluster: int = 0x0019,
    profile: int = 0x0104,
    dst_ep: int = 1,
    src_ep: int = 1,
    counter: int = 12,
) -> bytes:
    # ZigBee PRO 2015 §2.2.5.2.1: data frame, unicast to an endpoint, no APS security
    return struct.pack("<BBHHBB", 0x00, dst_ep, cluster, profile, src_ep, counter) + payload


def zcl(command: int, payload: bytes, *, tsn: int, server_to_client: bool) -> bytes:
    # ZCL §2.4.1: cluster-specific, direction bit, default response disabled
    return struct.pack("<BBB", 0x01 | (0x08 if server_to_client else 0) | 0x10, tsn, command) + payload


# --- CCM* (ZigBee PRO 2015 Annex A) on the AES block cipher ---------------------------------
def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _blocks(data: bytes) -> list[bytes]:
    padded = data + bytes(-len(data) % 16)
    return [padded[i : i + 16] for i in range(0, len(padded), 16)]


def ccm_star_seal(key: bytes, nonce: bytes, a: bytes, m: bytes, mic_len: int = 4) -> bytes:
    """CCM* encryption with a ``mic_len``-byte MIC and a 2-byte length field (L = 2): A.2.2."""
    assert len(nonce) == 13 and 0 < len(a) < 0xFF00
    # A.2.2.1 authentication: B0 = flags || nonce || l(m); flags = Adata | M' << 3 | L'
    flags = 0x40 | ((mic_len - 2) // 2) << 3 | 0x01
    auth = [bytes([flags]) + nonce + struct.pack(">H", len(m))]
    auth += _blocks(struct.pack(">H", len(a)) + a) + (_blocks(m) if m else [])
    x = bytes(16)
    for block in auth:
        x = _aes_block(key, bytes(i ^ j for i, j in zip(x, block, strict=True)))
    tag = x[:mic_len]
    # A.2.2.2 encryption: counter blocks A_i = L' || nonce || i; S_0 masks the tag.
    stream = b"".join(
        _aes_block(key, bytes([0x01]) + nonce + struct.pack(">H", i)) for i in range(1, 2 + len(m) // 16)
    )
    s0 = _aes_block(key, bytes([0x01]) + nonce + b"\x00\x00")
    cipher = bytes(i ^ j for i, j in zip(m, stream, strict=False))
    return cipher + bytes(i ^ j for i, j in zip(tag, s0, strict=False))


def secure_nwk(
    payload: bytes,
    *,
    key: bytes,
    src: int,
    dst: int,
    frame_counter: int,
    sender_ieee: bytes,
    key_seq: int = 0,
    extended_nonce: bool = True,
    header_src_ieee: bytes | None = None,
    command: bool = False,
    level_on_air: int = 0,
    radius: int = 30,
    seq: int = 7,
) -> bytes:
    """A NWK frame secured at level 5 (ENC-MIC-32) with the network key (§4.3.1.1).

    ``sender_ieee`` (printed order) is the device applying security: the nonce's source address.
    """
    fcf = (1 if command else 0) | (2 << 2) | (1 << 6) | (1 << 9)  # protocol 2, discover route, security
    if header_src_ieee is not None:
        fcf |= 1 << 12
    header = struct.pack("<HHHBB", fcf, dst, src, radius, seq)
    if header_src_ieee is not None:
        header += header_src_ieee[::-1]
    # §4.5.1.1 security control: level (bits 0-2), key identifier 1 = network key (bits 3-4),
    # extended nonce (bit 5). §4.3.1.1 step 7 sends the level as 0; some captures keep it.
    control = (1 << 3) | (0x20 if extended_nonce else 0)
    tail = (sender_ieee[::-1] if extended_nonce else b"") + bytes([key_seq])
    aux_on_air = struct.pack("<BI", control | level_on_air, frame_counter) + tail
    aux_level5 = struct.pack("<BI", control | 5, frame_counter) + tail
    # §4.5.2.2: nonce = source address (64 bits) || frame counter || security control, each
    # least significant byte first as on air.
    nonce = sender_ieee[::-1] + struct.pack("<I", frame_counter) + bytes([control | 5])
    return header + aux_on_air + ccm_star_seal(key, nonce, header + aux_level5, payload)


def ota_payload(command: int, body: bytes, *, server_to_client: bool, tsn: int = 5) -> bytes:
    return aps_data(zcl(command, body, tsn=tsn, server_to_client=server_to_client), counter=tsn)


def secured_block_response(offset: int, data: bytes, *, key: bytes = KEY, counter: int = 1000, **kw) -> bytes:
    body = struct.pack("<BHHIIB", 0x00, MFR, IMAGE_TYPE, VERSION, offset, len(data)) + data
    nwk = secure_nwk(
        ota_payload(0x05, body, server_to_client=True),
        key=key,
        src=CH,
        dst=B2,
        frame_counter=counter,
        sender_ieee=kw.pop("sender_ieee", IEEE_CH),
        **kw,
    )
    return mac_data(nwk, src=CH, dst=B2)


def secured_block_request(offset: int, max_size: int = 50, *, key: bytes = KEY, counter: int = 500) -> bytes:
    body = struct.pack("<BHHIIB", 0x00, MFR, IMAGE_TYPE, VERSION, offset, max_size)
    nwk = secure_nwk(
        ota_payload(0x03, body, server_to_client=False),
        key=key,
        src=B2,
        dst=CH,
        frame_counter=counter,
        sender_ieee=IEEE_B2,
        key_seq=0,
    )
    return mac_data(nwk, src=B2, dst=CH)


def test_ccm_star_helper_matches_the_cryptography_library() -> None:
    # Annex A CCM* with M = 4 is CCM (RFC 3610) with a 4-byte tag, so two independent codes agree.
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    nonce, a, m = bytes(range(13)), b"header" * 5, bytes(range(70))
    assert ccm_star_seal(KEY, nonce, a, m) == AESCCM(KEY, tag_length=4).encrypt(nonce, m, a)


# --- the decoder -------------------------------------------------------------------------
def test_image_block_response_decrypts_with_the_right_key() -> None:
    data = bytes(range(100, 150))
    raw = secured_block_response(4096, data, counter=123_456, key_seq=3)
    assert data not in raw  # really encrypted
    s = summarize(raw, keys=[KEY])
    assert s.error is None and s.fcs_ok is True
    assert (s.nwk_secured, s.nwk_decrypted, s.mic_failed) == (True, True, False)
    assert (s.nwk_frame_counter, s.nwk_key_id, s.nwk_key_seq, s.nwk_src_ieee) == (
        123_456,
        1,
        3,
        "00:0d:6f:00:00:00:00:01",
    )
    assert (s.zcl_command, s.ota_status, s.file_offset, s.data_size, s.block_data) == (
        "Image Block Response",
        0,
        4096,
        50,
        data,
    )
    assert (s.manufacturer_code, s.image_type, s.file_version, s.cluster) == (MFR, IMAGE_TYPE, VERSION, 0x19)
    assert s.layers == (
        "MAC data 0x0000→0x1234 / NWK 0x0000→0x1234 r30 #7 / NWK(decrypted) fc=123456 kseq=3"
        " / APS data 0x0019@1 #5 / ZCL OTA Image Block Response off=4096 len=50"
    )


def test_image_block_request_decrypts_with_the_right_key() -> None:
    s = summarize(secured_block_request(150, 48, counter=77), keys=[KEY])
    assert s.error is None and s.nwk_decrypted
    assert (s.zcl_command, s.file_offset, s.data_size, s.file_version) == (
        "Image Block Request",
        150,
        48,
        VERSION,
    )
    assert s.nwk_src_ieee == "00:0d:6f:00:0a:bc:de:f0"


def test_the_right_key_is_found_among_several_and_any_bytes_like_works() -> None:
    raw = secured_block_response(0, b"abc")
    s = summarize(raw, keys=[OTHER_KEY, b"too short", bytearray(KEY)])
    assert s.nwk_decrypted and s.block_data == b"abc" and not s.mic_failed


def test_wrong_key_fails_the_mic_and_stops_at_nwk() -> None:
    s = summarize(secured_block_response(64, bytes(50), counter=9), keys=[OTHER_KEY])
    assert (s.nwk_secured, s.nwk_decrypted, s.mic_failed, s.error) == (True, False, True, None)
    assert (s.aps_type, s.zcl_command, s.file_offset, s.block_data) == (None, None, None, None)
    assert s.nwk_frame_counter == 9 and s.nwk_key_seq == 0
    assert s.layers.endswith("/ NWK(secured) fc=9")


def test_without_keys_it_is_as_before_and_no_mic_is_claimed_failed() -> None:
    s = summarize(secured_block_response(64, bytes(50), counter=9))
    assert (s.nwk_secured, s.nwk_decrypted, s.mic_failed, s.zcl_command) == (True, False, False, None)
    assert s.layers == "MAC data 0x0000→0x1234 / NWK 0x0000→0x1234 r30 #7 / NWK(secured) fc=9"


# Offsets inside the MAC frame (3 FCF+seq, 6 PAN/dst/src): NWK header from 9, aux header from 17.
@pytest.mark.parametrize(
    ("where", "at"),
    [("ciphertext", 40), ("MIC", -3), ("frame counter (aux header)", 18), ("NWK radius (header)", 15)],
)
def test_a_flipped_bit_anywhere_it_is_covered_fails_the_mic(where: str, at: int) -> None:
    body = bytearray(secured_block_response(64, bytes(50))[:-2])
    body[at] ^= 0x10
    s = summarize(with_fcs(bytes(body)), keys=[KEY])
    assert s.mic_failed and not s.nwk_decrypted and s.zcl_command is None, where


@pytest.mark.parametrize("level_on_air", [0, 5])
def test_the_level_is_put_back_whether_or_not_it_was_sent(level_on_air: int) -> None:
    s = summarize(secured_block_response(64, b"xy", level_on_air=level_on_air), keys=[KEY])
    assert s.nwk_decrypted and s.block_data == b"xy"


def test_without_extended_nonce_the_sender_ieee_comes_from_the_address_map() -> None:
    raw = secured_block_response(64, b"xy", extended_nonce=False)
    s = summarize(raw, keys=[KEY])
    assert (s.nwk_decrypted, s.mic_failed, s.nwk_src_ieee, s.error) == (False, False, None, None)
    s = summarize(raw, keys=[KEY], ieee_by_nwk={CH: IEEE_CH[::-1]})
    assert s.nwk_decrypted and s.block_data == b"xy" and s.nwk_src_ieee == "00:0d:6f:00:00:00:00:01"
    s = summarize(raw, keys=[KEY], ieee_by_nwk={CH: IEEE_B2[::-1]})  # wrong address: wrong nonce
    assert s.mic_failed and not s.nwk_decrypted


def test_without_extended_nonce_the_nwk_source_ieee_serves_on_the_first_hop() -> None:
    raw = secured_block_response(64, b"xy", extended_nonce=False, header_src_ieee=IEEE_CH)
    s = summarize(raw, keys=[KEY])
    assert s.nwk_decrypted and s.block_data == b"xy"


def test_a_relayed_frame_is_secured_by_the_relay() -> None:
    # B1 relays CH's block response to B2: NWK security is hop by hop, so B1's address and
    # frame counter are in the nonce while the NWK source stays CH.
    body = struct.pack("<BHHIIB", 0x00, MFR, IMAGE_TYPE, VERSION, 128, 2) + b"ok"
    nwk = secure_nwk(
        ota_payload(0x05, body, server_to_client=True),
        key=KEY,
        src=CH,
        dst=B2,
        frame_counter=42,
        sender_ieee=IEEE_B1,
        header_src_ieee=IEEE_CH,
    )
    s = summarize(mac_data(nwk, src=B1, dst=B2), keys=[KEY])
    assert s.nwk_decrypted and (s.mac_src, s.nwk_src, s.file_offset) == ("0x0001", "0x0000", 128)
    assert s.nwk_src_ieee == "00:0d:6f:00:00:0b:1b:1b"


def test_a_secured_nwk_command_is_named_once_decrypted() -> None:
    leave = bytes([0x04, 0x40])  # Leave, request
    nwk = secure_nwk(leave, key=KEY, src=B2, dst=CH, frame_counter=5, sender_ieee=IEEE_B2, command=True)
    s = summarize(mac_data(nwk, src=B2, dst=CH), keys=[KEY])
    assert s.nwk_decrypted and s.nwk_command == "Leave" and s.layers.endswith("/ NWK command Leave")


def test_device_annce_pairs_a_short_address_with_an_ieee_address() -> None:
    payload = struct.pack("<BH", 0x81, B2) + IEEE_B2[::-1] + b"\x8e"
    nwk = secure_nwk(
        aps_data(payload, cluster=0x0013, profile=0x0000, dst_ep=0, src_ep=0),
        key=KEY,
        src=B2,
        dst=0xFFFD,
        frame_counter=1,
        sender_ieee=IEEE_B2,
    )
    s = summarize(mac_data(nwk, src=B2, dst=0xFFFF), keys=[KEY])
    assert (s.zcl_command, s.zdo_nwk_addr, s.zdo_ieee) == (
        "Device_annce",
        "0x1234",
        "00:0d:6f:00:0a:bc:de:f0",
    )


@pytest.mark.parametrize("cut", [1, 4, 5, 8, 12, 14, 15])
def test_a_cut_short_auxiliary_header_or_mic_is_reported_not_raised(cut: int) -> None:
    whole = secured_block_response(0, b"")[:-2]
    aux_at = NWK_AT + 8
    # keep the NWK header and ``cut`` bytes of what follows it
    s = summarize(with_fcs(whole[: aux_at + cut]), keys=[KEY])
    assert isinstance(s, FrameSummary) and s.nwk_secured and s.error is not None
    assert "NWK" in s.error and "MALFORMED" in s.layers and not s.nwk_decrypted


@given(st.binary(max_size=160))
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_summarize_never_raises_on_arbitrary_bytes_with_keys(raw: bytes) -> None:
    s = summarize(raw, keys=[KEY, OTHER_KEY], ieee_by_nwk={0x0000: IEEE_CH[::-1]})
    assert isinstance(s, FrameSummary) and isinstance(s.layers, str)


_SECURED = secured_block_response(64, bytes(range(50)))


@given(
    cut=st.integers(min_value=0, max_value=len(_SECURED)),
    flip=st.integers(min_value=0, max_value=len(_SECURED) - 3),
    mask=st.integers(min_value=0, max_value=255),
)
@settings(max_examples=500, deadline=None)
def test_summarize_never_raises_on_damaged_secured_frames(cut: int, flip: int, mask: int) -> None:
    body = bytearray(_SECURED[:-2])
    body[flip] ^= mask
    s = summarize(with_fcs(bytes(body[:cut])), keys=[KEY], ieee_by_nwk={CH: b"junk"})
    assert isinstance(s, FrameSummary)
    if s.nwk_decrypted:  # only the untouched frame (or a flip outside the NWK frame) verifies
        assert mask == 0 or flip < NWK_AT or s.block_data == bytes(range(50))


def test_decrypting_is_cheap_enough_to_run_for_every_frame() -> None:
    raw = secured_block_response(64, bytes(50))
    keys = [OTHER_KEY, KEY]  # one failed MIC check and one good one per frame
    summarize(raw, keys=keys)
    n = 3000
    start = time.perf_counter()
    for _ in range(n):
        s = summarize(raw, keys=keys)
    per_frame = (time.perf_counter() - start) / n
    assert s.nwk_decrypted
    # About 20 µs here; 300 µs catches a regression such as building the cipher per frame.
    assert per_frame < 300e-6, f"{per_frame * 1e6:.1f} µs per frame"


# --- keys.py -----------------------------------------------------------------------------
def _key_texts(key: bytes) -> list[str]:
    texts = []
    for order in (key, key[::-1]):
        for sep in ("", ":", " ", "-"):
            texts += [order.hex(sep), order.hex(sep).upper()] if sep else [order.hex(), order.hex().upper()]
    return texts


def test_a_network_key_never_prints_its_bytes() -> None:
    key = NetworkKey(KEY, "CH network key", 3)
    for shown in (repr(key), str(key), f"{key}", f"{key!r}", str([key]), str({"k": key})):
        assert "CH network key" in shown and "seq=3" in shown, shown
        assert not any(t in shown for t in _key_texts(KEY)), shown
    assert key.fingerprint in repr(key) and len(key.fingerprint) == 8
    assert NetworkKey.from_hex("01:03:05:07:09:0B:0D:0F:00:02:04:06:08:0A:0C:0D", "x") == NetworkKey(KEY, "x")
    assert NetworkKey.from_hex("01030507 090b0d0f-0002040608.0a0c0d", "x").key == KEY


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: NetworkKey(KEY[:15], "x"), "key"),
        (lambda: NetworkKey("01030507090B0D0F00020406080A0C0D", "x"), "key"),  # type: ignore[arg-type]
        (lambda: NetworkKey(KEY, ""), "label"),
        (lambda: NetworkKey(KEY, "x", 256), "sequence_number"),
        (lambda: NetworkKey.from_hex("01030507090B0D0F00020406080A0C0D0E", "CH"), "key"),
        (lambda: NetworkKey.from_hex("01030507090B0D0F00020406080A0CZZ", "CH"), "key"),
    ],
)
def test_bad_keys_are_refused_without_echoing_them(make, field: str) -> None:
    with pytest.raises(BadInputError) as caught:
        make()
    assert caught.value.field == field
    assert not any(t in str(caught.value) for t in _key_texts(KEY)) and "0A0C" not in str(caught.value)


def test_wireshark_key_file_has_one_line_per_key_and_is_private(tmp_path: Path) -> None:
    keys = [NetworkKey(KEY, "CH network key"), NetworkKey(OTHER_KEY, 'rotated "B"', 1)]
    path = write_wireshark_keys(tmp_path / "wireshark" / "zigbee_pc_keys", keys)
    assert path == tmp_path / "wireshark" / "zigbee_pc_keys"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert lines == [
        '"01:03:05:07:09:0B:0D:0F:00:02:04:06:08:0A:0C:0D","Normal","CH network key"',
        '"A1:A2:A3:A4:A5:A6:A7:A8:A9:AA:AB:AC:AD:AE:AF:B0","Normal","rotated \\x22B\\x22"',
    ]
    assert wireshark_key_line(keys[0]) == lines[0] + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_wireshark_keys(path, keys[:1])  # rewritten in place, no temporary file left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["zigbee_pc_keys"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(BadInputError):
        write_wireshark_keys(path, [KEY])  # type: ignore[list-item]


def test_tshark_command_names_the_key_folder_not_the_key() -> None:
    command = tshark_decode_command()
    assert command.startswith("WIRESHARK_CONFIG_DIR=evidence tshark -r evidence/air.pcap")
    assert "-e zbee_zcl_general.ota.file.offset" in command
    assert "-Y 'zbee_zcl && zbee_aps.cluster == 0x0019'" in command


# --- tshark as the independent oracle ----------------------------------------------------
def _tshark() -> str:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed (apt-get install tshark); NWK decryption cross-check NOT run")
    return tshark


def _tshark_fields(tshark: str, pcap: Path, env: dict[str, str], cwd: Path | None = None) -> list[list[str]]:
    out = subprocess.run(
        [
            tshark,
            "-r",
            str(pcap),
            "-T",
            "fields",
            "-e",
            "zbee_zcl_general.ota.file.offset",
            "-e",
            "zbee_zcl_general.ota.image.data",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, **env},
        cwd=cwd,
    ).stdout.splitlines()
    return [line.split("\t") for line in out]


@pytest.mark.tshark
def test_tshark_decrypts_the_same_offsets_and_data_with_the_key_file(tmp_path: Path) -> None:
    tshark = _tshark()
    written = []
    for i, offset in enumerate(range(0, 200, 50)):
        written.append(secured_block_request(offset, counter=500 + i))
        written.append(
            secured_block_response(offset, bytes((offset + j) & 0xFF for j in range(50)), counter=900 + i)
        )
    with PcapWriter(tmp_path / "air.pcap") as writer:
        for i, raw in enumerate(written):
            writer.write(raw, 1000.0 + i)
    clean = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "WIRESHARK_CONFIG_DIR": ""}
    clean.pop("WIRESHARK_CONFIG_DIR")

    # Without the key, tshark sees nothing of the OTA fields: the frames really are encrypted.
    blind = _tshark_fields(tshark, tmp_path / "air.pcap", clean)
    assert blind == [["", ""]] * len(written)

    # A label with a quote checks that the file's escaping is what Wireshark reads.
    write_wireshark_keys(
        tmp_path / "wireshark" / "zigbee_pc_keys",
        [NetworkKey(OTHER_KEY, "old key"), NetworkKey(KEY, 'CH "current" key')],
    )
    rows = _tshark_fields(tshark, tmp_path / "air.pcap", clean)
    assert len(rows) == len(written)
    for raw, (offset, data) in zip(written, rows, strict=True):
        s = summarize(raw, keys=[KEY])
        assert s.nwk_decrypted and str(s.file_offset) == offset
        expected = s.block_data.hex(":") if s.zcl_command == "Image Block Response" else ""
        assert data == expected, (s.layers, data)


@pytest.mark.tshark
def test_the_recorders_key_file_and_documented_command_decode_its_capture(tmp_path: Path) -> None:
    _tshark()  # the documented command runs tshark from PATH, as a user would
    recorder = Recorder(tmp_path / "run", virtual_clock=lambda: 0.0, network_keys=[NetworkKey(KEY, "CH")])
    recorder.frame(secured_block_response(100, b"hello"), hop_src="CH", hop_dst="B2")
    recorder.close()
    command = tshark_decode_command(
        fields=["zbee_zcl_general.ota.file.offset", "zbee_zcl_general.ota.image.data"]
    )
    out = subprocess.run(
        command,
        shell=True,
        cwd=recorder.run_dir,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    ).stdout
    assert out == "100\t68:65:6c:6c:6f\n"


# --- the recorder ------------------------------------------------------------------------
def _recorder(tmp_path: Path, keys: list[NetworkKey]) -> tuple[Recorder, list[float]]:
    clock = [10.0]
    recorder = Recorder(
        tmp_path / "run",
        wall_clock=lambda: 1_790_000_000.0 + clock[0] / 100,
        virtual_clock=lambda: clock[0],
        network_keys=keys,
    )
    return recorder, clock


def test_recorder_decrypts_for_the_timeline_and_follows_a_key_rotation(tmp_path: Path) -> None:
    recorder, _ = _recorder(tmp_path, [NetworkKey(KEY, "CH network key")])
    key_file = recorder.run_dir / "evidence" / "zigbee_pc_keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (
        '"01:03:05:07:09:0B:0D:0F:00:02:04:06:08:0A:0C:0D","Normal","CH network key"' in key_file.read_text()
    )

    recorder.frame(secured_block_request(0), hop_src="B2", hop_dst="CH")
    recorder.frame(secured_block_response(0, bytes(50)), hop_src="CH", hop_dst="B2")
    # The same device, now without extended nonce: decryptable because its address was learnt.
    recorder.frame(
        secured_block_response(50, bytes(50), extended_nonce=False, counter=1001), hop_src="CH", hop_dst="B2"
    )
    recorder.frame(secured_block_response(100, bytes(50), key=OTHER_KEY), hop_src="CH", hop_dst="B2")
    recorder.add_network_key(NetworkKey(OTHER_KEY, "rotated", 1))
    assert [k.label for k in recorder.network_keys] == ["rotated", "CH network key"]
    assert "A1:A2:A3" in key_file.read_text() and "01:03:05" in key_file.read_text()
    recorder.frame(
        secured_block_response(100, bytes(50), key=OTHER_KEY, key_seq=1), hop_src="CH", hop_dst="B2"
    )
    recorder.close()

    df = read_timeline(recorder.run_dir / "timeline.parquet")
    frames = df[df["kind"] == "frame"]
    assert frames["zcl_command"].fillna("(encrypted)").tolist() == [
        "Image Block Request",
        "Image Block Response",
        "Image Block Response",
        "(encrypted)",  # sent under the new key before the recorder was told about it
        "Image Block Response",
    ]
    assert frames["file_offset"].tolist()[:3] == [0, 0, 50] and int(frames["file_offset"].iloc[4]) == 100
    assert "MIC check failed" in frames["detail"].iloc[3]
    events = df[df["kind"] == "event"]["detail"].tolist()
    assert any("'CH network key'" in e for e in events) and any(
        "'rotated'" in e and "added" in e for e in events
    )


def test_recorder_says_why_a_frame_without_extended_nonce_stays_encrypted(tmp_path: Path) -> None:
    recorder, _ = _recorder(tmp_path, [NetworkKey(KEY, "CH")])
    s = recorder.frame(
        secured_block_response(50, bytes(50), extended_nonce=False), hop_src="CH", hop_dst="B2"
    )
    recorder.close()
    assert not s.nwk_decrypted and not s.mic_failed
    detail = read_timeline(recorder.run_dir / "timeline.parquet")["detail"].tolist()[-1]
    assert "IEEE address is unknown" in detail


def test_recorder_refuses_something_that_is_not_a_network_key(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as caught:
        Recorder(tmp_path / "run", virtual_clock=lambda: 0.0, network_keys=[KEY])  # type: ignore[list-item]
    assert KEY.hex() not in str(caught.value).lower()


def _text_of(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if path.suffix == ".parquet":
        return read_timeline(path).to_csv()
    return data.decode("latin-1")


def test_no_key_anywhere_in_the_run_folder_but_the_wireshark_key_file(tmp_path: Path) -> None:
    network_key = NetworkKey(KEY, "CH network key")
    rotated = NetworkKey(OTHER_KEY, "rotated", 1)
    recorder, clock = _recorder(tmp_path, [network_key])
    recorder.frame(secured_block_request(0), hop_src="B2", hop_dst="CH")
    recorder.frame(secured_block_response(0, bytes(50)), hop_src="CH", hop_dst="B2")
    # Every way a key could be handed to the evidence by mistake.
    recorder.event("hub", "network formed", key=network_key, device="CH")
    recorder.event("hub", "joined", new=network_key, raw=KEY, material=KEY.hex(), device="B2")
    recorder.event("hub", f"debug {KEY.hex(':').upper()} {KEY[::-1].hex()}")
    recorder.serial_line("CH", f"nwk key: {KEY.hex(' ').upper()}\r\n")
    recorder.serial_line("CH", f"NWK KEY {KEY.hex()} seq 0")
    recorder.add_network_key(rotated)
    recorder.serial_line("B2", f"switch key -> {OTHER_KEY.hex(':')}")
    clock[0] += 5
    recorder.frame(
        secured_block_response(50, bytes(50), key=OTHER_KEY, key_seq=1), hop_src="CH", hop_dst="B2"
    )
    recorder.close()
    record = RunRecord(
        run_id="run",
        harness_version="0",
        testbed_name="emulated",
        testbed_file="testbeds/emulated.yaml",
        testbed_sha256="00" * 32,
        seed=1,
        started_wall="2026-09-21T14:13:20.000Z",
        ended_wall="2026-09-21T14:13:21.000Z",
        command="harness run suites/robot --seed 1",
        tests=[TestRecord("t", "s", "PASS", "ok", "2026-09-21T14:13:20.000Z", None, [])],
    )
    record.save(recorder.run_dir / RECORD_FILE)
    write_html_report(recorder.run_dir, record)
    write_manifest(recorder.run_dir)

    transcript = (recorder.run_dir / "evidence" / "serial" / "CH.log").read_text()
    assert transcript.count("«redacted»") == 2 and "seq 0" in transcript
    checked = []
    for path in sorted(p for p in recorder.run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(recorder.run_dir).as_posix()
        if rel == "evidence/zigbee_pc_keys":
            continue
        text = _text_of(path)
        raw = path.read_bytes()
        for key in (KEY, OTHER_KEY):
            assert key not in raw and key[::-1] not in raw, rel
            for form in _key_texts(key):
                assert form not in text, (rel, form)
        checked.append(rel)
    assert {
        "timeline.parquet",
        "evidence/timeline.jsonl.gz",
        "evidence/serial/CH.log",
        "run.json",
        "index.html",
    } <= set(checked)
    assert "manifest.json" in checked
