"""Install codes, MMO hash, keyed hash and APS frame security, against published vectors and tshark."""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbeds.emulator.commands import KEY_TYPE_NETWORK, TransportKey, encode_transport_key
from testbeds.emulator.frames import APS_COMMAND, MAC_DATA, NWK_DATA, ApsFrame, FrameError, MacFrame, NwkFrame
from testbeds.emulator.keys import (
    KEY_ID_KEY_TRANSPORT,
    ApsAuxHeader,
    ApsSecurity,
    InstallCodeError,
    crc16_x25,
    key_load_key,
    key_transport_key,
    keyed_hash,
    link_key_from_install_code,
    mmo_hash,
    validate_install_code,
)
from testbeds.emulator.security import SecurityError

# ZigBee 3.0 (BDB) install-code example: code + CRC C3B5 -> link key.
INSTALL_CODE = bytes.fromhex("83FED3407A939723A5C639B26916D505C3B5")
INSTALL_CODE_LINK_KEY = bytes.fromhex("66B6900981E1EE3CA4206B6B861C02BB")
NETWORK_KEY = bytes.fromhex("01030507090b0d0f00020406080a0c0d")
TC_IEEE = bytes.fromhex("010000feff6f0d00")  # EUI-64 00:0d:6f:ff:fe:00:00:01, on-air order
JOINER_IEEE = bytes.fromhex("040000feff6f0d00")


def test_crc16_x25_check_value_and_install_code_crc() -> None:
    assert crc16_x25(b"123456789") == 0x906E
    assert crc16_x25(INSTALL_CODE[:16]) == 0xB5C3  # sent little-endian: C3 B5


def test_install_code_example_gives_the_published_link_key() -> None:
    assert link_key_from_install_code(INSTALL_CODE) == INSTALL_CODE_LINK_KEY


@pytest.mark.parametrize("length", [6, 8, 12, 16])
def test_install_codes_of_every_defined_length_validate(length: int) -> None:
    body = bytes(range(1, length + 1))
    code = body + crc16_x25(body).to_bytes(2, "little")
    assert validate_install_code(code) == code
    assert len(link_key_from_install_code(code)) == 16


def test_bad_install_codes_are_refused_with_the_reason() -> None:
    with pytest.raises(InstallCodeError, match="6, 8, 12 or 16 bytes"):
        validate_install_code(bytes(9))
    wrong_crc = INSTALL_CODE[:16] + b"\xb5\xc3"  # CRC bytes swapped (big-endian by mistake)
    with pytest.raises(InstallCodeError, match=r"CRC is B5C3.*C3B5"):
        validate_install_code(wrong_crc)


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        # ZigBee Specification Annex C.5: MMO hash test vectors.
        (b"\xc0", "ae3a102a28d43ee0d4a09e22788b206c"),
        (bytes(range(0xC0, 0xD0)), "a7977e88bc0b61e8210827109a228f2d"),
        (bytes(i & 0xFF for i in range(8191)), "24ec2fe75bbffcb34789bc0610e7f165"),
        # 8192 bytes and more: the second padding form (32-bit length, 16 zero bits).
        (bytes(i & 0xFF for i in range(8192)), "dc6b0687f09f8607131c170b3bd31591"),
        (bytes(i & 0xFF for i in range(8201)), "72c9b15e178aa843e4a16c58e33643a3"),
        (bytes(i & 0xFF for i in range(8202)), "bc9828d59b2aa323daf20be5f2e66511"),
    ],
    ids=["1-byte", "16-byte", "8191-byte", "8192-byte", "8201-byte", "8202-byte"],
)
def test_mmo_hash_annex_c_vectors(message: bytes, digest: str) -> None:
    assert mmo_hash(message).hex() == digest


def test_keyed_hash_annex_c6_vectors_and_the_derived_keys() -> None:
    assert keyed_hash(bytes(range(0x40, 0x50)), b"\xc0").hex() == "4512807bf94cb3400f0e2c25fb76e999"
    assert keyed_hash(bytes(range(0x40, 0x60)), bytes(range(0xC0, 0xD0))).hex() == (
        "a3b0079984bf1557f74a0d6387e0a11a"
    )
    # The key-transport key of the well-known default link key "ZigBeeAlliance09".
    assert key_transport_key(b"ZigBeeAlliance09").hex() == "4bab0f173e1434a2d572e1c1ef478782"
    assert key_load_key(INSTALL_CODE_LINK_KEY) == keyed_hash(INSTALL_CODE_LINK_KEY, b"\x02")
    assert key_load_key(INSTALL_CODE_LINK_KEY) != key_transport_key(INSTALL_CODE_LINK_KEY)


