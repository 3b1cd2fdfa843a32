"""Frame builders for the evidence tests, written here from the specifications.

They deliberately do not use the emulator's codec (``testbeds``) nor the decoder under test: the
FCS is a bit-by-bit CRC-16/KERMIT, and every header is packed field by field.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest

PAN = 0x1A62


def crc16_bitwise(data: bytes) -> int:
    """CRC-16/KERMIT, one bit at a time (reference for the decoder's table-driven version)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def with_fcs(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16_bitwise(body))


def mac_data(
    payload: bytes, *, src: int = 0x0000, dst: int = 0x0001, seq: int = 23, ack_req: bool = True
) -> bytes:
    # data frame, PAN ID compression, short dst and src, frame version 0 (2003) as ZigBee sends
    fcf = 0x1 | (0x20 if ack_req else 0) | 0x40 | (2 << 10) | (2 << 14)
    return with_fcs(struct.pack("<HBHHH", fcf, seq, PAN, dst, src) + payload)


def mac_ack(seq: int, *, pending: bool = False) -> bytes:
    return with_fcs(struct.pack("<HB", 0x2 | (0x10 if pending else 0), seq))


def mac_data_request(*, src: int = 0x5678, dst: int = 0x0000, seq: int = 9) -> bytes:
    fcf = 0x3 | 0x20 | 0x40 | (2 << 10) | (2 << 14)
    return with_fcs(struct.pack("<HBHHHB", fcf, seq, PAN, dst, src, 0x04))


def nwk(
    payload: bytes, *, src: int, dst: int, radius: int = 30, seq: int = 7, src_ieee: bytes | None = None
) -> bytes:
    fcf = 0x0000 | (2 << 2) | (1 << 6)  # data, protocol version 2, discover route enabled
    extra = b""
    if src_ieee is not None:
        fcf |= 1 << 12
        extra = src_ieee[::-1]
    return struct.pack("<HHHBB", fcf, dst, src, radius, seq) + extra + payload


def nwk_secured(ciphertext: bytes, *, src: int, dst: int, frame_counter: int, src_ieee: bytes) -> bytes:
    fcf = (2 << 2) | (1 << 6) | (1 << 9) | (1 << 12)
    head = struct.pack("<HHHBB", fcf, dst, src, 30, 99) + src_ieee[::-1]
    # security control: level 5, key id 1 (network key), extended nonce
    aux = struct.pack("<BI", 0x05 | (1 << 3) | (1 << 5), frame_counter) + src_ieee[::-1] + b"\x00"
    return head + aux + ciphertext + b"\xde\xad\xbe\xef"


def aps_data(
    payload: bytes,
    *,
    cluster: int = 0x0019,
    profile: int = 0x0104,
    dst_ep: int = 1,
    src_ep: int = 1,
    counter: int = 12,
) -> bytes:
    return struct.pack("<BBHHBB", 0x40, dst_ep, cluster, profile, src_ep, counter) + payload


def aps_ack(
    *, cluster: int = 0x0019, profile: int = 0x0104, dst_ep: int = 1, src_ep: int = 1, counter: int = 12
) -> bytes:
    return struct.pack("<BBHHBB", 0x02, dst_ep, cluster, profile, src_ep, counter)


def zcl(
    command: int,
    payload: bytes,
    *,
    tsn: int = 5,
    cluster_specific: bool = True,
    server_to_client: bool = False,
) -> bytes:
    fc = (0x01 if cluster_specific else 0x00) | (0x08 if server_to_client else 0) | 0x10
    return struct.pack("<BBB", fc, tsn, command) + payload


MFR, IMAGE_TYPE, VERSION = 0x1234, 0x0201, 0x01010000


def block_response(
    offset: int,
    data: bytes,
    *,
    src: int = 0x0000,
    dst: int = 0x1234,
    mac_dst: int | None = None,
    tsn: int = 5,
    seq: int = 23,
) -> bytes:
    body = struct.pack("<BHHIIB", 0x00, MFR, IMAGE_TYPE, VERSION, offset, len(data)) + data
    return mac_data(
        nwk(aps_data(zcl(0x05, body, tsn=tsn, server_to_client=True), counter=tsn), src=src, dst=dst),
        src=src,
        dst=dst if mac_dst is None else mac_dst,
        seq=seq,
    )


def block_request(
    offset: int, max_size: int = 50, *, src: int = 0x1234, dst: int = 0x0000, min_period: int | None = None
) -> bytes:
    fc = 0x02 if min_period is not None else 0x00
    body = struct.pack("<BHHIIB", fc, MFR, IMAGE_TYPE, VERSION, offset, max_size)
    if min_period is not None:
        body += struct.pack("<H", min_period)
    return mac_data(nwk(aps_data(zcl(0x03, body)), src=src, dst=dst), src=src, dst=dst)


@pytest.fixture
def frames() -> SimpleNamespace:
    """The frame builders above, for tests that need hand-made 802.15.4 / ZigBee frames."""
    return SimpleNamespace(
        crc16_bitwise=crc16_bitwise,
        with_fcs=with_fcs,
        mac_data=mac_data,
        mac_ack=mac_ack,
        mac_data_request=mac_data_request,
        nwk=nwk,
        nwk_secured=nwk_secured,
        aps_data=aps_data,
        aps_ack=aps_ack,
        zcl=zcl,
        block_response=block_response,
        block_request=block_request,
        MFR=MFR,
        IMAGE_TYPE=IMAGE_TYPE,
        VERSION=VERSION,
        PAN=PAN,
    )
