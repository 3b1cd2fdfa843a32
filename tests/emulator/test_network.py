"""The emulated network: multi-hop routing over radio and P2P links, sleepy polling, retries, power."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import looptime
import pytest

from testbeds.emulator.device import DeviceConfig
from testbeds.emulator.frames import MacFrame, NwkFrame
from testbeds.emulator.medium import airtime
from testbeds.emulator.node import INDIRECT_PERSISTENCE_S, ApsIndication
from testbeds.emulator.premises import LinkConfig, Premises, compute_routes

PAN = 0x1A62


def _device(name: str, nwk: int, role: str, parent: str | None = None, poll: float = 7.5) -> DeviceConfig:
    return DeviceConfig(
        name=name,
        type="B1" if name.startswith("B") else "GSME",
        ieee=bytes([nwk & 0xFF, nwk >> 8, 0, 0, 0, 0, 0, 1]),
        nwk=nwk,
        pan_id=PAN,
        role=role,
        manufacturer_code=0x1234,
        manufacturer_name="test",
        model=name,
        image_type=0x0001,
        hardware_version=1,
        firmware_version=0x01000000,
        stack_version=2,
        power_source="battery" if role == "sleepy_end_device" else "mains",
        parent=parent,
        poll_interval=poll,
    )


DEVICES = [
    _device("CH", 0x0000, "coordinator"),
    _device("B1", 0x1001, "router"),
    _device("B2", 0x1002, "router"),
    _device("GSME", 0x2001, "sleepy_end_device", parent="B2"),
]
LINKS = [
    LinkConfig("CH", "B1", "radio", 0.002),
    LinkConfig("B1", "B2", "p2p", 0.015),
    LinkConfig("B2", "GSME", "radio", 0.003),
]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    yield loop
    loop.close()


class Captured:
    """Sniffer and coordinator application for the tests."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, str, str, str, bytes]] = []
        self.received: list[ApsIndication] = []


def _premises(loop: asyncio.AbstractEventLoop, links: list[LinkConfig] = LINKS) -> tuple[Premises, Captured]:
    premises = Premises(loop=loop, devices=DEVICES, links=links, seed=7)
    seen = Captured()
    premises.add_sniffer(lambda raw, src, dst, kind: seen.frames.append((loop.time(), src, dst, kind, raw)))
    for name in ("B1", "B2", "GSME"):
        premises.emulate(name)
    premises.attach_coordinator("CH", seen.received.append, lambda line: None)
    return premises, seen


def test_routes_follow_routers_only() -> None:
    routes = compute_routes(DEVICES, LINKS)
    assert routes["CH"][0x2001] == "B1"
    assert routes["B1"][0x2001] == "B2"
    assert routes["B2"][0x2001] == "GSME"
    assert "GSME" not in routes  # end devices do not route


def test_unicast_to_sleepy_meter_crosses_every_hop_and_waits_for_its_poll(
    loop: asyncio.AbstractEventLoop,
) -> None:
    premises, seen = _premises(loop)

    async def scenario() -> tuple[bool, float]:
        for name in ("B1", "B2", "GSME"):
            premises.power_on(name)
        await asyncio.sleep(3.0)  # boot and announce
        assert premises.coordinator is not None
        start = loop.time()
        # A Basic Read Attributes (model) from the CH to the GSME, asking for an APS ack.
        ok = await premises.coordinator.send(
            dst=0x2001,
            dst_endpoint=1,
            src_endpoint=1,
            profile=0x0104,
            cluster=0x0000,
            payload=bytes([0x00, 0x42, 0x00, 0x05, 0x00]),
            ack=True,
            extended_timeout=True,
        )
        await asyncio.sleep(10.0)
        return ok, loop.time() - start

    ok, _ = loop.run_until_complete(scenario())
    assert ok
    hops = {
        (src, dst, kind)
        for _, src, dst, kind, raw in seen.frames
        if MacFrame.decode(raw).frame_type == 1 and MacFrame.decode(raw).dst != 0xFFFF
    }
    assert ("CH", "B1", "radio") in hops and ("B1", "B2", "p2p") in hops and ("B2", "GSME", "radio") in hops
    # The read reaches the GSME only after it polls (a MAC Data Request command from the GSME to B2).
    to_gsme = [
        t
        for t, src, dst, _, raw in seen.frames
        if src == "B2" and dst == "GSME" and MacFrame.decode(raw).frame_type == 1
    ]
    polls = [
        t for t, src, dst, _, raw in seen.frames if src == "GSME" and MacFrame.decode(raw).frame_type == 3
    ]
    assert to_gsme and polls and min(polls) < to_gsme[0]
    answers = [ind for ind in seen.received if ind.cluster == 0x0000 and ind.src_nwk == 0x2001]
    assert answers, "the GSME's Read Attributes Response must come back to the CH"
    premises.shutdown()


