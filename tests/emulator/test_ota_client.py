"""The emulated device's OTA Upgrade client, driven by a scripted OTA server on a virtual clock.

The fake server below is written here from the ZCL specification (chapter 11, OTA Upgrade) with
``struct``: it does not use the client's payload codecs, and nothing here imports the harness, so a
mistake in the client's codecs cannot be mirrored by the server that tests them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import looptime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbeds.emulator import ota_client as oc
from testbeds.emulator.flash import Flash
from testbeds.emulator.ota_client import OtaClient, OtaClientConfig
from testbeds.emulator.ota_file import OtaFileError, parse_header

MFR, ITYPE, HW = 0x1234, 0x5678, 0x0102
OLD, NEW = 0x01000000, 0x01000100
STACK_OLD, STACK_NEW = 0x0002, 0x0003

# ZCL statuses (ZCL 8 §2.6.3) and OTA command ids (§11.13), spelled out again on the server side.
SUCCESS, ABORT, INVALID_IMAGE, WAIT_FOR_DATA, NO_IMAGE_AVAILABLE, NOT_AUTHORIZED = (
    0x00,
    0x95,
    0x96,
    0x97,
    0x98,
    0x7E,
)
IMAGE_NOTIFY, QNI_REQ, QNI_RSP, BLOCK_REQ, BLOCK_RSP, UER_REQ, UER_RSP = 0, 1, 2, 3, 5, 6, 7


# -- an OTA file, built by hand (§11.4.2) ---------------------------------------------------------


def ota_file(
    *,
    mfr: int = MFR,
    itype: int = ITYPE,
    version: int = NEW,
    stack: int = STACK_NEW,
    body: bytes = bytes(range(256)) * 3,
    hw: tuple[int, int] | None = None,
    credential: int | None = None,
    destination: int | None = None,
    total: int | None = None,
    magic: int = 0x0BEEF11E,
) -> bytes:
    optional, fc = b"", 0
    if credential is not None:
        fc |= 0x01
        optional += bytes([credential])
    if destination is not None:
        fc |= 0x02
        optional += destination.to_bytes(8, "little")
    if hw is not None:
        fc |= 0x04
        optional += struct.pack("<HH", *hw)
    header_length = 56 + len(optional)
    size = header_length + len(body) if total is None else total
    header = struct.pack(
        "<IHHHHHIH32sI",
        magic,
        0x0100,
        header_length,
        fc,
        mfr,
        itype,
        version,
        stack,
        b"emulator test".ljust(32, b"\0"),
        size,
    )
    return header + optional + body


IMAGE = ota_file()


# -- the fake OTA server -------------------------------------------------------------------------

DROP = "drop"  # a block hook's answer: send nothing back


@dataclass
class Request:
    t: float
    command_id: int
    payload: bytes

    def block(self) -> tuple[int, int, int, int, int, int]:
        """Image Block Request (§11.13.6.1): fc, mfr, type, version, offset, max data size."""
        assert self.command_id == BLOCK_REQ
        return struct.unpack_from("<BHHIIB", self.payload)

    def upgrade_end(self) -> tuple[int, int, int, int]:
        """Upgrade End Request (§11.13.9.1): status, mfr, type, version."""
        assert self.command_id == UER_REQ
        assert len(self.payload) == 9
        return struct.unpack("<BHHI", self.payload)


class FakeServer:
    """A scripted OTA server: answers what the client sends after ``latency`` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.client: OtaClient | None = None
        self.latency = 0.05
        self.image = IMAGE
        self.offer: tuple[int, int, int, int] | None = (MFR, ITYPE, NEW, len(IMAGE))
        self.qni_status = SUCCESS
        self.answer_qni = True
        self.block_cap = 40
        self.block_hook: Callable[[int, int], object] | None = None
        self.duplicate_blocks = False
        self.upgrade_times: list[tuple[int, int]] = []  # (current, upgrade) per Upgrade End Request
        self.uer_default_status: int | None = None
        self.requests: list[Request] = []

    # what the client's send() reaches
    def receive(self, command_id: int, payload: bytes) -> None:
        self.requests.append(Request(self.loop.time(), command_id, bytes(payload)))
        if command_id == QNI_REQ:
            self._on_query(payload)
        elif command_id == BLOCK_REQ:
            self._on_block(payload)
        elif command_id == UER_REQ:
            self._on_upgrade_end(payload)

    def push(self, command_id: int, payload: bytes) -> None:
        self.loop.call_later(self.latency, self._deliver, command_id, payload)

    def _deliver(self, command_id: int, payload: bytes) -> None:
        if self.client is not None:
            self.client.handle_command(command_id, payload)

    def _deliver_default(self, command_id: int, status: int) -> None:
        if self.client is not None:
            self.client.handle_default_response(command_id, status)

    def _on_query(self, payload: bytes) -> None:
        # Query Next Image Request (§11.13.4.1): fc, mfr, type, current version, [hw version]
        assert len(payload) in (9, 11)
        if not self.answer_qni:
            return
        if self.qni_status != SUCCESS or self.offer is None:
            status = self.qni_status if self.qni_status != SUCCESS else NO_IMAGE_AVAILABLE
            self.push(QNI_RSP, bytes([status]))
        else:
            self.push(QNI_RSP, struct.pack("<BHHII", SUCCESS, *self.offer))

    def _on_block(self, payload: bytes) -> None:
        _fc, _mfr, _itype, _version, offset, max_size = struct.unpack_from("<BHHIIB", payload)
        if self.block_hook is not None:
            answer = self.block_hook(offset, max_size)
            if answer == DROP:
                return
            if isinstance(answer, bytes):
                self.push(BLOCK_RSP, answer)
                return
        assert self.offer is not None
        data = self.image[offset : offset + min(max_size, self.block_cap)]
        mfr, itype, version, _size = self.offer
        response = struct.pack("<BHHIIB", SUCCESS, mfr, itype, version, offset, len(data)) + data
        self.push(BLOCK_RSP, response)
        if self.duplicate_blocks:
            self.loop.call_later(self.latency * 2, self._deliver, BLOCK_RSP, response)

    def _on_upgrade_end(self, payload: bytes) -> None:
        status, mfr, itype, version = struct.unpack("<BHHI", payload)
        if status != SUCCESS:
            self.loop.call_later(self.latency, self._deliver_default, UER_REQ, SUCCESS)
            return
        if self.uer_default_status is not None:
            self.loop.call_later(self.latency, self._deliver_default, UER_REQ, self.uer_default_status)
            return
        current, upgrade = self.upgrade_times.pop(0) if self.upgrade_times else (0, 0)
        self.push(UER_RSP, struct.pack("<HHIII", mfr, itype, version, current, upgrade))

    # views of what the client sent
    def sent(self, command_id: int) -> list[Request]:
        return [r for r in self.requests if r.command_id == command_id]

    def block_offsets(self) -> list[int]:
        return [r.block()[4] for r in self.sent(BLOCK_REQ)]


