"""althan-ota-harness: hardware-in-the-loop tests of ZigBee OTA updates for GB smart-metering HAN devices."""

__version__ = "0.1.0"
