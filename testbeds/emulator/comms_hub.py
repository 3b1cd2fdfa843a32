"""An emulated Communications Hub (CH): the device under test when the CH's own OTA service is tested.

The CH is the HAN's ZigBee coordinator. Here it is an application on the premises' coordinator radio
(:meth:`~testbeds.emulator.premises.Premises.attach_coordinator`, the same stack the harness's own
hub drives through zigpy) that carries:

- the OTA Upgrade server (:mod:`testbeds.emulator.ota_server`, written from ZCL chapter 11);
- GBCS's two-stage firmware update, driven over the CH's control port: Update Firmware (SR 11.1,
  use case CS05) stages an image and notifies the device; the device downloads and verifies it and
  is told to wait (upgrade time 0xFFFFFFFF); Activate Firmware (SR 11.3, CS06) names the image's
  hash and an optional execution time and tells the device when to install it;
- the alerts a CH raises to its head end, sent as control-port events: the CCS08 Firmware Transfer
  Alert after each transfer (0x8F72 verification successful, 0x8F1C verification failed, 0x8F1B
  transfer failed, with the outcome code) and 0x8F43 when a device comes back running another
  firmware version than the CH knew (after its Device_annce the CH reads the device's OTA
  CurrentFileVersion; every Query Next Image also carries it);
- the Gas Proxy Function (GPF): the gas meter sleeps, so the CH keeps the last firmware version the
  GSME reported or was read at its last wake and answers Read Firmware Version (SR 11.2) for it from
  that cache, as the real GPF does. Other devices are read over the air.

Control-port commands (``docs/control-port.md``, "CH commands"): ``update_firmware``,
``activate_firmware``, ``read_firmware_version``, ``devices`` and ``ota``. Nothing here imports the
harness: the harness sees this CH only through its control port and on air.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbeds.emulator import zcl_types as zcl
from testbeds.emulator import zdo
from testbeds.emulator.control_port import Command, CommandError, ControlPortServer, version_text
from testbeds.emulator.device import (
    APP_ENDPOINT,
    HA_PROFILE,
    OTA_CLUSTER,
    DeviceConfig,
    DeviceLog,
    EmulatedDevice,
)
from testbeds.emulator.frames import FrameError, ZclFrame
from testbeds.emulator.medium import Medium
from testbeds.emulator.node import AddressBook, ApsIndication
from testbeds.emulator.ota_client import ATTR_CURRENT_FILE_VERSION
from testbeds.emulator.ota_server import OtaClientInfo, OtaServer, OtaServerError
from testbeds.emulator.premises import CoordinatorRadio

# ------------------------------------------------------------------------------ GBCS as data


@dataclass(frozen=True)
class AlertCode:
    """One GBCS alert the CH raises: its code and what it means."""

    code: int
    name: str

    @property
    def text(self) -> str:
        """The code as written in GBCS, e.g. ``0x8F72``."""
        return f"0x{self.code:04X}"


FIRMWARE_VERIFICATION_SUCCESSFUL = AlertCode(0x8F72, "firmware verification successful")
FIRMWARE_VERIFICATION_FAILED = AlertCode(0x8F1C, "firmware verification failed")
FIRMWARE_TRANSFER_FAILED = AlertCode(0x8F1B, "firmware transfer failed")
FIRMWARE_VERSION_CHANGED = AlertCode(0x8F43, "firmware version changed")
ALERTS = {
    a.code: a
    for a in (
        FIRMWARE_VERIFICATION_SUCCESSFUL,
        FIRMWARE_VERIFICATION_FAILED,
        FIRMWARE_TRANSFER_FAILED,
        FIRMWARE_VERSION_CHANGED,
    )
}

# CCS08 Firmware Transfer Alert: the outcome of one transfer.
OUTCOME_SUCCESS = 0
OUTCOME_DISCARDED = 1
OUTCOME_HARDWARE_MISMATCH = 2
OUTCOME_TRANSFER_FAILURE = 3
OUTCOMES = {
    OUTCOME_SUCCESS: "success",
    OUTCOME_DISCARDED: "image discarded",
    OUTCOME_HARDWARE_MISMATCH: "hardware version mismatch",
    OUTCOME_TRANSFER_FAILURE: "transfer failure",
}

# Activate Firmware (SR 11.3, CS06) response codes.
ACTIVATE_SUCCESS = 0
ACTIVATE_NO_IMAGE_HELD = 1
ACTIVATE_HASH_MISMATCH = 2
ACTIVATE_FAILURE = 3
ACTIVATE_RESPONSES = {
    ACTIVATE_SUCCESS: "success",
    ACTIVATE_NO_IMAGE_HELD: "no image held",
    ACTIVATE_HASH_MISMATCH: "hash mismatch",
    ACTIVATE_FAILURE: "activation failure",
}

# What each event of the OTA server becomes: (alert, CCS08 outcome).
_TRANSFER_ALERTS = {
    "verified": (FIRMWARE_VERIFICATION_SUCCESSFUL, OUTCOME_SUCCESS),
    "invalid-image": (FIRMWARE_VERIFICATION_FAILED, OUTCOME_DISCARDED),
    "hardware-mismatch": (FIRMWARE_VERIFICATION_FAILED, OUTCOME_HARDWARE_MISMATCH),
    "aborted": (FIRMWARE_TRANSFER_FAILED, OUTCOME_TRANSFER_FAILURE),
    "stalled": (FIRMWARE_TRANSFER_FAILED, OUTCOME_TRANSFER_FAILURE),
}

# Device types whose firmware version the GPF answers from its cache (sleepy gas meters).
GPF_DEVICE_TYPES = frozenset({"GSME"})
# Seconds to wait for a device's answer to a read of its firmware version.
READ_TIMEOUT_S = 30.0
# Reads after a Device_annce are tried this many times (a sleepy device may miss the first).
ANNOUNCE_READ_TRIES = 3
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")

AttachCoordinator = Callable[
    [Callable[[ApsIndication], None], Callable[[str], None], Callable[[], int]], CoordinatorRadio
]
"""Switches on the premises' coordinator radio: (on_data, log, frame counter) -> radio."""

