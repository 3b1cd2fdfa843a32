"""The CH's OTA Upgrade server policy for one transfer, on zigpy's ZCL types and listeners.

Why our own policy and not ``zigpy.ota.manager.update_firmware``: zigpy caps blocks at 50 bytes for
most manufacturers, gives up after a fixed 30 s without progress (patchable only as a module
constant), and keeps no record of what it served. A harness needs block size, minimum block period,
upgrade time and stall budget as explicit scenario knobs, a record of every request it answered, and
an outcome instead of a swallowed exception. So this module answers the client's Query Next Image,
Image Block and Upgrade End requests itself, with zigpy's command schemas and cluster objects, in
the shape of zigpy's OTAManager (listeners registered on enter, removed on exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zigpy.device
import zigpy.types as t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Ota

from harness.ota.image import OtaImage

LOGGER = logging.getLogger(__name__)

UPGRADE_NOW = 0x00000000
UPGRADE_WAIT_FOR_COMMAND = 0xFFFFFFFF


@dataclass(frozen=True)
class OtaServerPolicy:
    """How the server answers: the knobs a scenario may turn.

    - ``block_size``: most bytes per Image Block Response (the client's own maximum also applies).
    - ``minimum_block_period_ms``: written to the client before the transfer (0: as fast as it asks).
    - ``upgrade_time``: seconds after the Upgrade End Response at which the client activates, or
      ``None`` for 0xFFFFFFFF (wait for a later command, GBCS's separate Activate Firmware).
    - ``stall_timeout``: testbed seconds without a request before the transfer counts as stalled.
    - ``force``: offer the image whatever the device says it is (manufacturer, image type, hardware
      version), to check that the device itself refuses an image not meant for it.
    """

    block_size: int = 64
    minimum_block_period_ms: int = 0
    upgrade_time: float | None = 0.0
    stall_timeout: float = 600.0
    force: bool = False


@dataclass
class TransferProgress:
    """One served block, as progress listeners see it."""

    device: str
    offset: int
    size: int
    image_size: int
    virtual_time: float


@dataclass
class TransferOutcome:
    """How a transfer ended, from the server's side; the scenario turns it into a verdict."""

    status: str  # "upgrade-end-success", "device-reported-failure", "stalled", "refused", "running"
    detail: str
    device_status: int | None = None
    last_offset: int = 0
    blocks: int = 0
    repeated_blocks: int = 0
    queries: int = 0
    started: float = 0.0
    ended: float | None = None
    offsets: list[tuple[float, int]] = field(default_factory=list)


class OtaTransfer:
    """Serve one image to one zigpy device until Upgrade End; use as a context manager.

    >>> with OtaTransfer(device, "B2", image, policy) as transfer:
    ...     await transfer.offer()
    ...     outcome = await transfer.finished
    """

    def __init__(
        self,
        device: zigpy.device.Device,
        name: str,
        image: OtaImage,
        policy: OtaServerPolicy,
        *,
        on_progress: Callable[[TransferProgress], None] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.device = device
        self.name = name
        self.image = image
        self.data = image.serialize()
        self.policy = policy
        self.on_progress = on_progress
        self.on_event = on_event or (lambda what, detail: None)
        self.loop = asyncio.get_running_loop()
        self.cluster = device.endpoints[1].out_clusters[Ota.cluster_id]
        self.outcome = TransferOutcome(status="running", detail="offered", started=self.loop.time())
        self.finished: asyncio.Future[TransferOutcome] = self.loop.create_future()
        self._stack = contextlib.ExitStack()
        self._stall: asyncio.TimerHandle | None = None
        self._served_offsets: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> OtaTransfer:
        app = self.device.application
        for schema, handler in (
            (Ota.ServerCommandDefs.query_next_image.schema, self._query_next_image),
            (Ota.ServerCommandDefs.image_block.schema, self._image_block),
            (Ota.ServerCommandDefs.upgrade_end.schema, self._upgrade_end),
        ):
            self._stack.enter_context(
                app.callback_for_response(src=self.device, filters=[schema()], callback=self._guard(handler))
            )
        # zigpy's own Ota cluster handler answers NO_IMAGE_AVAILABLE/ABORT unless told a transfer runs.
        self.device.ota_in_progress = True
        self._stack.callback(setattr, self.device, "ota_in_progress", False)
        # The stall clock starts at the device's first request: until it asks, nothing has stalled
        # (devices may only query on their own schedule).
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stall is not None:
            self._stall.cancel()
        for task in self._tasks:
            task.cancel()
        self._stack.close()

    def _guard(self, handler: Callable[[foundation.ZCLHeader, Any], Any]) -> Callable[..., None]:
        def callback(hdr: foundation.ZCLHeader, command: Any) -> None:
            task = self.loop.create_task(self._run(handler, hdr, command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return callback

    async def _run(
        self, handler: Callable[[foundation.ZCLHeader, Any], Any], hdr: foundation.ZCLHeader, command: Any
    ) -> None:
        try:
            await handler(hdr, command)
        except Exception as exc:
            self.on_event("server-send-failed", {"device": self.name, "error": repr(exc)})
            LOGGER.info("%s: OTA server reply failed: %r", self.name, exc)

    def _rearm_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
        self._stall = self.loop.call_later(self.policy.stall_timeout, self._stalled)

    def _stalled(self) -> None:
        self._finish(
            "stalled",
            f"no request from the device for {self.policy.stall_timeout:g}s "
            f"(last offset {self.outcome.last_offset} of {len(self.data)})",
        )

    def _finish(self, status: str, detail: str, device_status: int | None = None) -> None:
        if self.finished.done():
            return
        self.outcome.status = status
        self.outcome.detail = detail
        self.outcome.device_status = device_status
        self.outcome.ended = self.loop.time()
        if self._stall is not None:
            self._stall.cancel()
        self.on_event("transfer-finished", {"device": self.name, "status": status, "detail": detail})
        self.finished.set_result(self.outcome)

    # ------------------------------------------------------------------------------- server
    async def offer(self) -> None:
        """Tell the device an image is waiting (Image Notify, then it queries); set its block period."""
        header = self.image.header
        if self.policy.minimum_block_period_ms:
            with contextlib.suppress(Exception):
                await self.cluster.write_attributes(
                    {"minimum_block_period": self.policy.minimum_block_period_ms}
                )
        self.on_event("image-notify", {"device": self.name, "file_version": f"0x{header.file_version:08X}"})
        if self.policy.force:
            # A notify naming the image's own manufacturer would be ignored by a device of another
            # one before it even asks; the plain form makes every device query, so its own check runs.
            await self.cluster.image_notify(
                payload_type=Ota.ImageNotifyCommand.PayloadType.QueryJitter, query_jitter=100
            )
            return
        await self.cluster.image_notify(
            payload_type=Ota.ImageNotifyCommand.PayloadType.QueryJitter_ManufacturerCode_ImageType_NewFileVersion,
            query_jitter=100,
            manufacturer_code=header.manufacturer_code,
            image_type=header.image_type,
            new_file_version=header.file_version,
        )

    def _matches(self, manufacturer_code: int, image_type: int) -> bool:
        header = self.image.header
        return manufacturer_code == header.manufacturer_code and image_type == header.image_type

    async def _query_next_image(self, hdr: foundation.ZCLHeader, cmd: Any) -> None:
        self._rearm_stall()
        self.outcome.queries += 1
        header = self.image.header
        hw = getattr(cmd, "hardware_version", None)
        reason = ""
        if not self._matches(cmd.manufacturer_code, cmd.image_type):
            reason = (
                f"device asks for manufacturer 0x{cmd.manufacturer_code:04X} image type "
                f"0x{cmd.image_type:04X}; image is 0x{header.manufacturer_code:04X}/0x{header.image_type:04X}"
            )
        elif (
            hw is not None
            and header.minimum_hardware_version is not None
            and not (header.minimum_hardware_version <= hw <= (header.maximum_hardware_version or 0xFFFF))
        ):
            reason = f"device hardware version {hw} outside the image's range"
        self.on_event(
            "query-next-image",
            {
                "device": self.name,
                "current_file_version": f"0x{cmd.current_file_version:08X}",
                "offered": not reason or self.policy.force,
                "forced": self.policy.force,
                "reason": reason,
            },
        )
        if reason and not self.policy.force:
            await self.cluster.query_next_image_response(foundation.Status.NO_IMAGE_AVAILABLE, tsn=hdr.tsn)
            self._finish("refused", f"image not offered: {reason}")
            return
        await self.cluster.query_next_image_response(
            foundation.Status.SUCCESS,
            manufacturer_code=header.manufacturer_code,
            image_type=header.image_type,
            file_version=header.file_version,
            image_size=len(self.data),
            tsn=hdr.tsn,
        )

    async def _image_block(self, hdr: foundation.ZCLHeader, cmd: Any) -> None:
        self._rearm_stall()
        header = self.image.header
        offset = int(cmd.file_offset)
        if (
            not self._matches(cmd.manufacturer_code, cmd.image_type)
            or cmd.file_version != header.file_version
        ):
            await self.cluster.image_block_response(foundation.Status.NO_IMAGE_AVAILABLE, tsn=hdr.tsn)
            return
        if offset >= len(self.data):
            await self.cluster.image_block_response(foundation.Status.MALFORMED_COMMAND, tsn=hdr.tsn)
            return
        size = min(int(cmd.maximum_data_size), self.policy.block_size)
        block = self.data[offset : offset + size]
        now = self.loop.time()
        self.outcome.blocks += 1
        if offset in self._served_offsets:
            self.outcome.repeated_blocks += 1
        self._served_offsets.add(offset)
        self.outcome.last_offset = offset + len(block)
        self.outcome.offsets.append((now, offset))
        await self.cluster.image_block_response(
            foundation.Status.SUCCESS,
            manufacturer_code=header.manufacturer_code,
            image_type=header.image_type,
            file_version=header.file_version,
            file_offset=offset,
            image_data=block,
            tsn=hdr.tsn,
        )
        if self.on_progress is not None:
            self.on_progress(TransferProgress(self.name, offset, len(block), len(self.data), now))

    async def _upgrade_end(self, hdr: foundation.ZCLHeader, cmd: Any) -> None:
        self._rearm_stall()
        header = self.image.header
        status = foundation.Status(cmd.status)
        self.on_event("upgrade-end-request", {"device": self.name, "status": status.name})
        if status != foundation.Status.SUCCESS:
            self._finish(
                "device-reported-failure",
                f"device ended the download with status {status.name} (0x{int(status):02X})",
                int(status),
            )
            return
        if self.policy.upgrade_time is None:
            upgrade_time = UPGRADE_WAIT_FOR_COMMAND
        else:
            upgrade_time = int(self.policy.upgrade_time)
        try:
            await self.cluster.upgrade_end_response(
                manufacturer_code=header.manufacturer_code,
                image_type=header.image_type,
                file_version=header.file_version,
                current_time=t.UTCTime(0),
                upgrade_time=t.UTCTime(upgrade_time),
                tsn=hdr.tsn,
            )
        finally:
            # The device reported a verified image and was answered; whether its APS ack for the
            # answer arrives (it may already be rebooting) is for the reboot and version checks.
            self._finish("upgrade-end-success", "device downloaded and verified the image", int(status))
