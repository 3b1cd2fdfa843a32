"""Simulated non-volatile memory of an emulated device: two firmware slots and a boot-state area.

A :class:`Flash` outlives the device object: when power is cut the device (and its OTA client, with
everything it held in RAM) is thrown away, and the rebuilt device is handed the same ``Flash``. So
whatever is stored here survives a power cut.

Layout, modelled on MCUboot's swap-scratch layout (``docs/design.md``, "Image Slots" and
"Swap using scratch"):

- the **primary** slot holds the image the device runs;
- the **secondary** slot receives a download and, after an upgrade, keeps the previous image so the
  bootloader can revert to it;
- one **scratch** sector is where the bootloader parks a sector while it swaps the two slots;
- the **boot-state** area is an append-only log of small records (MCUboot keeps the same facts in
  its image trailer: magic, swap status, ``copy_done``, ``image_ok``): a swap request with the
  size, SHA-256 and versions of both images, one status record per finished swap step, "swap done",
  one record per boot of an unconfirmed image (the try counter) and "confirmed". Each record ends in
  a CRC-32 and a commit byte, so a record torn by a power cut is recognised and ignored.

All memory is read as bytes and changed only by two primitives, each one *step*: erasing one sector
(every byte becomes ``0xFF``) and programming a run of bytes. A :class:`FlashFaults` object can cut the
power at any step: before it, after it, or in the middle of it (a torn step: an erase that cleared
only the first half of the sector, a program that wrote all but its last byte). The cut raises
:class:`PowerCut`, which unwinds whatever operation was under way, as the reset of a real device
does; the bytes stay as the cut left them.

The download path (:meth:`Flash.begin_download`, :meth:`Flash.write_block`,
:meth:`Flash.mark_pending_activation`) writes into the secondary slot. Where the download stands
(``download_meta``, ``download_offset``, ``download_sha256``, ``pending_activation``) is itself kept
in flash, in the **download log**: two banks of at least 256 bytes, each an append-only log of the
same CRC-32 + commit-byte records (begin: which image; offset: how many bytes are stored; verified:
the SHA-256 of the complete download; forget). A block is programmed first and its new offset
recorded after it, each one step, so a power cut between the two leaves the offset at the previous
block and the download resumes there (rewriting the block), never past data that was not written.
When a bank is full the current state is copied to the other bank, whose epoch record (a sequence
number at the bank's start) is programmed last: until it is, the old bank still rules.
:meth:`Flash.activate` checks the downloaded image and asks the bootloader
(:mod:`testbeds.emulator.bootloader`) to swap it in at the next boot; once the swap request naming
the download's SHA-256 is committed, the download counts as handed over (no further record needed).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import Literal

from .ota_file import OTA_HEADER_MIN_LENGTH, OtaFileError, parse_header
from .reporting import ApplicationTables

__all__ = [
    "DEFAULT_BOOT_TRIES",
    "DEFAULT_SECTOR_SIZE",
    "FACTORY_HEADER_STRING",
    "SELF_TEST_FAIL_MARK",
    "BootState",
    "CutMode",
    "DownloadMeta",
    "DownloadView",
    "FirmwareSlot",
    "Flash",
    "FlashError",
    "FlashFaults",
    "ImageInfo",
    "PowerCut",
    "encode_record",
    "parse_log",
    "sectors_for",
]

DEFAULT_SECTOR_SIZE = 4096
DEFAULT_BOOT_TRIES = 3
ERASED = 0xFF

FACTORY_HEADER_STRING = b"emulator factory firmware"
"""OTA header string of the image a new :class:`Flash` holds in its primary slot."""

SELF_TEST_FAIL_MARK = b"SELFTEST-FAIL"
"""An image whose OTA header string contains this fails its self-test after booting (a bad image)."""

CutMode = Literal["before", "after", "torn"]

# Boot-state record types.
REC_REQUEST = 0x01  # swap requested: descriptors of the new and the old image (MCUboot: magic)
REC_STATUS = 0x02  # one swap step finished: op, sector index, state (MCUboot: swap status)
REC_DONE = 0x03  # op finished (MCUboot: copy_done)
REC_ATTEMPT = 0x04  # one boot of the unconfirmed image (the try counter)
REC_CONFIRM = 0x05  # the running image passed its self-test (MCUboot: image_ok)
REC_CANCEL = 0x06  # the bootloader refused the requested swap
# Download-log record types.
REC_DL_BEGIN = 0x11  # a download began: manufacturer code, image type, file version, image size
REC_DL_OFFSET = 0x12  # bytes stored so far (recorded after the block was programmed)
REC_DL_VERIFIED = 0x13  # the download is complete and verified: its SHA-256
REC_DL_FORGET = 0x14  # the download was thrown away
REC_DL_EPOCH = 0x15  # at a bank's start: the bank's sequence number (programmed last)
DL_BANK_MIN_BYTES = 256
DL_HEADER_BYTES = 16  # room for the epoch record at the start of a bank
OP_SWAP = 0
OP_REVERT = 1
COMMIT = 0x5A

_INFO = struct.Struct("<I32sIH")  # size, sha256, file version, stack version
STATUS_RECORD = struct.Struct("<BHB")  # op, sector index, state (0, 1 or 2: see bootloader.py)
_DL_META = struct.Struct("<HHII")  # manufacturer code, image type, file version, image size
_UINT32 = struct.Struct("<I")


class FlashError(Exception):
    """A flash operation the memory refuses: out of range, out of order, or in the wrong state."""


class PowerCut(Exception):
    """Power was cut in the middle of a flash operation; the device is now off."""


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


@dataclass(frozen=True)
class ImageInfo:
    """What the bootloader knows of one image: its size, SHA-256 and versions."""

    size: int
    sha256: bytes
    file_version: int
    stack_version: int


@dataclass(frozen=True)
class DownloadView:
    """Where the download stands, as the download log says (after its last committed record)."""

    meta: DownloadMeta | None = None
    offset: int = 0
    sha256: bytes | None = None


@dataclass
class FlashFaults:
    """A power-cut injector: counts flash steps and cuts the power at step ``cut_at`` (1-based).

    ``mode`` says where in that step: ``"before"`` it happens, ``"after"`` it happened, or
    ``"torn"`` (half the sector erased, or all but the last byte programmed). After the cut the
    injector is spent (``cut_at`` becomes None), so the next power-up runs clean. ``trace`` lists
    every step seen, for reports.
    """

    cut_at: int | None = None
    mode: CutMode = "before"
    steps: int = 0
    fired: bool = False
    trace: list[str] = field(default_factory=list)

    def step(self, what: str) -> CutMode | None:
        """Count one step; the cut mode if this is the step to cut, else None."""
        self.steps += 1
        self.trace.append(what)
        if self.cut_at is not None and self.steps == self.cut_at:
            self.cut_at = None
            self.fired = True
            return self.mode
        return None


@dataclass
class BootState:
    """The boot-state log, read back: what the bootloader has been asked to do and how far it got."""

    request: tuple[ImageInfo, ImageInfo, int] | None = None  # new, old, tries
    cancelled: bool = False
    progress: dict[int, tuple[int, int]] = field(default_factory=dict)  # op -> (index, state)
    done: set[int] = field(default_factory=set)
    attempts: int = 0
    confirmed: bool = False

    @property
    def unconfirmed(self) -> bool:
        """The new image was swapped in and has not confirmed itself (nor been reverted)."""
        return (
            self.request is not None
            and OP_SWAP in self.done
            and not self.confirmed
            and OP_REVERT not in self.done
        )


def sectors_for(size: int, sector_size: int) -> int:
    """How many sectors of ``sector_size`` bytes hold ``size`` bytes."""
    return -(-size // sector_size)


def encode_record(kind: int, payload: bytes, *, bare: bool = False) -> bytes:
    """One log record: type, length, payload, then (unless ``bare``) CRC-32 and the commit byte."""
    body = bytes([kind, len(payload)]) + payload
    if bare:
        return body
    return body + struct.pack("<I", zlib.crc32(body)) + bytes([COMMIT])


def parse_log(area: bytes | bytearray, start: int = 0, *, bare: bool = False) -> list[tuple[int, bytes, int]]:
    """(type, payload, end offset) of every record from ``start`` until erased memory.

    A record whose CRC or commit byte is wrong (torn by a power cut) is listed with type -1 and an
    empty payload. ``bare`` records (the ``torn-boot-flags`` defect) are taken at face value.
    """
    out: list[tuple[int, bytes, int]] = []
    pos = start
    while pos + 2 <= len(area) and area[pos] != ERASED:
        kind, length = area[pos], area[pos + 1]
        if bare:
            end = pos + 2 + length
            # The defect: bytes are taken at face value, erased ones (0xFF) included.
            out.append((kind, bytes(area[pos + 2 : end]), end))
            pos = end
            continue
        end = pos + 2 + length + 5
        body = bytes(area[pos : pos + 2 + length])
        tail = bytes(area[pos + 2 + length : end])
        good = len(tail) == 5 and tail[4] == COMMIT and struct.unpack("<I", tail[:4])[0] == zlib.crc32(body)
        out.append((kind if good else -1, body[2:] if good else b"", end))
        pos = end
    return out


def _apply_download_record(view: DownloadView, kind: int, payload: bytes) -> DownloadView:
    if kind == REC_DL_BEGIN and len(payload) == _DL_META.size:
        return DownloadView(DownloadMeta(*_DL_META.unpack(payload)), 0, None)
    if kind == REC_DL_OFFSET and len(payload) == _UINT32.size and view.meta is not None:
        return DownloadView(view.meta, _UINT32.unpack(payload)[0], view.sha256)
    if kind == REC_DL_VERIFIED and len(payload) == 32 and view.meta is not None:
        return DownloadView(view.meta, view.offset, payload)
    if kind == REC_DL_FORGET:
        return DownloadView()
    return view


class Flash:
    """Non-volatile memory with a primary (running) slot, a secondary (download) slot and boot state.

    Writes to the download area must be sequential: each block starts at or before the end of what is
    already stored (rewriting bytes already there is allowed, leaving a gap is not).
    ``download_offset`` is how many bytes are stored, which is where a resumed download continues.
    ``erase_count`` and ``bytes_written`` count the work done, for evidence and tests.

    ``running`` is the firmware the bootloader last started; once :meth:`activate` has requested an
    install it already names the new image (the device is about to reset into it), and the next boot
    sets it to whatever the bootloader really started. ``defects`` are the bootloader defects of
    :mod:`testbeds.emulator.defects` this memory's firmware has (the device sets them at power-on).
    ``boot_tries`` is how many boots an unconfirmed image gets before the bootloader reverts it.
    """

    def __init__(
        self,
        *,
        factory_version: int,
        factory_stack_version: int,
        slot_size: int = 512 * 1024,
        sector_size: int = DEFAULT_SECTOR_SIZE,
        boot_tries: int = DEFAULT_BOOT_TRIES,
        defects: frozenset[str] = frozenset(),
    ) -> None:
        if slot_size <= 0:
            raise ValueError(f"slot_size must be positive, got {slot_size}")
        if sector_size <= 0:
            raise ValueError(f"sector_size must be positive, got {sector_size}")
        if boot_tries < 1:
            raise ValueError(f"boot_tries must be at least 1, got {boot_tries}")
        self.slot_size = slot_size
        self.sector_size = min(sector_size, slot_size)
        self.sector_count = sectors_for(slot_size, self.sector_size)
        self.boot_tries = boot_tries
        self.defects = frozenset(defects)
        self.faults: FlashFaults | None = None
        self.self_test_fails = False
        # Test hook (the flash sweep's revert path): images, by SHA-256, that fail their self-test.
        self.self_test_fails_for: frozenset[bytes] = frozenset()
        # PEM of the public key the bootloader checks image signatures with (None: no check).
        self.trusted_key: bytes | None = None
        span = self.sector_count * self.sector_size
        # Records: 11 bytes each (type, length, 4-byte status, CRC-32, commit); room for a swap and a
        # revert of every sector, the tries, and the request (84-byte payload).
        boot_bytes = 256 + 11 * (6 * self.sector_count + boot_tries + 16)
        self.boot_area_sectors = sectors_for(boot_bytes, self.sector_size)
        self.primary = bytearray(b"\xff" * span)
        self.secondary = bytearray(b"\xff" * span)
        self.scratch = bytearray(b"\xff" * self.sector_size)
        self.boot_area = bytearray(b"\xff" * (self.boot_area_sectors * self.sector_size))
        self.dl_bank_sectors = sectors_for(DL_BANK_MIN_BYTES, self.sector_size)
        self.download_log = bytearray(b"\xff" * (2 * self.dl_bank_sectors * self.sector_size))
        # RAM copy of the download log's state: (view, bank, end of log, epoch); None: read it again.
        self._dl_cache: tuple[DownloadView, int, int, int] | None = None
        factory = _factory_image(factory_version, factory_stack_version)
        self.primary[: len(factory)] = factory  # written at the factory: no steps counted
        self.running = FirmwareSlot(
            file_version=factory_version, stack_version=factory_stack_version, image=b""
        )
        self.erase_count = 0
        self.bytes_written = 0
        # Outgoing NWK frame counter: kept in non-volatile memory so it never goes backwards across
        # a reboot or an upgrade (neighbours drop frames whose counter is not newer than the last).
        self.nwk_frame_counter = 0
        # The application's binding table and reporting configuration (non-volatile, as on a real
        # device: a reboot or a healthy upgrade keeps them).
        self.application = ApplicationTables()

    def next_nwk_frame_counter(self) -> int:
        """The counter for the next secured frame this device sends (persisted before use)."""
        counter = self.nwk_frame_counter
        self.nwk_frame_counter = (counter + 1) & 0xFFFFFFFF
        return counter

    # -- the two flash primitives: every call is one step a power cut can hit -------------------

    def region(self, name: str) -> bytearray:
        """The bytes of one memory region: ``primary``, ``secondary``, ``scratch``, ``boot`` or ``dl``
        (the download log)."""
        regions = {
            "primary": self.primary,
            "secondary": self.secondary,
            "scratch": self.scratch,
            "boot": self.boot_area,
            "dl": self.download_log,
        }
        return regions[name]

    def erase_sector(self, region: str, sector: int) -> None:
        """Erase one sector of ``region`` (``primary``, ``secondary``, ``scratch``, ``boot`` or ``dl``)."""
        buf = self.region(region)
        start = sector * self.sector_size
        if start < 0 or start >= len(buf):
            raise FlashError(f"{region} has no sector {sector}")
        end = start + self.sector_size
        cut = self.faults.step(f"erase {region}[{sector}]") if self.faults is not None else None
        if cut == "before":
            raise PowerCut(f"cut before erase {region}[{sector}]")
        if cut == "torn":
            buf[start : start + self.sector_size // 2] = b"\xff" * (self.sector_size // 2)
            raise PowerCut(f"cut in the middle of erase {region}[{sector}]")
        buf[start:end] = b"\xff" * self.sector_size
        self.erase_count += 1
        if cut == "after":
            raise PowerCut(f"cut after erase {region}[{sector}]")

    def program(self, region: str, offset: int, data: bytes) -> None:
        """Program ``data`` at ``offset`` of ``region``: one step, whatever its length."""
        buf = self.region(region)
        end = offset + len(data)
        if offset < 0 or end > len(buf):
            raise FlashError(f"program {region} {offset}..{end} is outside its {len(buf)} bytes")
        if not data:
            return
        cut = self.faults.step(f"program {region}@{offset}+{len(data)}") if self.faults else None
        if cut == "before":
            raise PowerCut(f"cut before program {region}@{offset}")
        if cut == "torn":
            buf[offset : end - 1] = data[:-1]
            raise PowerCut(f"cut in the middle of program {region}@{offset} (last byte not written)")
        buf[offset:end] = data
        self.bytes_written += len(data)
        if cut == "after":
            raise PowerCut(f"cut after program {region}@{offset}")

    # -- download area -------------------------------------------------------------------------

    @property
    def download_area(self) -> bytes:
        """The bytes of the download stored so far (the start of the secondary slot)."""
        return bytes(self.secondary[: self.download_offset])

    @property
    def download_meta(self) -> DownloadMeta | None:
        """Which image the download area holds (None: no download), as the download log says."""
        return self.download_view().meta

    @property
    def download_offset(self) -> int:
        """How many bytes of the download are stored: where a resumed download continues."""
        return self.download_view().offset

    @download_offset.setter
    def download_offset(self, offset: int) -> None:
        # Only a defective client moves the pointer by hand (resumes-at-wrong-offset); it is recorded.
        self._dl_append(REC_DL_OFFSET, _UINT32.pack(offset))

    @property
    def download_sha256(self) -> bytes | None:
        """SHA-256 of the complete, verified download (None until it is complete and verified)."""
        return self.download_view().sha256

    @property
    def pending_activation(self) -> bool:
        """The download is complete and verified, and waits for its upgrade time."""
        return self.download_view().sha256 is not None

    def download_view(self) -> DownloadView:
        """Where the download stands. A verified download whose swap request is committed (and not
        called off) was handed over to the bootloader and no longer counts."""
        view = self._dl_state()[0]
        if view.sha256 is not None:
            state = self.boot_state()
            if state.request is not None and not state.cancelled and state.request[0].sha256 == view.sha256:
                return DownloadView()
        return view

    def begin_download(
        self, *, manufacturer_code: int, image_type: int, file_version: int, image_size: int
    ) -> None:
        """Erase the download area and record which image is about to be received into it.

        An install requested but not yet carried out by the bootloader is called off, since its
        image is about to be overwritten. The old download is forgotten (one record) before the
        area is erased, and the new one recorded after it.
        """
        if image_size <= 0 or image_size > self.slot_size:
            raise FlashError(f"image of {image_size} bytes does not fit a slot of {self.slot_size}")
        state = self.boot_state()
        if state.unconfirmed:
            raise FlashError("the running image is not confirmed: the secondary slot holds its fallback")
        if state.request is not None and not state.cancelled and OP_SWAP not in state.done:
            self.append_record(REC_CANCEL, b"")
        if self.download_view().meta is not None:
            self._dl_append(REC_DL_FORGET, b"")
        for sector in range(sectors_for(image_size, self.sector_size)):
            self.erase_sector("secondary", sector)
        self._dl_append(REC_DL_BEGIN, _DL_META.pack(manufacturer_code, image_type, file_version, image_size))

    def write_block(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset`` of the download area, then record the new offset.

        The block must start no later than ``download_offset`` (no gaps) and must end within both the
        slot and the announced image size. Two steps: the block's program, then the offset record.
        """
        view = self.download_view()
        meta = view.meta
        if meta is None:
            raise FlashError("write_block without begin_download")
        if view.sha256 is not None:
            raise FlashError("write_block on an image already complete and waiting for activation")
        if offset < 0 or offset > view.offset:
            raise FlashError(f"write at offset {offset} would leave a gap: {view.offset} bytes stored")
        end = offset + len(data)
        if end > self.slot_size:
            raise FlashError(f"write to {offset}..{end} goes past the slot size {self.slot_size}")
        if end > meta.image_size:
            raise FlashError(f"write to {offset}..{end} goes past the image size {meta.image_size}")
        self.program("secondary", offset, data)
        if end > view.offset:
            self._dl_append(REC_DL_OFFSET, _UINT32.pack(end))

    def downloaded_image(self) -> bytes:
        """The bytes of the download stored so far."""
        return self.download_area

    def mark_pending_activation(self) -> None:
        """Record that the download is complete and verified, and waits for its upgrade time.

        The SHA-256 of the complete download is recorded now (one record); :meth:`activate` and the
        bootloader check the slot against it before they install the image.
        """
        meta = self.download_meta
        if meta is None or self.download_offset != meta.image_size:
            raise FlashError("only a complete download can wait for activation")
        self._dl_append(REC_DL_VERIFIED, hashlib.sha256(self.downloaded_image()).digest())

    def discard_download(self) -> None:
        """Throw the download away: record that it is forgotten, then erase the download area."""
        view = self.download_view()
        size = view.meta.image_size if view.meta is not None else view.offset
        if view.meta is not None:
            self._dl_append(REC_DL_FORGET, b"")
        for sector in range(sectors_for(max(size, 1), self.sector_size)):
            self.erase_sector("secondary", sector)

    # -- the download log: two banks, each an append-only log behind an epoch record ------------

    def _dl_bank_bytes(self) -> int:
        return self.dl_bank_sectors * self.sector_size

    def _dl_state(self) -> tuple[DownloadView, int, int, int]:
        """(view, active bank or -1, end of its log, its epoch), read from the log unless cached."""
        if self._dl_cache is None:
            self._dl_cache = self._dl_scan()
        return self._dl_cache

    def _dl_scan(self) -> tuple[DownloadView, int, int, int]:
        size = self._dl_bank_bytes()
        best: tuple[int, int] | None = None  # (epoch, bank)
        for bank in range(2):
            area = self.download_log[bank * size : (bank + 1) * size]
            head = parse_log(area[:DL_HEADER_BYTES])
            if head and head[0][0] == REC_DL_EPOCH and len(head[0][1]) == _UINT32.size:
                epoch = _UINT32.unpack(head[0][1])[0]
                if best is None or epoch > best[0]:
                    best = (epoch, bank)
        if best is None:
            return DownloadView(), -1, DL_HEADER_BYTES, 0
        epoch, bank = best
        area = self.download_log[bank * size : (bank + 1) * size]
        view = DownloadView()
        records = parse_log(area, DL_HEADER_BYTES)
        for kind, payload, _end in records:
            view = _apply_download_record(view, kind, payload)
        return view, bank, records[-1][2] if records else DL_HEADER_BYTES, epoch

    def _dl_append(self, kind: int, payload: bytes) -> None:
        """Append one record to the download log (one step), moving to the other bank when full."""
        view, bank, end, epoch = self._dl_state()
        record = encode_record(kind, payload)
        size = self._dl_bank_bytes()
        try:
            if bank >= 0 and end + len(record) <= size:
                self.program("dl", bank * size + end, record)
                self._dl_cache = (_apply_download_record(view, kind, payload), bank, end + len(record), epoch)
                return
            after = _apply_download_record(view, kind, payload)
            self._dl_move(after, 1 - bank if bank >= 0 else 0, epoch + 1)
        except BaseException:
            self._dl_cache = None  # a cut (or anything else) may have left any state: read it again
            raise

    def _dl_move(self, view: DownloadView, bank: int, epoch: int) -> None:
        """Write ``view`` into ``bank`` (erased first unless blank), then its epoch record last."""
        size = self._dl_bank_bytes()
        base = bank * size
        if any(byte != ERASED for byte in self.download_log[base : base + size]):
            for sector in range(self.dl_bank_sectors):
                self.erase_sector("dl", bank * self.dl_bank_sectors + sector)
        records = b""
        if view.meta is not None:
            meta = view.meta
            records += encode_record(
                REC_DL_BEGIN,
                _DL_META.pack(meta.manufacturer_code, meta.image_type, meta.file_version, meta.image_size),
            )
            if view.offset:
                records += encode_record(REC_DL_OFFSET, _UINT32.pack(view.offset))
            if view.sha256 is not None:
                records += encode_record(REC_DL_VERIFIED, view.sha256)
        if records:
            self.program("dl", base + DL_HEADER_BYTES, records)
        self.program("dl", base, encode_record(REC_DL_EPOCH, _UINT32.pack(epoch)))
        self._dl_cache = (view, bank, DL_HEADER_BYTES + len(records), epoch)

    # -- install: request, confirm ---------------------------------------------------------------

    def activate(self) -> None:
        """Ask the bootloader to install the downloaded image at the next boot.

        The image is checked first (a valid OTA header whose total size is the download's size, and
        the SHA-256 recorded when the download completed); then the boot state is erased and a swap
        request naming both images is written. The swap itself happens in the bootloader.
        """
        if not self.pending_activation or self.download_meta is None:
            raise FlashError("activate without a complete, verified download")
        image = self.downloaded_image()
        try:
            header = parse_header(image)
        except OtaFileError as exc:
            raise FlashError(f"downloaded image has no valid OTA header: {exc}") from exc
        if header.total_image_size != len(image):
            raise FlashError(
                f"header total image size {header.total_image_size} != {len(image)} bytes downloaded"
            )
        digest = hashlib.sha256(image).digest()
        if digest != self.download_sha256:
            raise FlashError("downloaded image changed since it was verified (SHA-256 differs)")
        old = self.primary_info()
        if old is None:
            raise FlashError("the primary slot holds no valid image to fall back to")
        new = ImageInfo(len(image), digest, header.file_version, header.stack_version)
        for sector in range(self.boot_area_sectors):
            self.erase_sector("boot", sector)
        # Once this request is committed the download is handed over to the bootloader
        # (download_view): no download-log record is needed, so no cut can land between the two.
        self.append_record(REC_REQUEST, _pack_info(new) + _pack_info(old) + bytes([self.boot_tries]))
        self.running = FirmwareSlot(header.file_version, header.stack_version, image)

    def confirm(self) -> bool:
        """Mark the running image good (its self-test passed), so it is never reverted.

        True if this call confirmed it, False if there was nothing to confirm.
        """
        if not self.boot_state().unconfirmed:
            return False
        self.append_record(REC_CONFIRM, b"")
        return True

    @property
    def confirmed(self) -> bool:
        """Whether the image in the primary slot is confirmed (a factory image always is)."""
        return not self.boot_state().unconfirmed

    # -- slot contents -------------------------------------------------------------------------

    def slot_image(self, region: str, size: int | None = None) -> bytes:
        """The OTA file at the start of ``region``: ``size`` bytes, or as many as its header says."""
        buf = self.region(region)
        if size is None:
            try:
                size = parse_header(bytes(buf[: OTA_HEADER_MIN_LENGTH + 64])).total_image_size
            except OtaFileError:
                return b""
        return bytes(buf[: min(size, len(buf))])

    def primary_info(self) -> ImageInfo | None:
        """Size, SHA-256 and versions of the image in the primary slot, or None if it has none."""
        image = self.slot_image("primary")
        try:
            header = parse_header(image)
        except OtaFileError:
            return None
        if header.total_image_size != len(image):
            return None
        return ImageInfo(
            len(image), hashlib.sha256(image).digest(), header.file_version, header.stack_version
        )

    # -- boot-state log ------------------------------------------------------------------------

    def append_record(self, kind: int, payload: bytes) -> None:
        """Append one record to the boot-state log: a single program step.

        Healthy firmware ends the record in a CRC-32 and a commit byte, so a torn record is seen as
        torn. With the ``torn-boot-flags`` defect the record is the bare payload.
        """
        body = encode_record(kind, payload, bare="torn-boot-flags" in self.defects)
        offset = self._log_end()
        if offset + len(body) > len(self.boot_area):
            raise FlashError("boot-state area full")
        self.program("boot", offset, body)

    def _records(self) -> list[tuple[int, bytes, int]]:
        """(type, payload, end offset) of every record, torn ones included (payload b"" if torn)."""
        return parse_log(self.boot_area, bare="torn-boot-flags" in self.defects)

    def _log_end(self) -> int:
        records = self._records()
        return records[-1][2] if records else 0

    def boot_state(self) -> BootState:
        """Read the boot-state log back (torn records are skipped)."""
        state = BootState()
        for kind, payload, _end in self._records():
            if kind == REC_REQUEST and len(payload) == 2 * _INFO.size + 1:
                new = _unpack_info(payload[: _INFO.size])
                old = _unpack_info(payload[_INFO.size : 2 * _INFO.size])
                state.request = (new, old, payload[-1])
            elif kind == REC_STATUS and len(payload) == STATUS_RECORD.size:
                op, index, step = STATUS_RECORD.unpack(payload)
                state.progress[op] = (index, step)
            elif kind == REC_DONE and len(payload) == 1:
                state.done.add(payload[0])
            elif kind == REC_ATTEMPT:
                state.attempts += 1
            elif kind == REC_CONFIRM:
                state.confirmed = True
            elif kind == REC_CANCEL:
                state.cancelled = True
        return state


def _pack_info(info: ImageInfo) -> bytes:
    return _INFO.pack(info.size, info.sha256, info.file_version, info.stack_version)


def _unpack_info(data: bytes) -> ImageInfo:
    size, sha, version, stack = _INFO.unpack(data)
    return ImageInfo(size, sha, version, stack)


def _factory_image(version: int, stack: int) -> bytes:
    """The header-only OTA file that stands for the factory firmware in the primary slot."""
    return struct.pack(
        "<IHHHHHIH32sI",
        0x0BEEF11E,
        0x0100,
        OTA_HEADER_MIN_LENGTH,
        0,
        0,
        0,
        version,
        stack,
        FACTORY_HEADER_STRING.ljust(32, b"\0"),
        OTA_HEADER_MIN_LENGTH,
    )