HubEvent = Callable[[str, dict[str, Any]], None]
"""Receives every event the CH raises: (kind, fields), e.g. ("alert", {"code": "0x8F72", ...})."""


@dataclass
class KnownDevice:
    """What the CH knows of one device of its device log."""

    config: DeviceConfig
    version: int | None = None
    version_source: str | None = None
    version_at: float | None = None
    announced_at: float | None = None


@dataclass
class _PendingRead:
    device: str
    request: int | None
    tries_left: int
    timer: asyncio.TimerHandle | None = None


class CommsHub(EmulatedDevice):
    """The emulated CH: coordinator radio, OTA server, GPF and GBCS firmware commands."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        attach: AttachCoordinator,
        clients: list[DeviceConfig],
        loop: asyncio.AbstractEventLoop,
        medium: Medium,
        addresses: AddressBook,
        routes: dict[int, str],
        rng: Any,
        log: DeviceLog | None = None,
        ieee_map: dict[bytes, int] | None = None,
    ) -> None:
        super().__init__(
            config,
            loop=loop,
            medium=medium,
            addresses=addresses,
            routes=routes,
            rng=rng,
            log=log,
            ieee_map=ieee_map,
        )
        self._attach = attach
        self.radio: CoordinatorRadio | None = None
        self.known = {c.name: KnownDevice(c) for c in clients}
        self._by_ieee = {c.ieee: c.name for c in clients}
        self._by_nwk = {c.nwk: c.name for c in clients}
        self.event_listeners: list[HubEvent] = []
        self.ota_server = OtaServer(
            loop=loop,
            clients=[OtaClientInfo(c.name, c.nwk, c.manufacturer_code, c.image_type) for c in clients],
            send=self._send_ota_frame,
            log=self.log,
            on_event=self._on_ota_event,
        )
        self._reads: dict[int, _PendingRead] = {}
        self._next_request = 0
        # Testbed time 0 on the loop's clock (the control port's clock origin), for times shown.
        self.clock_origin = 0.0

    # -------------------------------------------------------------------------------- power
    def power_on(self) -> None:
        """Apply power: switch the coordinator radio on and start serving the HAN."""
        if not self._switch_power(True):
            return
        self.radio = self._attach(self._on_data, self.log, self.flash.next_nwk_frame_counter)
        self.node = self.radio.node
        running = self.flash.running
        self.log(f"boot #{self.boots}: CH firmware 0x{running.file_version:08X}; coordinator radio on")

    def power_off(self) -> None:
        """Cut power: the radio goes silent; staged images and the GPF cache are kept (flash)."""
        if not self._switch_power(False):
            return
        self.ota_server.stop()
        for read in self._reads.values():
            if read.timer is not None:
                read.timer.cancel()
        self._reads.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self.radio is not None:
            self.radio.stop()
        self.radio = None
        self.node = None
        self.log("reset" if self._resetting else "power lost")

    # ------------------------------------------------------------------------------- events
    def _raise(self, kind: str, **fields: Any) -> None:
        for listener in list(self.event_listeners):
            listener(kind, fields)

    def _alert(self, alert: AlertCode, device: str, **fields: Any) -> None:
        self.log(
            f"ALERT {alert.text} ({alert.name}) for {device}"
            + "".join(f" {key}={value}" for key, value in fields.items())
        )
        self._raise("alert", code=alert.text, name=alert.name, device=device, **fields)

    def _on_ota_event(self, kind: str, device: str, detail: dict[str, Any]) -> None:
        if kind == "version":
            self._learn_version(device, int(detail["version"]), str(detail["how"]))
            return
        mapped = _TRANSFER_ALERTS.get(kind)
        if mapped is None:
            return
        alert, outcome = mapped
        transfer = self.ota_server.transfers.get(device)
        version = transfer.image.header.file_version if transfer is not None else None
        self._alert(
            alert,
            device,
            outcome=outcome,
            outcome_text=OUTCOMES[outcome],
            file_version=version,
            reason=kind,
        )

    def _learn_version(self, device: str, version: int, how: str) -> None:
        known = self.known.get(device)
        if known is None:
            return
        before = known.version
        known.version = version
        known.version_source = how
        known.version_at = self.loop.time()
        self.ota_server.version_seen(device, version)
        if before is not None and before != version:
            self._alert(
                FIRMWARE_VERSION_CHANGED,
                device,
                from_version=before,
                to_version=version,
                from_text=version_text(before),
                to_text=version_text(version),
            )

    # ------------------------------------------------------------------------------ receiving
    def _on_data(self, ind: ApsIndication) -> None:
        if ind.profile == zdo.ZDO_PROFILE and ind.cluster == zdo.DEVICE_ANNCE:
            self._on_announce(ind)
            return
        if ind.cluster == OTA_CLUSTER and ind.dst_endpoint in (APP_ENDPOINT, 0xFF):
            try:
                frame = ZclFrame.decode(ind.payload)
            except FrameError as exc:
                self.log(f"dropped malformed ZCL frame from 0x{ind.src_nwk:04X}: {exc}")
                return
            if frame.cluster_specific:
                self.ota_server.handle(ind.src_nwk, ind.src_endpoint, frame)
            elif frame.command_id == zcl.READ_ATTRIBUTES_RESPONSE:
                self._on_read_response(ind, frame)
            elif frame.command_id != zcl.DEFAULT_RESPONSE and not ind.broadcast:
                self._default_response(ind, frame, zcl.UNSUP_GENERAL_COMMAND)
            return
        super()._on_data(ind)

    def _on_announce(self, ind: ApsIndication) -> None:
        try:
            _tsn, nwk, ieee, _capability = zdo.decode_device_annce(ind.payload)
        except FrameError as exc:
            self.log(f"dropped malformed Device_annce from 0x{ind.src_nwk:04X}: {exc}")
            return
        name = self._by_ieee.get(ieee)
        if name is None:
            self.log(f"Device_annce from unknown device {ieee[::-1].hex(':')} (0x{nwk:04X}); ignored")
            return
        self.known[name].announced_at = self.loop.time()
        self.log(f"Device_annce from {name} (0x{nwk:04X}): reading its firmware version")
        self._raise("announce", device=name, nwk=f"0x{nwk:04X}")
        self._start_read(name, None, ANNOUNCE_READ_TRIES)

    def _start_read(self, device: str, request: int | None, tries: int) -> None:
        pending = _PendingRead(device, request, tries)
        self._send_read(pending)

    def _send_read(self, pending: _PendingRead) -> None:
        config = self.known[pending.device].config
        tsn = self._next_tsn()
        pending.tries_left -= 1
        self._reads[tsn] = pending
        pending.timer = self.loop.call_later(READ_TIMEOUT_S, self._read_timed_out, tsn)
        frame = ZclFrame(
            cluster_specific=False,
            command_id=zcl.READ_ATTRIBUTES,
            tsn=tsn,
            to_client=True,  # the CurrentFileVersion is an attribute of the device's OTA client
            disable_default_response=True,
            payload=zcl.encode_read_attributes([ATTR_CURRENT_FILE_VERSION]),
        )
        self._send(
            dst=config.nwk,
            dst_endpoint=APP_ENDPOINT,
            profile=HA_PROFILE,
            cluster=OTA_CLUSTER,
            payload=frame.encode(),
        )

    def _read_timed_out(self, tsn: int) -> None:
        pending = self._reads.pop(tsn, None)
        if pending is None:
            return
        if pending.tries_left > 0:
            self._send_read(pending)
            return
        self.log(f"no answer from {pending.device} to the read of its firmware version")
        if pending.request is not None:
            self._raise(
                "firmware-version",
                device=pending.device,
                request=pending.request,
                error=f"{pending.device} did not answer within {READ_TIMEOUT_S:g}s",
            )

    def _on_read_response(self, ind: ApsIndication, frame: ZclFrame) -> None:
        pending = self._reads.get(frame.tsn)
        if pending is None or self.known[pending.device].config.nwk != ind.src_nwk:
            return
        try:
            records = zcl.decode_read_attributes_response(frame.payload)
        except FrameError as exc:
            self.log(f"dropped malformed Read Attributes Response from {pending.device}: {exc}")
            return
        del self._reads[frame.tsn]
        if pending.timer is not None:
            pending.timer.cancel()
        found = [
            value
            for attr, status, _type, value in records
            if attr == ATTR_CURRENT_FILE_VERSION and status == zcl.SUCCESS
        ]
        if not found or not isinstance(found[0], int):
            self.log(f"{pending.device} did not report its CurrentFileVersion")
            if pending.request is not None:
                self._raise(
                    "firmware-version",
                    device=pending.device,
                    request=pending.request,
                    error="the device did not report its CurrentFileVersion",
                )
            return
        version = found[0]
        self._learn_version(pending.device, version, "read")
        if pending.request is not None:
            self._raise(
                "firmware-version",
                device=pending.device,
                request=pending.request,
                version=version,
                version_text=version_text(version),
                source="device",
            )

    # -------------------------------------------------------------------------------- sending
    def _send_ota_frame(self, nwk: int, endpoint: int, frame: ZclFrame) -> None:
        self._send(
            dst=nwk,
            dst_endpoint=endpoint,
            profile=HA_PROFILE,
            cluster=OTA_CLUSTER,
            payload=frame.encode(),
        )

    def simple_descriptor(self) -> zdo.SimpleDescriptor:
        """The CH's application endpoint: Basic, Identify and the OTA Upgrade server."""
        return zdo.SimpleDescriptor(
            endpoint=APP_ENDPOINT,
            profile=HA_PROFILE,
            device_type=0x0005,  # configuration tool: the HAN's hub
            device_version=1,
            input_clusters=[0x0000, 0x0003, OTA_CLUSTER],
            output_clusters=[],
        )

    # ------------------------------------------------------------------------------ commands
    def commands(self) -> dict[str, Command]:
        """The CH's control-port commands (added to the standard ones)."""
        return {
            "update_firmware": self._cmd_update_firmware,
            "activate_firmware": self._cmd_activate_firmware,
            "read_firmware_version": self._cmd_read_firmware_version,
            "devices": self._cmd_devices,
            "ota": self._cmd_ota,
        }

    def _device_arg(self, request: dict[str, Any]) -> str:
        device = request.get("device")
        if not isinstance(device, str) or device not in self.known:
            raise CommandError(f'needs "device": one of {", ".join(self.known)} (got {device!r})')
        return device

    def _t(self, at: float | None) -> float | None:
        return None if at is None else round(at - self.clock_origin, 6)

    def _cmd_update_firmware(self, request: dict[str, Any]) -> dict[str, Any]:
        device = self._device_arg(request)
        path = request.get("image")
        if not isinstance(path, str) or not path:
            raise CommandError(f'update_firmware needs "image": the path of an OTA file (got {path!r})')
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read image {path!r}: {exc.strerror or exc}") from None
        if not self.powered:
            raise CommandError("the CH is powered off")
        try:
            transfer = self.ota_server.stage(device, data)
            self.ota_server.notify(device)
        except OtaServerError as exc:
            raise CommandError(f"update_firmware for {device}: {exc}") from None
        header = transfer.image.header
        return {
            "device": device,
            "file_version": header.file_version,
            "file_version_text": version_text(header.file_version),
            "image_size": len(data),
            "image_sha256": transfer.image.sha256,
            "state": transfer.state,
        }

    def _cmd_activate_firmware(self, request: dict[str, Any]) -> dict[str, Any]:
        device = self._device_arg(request)
        given = request.get("image_hash")
        if not isinstance(given, str) or not _SHA256_RE.fullmatch(given):
            raise CommandError(
                'activate_firmware needs "image_hash": the SHA-256 of the OTA file, '
                f"64 hex digits (got {given!r})"
            )
        execute_at = request.get("execute_at")
        now_t = self.loop.time() - self.clock_origin
        if execute_at is None:
            delay = 0.0
        elif isinstance(execute_at, int | float) and not isinstance(execute_at, bool):
            delay = max(0.0, float(execute_at) - now_t)
        else:
            raise CommandError(f'"execute_at" must be a testbed time in seconds (got {execute_at!r})')
        transfer = self.ota_server.transfers.get(device)
        if transfer is None or transfer.state != "verified":
            code = ACTIVATE_NO_IMAGE_HELD
        elif given.lower() != transfer.image.sha256 and "ch-ignores-image-hash" not in self.config.defects:
            code = ACTIVATE_HASH_MISMATCH
        elif self.radio is None or not self.ota_server.activate(device, delay):
            code = ACTIVATE_FAILURE
        else:
            code = ACTIVATE_SUCCESS
        self.log(f"Activate Firmware for {device}: response {code} ({ACTIVATE_RESPONSES[code]})")
        return {
            "device": device,
            "response": code,
            "response_text": ACTIVATE_RESPONSES[code],
            "execute_t": round(now_t + delay, 6) if code == ACTIVATE_SUCCESS else None,
        }

    def _cmd_read_firmware_version(self, request: dict[str, Any]) -> dict[str, Any]:
        device = self._device_arg(request)
        known = self.known[device]
        if known.config.type in GPF_DEVICE_TYPES:
            if known.version is None:
                raise CommandError(
                    f"the GPF holds no firmware version of {device} yet: it has not heard from it"
                )
            return {
                "device": device,
                "version": known.version,
                "version_text": version_text(known.version),
                "source": "gpf-cache",
                "as_of_t": self._t(known.version_at),
            }
        if self.radio is None:
            raise CommandError("the CH is powered off")
        self._next_request += 1
        self._start_read(device, self._next_request, 1)
        return {"device": device, "pending": True, "request": self._next_request}

    def _cmd_devices(self, request: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for name, known in self.known.items():
            transfer = self.ota_server.transfers.get(name)
            rows.append(
                {
                    "device": name,
                    "type": known.config.type,
                    "ieee": known.config.ieee[::-1].hex(":"),
                    "nwk": f"0x{known.config.nwk:04X}",
                    "version": known.version,
                    "version_text": None if known.version is None else version_text(known.version),
                    "version_source": known.version_source,
                    "version_t": self._t(known.version_at),
                    "announced_t": self._t(known.announced_at),
                    "transfer": None if transfer is None else transfer.summary(self.clock_origin),
                }
            )
        return {"devices": rows}

    def _cmd_ota(self, request: dict[str, Any]) -> dict[str, Any]:
        server = self.ota_server
        return {
            "role": "server",
            "block_size": server.block_size,
            "max_transfers": server.max_transfers,
            "stall_timeout": server.stall_timeout,
            "malformed": server.malformed,
            "transfers": {name: t.summary(self.clock_origin) for name, t in server.transfers.items()},
        }


def hub_control_port(hub: CommsHub, *, clock_origin: float = 0.0) -> ControlPortServer:
    """The CH's control port: the standard commands, the CH commands, and its events (alerts)."""
    hub.clock_origin = clock_origin
    server = ControlPortServer(hub, clock_origin=clock_origin, extra_commands=hub.commands())

    def forward(kind: str, fields: dict[str, Any]) -> None:
        server.send_event(kind, **fields)

    hub.event_listeners.append(forward)
    return server
