"""A power switch worked through a device's control port (``{"cmd": "power", "on": ...}``).

Emulated devices take their power through their control port, standing in for the relay a bench
puts in the device's supply. A bench with a USB relay board implements the same
:class:`~harness.power.driver.PowerDriver`, so scenarios cannot tell the two apart.
"""

from __future__ import annotations

from harness.ports.control import ControlPort
from harness.power.driver import PowerDriver


class ControlPortPower(PowerDriver):
    """Cuts and restores a device's power by asking its control port."""

    def __init__(self, port: ControlPort, *, powered: bool = False) -> None:
        self.port = port
        self.name = port.name
        self._powered = powered

    async def cut(self) -> None:
        """Cut the device's power."""
        result = await self.port.request("power", on=False)
        self._powered = bool(result.get("powered", False))

    async def restore(self) -> None:
        """Restore the device's power."""
        result = await self.port.request("power", on=True)
        self._powered = bool(result.get("powered", True))

    def is_on(self) -> bool:
        """Whether the device had power after the last switch action."""
        return self._powered
