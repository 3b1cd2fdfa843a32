"""Keywords for a Communications Hub under test: GBCS's two-stage update driven over the CH's control port.

On a testbed whose ``radio.type`` is ``none`` the harness has no ZigBee side of its own: the CH is a
device under test (an emulated one, or on a bench a real one), and the harness drives it as a head
end drives a CH, over its control port (``docs/control-port.md``, "CH commands"):

- `CH Update Firmware` (GBCS SR 11.1, CS05): the CH stages the image and sends it to the device;
- `Wait For CH Alert`: the CH reports the transfer's outcome (CCS08 Firmware Transfer Alert:
  0x8F72 verification successful, 0x8F1C verification failed, 0x8F1B transfer failed) and a
  device's firmware version change (0x8F43);
- `CH Activate Firmware` (SR 11.3, CS06): names the image's hash (SHA-256 of the OTA file) and,
  optionally, when to activate;
- `CH Read Firmware Version` (SR 11.2): the CH reads the device over the air, or answers from its
  Gas Proxy Function's cache for the gas meter.

The CH's alerts arrive as control-port events; every one is kept here in order and consumed once by
`Wait For CH Alert`, so an unexpected alert (0x8F1C when 0x8F72 was awaited) fails the wait instead
of being skipped. Nothing here knows the CH is emulated.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from harness.errors import BadInputError, BenchError, DeviceFault, Inconclusive
from harness.evidence.record import RunRecord, TransferRecord, utc_now
from harness.ota.image import OtaImage
from harness.ports.control import ControlPort, PortEvent
from harness.scenarios.values import format_version, parse_budget
from harness.scenarios.verdicts import Verdict, VerdictResult

if TYPE_CHECKING:
    from harness.testbed.model import TestbedSpec
    from harness.testbed.starter import StartedTestbed

T = TypeVar("T")


class _Session(Protocol):
    """What the CH keywords use of the session they are mixed into."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    ch_monitor: ChMonitor | None
    ch_updates: dict[str, _ChUpdate]
    record: RunRecord
    run_dir: Path

    def _save_record(self) -> None: ...

    def run(self, coro: Coroutine[Any, Any, T]) -> T: ...
    def _require_testbed(self) -> tuple[StartedTestbed, TestbedSpec]: ...
    def _event(self, what: str, **detail: Any) -> None: ...
    def note_verdict(self, result: VerdictResult) -> None: ...
    def _image(self, image: str | Path) -> OtaImage: ...
    def load_firmware_image(self, path: str | Path) -> Path: ...
    def _on_ch_event(self, event: PortEvent) -> None: ...
    def _conclude_ch_transfer(self, event: PortEvent) -> None: ...
    async def _ch_transfer_record(
        self, port: ControlPort, device: str, update: _ChUpdate
    ) -> TransferRecord: ...
    def _update_of(self, device: str) -> _ChUpdate | None: ...
    def _ch_port(self) -> tuple[ControlPort, TestbedSpec]: ...
    async def _wait_alert(
        self, port: ControlPort, wanted: int, device: str | None, budget: float
    ) -> tuple[VerdictResult, ChAlert | None]: ...
    async def _alert_timeout(
        self, port: ControlPort, name: str, device: str | None, budget: float
    ) -> VerdictResult: ...
    async def _activate_via_ch(
        self,
        port: ControlPort,
        device: str,
        update: _ChUpdate | None,
        data: bytes,
        execute_in: float | None,
    ) -> dict[str, Any]: ...
    async def _read_via_ch(self, port: ControlPort, device: str) -> dict[str, Any]: ...


ALERT_NAMES = {
    0x8F72: "firmware verification successful",
    0x8F1C: "firmware verification failed",
    0x8F1B: "firmware transfer failed",
    0x8F43: "firmware version changed",
}
"""GBCS alerts a CH raises about firmware (the CH's own event carries its name too)."""

TRANSFER_OUTCOMES = {
    0: "success",
    1: "image discarded",
    2: "hardware version mismatch",
    3: "transfer failure",
}
"""CCS08 Firmware Transfer Alert outcome codes."""

