"""Joining by association with an install code, secure and Trust Centre rejoin, leave, and their defects.

The premises: the CH (the coordinator radio, Trust Centre), near-end bridge B1, far-end bridge B2 over
the P2P link, the gas meter (GSME, sleepy) under B2, and a device J that is not commissioned: it holds
an install code and no network key. Every check ends in what a user sees: a ZCL read from the CH that
is answered, or not.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Iterator
from dataclasses import replace

import looptime
import pytest

from testbeds.emulator.commands import decode_beacon
from testbeds.emulator.defects import DEFECTS
from testbeds.emulator.device import DeviceConfig, EmulatedDevice
from testbeds.emulator.frames import (
    APS_COMMAND,
    MAC_BEACON,
    MAC_CMD_ASSOCIATION_REQUEST,
    MAC_CMD_ASSOCIATION_RESPONSE,
    MAC_CMD_BEACON_REQUEST,
    MAC_COMMAND,
    MAC_DATA,
    NWK_CMD_LEAVE,
    NWK_CMD_REJOIN_REQUEST,
    NWK_CMD_REJOIN_RESPONSE,
    NWK_COMMAND,
    ApsFrame,
    MacFrame,
    NwkFrame,
)
from testbeds.emulator.keys import crc16_x25
from testbeds.emulator.node import ApsIndication
from testbeds.emulator.premises import CoordinatorRadio, LinkConfig, Premises
from testbeds.emulator.security import NwkSecurity

KEY = bytes.fromhex("01030507090b0d0f00020406080a0c0d")
PAN = 0x1A62
INSTALL_CODE = bytes.fromhex("83FED3407A939723A5C639B26916D505C3B5")
OTHER_CODE = bytes(range(1, 9)) + crc16_x25(bytes(range(1, 9))).to_bytes(2, "little")
MFR, ITYPE = 0x1234, 0x0001
READ_MODEL = bytes([0x00, 0x42, 0x00, 0x05, 0x00])  # ZCL Read Attributes: Basic ModelIdentifier


def _config(name: str, nwk: int, role: str, parent: str | None = None, **extra: object) -> DeviceConfig:
    config = DeviceConfig(
        name=name,
        type="B1" if name.startswith("B") else "GSME",
        ieee=bytes([nwk & 0xFF, nwk >> 8, 0, 0xFE, 0xFF, 0x6F, 0x0D, 0x00]),
        nwk=nwk,
        pan_id=PAN,
        role=role,
        manufacturer_code=MFR,
        manufacturer_name="test",
        model=name,
        image_type=ITYPE,
        hardware_version=1,
        firmware_version=0x01000000,
        stack_version=2,
        power_source="battery" if role == "sleepy_end_device" else "mains",
        parent=parent,
        network_key=KEY,
    )
    return replace(config, **extra)  # type: ignore[arg-type]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    yield loop
    loop.close()


class World:
    """A running premises, what went on air and what reached the CH's application."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        joiner: DeviceConfig | None = None,
        defects: dict[str, frozenset[str]] | None = None,
        install_codes: dict[str, bytes] | None = None,
    ) -> None:
        defects = defects or {}
        install_codes = install_codes or {}
        configs = [
            _config("CH", 0x0000, "coordinator"),
            _config("B1", 0x1001, "router"),
            _config("B2", 0x1002, "router"),
            _config("GSME", 0x2001, "sleepy_end_device", parent="B2", poll_interval=2.0),
        ]
        configs = [
            replace(c, defects=defects.get(c.name, frozenset()), install_code=install_codes.get(c.name))
            for c in configs
        ]
        links = [LinkConfig("CH", "B1"), LinkConfig("B1", "B2", "p2p", 0.015), LinkConfig("B2", "GSME")]
        if joiner is not None:
            configs.append(joiner)
            links.append(LinkConfig(joiner.parent or "CH", joiner.name))
        self.loop = loop
        self.premises = Premises(loop=loop, devices=configs, links=links, seed=11, network_key=KEY)
        self.frames: list[tuple[float, str, str, bytes]] = []
        self.received: list[ApsIndication] = []
        self.tc_log: list[str] = []
        self.premises.add_sniffer(
            lambda raw, src, dst, kind: self.frames.append((loop.time(), src, dst, raw))
        )
        for c in configs:
            if c.role != "coordinator":
                self.premises.emulate(c.name)
        radio = self.premises.attach_coordinator("CH", self.received.append, self.tc_log.append)
        self.radio: CoordinatorRadio = radio
        self.device: dict[str, EmulatedDevice] = self.premises.devices

    def run(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def power_all(self) -> None:
        for name in self.device:
            self.premises.power_on(name)

    def power_cycle(self, name: str) -> None:
        self.premises.power_off(name)
        self.premises.power_on(name)

    def read_answered(self, name: str) -> bool:
        """A ZCL read from the CH to ``name``: True when its Read Attributes Response came back."""
        nwk = self.premises.configs[name].nwk
        before = len(self.received)

        async def read() -> None:
            await self.radio.send(
                dst=nwk,
                dst_endpoint=1,
                src_endpoint=1,
                profile=0x0104,
                cluster=0x0000,
                payload=READ_MODEL,
                ack=True,
                extended_timeout=True,
            )
            await asyncio.sleep(12.0)

        self.loop.run_until_complete(read())
        return any(
            ind.src_nwk == nwk and ind.cluster == 0x0000 and ind.payload[2:3] == b"\x01"
            for ind in self.received[before:]
        )

    def announced(self, name: str, since: int = 0) -> bool:
        """Whether the device's Device_annce reached the CH's application."""
        nwk = self.premises.configs[name].nwk
        return any(ind.cluster == 0x0013 and ind.src_nwk == nwk for ind in self.received[since:])

    def log(self, name: str) -> str:
        return "\n".join(line for _, line in self.device[name].log_book.lines)

    def mac_commands(self, src: str, command: int) -> list[MacFrame]:
        out = []
        for _, sender, _, raw in self.frames:
            frame = MacFrame.decode(raw)
            if sender == src and frame.frame_type == MAC_COMMAND and frame.payload[0] == command:
                out.append(frame)
        return out

    def nwk_commands(self, src: str, command: int, key: bytes | None = KEY) -> list[tuple[float, NwkFrame]]:
        """NWK commands ``src`` put on air (secured ones opened with ``key``), with their times."""
        out = []
        for when, sender, _, raw in self.frames:
            mac = MacFrame.decode(raw)
            if sender != src or mac.frame_type != MAC_DATA:
                continue
            nwk = NwkFrame.decode(mac.payload)
            if nwk.frame_type != NWK_COMMAND:
                continue
            if nwk.security:
                if key is None:
                    continue
                opened = NwkSecurity(key).unprotect(nwk)
                nwk.payload, nwk.security = opened.plaintext, True
            if nwk.payload[:1] == bytes([command]):
                out.append((when, nwk))
        return out


def _joiner(role: str = "sleepy_end_device", parent: str = "B2", code: bytes = INSTALL_CODE) -> DeviceConfig:
    return _config(
        "J",
        0x3001,
        role,
        parent=parent if role != "router" else None,
        commissioned=False,
        install_code=code,
        poll_interval=2.0,
    )


# ------------------------------------------------------------------------------------ joining
@pytest.mark.parametrize(
    ("role", "parent"),
    [("sleepy_end_device", "B2"), ("router", "CH")],
    ids=["sleepy-under-B2-key-tunnelled", "router-under-CH-key-direct"],
)
def test_install_code_device_joins_only_once_permitted(
    loop: asyncio.AbstractEventLoop, role: str, parent: str
) -> None:
    world = World(loop, joiner=_joiner(role, parent))
    world.power_all()
    world.run(15.0)
    joiner = world.device["J"]
    assert joiner.network_state.network_key is None, "nobody permitted J: it must not have the key"
    assert not world.announced("J")
    assert "no parent permits joining" in world.log("J")
    beacons = [
        decode_beacon(MacFrame.decode(raw).payload)
        for _, src, _, raw in world.frames
        if src == parent and MacFrame.decode(raw).frame_type == MAC_BEACON
    ]
    assert beacons and not any(b.association_permit for b in beacons)

    world.radio.permit_with_install_code(joiner.config.ieee, INSTALL_CODE, 120)
    world.run(70.0)
    assert joiner.network_state.network_key == KEY
    assert joiner.network_state.joined
    assert world.announced("J"), "a joined device announces itself to the CH"
    assert world.read_answered("J")
    # What went on air: a Beacon Request, a permitting beacon, the association, the key.
    assert world.mac_commands("J", MAC_CMD_BEACON_REQUEST)
    association = world.mac_commands("J", MAC_CMD_ASSOCIATION_REQUEST)
    assert association and association[-1].src == joiner.config.ieee  # from its extended address
    assert world.mac_commands(parent, MAC_CMD_ASSOCIATION_RESPONSE)
    assert any(
        decode_beacon(MacFrame.decode(raw).payload).association_permit
        for _, src, _, raw in world.frames
        if src == parent and MacFrame.decode(raw).frame_type == MAC_BEACON
    )
    last_hop = []
    for _, src, dst, raw in world.frames:
        mac = MacFrame.decode(raw)
        if src == parent and dst == "J" and mac.frame_type == MAC_DATA:
            nwk = NwkFrame.decode(mac.payload)
            if not nwk.security:
                last_hop.append(ApsFrame.decode(nwk.payload))
    assert last_hop and last_hop[0].frame_type == APS_COMMAND and last_hop[0].security, (
        "the key's last hop: NWK unsecured, APS secured"
    )
    assert all(KEY not in raw for _, _, _, raw in world.frames), "the network key never goes on air in clear"
    if parent != "CH":
        assert "tunnelled through 0x1002" in "\n".join(world.tc_log)
    world.premises.shutdown()


def test_device_not_permitted_never_gets_the_key(loop: asyncio.AbstractEventLoop) -> None:
    world = World(loop, joiner=_joiner())
    world.power_all()
    world.run(5.0)
    # Joining is opened, but for another device: B2 lets J associate, the Trust Centre sends no key.
    world.radio.permit_with_install_code(bytes(range(8)), INSTALL_CODE, 120)
    world.run(60.0)
    assert world.mac_commands("B2", MAC_CMD_ASSOCIATION_RESPONSE), "J associated with B2"
    assert "joined without permission; no key sent" in "\n".join(world.tc_log)
    assert world.device["J"].network_state.network_key is None
    assert not world.announced("J")
    assert not world.read_answered("J")
    world.premises.shutdown()


def test_device_with_another_install_code_cannot_open_the_key(loop: asyncio.AbstractEventLoop) -> None:
    world = World(loop, joiner=_joiner(code=OTHER_CODE))
    world.power_all()
    world.run(5.0)
    # The Trust Centre was given the wrong code for J: the key it sends cannot be opened by J.
    world.radio.permit_with_install_code(world.device["J"].config.ieee, INSTALL_CODE, 120)
    world.run(60.0)
    assert "network key to" in "\n".join(world.tc_log)
    assert "MIC check failed" in world.log("J")
    assert world.device["J"].network_state.network_key is None
    assert not world.read_answered("J")
    world.premises.shutdown()


# ------------------------------------------------------------------------------------ rejoining
def test_reboot_is_a_secure_rejoin_then_an_announce(loop: asyncio.AbstractEventLoop) -> None:
    world = World(loop)
    world.power_all()
    world.run(10.0)
    counter_before = world.device["GSME"].flash.nwk_frame_counter
    cycle_at = loop.time()
    world.power_cycle("GSME")
    world.run(10.0)
    rejoins = [(t, f) for t, f in world.nwk_commands("GSME", NWK_CMD_REJOIN_REQUEST) if t > cycle_at]
    assert rejoins, "the rebooted GSME sends a Rejoin Request"
    assert all(f.security for _, f in rejoins), "secured with the network key it kept"
    assert world.nwk_commands("B2", NWK_CMD_REJOIN_RESPONSE)
    annces = [
        t
        for t, src, _, raw in world.frames
        if src == "GSME" and t > cycle_at and MacFrame.decode(raw).frame_type == MAC_DATA
    ]
    assert min(t for t, _ in rejoins) <= min(annces)
    assert "secure rejoin of GSME" in world.log("B2")
    assert "dropped frame from GSME" not in world.log("B2"), "the frame counter kept counting up"
    assert world.device["GSME"].flash.nwk_frame_counter > counter_before
    assert world.read_answered("GSME")
    world.premises.shutdown()


def _ota_file(version: int, stack: int, size: int = 4096) -> bytes:
    header = struct.pack(
        "<IHHHHHIH32sI",
        0x0BEEF11E,
        0x0100,
        56,
        0,
        MFR,
        ITYPE,
        version,
        stack,
        b"stack upgrade".ljust(32, b"\0"),
        size,
    )
    return header + random.Random(version).randbytes(size - len(header))


def _install_and_reboot(device: EmulatedDevice, image: bytes) -> None:
    """As the OTA client does at its upgrade time: the image is downloaded, activated, the device resets."""
    flash = device.flash
    version = struct.unpack_from("<I", image, 14)[0]
    flash.begin_download(manufacturer_code=MFR, image_type=ITYPE, file_version=version, image_size=len(image))
    for offset in range(0, len(image), 64):
        flash.write_block(offset, image[offset : offset + 64])
    flash.mark_pending_activation()
    flash.activate()
    device.power_off()
    device.power_on()


@pytest.mark.parametrize("defect", [False, True], ids=["healthy", "loses-network-key-on-stack-upgrade"])
@pytest.mark.parametrize("tc_rejoin", [True, False], ids=["tc-rejoin-allowed", "tc-rejoin-refused"])
def test_stack_upgrade_keeps_the_key_or_needs_a_trust_centre_rejoin(
    loop: asyncio.AbstractEventLoop, defect: bool, tc_rejoin: bool
) -> None:
    defects = {"B2": frozenset({"loses-network-key-on-stack-upgrade"})} if defect else {}
    world = World(loop, defects=defects, install_codes={"B2": INSTALL_CODE})
    world.radio.allow_tc_rejoin = tc_rejoin
    world.power_all()
    world.run(10.0)
    assert world.read_answered("GSME")
    upgrade_at = loop.time()
    _install_and_reboot(world.device["B2"], _ota_file(0x01010000, stack=3))
    world.run(30.0)
    assert world.device["B2"].flash.running.stack_version == 3
    unsecured = [t for t, f in world.nwk_commands("B2", NWK_CMD_REJOIN_REQUEST, key=None) if t > upgrade_at]
    if not defect:
        assert not unsecured, "a healthy stack keeps its key and rejoins securely"
        assert world.read_answered("GSME")
        return
    assert unsecured, "without its key B2 can only ask for a Trust Centre rejoin"
    assert "lost the network key" in world.log("B2")
    if tc_rejoin:
        assert world.device["B2"].network_state.network_key == KEY
        assert world.read_answered("GSME"), "the Trust Centre gave the key back"
    else:
        assert "refused by policy" in "\n".join(world.tc_log)
        assert world.device["B2"].network_state.network_key is None
        assert not world.read_answered("GSME"), "B2 stays off the network, and the GSME behind it"
    world.premises.shutdown()


@pytest.mark.parametrize("defect", [False, True], ids=["healthy", "never-rejoins-after-reboot"])
def test_never_rejoins_after_reboot(loop: asyncio.AbstractEventLoop, defect: bool) -> None:
    world = World(loop, defects={"GSME": frozenset({"never-rejoins-after-reboot"})} if defect else {})
    world.power_all()
    world.run(10.0)
    assert world.read_answered("GSME"), "first boot: the defect shows only after a reboot"
    since = len(world.received)
    world.power_cycle("GSME")
    world.run(20.0)
    assert world.announced("GSME", since) is not defect
    assert world.read_answered("GSME") is not defect
    world.premises.shutdown()


@pytest.mark.parametrize("defect", [False, True], ids=["healthy", "children-do-not-rejoin"])
def test_sleepy_child_after_its_parent_reboots(loop: asyncio.AbstractEventLoop, defect: bool) -> None:
    world = World(loop, defects={"B2": frozenset({"children-do-not-rejoin"})} if defect else {})
    world.power_all()
    world.run(10.0)
    assert world.read_answered("GSME")
    _install_and_reboot(world.device["B2"], _ota_file(0x01010000, stack=2))
    world.run(10.0)
    assert world.read_answered("B2"), "the router itself is back either way"
    assert world.read_answered("GSME") is not defect
    world.premises.shutdown()


# ---------------------------------------------------------------------------------------- leave
@pytest.mark.parametrize("how", ["device", "mgmt-leave-req"])
def test_a_device_that_leaves_drops_its_key_and_its_parent_forgets_it(
    loop: asyncio.AbstractEventLoop, how: str
) -> None:
    world = World(loop)
    left: list[tuple[int, bytes]] = []
    world.radio.on_device_left(lambda nwk, ieee: left.append((nwk, ieee)))
    world.power_all()
    world.run(10.0)
    gsme = world.device["GSME"]
    assert 0x2001 in world.device["B2"].network_state.children
    if how == "device":
        gsme.leave()
    else:
        world.radio.request_leave(0x2001, gsme.config.ieee)
    world.run(15.0)
    assert world.nwk_commands("GSME", NWK_CMD_LEAVE)
    assert gsme.network_state.network_key is None and not gsme.network_state.joined
    assert 0x2001 not in world.device["B2"].network_state.children
    assert left == [(0x2001, gsme.config.ieee)]
    assert not world.read_answered("GSME")
    # Power does not bring it back: it has no key, and nobody permits it to join.
    world.power_cycle("GSME")
    world.run(20.0)
    assert gsme.network_state.network_key is None
    assert not world.read_answered("GSME")
    world.premises.shutdown()


def test_joining_defects_are_catalogued() -> None:
    for name in (
        "loses-network-key-on-stack-upgrade",
        "never-rejoins-after-reboot",
        "children-do-not-rejoin",
    ):
        assert name in DEFECTS
    assert DEFECTS["never-rejoins-after-reboot"] != DEFECTS["drops-off-after-upgrade"]
