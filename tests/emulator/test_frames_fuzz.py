"""Property tests for the emulator's frame codecs.

Two properties: every frame the encoders accept decodes back to the same fields (300 examples per
codec), and every decoder given arbitrary bytes either returns or raises FrameError, never anything
else (1000 examples per decoder, plus 300 mutated valid frames per layer).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbeds.emulator import zcl_types as zcl
from testbeds.emulator import zdo
from testbeds.emulator.frames import (
    APS_ACK,
    APS_BROADCAST,
    APS_COMMAND,
    APS_DATA,
    APS_GROUP,
    APS_UNICAST,
    MAC_ACK,
    MAC_BEACON,
    MAC_COMMAND,
    MAC_DATA,
    MAX_PSDU,
    NWK_COMMAND,
    NWK_DATA,
    ApsFrame,
    FrameError,
    MacFrame,
    NwkFrame,
    ZclFrame,
    fcs,
)

ROUND_TRIP = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
FUZZ = settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
ieee = st.binary(min_size=8, max_size=8)
short_or_ext = st.one_of(u16, ieee)


# ------------------------------------------------------------------------------------ strategies


@st.composite
def mac_frames(draw: st.DrawFn) -> MacFrame:
    ft = draw(st.sampled_from([MAC_BEACON, MAC_DATA, MAC_ACK, MAC_COMMAND]))
    dst = draw(st.one_of(st.none(), short_or_ext))
    src = draw(st.one_of(st.none(), short_or_ext))
    dst_pan = draw(u16) if dst is not None else None
    if src is None:
        src_pan = None
    elif dst is None:
        src_pan = draw(u16)
    else:
        src_pan = draw(st.one_of(st.none(), u16))
    header = 3 + (0 if dst is None else 2 + (2 if isinstance(dst, int) else 8))
    header += 0 if src is None else 2 + (2 if isinstance(src, int) else 8)
    payload = draw(st.binary(min_size=1 if ft == MAC_COMMAND else 0, max_size=MAX_PSDU - 2 - header))
    return MacFrame(
        ft, draw(u8), dst_pan, dst, src_pan, src, draw(st.booleans()), draw(st.booleans()), payload
    )


@st.composite
def nwk_frames(draw: st.DrawFn) -> NwkFrame:
    relays = draw(st.one_of(st.none(), st.lists(u16, max_size=12).map(tuple)))
    return NwkFrame(
        draw(st.sampled_from([NWK_DATA, NWK_COMMAND])),
        draw(u16),
        draw(u16),
        draw(u8),
        draw(u8),
        draw(st.integers(0, 3)),
        draw(st.booleans()),
        draw(st.one_of(st.none(), ieee)),
        draw(st.one_of(st.none(), ieee)),
        draw(st.binary(max_size=100)),
        draw(st.booleans()),
        draw(st.one_of(st.none(), u8)),
        relays,
        draw(u8) if relays is not None else 0,
    )


@st.composite
def aps_frames(draw: st.DrawFn) -> ApsFrame:
    ft = draw(st.sampled_from([APS_DATA, APS_ACK, APS_COMMAND]))
    security = draw(st.booleans())
    frag = draw(st.one_of(st.none(), st.integers(0, 2)))
    block = draw(u8) if frag else 0
    counter = draw(u8)
    if ft == APS_COMMAND or (ft == APS_ACK and draw(st.booleans())):
        delivery = draw(st.sampled_from([APS_UNICAST, APS_BROADCAST, APS_GROUP]))
        payload = draw(st.binary(max_size=60)) if ft == APS_COMMAND else b""
        return ApsFrame(
            ft,
            delivery,
            draw(st.booleans()),
            counter=counter,
            payload=payload,
            security=security,
            ack_format=ft == APS_ACK,
            fragmentation=frag,
            block_number=block,
            ack_bitfield=draw(u8) if frag and ft == APS_ACK else 0,
        )
    delivery = (
        APS_UNICAST if ft == APS_ACK else draw(st.sampled_from([APS_UNICAST, APS_BROADCAST, APS_GROUP]))
    )
    group = draw(u16) if delivery == APS_GROUP else None
    dst_ep = None if delivery == APS_GROUP else draw(u8)
    payload = draw(st.binary(max_size=80)) if ft == APS_DATA else b""
    return ApsFrame(
        ft,
        delivery,
        draw(st.booleans()),
        dst_ep,
        draw(u16),
        draw(u16),
        draw(u8),
        counter,
        group,
        payload,
        security,
        fragmentation=frag,
        block_number=block,
        ack_bitfield=draw(u8) if frag and ft == APS_ACK else 0,
    )


zcl_frames = st.builds(
    ZclFrame,
    st.booleans(),
    u8,
    u8,
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), u16),
    st.binary(max_size=80),
)


def _int_strategy(size: int, signed: bool) -> st.SearchStrategy[int]:
    bits = 8 * size
    return (
        st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else st.integers(0, (1 << bits) - 1)
    )


def _value_strategy(type_id: int) -> st.SearchStrategy[object]:
    if zcl.INT8 <= type_id <= zcl.INT64:
        return _int_strategy(type_id - zcl.INT8 + 1, True)
    for base in (zcl.DATA8, zcl.MAP8, zcl.UINT8):
        if base <= type_id <= base + 7:
            return _int_strategy(type_id - base + 1, False)
    fixed: dict[int, st.SearchStrategy[object]] = {
        zcl.BOOL: st.one_of(st.booleans(), st.none()),
        zcl.ENUM8: _int_strategy(1, False),
        zcl.ENUM16: _int_strategy(2, False),
        zcl.SEMI_FLOAT: st.floats(width=16, allow_nan=False),
        zcl.SINGLE_FLOAT: st.floats(width=32, allow_nan=False),
        zcl.DOUBLE_FLOAT: st.floats(allow_nan=False),
        zcl.OCTET_STRING: st.one_of(st.none(), st.binary(max_size=254)),
        zcl.CHAR_STRING: st.one_of(st.none(), st.text(max_size=60)),
        zcl.LONG_OCTET_STRING: st.one_of(st.none(), st.binary(max_size=300)),
        zcl.LONG_CHAR_STRING: st.one_of(st.none(), st.text(max_size=100)),
        zcl.UTC_TIME: _int_strategy(4, False),
        zcl.CLUSTER_ID: u16,
        zcl.ATTRIBUTE_ID: u16,
        zcl.BACNET_OID: _int_strategy(4, False),
        zcl.IEEE_ADDRESS: ieee,
        zcl.SECURITY_KEY: st.binary(min_size=16, max_size=16),
    }
    return fixed[type_id]


typed_values = st.sampled_from(sorted(zcl.SUPPORTED_TYPES)).flatmap(
    lambda t: st.tuples(st.just(t), _value_strategy(t))
)
analog_typed_values = st.sampled_from(sorted(zcl.ANALOG_TYPES)).flatmap(
    lambda t: st.tuples(st.just(t), _value_strategy(t))
)


@st.composite
def read_records(draw: st.DrawFn) -> tuple[int, int, int | None, object]:
    attr = draw(u16)
    status = draw(st.sampled_from([zcl.SUCCESS, zcl.UNSUPPORTED_ATTRIBUTE, zcl.FAILURE]))
    if status != zcl.SUCCESS:
        return attr, status, None, None
    type_id, value = draw(typed_values)
    return attr, status, type_id, value


@st.composite
def reporting_configs(draw: st.DrawFn) -> zcl.ReportingConfig:
    if draw(st.booleans()):
        return zcl.ReportingConfig(zcl.REPORT_RECEIVE, draw(u16), timeout=draw(u16))
    if draw(st.booleans()):
        type_id, change = draw(analog_typed_values)
    else:
        type_id, change = draw(st.sampled_from([zcl.BOOL, zcl.MAP8, zcl.ENUM8, zcl.CHAR_STRING])), None
    return zcl.ReportingConfig(zcl.REPORT_SEND, draw(u16), type_id, draw(u16), draw(u16), change)


node_descriptors = st.builds(
    zdo.NodeDescriptor,
    st.integers(0, 7),
    st.integers(0, 0x1F),
    u8,
    u16,
    u8,
    u16,
    u16,
    u16,
    u8,
    st.booleans(),
    st.booleans(),
    st.integers(0, 7),
)
simple_descriptors = st.builds(
    zdo.SimpleDescriptor,
    u8,
    u16,
    u16,
    st.integers(0, 15),
    st.lists(u16, max_size=20),
    st.lists(u16, max_size=20),
)
neighbours = st.builds(
    zdo.Neighbour,
    ieee,
    ieee,
    u16,
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 7),
    st.integers(0, 3),
    u8,
    u8,
)


# ----------------------------------------------------------------------------------- round trips


def _normalised(frame: MacFrame) -> MacFrame:
    if frame.dst is not None and frame.src is not None and frame.src_pan == frame.dst_pan:
        frame = MacFrame(
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


@ROUND_TRIP
@given(mac_frames())
def test_mac_round_trip(frame: MacFrame) -> None:
    raw = frame.encode()
    assert len(raw) <= MAX_PSDU
    assert struct.unpack("<H", raw[-2:])[0] == fcs(raw[:-2])
    assert MacFrame.decode(raw) == _normalised(frame)


@ROUND_TRIP
@given(nwk_frames())
def test_nwk_round_trip(frame: NwkFrame) -> None:
    raw = frame.encode()
    assert raw.startswith(frame.header_bytes())
    assert NwkFrame.decode(raw) == frame


@ROUND_TRIP
@given(aps_frames())
def test_aps_round_trip(frame: ApsFrame) -> None:
    raw = frame.encode()
    assert raw == frame.header_bytes() + frame.payload
    assert ApsFrame.decode(raw) == frame


@ROUND_TRIP
@given(zcl_frames)
def test_zcl_round_trip(frame: ZclFrame) -> None:
    assert ZclFrame.decode(frame.encode()) == frame


@ROUND_TRIP
@given(typed_values, st.binary(max_size=4), st.binary(max_size=4))
def test_zcl_value_round_trip(typed: tuple[int, object], before: bytes, after: bytes) -> None:
    type_id, value = typed
    raw = zcl.encode_value(type_id, value)
    assert zcl.decode_value(type_id, before + raw + after, len(before)) == (value, len(before) + len(raw))


@ROUND_TRIP
@given(st.lists(read_records(), max_size=6))
def test_read_attributes_response_round_trip(records: list[tuple[int, int, int | None, object]]) -> None:
    assert zcl.decode_read_attributes_response(zcl.encode_read_attributes_response(records)) == records


@ROUND_TRIP
@given(st.lists(st.tuples(u16, typed_values).map(lambda r: (r[0], r[1][0], r[1][1])), max_size=6))
def test_write_and_report_attributes_round_trip(records: list[tuple[int, int, object]]) -> None:
    assert zcl.decode_write_attributes(zcl.encode_write_attributes(records)) == records
    assert zcl.decode_report_attributes(zcl.encode_report_attributes(records)) == records


@ROUND_TRIP
@given(st.lists(u16, max_size=20))
def test_read_attributes_round_trip(attr_ids: list[int]) -> None:
    assert zcl.decode_read_attributes(zcl.encode_read_attributes(attr_ids)) == attr_ids


@ROUND_TRIP
@given(st.lists(st.tuples(st.sampled_from([zcl.SUCCESS, zcl.READ_ONLY, zcl.INVALID_VALUE]), u16), max_size=6))
def test_write_attributes_response_round_trip(statuses: list[tuple[int, int]]) -> None:
    failed = [s for s in statuses if s[0] != zcl.SUCCESS]
    assert zcl.decode_write_attributes_response(zcl.encode_write_attributes_response(statuses)) == failed


@ROUND_TRIP
@given(st.lists(reporting_configs(), max_size=5))
def test_configure_reporting_round_trip(records: list[zcl.ReportingConfig]) -> None:
    assert zcl.decode_configure_reporting(zcl.encode_configure_reporting(records)) == records


@ROUND_TRIP
@given(node_descriptors)
def test_node_descriptor_round_trip(desc: zdo.NodeDescriptor) -> None:
    raw = desc.encode()
    assert len(raw) == 13
    assert zdo.NodeDescriptor.decode(raw) == desc
    assert zdo.decode_node_desc_rsp(zdo.encode_node_desc_rsp(1, zdo.SUCCESS, 2, desc)) == (1, 0, 2, desc)


@ROUND_TRIP
@given(simple_descriptors, u8, u16)
def test_simple_descriptor_round_trip(sd: zdo.SimpleDescriptor, tsn: int, nwk: int) -> None:
    assert zdo.SimpleDescriptor.decode(sd.encode()) == sd
    assert zdo.decode_simple_desc_rsp(zdo.encode_simple_desc_rsp(tsn, zdo.SUCCESS, nwk, sd)) == (
        tsn,
        0,
        nwk,
        sd,
    )


@ROUND_TRIP
@given(st.lists(neighbours, max_size=3), u8, u8)
def test_mgmt_lqi_round_trip(records: list[zdo.Neighbour], total: int, start: int) -> None:
    raw = zdo.encode_mgmt_lqi_rsp(9, zdo.SUCCESS, total, start, records)
    assert len(raw) == 5 + 22 * len(records)
    assert zdo.decode_mgmt_lqi_rsp(raw) == (9, zdo.SUCCESS, total, start, records)


@ROUND_TRIP
@given(u8, u16, ieee, u8, st.one_of(st.none(), st.lists(u16, max_size=10)), u8)
def test_zdo_address_messages_round_trip(
    tsn: int, nwk: int, addr: bytes, cap: int, associated: list[int] | None, start: int
) -> None:
    assert zdo.decode_device_annce(zdo.encode_device_annce(tsn, nwk, addr, cap)) == (tsn, nwk, addr, cap)
    rsp = zdo.decode_addr_rsp(zdo.encode_nwk_addr_rsp(tsn, zdo.SUCCESS, addr, nwk, associated, start))
    assert rsp[:5] == (tsn, zdo.SUCCESS, addr, nwk, associated)
    if associated:
        assert rsp[5] == start
    assert zdo.decode_active_ep_rsp(zdo.encode_active_ep_rsp(tsn, 0, nwk, [cap])) == (tsn, 0, nwk, [cap])


# -------------------------------------------------------------------- decoders never crash otherwise


def _mac_with_fcs(data: bytes) -> object:
    body = data[: MAX_PSDU - 2]
    return MacFrame.decode(body + struct.pack("<H", fcs(body)))


def _value_at(data: bytes) -> object:
    # first byte picks the data type, second the offset: exercise every type on arbitrary bytes
    if len(data) < 2:
        return zcl.decode_value(zcl.UINT8, data, 0)
    return zcl.decode_value(data[0], data, data[1] % (len(data) + 2))


DECODERS: dict[str, Callable[[bytes], object]] = {
    "MacFrame.decode": MacFrame.decode,
    "MacFrame.decode with valid FCS": _mac_with_fcs,
    "MacFrame.decode without FCS check": lambda d: MacFrame.decode(d, check_fcs=False),
    "NwkFrame.decode": NwkFrame.decode,
    "ApsFrame.decode": ApsFrame.decode,
    "ZclFrame.decode": ZclFrame.decode,
    "zcl.decode_value": _value_at,
    "zcl.decode_read_attributes": zcl.decode_read_attributes,
    "zcl.decode_read_attributes_response": zcl.decode_read_attributes_response,
    "zcl.decode_write_attributes": zcl.decode_write_attributes,
    "zcl.decode_write_attributes_response": zcl.decode_write_attributes_response,
    "zcl.decode_report_attributes": zcl.decode_report_attributes,
    "zcl.decode_configure_reporting": zcl.decode_configure_reporting,
    "zcl.decode_configure_reporting_response": zcl.decode_configure_reporting_response,
    "zcl.decode_default_response": zcl.decode_default_response,
    "zcl.decode_discover_attributes": zcl.decode_discover_attributes,
    "zcl.decode_discover_attributes_response": zcl.decode_discover_attributes_response,
    "zdo.decode_tsn": zdo.decode_tsn,
    "zdo.NodeDescriptor.decode": zdo.NodeDescriptor.decode,
    "zdo.SimpleDescriptor.decode": zdo.SimpleDescriptor.decode,
    "zdo.Neighbour.decode": zdo.Neighbour.decode,
    "zdo.decode_nwk_addr_req": zdo.decode_nwk_addr_req,
    "zdo.decode_ieee_addr_req": zdo.decode_ieee_addr_req,
    "zdo.decode_addr_rsp": zdo.decode_addr_rsp,
    "zdo.decode_nwk_addr_of_interest": zdo.decode_nwk_addr_of_interest,
    "zdo.decode_simple_desc_req": zdo.decode_simple_desc_req,
    "zdo.decode_node_desc_rsp": zdo.decode_node_desc_rsp,
    "zdo.decode_simple_desc_rsp": zdo.decode_simple_desc_rsp,
    "zdo.decode_active_ep_rsp": zdo.decode_active_ep_rsp,
    "zdo.decode_match_desc_req": zdo.decode_match_desc_req,
    "zdo.decode_device_annce": zdo.decode_device_annce,
    "zdo.decode_mgmt_lqi_req": zdo.decode_mgmt_lqi_req,
    "zdo.decode_mgmt_lqi_rsp": zdo.decode_mgmt_lqi_rsp,
    "zdo.decode_mgmt_leave_req": zdo.decode_mgmt_leave_req,
    "zdo.decode_mgmt_permit_joining_req": zdo.decode_mgmt_permit_joining_req,
    "zdo.decode_status_rsp": zdo.decode_status_rsp,
}


def _run_all_decoders(data: bytes) -> None:
    for name, decoder in DECODERS.items():
        try:
            decoder(data)
        except FrameError:
            pass
        except Exception as exc:  # the property under test: nothing but FrameError escapes
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc} on {data.hex()}") from exc


# Each example goes through every decoder: 1000 inputs per decoder for 1/36 of Hypothesis's per-example
# overhead (one @given per decoder took ~20 s of CPU on the reference machine).
@FUZZ
@given(data=st.binary(max_size=140))
def test_decoders_raise_only_frame_error(data: bytes) -> None:
    _run_all_decoders(data)


@FUZZ
@given(data=st.binary(min_size=5, max_size=MAX_PSDU - 2))
def test_decoders_raise_only_frame_error_on_frame_sized_input(data: bytes) -> None:
    _run_all_decoders(data)


@st.composite
def mutated(draw: st.DrawFn, frames: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with some bytes overwritten, then truncated or extended."""
    raw = bytearray(draw(frames))
    for _ in range(draw(st.integers(1, 4))):
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(u8)
    cut = draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) + draw(st.binary(max_size=3))


