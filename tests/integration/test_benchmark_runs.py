"""The throughput benchmark still runs (its figures are read by people, not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_measures_both_security_settings() -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/ota_throughput.py", "--size", "4KiB", "--security", "both"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] in (["on"], ["off"])]
    assert [row[0] for row in rows] == ["off", "on"]
    assert all(row[2] == "64" for row in rows), "a 4 KiB image is 64 blocks of 64 bytes"
    assert "security on / off" in proc.stdout
