"""Testbed definitions (YAML) and the emulated HAN (``testbeds.emulator``)."""
