"""An emulated HAN device: power, flash, a ZigBee stack and the application clusters on top.

The device answers ZDO discovery (node, active endpoint and simple descriptors, address requests),
the Basic cluster (0x0000: manufacturer, model, power source, SW build id of the running firmware)
and carries an OTA Upgrade client (cluster 0x0019). On power-up it rebuilds everything held in RAM
(stack, OTA client state) from its flash and its stored network state, rejoins the network (a secure
NWK rejoin, or a Trust Centre rejoin if it no longer holds the network key; a device that has never
joined associates and receives the key from the Trust Centre, see :mod:`testbeds.emulator.joining`)
and then announces itself (ZDO Device_annce). A power cut drops everything but the flash and the
stored network state.

What the running firmware is decides how the device behaves after boot: ``factory_config`` is the
device as the testbed file describes it (its factory firmware), and at every boot ``config`` becomes
that configuration adjusted by the firmware manifest of the running image
(:mod:`testbeds.emulator.firmware`): its behaviours (defects), ZigBee stack version and P2P protocol.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from testbeds.emulator import reporting, zdo
from testbeds.emulator import zcl_types as zcl
from testbeds.emulator.bootloader import boot, firmware_self_test, firmware_started
from testbeds.emulator.defects import DEFECTS
from testbeds.emulator.firmware import ManifestError, effective_defects, manifest_of_image
from testbeds.emulator.flash import Flash
from testbeds.emulator.frames import NWK_BROADCAST_RX_ON, FrameError, ZclFrame
from testbeds.emulator.joining import Joiner, NetworkState, boot_network_state
from testbeds.emulator.medium import Medium
from testbeds.emulator.node import (
    COORDINATOR,
    ROUTER,
    SLEEPY_END_DEVICE,
    AddressBook,
    ApsIndication,
    Node,
    NodeIdentity,
)
from testbeds.emulator.ota_client import OtaClient, OtaClientConfig
from testbeds.emulator.p2p import P2pEndpoint
from testbeds.emulator.reporting import BIND_REQ, MGMT_BIND_REQ, UNBIND_REQ, Binding, Reporter
from testbeds.emulator.security import NwkSecurity

HA_PROFILE = 0x0104
APP_ENDPOINT = 1
BASIC_CLUSTER = 0x0000
IDENTIFY_CLUSTER = 0x0003
OTA_CLUSTER = 0x0019
METERING_CLUSTER = 0x0702
# ZCL 2.5.12: an unsupported cluster is answered with this status in a Default Response.
UNSUPPORTED_CLUSTER = 0xC3
# Seconds from power-up to the Device_annce (stack start and NWK rejoin on a real device).
BOOT_TIME_S = 2.0
# From the decision to reboot to the reset: long enough for the radio to send what it has queued
# (e.g. the APS ack of the Upgrade End Response that triggered the reboot).
REBOOT_DELAY_S = 0.2
OTA_SERVER_NWK = 0x0000
OTA_SERVER_ENDPOINT = 1

# Basic cluster PowerSource values (ZCL 3.2.2.2.8)
POWER_SOURCE_MAINS = 0x01
POWER_SOURCE_BATTERY = 0x03

ON_OFF_CLUSTER = 0x0006
# ZigBee Smart Energy device ids (SE 1.x): metering device, in-home display, prepayment terminal,
# load control device. Bridges report 0x0008 (range extender), see simple_descriptor.
_DEVICE_IDS = {"ESME": 0x0501, "GSME": 0x0501, "IHD": 0x0502, "PPMID": 0x0506, "HCALCS": 0x0504}


@dataclass(frozen=True)
class DeviceConfig:
    """What the emulated device is: identity, radio role, firmware identity, power source."""

    name: str
    type: str
    ieee: bytes
    nwk: int
    pan_id: int
    role: str
    manufacturer_code: int
    manufacturer_name: str
    model: str
    image_type: int
    hardware_version: int
    firmware_version: int
    stack_version: int
    power_source: str
    parent: str | None = None
    poll_interval: float = 7.5
    fast_poll_interval: float = 0.25
    ota_max_data_size: int = 64
    ota_query_interval: float = 3600.0
    defects: frozenset[str] = frozenset()
    network_key: bytes | None = None
    network_key_sequence: int = 0
    p2p_protocol: int = 1
    # Un-commissioned devices (commissioned=False) hold no network key: they join by association and
    # get the key from the Trust Centre, under the link key their install code (with CRC) gives.
    install_code: bytes | None = None
    commissioned: bool = True
    signing_key: bytes | None = None  # PEM public key images must be signed with (None: no check)


@dataclass
class DeviceLog:
    """Lines the device logs (its control-port log stream), with the testbed time of each."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    listeners: list[Callable[[float, str, str], None]] = field(default_factory=list)


