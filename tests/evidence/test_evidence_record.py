"""The run record: JSON round trip, atomic save, clear errors, overall verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import BadInputError
from harness.evidence.record import RunRecord, TestRecord, TransferRecord, overall_verdict


def make_record() -> RunRecord:
    return RunRecord(
        run_id="20261103-101502-1a2b",
        harness_version="0.1.0",
        testbed_name="emulated premises",
        testbed_file="testbeds/emulated.yaml",
        testbed_sha256="ab" * 32,
        seed=42,
        started_wall="2026-11-03T10:15:02.123Z",
        ended_wall="2026-11-03T10:16:40.000Z",
        command="harness run suites/robot --seed 42",
        tests=[
            TestRecord(
                "Upgrade B2",
                "ota",
                "PASS",
                "version 0x01010000 read back",
                "2026-11-03T10:15:03.000Z",
                "2026-11-03T10:15:30.000Z",
                ["evidence/air.pcap", "timeline.parquet"],
            )
        ],
        transfers=[
            TransferRecord(
                device="B2",
                image_file="evidence/images/B2-0x01010000.zigbee",
                image_sha256="cd" * 32,
                image_size=204_800,
                from_version=0x01000000,
                to_version=0x01010000,
                block_size=50,
                blocks=4096,
                retries=3,
                started_virtual_s=10.0,
                ended_virtual_s=1812.5,
                started_wall="2026-11-03T10:15:03.000Z",
                ended_wall=None,
                last_offset=204_800,
                verdict="PASS",
                reason="upgrade end SUCCESS",
            )
        ],
    )


def test_json_round_trip(tmp_path: Path) -> None:
    record = make_record()
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    path = record.save(tmp_path / "run.json")
    assert RunRecord.load(path) == record
    assert not [p for p in tmp_path.iterdir() if p.name != "run.json"]  # no temporary file left


def test_unknown_keys_from_a_newer_harness_are_ignored() -> None:
    data = make_record().to_json()
    data["future_field"] = 1
    data["tests"][0]["future_field"] = 2
    assert RunRecord.from_json(data) == make_record()


def test_missing_field_is_named(tmp_path: Path) -> None:
    data = make_record().to_json()
    del data["transfers"][0]["image_sha256"]
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=r"run.json.*transfers\[0\].*image_sha256"):
        RunRecord.load(tmp_path / "run.json")


def test_damaged_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text('{"run_id": ')
    with pytest.raises(BadInputError, match=r"run\.json"):
        RunRecord.load(tmp_path / "run.json")


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["PASS", "PASS"], "PASS"),
        (["PASS", "FAIL"], "FAIL"),
        (["FAIL", "INCONCLUSIVE"], "INCONCLUSIVE"),
        (["INCONCLUSIVE", "ERROR", "FAIL"], "ERROR"),
        (["PASS", "RUNNING"], "INCONCLUSIVE"),
        ([], "INCONCLUSIVE"),
    ],
)
def test_overall_verdict_is_the_worst(verdicts: list[str], expected: str) -> None:
    assert overall_verdict(verdicts) == expected


def test_run_without_tests_is_judged_on_its_transfers() -> None:
    record = make_record()
    record.tests = []
    record.transfers[0].verdict = "FAIL"
    assert record.overall_verdict() == "FAIL"


def test_a_network_key_quoted_anywhere_never_lands_in_run_json(tmp_path: Path) -> None:
    from harness.evidence.keys import NetworkKey
    from harness.evidence.recorder import Recorder

    key = bytes(range(16))
    recorder = Recorder(tmp_path / "run", virtual_clock=lambda: 0.0, network_keys=[NetworkKey(key, "t", 0)])
    record = make_record()
    record.command = f"harness run --debug-key {key.hex(':')}"
    record.tests[0].reason = f"device printed its key {key.hex().upper()}"
    path = record.save(tmp_path / "run.json", redact=recorder.redact)
    text = path.read_text()
    assert key.hex() not in text.lower().replace(":", "")
    assert text.count("redacted") == 2
    recorder.close()


def test_testbeds_used_round_trip_and_old_records_load(tmp_path: Path) -> None:
    record = make_record()
    record.testbeds_used = ["emulated (testbeds/emulated.yaml, sha256 abab)", "emulated-ch (x, sha256 cdcd)"]
    path = record.save(tmp_path / "run.json")
    assert RunRecord.load(path).testbeds_used == record.testbeds_used
    old = json.loads(path.read_text())
    del old["testbeds_used"]  # written by an earlier harness
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert RunRecord.load(tmp_path / "old.json").testbeds_used == []
