"""The emulated CH's OTA Upgrade server, and the CH around it, driven by scripted clients on a virtual clock.

The client side here is written with ``struct`` from the ZCL specification (chapter 11): it does not
use the emulator's payload codecs, so a mistake in those codecs cannot hide itself. The last tests
run the CH on a small premises with real emulated devices (GBCS commands on its control port, GPF).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import struct
from collections.abc import Iterator
from typing import Any

import looptime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbeds.emulator.comms_hub import CommsHub, hub_control_port
from testbeds.emulator.device import DeviceConfig
from testbeds.emulator.frames import ZclFrame
from testbeds.emulator.ota_server import OtaClientInfo, OtaServer, OtaServerError
from testbeds.emulator.premises import LinkConfig, Premises

MFR, ITYPE = 0x1234, 0x0B02
OLD, NEW = 0x01000000, 0x01040000
A_NWK, B_NWK = 0x8E44, 0x7C02
# OTA command ids (§11.13) and statuses (§2.6.3), spelled out again on the client side.
NOTIFY, QNI_REQ, QNI_RSP, BLOCK_REQ, BLOCK_RSP, UER_REQ, UER_RSP = 0, 1, 2, 3, 5, 6, 7
SUCCESS, ABORT, INVALID_IMAGE, WAIT_FOR_DATA, NO_IMAGE = 0x00, 0x95, 0x96, 0x97, 0x98
DEFAULT_RESPONSE, MALFORMED = 0x0B, 0x80


def ota_file(
    *,
    mfr: int = MFR,
    itype: int = ITYPE,
    version: int = NEW,
    size: int = 1000,
    hw: tuple[int, int] | None = None,
) -> bytes:
    """An OTA file (§11.4.2) of ``size`` bytes in all, with hardware versions if ``hw`` is given."""
    header_length = 56 + (4 if hw else 0)
    body = bytes((i * 7 + 3) & 0xFF for i in range(size - header_length))
    header = struct.pack(
        "<IHHHHHIH32sI",
        0x0BEEF11E,
        0x0100,
        header_length,
        0x0004 if hw else 0,
        mfr,
        itype,
        version,
        2,
        b"test image".ljust(32, b"\0"),
        size,
    )
    if hw:
        header += struct.pack("<HH", *hw)
    return header + body


def frame(command: int, payload: bytes, tsn: int = 9, ddr: bool = True) -> ZclFrame:
    """A client-to-server OTA command frame."""
    return ZclFrame(
        cluster_specific=True,
        command_id=command,
        tsn=tsn,
        to_client=False,
        disable_default_response=ddr,
        payload=payload,
    )


def qni(version: int = OLD, hw: int | None = None, mfr: int = MFR, itype: int = ITYPE) -> bytes:
    body = struct.pack("<BHHI", 1 if hw is not None else 0, mfr, itype, version)
    return body + (struct.pack("<H", hw) if hw is not None else b"")


def block_req(offset: int, max_size: int = 64, version: int = NEW) -> bytes:
    return struct.pack("<BHHIIB", 0, MFR, ITYPE, version, offset, max_size)


def uer(status: int, version: int = NEW) -> bytes:
    return struct.pack("<BHHI", status, MFR, ITYPE, version)


class Harness:
    """An OtaServer with two clients, recording what it sends, what it logs and its events."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **options: Any) -> None:
        self.sent: list[tuple[int, int, ZclFrame]] = []
        self.lines: list[str] = []
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.server = OtaServer(
            loop=loop,
            clients=[OtaClientInfo("B2", A_NWK, MFR, ITYPE), OtaClientInfo("B1", B_NWK, MFR, ITYPE)],
            send=lambda nwk, ep, f: self.sent.append((nwk, ep, f)),
            log=self.lines.append,
            on_event=lambda kind, device, detail: self.events.append((kind, device, detail)),
            **options,
        )

    def ask(self, nwk: int, command: int, payload: bytes, **kw: Any) -> ZclFrame:
        before = len(self.sent)
        self.server.handle(nwk, 1, frame(command, payload, **kw))
        assert len(self.sent) == before + 1, self.lines[-3:]
        dst, endpoint, answer = self.sent[-1]
        assert (dst, endpoint) == (nwk, 1)
        return answer

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    yield loop
    loop.close()


