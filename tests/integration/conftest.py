"""Fixtures shared by the integration tests: a session writing into the test's own folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.scenarios.session import OtaSession


@pytest.fixture
def session(tmp_path: Path) -> Iterator[OtaSession]:
    """An OtaSession whose run folder is ``tmp_path/run``; closed (testbed stopped) after the test."""
    ota = OtaSession(tmp_path / "run")
    yield ota
    ota.close()