def wait_for_data(current: int, request: int, period: int | None = None) -> bytes:
    """Image Block Response WAIT_FOR_DATA (§11.13.8.1): status, current time, request time, [period]."""
    out = struct.pack("<BII", WAIT_FOR_DATA, current, request)
    return out + (struct.pack("<H", period) if period is not None else b"")


def image_notify(payload_type: int, jitter: int, *fields: int) -> bytes:
    """Image Notify (§11.13.3.1): payload type, query jitter, then mfr / type / version by type."""
    fmt = "<BB" + "HHI"[:payload_type]
    return struct.pack(fmt, payload_type, jitter, *fields)


# -- the bench: loop, flash, server, client ------------------------------------------------------


@dataclass
class Bench:
    loop: asyncio.AbstractEventLoop
    flash: Flash
    server: FakeServer
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    logs: list[str] = field(default_factory=list)
    reboots: list[float] = field(default_factory=list)
    clients: list[OtaClient] = field(default_factory=list)

    def new_client(self, **config: object) -> OtaClient:
        """A (re)booted device's OTA client on the same flash; the server now talks to it."""
        settings_: dict[str, object] = {"query_jitter": 0.0, "query_interval": 3600.0}
        settings_.update(config)
        cfg = OtaClientConfig(
            manufacturer_code=MFR,
            image_type=ITYPE,
            hardware_version=HW,
            **settings_,  # type: ignore[arg-type]
        )
        client = OtaClient(
            loop=self.loop,
            flash=self.flash,
            config=cfg,
            send=self.server.receive,
            reboot=lambda: self.reboots.append(self.loop.time()),
            log=self.logs.append,
            rng=self.rng,
        )
        self.server.client = client
        self.clients.append(client)
        return client

    def run_for(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def now(self) -> float:
        return self.loop.time()

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.logs)


@pytest.fixture
def bench() -> Iterator[Bench]:
    loop = looptime.new_event_loop(start=0)
    b = Bench(loop, Flash(factory_version=OLD, factory_stack_version=STACK_OLD), FakeServer(loop))
    try:
        yield b
        # A power cut must leave nothing behind: stop every client, let replies in flight land.
        for client in b.clients:
            client.stop()
        b.run_for(5.0)
        live = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        assert live == [], f"timers left behind: {live}"
        assert not asyncio.all_tasks(loop)
    finally:
        loop.close()


def attr(client: OtaClient, attr_id: int) -> object:
    found = client.read_attribute(attr_id)
    assert found is not None
    return found[1]


# -- the happy path --------------------------------------------------------------------------------


def test_full_download_with_small_server_blocks_then_immediate_upgrade(bench: Bench) -> None:
    client = bench.new_client(query_jitter=30.0)
    client.start()
    bench.run_for(100.0)

    qni = bench.server.sent(QNI_REQ)[0]
    assert 0.0 <= qni.t <= 30.0
    fc, mfr, itype, version, hw = struct.unpack("<BHHIH", qni.payload)
    assert (fc & 0x01, mfr, itype, version, hw) == (1, MFR, ITYPE, OLD, HW)

    blocks = [r.block() for r in bench.server.sent(BLOCK_REQ)]
    offsets = [b[4] for b in blocks]
    assert offsets == list(range(0, len(IMAGE), 40))  # the server sent 40 of the 64 asked for
    for fc, mfr, itype, version, offset, max_size in blocks:
        assert (fc, mfr, itype, version) == (0, MFR, ITYPE, NEW)
        assert max_size == min(64, len(IMAGE) - offset)

    [end] = bench.server.sent(UER_REQ)
    assert end.upgrade_end() == (SUCCESS, MFR, ITYPE, NEW)
    assert bench.logged("verify OK")
    assert len(bench.reboots) == 1
    assert bench.flash.running.file_version == NEW
    assert bench.flash.running.stack_version == STACK_NEW
    assert bench.flash.running.image == IMAGE
    assert bench.flash.download_meta is None
    assert client.read_attribute(oc.ATTR_CURRENT_FILE_VERSION) == (0x23, NEW)
    rebooted = bench.new_client()
    assert rebooted.read_attribute(oc.ATTR_CURRENT_FILE_VERSION) == (0x23, NEW)
    assert rebooted.read_attribute(oc.ATTR_CURRENT_ZIGBEE_STACK_VERSION) == (0x21, STACK_NEW)


def test_progress_is_visible_in_attributes_during_the_download(bench: Bench) -> None:
    client = bench.new_client(minimum_block_period_ms=1000)
    client.start()
    bench.run_for(3.5)  # a few blocks, one per second
    assert client.busy
    assert attr(client, oc.ATTR_IMAGE_UPGRADE_STATUS) == oc.ImageUpgradeStatus.DOWNLOAD_IN_PROGRESS
    assert attr(client, oc.ATTR_FILE_OFFSET) == bench.flash.download_offset == 160
    assert attr(client, oc.ATTR_DOWNLOADED_FILE_VERSION) == NEW
    assert attr(client, oc.ATTR_DOWNLOADED_ZIGBEE_STACK_VERSION) == STACK_NEW
    assert attr(client, oc.ATTR_CURRENT_FILE_VERSION) == OLD


