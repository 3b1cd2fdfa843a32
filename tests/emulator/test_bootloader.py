"""The emulated bootloader: swap, confirm and revert, swept with a power cut at every flash step.

The sweep follows MCUboot's simulator (``sim/tests/core.rs``: ``run_perm_with_fails`` and
``run_revert_with_fails``): a dry run counts the flash steps N of a whole install, then the install
is repeated with the power cut at step i for every i in 1..N, and the device is powered up again.
Beyond MCUboot, each step is cut in three ways: before it, after it, and in its middle (torn).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
from dataclasses import dataclass

import looptime
import pytest

from testbeds.emulator.bootloader import BootResult, boot, power_up
from testbeds.emulator.defects import DEFECTS
from testbeds.emulator.device import DeviceConfig, EmulatedDevice
from testbeds.emulator.flash import (
    OP_REVERT,
    OP_SWAP,
    BootState,
    CutMode,
    Flash,
    FlashError,
    FlashFaults,
    PowerCut,
    sectors_for,
)
from testbeds.emulator.premises import Premises

MFR, ITYPE = 0x1234, 0x5678
SECTOR = 4096
SLOT = 8 * SECTOR
FACTORY, OLD, NEW = 0x01000000, 0x01000100, 0x01000200
MODES: tuple[CutMode, ...] = ("before", "after", "torn")


def ota_file(version: int, size: int, text: bytes = b"test image") -> bytes:
    """An OTA file (ZCL §11.4.2) of exactly ``size`` bytes, with a body that differs per version."""
    header = struct.pack(
        "<IHHHHHIH32sI", 0x0BEEF11E, 0x0100, 56, 0, MFR, ITYPE, version, 3, text.ljust(32, b"\0"), size
    )
    rng = random.Random(version)
    return header + rng.randbytes(size - len(header))


OLD_IMAGE = ota_file(OLD, 3 * SECTOR - 100)  # the old image ends inside its last sector
NEW_IMAGE = ota_file(NEW, 4 * SECTOR)  # 16 KiB: four whole sectors
BAD_IMAGE = ota_file(NEW, 4 * SECTOR, b"v2 SELFTEST-FAIL")


def download(flash: Flash, image: bytes) -> None:
    version = struct.unpack_from("<I", image, 14)[0]
    flash.begin_download(manufacturer_code=MFR, image_type=ITYPE, file_version=version, image_size=len(image))
    for offset in range(0, len(image), 64):
        flash.write_block(offset, image[offset : offset + 64])
    flash.mark_pending_activation()


def install(flash: Flash) -> list[BootResult]:
    """What the OTA client and device do at the upgrade time: request the install, reset, boot."""
    flash.activate()
    return power_up(flash)


@dataclass
class Prepared:
    flash: Flash
    primary_before: bytes  # the swapped span of each slot before the install
    secondary_before: bytes
    span: int


def prepared(new_image: bytes, defects: frozenset[str] = frozenset()) -> Prepared:
    """A device running a confirmed OLD image (installed over the air), with ``new_image`` downloaded."""
    flash = Flash(factory_version=FACTORY, factory_stack_version=2, slot_size=SLOT, sector_size=SECTOR)
    flash.defects = defects
    download(flash, OLD_IMAGE)
    [result] = install(flash)
    assert (result.action, result.slot_version) == ("swapped", OLD)
    download(flash, new_image)
    span = sectors_for(max(len(OLD_IMAGE), len(new_image)), SECTOR) * SECTOR
    return Prepared(flash, bytes(flash.primary[:span]), bytes(flash.secondary[:span]), span)


def count_steps(new_image: bytes, defects: frozenset[str] = frozenset()) -> int:
    """The dry run: flash steps of a whole install (request, swap, boots, confirm or revert)."""
    prep = prepared(new_image, defects)
    prep.flash.faults = FlashFaults()
    install(prep.flash)
    return prep.flash.faults.steps


@dataclass
class Outcome:
    cut: str
    boots: list[BootResult]
    running: int | None
    bricked: bool
    slots_swapped: bool  # primary holds what secondary held and vice versa
    slots_unchanged: bool
    state: BootState


def cut_and_recover(
    new_image: bytes, step: int, mode: CutMode, defects: frozenset[str] = frozenset()
) -> Outcome:
    """Install with the power cut at ``step``, then power up again (and, as the OTA client does,
    activate again if the download still waits for it) until the device settles."""
    prep = prepared(new_image, defects)
    flash = prep.flash
    flash.faults = FlashFaults(cut_at=step, mode=mode)
    with pytest.raises(PowerCut) as cut:
        install(flash)
    boots = power_up(flash)
    if boots[-1].action != "bricked" and flash.pending_activation:
        boots += install(flash)
    last = boots[-1]
    return Outcome(
        cut=str(cut.value),
        boots=boots,
        running=last.slot_version,
        bricked=last.action == "bricked",
        slots_swapped=(
            bytes(flash.primary[: prep.span]) == prep.secondary_before
            and bytes(flash.secondary[: prep.span]) == prep.primary_before
        ),
        slots_unchanged=(
            bytes(flash.primary[: prep.span]) == prep.primary_before
            and bytes(flash.secondary[: prep.span]) == prep.secondary_before
        ),
        state=flash.boot_state(),
    )


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


N_UPGRADE = count_steps(NEW_IMAGE)
N_REVERT = count_steps(BAD_IMAGE)


# -- the clean runs ------------------------------------------------------------------------------


def test_dry_run_step_counts() -> None:
    # request: erase the boot-state sector + program the request (2); swap: 4 sectors x 3 copies x
    # (erase, program, status record) = 36; "swap done" + try 1 (2); confirm (1).
    assert N_UPGRADE == 2 + 36 + 2 + 1
    # ... and for a bad image: tries 2 and 3 (2) instead of the confirm, then the revert (36 + 1).
    assert N_REVERT == 2 + 36 + 2 + 2 + 36 + 1


def test_clean_upgrade_swaps_the_slots_and_confirms() -> None:
    prep = prepared(NEW_IMAGE)
    flash = prep.flash
    [result] = install(flash)
    assert result == BootResult(NEW, "swapped", "new image unconfirmed, boot 1 of 3")
    assert flash.confirmed
    assert flash.running.file_version == NEW and flash.running.image == NEW_IMAGE
    assert sha(flash.slot_image("primary")) == sha(NEW_IMAGE)
    assert flash.slot_image("secondary") == OLD_IMAGE
    assert bytes(flash.primary[: prep.span]) == prep.secondary_before
    assert bytes(flash.secondary[: prep.span]) == prep.primary_before
    assert boot(flash) == BootResult(NEW, "normal", "new image, confirmed")


def test_bad_image_reverts_after_its_tries() -> None:
    prep = prepared(BAD_IMAGE)
    boots = install(prep.flash)
    assert [(b.action, b.slot_version) for b in boots] == [
        ("swapped", NEW),
        ("normal", NEW),
        ("normal", NEW),
        ("reverted", OLD),
    ]
    assert prep.flash.running.file_version == OLD
    assert bytes(prep.flash.primary[: prep.span]) == prep.primary_before
    assert bytes(prep.flash.secondary[: prep.span]) == prep.secondary_before
    state = prep.flash.boot_state()
    assert OP_SWAP in state.done and OP_REVERT in state.done and not state.confirmed
    assert boot(prep.flash).action == "normal"


@pytest.mark.parametrize("tries", [1, 2, 7])
def test_revert_comes_on_the_boot_after_the_declared_tries(tries: int) -> None:
    prep = prepared(BAD_IMAGE)
    prep.flash.boot_tries = tries
    boots = install(prep.flash)
    assert len(boots) == tries + 1
    assert boots[-1].action == "reverted" and boots[-1].slot_version == OLD


def test_self_test_flag_makes_any_image_bad() -> None:
    prep = prepared(NEW_IMAGE)
    prep.flash.self_test_fails = True
    boots = install(prep.flash)
    # The flag fails every self-test, the old image's too: it reverts, then boot-loops on OLD.
    assert boots[3] == BootResult(OLD, "reverted", "new image not confirmed after 3 boots")
    assert {b.slot_version for b in boots[4:]} == {OLD}


def test_factory_image_reverts_back_to_factory() -> None:
    flash = Flash(factory_version=FACTORY, factory_stack_version=2, slot_size=SLOT, sector_size=SECTOR)
    download(flash, BAD_IMAGE)
    boots = install(flash)
    assert boots[-1].action == "reverted"
    assert flash.running.file_version == FACTORY and flash.running.image == b""


def test_secondary_damaged_after_the_request_is_refused_and_the_old_image_runs() -> None:
    prep = prepared(NEW_IMAGE)
    flash = prep.flash
    flash.activate()
    flash.secondary[5000] ^= 0x01  # bit rot (or a bad write) after activation
    result = boot(flash)
    assert result.action == "normal" and result.slot_version == OLD
    assert "install refused" in result.detail and "SHA-256" in result.detail
    assert bytes(flash.primary[: prep.span]) == prep.primary_before
    assert boot(flash).detail == "install called off"


def test_activate_refuses_an_image_changed_since_it_was_verified() -> None:
    prep = prepared(NEW_IMAGE)
    prep.flash.secondary[100] ^= 0xFF
    with pytest.raises(FlashError, match="SHA-256"):
        prep.flash.activate()
    assert boot(prep.flash).slot_version == OLD


def test_a_new_download_calls_off_an_install_not_yet_carried_out() -> None:
    prep = prepared(NEW_IMAGE)
    prep.flash.activate()
    download(prep.flash, ota_file(NEW + 1, 2 * SECTOR))
    assert boot(prep.flash) == BootResult(OLD, "normal", "install called off")


def test_torn_boot_record_is_recognised() -> None:
    prep = prepared(NEW_IMAGE)
    prep.flash.faults = FlashFaults(cut_at=2, mode="torn")  # the request record
    with pytest.raises(PowerCut, match="last byte"):
        prep.flash.activate()
    assert prep.flash.boot_state().request is None
    assert prep.flash.pending_activation  # the OTA client will activate again
    assert boot(prep.flash) == BootResult(OLD, "normal", "no install pending")


# -- the sweep -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_upgrade_survives_a_cut_at_every_step(mode: CutMode) -> None:
    resumed = 0
    for step in range(1, N_UPGRADE + 1):
        out = cut_and_recover(NEW_IMAGE, step, mode)
        where = f"cut at step {step}/{N_UPGRADE} ({out.cut}): {out.boots}"
        assert not out.bricked, where
        assert out.running == NEW, where
        assert out.slots_swapped, where
        assert out.state.done == {OP_SWAP} and out.state.confirmed, where
        resumed += any(b.action == "resumed-swap" for b in out.boots)
    assert resumed >= 30  # most cuts land inside the swap and are resumed


@pytest.mark.parametrize("mode", MODES)
def test_revert_survives_a_cut_at_every_step(mode: CutMode) -> None:
    for step in range(1, N_REVERT + 1):
        out = cut_and_recover(BAD_IMAGE, step, mode)
        where = f"cut at step {step}/{N_REVERT} ({out.cut}): {out.boots}"
        assert not out.bricked, where
        assert out.running == OLD, where
        assert out.boots[-1].action in ("reverted", "normal"), where
        assert out.slots_unchanged, where  # swapped there and back again
        assert out.state.done == {OP_SWAP, OP_REVERT} and not out.state.confirmed, where


def test_random_sequences_of_several_cuts() -> None:
    """Seeded random cuts, one to four per run, each landing while the last recovery is under way."""
    rng = random.Random(20261126)
    for run in range(150):
        image = rng.choice([NEW_IMAGE, BAD_IMAGE])
        prep = prepared(image)
        flash = prep.flash
        cuts = rng.randint(1, 4)
        for _ in range(cuts):
            flash.faults = FlashFaults(cut_at=rng.randint(1, 45), mode=rng.choice(MODES))
            try:
                if flash.pending_activation:
                    flash.activate()
                power_up(flash)
            except PowerCut:
                pass
        flash.faults = None
        boots = power_up(flash)
        if flash.pending_activation:
            boots += install(flash)
        where = f"run {run}: {boots}"
        assert boots[-1].action != "bricked", where
        if image is NEW_IMAGE:
            assert boots[-1].slot_version == NEW and flash.confirmed, where
            assert bytes(flash.primary[: prep.span]) == prep.secondary_before, where
        else:
            assert boots[-1].slot_version == OLD, where
            assert bytes(flash.primary[: prep.span]) == prep.primary_before, where


# -- defects: each one visible, the healthy firmware not -------------------------------------------


def test_bootloader_defects_are_known() -> None:
    for name in (
        "bricks-on-cut-during-swap",
        "torn-boot-flags",
        "no-boot-try-counter",
        "confirms-before-self-test",
    ):
        assert name in DEFECTS


def _bricked_steps(image: bytes, mode: CutMode, defects: frozenset[str], steps: int) -> list[int]:
    return [s for s in range(1, steps + 1) if cut_and_recover(image, s, mode, defects).bricked]


@pytest.mark.parametrize("image", [NEW_IMAGE, BAD_IMAGE], ids=["upgrade", "revert"])
def test_bricks_on_cut_during_swap(image: bytes) -> None:
    defect = frozenset({"bricks-on-cut-during-swap"})
    steps = count_steps(image, defect)  # fewer: no status records
    for mode in MODES:
        assert _bricked_steps(image, mode, defect, steps), f"a cut mid-swap ({mode}) must brick"
    assert _bricked_steps(image, "after", frozenset(), count_steps(image)) == []


def test_torn_boot_flags_is_caught_only_by_torn_cuts() -> None:
    defect = frozenset({"torn-boot-flags"})
    # A torn status record for a sector's first or second copy reads as "sector done" (0xFF).
    bricked = _bricked_steps(NEW_IMAGE, "torn", defect, N_UPGRADE)
    assert bricked == [5, 8, 14, 17, 23, 26, 32, 35]
    assert _bricked_steps(NEW_IMAGE, "torn", frozenset(), N_UPGRADE) == []
    # A sweep that cuts only between steps (as MCUboot's does) misses it: MCUboot #1966.
    assert _bricked_steps(NEW_IMAGE, "before", defect, N_UPGRADE) == []
    assert _bricked_steps(NEW_IMAGE, "after", defect, N_UPGRADE) == []


def test_no_boot_try_counter_boot_loops_on_a_bad_image() -> None:
    prep = prepared(BAD_IMAGE, frozenset({"no-boot-try-counter"}))
    boots = install(prep.flash)
    assert len(boots) == 10 and all(b.slot_version == NEW for b in boots)  # never reverts
    assert not prep.flash.confirmed
    healthy = install(prepared(BAD_IMAGE).flash)
    assert healthy[-1].action == "reverted"


def test_confirms_before_self_test_keeps_a_bad_image() -> None:
    prep = prepared(BAD_IMAGE, frozenset({"confirms-before-self-test"}))
    boots = install(prep.flash)
    assert prep.flash.confirmed
    assert len(boots) == 10 and all(b.slot_version == NEW for b in boots)
    assert all(b.action != "reverted" for b in boots)


# -- on the emulated device: boot at power-on, confirm after the self-test ---------------------------


def _device_config(defects: frozenset[str]) -> DeviceConfig:
    return DeviceConfig(
        name="B1",
        type="B1",
        ieee=bytes([1, 0x10, 0, 0, 0, 0, 0, 1]),
        nwk=0x1001,
        pan_id=0x1A62,
        role="router",
        manufacturer_code=MFR,
        manufacturer_name="test",
        model="B1",
        image_type=ITYPE,
        hardware_version=1,
        firmware_version=FACTORY,
        stack_version=2,
        power_source="mains",
        defects=defects,
    )


def _device_install(
    image: bytes, defects: frozenset[str] = frozenset(), seconds: float = 60.0
) -> EmulatedDevice:
    """Boot an emulated router, give it ``image`` as if downloaded and activated, reset it, run a while."""
    loop = looptime.new_event_loop(start=0.0, noop_cycles=0)
    try:
        premises = Premises(loop=loop, devices=[_device_config(defects)], links=[], seed=7)
        device = premises.emulate("B1")

        async def scenario() -> None:
            device.power_on()
            await asyncio.sleep(3.0)
            download(device.flash, image)
            device.flash.activate()
            device.power_off()
            device.power_on()
            await asyncio.sleep(seconds)

        loop.run_until_complete(scenario())
        premises.shutdown()
        return device
    finally:
        loop.close()


def _logged(device: EmulatedDevice, text: str) -> int:
    return sum(text in line for _, line in device.log_book.lines)


def test_device_confirms_a_good_image_after_its_self_test() -> None:
    device = _device_install(NEW_IMAGE)
    assert device.flash.running.file_version == NEW and device.flash.confirmed
    assert device.boots == 2
    assert _logged(device, "bootloader: swapped") == 1
    assert _logged(device, "self-test passed: image confirmed") == 1


def test_device_reverts_a_bad_image_after_three_failed_self_tests() -> None:
    device = _device_install(BAD_IMAGE)
    assert device.flash.running.file_version == FACTORY
    assert _logged(device, "self-test FAILED") == 3
    assert _logged(device, "bootloader: reverted") == 1
    assert device.boots == 2 + 3


def test_device_that_confirms_before_its_self_test_boot_loops_on_a_bad_image() -> None:
    device = _device_install(BAD_IMAGE, frozenset({"confirms-before-self-test"}))
    assert device.flash.running.file_version == NEW
    assert _logged(device, "bootloader: reverted") == 0
    assert _logged(device, "self-test FAILED") >= 20  # one reset every 2.2 s, forever


def test_device_without_a_try_counter_boot_loops_on_a_bad_image() -> None:
    device = _device_install(BAD_IMAGE, frozenset({"no-boot-try-counter"}))
    assert device.flash.running.file_version == NEW and not device.flash.confirmed
    assert _logged(device, "bootloader: reverted") == 0
    assert _logged(device, "self-test FAILED") >= 20
