"""Robot Framework keyword library: ``Library    harness.robot.OtaLibrary``."""

from harness.robot.library import OtaLibrary

__all__ = ["OtaLibrary"]
