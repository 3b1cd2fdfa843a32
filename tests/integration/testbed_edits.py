"""Copies of shipped testbeds with one change, for tests that give a device a defect."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TESTBED = REPO / "testbeds" / "emulated.yaml"


def edited_testbed(tmp_path: Path, device: str, defects: list[str], source: Path = DEFAULT_TESTBED) -> Path:
    """A copy of ``source`` in ``tmp_path`` where ``device`` has ``defects`` (none: unchanged)."""
    data = yaml.safe_load(source.read_text())
    if defects:
        data["devices"][device]["defects"] = defects
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
