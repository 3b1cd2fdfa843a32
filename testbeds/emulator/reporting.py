"""Bindings and attribute reporting: what a meter is told to send, and to whom, kept in flash.

A CH (or any client) binds a device's cluster to itself with ZDO Bind_req (ZigBee PRO §2.4.3.2.2)
and configures reporting with ZCL Configure Reporting (ZCL §2.5.7); the device then sends Report
Attributes (§2.5.11) to every binding of that cluster at least every maximum interval. Both tables
live in non-volatile memory on a real device, so they survive a power cut and, in healthy firmware,
an upgrade: losing them after an upgrade means a meter that silently stops reporting its readings.

Written from the specifications: Bind_req/Unbind_req (cluster 0x0021/0x0022), Mgmt_Bind_req (0x0033)
and the binding table record layout; Configure Reporting / Read Reporting Configuration records.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from testbeds.emulator import zcl_types as zcl
from testbeds.emulator.frames import FrameError

BIND_REQ = 0x0021
UNBIND_REQ = 0x0022
MGMT_BIND_REQ = 0x0033

# ZDO statuses (ZigBee PRO Table 2.137)
SUCCESS = 0x00
NOT_SUPPORTED = 0x84
NO_ENTRY = 0x88
TABLE_FULL = 0x8C
INVALID_EP = 0x82

ADDR_MODE_GROUP = 0x01
ADDR_MODE_IEEE = 0x03
BINDING_TABLE_SIZE = 16
# Mgmt_Bind_rsp carries at most this many records per frame (they must fit one APS payload).
MGMT_BIND_PAGE = 3
# Intervals of 0xFFFF (maximum) switch periodic reporting off (ZCL §2.5.7.1.6).
NO_PERIODIC_REPORT = 0xFFFF

_BIND_HEAD = struct.Struct("<8sBHB")  # source IEEE, source endpoint, cluster, destination address mode
_BINDING_RECORD = struct.Struct("<8sBHB8sB")  # as above, then destination IEEE, destination endpoint


def _err(message: str, field: str) -> FrameError:
    return FrameError(message, "ZDO", field)


@dataclass(frozen=True)
class Binding:
    """One binding table entry: reports of ``cluster`` on ``src_endpoint`` go to this IEEE/endpoint.

    IEEE addresses are kept as sent on air (little-endian), like everywhere in the emulator.
    """

    src_ieee: bytes
    src_endpoint: int
    cluster: int
    dst_ieee: bytes
    dst_endpoint: int

    def record(self) -> bytes:
        """The entry as a Mgmt_Bind_rsp binding table record."""
        return _BINDING_RECORD.pack(
            self.src_ieee,
            self.src_endpoint,
            self.cluster,
            ADDR_MODE_IEEE,
            self.dst_ieee,
            self.dst_endpoint,
        )


def encode_bind_req(tsn: int, binding: Binding) -> bytes:
    """A Bind_req/Unbind_req payload for a unicast (IEEE) binding."""
    return bytes([tsn]) + binding.record()


def decode_bind_req(payload: bytes) -> tuple[int, Binding | None]:
    """Decode a Bind_req/Unbind_req into (TSN, binding); the binding is None for a group binding."""
    if len(payload) < 1 + _BIND_HEAD.size:
        raise _err("Bind_req shorter than its fixed fields", "length")
    tsn = payload[0]
    src, src_ep, cluster, mode = _BIND_HEAD.unpack_from(payload, 1)
    rest = payload[1 + _BIND_HEAD.size :]
    if mode == ADDR_MODE_GROUP:
        if len(rest) != 2:
            raise _err("group Bind_req needs a 2-byte group address", "DstAddress")
        return tsn, None
    if mode != ADDR_MODE_IEEE:
        raise _err(f"destination address mode 0x{mode:02X} is neither group nor IEEE", "DstAddrMode")
    if len(rest) != 9:
        raise _err("IEEE Bind_req needs an 8-byte address and an endpoint", "DstAddress")
    return tsn, Binding(src, src_ep, cluster, rest[:8], rest[8])


def encode_mgmt_bind_rsp(tsn: int, status: int, table: list[Binding], start: int) -> bytes:
    """Mgmt_Bind_rsp: status, table size, start index, then up to a page of records from ``start``."""
    page = table[start : start + MGMT_BIND_PAGE] if status == SUCCESS else []
    head = bytes([tsn, status, len(table), start, len(page)])
    return head + b"".join(entry.record() for entry in page)


def decode_mgmt_bind_rsp(payload: bytes) -> tuple[int, int, int, int, list[Binding]]:
    """Decode a Mgmt_Bind_rsp into (TSN, status, table size, start index, records)."""
    if len(payload) < 2:
        raise _err("Mgmt_Bind_rsp shorter than TSN and status", "length")
    tsn, status = payload[0], payload[1]
    if status != SUCCESS:
        return tsn, status, 0, 0, []
    if len(payload) < 5:
        raise _err("Mgmt_Bind_rsp shorter than its counts", "length")
    total, start, count = payload[2], payload[3], payload[4]
    records: list[Binding] = []
    offset = 5
    for _ in range(count):
        if offset + _BIND_HEAD.size > len(payload):
            raise _err("truncated binding record", "BindingTableList")
        src, src_ep, cluster, mode = _BIND_HEAD.unpack_from(payload, offset)
        offset += _BIND_HEAD.size
        if mode == ADDR_MODE_GROUP:
            offset += 2
            continue
        if mode != ADDR_MODE_IEEE or offset + 9 > len(payload):
            raise _err("bad or truncated destination of a binding record", "BindingTableList")
        records.append(Binding(src, src_ep, cluster, payload[offset : offset + 8], payload[offset + 8]))
        offset += 9
    return tsn, status, total, start, records


@dataclass(frozen=True)
class ReportSetting:
    """Report ``attr_id`` of ``cluster`` (ZCL type ``type_id``) at least every ``max_interval`` s."""

    cluster: int
    attr_id: int
    type_id: int
    min_interval: int
    max_interval: int
    reportable_change: object = None


@dataclass
class ApplicationTables:
    """The binding table and reporting configuration: kept in the device's flash."""

    bindings: list[Binding] = field(default_factory=list)
    reporting: dict[tuple[int, int], ReportSetting] = field(default_factory=dict)

    def clear(self) -> None:
        """Forget every binding and reporting configuration (a factory reset of the tables)."""
        self.bindings.clear()
        self.reporting.clear()