ACTIVATE_RESPONSES = {0: "success", 1: "no image held", 2: "hash mismatch", 3: "activation failure"}
"""GBCS Activate Firmware (SR 11.3) response codes."""

# After a device verified its image, how long it must keep running its old firmware before
# CH Activate Firmware tells it to switch (a device that activates without waiting shows it here).
ACTIVATION_SETTLE_S = 60.0
# Testbed time to wait for the device's answer to a CH Read Firmware Version.
READ_BUDGET_S = 120.0
# A transfer whose last block request is older than this counts as stalled, not progressing.
PROGRESS_WINDOW_S = 600.0


@dataclass(frozen=True)
class ChAlert:
    """One alert the CH raised: its code, the device it is about, the CH's time and every field."""

    code: int
    device: str
    device_time: float
    fields: dict[str, Any]

    def describe(self) -> str:
        """The alert in words, e.g. ``0x8F1C (firmware verification failed, outcome 1: image discarded)``."""
        name = str(self.fields.get("name") or ALERT_NAMES.get(self.code, "unknown alert"))
        extra = ""
        outcome = self.fields.get("outcome")
        if isinstance(outcome, int):
            extra = f", outcome {outcome}: {TRANSFER_OUTCOMES.get(outcome, 'unknown')}"
        elif self.code == 0x8F43 and "from_version" in self.fields:
            extra = (
                f": {format_version(int(self.fields['from_version']))} -> "
                f"{format_version(int(self.fields['to_version']))}"
            )
        return f"0x{self.code:04X} ({name}{extra})"