def test_parent_drops_frames_for_a_child_that_never_polls(loop: asyncio.AbstractEventLoop) -> None:
    premises, _ = _premises(loop)

    async def scenario() -> tuple[bool, float]:
        for name in ("B1", "B2"):
            premises.power_on(name)  # the GSME stays unpowered: it never polls
        await asyncio.sleep(3.0)
        assert premises.coordinator is not None
        node = premises.devices["B2"].node
        assert node is not None
        start = loop.time()
        delivered = await node.nwk_send(0x2001, b"\x00" * 8)
        return delivered, loop.time() - start

    delivered, waited = loop.run_until_complete(scenario())
    assert not delivered
    assert waited == pytest.approx(INDIRECT_PERSISTENCE_S, abs=0.01)
    node = premises.devices["B2"].node
    assert node is not None and node.counters.indirect_expired == 1
    premises.shutdown()


def test_lossy_link_is_bridged_by_mac_retries_without_duplicate_delivery(
    loop: asyncio.AbstractEventLoop,
) -> None:
    lossy = [LinkConfig("CH", "B1", "radio", 0.002, loss=0.4), *LINKS[1:]]
    premises, seen = _premises(loop, lossy)

    async def scenario() -> list[bool]:
        premises.power_on("B1")
        await asyncio.sleep(3.0)
        assert premises.coordinator is not None
        results = []
        for i in range(20):
            results.append(
                await premises.coordinator.send(
                    dst=0x1001,
                    dst_endpoint=1,
                    src_endpoint=1,
                    profile=0x0104,
                    cluster=0x0000,
                    payload=bytes([0x00, i, 0x00, 0x05, 0x00]),
                    ack=True,
                )
            )
        await asyncio.sleep(2.0)
        return results

    results = loop.run_until_complete(scenario())
    node = premises.devices["B1"].node
    assert node is not None
    assert sum(results) >= 18
    assert node.counters.mac_duplicates > 0, "lost acks must cause retransmissions the receiver already has"
    coordinator = premises.coordinator
    assert coordinator is not None and coordinator.node.counters.mac_retries > 0, (
        "40% loss must cause retries"
    )
    tsns = [ind.payload[1] for ind in seen.received if ind.cluster == 0x0000 and ind.src_nwk == 0x1001]
    assert len(tsns) == len(set(tsns)), "a retransmission must never be delivered twice"
    premises.shutdown()


def test_delivery_takes_airtime_plus_latency(loop: asyncio.AbstractEventLoop) -> None:
    premises, _ = _premises(loop)
    arrivals: list[float] = []
    premises.medium.attach("probe", lambda raw, src, kind: arrivals.append(loop.time()))
    premises.medium.connect("CH", "probe", kind="radio", latency=0.010)
    frame = NwkFrame(frame_type=0, dst=0x1234, src=0, radius=1, seq=1).encode()
    loop.call_soon(premises.medium.transmit, "CH", frame, "probe", "radio")
    loop.run_until_complete(asyncio.sleep(1.0))
    assert arrivals == [pytest.approx(airtime(frame) + 0.010, abs=1e-6)]
    premises.shutdown()


def test_power_cut_keeps_flash_and_loses_the_radio(loop: asyncio.AbstractEventLoop) -> None:
    premises, seen = _premises(loop)
    device = premises.devices["B1"]

    async def scenario() -> None:
        device.power_on()
        await asyncio.sleep(3.0)
        device.flash.begin_download(
            manufacturer_code=0x1234, image_type=1, file_version=0x01010000, image_size=128
        )
        device.flash.write_block(0, b"\x11" * 64)
        device.power_off()
        before = len(seen.frames)
        assert premises.coordinator is not None
        sent = await premises.coordinator.send(
            dst=0x1001,
            dst_endpoint=1,
            src_endpoint=1,
            profile=0x0104,
            cluster=0,
            payload=b"\x00\x01\x00\x05\x00",
            ack=False,
        )
        assert not sent, "an unpowered router must not acknowledge"
        assert all(src != "B1" for _, src, *_ in seen.frames[before:])
        device.power_on()
        await asyncio.sleep(3.0)

    loop.run_until_complete(scenario())
    assert device.boots == 2
    assert device.flash.download_offset == 64, "the downloaded prefix survives the power cut"
    premises.shutdown()
