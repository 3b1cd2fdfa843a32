"""Property tests for the joining commands' codecs: round trips, and decoders that raise only FrameError."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbeds.emulator import commands as c
from testbeds.emulator.frames import FrameError
from testbeds.emulator.keys import parse_aps_aux

ROUND_TRIP = settings(max_examples=200, deadline=None, database=None)
FUZZ = settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
ieee = st.binary(min_size=8, max_size=8)
key = st.binary(min_size=16, max_size=16)


@ROUND_TRIP
@given(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 15), ieee, u8)
def test_beacon_round_trip(
    coordinator: bool, permit: bool, router: bool, end_device: bool, depth: int, xpan: bytes, update: int
) -> None:
    beacon = c.Beacon(coordinator, permit, router, end_device, depth, xpan, update)
    assert c.decode_beacon(c.encode_beacon(beacon)) == beacon


@ROUND_TRIP
@given(u8, u16, u8)
def test_mac_and_nwk_command_round_trips(capability: int, address: int, status: int) -> None:
    assert c.decode_association_request(c.encode_association_request(capability)) == capability
    assert c.decode_association_response(c.encode_association_response(address, status)) == (address, status)
    assert c.decode_rejoin_request(c.encode_rejoin_request(capability)) == capability
    assert c.decode_rejoin_response(c.encode_rejoin_response(address, status)) == (address, status)


@ROUND_TRIP
@given(st.booleans(), st.booleans(), st.booleans())
def test_leave_round_trip(request: bool, rejoin: bool, remove_children: bool) -> None:
    leave = c.Leave(request, rejoin, remove_children)
    assert c.decode_leave(c.encode_leave(leave)) == leave


@ROUND_TRIP
@given(st.sampled_from([c.KEY_TYPE_NETWORK, c.KEY_TYPE_TC_LINK]), key, ieee, ieee, u8, u16, u8)
def test_aps_command_round_trips(
    key_type: int, value: bytes, dst: bytes, src: bytes, seq: int, nwk: int, status: int
) -> None:
    tk = c.TransportKey(key_type, value, dst, src, seq if key_type == c.KEY_TYPE_NETWORK else 0)
    assert c.decode_transport_key(c.encode_transport_key(tk)) == tk
    update = c.UpdateDevice(dst, nwk, status)
    assert c.decode_update_device(c.encode_update_device(update)) == update
    assert c.decode_remove_device(c.encode_remove_device(dst)) == dst
    assert c.decode_tunnel(c.encode_tunnel(dst, value)) == (dst, value)


DECODERS: list[Callable[[bytes], object]] = [
    c.decode_beacon,
    c.decode_association_request,
    c.decode_association_response,
    c.decode_rejoin_request,
    c.decode_rejoin_response,
    c.decode_leave,
    c.decode_transport_key,
    c.decode_update_device,
    c.decode_remove_device,
    c.decode_tunnel,
    parse_aps_aux,
]


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda d: d.__name__)
@FUZZ
@given(data=st.binary(max_size=48), lead=u8)
def test_decoders_raise_only_frame_error(decoder: Callable[[bytes], object], data: bytes, lead: int) -> None:
    for payload in (data, bytes([lead]) + data):
        with contextlib.suppress(FrameError):
            decoder(payload)
