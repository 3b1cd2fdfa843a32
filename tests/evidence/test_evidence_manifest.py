"""The manifest: every file's size and SHA-256, and every kind of tampering detected."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.evidence.manifest import verify_manifest, write_manifest


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "20261103-101502"
    (root / "evidence" / "images").mkdir(parents=True)
    (root / "evidence" / "air.pcap").write_bytes(bytes(range(256)) * 4)
    (root / "evidence" / "images" / "B2.zigbee").write_bytes(b"\x1e\xf1\xee\x0b" + bytes(100))
    (root / "index.html").write_text("<html></html>")
    (root / "run.json").write_text(json.dumps({"run_id": "run-42"}))
    write_manifest(root)
    return root


def test_manifest_lists_every_file_sorted_with_size_and_hash(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["run_id"] == "run-42" and manifest["algorithm"] == "sha256"
    assert manifest["created_utc"].endswith("Z")
    paths = [f["path"] for f in manifest["files"]]
    assert paths == ["evidence/air.pcap", "evidence/images/B2.zigbee", "index.html", "run.json"]
    pcap = manifest["files"][0]
    data = (run_dir / "evidence" / "air.pcap").read_bytes()
    assert pcap == {
        "path": "evidence/air.pcap",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_untouched_run_verifies_clean(run_dir: Path) -> None:
    assert verify_manifest(run_dir) == []


def test_flipped_byte_is_detected(run_dir: Path) -> None:
    path = run_dir / "evidence" / "air.pcap"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    problems = verify_manifest(run_dir)
    assert len(problems) == 1 and problems[0].startswith("changed content: evidence/air.pcap")


def test_truncation_is_detected(run_dir: Path) -> None:
    path = run_dir / "evidence" / "images" / "B2.zigbee"
    path.write_bytes(path.read_bytes()[:50])
    assert verify_manifest(run_dir) == [
        "changed size: evidence/images/B2.zigbee (manifest 104 bytes, now 50)"
    ]


def test_deleted_file_is_detected(run_dir: Path) -> None:
    (run_dir / "index.html").unlink()
    assert verify_manifest(run_dir) == ["missing: index.html"]


def test_added_file_is_detected(run_dir: Path) -> None:
    (run_dir / "evidence" / "extra.pcap").write_bytes(b"slipped in later")
    assert verify_manifest(run_dir) == ["extra file not in manifest: evidence/extra.pcap"]


def test_missing_or_damaged_manifest_is_a_problem(run_dir: Path) -> None:
    (run_dir / "manifest.json").write_text("{")
    assert "not valid JSON" in verify_manifest(run_dir)[0]
    (run_dir / "manifest.json").unlink()
    assert "missing" in verify_manifest(run_dir)[0]


def test_manifest_entry_pointing_outside_the_run_is_refused(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["files"].append({"path": "../../etc/passwd", "size": 1, "sha256": "00"})
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert verify_manifest(run_dir) == ["manifest.json: entry 4 has an unsafe path '../../etc/passwd'"]