def test_minimum_block_period_is_honoured(bench: Bench) -> None:
    client = bench.new_client()
    assert client.write_attribute(oc.ATTR_MINIMUM_BLOCK_PERIOD, 250) == SUCCESS
    client.start()
    bench.run_for(100.0)
    times = [r.t for r in bench.server.sent(BLOCK_REQ)]
    assert len(times) == len(range(0, len(IMAGE), 40))
    gaps = [b - a for a, b in pairwise(times)]
    assert min(gaps) >= 0.25 - 1e-6
    assert max(gaps) <= 0.25 + 1e-3  # and no slower than needed
    assert bench.flash.running.file_version == NEW


@pytest.mark.parametrize(
    ("current", "request_", "period", "expected_wait"),
    [
        (1_000_000, 1_000_030, 500, 30.0),  # ZCL 6+: with a minimum block period
        (1_000_000, 1_000_030, None, 30.0),  # older servers: no period field
        (0, 12, None, 12.0),  # no UTC time: request time is an offset
        (5_000, 4_000, None, 1.0),  # request time already passed: the small default
    ],
)
def test_wait_for_data_is_honoured(
    bench: Bench, current: int, request_: int, period: int | None, expected_wait: float
) -> None:
    told: list[float] = []

    def hook(offset: int, _max: int) -> object:
        if offset == 80 and not told:
            told.append(bench.now())
            return wait_for_data(current, request_, period)
        return None

    bench.server.block_hook = hook
    client = bench.new_client()
    client.start()
    bench.run_for(1.0)
    assert client.busy
    if period is not None:
        assert attr(client, oc.ATTR_MINIMUM_BLOCK_PERIOD) == period
    bench.run_for(200.0)
    requests = bench.server.sent(BLOCK_REQ)
    at_80 = [r.t for r in requests if r.block()[4] == 80]
    assert len(at_80) == 2
    waited = at_80[1] - (told[0] + bench.server.latency)
    assert waited == pytest.approx(expected_wait, abs=1e-3)
    if period is not None:
        later = [r.t for r in requests if r.block()[4] >= 80]
        assert min(b - a for a, b in pairwise(later[1:])) >= period / 1000 - 1e-6
    assert bench.flash.running.file_version == NEW


def test_abort_discards_the_download(bench: Bench) -> None:
    bench.server.block_hook = lambda offset, _max: bytes([ABORT]) if offset >= 120 else None
    client = bench.new_client()
    client.start()
    bench.run_for(100.0)
    assert bench.server.block_offsets() == [0, 40, 80, 120]
    assert bench.server.sent(UER_REQ) == []
    assert bench.flash.download_meta is None
    assert bench.flash.download_offset == 0
    assert not client.busy
    assert attr(client, oc.ATTR_IMAGE_UPGRADE_STATUS) == oc.ImageUpgradeStatus.NORMAL
    assert bench.flash.running.file_version == OLD
    assert bench.reboots == []
    assert bench.logged("aborted")


@pytest.mark.parametrize(
    ("offer", "reason"),
    [
        ((MFR + 1, ITYPE, NEW, len(IMAGE)), "manufacturer"),
        ((MFR, ITYPE + 1, NEW, len(IMAGE)), "type"),
        ((MFR, ITYPE, OLD, len(IMAGE)), "running version"),
        ((MFR, ITYPE, NEW, 20), "size"),
    ],
)
def test_offers_that_are_not_for_this_device_are_not_downloaded(
    bench: Bench, offer: tuple[int, int, int, int], reason: str
) -> None:
    bench.server.offer = offer
    client = bench.new_client()
    client.start()
    bench.run_for(50.0)
    assert len(bench.server.sent(QNI_REQ)) == 1
    assert bench.server.sent(BLOCK_REQ) == []
    assert bench.flash.download_meta is None
    assert not client.busy
    assert bench.logged(reason)


def test_downgrade_refused_when_the_device_says_so(bench: Bench) -> None:
    bench.server.offer = (MFR, ITYPE, OLD - 1, len(IMAGE))
    client = bench.new_client(allow_downgrade=False)
    client.start()
    bench.run_for(50.0)
    assert bench.server.sent(BLOCK_REQ) == []
    assert bench.logged("downgrade refused")


@pytest.mark.parametrize("status", [NO_IMAGE_AVAILABLE, NOT_AUTHORIZED])
def test_no_image_means_idle_until_the_next_query(bench: Bench, status: int) -> None:
    bench.server.qni_status = status
    client = bench.new_client(query_interval=600.0)
    client.start()
    bench.run_for(1900.0)
    times = [r.t for r in bench.server.sent(QNI_REQ)]
    assert times == pytest.approx([0.0, 600.0, 1200.0, 1800.0])
    assert bench.server.sent(BLOCK_REQ) == []
    assert not client.busy


# -- bad images ------------------------------------------------------------------------------------


def _corrupt(kind: str) -> bytes:
    if kind == "bad magic":
        return ota_file(magic=0x0BEEF11F)
    if kind == "truncated (header says longer)":
        return ota_file(total=len(IMAGE) + 10)
    if kind == "trailing bytes (header says shorter)":
        return ota_file(total=len(IMAGE) - 4)
    if kind == "header version differs from offer":
        return ota_file(version=NEW + 1)
    if kind == "header manufacturer differs":
        return ota_file(mfr=MFR + 1)
    if kind == "hardware version out of range":
        return ota_file(hw=(0x0200, 0x02FF), body=IMAGE[60:])
    if kind == "file for another device":
        return ota_file(destination=0x00124B0000000001, body=IMAGE[64:])
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "bad magic",
        "truncated (header says longer)",
        "trailing bytes (header says shorter)",
        "header version differs from offer",
        "header manufacturer differs",
        "hardware version out of range",
        "file for another device",
    ],
)
def test_corrupted_image_is_reported_invalid_and_not_installed(bench: Bench, kind: str) -> None:
    image = _corrupt(kind)
    bench.server.image = image
    bench.server.offer = (MFR, ITYPE, NEW, len(image))
    client = bench.new_client(ieee=0x00124B0000000002)
    client.start()
    bench.run_for(100.0)
    [end] = bench.server.sent(UER_REQ)
    assert end.upgrade_end() == (INVALID_IMAGE, MFR, ITYPE, NEW)
    assert bench.logged("verify FAILED")
    assert bench.reboots == []
    assert bench.flash.running.file_version == OLD
    assert bench.flash.running.image == b""
    assert bench.flash.download_meta is None
    assert not client.busy
    assert attr(client, oc.ATTR_CURRENT_FILE_VERSION) == OLD


