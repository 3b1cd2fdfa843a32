"""The run manifest: size and SHA-256 of every file in a run folder, so anyone can check that
the evidence they hold is the evidence the harness wrote.

``manifest.json`` is written last, after every report; :func:`verify_manifest` lists any file
that has since gone missing, changed, or appeared. By hand: ``sha256sum evidence/air.pcap`` and
compare with the manifest entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from harness.evidence.record import RECORD_FILE, write_json_atomic

__all__ = ["MANIFEST_FILE", "verify_manifest", "write_manifest"]

MANIFEST_FILE = "manifest.json"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(run_dir: Path) -> list[str]:
    found = []
    for folder, dirs, names in os.walk(run_dir):
        dirs.sort()
        for name in names:
            rel = (Path(folder) / name).relative_to(run_dir).as_posix()
            if rel != MANIFEST_FILE:
                found.append(rel)
    return sorted(found)


def _run_id(run_dir: Path) -> str:
    record = run_dir / RECORD_FILE
    if record.is_file():
        try:
            value = json.loads(record.read_text(encoding="utf-8")).get("run_id")
            if isinstance(value, str) and value:
                return value
        except (ValueError, AttributeError):
            pass  # a damaged record is reported by whoever reads it; the folder name will do here
    return run_dir.name


def write_manifest(run_dir: str | os.PathLike[str], run_id: str | None = None) -> Path:
    """Write ``manifest.json`` listing every file under ``run_dir`` with its size and SHA-256.

    ``run_id`` defaults to the one in the run record (``run.json``), else the folder name. The
    manifest itself is not listed. It is written atomically; the path is returned.
    """
    root = Path(run_dir)
    entries = []
    for rel in _files(root):
        path = root / rel
        entries.append({"path": rel, "size": path.stat().st_size, "sha256": _sha256(path)})
    manifest = {
        "run_id": run_id or _run_id(root),
        "created_utc": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "algorithm": "sha256",
        "files": entries,
    }
    return write_json_atomic(root / MANIFEST_FILE, manifest)


def verify_manifest(run_dir: str | os.PathLike[str]) -> list[str]:
    """Check ``run_dir`` against its ``manifest.json``; returns the problems, one line each.

    Reports files that are missing, whose size or SHA-256 changed, and files not in the
    manifest. An empty list means every file is exactly as the harness left it.
    """
    root = Path(run_dir)
    manifest_path = root / MANIFEST_FILE
    try:
        manifest: Any = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{MANIFEST_FILE} is missing from {root}"]
    except (ValueError, UnicodeDecodeError) as e:
        return [f"{MANIFEST_FILE} is not valid JSON: {e}"]
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        return [f"{MANIFEST_FILE} has no 'files' list"]
    if manifest.get("algorithm") != "sha256":
        return [f"{MANIFEST_FILE}: unsupported algorithm {manifest.get('algorithm')!r} (expected 'sha256')"]
    problems: list[str] = []
    listed: set[str] = set()
    for i, entry in enumerate(manifest["files"]):
        if not isinstance(entry, dict) or not {"path", "size", "sha256"} <= entry.keys():
            problems.append(f"{MANIFEST_FILE}: entry {i} lacks path, size or sha256")
            continue
        rel = str(entry["path"])
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or rel == MANIFEST_FILE:
            problems.append(f"{MANIFEST_FILE}: entry {i} has an unsafe path {rel!r}")
            continue
        listed.add(rel)
        path = root / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            problems.append(f"changed size: {rel} (manifest {entry['size']} bytes, now {size})")
            continue
        digest = _sha256(path)
        if digest != entry["sha256"]:
            problems.append(f"changed content: {rel} (sha256 manifest {entry['sha256']}, now {digest})")
    for rel in _files(root):
        if rel not in listed:
            problems.append(f"extra file not in manifest: {rel}")
    return problems
