"""Emulated GB smart-metering HAN devices on a simulated 802.15.4 medium.

Nothing in this package imports ``harness``: the emulator is a device under test, written from the
specifications, so that the harness's checks and the emulator's behaviour cannot hide each other's bugs.
"""
