"""Progress bars: one per running transfer, a summary line when each ends, any order of transfers."""

from __future__ import annotations

import io

from rich.console import Console

from harness.scenarios.progress import RichProgress


def test_each_finished_transfer_leaves_one_summary_line() -> None:
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=140, force_terminal=False))
    progress.started("B2", 1024, 10.0)
    progress.started("GSME", 2048, 10.0)
    for offset in range(64, 1025, 64):
        progress.advanced("B2", offset, 10.0 + offset / 64)
    progress.advanced("GSME", 64, 12.0)
    progress.finished("B2", "PASS")
    progress.started("B1", 512, 30.0)  # a new transfer after one was removed
    progress.advanced("B1", 512, 31.0)
    progress.finished("GSME", "FAIL")
    progress.finished("B1", "PASS")
    text = out.getvalue()
    assert "B2 PASS: 1024 of 1024 bytes, 16 blocks in 0:00:16 testbed time" in text
    assert "GSME FAIL: 64 of 2048 bytes, 1 blocks" in text
    assert "B1 PASS: 512 of 512 bytes, 1 blocks in 0:00:01 testbed time" in text