def test_hardware_range_that_fits_is_accepted(bench: Bench) -> None:
    image = ota_file(hw=(0x0100, 0x01FF))
    bench.server.image = image
    bench.server.offer = (MFR, ITYPE, NEW, len(image))
    bench.new_client().start()
    bench.run_for(100.0)
    assert bench.flash.running.file_version == NEW


def test_server_refusing_the_image_by_default_response_discards_it(bench: Bench) -> None:
    bench.server.uer_default_status = INVALID_IMAGE
    client = bench.new_client()
    client.start()
    bench.run_for(100.0)
    assert [r.upgrade_end()[0] for r in bench.server.sent(UER_REQ)] == [SUCCESS]
    assert bench.flash.download_meta is None
    assert bench.flash.running.file_version == OLD
    assert bench.reboots == []
    assert not client.busy


# -- upgrade time ----------------------------------------------------------------------------------


def test_upgrade_time_wait_keeps_asking_until_a_real_time_arrives(bench: Bench) -> None:
    bench.server.upgrade_times = [(5_000, 0xFFFFFFFF), (0, 5)]
    client = bench.new_client(upgrade_end_poll_interval=600.0)
    client.start()
    bench.run_for(100.0)
    [first] = bench.server.sent(UER_REQ)
    assert client.busy
    assert attr(client, oc.ATTR_IMAGE_UPGRADE_STATUS) == (
        oc.ImageUpgradeStatus.WAITING_TO_UPGRADE_VIA_EXTERNAL_EVENT
    )
    assert bench.flash.pending_activation
    assert bench.reboots == []

    bench.run_for(502.0)  # the second ask comes 600 s after the first answer, at about 601 s
    second = bench.server.sent(UER_REQ)[1]
    assert second.t - (first.t + bench.server.latency) == pytest.approx(600.0, abs=1e-3)
    assert second.upgrade_end() == (SUCCESS, MFR, ITYPE, NEW)
    assert attr(client, oc.ATTR_IMAGE_UPGRADE_STATUS) == oc.ImageUpgradeStatus.COUNT_DOWN
    assert bench.reboots == []

    bench.run_for(10.0)
    assert bench.reboots == [pytest.approx(second.t + bench.server.latency + 5.0, abs=1e-3)]
    assert bench.flash.running.file_version == NEW
    assert bench.logged("activate at +5.0s")


def test_upgrade_time_in_utc_is_relative_to_the_server_current_time(bench: Bench) -> None:
    bench.server.upgrade_times = [(1_700_000_000, 1_700_000_120)]
    bench.new_client().start()
    bench.run_for(100.0)
    [end] = bench.server.sent(UER_REQ)
    assert bench.reboots == []
    bench.run_for(100.0)
    assert bench.reboots == [pytest.approx(end.t + bench.server.latency + 120.0, abs=1e-3)]


def test_upgrade_end_response_for_another_image_is_ignored(bench: Bench) -> None:
    bench.server.upgrade_times = [(0, 0xFFFFFFFF)]
    client = bench.new_client()
    client.start()
    bench.run_for(100.0)
    bench.server.push(UER_RSP, struct.pack("<HHIII", MFR, ITYPE, NEW + 5, 0, 0))
    bench.run_for(1.0)
    assert bench.reboots == []
    # an unsolicited response with wildcards (§11.13.9.6) is for every image
    bench.server.push(UER_RSP, struct.pack("<HHIII", 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0, 0))
    bench.run_for(1.0)
    assert len(bench.reboots) == 1
    assert bench.flash.running.file_version == NEW
    assert client.busy is False


# -- power cuts and resume -------------------------------------------------------------------------


def test_power_cut_mid_download_resumes_at_the_persisted_offset(bench: Bench) -> None:
    first = bench.new_client()
    cut_at: list[int] = []

    def hook(offset: int, _max: int) -> object:
        if offset >= 200 and not cut_at:
            cut_at.append(offset)
            bench.loop.call_soon(first.stop)  # power fails while the request is on air
            return DROP
        return None

    bench.server.block_hook = hook
    first.start()
    bench.run_for(60.0)
    assert cut_at == [200]
    assert bench.flash.download_offset == 200
    assert not first.busy
    requests_before = len(bench.server.requests)

    second = bench.new_client()
    assert attr(second, oc.ATTR_FILE_OFFSET) == 200
    assert attr(second, oc.ATTR_DOWNLOADED_FILE_VERSION) == NEW
    second.start()
    bench.run_for(100.0)
    after = bench.server.requests[requests_before:]
    assert after[0].command_id == QNI_REQ
    first_block = next(r for r in after if r.command_id == BLOCK_REQ)
    assert first_block.block()[4] == 200 != 0
    assert bench.logged("resume download at offset 200")
    assert bench.flash.running.image == IMAGE
    assert len(bench.reboots) == 1


def test_resume_starts_anew_when_the_server_offers_another_version(bench: Bench) -> None:
    first = bench.new_client()
    bench.server.block_hook = lambda offset, _max: DROP if offset >= 200 else None
    first.start()
    bench.run_for(5.0)
    first.stop()
    assert bench.flash.download_offset == 200

    newer = ota_file(version=NEW + 1)
    bench.server.image = newer
    bench.server.offer = (MFR, ITYPE, NEW + 1, len(newer))
    bench.server.block_hook = None
    second = bench.new_client()
    second.start()
    bench.run_for(100.0)
    assert bench.server.block_offsets()[:7] == [0, 40, 80, 120, 160, 200, 0]  # begun anew
    assert bench.flash.running.file_version == NEW + 1


