"""The HTML report: verdicts, transfers with plots, links and the independent tshark check."""

from __future__ import annotations

import base64
import gzip
import re
from pathlib import Path

import pytest
from markupsafe import escape

from harness.evidence.record import RunRecord, TestRecord, TransferRecord
from harness.evidence.recorder import Recorder
from harness.report.html import TSHARK_OTA_COMMAND, format_version, write_html_report

B2, B4, CH, B1 = 0x1234, 0x2345, 0x0000, 0x0001


def transfer(
    device: str, verdict: str, reason: str, *, size: int, last: int, end: float | None
) -> TransferRecord:
    return TransferRecord(
        device=device,
        image_file=f"evidence/images/{device}-0x01010000.zigbee",
        image_sha256="ef" * 32,
        image_size=size,
        from_version=0x01000000,
        to_version=0x01010000,
        block_size=50,
        blocks=-(-last // 50),
        retries=2,
        started_virtual_s=0.0,
        ended_virtual_s=end,
        started_wall="2026-11-03T10:15:03.000Z",
        ended_wall=None if end is None else "2026-11-03T10:15:21.500Z",
        last_offset=last,
        verdict=verdict,
        reason=reason,
    )


def make_record() -> RunRecord:
    return RunRecord(
        run_id="20261103-101502",
        harness_version="0.1.0",
        testbed_name="Emulated premises 3-bridge",
        testbed_file="testbeds/emulated.yaml",
        testbed_sha256="9f" * 32,
        seed=1234,
        started_wall="2026-11-03T10:15:02.000Z",
        ended_wall="2026-11-03T10:16:00.000Z",
        command="harness run suites/robot --seed 1234 --network-key 00112233445566778899aabbccddeeff",
        tests=[
            TestRecord(
                "Upgrade Far Bridge B2",
                "ota",
                "PASS",
                "B2 reports 1.1.0.0 after activation",
                "2026-11-03T10:15:02.500Z",
                "2026-11-03T10:15:40.000Z",
                ["evidence/air.pcap"],
            ),
            TestRecord(
                "Resume After Power Cut B4",
                "ota",
                "FAIL",
                "B4 restarted from offset 0 instead of <resuming> at 250",
                "2026-11-03T10:15:40.000Z",
                "2026-11-03T10:16:00.000Z",
                [],
            ),
        ],
        transfers=[
            transfer("B2", "PASS", "Upgrade End Request SUCCESS", size=500, last=500, end=1800.0),
            transfer("B4", "FAIL", "offset went back to 0 after power cut", size=1000, last=300, end=3785.0),
        ],
    )


@pytest.fixture
def run_dir(tmp_path: Path, frames) -> Path:
    clock = {"t": 0.0}
    root = tmp_path / "run"
    recorder = Recorder(root, virtual_clock=lambda: clock["t"])
    recorder.frame(frames.block_request(0, src=B2, dst=CH), hop_src="B2", hop_dst="B1")
    for offset in range(0, 500, 50):
        clock["t"] += 100.0
        # two hops to B2: CH→B1 then B1→B2; the plot should use the arrival at B2
        recorder.frame(
            frames.block_response(offset, bytes(50), src=CH, dst=B2, mac_dst=B1), hop_src="CH", hop_dst="B1"
        )
        recorder.frame(frames.block_response(offset, bytes(50), src=CH, dst=B2), hop_src="B1", hop_dst="B2")
    recorder.frame(frames.block_request(0, src=B4, dst=CH), hop_src="B4", hop_dst="CH")
    for i, offset in enumerate((0, 50, 100, 0, 50, 100, 150, 200, 250, 300)):
        clock["t"] += 300.0
        if i == 3:
            recorder.event("power", "power cut B4", device="B4")
            clock["t"] += 60.0
        recorder.frame(frames.block_response(offset, bytes(50), src=CH, dst=B4), hop_src="CH", hop_dst="B4")
    recorder.close()
    return root


def svg_plots(html: str) -> list[str]:
    return [
        base64.b64decode(m).decode()
        for m in re.findall(r'<img src="data:image/svg\+xml;base64,([^"]+)"', html)
    ]


def test_report_shows_verdicts_transfers_plots_and_the_tshark_check(run_dir: Path) -> None:
    path = write_html_report(run_dir, make_record())
    assert path == run_dir / "index.html"
    html = path.read_text(encoding="utf-8")
    assert re.search(r'<header class="verdict FAIL">\s*<h1>FAIL', html)
    assert 'class="badge PASS">PASS<' in html and 'class="badge FAIL">FAIL<' in html
    for text in ("B2", "B4", "Upgrade Far Bridge B2", "Emulated premises 3-bridge", "9f" * 32, "1234"):
        assert text in html
    assert "1.0.0.0 (0x01000000)" in html and "1.1.0.0 (0x01010000)" in html
    assert "0:30:00" in html and "1:03:05" in html  # testbed durations of the two transfers
    assert "0:00:18" in html  # wall duration
    assert 'href="evidence/images/B2-0x01010000.zigbee"' in html
    for link in (
        "log.html",
        "output.xml",
        "junit.xml",
        "timeline.parquet",
        "evidence/air.pcap",
        "manifest.json",
    ):
        assert link in html
    assert escape(TSHARK_OTA_COMMAND) in html
    plots = svg_plots(html)
    assert len(plots) == 2 and all("<svg" in p for p in plots)
    assert "power cut B4" in html  # harness events are listed


def test_report_escapes_text_and_redacts_keys_on_the_command_line(run_dir: Path) -> None:
    html = write_html_report(run_dir, make_record()).read_text(encoding="utf-8")
    assert "instead of &lt;resuming&gt; at 250" in html and "<resuming>" not in html
    assert "00112233445566778899aabbccddeeff" not in html


def test_only_paths_inside_the_run_folder_become_links(run_dir: Path) -> None:
    record = make_record()
    record.tests[0].evidence = ["evidence/serial/B2.log", "javascript:alert(1)", "../../etc/passwd"]
    html = write_html_report(run_dir, record).read_text(encoding="utf-8")
    assert 'href="evidence/serial/B2.log"' in html
    assert 'href="javascript:' not in html and 'href="../../etc/passwd"' not in html
    assert "javascript:alert(1)" in html  # still shown, as text


def test_transfer_without_block_responses_says_so(run_dir: Path) -> None:
    record = make_record()
    record.transfers.append(transfer("B3", "ERROR", "control port gone", size=100, last=0, end=None))
    record.ended_wall = None
    html = write_html_report(run_dir, record).read_text(encoding="utf-8")
    assert "No Image Block Response to B3" in html
    assert "This run did not finish" in html
    assert 'class="badge ERROR">ERROR<' in html


def test_unfinished_run_is_plotted_from_the_json_lines(run_dir: Path) -> None:
    # An unfinished run has its plain journal and no Parquet copy (close() never ran).
    packed = run_dir / "evidence" / "timeline.jsonl.gz"
    (run_dir / "evidence" / "timeline.jsonl").write_bytes(gzip.decompress(packed.read_bytes()))
    packed.unlink()
    (run_dir / "timeline.parquet").unlink()
    html = write_html_report(run_dir, make_record()).read_text(encoding="utf-8")
    assert len(svg_plots(html)) == 2
    assert "read from timeline.jsonl" in html
    assert "timeline.parquet (not written)" in html


def test_report_without_any_timeline_still_renders(tmp_path: Path) -> None:
    html = write_html_report(tmp_path, make_record()).read_text(encoding="utf-8")
    assert "No timeline in this run folder" in html and escape(TSHARK_OTA_COMMAND) in html


def test_format_version() -> None:
    assert format_version(0x01020304) == "1.2.3.4 (0x01020304)"


def test_report_lists_every_testbed_of_a_run_that_used_several(run_dir: Path) -> None:
    record = make_record()
    single = write_html_report(run_dir, record).read_text(encoding="utf-8")
    assert "Testbeds used" not in single
    record.testbeds_used = ["emulated (a.yaml, sha256 aaaa)", "emulated-ch (b.yaml, sha256 bbbb)"]
    several = write_html_report(run_dir, record).read_text(encoding="utf-8")
    assert "Testbeds used" in several and "emulated-ch (b.yaml, sha256 bbbb)" in several