@dataclass
class ChMonitor:
    """What the CH under test said unasked: its alerts (in order), announces and version answers."""

    alerts: list[ChAlert] = field(default_factory=list)
    announced: set[str] = field(default_factory=set)
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _taken: set[int] = field(default_factory=set)

    def on_event(self, event: PortEvent) -> None:
        """Keep one event of the CH's control port."""
        fields = event.fields
        if event.kind == "alert":
            try:
                code = int(str(fields.get("code")), 16)
            except ValueError:
                return
            self.alerts.append(
                ChAlert(code, str(fields.get("device", "")), event.device_time or 0.0, dict(fields))
            )
        elif event.kind == "announce":
            self.announced.add(str(fields.get("device")))
        elif event.kind == "firmware-version" and isinstance(fields.get("request"), int):
            self.versions[int(fields["request"])] = dict(fields)
        else:
            return
        self.changed.set()

    def pending(self, device: str | None) -> list[int]:
        """Indexes of the alerts not yet consumed (about ``device``, or any device)."""
        return [
            i
            for i in range(len(self.alerts))
            if i not in self._taken and (device is None or self.alerts[i].device == device)
        ]

    def take(self, index: int) -> ChAlert:
        """Consume one alert."""
        self._taken.add(index)
        return self.alerts[index]

    async def wait_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds of testbed time for a new event; True if one came."""
        self.changed.clear()
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return False
        return True


@dataclass
class _ChUpdate:
    """An image sent with CH Update Firmware."""

    path: Path
    data: bytes
    image: OtaImage
    sent_at: float
    alerts_before: int
    record: TransferRecord | None = None


def parse_alert_code(code: str | int) -> int:
    """An alert code as written (``0x8F72``, ``8F72``) or as a number; raises BadInputError."""
    if isinstance(code, int) and not isinstance(code, bool):
        value = code
    else:
        text = str(code).strip().lower().removeprefix("0x")
        try:
            value = int(text, 16)
        except ValueError:
            raise BadInputError(
                "must be a GBCS alert code such as 0x8F72", field="code", value=code
            ) from None
    if not 0 <= value <= 0xFFFF:
        raise BadInputError("must be a 16-bit GBCS alert code such as 0x8F72", field="code", value=code)
    return value


def parse_activate_response(value: str | int) -> int:
    """An Activate Firmware response code: 0..3 or its name (``success``, ``hash mismatch``, ...)."""
    if isinstance(value, int) and not isinstance(value, bool) and value in ACTIVATE_RESPONSES:
        return value
    text = str(value).strip().lower().replace("-", " ").replace("_", " ")
    if text.isdigit() and int(text) in ACTIVATE_RESPONSES:
        return int(text)
    for number, name in ACTIVATE_RESPONSES.items():
        if text == name:
            return number
    allowed = ", ".join(f"{k} ({v})" for k, v in ACTIVATE_RESPONSES.items())
    raise BadInputError(f"must be an Activate Firmware response: {allowed}", field="expect", value=value)


class ChKeywords:
    """The CH-under-test keywords of :class:`~harness.scenarios.session.OtaSession` (a mixin)."""

    ch_monitor: ChMonitor | None = None
    ch_updates: dict[str, _ChUpdate]

    # ------------------------------------------------------------------------------- plumbing
    def _ch_port(self: _Session) -> tuple[ControlPort, TestbedSpec]:
        testbed, spec = self._require_testbed()
        if not spec.ch_under_test:
            raise BadInputError(
                "must be none for the CH keywords: they drive a CH under test over its control "
                f"port, and on this testbed the harness's own hub plays {spec.coordinator.name}",
                file=str(spec.source) if spec.source else None,
                field="radio.type",
                value=spec.radio.type,
            )
        port = testbed.ports.get(spec.coordinator.name)
        if port is None or self.ch_monitor is None:
            raise BenchError(f"the CH {spec.coordinator.name} has no control port on this testbed")
        return port, spec

    async def _start_ch(self: _Session, join_budget: float) -> None:
        """Power the CH under test and every device on, and wait until the CH heard each announce."""
        testbed, spec = self._require_testbed()
        ch = spec.coordinator.name
        monitor = ChMonitor()
        self.ch_monitor = monitor
        self.ch_updates = {}
        testbed.ports[ch].add_event_listener(monitor.on_event)
        testbed.ports[ch].add_event_listener(self._on_ch_event)
        await testbed.power[ch].restore()
        for name, power in testbed.power.items():
            if name != ch:
                await power.restore()
        deadline = self.loop.time() + join_budget
        for name in spec.devices:
            if name == ch:
                continue
            while name not in monitor.announced:
                remaining = deadline - self.loop.time()
                if remaining <= 0 or not await monitor.wait_change(remaining):
                    raise DeviceFault(
                        f"the CH {ch} did not hear {name} announce itself within {join_budget:g}s"
                    )
            self._event("device-joined", device=name, via=ch)

    def _on_ch_event(self: _Session, event: PortEvent) -> None:
        if event.kind == "alert":
            self._event(
                "ch-alert",
                code=str(event.fields.get("code")),
                device=str(event.fields.get("device")),
                outcome=event.fields.get("outcome"),
                ch_time=event.device_time,
            )
            self._conclude_ch_transfer(event)

    def _conclude_ch_transfer(self: _Session, event: PortEvent) -> None:
        # The run record keeps a transfer row for every image the CH served, as for the hub's own
        # transfers, so the report's table and offset plot cover a CH under test too.
        update = self.ch_updates.get(str(event.fields.get("device")))
        record = update.record if update is not None else None
        if record is None:
            return
        try:
            code = parse_alert_code(str(event.fields.get("code")))
        except BadInputError:
            return
        alert = ChAlert(code, record.device, event.device_time or 0.0, dict(event.fields))
        if code == 0x8F43:
            if record.verdict == "PASS":
                record.reason += f"; activated: {alert.describe()}"
        elif record.verdict == "RUNNING":
            record.ended_virtual_s = self.loop.time()
            record.ended_wall = utc_now()
            record.verdict = "PASS" if code == 0x8F72 else "FAIL"
            record.reason = f"the CH raised {alert.describe()}"
            if code == 0x8F72:
                record.last_offset = record.image_size
        else:
            return
        self._save_record()

    def _update_of(self: _Session, device: str) -> _ChUpdate | None:
        return self.ch_updates.get(device) if self.ch_monitor is not None else None

    # ------------------------------------------------------------------------------ keywords
    def ch_update_firmware(self: _Session, device: str, image: str | Path) -> None:
        """Tell the CH under test to update ``device`` with ``image`` (GBCS Update Firmware, SR 11.1).

        The CH stages the image, sends the device an Image Notify and serves the download; the
        device verifies the image and keeps running its old firmware. The CH then raises its
        Firmware Transfer Alert: wait for it with `Wait For CH Alert` (0x8F72 when verified).
        """
        port, spec = self._ch_port()
        target = spec.device(device)
        if device == spec.coordinator.name:
            raise BadInputError("is the CH itself; name a device the CH serves", field="device", value=device)
        ota = self._image(image)
        header = ota.header
        if (header.manufacturer_code, header.image_type) != (target.manufacturer_code, target.image_type):
            raise BadInputError(
                f"is for manufacturer 0x{header.manufacturer_code:04X} image type 0x{header.image_type:04X}, "
                f"but {device} is 0x{target.manufacturer_code:04X}/0x{target.image_type:04X}",
                field="image",
                value=str(image),
            )
        data = ota.serialize()
        path = Path(image)
        if not path.is_file() or path.read_bytes() != data:
            path = self.load_firmware_image(image)
        assert self.ch_monitor is not None
        update = _ChUpdate(path.resolve(), data, ota, self.loop.time(), len(self.ch_monitor.alerts))
        self._event(
            "ch-update-firmware",
            device=device,
            file_version=f"0x{header.file_version:08X}",
            image=str(path),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        result = self.run(port.request("update_firmware", device=device, image=str(update.path)))
        update.record = self.run(self._ch_transfer_record(port, device, update))
        self.ch_updates[device] = update
        self.note_verdict(
            VerdictResult(
                Verdict.PASS,
                f"{device}: the CH staged {format_version(header.file_version)} "
                f"({result.get('image_size')} bytes) and notified the device",
            )
        )

    async def _ch_transfer_record(
        self: _Session, port: ControlPort, device: str, update: _ChUpdate
    ) -> TransferRecord:
        _, spec = self._ch_port()
        server = await port.request("ota")
        known = await port.request("devices")
        rows = [
            row for row in known.get("devices", []) if isinstance(row, dict) and row.get("device") == device
        ]
        version = rows[0].get("version") if rows else None
        from_version = int(version) if isinstance(version, int) else spec.device(device).firmware_version
        block = int(server.get("block_size", 0)) or 1
        size = len(update.data)
        record = TransferRecord(
            device=device,
            image_file=str(update.path.relative_to(self.run_dir.resolve()))
            if update.path.is_relative_to(self.run_dir.resolve())
            else str(update.path),
            image_sha256=hashlib.sha256(update.data).hexdigest(),
            image_size=size,
            from_version=from_version,
            to_version=update.image.header.file_version,
            block_size=block,
            blocks=-(-size // block),
            retries=0,
            started_virtual_s=update.sent_at,
            ended_virtual_s=None,
            started_wall=utc_now(),
            ended_wall=None,
            last_offset=0,
            verdict="RUNNING",
            reason="served by the CH under test",
        )
        self.record.transfers.append(record)
        self._save_record()
        return record

    def wait_for_ch_alert(
        self: _Session, code: str | int, device: str | None = None, budget: str | float = "2h"
    ) -> dict[str, Any]:
        """Wait until the CH under test raises alert ``code`` (about ``device``); return its fields.

        The CH's alerts are taken in the order it raised them. PASS when the next alert (about
        ``device``, if given) is ``code``. FAIL when it is another alert, e.g. 0x8F1C (verification
        failed) when 0x8F72 was awaited, or when ``budget`` (testbed time) runs out with no alert
        and no transfer progressing; INCONCLUSIVE when it runs out while the device still downloads.
        """
        wanted = parse_alert_code(code)
        seconds = parse_budget(budget)
        port, spec = self._ch_port()
        if device is not None:
            spec.device(device)
        result, alert = self.run(self._wait_alert(port, wanted, device, seconds))
        about = device or (alert.device if alert is not None else "the CH")
        self.note_verdict(VerdictResult(result.verdict, f"{about}: {result.reason}"))
        if result.verdict is Verdict.FAIL:
            raise DeviceFault(f"{about}: {result.reason}")
        if result.verdict is Verdict.INCONCLUSIVE:
            raise Inconclusive(f"{about}: {result.reason}")
        assert alert is not None
        return {"code": f"0x{alert.code:04X}", "device": alert.device, "t": alert.device_time, **alert.fields}

    async def _wait_alert(
        self: _Session, port: ControlPort, wanted: int, device: str | None, budget: float
    ) -> tuple[VerdictResult, ChAlert | None]:
        monitor = self.ch_monitor
        assert monitor is not None
        name = f"0x{wanted:04X} ({ALERT_NAMES.get(wanted, 'alert')})"
        deadline = self.loop.time() + budget
        while True:
            pending = monitor.pending(device)
            if pending:
                alert = monitor.take(pending[0])
                if alert.code == wanted:
                    return VerdictResult(Verdict.PASS, f"the CH raised {alert.describe()}"), alert
                return (
                    VerdictResult(
                        Verdict.FAIL,
                        f"the CH raised {alert.describe()} for {alert.device} at t={alert.device_time:g}s, "
                        f"expected {name}",
                    ),
                    alert,
                )
            remaining = deadline - self.loop.time()
            if remaining <= 0 or not await monitor.wait_change(remaining):
                break
        return await self._alert_timeout(port, name, device, budget), None

    async def _alert_timeout(
        self: _Session, port: ControlPort, name: str, device: str | None, budget: float
    ) -> VerdictResult:
        detail = f"no alert {name} within {budget:g}s"
        if device is None:
            return VerdictResult(Verdict.FAIL, detail)
        rows = (await port.request("devices")).get("devices", [])
        row = next((r for r in rows if isinstance(r, dict) and r.get("device") == device), None)
        transfer = row.get("transfer") if row is not None else None
        if not isinstance(transfer, dict):
            return VerdictResult(Verdict.FAIL, f"{detail}; the CH holds no transfer for it")
        last = transfer.get("last_request_t")
        where = (
            f"the CH's transfer is {transfer.get('state')} at offset {transfer.get('offset')} "
            f"of {transfer.get('image_size')}"
        )
        if transfer.get("state") == "downloading" and isinstance(last, int | float):
            since = self.loop.time() - float(last)
            if since < PROGRESS_WINDOW_S and not transfer.get("stalled"):
                return VerdictResult(
                    Verdict.INCONCLUSIVE,
                    f"{detail}; {where}, still progressing ({since:.1f}s since its last block)",
                )
            return VerdictResult(Verdict.FAIL, f"{detail}; {where}, no block request for {since:.1f}s")
        return VerdictResult(Verdict.FAIL, f"{detail}; {where}")

    def ch_activate_firmware(
        self: _Session,
        device: str,
        image: str | Path | None = None,
        delay: str | float | None = None,
        expect: str | int = 0,
    ) -> int:
        """Tell the CH under test to activate ``image`` on ``device`` (GBCS Activate Firmware, SR 11.3).

        The command names the image by its hash, the SHA-256 of the OTA file (default: the image
        last sent with `CH Update Firmware`), and, with ``delay``, when to activate (the execution
        date-time, as a delay from now such as ``10min``). First the device must show it waits: a
        device that changed its firmware version (alert 0x8F43) within a minute of verifying the
        image, before this command, FAILs. Then the CH's response must be ``expect`` (``0`` success;
        ``1`` no image held, ``2`` hash mismatch, ``3`` activation failure for negative tests).
        Returns the response code.
        """
        wanted = parse_activate_response(expect)
        port, spec = self._ch_port()
        spec.device(device)
        update = self._update_of(device)
        if image is not None:
            data = self._image(image).serialize()
        elif update is not None:
            data = update.data
        else:
            raise BadInputError(
                "has had no image sent with CH Update Firmware; name the image to activate",
                field="device",
                value=device,
            )
        execute_in = parse_budget(delay, field="delay") if delay is not None else None
        result = self.run(self._activate_via_ch(port, device, update, data, execute_in))
        code = int(result.get("response", -1))
        text = ACTIVATE_RESPONSES.get(code, "unknown response")
        self._event("ch-activate-firmware", device=device, response=code, response_text=text)
        if code != wanted:
            reason = (
                f"the CH answered Activate Firmware with {code} ({text}), "
                f"expected {wanted} ({ACTIVATE_RESPONSES[wanted]})"
            )
            self.note_verdict(VerdictResult(Verdict.FAIL, f"{device}: {reason}"))
            raise DeviceFault(f"{device}: {reason}")
        self.note_verdict(
            VerdictResult(Verdict.PASS, f"{device}: Activate Firmware answered {code} ({text})")
        )
        return code

    async def _activate_via_ch(
        self: _Session,
        port: ControlPort,
        device: str,
        update: _ChUpdate | None,
        data: bytes,
        execute_in: float | None,
    ) -> dict[str, Any]:
        monitor = self.ch_monitor
        assert monitor is not None
        if update is not None:
            since_update = monitor.alerts[update.alerts_before :]
            verified = [a for a in since_update if a.device == device and a.code == 0x8F72]
            if verified:
                settle_until = verified[0].device_time + ACTIVATION_SETTLE_S
                if self.loop.time() < settle_until:
                    await asyncio.sleep(settle_until - self.loop.time())
            since_update = monitor.alerts[update.alerts_before :]  # again: more came while settling
            changed = [a for a in since_update if a.device == device and a.code == 0x8F43]
            if changed:
                alert = changed[0]
                reason = (
                    f"changed its firmware version before Activate Firmware: the CH raised "
                    f"{alert.describe()} at t={alert.device_time:g}s, so the device activated "
                    "without waiting for the command"
                )
                self.note_verdict(VerdictResult(Verdict.FAIL, f"{device}: {reason}"))
                raise DeviceFault(f"{device}: {reason}")
        arguments: dict[str, Any] = {"device": device, "image_hash": hashlib.sha256(data).hexdigest()}
        if execute_in is not None:
            arguments["execute_at"] = round(self.loop.time() + execute_in, 3)
        return await port.request("activate_firmware", **arguments)

    def ch_read_firmware_version(self: _Session, device: str) -> int:
        """Ask the CH under test for ``device``'s firmware version (GBCS Read Firmware Version, SR 11.2).

        The CH reads the device over the air; for the gas meter its Gas Proxy Function answers from
        its cache (the version the GSME last reported or was read at its last wake). Returns the
        version; FAILs if the device does not answer the CH.
        """
        port, spec = self._ch_port()
        spec.device(device)
        result = self.run(self._read_via_ch(port, device))
        version = int(result["version"])
        self._event(
            "ch-version-read",
            device=device,
            version=f"0x{version:08X}",
            answered_by=str(result.get("source")),
            as_of=result.get("as_of_t"),
        )
        return version

    async def _read_via_ch(self: _Session, port: ControlPort, device: str) -> dict[str, Any]:
        monitor = self.ch_monitor
        assert monitor is not None
        answer = await port.request("read_firmware_version", device=device)
        if "version" in answer:
            return answer
        request = answer.get("request")
        if not isinstance(request, int):
            raise BenchError(
                f"the CH answered read_firmware_version with neither a version nor a request: {answer}"
            )
        deadline = self.loop.time() + READ_BUDGET_S
        while request not in monitor.versions:
            remaining = deadline - self.loop.time()
            if remaining <= 0 or not await monitor.wait_change(remaining):
                raise DeviceFault(
                    f"{device}: the CH gave no firmware version within {READ_BUDGET_S:g}s of being asked"
                )
        reply = monitor.versions.pop(request)
        if "version" not in reply:
            raise DeviceFault(f"{device}: the CH could not read its firmware version: {reply.get('error')}")
        return reply
