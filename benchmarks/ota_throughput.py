"""Throughput of an emulated OTA: B2 takes a 200 KiB image through B1, evidence recorder on.

Prints blocks per wall second and the ratio of testbed (virtual) time to wall time, both measured in
this one run (machines here are noisy: compare ratios from the same run, not figures across runs).

    python benchmarks/ota_throughput.py [--size 200KiB] [--device B2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.robot.library import default_testbed
from harness.scenarios.session import OtaSession


def measure(size: str, device: str, run_dir: Path) -> dict[str, float]:
    """One transfer; returns blocks, wall seconds, testbed seconds and CPU seconds of the transfer."""
    session = OtaSession(run_dir)
    try:
        session.start_testbed(default_testbed())
        image = session.build_firmware_image(device, "1.1.0.0", size=size)
        wall0, cpu0, virtual0 = time.perf_counter(), time.process_time(), session.testbed_time()
        session.offer_firmware_image(device, image)
        result = session.wait_until_upgrade_completes(device, "6h")
        wall, cpu, virtual = (
            time.perf_counter() - wall0,
            time.process_time() - cpu0,
            session.testbed_time() - virtual0,
        )
        if result.verdict.value != "PASS":
            raise SystemExit(f"benchmark transfer did not pass: {result}")
        blocks = session.record.transfers[-1].blocks
    finally:
        session.close()
    return {"blocks": blocks, "wall_s": wall, "cpu_s": cpu, "virtual_s": virtual}


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="200KiB", help="image size (default 200KiB)")
    parser.add_argument("--device", default="B2", help="device to update (default B2, two hops via B1)")
    parser.add_argument("--repeat", type=int, default=1, help="transfers to measure (default 1)")
    args = parser.parse_args()
    print(f"OTA throughput: {args.device}, {args.size} image, default emulated testbed, evidence recorder on")
    print(
        f"{'run':>3} {'blocks':>7} {'wall s':>8} {'cpu s':>8} {'testbed s':>10} {'blocks/wall s':>14} "
        f"{'testbed/wall':>13}"
    )
    for n in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
            m = measure(args.size, args.device, Path(tmp) / "run")
        print(
            f"{n:>3} {m['blocks']:>7.0f} {m['wall_s']:>8.2f} {m['cpu_s']:>8.2f} {m['virtual_s']:>10.1f} "
            f"{m['blocks'] / m['wall_s']:>14.0f} {m['virtual_s'] / m['wall_s']:>12.1f}x"
        )


if __name__ == "__main__":
    main()
