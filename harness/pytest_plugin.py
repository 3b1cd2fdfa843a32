"""pytest fixtures with the same names and meaning as the Robot keywords of ``harness.robot.OtaLibrary``.

Each keyword fixture is the session's bound method, so a pytest test reads like the Robot suite::

    def test_b2_upgrades(start_testbed, build_firmware_image, offer_firmware_image,
                         wait_until_upgrade_completes, firmware_version_should_be):
        start_testbed()
        image = build_firmware_image("B2", "1.1.0.0", size="200KiB")
        offer_firmware_image("B2", image)
        wait_until_upgrade_completes("B2", budget="2h")
        firmware_version_should_be("B2", "1.1.0.0")

Options: ``--ht-testbed FILE`` (or ``$HARNESS_TESTBED``), ``--ht-seed N``, ``--ht-run-dir DIR`` (evidence
folder; default: a folder per test under pytest's tmp_path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from harness.scenarios.session import OtaSession

KEYWORDS = (
    "stop_testbed",
    "build_firmware_image",
    "load_firmware_image",
    "offer_firmware_image",
    "wait_until_upgrade_completes",
    "wait_until_transfer_reaches",
    "device_should_refuse_image",
    "transfer_should_have_resumed",
    "activate_firmware",
    "wait_testbed_time",
    "firmware_version_should_be",
    "read_firmware_version",
    "device_should_be_reachable",
    "permit_joining_with_install_code",
    "wait_until_joined",
    "configure_reporting",
    "device_should_keep_reporting",
    "cut_power",
    "restore_power",
    "power_cycle_device",
    "ch_update_firmware",
    "wait_for_ch_alert",
    "ch_activate_firmware",
    "ch_read_firmware_version",
    "flash_power_fail_sweep",
    "download_power_fail_sweep",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the harness's command-line options."""
    group = parser.getgroup("harness", "althan-ota-harness")
    group.addoption(
        "--ht-testbed",
        default=None,
        help="testbed file (default: $HARNESS_TESTBED or the packaged testbeds/emulated.yaml)",
    )
    group.addoption("--ht-seed", type=int, default=None, help="seed for the emulated testbed")
    group.addoption("--ht-run-dir", default=None, help="folder for evidence (default: per-test tmp folder)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Keep each phase's report on the test item so the session fixture can give the verdict."""
    report = yield
    setattr(item, f"_harness_report_{report.when}", report)
    if call.excinfo is not None and report.when == "call":
        item._harness_exception = call.excinfo.value  # type: ignore[attr-defined]
    return report


@pytest.fixture
def ota_session(request: pytest.FixtureRequest, tmp_path: Path) -> Generator[OtaSession, None, None]:
    """A harness session (evidence folder, virtual-time loop) for one test; closed after it."""
    from harness.robot.library import default_testbed

    configured = request.config.getoption("--ht-run-dir")
    run_dir = Path(configured) / request.node.name if configured else tmp_path / "run"
    session = OtaSession(
        run_dir, seed=request.config.getoption("--ht-seed"), command=f"pytest {request.node.nodeid}"
    )
    session.default_testbed = request.config.getoption("--ht-testbed") or default_testbed()  # type: ignore[attr-defined]
    session.begin_test(request.node.name, request.node.module.__name__ if request.node.module else "")
    yield session
    report = getattr(request.node, "_harness_report_call", None)
    exception = getattr(request.node, "_harness_exception", None)
    if exception is not None:
        session.note_exception(exception)
    passed = bool(report is not None and report.passed)
    session.end_test(passed, str(exception) if exception is not None else "")
    session.close()
    request.node.user_properties.append(("harness_run_dir", str(run_dir)))


@pytest.fixture
def start_testbed(ota_session: OtaSession) -> Callable[..., None]:
    """`Start Testbed`: start the given (or default) testbed and wait until every device joined."""

    def start(file: str | os.PathLike[str] | None = None) -> None:
        ota_session.start_testbed(Path(file or ota_session.default_testbed))  # type: ignore[attr-defined]

    return start


def _keyword_fixture(name: str) -> Any:
    def fixture(ota_session: OtaSession) -> Callable[..., Any]:
        return getattr(ota_session, name)

    fixture.__name__ = name
    fixture.__doc__ = f"The `{name.replace('_', ' ').title()}` keyword: {getattr(OtaSession, name).__doc__}"
    return pytest.fixture(name=name)(fixture)


for _name in KEYWORDS:
    globals()[_name] = _keyword_fixture(_name)