def test_power_cut_while_waiting_for_the_upgrade_time_asks_again_after_boot(bench: Bench) -> None:
    bench.server.upgrade_times = [(0, 0xFFFFFFFF), (0, 3)]
    first = bench.new_client()
    first.start()
    bench.run_for(100.0)
    assert bench.flash.pending_activation
    first.stop()
    bench.run_for(10.0)

    before = len(bench.server.requests)
    second = bench.new_client()
    assert attr(second, oc.ATTR_IMAGE_UPGRADE_STATUS) == oc.ImageUpgradeStatus.DOWNLOAD_COMPLETE
    second.start()
    bench.run_for(10.0)
    after = bench.server.requests[before:]
    assert [r.command_id for r in after] == [UER_REQ]  # no new query, no download
    assert len(bench.reboots) == 1
    assert bench.flash.running.file_version == NEW


# -- timeouts --------------------------------------------------------------------------------------


def test_block_timeouts_retry_then_give_up_keeping_the_prefix(bench: Bench) -> None:
    bench.server.block_hook = lambda offset, _max: DROP if offset >= 160 else None
    client = bench.new_client(query_interval=600.0, response_timeout=10.0, max_retries=3)
    client.start()
    bench.run_for(100.0)
    at_160 = [r.t for r in bench.server.sent(BLOCK_REQ) if r.block()[4] == 160]
    assert len(at_160) == 4  # the request and 3 retries
    assert [b - a for a, b in pairwise(at_160)] == pytest.approx([10.0] * 3)
    assert not client.busy
    assert bench.logged("giving up") or bench.logged("after 3 retries")
    assert bench.flash.download_offset == 160
    assert bench.flash.download_meta is not None

    bench.server.block_hook = None  # the server recovers; the next periodic query resumes
    bench.run_for(600.0)
    assert bench.server.sent(QNI_REQ)[-1].t == pytest.approx(600.0)
    later = [r.block()[4] for r in bench.server.sent(BLOCK_REQ) if r.t >= 600.0]
    assert later[0] == 160
    assert bench.flash.running.file_version == NEW


def test_query_timeouts_retry_then_give_up(bench: Bench) -> None:
    bench.server.answer_qni = False
    client = bench.new_client(query_interval=600.0, response_timeout=10.0, max_retries=3)
    client.start()
    bench.run_for(100.0)
    times = [r.t for r in bench.server.sent(QNI_REQ)]
    assert times == pytest.approx([0.0, 10.0, 20.0, 30.0])
    assert not client.busy
    bench.run_for(600.0)  # the periodic query at 600 s is retried the same way
    times = [r.t for r in bench.server.sent(QNI_REQ)]
    assert times == pytest.approx([0.0, 10.0, 20.0, 30.0, 600.0, 610.0, 620.0, 630.0])


def test_upgrade_end_timeouts_keep_the_image_and_ask_again_later(bench: Bench) -> None:
    bench.server.uer_default_status = None
    client = bench.new_client(query_interval=600.0, response_timeout=10.0, max_retries=2)
    original = bench.server._on_upgrade_end
    bench.server._on_upgrade_end = lambda payload: None  # type: ignore[method-assign]
    client.start()
    bench.run_for(100.0)
    assert len(bench.server.sent(UER_REQ)) == 3
    assert not client.busy
    assert bench.flash.pending_activation
    assert attr(client, oc.ATTR_IMAGE_UPGRADE_STATUS) == oc.ImageUpgradeStatus.DOWNLOAD_COMPLETE
    bench.server._on_upgrade_end = original  # type: ignore[method-assign]
    bench.run_for(600.0)
    assert len(bench.server.sent(UER_REQ)) == 4  # the periodic turn asks for the upgrade time
    assert len(bench.reboots) == 1


# -- odd server behaviour --------------------------------------------------------------------------


def test_duplicated_block_responses_do_not_double_the_requests(bench: Bench) -> None:
    bench.server.duplicate_blocks = True  # each copy lands while the next request is on air
    client = bench.new_client()
    client.start()
    bench.run_for(100.0)
    assert bench.server.block_offsets() == list(range(0, len(IMAGE), 40))
    assert bench.flash.running.image == IMAGE
    assert bench.logged("stale block")


def test_block_at_the_wrong_offset_is_dropped_and_asked_again(bench: Bench) -> None:
    wrong: list[int] = []

    def hook(offset: int, _max: int) -> object:
        if offset == 40 and not wrong:
            wrong.append(offset)
            data = IMAGE[41:81]
            return struct.pack("<BHHIIB", SUCCESS, MFR, ITYPE, NEW, 41, len(data)) + data
        return None

    bench.server.block_hook = hook
    bench.new_client().start()
    bench.run_for(100.0)
    assert bench.server.block_offsets()[:3] == [0, 40, 40]
    assert bench.flash.running.image == IMAGE


def test_block_for_another_image_is_dropped(bench: Bench) -> None:
    def hook(offset: int, _max: int) -> object:
        data = IMAGE[offset : offset + 40]
        return struct.pack("<BHHIIB", SUCCESS, MFR, ITYPE, NEW + 9, offset, len(data)) + data

    bench.server.block_hook = hook
    client = bench.new_client(max_retries=2)
    client.start()
    bench.run_for(100.0)
    assert bench.server.block_offsets() == [0, 0, 0]
    assert bench.flash.download_offset == 0
    assert not client.busy


# -- Image Notify ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "answered"),
    [
        (image_notify(0, 100), True),
        (image_notify(1, 100, MFR), True),
        (image_notify(2, 100, MFR, ITYPE), True),
        (image_notify(3, 100, MFR, ITYPE, NEW), True),
        (image_notify(3, 100, 0xFFFF, 0xFFFF, NEW), True),
        (image_notify(1, 100, MFR + 1), False),
        (image_notify(2, 100, MFR, ITYPE + 1), False),
        (image_notify(3, 100, MFR, ITYPE, OLD), False),  # that is what runs already
        (image_notify(0, 0), False),  # jitter 0: nobody answers
    ],
)
def test_image_notify_triggers_a_query_when_it_is_for_us(
    bench: Bench, payload: bytes, answered: bool
) -> None:
    bench.server.offer = None  # NO_IMAGE_AVAILABLE for the boot-time query
    client = bench.new_client(query_interval=100_000.0)
    client.start()
    bench.run_for(10.0)
    assert len(bench.server.sent(QNI_REQ)) == 1
    bench.server.push(IMAGE_NOTIFY, payload)
    bench.run_for(20.0)
    queries = bench.server.sent(QNI_REQ)[1:]
    if answered:
        assert len(queries) == 1
        assert 10.0 <= queries[0].t <= 10.0 + bench.server.latency + 5.0
    else:
        assert queries == []
    assert not client.busy