AttributeReader = Callable[[int, int], "tuple[int, object] | None"]
"""Reads (cluster, attribute) -> (ZCL type, value), or None if the device has no such attribute."""
ReportSender = Callable[[Binding, bytes], None]
"""Sends one Report Attributes payload to a binding."""


class Reporter:
    """Keeps the binding table and sends the configured attribute reports while the device runs."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        tables: ApplicationTables,
        ieee: bytes,
        endpoint: int,
        read: AttributeReader,
        send: ReportSender,
        log: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.tables = tables
        self.ieee = ieee
        self.endpoint = endpoint
        self._read = read
        self._send = send
        self._log = log
        self._timers: dict[tuple[int, int], asyncio.TimerHandle] = {}
        self._running = False

    # ---------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start sending the configured reports (after boot)."""
        self._running = True
        for key in self.tables.reporting:
            self._schedule(key)

    def stop(self) -> None:
        """Stop every report timer (power cut or reset); the tables stay in flash."""
        self._running = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # ------------------------------------------------------------------------------ bindings
    def bind(self, binding: Binding | None) -> int:
        """Add a binding (ZDO Bind_req); returns the ZDO status."""
        if binding is None:
            return NOT_SUPPORTED  # group bindings: this emulated device has no groups
        if binding.src_ieee != self.ieee or binding.src_endpoint != self.endpoint:
            return INVALID_EP
        if binding in self.tables.bindings:
            return SUCCESS
        if len(self.tables.bindings) >= BINDING_TABLE_SIZE:
            return TABLE_FULL
        self.tables.bindings.append(binding)
        self._log(
            f"bound cluster 0x{binding.cluster:04X} to {_ieee_text(binding.dst_ieee)}/{binding.dst_endpoint}"
        )
        return SUCCESS

    def unbind(self, binding: Binding | None) -> int:
        """Remove a binding (ZDO Unbind_req); returns the ZDO status."""
        if binding is None:
            return NOT_SUPPORTED
        if binding not in self.tables.bindings:
            return NO_ENTRY
        self.tables.bindings.remove(binding)
        self._log(f"unbound cluster 0x{binding.cluster:04X} from {_ieee_text(binding.dst_ieee)}")
        return SUCCESS

    # ----------------------------------------------------------------------------- reporting
    def configure(self, cluster: int, records: list[zcl.ReportingConfig]) -> bytes:
        """Apply a Configure Reporting command; returns the Configure Reporting Response payload."""
        failures: list[tuple[int, int, int]] = []
        for rec in records:
            if rec.direction != zcl.REPORT_SEND:
                failures.append((zcl.UNREPORTABLE_ATTRIBUTE, rec.direction, rec.attr_id))
                continue
            current = self._read(cluster, rec.attr_id)
            if current is None:
                failures.append((zcl.UNSUPPORTED_ATTRIBUTE, rec.direction, rec.attr_id))
                continue
            if rec.type_id != current[0]:
                failures.append((zcl.INVALID_DATA_TYPE, rec.direction, rec.attr_id))
                continue
            min_i, max_i = rec.min_interval or 0, rec.max_interval or 0
            key = (cluster, rec.attr_id)
            if max_i == NO_PERIODIC_REPORT:
                self.tables.reporting.pop(key, None)
                self._cancel(key)
                self._log(f"reporting of 0x{cluster:04X}/0x{rec.attr_id:04X} switched off")
                continue
            if max_i != 0 and max_i < min_i:
                failures.append((zcl.INVALID_VALUE, rec.direction, rec.attr_id))
                continue
            self.tables.reporting[key] = ReportSetting(
                cluster, rec.attr_id, rec.type_id, min_i, max_i, rec.reportable_change
            )
            self._log(f"report 0x{cluster:04X}/0x{rec.attr_id:04X} every {max_i}s (min {min_i}s)")
            if self._running:
                self._schedule(key)
        return zcl.encode_configure_reporting_response(failures)

    def read_configuration(self, cluster: int, payload: bytes) -> bytes:
        """Answer Read Reporting Configuration: one record per asked attribute (ZCL §2.5.10)."""
        if len(payload) % 3:
            raise FrameError("records are 3 bytes each", "ZCL", "Read Reporting Configuration")
        out: list[bytes] = []
        for offset in range(0, len(payload), 3):
            direction, attr_id = struct.unpack_from("<BH", payload, offset)
            setting = self.tables.reporting.get((cluster, attr_id))
            if direction != zcl.REPORT_SEND or setting is None:
                status = zcl.UNSUPPORTED_ATTRIBUTE if self._read(cluster, attr_id) is None else zcl.NOT_FOUND
                out.append(struct.pack("<BBH", status, direction, attr_id))
                continue
            record = struct.pack(
                "<BBHBHH",
                zcl.SUCCESS,
                direction,
                attr_id,
                setting.type_id,
                setting.min_interval,
                setting.max_interval,
            )
            if setting.type_id in zcl.ANALOG_TYPES:
                record += zcl.encode_value(setting.type_id, setting.reportable_change or 0)
            out.append(record)
        return b"".join(out)

    def _cancel(self, key: tuple[int, int]) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _schedule(self, key: tuple[int, int]) -> None:
        self._cancel(key)
        setting = self.tables.reporting.get(key)
        if setting is None or setting.max_interval == 0:
            return
        self._timers[key] = self.loop.call_later(setting.max_interval, self._report, key)

    def _report(self, key: tuple[int, int]) -> None:
        self._timers.pop(key, None)
        if not self._running:
            return
        setting = self.tables.reporting.get(key)
        if setting is None:
            return
        current = self._read(setting.cluster, setting.attr_id)
        targets = [b for b in self.tables.bindings if b.cluster == setting.cluster]
        if current is not None and targets:
            payload = zcl.encode_report_attributes([(setting.attr_id, current[0], current[1])])
            for binding in targets:
                self._send(binding, payload)
        self._schedule(key)


def _ieee_text(ieee: bytes) -> str:
    return ieee[::-1].hex(":")
