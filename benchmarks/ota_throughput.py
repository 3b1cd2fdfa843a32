"""Throughput of an emulated OTA: B2 takes a 200 KiB image through B1, evidence recorder on.

Prints blocks per wall second and the ratio of testbed (virtual) time to wall time, both measured in
this one run (machines here are noisy: compare ratios from the same run, not figures across runs).
By default it measures the shipped testbed (NWK security on) and the same testbed without its
network key, one after the other, so the cost of security is a ratio from one run.

    python benchmarks/ota_throughput.py [--size 200KiB] [--device B2] [--repeat 1] [--security on|off|both]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from harness.robot.library import default_testbed
from harness.scenarios.session import OtaSession


def testbed_file(security: bool, folder: Path) -> Path:
    """The default testbed, or a copy of it without its network key (NWK security off)."""
    path = Path(default_testbed())
    if security:
        return path
    data = yaml.safe_load(path.read_text())
    data.pop("network_key", None)
    copy = folder / "testbed-no-security.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def measure(size: str, device: str, run_dir: Path, testbed: Path) -> dict[str, float]:
    """One transfer; returns blocks, wall seconds, testbed seconds and CPU seconds of the transfer."""
    session = OtaSession(run_dir)
    try:
        session.start_testbed(testbed)
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
    parser.add_argument("--repeat", type=int, default=1, help="transfers to measure per setting (default 1)")
    parser.add_argument(
        "--security",
        choices=("on", "off", "both"),
        default="both",
        help="NWK security on, off, or both in turn (default both)",
    )
    args = parser.parse_args()
    settings = {"on": [True], "off": [False], "both": [False, True]}[args.security]
    print(f"OTA throughput: {args.device}, {args.size} image, default emulated testbed, evidence recorder on")
    print(
        f"{'security':>8} {'run':>3} {'blocks':>7} {'wall s':>8} {'cpu s':>8} {'testbed s':>10} "
        f"{'blocks/wall s':>14} {'testbed/wall':>13}"
    )
    rates: dict[bool, list[float]] = {}
    for security in settings:
        for n in range(1, args.repeat + 1):
            with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
                testbed = testbed_file(security, Path(tmp))
                m = measure(args.size, args.device, Path(tmp) / "run", testbed)
            rate = m["blocks"] / m["wall_s"]
            rates.setdefault(security, []).append(rate)
            ratio = m["virtual_s"] / m["wall_s"]
            print(
                f"{'on' if security else 'off':>8} {n:>3} {m['blocks']:>7.0f} {m['wall_s']:>8.2f} "
                f"{m['cpu_s']:>8.2f} {m['virtual_s']:>10.1f} {rate:>14.0f} {ratio:>12.1f}x"
            )
    if len(rates) == 2:
        on, off = max(rates[True]), max(rates[False])
        print(f"security on / off, best blocks per wall second: {on:.0f} / {off:.0f} = {on / off:.2f}")


if __name__ == "__main__":
    main()
