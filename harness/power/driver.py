"""The power protocol: what every power switch (emulated, USB relay, PDU) offers a scenario."""

from __future__ import annotations

import abc


class PowerDriver(abc.ABC):
    """One device's power switch: cut, restore, cycle. Nothing else, so benches swap freely."""

    name: str

    @abc.abstractmethod
    async def cut(self) -> None:
        """Cut the device's power."""

    @abc.abstractmethod
    async def restore(self) -> None:
        """Restore the device's power."""

    @abc.abstractmethod
    def is_on(self) -> bool:
        """Whether the device has power now."""
