"""Bindings and reporting in the emulator: ZDO bind codecs, the reporter, and their robustness."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import looptime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbeds.emulator import zcl_types as zcl
from testbeds.emulator.frames import FrameError
from testbeds.emulator.reporting import (
    BINDING_TABLE_SIZE,
    INVALID_EP,
    MGMT_BIND_PAGE,
    NO_ENTRY,
    NOT_SUPPORTED,
    SUCCESS,
    TABLE_FULL,
    ApplicationTables,
    Binding,
    Reporter,
    decode_bind_req,
    decode_mgmt_bind_rsp,
    encode_bind_req,
    encode_mgmt_bind_rsp,
)

ME = bytes.fromhex("0200 00fe ff6f 0d00".replace(" ", ""))
HUB = bytes.fromhex("0100 00fe ff6f 0d00".replace(" ", ""))
METERING = 0x0702


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    yield loop
    loop.close()


def _reporter(
    loop: asyncio.AbstractEventLoop, sent: list[tuple[Binding, bytes]], tables: ApplicationTables
) -> Reporter:
    values = {(METERING, 0x0000): (zcl.UINT48, 1234), (0x0000, 0x4000): (zcl.CHAR_STRING, "0x01000000")}
    return Reporter(
        loop=loop,
        tables=tables,
        ieee=ME,
        endpoint=1,
        read=lambda cluster, attr: values.get((cluster, attr)),
        send=lambda binding, payload: sent.append((binding, payload)),
        log=lambda text: None,
    )


def test_bind_request_round_trip_and_group_bindings() -> None:
    binding = Binding(ME, 1, METERING, HUB, 1)
    assert decode_bind_req(encode_bind_req(0x42, binding)) == (0x42, binding)
    group = bytes([7]) + ME + bytes([1]) + METERING.to_bytes(2, "little") + bytes([0x01, 0x34, 0x12])
    assert decode_bind_req(group) == (7, None)
    with pytest.raises(FrameError, match="neither group nor IEEE"):
        decode_bind_req(group[:12] + bytes([0x02, 0, 0]))


def test_mgmt_bind_rsp_pages_the_table() -> None:
    table = [Binding(ME, 1, 0x0700 + i, HUB, 1) for i in range(5)]
    tsn, status, total, start, records = decode_mgmt_bind_rsp(encode_mgmt_bind_rsp(9, SUCCESS, table, 3))
    assert (tsn, status, total, start) == (9, SUCCESS, 5, 3)
    assert records == table[3 : 3 + MGMT_BIND_PAGE]


def test_bind_rules(loop: asyncio.AbstractEventLoop) -> None:
    reporter = _reporter(loop, [], ApplicationTables())
    assert reporter.bind(None) == NOT_SUPPORTED
    assert reporter.bind(Binding(HUB, 1, METERING, HUB, 1)) == INVALID_EP  # not our address
    assert reporter.bind(Binding(ME, 2, METERING, HUB, 1)) == INVALID_EP  # not our endpoint
    assert reporter.unbind(Binding(ME, 1, METERING, HUB, 1)) == NO_ENTRY
    for i in range(BINDING_TABLE_SIZE):
        assert reporter.bind(Binding(ME, 1, i, HUB, 1)) == SUCCESS
    assert reporter.bind(Binding(ME, 1, 0x4444, HUB, 1)) == TABLE_FULL
    assert reporter.bind(Binding(ME, 1, 0, HUB, 1)) == SUCCESS  # already there: idempotent
    assert reporter.unbind(Binding(ME, 1, 0, HUB, 1)) == SUCCESS


def test_reports_go_to_bindings_every_max_interval_and_survive_a_restart(
    loop: asyncio.AbstractEventLoop,
) -> None:
    tables = ApplicationTables()
    sent: list[tuple[Binding, bytes]] = []
    reporter = _reporter(loop, sent, tables)
    reporter.start()
    reporter.bind(Binding(ME, 1, METERING, HUB, 1))
    answer = reporter.configure(
        METERING, [zcl.ReportingConfig(zcl.REPORT_SEND, 0x0000, zcl.UINT48, 1, 60, 1)]
    )
    assert zcl.decode_configure_reporting_response(answer) == []  # all succeeded
    loop.run_until_complete(asyncio.sleep(130))
    assert len(sent) == 2
    assert zcl.decode_report_attributes(sent[0][1]) == [(0x0000, zcl.UINT48, 1234)]
    reporter.stop()  # a power cut: the timers go, the tables (flash) stay
    loop.run_until_complete(asyncio.sleep(300))
    assert len(sent) == 2
    again = _reporter(loop, sent, tables)
    again.start()
    loop.run_until_complete(asyncio.sleep(61))
    assert len(sent) == 3


def test_configure_reporting_refusals_and_read_back(loop: asyncio.AbstractEventLoop) -> None:
    reporter = _reporter(loop, [], ApplicationTables())
    answer = reporter.configure(
        METERING,
        [
            zcl.ReportingConfig(zcl.REPORT_SEND, 0x0099, zcl.UINT48, 1, 60, 1),  # no such attribute
            zcl.ReportingConfig(zcl.REPORT_SEND, 0x0000, zcl.UINT16, 1, 60, 1),  # wrong type
            zcl.ReportingConfig(zcl.REPORT_SEND, 0x0000, zcl.UINT48, 90, 60, 1),  # max < min
            zcl.ReportingConfig(zcl.REPORT_RECEIVE, 0x0000, timeout=10),
        ],
    )
    statuses = [status for status, _d, _a in zcl.decode_configure_reporting_response(answer)]
    assert statuses == [
        zcl.UNSUPPORTED_ATTRIBUTE,
        zcl.INVALID_DATA_TYPE,
        zcl.INVALID_VALUE,
        zcl.UNREPORTABLE_ATTRIBUTE,
    ]
    reporter.configure(METERING, [zcl.ReportingConfig(zcl.REPORT_SEND, 0x0000, zcl.UINT48, 5, 600, 10)])
    record = reporter.read_configuration(METERING, bytes([0, 0, 0]))
    assert record[:1] == bytes([zcl.SUCCESS]) and int.from_bytes(record[7:9], "little") == 600
    missing = reporter.read_configuration(METERING, bytes([0, 0x99, 0]))
    assert missing[0] == zcl.UNSUPPORTED_ATTRIBUTE
    with pytest.raises(FrameError):
        reporter.read_configuration(METERING, b"\x00\x00")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_bind_decoders_raise_only_frame_errors(data: bytes) -> None:
    for decoder in (decode_bind_req, decode_mgmt_bind_rsp):
        with contextlib.suppress(FrameError):
            decoder(data)
