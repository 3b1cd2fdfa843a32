"""Start a testbed: the second of the two places in ``harness`` that know the emulator exists.

For an emulated testbed it builds the premises from the testbed file (devices, links, routes), opens
each emulated device's control port (JSON lines on TCP, ``docs/control-port.md``) and switches on
the coordinator radio. From then on the harness holds only what it would hold on a bench: a zigpy
controller for the hub, a :class:`~harness.ports.control.ControlPort` per device reached through
pyserial by URL (its log stream and its power switch), and a sniffer feed of the air for the
evidence recorder. Scenarios never see emulator objects.

``serve_testbed`` runs the same premises for other tools (``harness testbed up``): it only opens the
ports and prints their URLs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zigpy.state
import zigpy.types as t
import zigpy.zdo.types as zdo_t

from harness.errors import BadInputError
from harness.ota.signing import load_verifying_key
from harness.ports.control import ControlPort
from harness.power.control_port import ControlPortPower
from harness.power.driver import PowerDriver
from harness.radio.virtual import VirtualControllerApplication
from harness.testbed.model import DeviceSpec, TestbedSpec
from testbeds.emulator.comms_hub import hub_control_port
from testbeds.emulator.control_port import ControlPortServer
from testbeds.emulator.defects import DEFECTS, unknown_defects
from testbeds.emulator.device import DeviceConfig, EmulatedDevice
from testbeds.emulator.flash_sweep import flash_sweep_commands
from testbeds.emulator.premises import CoordinatorRadio, LinkConfig, Premises

FrameSink = Callable[[bytes, str, str, str], None]
"""Receives every frame on air: (frame, sender, intended receiver or '*', medium kind)."""


def _eui64(ieee_bytes: bytes) -> t.EUI64:
    return t.EUI64(ieee_bytes)


def signing_key_pem(spec: DeviceSpec, testbed: TestbedSpec) -> bytes | None:
    """The PEM bytes of the device's trusted signing key (None if it has none).

    The path is relative to the testbed file. A file that cannot be read, or that is not an ECDSA
    P-256 public key, is `BadInputError` naming ``devices.<name>.signing_key`` and the path.
    """
    if spec.signing_key is None:
        return None
    source = testbed.source
    path = Path(spec.signing_key)
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    where = str(source) if source is not None else None
    field = f"devices.{spec.name}.signing_key"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(
            f"cannot be read ({exc.strerror}: {path})", file=where, field=field, value=spec.signing_key
        ) from None
    try:
        load_verifying_key(data, field=field, value=spec.signing_key)
    except BadInputError as exc:
        raise BadInputError(exc.reason, file=where, field=field, value=spec.signing_key) from None
    return data


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
        install_code=spec.install_code_bytes,
        commissioned=spec.commissioned,
        signing_key=signing_key_pem(spec, testbed),
    )


DeviceLogSink = Callable[[float, str, str], None]
"""Receives every control-port line: (testbed time, device, text)."""


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


def _control_port(device: EmulatedDevice, clock_origin: float = 0.0) -> ControlPortServer:
    """An emulated device's control port, with the test hooks every emulated device has."""
    return ControlPortServer(device, clock_origin=clock_origin, extra_commands=flash_sweep_commands(device))


@dataclass
class StartedTestbed:
    """What a started testbed offers the upper layers: a radio, control ports, power, the air."""

    spec: TestbedSpec
    loop: asyncio.AbstractEventLoop
    app: VirtualControllerApplication | None  # None when the CH is an emulated device under test
    ports: dict[str, ControlPort]
    power: dict[str, PowerDriver]
    premises: Premises
    servers: list[ControlPortServer]

    def add_frame_sink(self, sink: FrameSink) -> None:
        """Show every frame on the air (radio and P2P) to ``sink``, as a sniffer would."""
        self.premises.add_sniffer(sink)

    def add_log_sink(self, sink: DeviceLogSink) -> None:
        """Receive every line sent to or received from each control port: (testbed time, device, text).

        Log lines carry the device's own clock; commands (``> {...}``) and replies (``< {...}``)
        the loop's time when they passed.
        """
        loop = self.loop
        for name, port in self.ports.items():

            def forward(direction: str, line: str, device_time: float | None, name: str = name) -> None:
                if device_time is not None:
                    sink(device_time, name, line)
                else:
                    sink(loop.time(), name, f"{direction} {line}")

            port.add_transcript_listener(forward)

    def shutdown(self) -> None:
        """Close the control ports and power every emulated device off."""
        for port in self.ports.values():
            port.close()
        for server in self.servers:
            server.close()
        self.premises.shutdown()


