"""The main job end to end: ``harness run`` on the default emulated testbed, checked from its evidence.

One module-scoped run of the real command (README command (a)) feeds every test here: the Robot
suite ``suites/robot/ota_basic.robot`` updates B2 through B1, then B1, then the sleepy GSME through
both; ``gbcs_ch.robot`` (run first) updates B2 through the emulated CH under test on its own
testbed. The checks then trust only the files the run left: the manifest, the timeline, and the
capture as decoded by tshark, an independent decoder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.evidence.manifest import verify_manifest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("harness-run") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--out", str(out), "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return out, proc


def test_default_run_exits_zero_with_every_output(
    default_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, proc = default_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in (
        "index.html",
        "output.xml",
        "log.html",
        "junit.xml",
        "timeline.parquet",
        "manifest.json",
        "run.json",
        "evidence/air.pcap",
    ):
        assert (out / name).is_file(), f"{name} missing from the run folder"
    assert any((out / "allure-results").glob("*-result.json")), "no Allure results"
    images = sorted(p.name for p in (out / "evidence" / "images").iterdir())
    assert images == [
        "B1-0x01010000.zigbee.ota",
        "B1-0x02000000.zigbee.ota",
        "B2-0x01010000.zigbee.ota",
        "B2-0x01020000.zigbee.ota",
        "B2-0x01030000.gbcs.ota",
        "B2-0x01040000.gbcs.ota",  # served by the emulated CH (gbcs_ch.robot)
        "B2-0x02000000.zigbee.ota",
        "GSME-0x01010000.gbcs.ota",
    ]
    record = json.loads((out / "run.json").read_text())
    assert [t["verdict"] for t in record["tests"]] == ["PASS"] * 11
    sweeps = [t["reason"] for t in record["tests"] if "flash power-fail sweep" in t["reason"]]
    assert len(sweeps) == 2 and all("recovered" in reason for reason in sweeps)
    assert [(t["device"], t["to_version"], t["verdict"]) for t in record["transfers"]] == [
        ("B2", 0x01040000, "PASS"),  # served by the emulated CH under test (gbcs_ch.robot)
        ("B2", 0x01010000, "PASS"),
        ("B1", 0x01010000, "PASS"),
        ("GSME", 0x01010000, "PASS"),
        ("B2", 0x01020000, "PASS"),
        ("B2", 0x01030000, "PASS"),
        ("B2", 0x02000000, "PASS"),
        ("B1", 0x02000000, "PASS"),
    ]
    html = (out / "index.html").read_text()
    for device in ("B1", "B2", "GSME"):
        assert device in html


def test_manifest_covers_and_verifies_every_file(
    default_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = default_run
    assert verify_manifest(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {entry["path"] for entry in manifest["files"]}
    on_disk = {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"
    }
    assert listed == on_disk


def test_timeline_shows_each_transfer_block_by_block(
    default_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = default_run
    timeline = pd.read_parquet(out / "timeline.parquet")
    assert {
        "virtual_time_s",
        "wall_time_utc",
        "source",
        "destination",
        "hop",
        "layers",
        "zcl_command",
        "file_offset",
    } <= set(timeline.columns)
    assert timeline["virtual_time_s"].is_monotonic_increasing
    responses = timeline[timeline["zcl_command"] == "Image Block Response"]
    assert responses["file_offset"].max() == 200 * 1024 - 64
    events = timeline[timeline["kind"] == "event"]["detail"]
    offers = [d.split()[1] for d in events if d.startswith("offer ")]
    basic, power_cut, two_stage, stack_upgrade = ["B2", "B1", "GSME"], ["B2"], ["B2"], ["B2", "B1"]
    assert offers == [f"device={d}" for d in basic + power_cut + two_stage + stack_upgrade]
    assert set(responses["destination"]) == {"B2", "B1", "GSME"}
    gsme_hops = set(responses[responses["destination"] == "GSME"]["hop"])
    assert gsme_hops == {"CH→B1", "B1→B2", "B2→GSME"}, "the GSME's blocks must cross B1, the P2P link and B2"
    assert set(responses[responses["hop"] == "B1→B2"]["medium"]) == {"p2p"}


def _tshark_blocks(tshark: str, out: Path, config_dir: Path) -> list[tuple[str, str, str, str]]:
    proc = subprocess.run(
        [
            tshark,
            "-r",
            str(out / "evidence" / "air.pcap"),
            "-Y",
            "zbee_zcl_general.ota.cmd.srv_tx.id == 0x05",
            "-T",
            "fields",
            "-e",
            "zbee_nwk.dst",
            "-e",
            "zbee_zcl_general.ota.file.version",
            "-e",
            "zbee_zcl_general.ota.file.offset",
            "-e",
            "zbee_zcl_general.ota.image.data",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={"HOME": str(config_dir), "WIRESHARK_CONFIG_DIR": str(config_dir), "PATH": "/usr/bin:/bin"},
    )
    return [tuple(line.split("\t")) for line in proc.stdout.splitlines()]  # type: ignore[misc]


@pytest.mark.tshark
def test_tshark_rebuilds_every_served_image_from_the_capture(
    default_run: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip(
            "TSHARK NOT INSTALLED: the independent decoder check did not run (apt-get install tshark)"
        )
    out, _ = default_run
    testbed = yaml.safe_load((REPO / "testbeds" / "emulated.yaml").read_text())
    nwk_of = {name: f"0x{int(d['nwk']):04x}" for name, d in testbed["devices"].items()}
    # The capture is encrypted as on air: without the key tshark sees no OTA field at all ...
    empty = tmp_path / "no-keys"
    empty.mkdir()
    assert _tshark_blocks(tshark, out, empty) == []
    # ... and with nothing but the run's own key file it decodes every block.
    rebuilt: dict[tuple[str, int], bytearray] = {}
    for dst, version, offset, data in _tshark_blocks(tshark, out, out / "evidence"):
        block = bytes.fromhex(data.replace(":", ""))
        image = rebuilt.setdefault((dst.lower(), int(version, 16)), bytearray())
        start = int(offset)
        if len(image) < start + len(block):
            image.extend(b"\0" * (start + len(block) - len(image)))
        image[start : start + len(block)] = block
    served_images = sorted((out / "evidence" / "images").iterdir())
    # Seven served by the harness's hub, one by the emulated CH under test (gbcs_ch.robot).
    assert len(served_images) == len(rebuilt) == 8
    for served in served_images:
        device, version = served.name.split(".")[0].split("-")
        rebuilt_image = bytes(rebuilt[(nwk_of[device], int(version, 16))])
        assert rebuilt_image == served.read_bytes(), f"{served.name}: image rebuilt from air.pcap differs"


def test_reports_never_print_the_network_key(
    default_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = default_run
    key = "01:03:05:07:09:0b:0d:0f:00:02:04:06:08:0a:0c:0d"
    spellings = {key, key.upper(), key.replace(":", ""), key.replace(":", "").upper()}
    for path in out.rglob("*"):
        if (
            not path.is_file()
            or path.suffix in (".pcap", ".gz", ".parquet", ".ota")
            or path.name == "zigbee_pc_keys"
        ):
            continue
        text = path.read_text(errors="replace")
        assert not any(s in text for s in spellings), f"the network key appears in {path.relative_to(out)}"
    assert (out / "evidence" / "zigbee_pc_keys").read_text().count('"Normal"') == 1
