"""Speed of the flash power-fail sweep (goal G1) through a device's control port.

Sweeps one device of the default testbed (every step of each path in three cut modes, then seeded
random multi-cut sequences) and prints points per wall second, and the ratio of the time a point
takes through the control port to the time the same scenario takes run directly on the device's
flash model (both measured in this run: compare ratios, not figures across machines). G1's budget
is 30 min per device type on 4 cores.

    python benchmarks/flash_sweep.py [--device B2] [--size 16KiB] [--random 1000]
                                     [--paths upgrade,revert,download]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.robot.library import default_testbed
from harness.scenarios.session import OtaSession
from testbeds.emulator.flash_sweep import FlashSweepHooks


def main() -> None:
    """Run the sweep once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="B2")
    parser.add_argument("--size", default="16KiB")
    parser.add_argument("--random", type=int, default=1000)
    parser.add_argument("--paths", default="upgrade,revert,download")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        session = OtaSession(Path(folder) / "run")
        try:
            session.start_testbed(default_testbed())
            wall0 = time.perf_counter()
            result = session.flash_power_fail_sweep(args.device, args.size, args.random, args.paths)
            wall = time.perf_counter() - wall0
            points = int(result.reason.split("all ")[1].split()[0])
            # The same points without the port: call the device's hooks directly (benchmark only).
            assert session.testbed is not None
            device = session.testbed.premises.emulate(args.device)
            direct = _direct_seconds(device, session, args)
        finally:
            session.close()
    print(result.reason)
    print(f"{'points':>8} {'wall s':>8} {'points/s':>9} {'direct s':>9} {'port / direct':>14}")
    print(f"{points:>8} {wall:>8.2f} {points / wall:>9.0f} {direct:>9.2f} {wall / direct:>14.2f}")


def _direct_seconds(device: object, session: OtaSession, args: argparse.Namespace) -> float:
    from harness.scenarios.flash_sweep import CUT_MODES, parse_paths, sweep_images
    from harness.scenarios.values import parse_size

    spec = session.spec
    assert spec is not None
    dev = spec.device(args.device)
    old, new = sweep_images(
        dev.manufacturer_code, dev.image_type, dev.firmware_version, parse_size(args.size)
    )
    hooks = FlashSweepHooks(device)  # type: ignore[arg-type]
    for name, image in (("old", old), ("new", new)):
        hooks.load({"image": name, "size": len(image), "offset": 0, "data": image.hex()})
    start = time.perf_counter()
    count = 0
    for path in parse_paths(args.paths):
        steps = hooks.plan({"path": path})["steps"]
        for step in range(1, steps + 1):
            for mode in CUT_MODES:
                hooks.point({"path": path, "cuts": [{"step": step, "mode": mode}]})
                count += 1
    per_point = (time.perf_counter() - start) / count
    return per_point * (count + args.random)


if __name__ == "__main__":
    main()