def test_image_notify_while_downloading_is_ignored(bench: Bench) -> None:
    client = bench.new_client(minimum_block_period_ms=1000)
    client.start()
    bench.run_for(2.5)
    assert client.busy
    bench.server.push(IMAGE_NOTIFY, image_notify(0, 100))
    bench.run_for(10.0)
    assert len(bench.server.sent(QNI_REQ)) == 1
    assert bench.logged("Image Notify ignored: busy")


def test_query_now(bench: Bench) -> None:
    bench.server.offer = None
    client = bench.new_client(query_interval=100_000.0)
    client.query_now()  # stopped: nothing
    assert bench.server.requests == []
    client.start()
    bench.run_for(5.0)
    client.query_now()
    bench.run_for(5.0)
    assert [r.t for r in bench.server.sent(QNI_REQ)] == pytest.approx([0.0, 5.0])


# -- attributes ------------------------------------------------------------------------------------


def test_attributes_have_the_spec_types_and_defaults(bench: Bench) -> None:
    client = bench.new_client()
    assert client.read_attribute(oc.ATTR_UPGRADE_SERVER_ID) == (0xF0, 0xFFFFFFFFFFFFFFFF)
    assert client.read_attribute(oc.ATTR_FILE_OFFSET) == (0x23, 0xFFFFFFFF)
    assert client.read_attribute(oc.ATTR_CURRENT_FILE_VERSION) == (0x23, OLD)
    assert client.read_attribute(oc.ATTR_CURRENT_ZIGBEE_STACK_VERSION) == (0x21, STACK_OLD)
    assert client.read_attribute(oc.ATTR_DOWNLOADED_FILE_VERSION) == (0x23, 0xFFFFFFFF)
    assert client.read_attribute(oc.ATTR_DOWNLOADED_ZIGBEE_STACK_VERSION) == (0x21, 0xFFFF)
    assert client.read_attribute(oc.ATTR_IMAGE_UPGRADE_STATUS) == (0x30, 0)
    assert client.read_attribute(oc.ATTR_MANUFACTURER_ID) == (0x21, MFR)
    assert client.read_attribute(oc.ATTR_IMAGE_TYPE_ID) == (0x21, ITYPE)
    assert client.read_attribute(oc.ATTR_MINIMUM_BLOCK_PERIOD) == (0x21, 0)
    assert client.read_attribute(oc.ATTR_IMAGE_STAMP) == (0x23, 0)
    assert client.read_attribute(0x000B) is None
    assert client.read_attribute(0x1234) is None


def test_attribute_writes(bench: Bench) -> None:
    client = bench.new_client()
    assert client.write_attribute(oc.ATTR_MINIMUM_BLOCK_PERIOD, 1500) == SUCCESS
    assert attr(client, oc.ATTR_MINIMUM_BLOCK_PERIOD) == 1500
    assert client.write_attribute(oc.ATTR_MINIMUM_BLOCK_PERIOD, 0x10000) == 0x87  # INVALID_VALUE
    assert client.write_attribute(oc.ATTR_CURRENT_FILE_VERSION, 5) == 0x88  # READ_ONLY
    assert client.write_attribute(0x4242, 5) == 0x86  # UNSUPPORTED_ATTRIBUTE
    assert attr(client, oc.ATTR_CURRENT_FILE_VERSION) == OLD


def test_upgrade_server_id_comes_from_the_server_that_answers(bench: Bench) -> None:
    bench.server.offer = None
    client = bench.new_client()
    client.start()
    bench.run_for(1.0)
    client.handle_command(IMAGE_NOTIFY, image_notify(0, 0), source_ieee=0x00124B0001020304)
    assert attr(client, oc.ATTR_UPGRADE_SERVER_ID) == 0x00124B0001020304


def test_commands_to_a_stopped_client_are_dropped(bench: Bench) -> None:
    client = bench.new_client()
    client.handle_command(QNI_RSP, struct.pack("<BHHII", SUCCESS, MFR, ITYPE, NEW, len(IMAGE)))
    client.handle_default_response(UER_REQ, INVALID_IMAGE)
    assert bench.server.requests == []
    assert not client.busy


# -- payload codecs --------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)


@settings(max_examples=200, deadline=None)
@given(
    notify=st.one_of(
        st.builds(oc.ImageNotify, st.just(0), st.integers(0, 100)),
        st.builds(oc.ImageNotify, st.just(1), st.integers(0, 100), u16),
        st.builds(oc.ImageNotify, st.just(2), st.integers(0, 100), u16, u16),
        st.builds(oc.ImageNotify, st.just(3), st.integers(0, 100), u16, u16, u32),
    ),
    qni_req=st.builds(oc.QueryNextImageRequest, u16, u16, u32, st.none() | u16),
    qni_rsp=st.one_of(
        st.builds(oc.QueryNextImageResponse, st.sampled_from([0x98, 0x7E, 0x80])),
        st.builds(oc.QueryNextImageResponse, st.just(0), u16, u16, u32, u32),
    ),
    block_req=st.builds(oc.ImageBlockRequest, u16, u16, u32, u32, u8, st.none() | u64, st.none() | u16),
    block_rsp=st.one_of(
        st.builds(oc.ImageBlockResponse, st.just(0), u16, u16, u32, u32, st.binary(max_size=255)),
        st.builds(
            lambda c, r, p: oc.ImageBlockResponse(
                0x97, current_time=c, request_time=r, minimum_block_period=p
            ),
            u32,
            u32,
            st.none() | u16,
        ),
        st.just(oc.ImageBlockResponse(0x95)),
    ),
    uer_req=st.builds(oc.UpgradeEndRequest, st.sampled_from([0x00, 0x95, 0x96, 0x99]), u16, u16, u32),
    uer_rsp=st.builds(oc.UpgradeEndResponse, u16, u16, u32, u32, u32),
)
def test_codecs_round_trip(
    notify: oc.ImageNotify,
    qni_req: oc.QueryNextImageRequest,
    qni_rsp: oc.QueryNextImageResponse,
    block_req: oc.ImageBlockRequest,
    block_rsp: oc.ImageBlockResponse,
    uer_req: oc.UpgradeEndRequest,
    uer_rsp: oc.UpgradeEndResponse,
) -> None:
    assert oc.decode_image_notify(oc.encode_image_notify(notify)) == notify
    assert oc.decode_query_next_image_request(oc.encode_query_next_image_request(qni_req)) == qni_req
    assert oc.decode_query_next_image_response(oc.encode_query_next_image_response(qni_rsp)) == qni_rsp
    assert oc.decode_image_block_request(oc.encode_image_block_request(block_req)) == block_req
    assert oc.decode_image_block_response(oc.encode_image_block_response(block_rsp)) == block_rsp
    assert oc.decode_upgrade_end_request(oc.encode_upgrade_end_request(uer_req)) == uer_req
    assert oc.decode_upgrade_end_response(oc.encode_upgrade_end_response(uer_rsp)) == uer_rsp


