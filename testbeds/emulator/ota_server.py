"""The OTA Upgrade cluster (0x0019) server of an emulated Communications Hub.

Written from the ZigBee Cluster Library specification (ZCL rev 8, chapter 11 "OTA Upgrade"; section
numbers are ZCL 8's), independently of the harness's own server (``harness.hub``), so that the
harness's checks of an emulated CH test a second implementation. It reuses only the emulator's own
codecs (the payload layouts in :mod:`testbeds.emulator.ota_client`, the ZCL header in
:mod:`testbeds.emulator.frames`, the OTA file header in :mod:`testbeds.emulator.ota_file`).

What the server does, per client device it knows (the CH's device log):

- :meth:`OtaServer.stage` keeps one image for a device and :meth:`OtaServer.notify` sends it an
  Image Notify (§11.13.3, payload type 3: manufacturer, image type and file version, jitter 100).
- Query Next Image Request (§11.13.4) is answered (§11.13.5) with the staged image when its
  manufacturer code and image type are the ones asked for, its version differs from the running one
  and the requester's hardware version lies in the image's range; else NO_IMAGE_AVAILABLE. The
  current file version in every request is passed on (the CH's Gas Proxy Function keeps it).
- Image Block Request (§11.13.6) is answered with at most ``block_size`` bytes (the server's own
  limit, often smaller than the client's maximum data size), with WAIT_FOR_DATA (§11.13.8.1, request
  time ``wait_s`` later) while ``max_transfers`` other devices are downloading, and with ABORT for an
  image the server does not hold (or an offset past its end).
- Upgrade End Request (§11.13.9): SUCCESS is answered with an Upgrade End Response whose upgrade
  time is 0xFFFFFFFF ("wait to be told", GBCS's separate Activate Firmware) until
  :meth:`OtaServer.activate` is called; that sends an unsolicited Upgrade End Response with the
  upgrade time as an offset from now (current time 0, §11.13.9.6). INVALID_IMAGE, ABORT and
  REQUIRE_MORE_IMAGE end the transfer (a Default Response acknowledges them unless the client
  disabled it).
- A transfer with no block request for ``stall_timeout`` seconds is reported stalled (once; it may
  still resume).

Outcomes go to ``on_event(kind, device, detail)``; the CH turns them into GBCS alerts. A malformed
request is logged and dropped (answered with a MALFORMED_COMMAND Default Response when the client
did not disable it); decoding never raises. Everything runs on loop timers (virtual time in tests).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from testbeds.emulator import zcl_types as zcl
from testbeds.emulator.frames import ZclFrame
from testbeds.emulator.ota_client import (
    CMD_IMAGE_BLOCK_REQUEST,
    CMD_IMAGE_BLOCK_RESPONSE,
    CMD_IMAGE_NOTIFY,
    CMD_QUERY_NEXT_IMAGE_REQUEST,
    CMD_QUERY_NEXT_IMAGE_RESPONSE,
    CMD_UPGRADE_END_REQUEST,
    CMD_UPGRADE_END_RESPONSE,
    STATUS_ABORT,
    STATUS_INVALID_IMAGE,
    STATUS_NO_IMAGE_AVAILABLE,
    STATUS_REQUIRE_MORE_IMAGE,
    STATUS_SUCCESS,
    STATUS_WAIT_FOR_DATA,
    UPGRADE_TIME_WAIT,
    ImageBlockResponse,
    ImageNotify,
    OtaPayloadError,
    QueryNextImageResponse,
    UpgradeEndResponse,
    decode_image_block_request,
    decode_query_next_image_request,
    decode_upgrade_end_request,
    encode_image_block_response,
    encode_image_notify,
    encode_query_next_image_response,
    encode_upgrade_end_response,
)
from testbeds.emulator.ota_file import OtaFileError, OtaFileHeader, parse_header

# The CH's clock for ZCL UTCTime fields (seconds since 2000-01-01 UTC): testbed time 0 is 2025-01-01.
UTC_TIME_AT_START = 789_004_800

DEFAULT_BLOCK_SIZE = 48
DEFAULT_MAX_TRANSFERS = 2
DEFAULT_WAIT_S = 30
DEFAULT_STALL_TIMEOUT_S = 600.0
# A transfer counts as downloading (for the WAIT_FOR_DATA limit) if it asked for a block this recently.
ACTIVE_WINDOW_S = 60.0

# Transfer states, in words (the control port shows them).
NOTIFIED = "notified"
DOWNLOADING = "downloading"
VERIFIED = "verified"
ACTIVATING = "activating"
DONE = "done"
FAILED = "failed"


class OtaServerError(ValueError):
    """A request to the server (stage, notify) it cannot carry out; the text says why."""


@dataclass(frozen=True)
class OtaClientInfo:
    """A device the server may serve: its name, addresses and OTA identity."""

    name: str
    nwk: int
    manufacturer_code: int
    image_type: int


@dataclass(frozen=True)
class StagedImage:
    """An OTA file held for one device: its bytes, parsed header and SHA-256 (hex)."""

    data: bytes
    header: OtaFileHeader
    sha256: str


@dataclass
class Transfer:
    """What the server knows of one device's transfer."""

    device: str
    image: StagedImage
    state: str = NOTIFIED
    served_to: int = 0
    blocks: int = 0
    wait_for_data: int = 0
    started_at: float | None = None
    last_request_at: float | None = None
    stalled: bool = False
    activate_at: float | None = None
    end_status: int | None = None
    _stall_timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def summary(self, clock_origin: float = 0.0) -> dict[str, Any]:
        """The transfer as the control port shows it (times on the testbed clock)."""

        def shown(at: float | None) -> float | None:
            return None if at is None else round(at - clock_origin, 6)

        header = self.image.header
        return {
            "state": self.state,
            "file_version": header.file_version,
            "image_size": len(self.image.data),
            "image_sha256": self.image.sha256,
            "offset": self.served_to,
            "blocks": self.blocks,
            "wait_for_data": self.wait_for_data,
            "started_t": shown(self.started_at),
            "last_request_t": shown(self.last_request_at),
            "stalled": self.stalled,
            "activate_t": shown(self.activate_at),
        }


