"""althan-ota-harness: hardware-in-the-loop test harness for ZigBee OTA updates of GB smart-metering HAN devices."""

__version__ = "0.1.0"
