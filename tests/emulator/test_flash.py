"""Simulated flash of an emulated device: download area, install request and work counters."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbeds.emulator.bootloader import boot
from testbeds.emulator.flash import (
    CutMode,
    DownloadMeta,
    FirmwareSlot,
    Flash,
    FlashError,
    FlashFaults,
    PowerCut,
)

MFR, ITYPE = 0x1234, 0x5678


def ota_file(
    *,
    version: int = 0x01000100,
    stack: int = 0x0003,
    body: bytes = b"firmware" * 20,
    total: int | None = None,
) -> bytes:
    """A minimal OTA file (ZCL §11.4.2): 56-byte header, no optional fields, then the body."""
    header_length = 56
    size = header_length + len(body) if total is None else total
    header = struct.pack(
        "<IHHHHHIH32sI",
        0x0BEEF11E,
        0x0100,
        header_length,
        0,
        MFR,
        ITYPE,
        version,
        stack,
        b"test image".ljust(32, b"\0"),
        size,
    )
    return header + body


def fresh(slot_size: int = 4096) -> Flash:
    return Flash(factory_version=0x01000000, factory_stack_version=0x0002, slot_size=slot_size)


def begin(flash: Flash, image: bytes, version: int = 0x01000100) -> None:
    flash.begin_download(manufacturer_code=MFR, image_type=ITYPE, file_version=version, image_size=len(image))


def test_factory_state() -> None:
    flash = fresh()
    assert flash.running.file_version == 0x01000000
    assert flash.running.stack_version == 0x0002
    assert flash.running.image == b""
    assert flash.download_meta is None
    assert flash.download_offset == 0
    assert flash.pending_activation is False
    assert (flash.erase_count, flash.bytes_written) == (0, 0)


def test_sequential_writes_build_the_image_and_count_work() -> None:
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    assert flash.download_meta == DownloadMeta(MFR, ITYPE, 0x01000100, len(image))
    assert flash.erase_count == 1
    for offset in range(0, len(image), 50):
        flash.write_block(offset, image[offset : offset + 50])
    assert flash.download_offset == len(image)
    assert flash.downloaded_image() == image
    # The image, plus the download log: the begin record (19 bytes), the bank's epoch (11) and one
    # offset record (11) per block.
    assert flash.bytes_written == len(image) + 19 + 11 + 5 * 11


def test_rewrite_is_allowed_and_never_moves_the_offset_back() -> None:
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image[:100])
    flash.write_block(40, image[40:60])
    assert flash.download_offset == 100
    flash.write_block(90, image[90:130])  # overlaps the end: extends
    assert flash.download_offset == 130
    assert flash.downloaded_image() == image[:130]


def test_gap_is_refused() -> None:
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image[:10])
    with pytest.raises(FlashError, match="gap"):
        flash.write_block(11, image[11:20])
    assert flash.download_offset == 10


def test_write_past_image_size_is_refused() -> None:
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image)
    with pytest.raises(FlashError, match="image size"):
        flash.write_block(len(image) - 1, b"\x00\x00")


def test_image_larger_than_slot_is_refused_and_writes_past_the_slot_too() -> None:
    flash = fresh(slot_size=100)
    with pytest.raises(FlashError, match="slot"):
        flash.begin_download(manufacturer_code=MFR, image_type=ITYPE, file_version=1, image_size=101)
    flash.begin_download(manufacturer_code=MFR, image_type=ITYPE, file_version=1, image_size=100)
    flash.write_block(0, bytes(90))
    with pytest.raises(FlashError, match="slot size"):
        flash.write_block(90, bytes(20))


def test_write_without_begin_is_refused() -> None:
    with pytest.raises(FlashError):
        fresh().write_block(0, b"x")


def test_begin_again_erases_the_partial_download() -> None:
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image[:64])
    begin(flash, image, version=0x01000200)
    assert flash.download_offset == 0
    assert flash.downloaded_image() == b""
    assert flash.download_meta is not None and flash.download_meta.file_version == 0x01000200
    assert flash.erase_count == 2


def test_pending_activation_needs_the_whole_image() -> None:
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image[:-1])
    with pytest.raises(FlashError):
        flash.mark_pending_activation()
    flash.write_block(len(image) - 1, image[-1:])
    flash.mark_pending_activation()
    assert flash.pending_activation
    with pytest.raises(FlashError):  # a complete, verified image is not written to any more
        flash.write_block(0, image[:1])


def test_activate_installs_the_image_with_the_version_from_its_header() -> None:
    flash = fresh()
    image = ota_file(version=0x01000700, stack=0x0005)
    begin(flash, image, version=0x01000700)
    flash.write_block(0, image)
    flash.mark_pending_activation()
    erases = flash.erase_count
    flash.activate()
    # activate() only checks the image and requests the install: the running slot is untouched ...
    assert flash.erase_count == erases + 1  # the boot-state area, before the request is written
    assert flash.slot_image("primary") != image
    # ... but the device already reports the image it is about to reset into.
    assert flash.running.file_version == 0x01000700
    assert flash.running.stack_version == 0x0005
    assert flash.running.image == image
    assert flash.download_meta is None
    assert flash.download_offset == 0
    assert not flash.pending_activation
    result = boot(flash)
    assert (result.action, result.slot_version) == ("swapped", 0x01000700)
    assert flash.slot_image("primary") == image
    assert flash.running == FirmwareSlot(0x01000700, 0x0005, image)


def test_activate_without_a_pending_image_is_refused() -> None:
    flash = fresh()
    with pytest.raises(FlashError):
        flash.activate()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image)
    with pytest.raises(FlashError):  # complete but not verified
        flash.activate()
    assert flash.running.file_version == 0x01000000


def test_activate_refuses_an_image_without_a_header_and_keeps_the_old_firmware() -> None:
    flash = fresh()
    junk = bytes(100)
    flash.begin_download(manufacturer_code=MFR, image_type=ITYPE, file_version=2, image_size=len(junk))
    flash.write_block(0, junk)
    flash.mark_pending_activation()
    with pytest.raises(FlashError, match="OTA header"):
        flash.activate()
    assert flash.running.file_version == 0x01000000
    assert flash.running.image == b""


def test_discard_download() -> None:
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image)
    flash.mark_pending_activation()
    flash.discard_download()
    assert flash.download_meta is None
    assert flash.download_offset == 0
    assert not flash.pending_activation
    assert flash.downloaded_image() == b""
    assert flash.running.file_version == 0x01000000


def test_state_survives_a_device_rebuild() -> None:
    """The flash object is what a rebuilt device is handed: nothing in it depends on the device."""
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image[:77])
    held_by_new_device = flash
    assert held_by_new_device.download_offset == 77
    assert held_by_new_device.downloaded_image() == image[:77]


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(min_size=0, max_size=600),
    chunks=st.lists(st.integers(min_value=1, max_value=80), min_size=1, max_size=40),
    rewinds=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=40),
)
def test_any_chunking_with_rewrites_reproduces_the_image(
    body: bytes, chunks: list[int], rewinds: list[int]
) -> None:
    flash = fresh(slot_size=1024)
    image = ota_file(body=body)
    begin(flash, image)
    i = 0
    while flash.download_offset < len(image):
        # sometimes go back a little (a re-sent block), never past the start; always make progress
        offset = max(0, flash.download_offset - rewinds[i % len(rewinds)] % 3 * 10)
        size = flash.download_offset - offset + chunks[i % len(chunks)]
        flash.write_block(offset, image[offset : offset + size])
        i += 1
    assert flash.downloaded_image() == image
    flash.mark_pending_activation()
    flash.activate()
    assert boot(flash).action == "swapped"
    assert flash.running.image == image == flash.slot_image("primary")
    assert flash.running.file_version == 0x01000100


# -- steps and power cuts --------------------------------------------------------------------------


def _cut(flash: Flash, mode: CutMode) -> None:
    flash.faults = FlashFaults(cut_at=1, mode=mode)


def test_every_erase_and_program_is_one_step() -> None:
    flash = fresh(slot_size=4 * 1024)
    flash.faults = FlashFaults()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image[:100])
    flash.write_block(100, image[100:])
    assert flash.faults.steps == 7
    assert flash.faults.trace == [
        "erase secondary[0]",
        "program dl@16+19",  # the begin record, in the download log's first bank ...
        "program dl@0+11",  # ... whose epoch record is programmed last
        "program secondary@0+100",  # each block, then its new offset
        "program dl@35+11",
        f"program secondary@100+{len(image) - 100}",
        "program dl@46+11",
    ]


def test_cut_before_a_program_writes_nothing_and_after_writes_everything() -> None:
    flash = fresh()
    begin(flash, ota_file())
    _cut(flash, "before")
    with pytest.raises(PowerCut, match="before"):
        flash.write_block(0, b"abcd")
    assert bytes(flash.secondary[:4]) == b"\xff" * 4 and flash.download_offset == 0
    _cut(flash, "after")
    with pytest.raises(PowerCut, match="after"):
        flash.write_block(0, b"abcd")
    assert bytes(flash.secondary[:4]) == b"abcd"
    assert flash.faults is not None and flash.faults.fired and flash.faults.cut_at is None


def test_torn_program_misses_its_last_byte_and_torn_erase_clears_half_the_sector() -> None:
    flash = fresh(slot_size=1024)
    begin(flash, ota_file())
    _cut(flash, "torn")
    with pytest.raises(PowerCut, match="last byte"):
        flash.program("secondary", 0, b"abcd")
    assert bytes(flash.secondary[:4]) == b"abc\xff"
    flash.program("secondary", 0, b"x" * 1024)
    _cut(flash, "torn")
    with pytest.raises(PowerCut, match="middle of erase"):
        flash.erase_sector("secondary", 0)
    assert bytes(flash.secondary) == b"\xff" * 512 + b"x" * 512


def test_the_factory_image_is_a_header_only_ota_file_in_the_primary_slot() -> None:
    flash = fresh()
    info = flash.primary_info()
    assert info is not None and (info.size, info.file_version, info.stack_version) == (56, 0x01000000, 2)
    assert flash.confirmed


# -- the download log: bookkeeping that survives a cut at any step -----------------------------------


def _download_with_cut(
    image: bytes, block: int, step: int, mode: CutMode, slot_size: int, make: type[Flash] = Flash
) -> Flash:
    flash = make(factory_version=0x01000000, factory_stack_version=0x0002, slot_size=slot_size)
    flash.faults = FlashFaults(cut_at=step, mode=mode)
    try:
        begin(flash, image)
        for offset in range(0, len(image), block):
            flash.write_block(offset, image[offset : offset + block])
        flash.mark_pending_activation()
    except PowerCut:
        pass
    flash.faults = None
    return flash


def _resume(flash: Flash, image: bytes, block: int) -> None:
    """What the OTA client does after the cut: resume at the recorded offset, or begin again."""
    if flash.download_meta is None:
        begin(flash, image)
    while flash.download_offset < len(image):
        offset = flash.download_offset
        flash.write_block(offset, image[offset : offset + block])
    if not flash.pending_activation:
        flash.mark_pending_activation()


@pytest.mark.parametrize("mode", ["before", "after", "torn"])
@pytest.mark.parametrize("slot_size", [4096, 256], ids=["one-bank", "banks-rotate"])
def test_download_bookkeeping_survives_a_cut_at_every_step(mode: CutMode, slot_size: int) -> None:
    """A cut during a block write or its offset record: the recorded offset never passes data that
    was not written, and the resumed download is the image, byte for byte."""
    image = ota_file(body=(bytes(range(256)) * 16)[: slot_size - 8 - 56 - 4] + b"tail")
    block = 24 if slot_size == 4096 else 4  # small blocks fill a 256-byte bank twice over
    dry = fresh(slot_size=slot_size)
    dry.faults = FlashFaults()
    begin(dry, image)
    for offset in range(0, len(image), block):
        dry.write_block(offset, image[offset : offset + block])
    dry.mark_pending_activation()
    steps = dry.faults.steps
    moves = sum(t.endswith("+11") and t.startswith("program dl@0") for t in dry.faults.trace)
    if slot_size == 256:
        assert any(t.startswith("erase dl") for t in dry.faults.trace), "the banks must rotate"
        assert moves >= 2
    resumed_mid_image = 0
    for step in range(1, steps + 1):
        flash = _download_with_cut(image, block, step, mode, slot_size)
        stored = flash.download_offset
        where = f"cut {mode} step {step}/{steps} ({dry.faults.trace[step - 1]})"
        assert flash.downloaded_image() == image[:stored], where  # never past unwritten data
        if flash.pending_activation:
            assert flash.download_sha256 == hashlib.sha256(image).digest(), where
        resumed_mid_image += 0 < stored < len(image)
        _resume(flash, image, block)
        assert flash.downloaded_image() == image, where
        flash.activate()
        assert boot(flash).action == "swapped", where
        assert flash.running.image == image, where
    assert resumed_mid_image >= steps // 2


def test_a_cut_between_a_block_and_its_offset_record_resumes_at_the_previous_block() -> None:
    image = ota_file()
    flash = fresh()
    begin(flash, image)
    flash.write_block(0, image[:50])
    flash.faults = FlashFaults(cut_at=2, mode="torn")  # the offset record of the second block
    with pytest.raises(PowerCut, match="last byte"):
        flash.write_block(50, image[50:100])
    assert bytes(flash.secondary[50:100]) == image[50:100]  # the block is there ...
    assert flash.download_offset == 50  # ... but not recorded: it is fetched again
    flash.write_block(50, image[50:100])
    assert flash.download_offset == 100


def test_the_resume_pointer_a_defect_moves_is_recorded_in_flash() -> None:
    flash = fresh()
    image = ota_file()
    begin(flash, image)
    flash.write_block(0, image[:64])
    flash.download_offset = 100  # what resumes-at-wrong-offset does
    flash._dl_cache = None  # as after a power cut: read the log again
    assert flash.download_offset == 100


class _OffsetFirstFlash(Flash):
    """A defective firmware's bookkeeping: records the new offset before it programs the block."""

    def write_block(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if end > self.download_offset:
            self._dl_append(0x12, end.to_bytes(4, "little"))
        self.program("secondary", offset, data)


def test_recording_the_offset_before_the_block_is_caught() -> None:
    image = ota_file()
    holes = [
        step
        for step in range(1, 20)
        if (f := _download_with_cut(image, 50, step, "before", 4096, _OffsetFirstFlash)).downloaded_image()
        != image[: f.download_offset]
    ]
    assert holes  # a cut between the record and the block leaves a recorded offset past the data
    healthy = [
        step
        for step in range(1, 20)
        if (f := _download_with_cut(image, 50, step, "before", 4096)).downloaded_image()
        != image[: f.download_offset]
    ]
    assert healthy == []