@pytest.fixture
def h(loop: asyncio.AbstractEventLoop) -> Harness:
    return Harness(loop)


def test_query_with_nothing_staged_gets_no_image_and_reports_the_version(h: Harness) -> None:
    answer = h.ask(A_NWK, QNI_REQ, qni(OLD))
    assert (answer.command_id, answer.to_client, answer.payload) == (QNI_RSP, True, bytes([NO_IMAGE]))
    assert h.events == [("version", "B2", {"version": OLD, "how": "query"})]


def test_notify_then_query_offers_the_staged_image(h: Harness) -> None:
    image = ota_file()
    h.server.stage("B2", image)
    h.server.notify("B2")
    dst, _, notify = h.sent[-1]
    assert dst == A_NWK and notify.command_id == NOTIFY
    assert notify.payload == struct.pack("<BBHHI", 3, 100, MFR, ITYPE, NEW)
    answer = h.ask(A_NWK, QNI_REQ, qni(OLD))
    assert answer.payload == struct.pack("<BHHII", SUCCESS, MFR, ITYPE, NEW, len(image))
    # The other client, and a client that already runs the image, get nothing.
    assert h.ask(B_NWK, QNI_REQ, qni(OLD)).payload == bytes([NO_IMAGE])
    assert h.ask(A_NWK, QNI_REQ, qni(NEW)).payload == bytes([NO_IMAGE])


def test_blocks_are_cut_to_the_servers_limit_and_rebuild_the_image(h: Harness) -> None:
    image = ota_file(size=1000)
    h.server.stage("B2", image)
    rebuilt = bytearray()
    while len(rebuilt) < len(image):
        answer = h.ask(A_NWK, BLOCK_REQ, block_req(len(rebuilt), max_size=64))
        status, mfr, itype, version, offset, size = struct.unpack_from("<BHHIIB", answer.payload)
        assert (status, mfr, itype, version, offset) == (SUCCESS, MFR, ITYPE, NEW, len(rebuilt))
        assert size == min(48, len(image) - offset)  # the server's own limit, below the client's 64
        rebuilt += answer.payload[14 : 14 + size]
    assert bytes(rebuilt) == image
    transfer = h.server.transfers["B2"]
    assert (transfer.state, transfer.blocks, transfer.served_to) == ("downloading", 21, 1000)
    # A client asking for less gets what it asked for.
    assert struct.unpack_from("<B", h.ask(A_NWK, BLOCK_REQ, block_req(0, max_size=10)).payload, 13) == (10,)


def test_block_for_an_image_not_held_is_aborted(h: Harness) -> None:
    h.server.stage("B2", ota_file(size=200))
    assert h.ask(A_NWK, BLOCK_REQ, block_req(0, version=NEW + 1)).payload == bytes([ABORT])
    assert h.ask(A_NWK, BLOCK_REQ, block_req(200)).payload == bytes([ABORT])  # past the end
    assert h.ask(B_NWK, BLOCK_REQ, block_req(0)).payload == bytes([ABORT])  # nothing staged for B1


def test_wait_for_data_while_another_device_downloads(loop: asyncio.AbstractEventLoop) -> None:
    h = Harness(loop, max_transfers=1, wait_s=30)
    h.server.stage("B2", ota_file())
    h.server.stage("B1", ota_file())
    assert h.ask(A_NWK, BLOCK_REQ, block_req(0)).payload[0] == SUCCESS
    answer = h.ask(B_NWK, BLOCK_REQ, block_req(0))
    status, current, request = struct.unpack("<BII", answer.payload)
    assert (status, request - current) == (WAIT_FOR_DATA, 30)
    assert h.server.transfers["B1"].wait_for_data == 1
    # Once the first device has been quiet for a minute, the second is served.
    loop.run_until_complete(asyncio.sleep(61))
    assert h.ask(B_NWK, BLOCK_REQ, block_req(0)).payload[0] == SUCCESS


