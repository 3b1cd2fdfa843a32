"""Testbed files: what a premises holds (devices, links, radio), validated with errors naming file:line.

Load one with :func:`load_testbed`; every field is described in ``docs/testbed.md``.
"""

from harness.testbed.loader import default_testbed_path, load_testbed, testbed_summary
from harness.testbed.model import (
    BRIDGE_TYPES,
    BridgeSpec,
    DeviceSpec,
    Duration,
    LinkSpec,
    RadioSpec,
    TestbedSpec,
    format_duration,
    parse_duration,
)

__all__ = [
    "BRIDGE_TYPES",
    "BridgeSpec",
    "DeviceSpec",
    "Duration",
    "LinkSpec",
    "RadioSpec",
    "TestbedSpec",
    "default_testbed_path",
    "format_duration",
    "load_testbed",
    "parse_duration",
    "testbed_summary",
]
