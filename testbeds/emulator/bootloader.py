"""The emulated device's bootloader: installs a requested image, and reverts one that never confirms.

Run at every power-on (:func:`boot`). It follows MCUboot's "swap using scratch" upgrade
(``docs/design.md`` of mcu-tools/mcuboot, "Swap using scratch" and "Boot swap types"):

1. The running firmware downloads into the secondary slot and, at its upgrade time, calls
   :meth:`Flash.activate <testbeds.emulator.flash.Flash.activate>`, which checks the image and writes a
   swap request (MCUboot: the magic in the secondary trailer, "test" swap).
2. At the next boot the bootloader checks the secondary slot again (a valid OTA header, the size
   and SHA-256 recorded in the request), then swaps the two slots sector by sector through the
   scratch sector. Each sector takes three steps, each an erase and a program, and each finished
   step is logged in the boot state (MCUboot: the swap status in the trailer):

   - state 0: scratch <- secondary[i]
   - state 1: secondary[i] <- primary[i]
   - state 2: primary[i] <- scratch

   Every step copies from a sector that no unfinished step writes, so after a power cut the
   bootloader redoes the first step not logged as finished and carries on ("resumed-swap").
3. The new image starts unconfirmed. Each boot of an unconfirmed image is logged (the try
   counter); the firmware confirms itself after its self-test passes (MCUboot: ``image_ok``). A boot
   that finds an unconfirmed image whose tries are used up swaps the slots back the same way
   ("reverted", MCUboot's revert, with a try count as in Android A/B).
4. Before it starts an image the bootloader checks its SHA-256 against the one it expects; an
   image that matches neither leaves the device "bricked".

A bad image, for revert tests: an image whose OTA header string contains ``SELFTEST-FAIL`` (or any
image while ``flash.self_test_fails`` is set) fails its self-test after it boots.

Defects (see :mod:`testbeds.emulator.defects`) are read from ``flash.defects``:
``bricks-on-cut-during-swap`` swaps without logging its progress, so a cut mid-swap cannot be
resumed; ``torn-boot-flags`` writes boot-state records without CRC and commit byte and reads them at
face value; ``no-boot-try-counter`` never counts boots and so never reverts;
``confirms-before-self-test`` confirms the image as soon as it starts; ``skips-signature-check``
swaps in an image whatever its signature.

Signatures: when the device trusts a signing key (``flash.trusted_key``, from the testbed's
``signing_key``), an image must be signed by it (``docs/signing.md``, checked by
:mod:`testbeds.emulator.signature`) before it is swapped in; one that is not is refused like an
image whose SHA-256 is wrong: the request is called off and the download thrown away.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from .flash import (
    FACTORY_HEADER_STRING,
    OP_REVERT,
    OP_SWAP,
    REC_ATTEMPT,
    REC_CANCEL,
    REC_DONE,
    REC_STATUS,
    SELF_TEST_FAIL_MARK,
    STATUS_RECORD,
    FirmwareSlot,
    Flash,
    ImageInfo,
    sectors_for,
)
from .ota_file import OtaFileError, parse_header
from .signature import signature_problem

__all__ = [
    "BootAction",
    "BootResult",
    "boot",
    "firmware_self_test",
    "firmware_started",
    "power_up",
    "self_test_passes",
]

BootAction = Literal["normal", "swapped", "reverted", "resumed-swap", "bricked"]

STATE_DONE = 2  # the last of a sector's three swap steps


@dataclass(frozen=True)
class BootResult:
    """What one boot did: the version it started (None if bricked), what it did, and why."""

    slot_version: int | None
    action: BootAction
    detail: str


def boot(flash: Flash) -> BootResult:
    """Power-on: finish or start a pending swap or revert, then start the primary image.

    A :class:`~testbeds.emulator.flash.PowerCut` from an armed fault injector propagates: the device
    is off again, and the next call carries on from what the flash holds.
    """
    state = flash.boot_state()
    if state.request is None:
        return _start(flash, None, "normal", "no install pending")
    new, old, tries = state.request
    sectors = sectors_for(max(new.size, old.size), flash.sector_size)
    if OP_REVERT in state.done:
        return _start(flash, old, "normal", "running the previous image (the new one was reverted)")
    if OP_REVERT in state.progress:
        _swap(flash, OP_REVERT, sectors, state.progress[OP_REVERT])
        flash.append_record(REC_DONE, bytes([OP_REVERT]))
        return _start(flash, old, "reverted", "revert resumed after a power cut and finished")
    action: BootAction = "normal"
    if OP_SWAP not in state.done:
        if state.cancelled:
            return _start(flash, old, "normal", "install called off")
        resumed = OP_SWAP in state.progress
        if not resumed:
            problem = _check_secondary(flash, new)
            if problem is not None:
                # MCUboot erases a secondary image that fails validation: the request is called off
                # and the download thrown away, so the firmware does not ask for it again.
                flash.append_record(REC_CANCEL, b"")
                flash.discard_download()
                return _start(flash, old, "normal", f"install refused: {problem}")
        _swap(flash, OP_SWAP, sectors, state.progress.get(OP_SWAP))
        flash.append_record(REC_DONE, bytes([OP_SWAP]))
        action = "resumed-swap" if resumed else "swapped"
        state = flash.boot_state()
    if state.confirmed:
        return _start(flash, new, action, "new image, confirmed")
    if "no-boot-try-counter" not in flash.defects:
        if state.attempts >= tries:
            _swap(flash, OP_REVERT, sectors, None)
            flash.append_record(REC_DONE, bytes([OP_REVERT]))
            return _start(flash, old, "reverted", f"new image not confirmed after {tries} boots")
        flash.append_record(REC_ATTEMPT, b"")
        detail = f"new image unconfirmed, boot {state.attempts + 1} of {tries}"
    else:
        detail = "new image unconfirmed (boots not counted)"
    return _start(flash, new, action, detail)


def _check_secondary(flash: Flash, new: ImageInfo) -> str | None:
    """Why the image in the secondary slot must not be swapped in, or None (MCUboot: validate)."""
    image = flash.slot_image("secondary", new.size)
    try:
        header = parse_header(image)
    except OtaFileError as exc:
        return f"no valid OTA header: {exc}"
    if header.total_image_size != new.size:
        return f"header says {header.total_image_size} bytes, the request {new.size}"
    if hashlib.sha256(image).digest() != new.sha256:
        return "SHA-256 of the secondary slot differs from the one recorded at download"
    if flash.trusted_key is not None and "skips-signature-check" not in flash.defects:
        problem = signature_problem(image, flash.trusted_key)
        if problem is not None:
            return f"signature check failed: {problem}"
    return None


def _swap(flash: Flash, op: int, sectors: int, reached: tuple[int, int] | None) -> None:
    """Swap the first ``sectors`` sectors of both slots through scratch, from the step after ``reached``.

    MCUboot ``swap_scratch.c`` (``boot_swap_sectors``) does the same three copies per sector and
    writes the swap status after each.
    """
    if reached is None or "bricks-on-cut-during-swap" in flash.defects:
        index, step = 0, 0
    else:
        index, step = reached
        if step >= STATE_DONE:  # a state this code never writes (0xFF) also reads as "sector done"
            index, step = index + 1, 0
        else:
            step += 1
    size = flash.sector_size
    while index < sectors:
        at = index * size
        if step == 0:
            _copy(flash, "secondary", at, "scratch", 0, size)
        elif step == 1:
            _copy(flash, "primary", at, "secondary", at, size)
        else:
            _copy(flash, "scratch", 0, "primary", at, size)
        if "bricks-on-cut-during-swap" not in flash.defects:
            flash.append_record(REC_STATUS, STATUS_RECORD.pack(op, index, step))
        step += 1
        if step > STATE_DONE:
            index, step = index + 1, 0


def _copy(flash: Flash, source: str, src_at: int, dest: str, dst_at: int, size: int) -> None:
    data = bytes(flash.region(source)[src_at : src_at + size])
    flash.erase_sector(dest, dst_at // size)
    flash.program(dest, dst_at, data)


def _start(flash: Flash, expected: ImageInfo | None, action: BootAction, detail: str) -> BootResult:
    """Check the primary image against what the boot state expects there, and start it."""
    info = flash.primary_info()
    if info is None:
        return BootResult(None, "bricked", f"{detail}; primary slot holds no valid image")
    if expected is not None and info.sha256 != expected.sha256:
        return BootResult(
            None, "bricked", f"{detail}; primary image's SHA-256 matches neither the old nor the new"
        )
    image = flash.slot_image("primary")
    factory = parse_header(image).header_string.rstrip(b"\0") == FACTORY_HEADER_STRING
    flash.running = FirmwareSlot(info.file_version, info.stack_version, b"" if factory else image)
    return BootResult(info.file_version, action, detail)


# -- the firmware's side: self-test and confirm --------------------------------------------------


def self_test_passes(flash: Flash) -> bool:
    """Whether the running image passes its self-test (fails: ``SELFTEST-FAIL`` in its header string)."""
    if flash.self_test_fails:
        return False
    image = flash.slot_image("primary")
    if flash.self_test_fails_for and hashlib.sha256(image).digest() in flash.self_test_fails_for:
        return False
    try:
        header = parse_header(image)
    except OtaFileError:
        return False
    return SELF_TEST_FAIL_MARK not in header.header_string


def firmware_started(flash: Flash) -> None:
    """What the firmware does as soon as it starts (only the defective one confirms here)."""
    if "confirms-before-self-test" in flash.defects:
        flash.confirm()


def firmware_self_test(flash: Flash) -> bool:
    """Run the self-test once the device is up; confirm the image if it passes. True if it passed."""
    if not self_test_passes(flash):
        return False
    flash.confirm()
    return True


def power_up(flash: Flash, *, max_boots: int = 10) -> list[BootResult]:
    """Boot, start and self-test, resetting after each failed self-test, until the device settles.

    Settled: it runs an image that passed its self-test, or it is bricked; at most ``max_boots``
    boots (a device in a boot loop never settles). Returns every boot's result.
    """
    results: list[BootResult] = []
    for _ in range(max_boots):
        result = boot(flash)
        results.append(result)
        if result.action == "bricked":
            break
        firmware_started(flash)
        if firmware_self_test(flash):
            break
    return results