def test_upgrade_end_success_waits_for_activation(loop: asyncio.AbstractEventLoop, h: Harness) -> None:
    h.server.stage("B2", ota_file())
    assert h.server.activate("B2", 0) is False  # nothing verified yet: no image held
    answer = h.ask(A_NWK, UER_REQ, uer(SUCCESS), tsn=77)
    assert (answer.command_id, answer.tsn) == (UER_RSP, 77)
    assert answer.payload == struct.pack("<HHIII", MFR, ITYPE, NEW, 0, 0xFFFFFFFF)
    assert h.kinds()[-1] == "verified"
    # Activation in 10 minutes: an unsolicited response with the delay, and the same when asked again.
    assert h.server.activate("B2", 600) is True
    _, _, unsolicited = h.sent[-1]
    assert unsolicited.command_id == UER_RSP
    assert struct.unpack("<HHIII", unsolicited.payload)[3:] == (0, 600)
    loop.run_until_complete(asyncio.sleep(100))
    again = h.ask(A_NWK, UER_REQ, uer(SUCCESS))
    assert struct.unpack("<HHIII", again.payload)[4] == 500
    h.server.version_seen("B2", NEW)
    assert h.server.transfers["B2"].state == "done"


@pytest.mark.parametrize(
    ("status", "kind"), [(INVALID_IMAGE, "invalid-image"), (ABORT, "aborted"), (0x99, "aborted")]
)
def test_upgrade_end_failure_ends_the_transfer(h: Harness, status: int, kind: str) -> None:
    h.server.stage("B2", ota_file())
    before = len(h.sent)
    h.server.handle(A_NWK, 1, frame(UER_REQ, uer(status)))  # default response disabled: no answer
    assert len(h.sent) == before
    assert h.events[-1] == (kind, "B2", {"file_version": NEW, "status": status})
    assert h.server.transfers["B2"].state == "failed"
    answer = h.ask(A_NWK, UER_REQ, uer(status), ddr=False)  # asked for: SUCCESS Default Response
    assert (answer.cluster_specific, answer.command_id, answer.payload) == (
        False,
        DEFAULT_RESPONSE,
        bytes([UER_REQ, SUCCESS]),
    )
    assert h.ask(A_NWK, QNI_REQ, qni(OLD)).payload == bytes([NO_IMAGE])


def test_hardware_outside_the_images_range_is_refused(h: Harness) -> None:
    h.server.stage("B2", ota_file(hw=(2, 3)))
    assert h.ask(A_NWK, QNI_REQ, qni(OLD, hw=1)).payload == bytes([NO_IMAGE])
    assert h.kinds()[-1] == "hardware-mismatch"
    h.server.stage("B2", ota_file(hw=(2, 3)))
    assert h.ask(A_NWK, QNI_REQ, qni(OLD, hw=2)).payload[0] == SUCCESS


def test_a_transfer_with_no_requests_is_reported_stalled_once(loop: asyncio.AbstractEventLoop) -> None:
    h = Harness(loop, stall_timeout=600.0)
    h.server.stage("B2", ota_file())
    h.ask(A_NWK, BLOCK_REQ, block_req(0))
    loop.run_until_complete(asyncio.sleep(599))
    assert "stalled" not in h.kinds()
    loop.run_until_complete(asyncio.sleep(2000))
    assert h.kinds().count("stalled") == 1
    assert h.server.transfers["B2"].stalled
    h.ask(A_NWK, BLOCK_REQ, block_req(48))  # it may still resume
    assert not h.server.transfers["B2"].stalled
    h.server.stop()


