"""The evidence decoder reads the frames joining puts on air: beacons, association, rejoin, keys."""

from __future__ import annotations

from harness.evidence.decode import summarize
from testbeds.emulator.commands import (
    KEY_TYPE_NETWORK,
    UPDATE_UNSECURED_JOIN,
    Beacon,
    Leave,
    TransportKey,
    UpdateDevice,
    encode_association_request,
    encode_association_response,
    encode_beacon,
    encode_leave,
    encode_rejoin_request,
    encode_transport_key,
    encode_tunnel,
    encode_update_device,
)
from testbeds.emulator.frames import (
    APS_COMMAND,
    MAC_BEACON,
    MAC_COMMAND,
    MAC_DATA,
    NWK_BROADCAST_RX_ON,
    NWK_COMMAND,
    NWK_DATA,
    ApsFrame,
    MacFrame,
    NwkFrame,
)
from testbeds.emulator.keys import KEY_ID_KEY_TRANSPORT, ApsAuxHeader, ApsSecurity, key_transport_key
from testbeds.emulator.security import NwkSecurity

PAN = 0x1A62
KEY = bytes.fromhex("01030507090b0d0f00020406080a0c0d")
LINK_KEY = bytes.fromhex("66B6900981E1EE3CA4206B6B861C02BB")
TC = bytes.fromhex("010000feff6f0d00")
JOINER = bytes.fromhex("013000feff6f0d00")
PARENT = bytes.fromhex("021000feff6f0d00")


def _mac(
    frame_type: int, payload: bytes, dst: int | bytes | None, src: int | bytes | None, **kw: object
) -> bytes:
    dst_pan = kw.pop("dst_pan", PAN if dst is not None else None)
    return MacFrame(frame_type, 9, dst_pan, dst, kw.pop("src_pan", None), src, payload=payload, **kw).encode()  # type: ignore[arg-type]


def _secured(nwk: NwkFrame) -> bytes:
    return NwkSecurity(KEY).protect(nwk, source_ieee=PARENT, frame_counter=77)


def _frames() -> dict[str, bytes]:
    transport = ApsSecurity(key_transport_key(LINK_KEY)).protect(
        ApsFrame(
            APS_COMMAND,
            counter=4,
            payload=encode_transport_key(TransportKey(KEY_TYPE_NETWORK, KEY, JOINER, TC)),
        ),
        ApsAuxHeader(KEY_ID_KEY_TRANSPORT, 1, TC),
    )
    beacon = encode_beacon(Beacon(True, True, True, True, 0, bytes(8)))
    return {
        "beacon request": _mac(MAC_COMMAND, b"\x07", 0xFFFF, None, dst_pan=0xFFFF),
        "beacon": _mac(MAC_BEACON, beacon, None, 0x0000, src_pan=PAN),
        "association request": _mac(
            MAC_COMMAND, encode_association_request(0x80), 0x1002, JOINER, src_pan=0xFFFF
        ),
        "association response": _mac(MAC_COMMAND, encode_association_response(0x3001, 0), JOINER, PARENT),
        "unsecured rejoin request": _mac(
            MAC_DATA,
            NwkFrame(
                NWK_COMMAND, 0x1002, 0x3001, 1, 3, src_ieee=JOINER, payload=encode_rejoin_request(0x80)
            ).encode(),
            0x1002,
            0x3001,
        ),
        "secured leave": _mac(
            MAC_DATA,
            _secured(
                NwkFrame(
                    NWK_COMMAND,
                    NWK_BROADCAST_RX_ON,
                    0x1002,
                    1,
                    4,
                    src_ieee=PARENT,
                    payload=encode_leave(Leave(False, False)),
                )
            ),
            0xFFFF,
            0x1002,
        ),
        "update device": _mac(
            MAC_DATA,
            _secured(
                NwkFrame(
                    NWK_DATA,
                    0x0000,
                    0x1002,
                    30,
                    5,
                    payload=ApsFrame(
                        APS_COMMAND,
                        counter=6,
                        payload=encode_update_device(UpdateDevice(JOINER, 0x3001, UPDATE_UNSECURED_JOIN)),
                    ).encode(),
                )
            ),
            0x1001,
            0x1002,
        ),
        "tunnel": _mac(
            MAC_DATA,
            _secured(
                NwkFrame(
                    NWK_DATA,
                    0x1002,
                    0x0000,
                    30,
                    6,
                    payload=ApsFrame(
                        APS_COMMAND, counter=7, payload=encode_tunnel(JOINER, transport)
                    ).encode(),
                )
            ),
            0x1002,
            0x1001,
        ),
        "transport key, last hop": _mac(
            MAC_DATA, NwkFrame(NWK_DATA, 0x3001, 0x1002, 1, 7, payload=transport).encode(), 0x3001, 0x1002
        ),
    }


def test_joining_frames_decode_without_error_and_say_what_they_are() -> None:
    expected = {
        "beacon request": "Beacon Request",
        "beacon": "MAC beacon 0x0000",
        "association request": "Association Request 00:0d:6f:ff:fe:00:30:01",
        "association response": "Association Response",
        "unsecured rejoin request": "NWK command Rejoin Request",
        "secured leave": "NWK command Leave",
        "update device": "Update Device",
        "tunnel": "APS command #7 Tunnel",
        "transport key, last hop": "APS(secured)",
    }
    for name, raw in _frames().items():
        summary = summarize(raw, keys=[KEY])
        assert summary.error is None, (name, summary.error)
        assert summary.fcs_ok, name
        assert expected[name] in summary.layers, (name, summary.layers)
        # Without the key the secured ones stop at NWK, still without an error.
        assert summarize(raw).error is None, name
    assert summarize(_frames()["transport key, last hop"], keys=[KEY]).aps_secured
