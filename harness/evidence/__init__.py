"""Evidence of a run, written as it happens: radio capture, timeline, serial transcripts, images,
the run record and the manifest.

Nothing here knows about the emulator: the same recorder serves a lab bench with a real sniffer.
"""

from harness.evidence.decode import FrameSummary, summarize
from harness.evidence.manifest import verify_manifest, write_manifest
from harness.evidence.pcap import PcapWriter, read_pcap
from harness.evidence.record import RunRecord, TestRecord, TransferRecord, overall_verdict
from harness.evidence.recorder import Recorder
from harness.evidence.timeline import TimelineWriter, finalize_timeline, read_timeline

__all__ = [
    "FrameSummary",
    "PcapWriter",
    "Recorder",
    "RunRecord",
    "TestRecord",
    "TimelineWriter",
    "TransferRecord",
    "finalize_timeline",
    "overall_verdict",
    "read_pcap",
    "read_timeline",
    "summarize",
    "verify_manifest",
    "write_manifest",
]
