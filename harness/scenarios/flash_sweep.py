"""The flash power-fail sweep (goal G1), driven through a device's control port and judged here.

The device's control port carries three test hooks (``docs/control-port.md``, "Flash power-fail
sweep"): stage two images, make a dry run of a scenario to learn its N flash steps, and run the
scenario on a scratch copy of the device's flash with the power cut at chosen steps, reporting what
the memory holds once the device settles. This module builds the two images itself (so it knows
their SHA-256 without asking the device), asks for every point of the sweep and judges each reply:

- the scenarios ("paths"): ``upgrade`` (install a good image) and ``revert`` (install an image that
  fails its self-test, so the bootloader must swap back), as MCUboot's simulator sweeps them, plus
  ``download`` (the block writes and the record of the offset reached);
- the points: every step 1..N of each path, cut ``before`` it, ``after`` it and ``torn`` in its
  middle, then seeded random sequences of 1 to 5 cuts, each landing while the previous recovery is
  under way;
- a point passes when the device is not bricked, runs exactly the image the path must end with
  (the new one after an upgrade or a download, the old one after a revert), holds that image in its
  primary slot and the other one in its secondary slot (SHA-256 of both), and its boot-state flags
  agree (swap done; revert done only on the revert path; confirmed unless reverted; nothing left
  pending).

Nothing here knows how the device stores anything: it sees JSON replies, as from a bench device.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import BadInputError, BenchError
from harness.ota.image import build_image_of_total_size
from harness.ports.control import ControlPort

__all__ = [
    "CUT_MODES",
    "SWEEP_PATHS",
    "SweepFailure",
    "SweepSummary",
    "judge_point",
    "parse_paths",
    "run_flash_sweep",
    "sweep_images",
]

CUT_MODES = ("before", "after", "torn")
SWEEP_PATHS = ("upgrade", "revert", "download")
CHUNK = 1800  # image bytes per staging request: 3600 hex digits, inside the port's 4096-byte lines
MAX_RANDOM_CUTS = 5
FIRST_FAILURES_KEPT = 10


@dataclass(frozen=True)
class SweepFailure:
    """One sweep point the device failed: which cuts, and what was wrong after recovery."""

    path: str
    cuts: tuple[tuple[int, str], ...]
    steps: int
    problems: tuple[str, ...]
    at: str | None = None

    def describe(self) -> str:
        """One line for a failure message: path, cut(s), the first step's name and the problems."""
        cuts = ", ".join(f"{mode} step {step}" for step, mode in self.cuts)
        where = f" ({self.at})" if self.at else ""
        return f"{self.path} path, cut {cuts} of {self.steps}{where}: {'; '.join(self.problems)}"

    def as_json(self) -> dict[str, Any]:
        """The failure as evidence: path, cuts, step count, what was wrong."""
        return {
            "path": self.path,
            "cuts": [{"step": step, "mode": mode} for step, mode in self.cuts],
            "steps": self.steps,
            "at": self.at,
            "problems": list(self.problems),
        }


@dataclass
class SweepSummary:
    """What a sweep did and found."""

    device: str
    image_size: int
    old_sha256: str
    new_sha256: str
    steps: dict[str, int] = field(default_factory=dict)
    points: int = 0
    failed: int = 0
    bricked: int = 0
    random_sequences: int = 0
    seed: int = 0
    failures: list[SweepFailure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every point passed."""
        return self.failed == 0

    def as_json(self) -> dict[str, Any]:
        """The summary as evidence: counts, step counts, image hashes, the first failing points."""
        return {
            "device": self.device,
            "image_size": self.image_size,
            "old_sha256": self.old_sha256,
            "new_sha256": self.new_sha256,
            "steps": dict(self.steps),
            "points": self.points,
            "failed": self.failed,
            "bricked": self.bricked,
            "random_sequences": self.random_sequences,
            "seed": self.seed,
            "first_failures": [f.as_json() for f in self.failures[:FIRST_FAILURES_KEPT]],
        }


def judge_point(path: str, reply: dict[str, Any], old_sha256: str, new_sha256: str) -> list[str]:
    """What is wrong with one sweep point's outcome (an empty list: it passed).

    ``upgrade`` and ``download`` must end running the new image (old one in the secondary slot),
    ``revert`` running the old one (new one back in the secondary slot); never bricked; the flags
    must say the same.
    """
    problems: list[str] = []
    if reply.get("bricked") is not False:
        return [f"bricked: {reply.get('detail', 'no detail')}"]
    names = {old_sha256: "the old image", new_sha256: "the new image"}
    want, other = (old_sha256, new_sha256) if path == "revert" else (new_sha256, old_sha256)
    running = reply.get("running_sha256")
    if running is None:
        problems.append("runs no image")
    elif running not in names:
        problems.append(f"runs neither the old nor the new image (SHA-256 {str(running)[:16]}...)")
    elif running != want:
        problems.append(f"runs {names[running]}, expected {names[want]}")
    for slot, expected in (("primary", want), ("secondary", other)):
        seen = reply.get(f"{slot}_sha256")
        if seen != expected:
            shown = names.get(str(seen), "no image" if seen is None else f"SHA-256 {str(seen)[:16]}...")
            problems.append(f"{slot} slot holds {shown}, expected {names[expected]}")
    flags = reply.get("flags")
    if not isinstance(flags, dict):
        return [*problems, "no boot-state flags in the reply"]
    expected_flags = {
        "swap_done": True,
        "revert_done": path == "revert",
        "image_ok": path != "revert",
        "download_pending": False,
    }
    for name, value in expected_flags.items():
        if flags.get(name) is not value:
            problems.append(f"flag {name} is {flags.get(name)!r}, expected {value!r}")
    return problems


def sweep_images(
    manufacturer_code: int, image_type: int, firmware_version: int, size: int
) -> tuple[bytes, bytes]:
    """The sweep's two images for a device: ``old`` (a quarter smaller, so it ends inside a sector
    and the slots differ in length) and ``new`` of ``size`` bytes, with the device's manufacturer
    code and image type and the two versions after its factory one. Deterministic for the same input.
    """
    if size < 512:
        raise BadInputError("must be at least 512 bytes for a flash sweep", field="image_size", value=size)
    images = []
    for n, total in ((1, size - size // 4), (2, size)):
        version = (firmware_version + n) & 0xFFFFFFFF
        image = build_image_of_total_size(
            total,
            manufacturer_code=manufacturer_code,
            image_type=image_type,
            file_version=version,
            header_string=f"flash sweep {'old' if n == 1 else 'new'}",
            seed=version ^ (image_type << 32),
        )
        images.append(image.serialize())
    return images[0], images[1]


def parse_paths(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The sweep paths from ``upgrade,revert`` (or a list); refuses unknown names."""
    names = (
        [p.strip() for p in value.split(",")] if isinstance(value, str) else [str(p).strip() for p in value]
    )
    names = [n for n in names if n]
    if not names:
        raise BadInputError(f"must name at least one of {', '.join(SWEEP_PATHS)}", field="paths", value=value)
    for name in names:
        if name not in SWEEP_PATHS:
            raise BadInputError(f"must be among {', '.join(SWEEP_PATHS)}", field="paths", value=name)
    return tuple(dict.fromkeys(names))