def test_codecs_agree_with_the_spec_layouts() -> None:
    """Fixed byte strings laid out by hand from §11.13 (little-endian)."""
    qni = oc.QueryNextImageRequest(0x1234, 0x5678, 0x01020304, 0x0A0B)
    assert oc.encode_query_next_image_request(qni) == bytes.fromhex("01 3412 7856 04030201 0b0a")
    assert oc.encode_image_block_request(oc.ImageBlockRequest(0x1234, 0x5678, 0x01020304, 0x100, 50)) == (
        bytes.fromhex("00 3412 7856 04030201 00010000 32")
    )
    assert oc.encode_upgrade_end_request(oc.UpgradeEndRequest(0x96, 0x1234, 0x5678, 0x01020304)) == (
        bytes.fromhex("96 3412 7856 04030201")
    )
    rsp = oc.decode_image_block_response(bytes.fromhex("97 e8030000 06040000 f401"))
    assert (rsp.current_time, rsp.request_time, rsp.minimum_block_period) == (1000, 1030, 500)
    end = oc.decode_upgrade_end_response(bytes.fromhex("3412 7856 04030201 00000000 ffffffff"))
    assert (end.current_time, end.upgrade_time) == (0, 0xFFFFFFFF)


@pytest.mark.parametrize(
    ("decode", "payload"),
    [
        (oc.decode_image_notify, b"\x04\x64"),  # payload type 4
        (oc.decode_image_notify, b"\x00\x65"),  # jitter 101
        (oc.decode_image_notify, b"\x03\x64\x34\x12"),  # short
        (oc.decode_query_next_image_response, b"\x00\x34\x12"),
        (oc.decode_image_block_response, b"\x00" + bytes(12) + b"\x05abc"),  # 5 announced, 3 sent
        (oc.decode_image_block_response, b"\x97\x00\x00"),
        (oc.decode_image_block_response, b"\x01"),  # status not allowed here
        (oc.decode_image_block_response, b""),
        (oc.decode_upgrade_end_response, bytes(15)),
    ],
)
def test_malformed_payloads_are_rejected_by_the_codecs(
    decode: Callable[[bytes], object], payload: bytes
) -> None:
    with pytest.raises(oc.OtaPayloadError):
        decode(payload)


# -- never raise on garbage ------------------------------------------------------------------------


def _client_in_state(state: str) -> tuple[asyncio.AbstractEventLoop, OtaClient, Flash, list[str]]:
    loop = asyncio.new_event_loop()  # never run: handle_command only arms timers
    flash = Flash(factory_version=OLD, factory_stack_version=STACK_OLD)
    if state == "pending":
        flash.begin_download(manufacturer_code=MFR, image_type=ITYPE, file_version=NEW, image_size=len(IMAGE))
        flash.write_block(0, IMAGE)
        flash.mark_pending_activation()
    sent: list[str] = []
    client = OtaClient(
        loop=loop,
        flash=flash,
        config=OtaClientConfig(manufacturer_code=MFR, image_type=ITYPE, hardware_version=HW),
        send=lambda cmd, _payload: sent.append(f"{cmd}"),
        reboot=lambda: None,
        log=lambda _line: None,
        rng=random.Random(1),
    )
    client.start()
    if state in ("querying", "downloading"):
        client.query_now()
    if state == "downloading":
        client.handle_command(QNI_RSP, struct.pack("<BHHII", SUCCESS, MFR, ITYPE, NEW, len(IMAGE)))
        client.handle_command(BLOCK_RSP, struct.pack("<BHHIIB", SUCCESS, MFR, ITYPE, NEW, 0, 40) + IMAGE[:40])
        assert client.busy
    return loop, client, flash, sent


@pytest.mark.parametrize("command_id", [IMAGE_NOTIFY, QNI_RSP, BLOCK_RSP, UER_RSP, 0x09, 0x42])
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    state=st.sampled_from(["idle", "querying", "downloading", "pending"]),
    payload=st.one_of(
        st.binary(max_size=80),
        # well-formed prefixes with random tails reach deeper into the state machine
        st.builds(
            lambda tail: bytes([SUCCESS]) + struct.pack("<HH", MFR, ITYPE) + tail, st.binary(max_size=60)
        ),
        st.builds(lambda tail: bytes([WAIT_FOR_DATA]) + tail, st.binary(max_size=12)),
        st.builds(lambda tail: struct.pack("<HH", MFR, ITYPE) + tail, st.binary(max_size=20)),
    ),
)
def test_handle_command_never_raises(command_id: int, state: str, payload: bytes) -> None:
    loop, client, flash, _sent = _client_in_state(state)
    try:
        client.handle_command(command_id, payload)
        client.handle_default_response(UER_REQ, payload[0] if payload else 0x96)
        assert client.state in {
            "idle",
            "querying",
            "downloading",
            "waiting-end",
            "count-down",
            "waiting-external",
        }
        meta = flash.download_meta
        assert meta is None or flash.download_offset <= meta.image_size
    finally:
        client.stop()
        loop.close()


# -- the OTA file header reader ----------------------------------------------------------------------


