"""Start a testbed: the second of the two places in ``harness`` that know the emulator exists.

For an emulated testbed it builds the premises from the testbed file (devices, links, routes), powers
the devices, switches on the coordinator radio and hands back what the upper layers need: a zigpy
controller for the hub, a power driver, and a sniffer feed for the evidence recorder. Scenarios
never see emulator objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t

from harness.errors import BadInputError
from harness.power.driver import PowerDriver
from harness.radio.virtual import VirtualControllerApplication
from harness.testbed.model import DeviceSpec, TestbedSpec
from testbeds.emulator.defects import DEFECTS, unknown_defects
from testbeds.emulator.device import DeviceConfig
from testbeds.emulator.premises import CoordinatorRadio, LinkConfig, Premises

FrameSink = Callable[[bytes, str, str, str], None]
"""Receives every frame on air: (frame, sender, intended receiver or '*', medium kind)."""


def _eui64(ieee_bytes: bytes) -> t.EUI64:
    return t.EUI64(ieee_bytes)


def device_config(spec: DeviceSpec, testbed: TestbedSpec) -> DeviceConfig:
    """The emulator's view of one device of the testbed file."""
    return DeviceConfig(
        name=spec.name,
        type=spec.type,
        ieee=spec.ieee_bytes,
        nwk=spec.nwk,
        pan_id=testbed.pan_id,
        role=spec.role,
        manufacturer_code=spec.manufacturer_code,
        manufacturer_name=spec.manufacturer_name,
        model=spec.model,
        image_type=spec.image_type,
        hardware_version=spec.hardware_version,
        firmware_version=spec.firmware_version,
        stack_version=spec.stack_version,
        power_source=spec.power_source,
        parent=spec.parent,
        poll_interval=spec.poll_interval or 7.5,
        fast_poll_interval=spec.fast_poll_interval,
        defects=frozenset(spec.defects),
        network_key=testbed.network_key_bytes,
        network_key_sequence=testbed.network_key_sequence,
    )


def check_behaviours(names: list[str]) -> None:
    """Refuse behaviour names the emulator does not know (for a firmware image's manifest).

    Raises `BadInputError` naming the field ``behaviours`` and the first unknown name.
    """
    unknown = unknown_defects(names)
    if unknown:
        raise BadInputError(
            f"unknown behaviour {unknown[0]!r}; the emulator knows: {', '.join(sorted(DEFECTS))}",
            field="behaviours",
            value=unknown[0],
        )


class EmulatedPower(PowerDriver):
    """Power switches of emulated devices (the same interface a USB relay driver implements)."""

    def __init__(self, premises: Premises, name: str) -> None:
        self._premises = premises
        self.name = name

    async def cut(self) -> None:
        """Cut power to the device."""
        self._premises.power_off(self.name)

    async def restore(self) -> None:
        """Restore power to the device."""
        self._premises.power_on(self.name)

    def is_on(self) -> bool:
        """Whether the device has power."""
        return self._premises.devices[self.name].powered


@dataclass
class StartedTestbed:
    """What a started testbed offers the upper layers."""

    spec: TestbedSpec
    app: VirtualControllerApplication
    power: dict[str, PowerDriver]
    premises: Premises

    def add_frame_sink(self, sink: FrameSink) -> None:
        """Show every frame on the air (radio and P2P) to ``sink``."""
        self.premises.add_sniffer(sink)

    def add_log_sink(self, sink: Callable[[float, str, str], None]) -> None:
        """Receive every device log line: (testbed time, device, text)."""
        self.premises.add_log_listener(sink)

    def shutdown(self) -> None:
        """Power every emulated device off."""
        self.premises.shutdown()


def start_testbed(
    spec: TestbedSpec, loop: asyncio.AbstractEventLoop, *, seed: int | None = None
) -> StartedTestbed:
    """Build the testbed's devices and the hub's radio; devices are powered but not yet booted."""
    if spec.kind != "emulated" or spec.radio.type != "virtual":
        raise BadInputError(
            "this version of the harness starts emulated testbeds only; bench testbeds with "
            f"{spec.radio.type!r} radios need the hardware radio drivers, which are not written yet",
            file=str(spec.source) if spec.source else None,
            field="kind",
            value=spec.kind,
        )
    coordinator = spec.device(spec.radio.plays)
    for device in spec.devices.values():
        unknown = unknown_defects(device.defects)
        if unknown:
            raise BadInputError(
                f"unknown defect {unknown[0]!r}; the emulator knows: {', '.join(sorted(DEFECTS))}",
                file=str(spec.source) if spec.source else None,
                field=f"devices.{device.name}.defects",
                value=unknown[0],
            )
    configs = [device_config(d, spec) for d in spec.devices.values()]
    links = [
        LinkConfig(
            a=link.between[0], b=link.between[1], kind=link.medium, latency=link.latency, loss=link.loss
        )
        for link in spec.links
    ]
    premises = Premises(
        loop=loop,
        devices=configs,
        links=links,
        seed=spec.seed if seed is None else seed,
        network_key=spec.network_key_bytes,
        network_key_sequence=spec.network_key_sequence,
    )
    power: dict[str, PowerDriver] = {}
    for name in spec.devices:
        if name == coordinator.name:
            continue
        premises.emulate(name)
        power[name] = EmulatedPower(premises, name)

    network = zigpy.state.NetworkInfo(
        extended_pan_id=t.ExtendedPanId(t.EUI64.convert(spec.extended_pan_id)),
        pan_id=t.PanId(spec.pan_id),
        channel=t.uint8_t(spec.channel),
        channel_mask=t.Channels(1 << spec.channel),
        nwk_manager_id=t.NWK(0x0000),
        security_level=t.uint8_t(5),
    )
    node = zigpy.state.NodeInfo(
        nwk=t.NWK(coordinator.nwk),
        ieee=_eui64(coordinator.ieee_bytes),
        logical_type=zdo_t.LogicalType.Coordinator,
        model="harness hub",
        manufacturer="althan-ota-harness",
    )

    def attach(on_data: Callable[..., None], log: Callable[[str], None]) -> CoordinatorRadio:
        return premises.attach_coordinator(coordinator.name, on_data, log)

    app = VirtualControllerApplication(
        VirtualControllerApplication.build_config(), attach=attach, network=network, node=node
    )
    return StartedTestbed(spec=spec, app=app, power=power, premises=premises)