MUTATION_TARGETS: dict[str, tuple[st.SearchStrategy[bytes], Callable[[bytes], object]]] = {
    "MAC": (mac_frames().map(lambda f: f.encode()[:-2]), _mac_with_fcs),
    "NWK": (nwk_frames().map(lambda f: f.encode()), NwkFrame.decode),
    "APS": (aps_frames().map(lambda f: f.encode()), ApsFrame.decode),
    "ZCL read attributes response": (
        st.lists(read_records(), max_size=4).map(zcl.encode_read_attributes_response),
        zcl.decode_read_attributes_response,
    ),
    "ZCL configure reporting": (
        st.lists(reporting_configs(), max_size=4).map(zcl.encode_configure_reporting),
        zcl.decode_configure_reporting,
    ),
    "ZDO simple descriptor response": (
        simple_descriptors.map(lambda sd: zdo.encode_simple_desc_rsp(1, 0, 2, sd)),
        zdo.decode_simple_desc_rsp,
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATION_TARGETS))
@ROUND_TRIP
@given(data=st.data())
def test_mutated_frames_raise_only_frame_error(name: str, data: st.DataObject) -> None:
    frames, decoder = MUTATION_TARGETS[name]
    raw = data.draw(mutated(frames))
    with contextlib.suppress(FrameError):
        decoder(raw)