def _build_premises(spec: TestbedSpec, loop: asyncio.AbstractEventLoop, seed: int | None) -> Premises:
    if spec.kind != "emulated" or spec.radio.type not in ("virtual", "none"):
        raise BadInputError(
            "this version of the harness starts emulated testbeds only; bench testbeds with "
            f"{spec.radio.type!r} radios need the hardware radio drivers, which are not written yet",
            file=str(spec.source) if spec.source else None,
            field="kind",
            value=spec.kind,
        )
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
    return Premises(
        loop=loop,
        devices=configs,
        links=links,
        seed=spec.seed if seed is None else seed,
        network_key=spec.network_key_bytes,
        network_key_sequence=spec.network_key_sequence,
    )


def _emulate(
    premises: Premises, spec: TestbedSpec, name: str, clock_origin: float = 0.0
) -> ControlPortServer:
    """Create one emulated device and its control port (the CH's carries the CH commands)."""
    if name == spec.coordinator.name:
        return hub_control_port(premises.emulate_hub(name), clock_origin=clock_origin)
    return _control_port(premises.emulate(name), clock_origin=clock_origin)


async def start_testbed(
    spec: TestbedSpec, loop: asyncio.AbstractEventLoop, *, seed: int | None = None
) -> StartedTestbed:
    """Build the testbed's devices, open their control ports and the hub's radio; nothing is powered.

    With ``radio.type: none`` the CH is emulated too (the device under test, reached through its
    control port like every other device) and there is no harness hub (``app`` is None).
    """
    coordinator = spec.coordinator
    premises = _build_premises(spec, loop, seed)
    servers: list[ControlPortServer] = []
    ports: dict[str, ControlPort] = {}
    try:
        for name in spec.devices:
            if name == coordinator.name and not spec.ch_under_test:
                continue
            server = _emulate(premises, spec, name)
            servers.append(server)
            port = ControlPort(name, await server.listen_tcp(), loop=loop)
            await port.open()
            ports[name] = port
    except BaseException:
        for port in ports.values():
            port.close()
        for server in servers:
            server.close()
        raise
    power: dict[str, PowerDriver] = {name: ControlPortPower(port) for name, port in ports.items()}
    if spec.ch_under_test:
        return StartedTestbed(
            spec=spec, loop=loop, app=None, ports=ports, power=power, premises=premises, servers=servers
        )

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
        radio = premises.attach_coordinator(coordinator.name, on_data, log)
        radio.allow_tc_rejoin = spec.allow_trust_centre_rejoin
        return radio

    app = VirtualControllerApplication(
        VirtualControllerApplication.build_config(), attach=attach, network=network, node=node
    )
    return StartedTestbed(
        spec=spec, loop=loop, app=app, ports=ports, power=power, premises=premises, servers=servers
    )


@dataclass
class ServedTestbed:
    """An emulated testbed running for other tools: the URL of every device's control port."""

    spec: TestbedSpec
    premises: Premises
    servers: dict[str, ControlPortServer]
    urls: dict[str, list[str]]

    def power_on_all(self) -> None:
        """Switch every emulated device on, in the testbed file's order."""
        for name in self.servers:
            self.premises.power_on(name)

    def close(self) -> None:
        """Close every port and power everything off."""
        for server in self.servers.values():
            server.close()
        self.premises.shutdown()


async def serve_testbed(
    spec: TestbedSpec,
    loop: asyncio.AbstractEventLoop,
    *,
    host: str = "127.0.0.1",
    pty: bool = False,
    seed: int | None = None,
) -> ServedTestbed:
    """Build an emulated testbed and open each device's control port on TCP (and a pty if asked).

    The device the hub would play (``radio.plays``) is not emulated: with no hub the others run
    without a coordinator, as a premises whose CH is switched off. With ``radio.type: none`` the CH
    is emulated too, with its CH commands.
    """
    premises = _build_premises(spec, loop, seed)
    servers: dict[str, ControlPortServer] = {}
    urls: dict[str, list[str]] = {}
    started = loop.time()
    for name in spec.devices:
        if name == spec.coordinator.name and not spec.ch_under_test:
            continue
        server = _emulate(premises, spec, name, clock_origin=started)
        servers[name] = server
        urls[name] = [await server.listen_tcp(host)]
        if pty:
            urls[name].append(server.open_pty())
    return ServedTestbed(spec=spec, premises=premises, servers=servers, urls=urls)