@pytest.mark.parametrize(
    ("device", "data", "words"),
    [
        ("B9", ota_file(), "unknown device 'B9'"),
        ("B2", ota_file(mfr=0x9999), "manufacturer 0x9999"),
        ("B2", ota_file(itype=0x0300), "image type 0x0300"),
        ("B2", b"\x00" * 80, "not an OTA file"),
        ("B2", ota_file()[:-1], "the header says 1000 bytes but the file has 999"),
    ],
)
def test_stage_refuses_what_it_cannot_serve(h: Harness, device: str, data: bytes, words: str) -> None:
    with pytest.raises(OtaServerError, match=words):
        h.server.stage(device, data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    nwk=st.sampled_from([A_NWK, B_NWK, 0x1111]),
    cluster_specific=st.booleans(),
    to_client=st.booleans(),
    ddr=st.booleans(),
    command=st.integers(0, 255),
    payload=st.binary(max_size=40),
)
def test_fuzzed_requests_are_answered_or_dropped_never_raised(
    loop: asyncio.AbstractEventLoop,
    nwk: int,
    cluster_specific: bool,
    to_client: bool,
    ddr: bool,
    command: int,
    payload: bytes,
) -> None:
    h = Harness(loop)
    h.server.stage("B2", ota_file(size=300))
    request = ZclFrame(cluster_specific, command, 5, to_client, ddr, None, payload)
    h.server.handle(nwk, 1, request)
    for _, _, answer in h.sent:
        assert answer.to_client and answer.tsn == 5
        ZclFrame.decode(answer.encode())
        if not answer.cluster_specific:  # a Default Response: to this command, with a status
            assert answer.payload[0] == command and len(answer.payload) == 2
    if h.server.malformed:
        assert any("malformed" in line for line in h.lines)
        assert h.sent[-1][2].payload == bytes([command, MALFORMED])


# -------------------------------------------------------------------------- the CH on a premises


def _config(name: str, nwk: int, role: str, type_: str, parent: str | None = None) -> DeviceConfig:
    return DeviceConfig(
        name=name,
        type=type_,
        ieee=bytes([nwk & 0xFF, nwk >> 8, 0, 0, 0, 0, 0, 1]),
        nwk=nwk,
        pan_id=0x1A62,
        role=role,
        manufacturer_code=MFR,
        manufacturer_name="test",
        model=name,
        image_type=ITYPE if name == "B2" else 0x0300,
        hardware_version=1,
        firmware_version=OLD,
        stack_version=2,
        power_source="battery" if role == "sleepy_end_device" else "mains",
        parent=parent,
    )