SendFrame = Callable[[int, int, ZclFrame], None]
"""Sends an OTA cluster ZCL frame: (destination NWK address, destination endpoint, frame)."""

ServerEvent = Callable[[str, str, dict[str, Any]], None]
"""Told what happened: (kind, device name, detail). Kinds: ``version``, ``downloading``, ``verified``,
``invalid-image``, ``aborted``, ``stalled``, ``hardware-mismatch``."""


class OtaServer:
    """The OTA Upgrade server: one staged image and one transfer per device."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        clients: list[OtaClientInfo],
        send: SendFrame,
        log: Callable[[str], None],
        on_event: ServerEvent,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_transfers: int = DEFAULT_MAX_TRANSFERS,
        wait_s: int = DEFAULT_WAIT_S,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT_S,
    ) -> None:
        if not 1 <= block_size <= 255:
            raise ValueError(f"block_size must be 1..255, got {block_size}")
        self.loop = loop
        self.clients = {c.name: c for c in clients}
        self._by_nwk = {c.nwk: c for c in clients}
        self._send = send
        self._log = log
        self._on_event = on_event
        self.block_size = block_size
        self.max_transfers = max_transfers
        self.wait_s = wait_s
        self.stall_timeout = stall_timeout
        self.transfers: dict[str, Transfer] = {}
        self._tsn = 0
        self.malformed = 0

    # ----------------------------------------------------------------------------- controls
    def stage(self, device: str, data: bytes) -> Transfer:
        """Hold ``data`` (an OTA file) for ``device``, replacing any earlier image; the transfer starts.

        Raises :class:`OtaServerError` for an unknown device, a file whose header cannot be read or
        whose manufacturer code or image type is not the device's.
        """
        client = self._client(device)
        try:
            header = parse_header(data)
        except OtaFileError as exc:
            raise OtaServerError(f"not an OTA file: {exc}") from None
        if header.total_image_size != len(data):
            raise OtaServerError(
                f"the header says {header.total_image_size} bytes but the file has {len(data)}"
            )
        if (header.manufacturer_code, header.image_type) != (client.manufacturer_code, client.image_type):
            raise OtaServerError(
                f"the image is for manufacturer 0x{header.manufacturer_code:04X} image type "
                f"0x{header.image_type:04X}; {device} is 0x{client.manufacturer_code:04X}/"
                f"0x{client.image_type:04X}"
            )
        old = self.transfers.pop(device, None)
        if old is not None:
            self._cancel_stall(old)
        image = StagedImage(data=bytes(data), header=header, sha256=hashlib.sha256(data).hexdigest())
        transfer = Transfer(device=device, image=image)
        self.transfers[device] = transfer
        self._log(
            f"OTA: staged 0x{header.file_version:08X} ({len(data)} bytes, sha256 {image.sha256[:16]}...) "
            f"for {device}"
        )
        return transfer

    def notify(self, device: str) -> None:
        """Send ``device`` an Image Notify for its staged image (payload type 3, query jitter 100)."""
        client = self._client(device)
        transfer = self.transfers.get(device)
        if transfer is None:
            raise OtaServerError(f"no image is staged for {device}")
        header = transfer.image.header
        payload = encode_image_notify(
            ImageNotify(3, 100, header.manufacturer_code, header.image_type, header.file_version)
        )
        self._log(f"OTA: Image Notify -> {device} (0x{header.file_version:08X})")
        self._send_command(client.nwk, 1, CMD_IMAGE_NOTIFY, payload, tsn=self._next_tsn())

    def activate(self, device: str, delay: float) -> bool:
        """Tell ``device`` to install its verified image ``delay`` seconds from now.

        Sends an unsolicited Upgrade End Response (current time 0, upgrade time = the delay) and
        answers later Upgrade End Requests the same way. False if the device holds no verified image.
        """
        client = self._client(device)
        transfer = self.transfers.get(device)
        if transfer is None or transfer.state not in (VERIFIED, ACTIVATING):
            return False
        transfer.state = ACTIVATING
        transfer.activate_at = self.loop.time() + max(0.0, delay)
        self._log(f"OTA: activation of 0x{transfer.image.header.file_version:08X} ordered for {device}")
        self._send_upgrade_end_response(client.nwk, 1, transfer, tsn=self._next_tsn())
        return True

    def version_seen(self, device: str, version: int) -> None:
        """Note that ``device`` runs ``version``: a transfer of that version is then done."""
        transfer = self.transfers.get(device)
        if transfer is not None and transfer.image.header.file_version == version and transfer.state != DONE:
            transfer.state = DONE
            self._cancel_stall(transfer)

    def stop(self) -> None:
        """Cancel every timer (the CH lost power); staged images are kept as in flash."""
        for transfer in self.transfers.values():
            self._cancel_stall(transfer)

    def _client(self, device: str) -> OtaClientInfo:
        client = self.clients.get(device)
        if client is None:
            raise OtaServerError(f"unknown device {device!r}; the CH knows: {', '.join(self.clients)}")
        return client

    # ------------------------------------------------------------------------------ receiving
    def handle(self, src_nwk: int, src_endpoint: int, frame: ZclFrame) -> None:
        """Act on one client-to-server OTA frame from ``src_nwk``; malformed ones are logged and dropped."""
        client = self._by_nwk.get(src_nwk)
        if client is None:
            self._log(f"OTA: command 0x{frame.command_id:02X} from unknown device 0x{src_nwk:04X}; dropped")
            return
        if not frame.cluster_specific or frame.to_client:
            self._log(f"OTA: unexpected frame from {client.name} (command 0x{frame.command_id:02X}); dropped")
            return
        try:
            if frame.command_id == CMD_QUERY_NEXT_IMAGE_REQUEST:
                self._on_query(client, src_endpoint, frame)
            elif frame.command_id == CMD_IMAGE_BLOCK_REQUEST:
                self._on_block_request(client, src_endpoint, frame)
            elif frame.command_id == CMD_UPGRADE_END_REQUEST:
                self._on_upgrade_end(client, src_endpoint, frame)
            else:
                self._log(f"OTA: command 0x{frame.command_id:02X} from {client.name} not supported")
                self._default_response(client.nwk, src_endpoint, frame, zcl.UNSUP_CLUSTER_COMMAND)
        except OtaPayloadError as exc:
            self.malformed += 1
            self._log(f"OTA: malformed command 0x{frame.command_id:02X} from {client.name}: {exc}; dropped")
            self._default_response(client.nwk, src_endpoint, frame, zcl.MALFORMED_COMMAND)

    def _on_query(self, client: OtaClientInfo, endpoint: int, frame: ZclFrame) -> None:
        req = decode_query_next_image_request(frame.payload)
        self._on_event("version", client.name, {"version": req.file_version, "how": "query"})
        transfer = self.transfers.get(client.name)
        status_reason = self._offer_problem(transfer, req.manufacturer_code, req.image_type, req.file_version)
        if status_reason is None and transfer is not None:
            header = transfer.image.header
            hw = req.hardware_version
            if hw is not None and not header.fits_hardware(hw):
                status_reason = (
                    f"hardware version {hw} outside {header.minimum_hardware_version}.."
                    f"{header.maximum_hardware_version}"
                )
                transfer.state = FAILED
                self._on_event("hardware-mismatch", client.name, {"hardware_version": hw})
        if status_reason is not None or transfer is None:
            self._log(f"OTA: QNI from {client.name}: NO_IMAGE_AVAILABLE ({status_reason})")
            resp = QueryNextImageResponse(STATUS_NO_IMAGE_AVAILABLE)
        else:
            header = transfer.image.header
            resp = QueryNextImageResponse(
                STATUS_SUCCESS,
                header.manufacturer_code,
                header.image_type,
                header.file_version,
                len(transfer.image.data),
            )
            self._log(f"OTA: QNI from {client.name}: offering 0x{header.file_version:08X}")
        self._reply(
            client.nwk, endpoint, frame, CMD_QUERY_NEXT_IMAGE_RESPONSE, encode_query_next_image_response(resp)
        )

    @staticmethod
    def _offer_problem(
        transfer: Transfer | None, manufacturer: int, image_type: int, running: int
    ) -> str | None:
        if transfer is None:
            return "nothing staged"
        header = transfer.image.header
        if (header.manufacturer_code, header.image_type) != (manufacturer, image_type):
            return f"asked for 0x{manufacturer:04X}/0x{image_type:04X}"
        if header.file_version == running:
            return "it runs the staged version"
        if transfer.state in (FAILED, DONE):
            return f"transfer {transfer.state}"
        return None

    def _on_block_request(self, client: OtaClientInfo, endpoint: int, frame: ZclFrame) -> None:
        req = decode_image_block_request(frame.payload)
        if req.maximum_data_size == 0:
            raise OtaPayloadError("Image Block Request asks for 0 bytes")
        transfer = self.transfers.get(client.name)
        now = self.loop.time()
        header = transfer.image.header if transfer is not None else None
        if (
            transfer is None
            or header is None
            or (header.manufacturer_code, header.image_type, header.file_version)
            != (req.manufacturer_code, req.image_type, req.file_version)
            or req.file_offset >= len(transfer.image.data)
            or transfer.state in (FAILED, DONE)
        ):
            self._log(
                f"OTA: block request from {client.name} at {req.file_offset} for an image not held: ABORT"
            )
            payload = encode_image_block_response(ImageBlockResponse(STATUS_ABORT))
            self._reply(client.nwk, endpoint, frame, CMD_IMAGE_BLOCK_RESPONSE, payload)
            return
        if self._busy_with_others(client.name, now):
            transfer.wait_for_data += 1
            current = UTC_TIME_AT_START + int(now)
            payload = encode_image_block_response(
                ImageBlockResponse(
                    STATUS_WAIT_FOR_DATA, current_time=current, request_time=current + self.wait_s
                )
            )
            self._log(f"OTA: block request from {client.name}: WAIT_FOR_DATA {self.wait_s}s")
            self._reply(client.nwk, endpoint, frame, CMD_IMAGE_BLOCK_RESPONSE, payload)
            self._arm_stall(transfer)
            return
        size = min(req.maximum_data_size, self.block_size, len(transfer.image.data) - req.file_offset)
        data = transfer.image.data[req.file_offset : req.file_offset + size]
        if transfer.state == NOTIFIED:
            transfer.state = DOWNLOADING
            transfer.started_at = now
            self._on_event("downloading", client.name, {"file_version": header.file_version})
        transfer.last_request_at = now
        transfer.blocks += 1
        transfer.served_to = max(transfer.served_to, req.file_offset + size)
        if transfer.stalled:
            transfer.stalled = False
            self._log(f"OTA: {client.name} resumed at offset {req.file_offset}")
        self._arm_stall(transfer)
        payload = encode_image_block_response(
            ImageBlockResponse(
                STATUS_SUCCESS,
                header.manufacturer_code,
                header.image_type,
                header.file_version,
                req.file_offset,
                data,
            )
        )
        self._reply(client.nwk, endpoint, frame, CMD_IMAGE_BLOCK_RESPONSE, payload)

    def _busy_with_others(self, device: str, now: float) -> bool:
        active = [
            t
            for name, t in self.transfers.items()
            if name != device
            and t.state == DOWNLOADING
            and t.last_request_at is not None
            and now - t.last_request_at < ACTIVE_WINDOW_S
        ]
        mine = self.transfers.get(device)
        me_active = mine is not None and mine.state == DOWNLOADING
        return not me_active and len(active) >= self.max_transfers

    def _on_upgrade_end(self, client: OtaClientInfo, endpoint: int, frame: ZclFrame) -> None:
        req = decode_upgrade_end_request(frame.payload)
        transfer = self.transfers.get(client.name)
        header = transfer.image.header if transfer is not None else None
        if (
            transfer is None
            or header is None
            or (header.manufacturer_code, header.image_type, header.file_version)
            != (req.manufacturer_code, req.image_type, req.file_version)
        ):
            self._log(
                f"OTA: Upgrade End Request from {client.name} for 0x{req.file_version:08X}, "
                "an image not held: ABORT"
            )
            self._default_response(client.nwk, endpoint, frame, STATUS_ABORT)
            return
        transfer.end_status = req.status
        self._cancel_stall(transfer)
        if req.status == STATUS_SUCCESS:
            if transfer.state in (NOTIFIED, DOWNLOADING, FAILED):
                transfer.state = VERIFIED
                self._log(f"OTA: {client.name} verified 0x{header.file_version:08X}")
                self._on_event("verified", client.name, {"file_version": header.file_version})
            self._send_upgrade_end_response(client.nwk, endpoint, transfer, tsn=frame.tsn)
            return
        kind = "invalid-image" if req.status == STATUS_INVALID_IMAGE else "aborted"
        if req.status not in (STATUS_INVALID_IMAGE, STATUS_ABORT, STATUS_REQUIRE_MORE_IMAGE):
            raise OtaPayloadError(f"Upgrade End Request status 0x{req.status:02X} is not allowed")
        transfer.state = FAILED
        self._log(f"OTA: {client.name} ended the transfer with status 0x{req.status:02X}")
        self._on_event(kind, client.name, {"file_version": header.file_version, "status": req.status})
        self._default_response(client.nwk, endpoint, frame, zcl.SUCCESS)

    # -------------------------------------------------------------------------------- timers
    def _arm_stall(self, transfer: Transfer) -> None:
        self._cancel_stall(transfer)
        transfer._stall_timer = self.loop.call_later(self.stall_timeout, self._stalled, transfer)

    def _cancel_stall(self, transfer: Transfer) -> None:
        if transfer._stall_timer is not None:
            transfer._stall_timer.cancel()
            transfer._stall_timer = None

    def _stalled(self, transfer: Transfer) -> None:
        transfer._stall_timer = None
        if (
            transfer.state not in (NOTIFIED, DOWNLOADING)
            or self.transfers.get(transfer.device) is not transfer
        ):
            return
        transfer.stalled = True
        self._log(
            f"OTA: no block request from {transfer.device} for {self.stall_timeout:g}s "
            f"(offset {transfer.served_to} of {len(transfer.image.data)})"
        )
        self._on_event("stalled", transfer.device, {"offset": transfer.served_to})

    # ------------------------------------------------------------------------------- sending
    def _next_tsn(self) -> int:
        self._tsn = (self._tsn + 1) & 0xFF
        return self._tsn

    def _send_upgrade_end_response(self, nwk: int, endpoint: int, transfer: Transfer, *, tsn: int) -> None:
        header = transfer.image.header
        if transfer.state == ACTIVATING and transfer.activate_at is not None:
            upgrade_time = max(0, round(transfer.activate_at - self.loop.time()))
        else:
            upgrade_time = UPGRADE_TIME_WAIT
        payload = encode_upgrade_end_response(
            UpgradeEndResponse(
                header.manufacturer_code, header.image_type, header.file_version, 0, upgrade_time
            )
        )
        shown = "0xFFFFFFFF (wait)" if upgrade_time == UPGRADE_TIME_WAIT else f"+{upgrade_time}s"
        self._log(f"OTA: Upgrade End Response -> {transfer.device}: upgrade time {shown}")
        self._send_command(nwk, endpoint, CMD_UPGRADE_END_RESPONSE, payload, tsn=tsn)

    def _send_command(self, nwk: int, endpoint: int, command_id: int, payload: bytes, *, tsn: int) -> None:
        frame = ZclFrame(
            cluster_specific=True,
            command_id=command_id,
            tsn=tsn,
            to_client=True,
            disable_default_response=True,
            payload=payload,
        )
        self._send(nwk, endpoint, frame)

    def _reply(self, nwk: int, endpoint: int, request: ZclFrame, command_id: int, payload: bytes) -> None:
        self._send_command(nwk, endpoint, command_id, payload, tsn=request.tsn)

    def _default_response(self, nwk: int, endpoint: int, request: ZclFrame, status: int) -> None:
        # ZCL 2.5.12.2: a Default Response reports an error always, success only when not disabled.
        if request.disable_default_response and status == zcl.SUCCESS:
            return
        frame = ZclFrame(
            cluster_specific=False,
            command_id=zcl.DEFAULT_RESPONSE,
            tsn=request.tsn,
            to_client=True,
            disable_default_response=True,
            manufacturer_code=request.manufacturer_code,
            payload=zcl.encode_default_response(request.command_id, status),
        )
        self._send(nwk, endpoint, frame)