def _transport_key_aps(counter: int = 1) -> tuple[bytes, bytes]:
    plain = encode_transport_key(TransportKey(KEY_TYPE_NETWORK, NETWORK_KEY, JOINER_IEEE, TC_IEEE, 0))
    frame = ApsFrame(frame_type=APS_COMMAND, counter=7, payload=plain)
    aux = ApsAuxHeader(KEY_ID_KEY_TRANSPORT, counter, TC_IEEE)
    return ApsSecurity(key_transport_key(INSTALL_CODE_LINK_KEY)).protect(frame, aux), plain


def test_aps_security_round_trip_hides_the_key_and_checks_the_mic() -> None:
    raw, plain = _transport_key_aps()
    assert NETWORK_KEY not in raw, "the network key must travel encrypted"
    # Security control on air: level 0, key id 2 (key-transport key), extended nonce.
    assert raw[2] == 0x30
    opened = ApsSecurity(key_transport_key(INSTALL_CODE_LINK_KEY)).unprotect(raw)
    assert opened.plaintext == plain and opened.aux.source_ieee == TC_IEEE
    with pytest.raises(SecurityError, match="MIC"):
        ApsSecurity(key_transport_key(bytes(16))).unprotect(raw)
    with pytest.raises(SecurityError, match="MIC"):
        # The link key itself is not the key that secures a Transport Key (§4.5.3).
        ApsSecurity(INSTALL_CODE_LINK_KEY).unprotect(raw)
    altered = bytearray(raw)
    altered[-6] ^= 1
    with pytest.raises(SecurityError):
        ApsSecurity(key_transport_key(INSTALL_CODE_LINK_KEY)).unprotect(bytes(altered))


@settings(max_examples=500, deadline=None, database=None)
@given(st.binary(max_size=80))
def test_aps_unprotect_raises_only_frame_or_security_errors(data: bytes) -> None:
    security = ApsSecurity(key_transport_key(INSTALL_CODE_LINK_KEY))
    with contextlib.suppress(FrameError, SecurityError):
        security.unprotect(bytes([0x21, 0x01]) + data)
    with contextlib.suppress(FrameError, SecurityError):
        security.unprotect(data)


# ----------------------------------------------------------------------------------- tshark oracle
@pytest.mark.tshark
def test_tshark_decrypts_the_transport_key_with_the_install_code_link_key(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed: the independent decoder check did not run; apt-get install tshark")
    aps, _ = _transport_key_aps(counter=3)
    # Last hop from the parent (0x7C02) to the joiner (0x9A73): NWK unsecured, APS secured.
    nwk = NwkFrame(NWK_DATA, 0x9A73, 0x7C02, 1, 9, payload=aps).encode()
    mac = MacFrame(MAC_DATA, 5, 0x1A62, 0x9A73, None, 0x7C02, True, payload=nwk).encode()
    pcap = tmp_path / "join.pcap"
    with pcap.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 195))
        fh.write(struct.pack("<IIII", 1_700_000_000, 0, len(mac), len(mac)) + mac)
    profile = tmp_path / "config" / "wireshark"
    profile.mkdir(parents=True)
    # Only the install-code link key is given: tshark must derive the key-transport key itself.
    link = INSTALL_CODE_LINK_KEY.hex(":").upper()
    (profile / "zigbee_pc_keys").write_text(f'"{link}","Normal","joiner TC link key"\n')
    fields = ["zbee_aps.cmd.id", "zbee_aps.cmd.key_type", "zbee_aps.cmd.key", "zbee_aps.cmd.seqno"]
    fields += ["zbee_aps.cmd.dst", "zbee_aps.cmd.src", "_ws.malformed", "_ws.expert.message"]
    cmd = [tshark, "-r", str(pcap), "-T", "fields", "-E", "separator=,"]
    for name in fields:
        cmd += ["-e", name]
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    row = dict(zip(fields, result.stdout.strip().split(","), strict=True))
    assert int(row["zbee_aps.cmd.id"], 0) == 0x05  # Transport Key
    assert int(row["zbee_aps.cmd.key_type"], 0) == KEY_TYPE_NETWORK
    assert bytes.fromhex(row["zbee_aps.cmd.key"].replace(":", "")) == NETWORK_KEY
    assert int(row["zbee_aps.cmd.seqno"], 0) == 0
    assert row["zbee_aps.cmd.dst"] == "00:0d:6f:ff:fe:00:00:04"
    assert row["zbee_aps.cmd.src"] == "00:0d:6f:ff:fe:00:00:01"
    assert row["_ws.malformed"] == ""
