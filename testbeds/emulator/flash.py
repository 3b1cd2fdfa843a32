"""Simulated non-volatile memory of an emulated device: the firmware it runs and the image it is receiving.

A :class:`Flash` outlives the device object: when power is cut the device (and its OTA client, with
everything it held in RAM) is thrown away, and the rebuilt device is handed the same ``Flash``. So
whatever is stored here survives a power cut: the running firmware, the bytes of a download received
so far together with what they belong to, and whether a complete image waits for its upgrade time.

This first version keeps every operation atomic. Its state is held in plain attributes so that a later
version can split each erase and write into steps that a power cut can interrupt (torn writes, a
two-slot bootloader).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ota_file import OtaFileError, parse_header

__all__ = ["DownloadMeta", "FirmwareSlot", "Flash", "FlashError"]


class FlashError(Exception):
    """A flash operation the memory refuses: out of range, out of order, or in the wrong state."""


@dataclass
class FirmwareSlot:
    """The firmware a device boots: its version numbers and the whole OTA file it came from.

    ``image`` is ``b""`` for the factory firmware, which did not arrive over the air.
    """

    file_version: int
    stack_version: int
    image: bytes


@dataclass(frozen=True)
class DownloadMeta:
    """What the download area holds, stored next to it so a download can resume after a power cut."""

    manufacturer_code: int
    image_type: int
    file_version: int
    image_size: int


class Flash:
    """Non-volatile memory with a running firmware slot and a download area.

    Writes to the download area must be sequential: each block starts at or before the end of what is
    already stored (rewriting bytes already there is allowed, leaving a gap is not).
    ``download_offset`` is how many bytes are stored, which is where a resumed download continues.
    ``erase_count`` and ``bytes_written`` count the work done, for evidence and tests.
    """

    def __init__(
        self, *, factory_version: int, factory_stack_version: int, slot_size: int = 512 * 1024
    ) -> None:
        if slot_size <= 0:
            raise ValueError(f"slot_size must be positive, got {slot_size}")
        self.slot_size = slot_size
        self.running = FirmwareSlot(
            file_version=factory_version, stack_version=factory_stack_version, image=b""
        )
        self.download_area = bytearray()
        self.download_offset = 0
        self.download_meta: DownloadMeta | None = None
        self.pending_activation = False
        self.erase_count = 0
        self.bytes_written = 0
        # Outgoing NWK frame counter: kept in non-volatile memory so it never goes backwards across
        # a reboot or an upgrade (neighbours drop frames whose counter is not newer than the last).
        self.nwk_frame_counter = 0

    def next_nwk_frame_counter(self) -> int:
        """The counter for the next secured frame this device sends (persisted before use)."""
        counter = self.nwk_frame_counter
        self.nwk_frame_counter = (counter + 1) & 0xFFFFFFFF
        return counter

    # -- download area -------------------------------------------------------------------------

    def begin_download(
        self, *, manufacturer_code: int, image_type: int, file_version: int, image_size: int
    ) -> None:
        """Erase the download area and record which image is about to be received into it."""
        if image_size <= 0 or image_size > self.slot_size:
            raise FlashError(f"image of {image_size} bytes does not fit a slot of {self.slot_size}")
        self._erase_download_area()
        self.download_meta = DownloadMeta(
            manufacturer_code=manufacturer_code,
            image_type=image_type,
            file_version=file_version,
            image_size=image_size,
        )

    def write_block(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset`` of the download area.

        The block must start no later than ``download_offset`` (no gaps) and must end within both the
        slot and the announced image size.
        """
        meta = self.download_meta
        if meta is None:
            raise FlashError("write_block without begin_download")
        if self.pending_activation:
            raise FlashError("write_block on an image already complete and waiting for activation")
        if offset < 0 or offset > self.download_offset:
            raise FlashError(
                f"write at offset {offset} would leave a gap: {self.download_offset} bytes stored"
            )
        end = offset + len(data)
        if end > self.slot_size:
            raise FlashError(f"write to {offset}..{end} goes past the slot size {self.slot_size}")
        if end > meta.image_size:
            raise FlashError(f"write to {offset}..{end} goes past the image size {meta.image_size}")
        self.download_area[offset:end] = data
        self.download_offset = max(self.download_offset, end)
        self.bytes_written += len(data)

    def downloaded_image(self) -> bytes:
        """The bytes of the download stored so far."""
        return bytes(self.download_area[: self.download_offset])

    def mark_pending_activation(self) -> None:
        """Record that the download is complete and verified, and waits for its upgrade time."""
        meta = self.download_meta
        if meta is None or self.download_offset != meta.image_size:
            raise FlashError("only a complete download can wait for activation")
        self.pending_activation = True

    def discard_download(self) -> None:
        """Throw the download away (erase the download area and its metadata)."""
        self._erase_download_area()

    # -- running slot --------------------------------------------------------------------------

    def activate(self) -> None:
        """Install the downloaded image: it becomes the running firmware; the download area is erased.

        The new firmware's file version and ZigBee stack version are read from the image's own
        OTA header.
        """
        if not self.pending_activation:
            raise FlashError("activate without a complete, verified download")
        image = self.downloaded_image()
        try:
            header = parse_header(image)
        except OtaFileError as exc:
            raise FlashError(f"downloaded image has no valid OTA header: {exc}") from exc
        self.erase_count += 1  # erase the running slot ...
        self.running = FirmwareSlot(
            file_version=header.file_version, stack_version=header.stack_version, image=image
        )
        self.bytes_written += len(image)  # ... and program it
        self._erase_download_area()

    def _erase_download_area(self) -> None:
        self.download_area = bytearray()
        self.download_offset = 0
        self.download_meta = None
        self.pending_activation = False
        self.erase_count += 1