class EmulatedDevice:
    """One emulated device: survives power cuts through its flash; everything else is RAM."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        loop: asyncio.AbstractEventLoop,
        medium: Medium,
        addresses: AddressBook,
        routes: dict[int, str],
        rng: random.Random,
        log: DeviceLog | None = None,
        ieee_map: dict[bytes, int] | None = None,
    ) -> None:
        self.factory_config = config
        self.config = config
        # IEEE -> NWK of the premises' devices: the address map a stack keeps, used to send to bindings.
        self.ieee_map = ieee_map or {}
        self.loop = loop
        self.medium = medium
        self.addresses = addresses
        self.routes = routes
        self.rng = rng
        self.flash = Flash(
            factory_version=config.firmware_version, factory_stack_version=config.stack_version
        )
        self.log_book = log or DeviceLog()
        self.powered = False
        self.boots = 0
        self.node: Node | None = None
        self.ota: OtaClient | None = None
        self.reporter: Reporter | None = None
        self._zcl_tsn = rng.randrange(256)
        self._reboot_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        # Told True/False whenever power is applied or cut (the control port reports it).
        self.power_listeners: list[Callable[[bool], None]] = []
        self._resetting = False
        # The stack's non-volatile network state: a commissioned device leaves the factory on the network.
        self.network_state = NetworkState(
            network_key=config.network_key if config.commissioned else None,
            key_sequence=config.network_key_sequence,
            joined=config.commissioned,
        )
        self.joiner: Joiner | None = None

    # ------------------------------------------------------------------------------ logging
    def log(self, text: str) -> None:
        """Append one line to the device's log stream."""
        now = self.loop.time()
        self.log_book.lines.append((now, text))
        for listener in self.log_book.listeners:
            listener(now, self.config.name, text)

    # -------------------------------------------------------------------------------- power
    def _switch_power(self, on: bool) -> bool:
        """Record a power change (a boot when ``on``) and tell the listeners; False if nothing changed.

        A reset (:meth:`reset`) switches off and on again without the listeners hearing of it: the
        supply never went away.
        """
        if self.powered == on:
            return False
        self.powered = on
        if on:
            self.boots += 1
        if not self._resetting:
            for listener in self.power_listeners:
                listener(on)
        return True

    def power_on(self) -> None:
        """Apply power: boot the running firmware from flash, start the stack, announce."""
        if not self._switch_power(True):
            return
        # The bootloader runs first: it finishes an install or a revert, then starts the primary image.
        self.flash.defects = self.factory_config.defects
        self.flash.trusted_key = self.factory_config.signing_key
        result = boot(self.flash)
        if result.action == "bricked":
            self.log(f"boot #{self.boots}: bootloader found no image to start ({result.detail}); dead")
            return
        self._apply_firmware_manifest()
        running = self.flash.running
        self.log(f"boot #{self.boots}: firmware 0x{running.file_version:08X} stack {running.stack_version}")
        if result.action != "normal" or not self.flash.confirmed or "refused" in result.detail:
            self.log(f"bootloader: {result.action}: {result.detail}")
        firmware_started(self.flash)
        boot_network_state(
            self.network_state,
            stack_version=running.stack_version,
            is_router=self.config.role in (COORDINATOR, ROUTER),
            defects=self.config.defects,
            log=self.log,
        )
        identity = NodeIdentity(
            name=self.config.name,
            nwk=self.config.nwk,
            ieee=self.config.ieee,
            pan_id=self.config.pan_id,
            role=self.config.role,
            parent=self.config.parent,
        )
        self.node = Node(
            loop=self.loop,
            medium=self.medium,
            identity=identity,
            addresses=self.addresses,
            routes=self.routes,
            rng=self.rng,
            on_data=self._on_data,
            log=self.log,
            poll_interval=self._poll_interval,
            security=self._security(),
            frame_counter=self.flash.next_nwk_frame_counter,
            children=self.network_state.children,
            secured_network=self._secured_network(),
            joined=self.network_state.joined,
        )
        self.ota = OtaClient(
            loop=self.loop,
            flash=self.flash,
            config=OtaClientConfig(
                manufacturer_code=self.config.manufacturer_code,
                image_type=self.config.image_type,
                hardware_version=self.config.hardware_version,
                max_data_size=self.config.ota_max_data_size,
                query_interval=self.config.ota_query_interval,
                defects=self.config.defects,
                # Healthy GB firmware refuses an older image unless told otherwise (DESIGN: downgrade
                # only when asked for explicitly).
                allow_downgrade="accepts-downgrade" in self.config.defects,
                trusted_key=self.config.signing_key,
            ),
            send=self._send_ota_command,
            reboot=self._reboot,
            log=self.log,
            rng=self.rng,
        )
        self.reporter = Reporter(
            loop=self.loop,
            tables=self.flash.application,
            ieee=self.config.ieee,
            endpoint=APP_ENDPOINT,
            read=self.server_attribute,
            send=self._send_report,
            log=self.log,
        )
        self.node.start()
        self.medium.set_p2p_port(
            self.config.name,
            P2pEndpoint(
                name=self.config.name,
                protocol=self.config.p2p_protocol,
                own_version_only="p2p-protocol-skew" in self.config.defects,
                log=self.log,
            ),
        )
        self.joiner = Joiner(
            loop=self.loop,
            node=self.node,
            state=self.network_state,
            secured_network=self._secured_network(),
            capability=self._mac_capability(),
            install_code=self.config.install_code,
            defects=self.config.defects,
            rebooted=self.boots > 1,
            upgraded=running.file_version != self.config.firmware_version,
            log=self.log,
            rng=self.rng,
            boot_time=BOOT_TIME_S,
            on_ready=self._booted,
            announce=self._announce,
        )
        self.joiner.start()

    def _apply_firmware_manifest(self) -> None:
        """Set this boot's ``config`` (defects, P2P protocol) and stack version from the running image.

        A malformed manifest is logged and ignored: the device then runs as its factory firmware does.
        """
        factory = self.factory_config
        running = self.flash.running
        try:
            manifest = manifest_of_image(running.image)
        except ManifestError as exc:
            self.log(f"firmware manifest ignored: {exc}")
            manifest = None
        protocol = factory.p2p_protocol
        if manifest is not None:
            unknown = sorted(manifest.behaviours - DEFECTS.keys())
            if unknown:
                self.log(f"firmware manifest: unknown behaviours ignored: {', '.join(unknown)}")
                manifest = dataclasses.replace(manifest, behaviours=manifest.behaviours - set(unknown))
            if not manifest.digest_ok:
                self.log("firmware manifest: the running image does not match its own digest")
            self.flash.running = dataclasses.replace(running, stack_version=manifest.stack_version)
            protocol = manifest.p2p_protocol if manifest.p2p_protocol is not None else protocol
        defects = effective_defects(factory.defects, manifest)
        self.config = dataclasses.replace(factory, defects=defects, p2p_protocol=protocol)
        self.flash.defects = defects
        if manifest is not None:
            self.log(
                f"firmware manifest: stack {manifest.stack_version}, p2p protocol {protocol},"
                f" defects {', '.join(sorted(defects)) or 'none'}"
            )

    def power_off(self) -> None:
        """Cut power: the radio goes silent and RAM is lost; flash keeps what was written."""
        if not self._switch_power(False):
            return
        if self.joiner is not None:
            self.joiner.stop()
            self.joiner = None
        if self._reboot_timer is not None:
            self._reboot_timer.cancel()
            self._reboot_timer = None
        if self.ota is not None:
            self.ota.stop()
        if self.reporter is not None:
            self.reporter.stop()
        if self.node is not None:
            self.node.stop()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.node = None
        self.ota = None
        self.reporter = None
        self.log("reset" if self._resetting else "power lost")

    def _security(self) -> NwkSecurity | None:
        key = self.network_state.network_key
        return NwkSecurity(key, self.network_state.key_sequence) if key is not None else None

    def _secured_network(self) -> bool:
        config = self.config
        return config.network_key is not None or not config.commissioned or config.install_code is not None

    def leave(self, *, rejoin: bool = False) -> None:
        """Leave the network (as a device's "leave" button does); without ``rejoin`` forget the key."""
        if self.joiner is not None:
            self.joiner.leave(rejoin=rejoin)

    def _booted(self) -> None:
        if "drops-off-after-upgrade" in self.config.defects and (
            self.flash.running.file_version != self.config.firmware_version
        ):
            self.log("defect drops-off-after-upgrade: the new stack does not rejoin; radio silent")
            if self.node is not None:
                self.node.stop()
            return
        self._announce()
        if "stops-polling-after-upgrade" in self.config.defects and (
            self.flash.running.file_version != self.config.firmware_version
        ):
            self.log("defect stops-polling-after-upgrade: no more Data Requests to the parent")
            if self.node is not None:
                self.node.stop_polling()
        # Self-test once up and announced; only an image that passes it is confirmed. One that fails
        # resets, and the bootloader reverts it once its boot tries are used up.
        was_confirmed = self.flash.confirmed
        if not firmware_self_test(self.flash):
            self.log("self-test FAILED: resetting")
            self._reboot_timer = self.loop.call_later(REBOOT_DELAY_S, self._restart)
            return
        if not was_confirmed:
            self.log("self-test passed: image confirmed")
            if "loses-bindings-on-upgrade" in self.config.defects:
                self.log("defect loses-bindings-on-upgrade: binding table and reporting configuration erased")
                self.flash.application.clear()
        if self.ota is not None:
            self.ota.start()
        if self.reporter is not None:
            self.reporter.start()

    def _reboot(self) -> None:
        # The OTA client activated a new image: restart into it, as a real device resets.
        self.log("rebooting into the new image")
        if "resets-frame-counter-on-upgrade" in self.config.defects:
            self.log("defect resets-frame-counter-on-upgrade: NWK frame counter back to 0")
            self.flash.nwk_frame_counter = 0
        self._reboot_timer = self.loop.call_later(REBOOT_DELAY_S, self._restart)

    def _restart(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Reset the device (a watchdog or software reset): RAM is lost, power stays on."""
        self._resetting = True
        try:
            self.power_off()
            self.power_on()
        finally:
            self._resetting = False

    def _poll_interval(self) -> float:
        if self.ota is not None and self.ota.busy:
            return self.config.fast_poll_interval
        return self.config.poll_interval

    # ------------------------------------------------------------------------------- sending
    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_tsn(self) -> int:
        self._zcl_tsn = (self._zcl_tsn + 1) & 0xFF
        return self._zcl_tsn

    def _send(
        self,
        *,
        dst: int,
        dst_endpoint: int,
        profile: int,
        cluster: int,
        payload: bytes,
        src_endpoint: int = APP_ENDPOINT,
        ack: bool = True,
    ) -> None:
        if self.node is None:
            return
        self._spawn(
            self.node.aps_send(
                dst=dst,
                dst_endpoint=dst_endpoint,
                src_endpoint=src_endpoint,
                profile=profile,
                cluster=cluster,
                payload=payload,
                ack=ack,
            )
        )

    def _announce(self) -> None:
        capability = self._mac_capability()
        payload = zdo.encode_device_annce(self._next_tsn(), self.config.nwk, self.config.ieee, capability)
        if self.node is not None:
            self._spawn(
                self.node.aps_send(
                    dst=NWK_BROADCAST_RX_ON,
                    dst_endpoint=0,
                    src_endpoint=0,
                    profile=zdo.ZDO_PROFILE,
                    cluster=zdo.DEVICE_ANNCE,
                    payload=payload,
                    ack=False,
                )
            )
        self.log("device announce sent")

    def _send_ota_command(self, command_id: int, payload: bytes) -> None:
        frame = ZclFrame(
            cluster_specific=True,
            command_id=command_id,
            tsn=self._next_tsn(),
            to_client=False,
            disable_default_response=True,
            payload=payload,
        )
        self._send(
            dst=OTA_SERVER_NWK,
            dst_endpoint=OTA_SERVER_ENDPOINT,
            profile=HA_PROFILE,
            cluster=OTA_CLUSTER,
            payload=frame.encode(),
        )

    def _mac_capability(self) -> int:
        capability = 0x80  # allocate address
        if self.config.role in (COORDINATOR, ROUTER):
            capability |= 0x02  # full-function device
        if self.config.power_source == "mains":
            capability |= 0x04
        if self.config.role != SLEEPY_END_DEVICE:
            capability |= 0x08  # receiver on when idle
        return capability

    # ------------------------------------------------------------------------------ receiving
    def _on_data(self, ind: ApsIndication) -> None:
        if ind.profile == zdo.ZDO_PROFILE or ind.dst_endpoint == 0:
            self._on_zdo(ind)
            return
        if ind.dst_endpoint not in (APP_ENDPOINT, 0xFF):
            return
        try:
            frame = ZclFrame.decode(ind.payload)
        except FrameError as exc:
            self.log(f"dropped malformed ZCL frame from 0x{ind.src_nwk:04X}: {exc}")
            return
        if ind.cluster == BASIC_CLUSTER:
            self._on_basic(ind, frame)
        elif ind.cluster == OTA_CLUSTER:
            self._on_ota(ind, frame)
        elif ind.cluster == METERING_CLUSTER and self._is_meter and not frame.cluster_specific:
            self._answer_global(ind, frame, self.metering_attribute)
        elif ind.cluster == ON_OFF_CLUSTER and self._switches_load and not frame.cluster_specific:
            self._answer_global(ind, frame, self.on_off_attribute)
        elif ind.cluster == IDENTIFY_CLUSTER and not frame.cluster_specific:
            self._answer_global(ind, frame, lambda attr: (zcl.UINT16, 0) if attr == 0 else None)
        elif not ind.broadcast:
            self._default_response(ind, frame, UNSUPPORTED_CLUSTER)

    def _reply(
        self,
        ind: ApsIndication,
        request: ZclFrame,
        command_id: int,
        payload: bytes,
        *,
        cluster_specific: bool = False,
    ) -> None:
        frame = ZclFrame(
            cluster_specific=cluster_specific,
            command_id=command_id,
            tsn=request.tsn,
            to_client=not request.to_client,
            disable_default_response=True,
            manufacturer_code=request.manufacturer_code,
            payload=payload,
        )
        self._send(
            dst=ind.src_nwk,
            dst_endpoint=ind.src_endpoint,
            profile=ind.profile,
            cluster=ind.cluster,
            payload=frame.encode(),
        )

    def _default_response(self, ind: ApsIndication, request: ZclFrame, status: int) -> None:
        if request.disable_default_response and status == zcl.SUCCESS:
            return
        self._reply(
            ind, request, zcl.DEFAULT_RESPONSE, zcl.encode_default_response(request.command_id, status)
        )

    def _answer_global(
        self, ind: ApsIndication, frame: ZclFrame, read: Callable[[int], tuple[int, object] | None]
    ) -> None:
        if frame.command_id == zcl.READ_ATTRIBUTES:
            try:
                attr_ids = zcl.decode_read_attributes(frame.payload)
            except FrameError:
                self._default_response(ind, frame, zcl.MALFORMED_COMMAND)
                return
            records: list[tuple[int, int, int | None, object]] = []
            for attr_id in attr_ids:
                found = read(attr_id)
                if found is None:
                    records.append((attr_id, zcl.UNSUPPORTED_ATTRIBUTE, None, None))
                else:
                    records.append((attr_id, zcl.SUCCESS, found[0], found[1]))
            self._reply(
                ind, frame, zcl.READ_ATTRIBUTES_RESPONSE, zcl.encode_read_attributes_response(records)
            )
        elif frame.command_id == zcl.CONFIGURE_REPORTING and self.reporter is not None:
            try:
                configs = zcl.decode_configure_reporting(frame.payload)
            except FrameError:
                self._default_response(ind, frame, zcl.MALFORMED_COMMAND)
                return
            answer = self.reporter.configure(ind.cluster, configs)
            self._reply(ind, frame, zcl.CONFIGURE_REPORTING_RESPONSE, answer)
        elif frame.command_id == zcl.READ_REPORTING_CONFIGURATION and self.reporter is not None:
            try:
                answer = self.reporter.read_configuration(ind.cluster, frame.payload)
            except FrameError:
                self._default_response(ind, frame, zcl.MALFORMED_COMMAND)
                return
            self._reply(ind, frame, zcl.READ_REPORTING_CONFIGURATION_RESPONSE, answer)
        elif frame.command_id == zcl.DEFAULT_RESPONSE:
            return
        elif not ind.broadcast:
            self._default_response(ind, frame, zcl.UNSUP_GENERAL_COMMAND)

    def _on_basic(self, ind: ApsIndication, frame: ZclFrame) -> None:
        if frame.cluster_specific:
            self._default_response(ind, frame, zcl.UNSUP_CLUSTER_COMMAND)
            return
        self._answer_global(ind, frame, self.basic_attribute)

    def basic_attribute(self, attr_id: int) -> tuple[int, object] | None:
        """Value of a Basic cluster attribute, as (ZCL type id, value), or None if unsupported."""
        running = self.flash.running
        version = running.file_version
        values: dict[int, tuple[int, object]] = {
            0x0000: (zcl.UINT8, 8),  # ZCLVersion
            0x0001: (zcl.UINT8, (version >> 24) & 0xFF),  # ApplicationVersion
            0x0002: (zcl.UINT8, running.stack_version & 0xFF),  # StackVersion
            0x0003: (zcl.UINT8, self.config.hardware_version & 0xFF),  # HWVersion
            0x0004: (zcl.CHAR_STRING, self.config.manufacturer_name),
            0x0005: (zcl.CHAR_STRING, self.config.model),
            0x0007: (
                zcl.ENUM8,
                POWER_SOURCE_MAINS if self.config.power_source == "mains" else POWER_SOURCE_BATTERY,
            ),
            0x4000: (zcl.CHAR_STRING, f"0x{version:08X}"),  # SWBuildID
        }
        return values.get(attr_id)

    @property
    def _is_meter(self) -> bool:
        return self.config.type in ("ESME", "GSME")

    @property
    def _switches_load(self) -> bool:
        return self.config.type == "HCALCS"

    def on_off_attribute(self, attr_id: int) -> tuple[int, object] | None:
        """Value of an On/Off cluster attribute (the HCALCS's load switch): the load is switched on."""
        if attr_id == 0x0000:  # OnOff
            return zcl.BOOL, True
        return None

    def metering_attribute(self, attr_id: int) -> tuple[int, object] | None:
        """Value of a Metering cluster attribute (meters only): the register advances with time."""
        if attr_id == 0x0000:  # CurrentSummationDelivered, in Wh: about 0.3 kW of steady load
            return zcl.UINT48, int(self.loop.time() * 0.3 / 3.6 * 1000) // 1000 + 1_000_000
        if attr_id == 0x0300:  # UnitOfMeasure: kWh (gas meters report m3 on a real GSME)
            return zcl.ENUM8, 0x00 if self.config.type == "ESME" else 0x01
        return None

    def server_attribute(self, cluster: int, attr_id: int) -> tuple[int, object] | None:
        """Value of an attribute of a cluster this device serves, or None (what reporting reads)."""
        if cluster == BASIC_CLUSTER:
            return self.basic_attribute(attr_id)
        if cluster == METERING_CLUSTER and self._is_meter:
            return self.metering_attribute(attr_id)
        if cluster == ON_OFF_CLUSTER and self._switches_load:
            return self.on_off_attribute(attr_id)
        return None

    def _send_report(self, binding: Binding, payload: bytes) -> None:
        dst = self.ieee_map.get(binding.dst_ieee)
        if dst is None:
            self.log(f"report for {binding.dst_ieee[::-1].hex(':')} not sent: address unknown")
            return
        frame = ZclFrame(
            cluster_specific=False,
            command_id=zcl.REPORT_ATTRIBUTES,
            tsn=self._next_tsn(),
            to_client=True,
            disable_default_response=True,
            manufacturer_code=None,
            payload=payload,
        )
        self._send(
            dst=dst,
            dst_endpoint=binding.dst_endpoint,
            profile=HA_PROFILE,
            cluster=binding.cluster,
            payload=frame.encode(),
        )

    def _on_ota(self, ind: ApsIndication, frame: ZclFrame) -> None:
        ota = self.ota
        if ota is None:
            return
        if frame.cluster_specific:
            if frame.to_client:
                ota.handle_command(frame.command_id, frame.payload)
            else:
                self._default_response(ind, frame, zcl.UNSUP_CLUSTER_COMMAND)
            return
        if frame.command_id == zcl.DEFAULT_RESPONSE:
            try:
                command_id, status = zcl.decode_default_response(frame.payload)
            except FrameError:
                return
            ota.handle_default_response(command_id, status)
            return
        if frame.command_id == zcl.WRITE_ATTRIBUTES:
            try:
                records = zcl.decode_write_attributes(frame.payload)
            except FrameError:
                self._default_response(ind, frame, zcl.MALFORMED_COMMAND)
                return
            statuses = [
                (ota.write_attribute(attr_id, int(value)), attr_id)  # type: ignore[call-overload]
                for attr_id, _type, value in records
            ]
            self._reply(
                ind, frame, zcl.WRITE_ATTRIBUTES_RESPONSE, zcl.encode_write_attributes_response(statuses)
            )
            return
        self._answer_global(ind, frame, ota.read_attribute)

    def _on_zdo(self, ind: ApsIndication) -> None:
        cluster, payload = ind.cluster, ind.payload
        if self.joiner is not None and self.joiner.handle_zdo(cluster, payload, ind.src_nwk, ind.broadcast):
            return
        try:
            if cluster in (zdo.NODE_DESC_REQ, zdo.ACTIVE_EP_REQ):
                tsn, _nwk = zdo.decode_nwk_addr_of_interest(payload)
                if cluster == zdo.NODE_DESC_REQ:
                    body = zdo.encode_node_desc_rsp(tsn, zdo.SUCCESS, self.config.nwk, self.node_descriptor())
                else:
                    body = zdo.encode_active_ep_rsp(tsn, zdo.SUCCESS, self.config.nwk, [APP_ENDPOINT])
            elif cluster == zdo.SIMPLE_DESC_REQ:
                tsn, _nwk, endpoint = zdo.decode_simple_desc_req(payload)
                if endpoint == APP_ENDPOINT:
                    body = zdo.encode_simple_desc_rsp(
                        tsn, zdo.SUCCESS, self.config.nwk, self.simple_descriptor()
                    )
                else:
                    body = zdo.encode_simple_desc_rsp(tsn, zdo.NOT_ACTIVE, self.config.nwk, None)
            elif cluster in (BIND_REQ, UNBIND_REQ, MGMT_BIND_REQ) and not ind.broadcast:
                answer = self._on_binding_request(cluster, payload)
                if answer is None:
                    return
                body = answer
            elif cluster == zdo.IEEE_ADDR_REQ:
                tsn = payload[0]
                body = zdo.encode_ieee_addr_rsp(tsn, zdo.SUCCESS, self.config.ieee, self.config.nwk)
            elif cluster == zdo.NWK_ADDR_REQ:
                tsn = payload[0]
                if payload[1:9] != self.config.ieee:
                    return
                body = zdo.encode_nwk_addr_rsp(tsn, zdo.SUCCESS, self.config.ieee, self.config.nwk)
            elif cluster & 0x8000 or ind.broadcast:
                return
            else:
                body = bytes([payload[0], zdo.NOT_SUPPORTED]) if payload else b""
        except (FrameError, IndexError) as exc:
            self.log(f"dropped malformed ZDO request 0x{cluster:04X}: {exc}")
            return
        if ind.broadcast and cluster not in (zdo.NWK_ADDR_REQ,):
            return
        self._send(
            dst=ind.src_nwk,
            dst_endpoint=0,
            src_endpoint=0,
            profile=zdo.ZDO_PROFILE,
            cluster=cluster | 0x8000,
            payload=body,
            ack=False,
        )

    def _on_binding_request(self, cluster: int, payload: bytes) -> bytes | None:
        reporter = self.reporter
        if reporter is None:
            return None
        if cluster == MGMT_BIND_REQ:
            if len(payload) != 2:
                raise FrameError("Mgmt_Bind_req is a TSN and a start index", "ZDO", "length")
            return reporting.encode_mgmt_bind_rsp(
                payload[0], reporting.SUCCESS, list(self.flash.application.bindings), payload[1]
            )
        tsn, binding = reporting.decode_bind_req(payload)
        status = reporter.bind(binding) if cluster == BIND_REQ else reporter.unbind(binding)
        return bytes([tsn, status])

    def node_descriptor(self) -> zdo.NodeDescriptor:
        """The ZDO node descriptor this device reports."""
        logical = {COORDINATOR: 0, ROUTER: 1}.get(self.config.role, 2)
        return zdo.NodeDescriptor(
            logical_type=logical,
            mac_capability_flags=self._mac_capability(),
            manufacturer_code=self.config.manufacturer_code,
            max_buffer_size=82,
            max_incoming_transfer_size=82,
            server_mask=0,
            max_outgoing_transfer_size=82,
            descriptor_capability=0,
        )

    def simple_descriptor(self) -> zdo.SimpleDescriptor:
        """The application endpoint: Basic, Identify (Metering on meters, On/Off on a load switch)
        served, OTA as a client."""
        device_id = _DEVICE_IDS.get(self.config.type, 0x0008)  # 0x0008: range extender (bridges)
        served = [BASIC_CLUSTER, IDENTIFY_CLUSTER] + ([METERING_CLUSTER] if self._is_meter else [])
        served += [ON_OFF_CLUSTER] if self._switches_load else []
        return zdo.SimpleDescriptor(
            endpoint=APP_ENDPOINT,
            profile=HA_PROFILE,
            device_type=device_id,
            device_version=1,
            input_clusters=served,
            output_clusters=[OTA_CLUSTER],
        )
