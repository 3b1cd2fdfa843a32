"""NWK security in the emulator: AES-CCM* level 5, replay protection, frame counters in flash."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import looptime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbeds.emulator.device import DeviceConfig
from testbeds.emulator.frames import MacFrame, NwkFrame
from testbeds.emulator.premises import LinkConfig, Premises
from testbeds.emulator.security import IncomingCounters, NwkSecurity, SecurityError

KEY = bytes.fromhex("01030507090b0d0f00020406080a0c0d")
OTHER_KEY = bytes(16)
IEEE = bytes.fromhex("0100feff6f0d0000")


def _frame(payload: bytes = b"\x40\x01\x19\x00\x04\x01\x01\x07hello") -> NwkFrame:
    return NwkFrame(frame_type=0, dst=0x1234, src=0x0000, radius=30, seq=7, payload=payload)


def test_protect_then_unprotect_gives_back_the_payload() -> None:
    raw = NwkSecurity(KEY).protect(_frame(), source_ieee=IEEE, frame_counter=42)
    received = NwkFrame.decode(raw)
    assert received.security
    assert b"hello" not in raw, "the payload must be encrypted on air"
    opened = NwkSecurity(KEY).unprotect(received)
    assert opened.plaintext == _frame().payload
    assert (opened.aux.frame_counter, opened.aux.source_ieee, opened.aux.key_sequence) == (42, IEEE, 0)
    # On air the security control byte carries level 0 (ZigBee PRO §4.3.1.1), key id 1, extended nonce.
    assert received.payload[0] == 0x28


def test_wrong_key_and_altered_frames_fail_the_mic() -> None:
    raw = NwkSecurity(KEY).protect(_frame(), source_ieee=IEEE, frame_counter=1)
    with pytest.raises(SecurityError, match="MIC"):
        NwkSecurity(OTHER_KEY).unprotect(NwkFrame.decode(raw))
    for index in (2, len(raw) - 10, len(raw) - 1):  # NWK header (associated data), ciphertext, MIC
        altered = bytearray(raw)
        altered[index] ^= 0x01
        with pytest.raises(SecurityError):
            NwkSecurity(KEY).unprotect(NwkFrame.decode(bytes(altered)))


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_unprotect_raises_only_security_error(data: bytes) -> None:
    frame = NwkFrame(frame_type=0, dst=1, src=2, radius=3, seq=4, security=True, payload=data)
    with contextlib.suppress(SecurityError):
        NwkSecurity(KEY).unprotect(frame)


def test_incoming_counters_refuse_replays_and_stale_counters() -> None:
    counters = IncomingCounters()
    assert counters.accept(IEEE, 10)
    assert not counters.accept(IEEE, 10)
    assert not counters.accept(IEEE, 3)
    assert counters.accept(IEEE, 11)
    assert counters.accept(bytes(8), 0), "each neighbour has its own counter"


# ------------------------------------------------------------------------------ on the medium
def _device(name: str, nwk: int, role: str, defects: frozenset[str] = frozenset()) -> DeviceConfig:
    return DeviceConfig(
        name=name,
        type="B1",
        ieee=bytes([nwk & 0xFF, nwk >> 8, 0, 0, 0, 0, 0, 2]),
        nwk=nwk,
        pan_id=0x1A62,
        role=role,
        manufacturer_code=0x1234,
        manufacturer_name="test",
        model=name,
        image_type=1,
        hardware_version=1,
        firmware_version=0x01000000,
        stack_version=2,
        power_source="mains",
        network_key=KEY,
        defects=defects,
    )


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    yield loop
    loop.close()


def _pair(loop: asyncio.AbstractEventLoop) -> tuple[Premises, list[tuple[str, bytes]], list[object]]:
    devices = [_device("CH", 0x0000, "coordinator"), _device("B1", 0x1001, "router")]
    premises = Premises(loop=loop, devices=devices, links=[LinkConfig("CH", "B1")], seed=3, network_key=KEY)
    captured: list[tuple[str, bytes]] = []
    premises.add_sniffer(lambda raw, src, dst, kind: captured.append((src, raw)))
    received: list[object] = []
    premises.emulate("B1")
    premises.attach_coordinator("CH", received.append, lambda line: None)
    return premises, captured, received


def test_replayed_frame_is_dropped_by_the_receiver(loop: asyncio.AbstractEventLoop) -> None:
    premises, captured, received = _pair(loop)

    async def scenario() -> None:
        premises.power_on("B1")
        await asyncio.sleep(3.0)  # B1 boots and announces (a secured broadcast)

    loop.run_until_complete(scenario())
    # Its secured broadcasts (the Device_annce): a unicast replay would stop at the MAC duplicate check.
    from_b1 = [
        raw
        for src, raw in captured
        if src == "B1" and MacFrame.decode(raw).frame_type == 1 and MacFrame.decode(raw).dst == 0xFFFF
    ]
    assert from_b1, "B1 sent secured frames"
    before = len(received)
    coordinator = premises.coordinator
    assert coordinator is not None
    # An attacker (or a stuck repeater) puts B1's captured frame on air again.
    premises.medium.transmit("B1", from_b1[0], None, "radio")
    loop.run_until_complete(asyncio.sleep(1.0))
    assert len(received) == before, "a replayed frame must not reach the application"
    assert coordinator.node.counters.replays == 1
    premises.shutdown()


def test_outgoing_frame_counter_survives_a_power_cycle(loop: asyncio.AbstractEventLoop) -> None:
    premises, _, received = _pair(loop)
    device = premises.devices["B1"]

    async def scenario() -> None:
        device.power_on()
        await asyncio.sleep(3.0)
        device.power_off()
        await asyncio.sleep(1.0)
        device.power_on()
        await asyncio.sleep(3.0)

    loop.run_until_complete(scenario())
    coordinator = premises.coordinator
    assert coordinator is not None
    assert coordinator.node.counters.replays == 0
    announces = [ind for ind in received if getattr(ind, "cluster", None) == 0x0013]
    assert len(announces) == 2, "the CH hears B1's announce after each boot"
    premises.shutdown()


def test_unsecured_frames_are_dropped_on_a_secured_network(loop: asyncio.AbstractEventLoop) -> None:
    premises, _, received = _pair(loop)
    loop.run_until_complete(asyncio.sleep(0.1))
    plain = NwkFrame(
        frame_type=0, dst=0x0000, src=0x1001, radius=30, seq=1, payload=b"\x40\x01\x00\x00\x04\x01\x01\x01x"
    )
    mac = MacFrame(
        frame_type=1, seq=9, dst_pan=0x1A62, dst=0x0000, src=0x1001, payload=plain.encode()
    ).encode()
    premises.medium.attach("B1-ghost", lambda *args: None)
    premises.medium.connect("B1-ghost", "CH")
    premises.medium.transmit("B1-ghost", mac, "CH", "radio")
    loop.run_until_complete(asyncio.sleep(0.1))
    coordinator = premises.coordinator
    assert coordinator is not None and coordinator.node.counters.security_drops == 1
    assert received == []
    premises.shutdown()