Progress = Callable[[int, int], None]


async def run_flash_sweep(
    port: ControlPort,
    device: str,
    *,
    old_image: bytes,
    new_image: bytes,
    paths: tuple[str, ...] = ("upgrade", "revert"),
    random_sequences: int = 100,
    seed: int = 0,
    block_size: int = 1024,
) -> SweepSummary:
    """Stage the two images on ``device``'s port, sweep every step of each path in the three cut modes,
    then ``random_sequences`` seeded multi-cut sequences, and judge every point.

    A reply that is not what the protocol promises raises `BenchError` (the port, not the device).
    """
    old_sha = hashlib.sha256(old_image).hexdigest()
    new_sha = hashlib.sha256(new_image).hexdigest()
    summary = SweepSummary(
        device, len(new_image), old_sha, new_sha, random_sequences=random_sequences, seed=seed
    )
    for name, image, sha in (("old", old_image, old_sha), ("new", new_image, new_sha)):
        await _stage(port, device, name, image, sha)
    traces: dict[str, list[str]] = {}
    for path in paths:
        plan = await port.request("flash_sweep_plan", path=path, block_size=block_size)
        steps = plan.get("steps")
        trace = plan.get("trace")
        if not isinstance(steps, int) or steps < 1 or not isinstance(trace, list):
            raise BenchError(f"{device}: flash_sweep_plan for {path} gave no step count: {plan!r}")
        summary.steps[path] = steps
        traces[path] = [str(t) for t in trace]

    async def point(path: str, cuts: list[tuple[int, str]]) -> None:
        reply = await port.request(
            "flash_sweep_point",
            path=path,
            block_size=block_size,
            cuts=[{"step": step, "mode": mode} for step, mode in cuts],
        )
        summary.points += 1
        problems = judge_point(path, reply, old_sha, new_sha)
        if not problems:
            return
        summary.failed += 1
        summary.bricked += reply.get("bricked") is not False
        first = cuts[0][0]
        at = traces[path][first - 1] if first <= len(traces[path]) else None
        summary.failures.append(SweepFailure(path, tuple(cuts), summary.steps[path], tuple(problems), at))

    for path in paths:
        for step in range(1, summary.steps[path] + 1):
            for mode in CUT_MODES:
                await point(path, [(step, mode)])
    rng = random.Random(seed)
    for _ in range(random_sequences):
        path = rng.choice(paths)
        steps = summary.steps[path]
        cuts = [
            (rng.randint(1, steps), rng.choice(CUT_MODES)) for _ in range(rng.randint(1, MAX_RANDOM_CUTS))
        ]
        await point(path, cuts)
    return summary


async def _stage(port: ControlPort, device: str, name: str, image: bytes, sha: str) -> None:
    reply: dict[str, Any] = {}
    for offset in range(0, len(image), CHUNK):
        reply = await port.request(
            "flash_sweep_load",
            image=name,
            size=len(image),
            offset=offset,
            data=image[offset : offset + CHUNK].hex(),
        )
    if reply.get("sha256") != sha:
        raise BenchError(
            f"{device}: the {name} image staged for the flash sweep reads back as SHA-256 "
            f"{reply.get('sha256')!r}, not {sha}: the control port garbled it"
        )
