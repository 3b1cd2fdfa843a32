"""Firmware as data: the emulator reads the manifest of the image it runs, and it decides the device.

Images are built by hand here from docs/firmware-manifest.md (``json`` and ``hashlib``), not with the
harness's builder, so a mistake shared by both would not hide; one test cross-checks the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import struct
from collections.abc import Iterator

import looptime
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbeds.emulator import ota_client as oc
from testbeds.emulator.device import DeviceConfig, EmulatedDevice
from testbeds.emulator.firmware import (
    DEVICE_DEFECTS,
    MANIFEST_MAGIC,
    FirmwareManifest,
    ManifestError,
    effective_defects,
    firmware_payload,
    manifest_of_image,
    parse_manifest,
)
from testbeds.emulator.flash import Flash
from testbeds.emulator.ota_file import OtaFileError
from testbeds.emulator.p2p import P2pEndpoint
from testbeds.emulator.premises import LinkConfig, Premises

FUZZ = settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
PAN = 0x1A62
FACTORY, NEW = 0x01000000, 0x01010000


def manifest_payload(
    version: int = NEW,
    stack: int = 2,
    protocol: int | None = None,
    behaviours: tuple[str, ...] = (),
    firmware: bytes = b"\x5a" * 300,
    *,
    fields: dict[str, object] | None = None,
) -> bytes:
    """The firmware payload of docs/firmware-manifest.md: magic, digest line, JSON line, firmware."""
    values = (
        fields
        if fields is not None
        else {
            "firmware_version": version,
            "stack_version": stack,
            "p2p_protocol": protocol,
            "behaviours": list(behaviours),
        }
    )
    covered = json.dumps(values).encode() + b"\n" + firmware
    return MANIFEST_MAGIC + b"sha256=" + hashlib.sha256(covered).hexdigest().encode() + b"\n" + covered


def ota_file(payload: bytes, version: int = NEW, *, form: str = "zigbee", stack: int = 2) -> bytes:
    """A whole OTA file (ZCL §11.4) carrying ``payload``: in a tag-0x0000 sub-element, or as a body."""
    content = struct.pack("<HI", 0x0000, len(payload)) + payload if form == "zigbee" else payload
    header = struct.pack(
        "<IHHHHHIH32sI",
        0x0BEEF11E, 0x0100, 56, 0, 0x1234, 0x0001, version, stack,
        b"test".ljust(32, b"\0"), 56 + len(content),
    )  # fmt: skip
    return header + content


# -- the parser ------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["zigbee", "gbcs"])
def test_manifest_is_read_from_either_form(form: str) -> None:
    image = ota_file(manifest_payload(stack=7, protocol=2, behaviours=("p2p-protocol-skew",)), form=form)
    assert manifest_of_image(image) == FirmwareManifest(NEW, 7, 2, frozenset({"p2p-protocol-skew"}), True)


def test_vendor_image_and_factory_firmware_have_no_manifest() -> None:
    assert manifest_of_image(ota_file(b"\x00\x01vendor firmware")) is None
    assert manifest_of_image(b"") is None  # the factory image did not come over the air


def test_a_corrupted_firmware_byte_is_seen_in_the_digest() -> None:
    payload = bytearray(manifest_payload())
    payload[-10] ^= 0x40
    manifest = parse_manifest(bytes(payload))
    assert manifest is not None and not manifest.digest_ok


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (MANIFEST_MAGIC + b"sha256=xyz\n", "digest line"),
        (MANIFEST_MAGIC + b"sha256=" + b"0" * 64 + b"\n" + b"x" * 5000, "does not end within 4096"),
        (manifest_payload(fields={"firmware_version": 1}), "no stack_version"),
        (manifest_payload(fields={"firmware_version": True, "stack_version": 2}), "firmware_version True"),
        (
            manifest_payload(fields={"firmware_version": 1, "stack_version": 2, "p2p_protocol": 0}),
            "p2p_protocol",
        ),
        (
            manifest_payload(fields={"firmware_version": 1, "stack_version": 2, "behaviours": "x"}),
            "behaviours",
        ),
        (MANIFEST_MAGIC + b"sha256=" + b"0" * 64 + b"\n[1]\n", "not a JSON object"),
        (MANIFEST_MAGIC + b"sha256=" + b"0" * 64 + b"\n{\xff}\n", "not JSON"),
    ],
)
def test_malformed_manifest_raises_manifest_error_saying_why(payload: bytes, needle: str) -> None:
    with pytest.raises(ManifestError, match=needle):
        parse_manifest(payload)


@FUZZ
@given(st.binary(max_size=400))
def test_parser_raises_only_manifest_error_on_arbitrary_bytes(tail: bytes) -> None:
    with contextlib.suppress(ManifestError):
        parse_manifest(MANIFEST_MAGIC + tail)


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 8 * 300 - 1))
def test_image_reader_raises_only_its_errors_on_damaged_files(extra: bytes, bit: int) -> None:
    image = bytearray(ota_file(manifest_payload(behaviours=("stalls-at-half",))) + extra)
    image[(bit // 8) % len(image)] ^= 1 << (bit % 8)
    with contextlib.suppress(ManifestError):
        manifest_of_image(bytes(image))
    with contextlib.suppress(OtaFileError):
        firmware_payload(bytes(image))


def test_emulator_reads_what_the_harness_writes() -> None:
    from harness.ota.image import build_image_of_total_size
    from harness.ota.manifest import make_manifest

    for form in ("zigbee", "gbcs"):
        image = build_image_of_total_size(
            4096, manufacturer_code=0x1234, image_type=1, file_version=NEW, form=form,
            manifest=make_manifest(
                firmware_version=NEW, stack_version=0x0103, p2p_protocol=3, behaviours=["stalls-at-half"]
            ),
        ).serialize()  # fmt: skip
        assert manifest_of_image(image) == FirmwareManifest(
            NEW, 0x0103, 3, frozenset({"stalls-at-half"}), True
        )


# -- how testbed defects and manifest behaviours combine -------------------------------------------


def test_manifest_behaviours_replace_firmware_defects_but_device_defects_stay() -> None:
    testbed = frozenset({"ignores-image-notify", "no-boot-try-counter", "drops-off-after-upgrade"})
    assert effective_defects(testbed, None) == testbed
    healthy = FirmwareManifest(NEW, 2, None, frozenset(), True)
    assert effective_defects(testbed, healthy) == {"no-boot-try-counter", "drops-off-after-upgrade"}
    skewed = FirmwareManifest(NEW, 2, 2, frozenset({"p2p-protocol-skew"}), True)
    assert effective_defects(testbed, skewed) == {
        "no-boot-try-counter",
        "drops-off-after-upgrade",
        "p2p-protocol-skew",
    }
    assert {"bricks-on-cut-during-swap", "torn-boot-flags", "no-boot-try-counter"} <= DEVICE_DEFECTS


# -- a device booting an image with a manifest -----------------------------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    yield loop
    loop.close()


def _config(name: str, nwk: int, role: str, parent: str | None = None, **extra: object) -> DeviceConfig:
    return DeviceConfig(
        name=name,
        type=name if name in ("B1", "B2") else "GSME",
        ieee=bytes([nwk & 0xFF, nwk >> 8, 0, 0, 0, 0, 0, 1]),
        nwk=nwk,
        pan_id=PAN,
        role=role,
        manufacturer_code=0x1234,
        manufacturer_name="test",
        model=name,
        image_type=0x0001,
        hardware_version=1,
        firmware_version=FACTORY,
        stack_version=2,
        power_source="battery" if role == "sleepy_end_device" else "mains",
        parent=parent,
        **extra,  # type: ignore[arg-type]
    )


def install(flash: Flash, image: bytes) -> None:
    """Put ``image`` in the download slot as a completed, verified download, and request its install."""
    (version,) = struct.unpack_from("<I", image, 14)
    flash.begin_download(manufacturer_code=0x1234, image_type=1, file_version=version, image_size=len(image))
    flash.write_block(0, image)
    flash.mark_pending_activation()
    flash.activate()


def _premises(loop: asyncio.AbstractEventLoop, **b1: object) -> tuple[Premises, list[str]]:
    devices = [
        _config("CH", 0x0000, "coordinator"),
        _config("B1", 0x1001, "router", **b1),
        _config("B2", 0x1002, "router"),
        _config("GSME", 0x2001, "sleepy_end_device", parent="B2"),
    ]
    links = [LinkConfig("CH", "B1"), LinkConfig("B1", "B2", "p2p", 0.015), LinkConfig("B2", "GSME")]
    premises = Premises(loop=loop, devices=devices, links=links, seed=3)
    for name in ("B1", "B2", "GSME"):
        premises.emulate(name)
    answers: list[str] = []
    premises.attach_coordinator(
        "CH", lambda ind: answers.append(f"0x{ind.src_nwk:04X}/0x{ind.cluster:04X}"), lambda _line: None
    )
    return premises, answers


def _reboot_into(loop: asyncio.AbstractEventLoop, device: EmulatedDevice, image: bytes) -> None:
    install(device.flash, image)
    device.power_off()
    device.power_on()
    loop.run_until_complete(asyncio.sleep(5.0))  # boot, announce, self-test


def test_running_image_manifest_sets_stack_version_and_behaviours(loop: asyncio.AbstractEventLoop) -> None:
    premises, _ = _premises(loop, defects=frozenset({"ignores-image-notify", "torn-boot-flags"}))
    b1 = premises.devices["B1"]
    b1.power_on()
    loop.run_until_complete(asyncio.sleep(5.0))
    assert b1.config.defects == {"ignores-image-notify", "torn-boot-flags"}
    assert b1.basic_attribute(0x0002) == (0x20, 2)

    _reboot_into(loop, b1, ota_file(manifest_payload(stack=0x0105, behaviours=("slow-block-requests",))))
    assert b1.flash.running.file_version == NEW
    assert b1.config.defects == {"torn-boot-flags", "slow-block-requests"}
    assert b1.flash.defects == b1.config.defects
    assert b1.basic_attribute(0x0002) == (0x20, 0x05)  # StackVersion is a uint8
    assert b1.ota is not None
    assert b1.ota.read_attribute(oc.ATTR_CURRENT_ZIGBEE_STACK_VERSION) == (0x21, 0x0105)
    assert any("stack 261" in text for _, text in b1.log_book.lines)
    assert b1.factory_config.defects == {"ignores-image-notify", "torn-boot-flags"}


def test_healthy_image_switches_a_defect_off(loop: asyncio.AbstractEventLoop) -> None:
    premises, _ = _premises(loop, defects=frozenset({"stalls-at-half"}))
    b1 = premises.devices["B1"]
    b1.power_on()
    loop.run_until_complete(asyncio.sleep(5.0))
    _reboot_into(loop, b1, ota_file(manifest_payload(behaviours=("grows-wings",))))
    assert b1.config.defects == frozenset()
    assert any("unknown behaviours ignored: grows-wings" in text for _, text in b1.log_book.lines)


def test_vendor_image_runs_with_factory_behaviours(loop: asyncio.AbstractEventLoop) -> None:
    premises, _ = _premises(loop, defects=frozenset({"stalls-at-half"}))
    b1 = premises.devices["B1"]
    b1.power_on()
    loop.run_until_complete(asyncio.sleep(5.0))
    _reboot_into(loop, b1, ota_file(b"vendor firmware" * 20, stack=3))
    assert b1.flash.running.file_version == NEW
    assert b1.config.defects == {"stalls-at-half"}
    assert b1.basic_attribute(0x0002) == (0x20, 3)  # the header's stack version


def test_malformed_manifest_is_logged_and_ignored(loop: asyncio.AbstractEventLoop) -> None:
    premises, _ = _premises(loop, defects=frozenset({"stalls-at-half"}))
    b1 = premises.devices["B1"]
    b1.power_on()
    loop.run_until_complete(asyncio.sleep(5.0))
    broken = manifest_payload(fields={"firmware_version": NEW, "stack_version": "six"})
    _reboot_into(loop, b1, ota_file(broken))
    assert b1.flash.running.file_version == NEW
    assert b1.config.defects == {"stalls-at-half"}
    assert any("firmware manifest ignored: manifest stack_version 'six'" in t for _, t in b1.log_book.lines)
    assert b1.node is not None and b1.flash.confirmed  # it runs


# -- the P2P protocol -------------------------------------------------------------------------------


def test_healthy_endpoints_start_at_version_1_and_move_up_together() -> None:
    new, old = P2pEndpoint("B1", protocol=2), P2pEndpoint("B2", protocol=1)
    assert new.outgoing("B2") == (1, 2)  # nothing heard yet: the base version
    assert old.incoming("B1", *new.outgoing("B2"))
    assert new.incoming("B2", *old.outgoing("B1"))
    assert new.outgoing("B2") == (1, 2)  # the peer speaks only 1
    other = P2pEndpoint("B2", protocol=2)
    assert other.incoming("B1", *new.outgoing("B2"))
    assert new.incoming("B2", *other.outgoing("B1"))
    assert new.outgoing("B2") == (2, 2)
    assert other.outgoing("B1") == (2, 2)


def test_skewed_endpoint_speaks_and_accepts_only_its_own_version() -> None:
    lines: list[str] = []
    skewed, old = P2pEndpoint("B1", protocol=2, own_version_only=True, log=lines.append), P2pEndpoint("B2")
    assert skewed.outgoing("B2") == (2, 2)
    assert not old.incoming("B1", *skewed.outgoing("B2"))
    assert not skewed.incoming("B2", *old.outgoing("B1"))
    assert not skewed.incoming("B2", 1, 1)
    assert skewed.refused == 2
    assert lines == [
        "P2P frame from B2 in protocol version 1 not understood (this firmware speaks only 2): dropped"
    ]
    # On protocol-1 firmware the defect changes nothing.
    assert P2pEndpoint("B1", own_version_only=True).incoming("B2", 1, 1)


def _gsme_answers(loop: asyncio.AbstractEventLoop, premises: Premises, answers: list[str]) -> bool:
    async def read() -> None:
        assert premises.coordinator is not None
        answers.clear()
        await premises.coordinator.send(
            dst=0x2001, dst_endpoint=1, src_endpoint=1, profile=0x0104, cluster=0x0000,
            payload=bytes([0x00, 0x42, 0x00, 0x05, 0x00]), ack=True, extended_timeout=True,
        )  # fmt: skip
        await asyncio.sleep(30.0)

    loop.run_until_complete(read())
    return "0x2001/0x0000" in answers


@pytest.mark.parametrize("defect", [None, "p2p-protocol-skew"])
def test_upgrading_the_near_bridge_alone_to_protocol_2(
    loop: asyncio.AbstractEventLoop, defect: str | None
) -> None:
    premises, answers = _premises(loop)
    for name in ("B1", "B2", "GSME"):
        premises.power_on(name)
    loop.run_until_complete(asyncio.sleep(5.0))
    assert _gsme_answers(loop, premises, answers)

    behaviours = (defect,) if defect else ()
    b1 = premises.devices["B1"]
    _reboot_into(loop, b1, ota_file(manifest_payload(protocol=2, behaviours=behaviours)))
    assert b1.config.p2p_protocol == 2
    if defect is None:
        assert _gsme_answers(loop, premises, answers)
    else:
        assert not _gsme_answers(loop, premises, answers)
        b2_log = [text for _, text in premises.devices["B2"].log_book.lines]
        assert any("P2P frame from B1 in protocol version 2 not understood" in t for t in b2_log)
        # Flashing B2 with protocol 2 as well brings the link back.
        _reboot_into(loop, premises.devices["B2"], ota_file(manifest_payload(protocol=2)))
        assert _gsme_answers(loop, premises, answers)