def test_header_with_every_optional_field() -> None:
    image = ota_file(credential=2, destination=0x00124B0000ABCDEF, hw=(0x0100, 0x01FF))
    header = parse_header(image)
    assert header.header_version == 0x0100
    assert header.header_length == 56 + 1 + 8 + 4
    assert header.field_control == 0x07
    assert (header.manufacturer_code, header.image_type, header.file_version) == (MFR, ITYPE, NEW)
    assert header.stack_version == STACK_NEW
    assert header.header_text == "emulator test"
    assert header.total_image_size == len(image)
    assert header.security_credential_version == 2
    assert header.upgrade_file_destination == 0x00124B0000ABCDEF
    assert (header.minimum_hardware_version, header.maximum_hardware_version) == (0x0100, 0x01FF)
    assert header.fits_hardware(0x0150) and not header.fits_hardware(0x0200)


def test_header_without_optional_fields() -> None:
    header = parse_header(IMAGE)
    assert header.field_control == 0
    assert header.security_credential_version is None
    assert header.upgrade_file_destination is None
    assert header.minimum_hardware_version is None
    assert header.fits_hardware(0xFFFF)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (IMAGE[:55], "at least 56"),
        (ota_file(magic=0x1EF1EE0B), "identifier"),
        (IMAGE[:6] + struct.pack("<HH", 56, 0x04) + IMAGE[10:], "field control"),
        (IMAGE[:6] + struct.pack("<H", 200) + IMAGE[8:100], "only 100 bytes"),
        (ota_file(total=50), "smaller than the header"),
    ],
)
def test_header_errors_name_the_field(data: bytes, message: str) -> None:
    with pytest.raises(OtaFileError, match=message):
        parse_header(data)


@settings(max_examples=1000, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=120),
        st.builds(lambda tail: struct.pack("<I", 0x0BEEF11E) + tail, st.binary(max_size=120)),
    )
)
def test_header_reader_raises_only_its_own_error(data: bytes) -> None:
    try:
        header = parse_header(data)
    except OtaFileError:
        return
    assert header.header_length <= len(data)
    assert header.total_image_size >= header.header_length


# -- the firmware's own integrity (its manifest) and the two defects around it ----------------------


def _manifest_image(*, corrupt_at: int | None = None, version: int = NEW) -> bytes:
    """An OTA file whose body starts with a firmware manifest (docs/firmware-manifest.md).

    ``corrupt_at`` flips one bit of that byte of the firmware after the manifest, as a bit error in
    storage or on the way would.
    """
    firmware = bytearray(bytes(range(256)) * 2)
    line = b'{"firmware_version":%d,"stack_version":%d,"p2p_protocol":null,"behaviours":[]}\n' % (
        version,
        STACK_NEW,
    )
    digest = hashlib.sha256(line + bytes(firmware)).hexdigest().encode()
    if corrupt_at is not None:
        firmware[corrupt_at] ^= 0x10
    return ota_file(body=b"ALTHAN-FW1\nsha256=" + digest + b"\n" + line + bytes(firmware))


def _serve(bench: Bench, image: bytes) -> None:
    bench.server.image = image
    bench.server.offer = (MFR, ITYPE, NEW, len(image))


def test_image_with_an_intact_manifest_is_installed(bench: Bench) -> None:
    _serve(bench, _manifest_image())
    bench.new_client().start()
    bench.run_for(100.0)
    assert bench.logged("verify OK")
    assert bench.flash.running.file_version == NEW


@pytest.mark.parametrize("defect", [None, "skips-image-verification"])
def test_corrupted_firmware_is_refused_unless_the_client_skips_verification(
    bench: Bench, defect: str | None
) -> None:
    _serve(bench, _manifest_image(corrupt_at=300))
    client = bench.new_client(defects=frozenset({defect} if defect else set()))
    client.start()
    bench.run_for(100.0)
    [end] = bench.server.sent(UER_REQ)
    if defect is None:
        assert end.upgrade_end() == (INVALID_IMAGE, MFR, ITYPE, NEW)
        assert bench.logged("verify FAILED: image integrity check failed")
        assert bench.reboots == []
        assert bench.flash.running.file_version == OLD
        assert bench.flash.download_meta is None
    else:
        assert end.upgrade_end() == (SUCCESS, MFR, ITYPE, NEW)
        assert bench.logged("defect skips-image-verification")
        assert len(bench.reboots) == 1
        assert bench.flash.running.file_version == NEW
        assert bench.flash.running.image == _manifest_image(corrupt_at=300)


def test_manifest_naming_another_version_is_refused(bench: Bench) -> None:
    _serve(bench, _manifest_image(version=NEW + 1))
    bench.new_client().start()
    bench.run_for(100.0)
    assert bench.logged("firmware manifest says version 0x01000101, header 0x01000100")
    assert bench.flash.running.file_version == OLD


@pytest.mark.parametrize("defect", [None, "activates-before-upgrade-end-response"])
@pytest.mark.parametrize("answer", ["wait 0xFFFFFFFF", "in one hour", "ABORT", "no answer"])
def test_client_waits_for_the_upgrade_end_response(bench: Bench, defect: str | None, answer: str) -> None:
    if answer == "wait 0xFFFFFFFF":
        bench.server.upgrade_times = [(0, 0xFFFFFFFF)]
    elif answer == "in one hour":
        bench.server.upgrade_times = [(0, 3600)]
    elif answer == "ABORT":
        bench.server.uer_default_status = ABORT
    else:
        bench.server._on_upgrade_end = lambda payload: None  # type: ignore[method-assign]
    client = bench.new_client(defects=frozenset({defect} if defect else set()))
    client.start()
    bench.run_for(120.0)
    [end] = bench.server.sent(UER_REQ)[:1]
    if defect is None:
        assert bench.reboots == []
        assert bench.flash.running.file_version == OLD
        if answer == "in one hour":
            bench.run_for(3600.0)
            assert len(bench.reboots) == 1 and bench.reboots[0] >= end.t + 3600.0
    else:
        # It resets right after sending Upgrade End Request, whatever the server was going to say.
        assert len(bench.reboots) == 1
        assert bench.reboots[0] - end.t < 1.0
        assert bench.flash.running.file_version == NEW
        assert bench.logged("defect activates-before-upgrade-end-response")