class Premise:
    """CH, B2 and a sleepy GSME behind B2; the CH's control port answered in-process."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ch_defects: frozenset[str] = frozenset()) -> None:
        ch = _config("CH", 0x0000, "coordinator", "CH")
        ch = dataclasses.replace(ch, defects=ch_defects)
        devices = [
            ch,
            _config("B2", A_NWK, "router", "B2"),
            _config("GSME", 0x9A73, "sleepy_end_device", "GSME", "B2"),
        ]
        links = [LinkConfig("CH", "B2"), LinkConfig("B2", "GSME")]
        self.loop = loop
        self.premises = Premises(loop=loop, devices=devices, links=links, seed=3)
        self.hub: CommsHub = self.premises.emulate_hub("CH")
        self.port = hub_control_port(self.hub)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.hub.event_listeners.append(lambda kind, fields: self.events.append((kind, fields)))
        for name in ("B2", "GSME"):
            self.premises.emulate(name)
        for name in ("CH", "B2", "GSME"):
            self.premises.power_on(name)
        loop.run_until_complete(asyncio.sleep(60))

    def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        reply = json.loads(self.port.answer(json.dumps({"cmd": cmd, **args}).encode()))
        assert isinstance(reply, dict)
        return reply

    def alerts(self) -> list[str]:
        return [f"{f['code']} {f['device']}" for kind, f in self.events if kind == "alert"]

    def close(self) -> None:
        self.port.close()
        self.premises.shutdown()
        self.loop.run_until_complete(asyncio.sleep(0.1))  # let cancelled sends unwind


@pytest.fixture
def premise(loop: asyncio.AbstractEventLoop) -> Iterator[Premise]:
    p = Premise(loop)
    yield p
    p.close()


def test_ch_knows_every_device_after_their_announce(premise: Premise) -> None:
    rows = premise.command("devices")["result"]["devices"]
    assert [(r["device"], r["version_text"], r["transfer"]) for r in rows] == [
        ("B2", "1.0.0.0", None),
        ("GSME", "1.0.0.0", None),
    ]
    assert [f["device"] for kind, f in premise.events if kind == "announce"] == ["B2", "GSME"]
    assert premise.command("hello")["result"]["type"] == "CH"


def test_two_stage_update_raises_8f72_then_8f43(premise: Premise, tmp_path: Any) -> None:
    image = ota_file(size=4000)
    path = tmp_path / "b2.ota"
    path.write_bytes(image)
    staged = premise.command("update_firmware", device="B2", image=str(path))["result"]
    assert staged["image_sha256"] == hashlib.sha256(image).hexdigest()
    premise.loop.run_until_complete(asyncio.sleep(600))
    assert premise.alerts() == ["0x8F72 B2"]
    # Nothing held for the GSME; the wrong hash is refused; the right one is accepted.
    assert premise.command("activate_firmware", device="GSME", image_hash="0" * 64)["result"]["response"] == 1
    assert premise.command("activate_firmware", device="B2", image_hash="0" * 64)["result"]["response"] == 2
    assert premise.alerts() == ["0x8F72 B2"]  # still waiting: no version change
    good = premise.command("activate_firmware", device="B2", image_hash=hashlib.sha256(image).hexdigest())
    assert good["result"]["response"] == 0
    premise.loop.run_until_complete(asyncio.sleep(60))
    assert premise.alerts() == ["0x8F72 B2", "0x8F43 B2"]
    changed = [f for kind, f in premise.events if kind == "alert"][-1]
    assert (changed["from_text"], changed["to_text"]) == ("1.0.0.0", "1.4.0.0")
    # A live read of B2: pending, then the answer as an event.
    pending = premise.command("read_firmware_version", device="B2")["result"]
    assert pending["pending"] is True
    premise.loop.run_until_complete(asyncio.sleep(10))
    answer = [f for kind, f in premise.events if kind == "firmware-version"][-1]
    assert (answer["request"], answer["version"], answer["source"]) == (pending["request"], NEW, "device")


def test_ch_ignoring_the_image_hash_activates_a_mismatched_command(
    loop: asyncio.AbstractEventLoop, tmp_path: Any
) -> None:
    p = Premise(loop, frozenset({"ch-ignores-image-hash"}))
    try:
        path = tmp_path / "b2.ota"
        path.write_bytes(ota_file(size=2000))
        p.command("update_firmware", device="B2", image=str(path))
        loop.run_until_complete(asyncio.sleep(600))
        assert p.command("activate_firmware", device="B2", image_hash="0" * 64)["result"]["response"] == 0
    finally:
        p.close()


def test_gpf_answers_for_the_gas_meter_from_its_cache(premise: Premise) -> None:
    answer = premise.command("read_firmware_version", device="GSME")["result"]
    assert (answer["version"], answer["source"]) == (OLD, "gpf-cache")
    assert 0 < answer["as_of_t"] < 60


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"cmd": "update_firmware", "device": "B9", "image": "x"}, 'needs "device": one of B2, GSME'),
        ({"cmd": "update_firmware", "device": "B2", "image": "/nonexistent.ota"}, "cannot read image"),
        ({"cmd": "activate_firmware", "device": "B2", "image_hash": "abc"}, "64 hex digits"),
        (
            {"cmd": "activate_firmware", "device": "B2", "image_hash": "0" * 64, "execute_at": "soon"},
            "execute_at",
        ),
    ],
)
def test_ch_commands_refuse_bad_arguments(premise: Premise, args: dict[str, Any], words: str) -> None:
    reply = json.loads(premise.port.answer(json.dumps(args).encode()))
    assert reply["ok"] is False and words in reply["error"]
