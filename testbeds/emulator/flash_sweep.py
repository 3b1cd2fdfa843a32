"""Test hooks for the flash power-fail sweep: one install on a scratch copy of a device's flash.

Every emulated device's control port carries three test-hook commands (``docs/control-port.md``),
so the harness can sweep a device's bootloader and download bookkeeping through its port, as a lab
would through a bench device's debug console, and judge the outcome itself:

- ``flash_sweep_load`` ``{"image": "old"|"new", "size": N, "offset": K, "data": "<hex>"}`` stages
  the two images of the scenario, a chunk at a time (a request line holds at most 4096 bytes). The
  reply gives the bytes stored and, once complete, the image's SHA-256.
- ``flash_sweep_plan`` ``{"path": "upgrade"|"revert"|"download", "block_size": B}`` makes a dry run
  and returns the number of flash steps N it takes and the name of each step (``erase primary[2]``).
- ``flash_sweep_point`` ``{"path": ..., "cuts": [{"step": i, "mode": "before"|"after"|"torn"}, ...]}``
  (or one cut as ``"step"`` and ``"cut"``) runs the scenario with the power cut at each listed step
  in turn (the step count restarts after each cut, as the device restarts), powers the device up
  until it settles, lets the firmware finish what it was doing, and reports what the memory then
  holds: ``bricked``, the SHA-256 of the running image and of both slots, and the boot-state flags.

The scenarios, each from the same starting point: the scratch device runs the confirmed ``old``
image, installed over the air.

- ``upgrade``: ``new`` is downloaded and verified; the cuts land in the install (the swap request,
  the bootloader's swap, the boot tries, the confirm). Healthy outcome: ``new`` runs, confirmed,
  ``old`` in the secondary slot.
- ``revert``: the same, but ``new`` fails its self-test after it boots, so the bootloader must swap
  the slots back once its tries are used up; the cuts land anywhere in that. Healthy outcome: ``old``
  runs, ``new`` back in the secondary slot, never confirmed.
- ``download``: the cuts land in the download itself (erasing the slot, each block and the record of
  its offset, the verified record); after each cut the firmware resumes at the offset its flash
  records, then installs. Healthy outcome: as for ``upgrade``.

The scratch copy has the live device's geometry (slot and sector size, boot tries) and its
bootloader's defects, but checks no signatures; the live device's own flash is never touched,
whether it is powered or not. Nothing here knows what a healthy outcome is: the harness judges.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

from .bootloader import BootResult, power_up
from .control_port import Command, CommandError
from .device import EmulatedDevice
from .flash import OP_REVERT, OP_SWAP, CutMode, DownloadMeta, Flash, FlashError, FlashFaults, PowerCut
from .ota_file import OtaFileError, parse_header

__all__ = ["PATHS", "FlashSweepHooks", "flash_sweep_commands"]

PATHS = ("upgrade", "revert", "download")
MODES: tuple[CutMode, ...] = ("before", "after", "torn")
MAX_CUTS = 16
DEFAULT_BLOCK = 1024
# A device that does not settle within this many boots is boot-looping (see bootloader.power_up).
MAX_BOOTS = 10


@dataclass
class _Staged:
    size: int
    data: bytearray


class FlashSweepHooks:
    """The flash power-fail sweep commands of one emulated device's control port."""

    def __init__(self, device: EmulatedDevice) -> None:
        self.device = device
        self._staged: dict[str, _Staged] = {}
        self._prepared: dict[tuple[str, bytes, bytes], Flash] = {}

    def commands(self) -> dict[str, Command]:
        """The commands to add to the device's control port."""
        return {
            "flash_sweep_load": self.load,
            "flash_sweep_plan": self.plan,
            "flash_sweep_point": self.point,
        }

    # ------------------------------------------------------------------------------ commands
    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        """Stage a chunk of the ``old`` or ``new`` image of the scenario."""
        name = request.get("image")
        if name not in ("old", "new"):
            raise CommandError(f'flash_sweep_load needs "image": "old" or "new", got {name!r}')
        slot = self.device.flash.slot_size
        size = _int(request, "size", 1, slot)
        offset = _int(request, "offset", 0, size)
        text = request.get("data")
        if not isinstance(text, str):
            raise CommandError(f'flash_sweep_load needs "data": hex text, got {text!r}')
        try:
            data = bytes.fromhex(text)
        except ValueError:
            raise CommandError(f'flash_sweep_load "data" is not hex: {text[:20]!r}...') from None
        staged = self._staged.get(name)
        if offset == 0 or staged is None or staged.size != size:
            staged = self._staged[name] = _Staged(size, bytearray())
        if offset != len(staged.data):
            raise CommandError(
                f"flash_sweep_load {name}: offset {offset}, but {len(staged.data)} bytes are stored"
            )
        if offset + len(data) > size:
            raise CommandError(f"flash_sweep_load {name}: {offset + len(data)} bytes is past the size {size}")
        staged.data += data
        self._prepared.clear()
        result: dict[str, Any] = {"image": name, "stored": len(staged.data), "size": size}
        if len(staged.data) == size:
            result["sha256"] = hashlib.sha256(staged.data).hexdigest()
        return result

    def plan(self, request: dict[str, Any]) -> dict[str, Any]:
        """The dry run: how many flash steps the scenario takes, and what each one is."""
        path, block = self._path(request)
        flash = self._scratch(path, block)
        flash.faults = FlashFaults()
        _operation(path, flash, self._image("new"), block)
        old, new = self._image("old"), self._image("new")
        return {
            "path": path,
            "steps": flash.faults.steps,
            "trace": flash.faults.trace,
            "block_size": block,
            "old_sha256": hashlib.sha256(old).hexdigest(),
            "new_sha256": hashlib.sha256(new).hexdigest(),
            "sector_size": flash.sector_size,
            "slot_size": flash.slot_size,
        }

    def point(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run the scenario with power cuts at the given steps, recover, and report what flash holds."""
        path, block = self._path(request)
        cuts = _cuts(request)
        flash = self._scratch(path, block)
        new = self._image("new")
        fired: list[dict[str, Any]] = []
        boots: list[BootResult] = []
        for index, (step, mode) in enumerate(cuts):
            flash.faults = FlashFaults(cut_at=step, mode=mode)
            try:
                if index == 0:
                    _operation(path, flash, new, block)
                else:
                    _recover(path, flash, new, block)
                where = None
            except PowerCut as cut:
                where = str(cut)
            faults = flash.faults
            fired.append(
                {
                    "step": step,
                    "mode": mode,
                    "fired": where is not None,
                    "at": faults.trace[step - 1] if where is not None and step <= len(faults.trace) else None,
                }
            )
        flash.faults = None
        try:
            boots = _recover(path, flash, new, block)
        except FlashError as exc:
            raise CommandError(f"flash_sweep_point: the scratch flash refused a step: {exc}") from None
        return _report(path, flash, fired, boots)

    # ----------------------------------------------------------------------------- plumbing
    def _path(self, request: dict[str, Any]) -> tuple[str, int]:
        path = request.get("path")
        if path not in PATHS:
            raise CommandError(f'needs "path": one of {", ".join(PATHS)}, got {path!r}')
        block = request.get("block_size", DEFAULT_BLOCK)
        if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= 65536:
            raise CommandError(f'"block_size" must be a byte count from 1 to 65536, got {block!r}')
        return str(path), block

    def _image(self, name: str) -> bytes:
        staged = self._staged.get(name)
        if staged is None or len(staged.data) != staged.size:
            raise CommandError(f"the {name!r} image is not staged: send it with flash_sweep_load first")
        return bytes(staged.data)

    def _scratch(self, path: str, block: int) -> Flash:
        """A fresh copy of the scenario's starting point (built once per path and images)."""
        old, new = self._image("old"), self._image("new")
        key = (path, hashlib.sha256(old).digest(), hashlib.sha256(new).digest())
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepare(path, old, new)
            self._prepared[key] = prepared
        return copy.deepcopy(prepared)

    def _prepare(self, path: str, old: bytes, new: bytes) -> Flash:
        live = self.device.flash
        config = self.device.factory_config
        flash = Flash(
            factory_version=config.firmware_version,
            factory_stack_version=config.stack_version,
            slot_size=live.slot_size,
            sector_size=live.sector_size,
            boot_tries=live.boot_tries,
            defects=frozenset(live.defects),
        )
        # No trusted signing key: the sweep is about power cuts, and the harness's sweep images are
        # unsigned (signature checks have their own tests: Device Should Refuse Image).
        flash.trusted_key = None
        for name, image in (("old", old), ("new", new)):
            try:
                parse_header(image)
            except OtaFileError as exc:
                raise CommandError(f"the {name!r} image has no valid OTA header: {exc}") from None
        try:
            _download(flash, old, DEFAULT_BLOCK)
            flash.activate()
            results = power_up(flash, max_boots=MAX_BOOTS)
            if results[-1].slot_version is None or not flash.confirmed:
                raise CommandError(
                    f"the scratch device could not install the 'old' image: {results[-1].detail}"
                )
            if path != "download":
                _download(flash, new, DEFAULT_BLOCK)
            if path == "revert":
                flash.self_test_fails_for = frozenset({hashlib.sha256(new).digest()})
        except FlashError as exc:
            raise CommandError(f"the scratch device refused the scenario's images: {exc}") from None
        return flash


def flash_sweep_commands(device: EmulatedDevice) -> dict[str, Command]:
    """The flash power-fail sweep commands for ``device``'s control port."""
    return FlashSweepHooks(device).commands()


# -- the scenario ------------------------------------------------------------------------------


def _meta(image: bytes) -> DownloadMeta:
    header = parse_header(image)
    return DownloadMeta(header.manufacturer_code, header.image_type, header.file_version, len(image))


def _download(flash: Flash, image: bytes, block: int) -> None:
    """What the OTA client does with flash: begin (or resume at the recorded offset), store, verify."""
    meta = _meta(image)
    if flash.download_meta != meta:
        flash.begin_download(
            manufacturer_code=meta.manufacturer_code,
            image_type=meta.image_type,
            file_version=meta.file_version,
            image_size=meta.image_size,
        )
    while flash.download_offset < len(image):
        offset = flash.download_offset
        flash.write_block(offset, image[offset : offset + block])
    if not flash.pending_activation:
        flash.mark_pending_activation()


def _settle(flash: Flash) -> list[BootResult]:
    return power_up(flash, max_boots=MAX_BOOTS)


def _operation(path: str, flash: Flash, new: bytes, block: int) -> None:
    """The operation the cuts are aimed at, from the scenario's starting point."""
    if path == "download":
        _download(flash, new, block)
        return
    flash.activate()
    _settle(flash)


def _recover(path: str, flash: Flash, new: bytes, block: int) -> list[BootResult]:
    """After a cut: power up until the device settles, then let the firmware finish its work."""
    boots = _settle(flash)
    if boots[-1].action == "bricked":
        return boots
    if path == "download" and not _installed(flash, new):
        _download(flash, new, block)  # resumes at the offset flash records
    if flash.pending_activation:
        flash.activate()
        boots += _settle(flash)
    return boots


def _installed(flash: Flash, image: bytes) -> bool:
    state = flash.boot_state()
    return state.request is not None and state.request[0].sha256 == hashlib.sha256(image).digest()


def _sha(data: bytes) -> str | None:
    return hashlib.sha256(data).hexdigest() if data else None


def _report(path: str, flash: Flash, cuts: list[dict[str, Any]], boots: list[BootResult]) -> dict[str, Any]:
    last = boots[-1] if boots else None
    bricked = last is None or last.action == "bricked"
    state = flash.boot_state()
    return {
        "path": path,
        "cuts": cuts,
        "bricked": bricked,
        "boots": [b.action for b in boots],
        "detail": last.detail if last is not None else "",
        "running_version": None if bricked else flash.running.file_version,
        "running_sha256": None if bricked else _sha(flash.running.image),
        "primary_sha256": _sha(flash.slot_image("primary")),
        "secondary_sha256": _sha(flash.slot_image("secondary")),
        "flags": {
            "install_requested": state.request is not None,
            "swap_done": OP_SWAP in state.done,
            "revert_done": OP_REVERT in state.done,
            "image_ok": state.confirmed,
            "cancelled": state.cancelled,
            "download_pending": flash.pending_activation,
        },
    }


def _int(request: dict[str, Any], name: str, low: int, high: int) -> int:
    value = request.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CommandError(f'"{name}" must be an integer from {low} to {high}, got {value!r}')
    return value


def _cuts(request: dict[str, Any]) -> list[tuple[int, CutMode]]:
    raw: Any = request.get("cuts")
    if raw is None and "step" in request:
        raw = [{"step": request.get("step"), "mode": request.get("cut", "before")}]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CUTS:
        raise CommandError(f'needs "cuts": a list of 1 to {MAX_CUTS} {{"step", "mode"}} objects, or "step"')
    out: list[tuple[int, CutMode]] = []
    for cut in raw:
        if not isinstance(cut, dict):
            raise CommandError(f"a cut is an object with step and mode, got {cut!r}")
        step = _int(cut, "step", 1, 1_000_000)
        mode = cut.get("mode", "before")
        if mode not in MODES:
            raise CommandError(f'cut "mode" must be one of {", ".join(MODES)}, got {mode!r}')
        out.append((step, mode))
    return out
