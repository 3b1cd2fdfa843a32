"""The Communications Hub role played by the harness: a zigpy controller that forms the network,
lets the devices join, reads them over ZigBee and serves them OTA images.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import zigpy.application
import zigpy.device
import zigpy.exceptions
import zigpy.types as t
import zigpy.zcl
import zigpy.zdo.types as zdo_t
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Basic, Ota

from harness.errors import BenchError, DeviceFault

LOGGER = logging.getLogger(__name__)

READ_ATTEMPTS = 3


class _InitWatcher:
    """zigpy listener that wakes waiters when a device finishes its interview or announces itself."""

    def __init__(self) -> None:
        self.waiters: dict[t.EUI64, list[asyncio.Future[zigpy.device.Device]]] = {}
        self.announces: dict[t.EUI64, list[asyncio.Future[None]]] = {}

    def device_initialized(self, device: zigpy.device.Device) -> None:
        for future in self.waiters.pop(device.ieee, []):
            if not future.done():
                future.set_result(device)

    def device_announce(self, device: zigpy.device.Device) -> None:
        """The device's ZDO saw a Device_annce (a boot, reboot or rejoin)."""
        for future in self.announces.pop(device.ieee, []):
            if not future.done():
                future.set_result(None)

    def device_joined(self, device: zigpy.device.Device) -> None:
        """A device zigpy did not know joined (it announces too; device_announce covers it)."""

    def raw_device_initialized(self, device: zigpy.device.Device) -> None:
        """Interview done but no quirk applied; not used by the harness."""

    def device_removed(self, device: zigpy.device.Device) -> None:
        """A device left; not used yet."""

    def device_left(self, device: zigpy.device.Device) -> None:
        """A device left; not used yet."""


class _ReportWatcher:
    """zigpy cluster listener that wakes waiters when the cluster's Report Attributes arrive."""

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[dict[int, Any]]] = []
        self.count = 0

    def general_command(self, hdr: foundation.ZCLHeader, args: Any) -> None:
        if hdr.command_id != foundation.GeneralCommand.Report_Attributes:
            return
        self.count += 1
        values = {int(record.attrid): record.value.value for record in args.attribute_reports}
        for future in self.waiters:
            if not future.done():
                future.set_result(values)
        self.waiters.clear()


class ReportingHub:
    """Bindings and attribute reports between the hub and the devices (a mixin of :class:`Hub`)."""

    _report_watchers: dict[tuple[t.EUI64, int], _ReportWatcher]

    @staticmethod
    def served_cluster(device: zigpy.device.Device, cluster: str | int) -> zigpy.zcl.Cluster:
        """The device's server cluster by name (``metering``) or id; a device without it is a fault."""
        endpoint = device.endpoints[1]
        for candidate in endpoint.in_clusters.values():
            names = (candidate.ep_attribute, candidate.name, candidate.cluster_id)
            # zigpy names Smart Energy clusters 'smartenergy_metering'; people say 'metering'.
            if cluster in names or f"_{cluster}" == str(candidate.ep_attribute)[-len(f"_{cluster}") :]:
                return candidate
        served = ", ".join(str(c.ep_attribute) for c in endpoint.in_clusters.values())
        raise DeviceFault(f"{device.ieee} does not serve a {cluster!r} cluster (it serves: {served})")

    async def bind_and_configure_reporting(
        self,
        device: zigpy.device.Device,
        cluster: zigpy.zcl.Cluster,
        attribute: str,
        min_interval: int,
        max_interval: int,
    ) -> None:
        """Bind the device's cluster to the hub and ask for reports of ``attribute`` every interval."""
        try:
            bound = await cluster.bind()
            status = bound[0] if isinstance(bound, list | tuple) and bound else bound
            if status != zdo_t.Status.SUCCESS:
                raise DeviceFault(f"{device.ieee} refused to bind {cluster.name}: {status!r}")
            responses = await cluster.configure_reporting(
                attribute, min_interval, max_interval, reportable_change=1
            )
        except (TimeoutError, zigpy.exceptions.ZigbeeException) as exc:
            raise DeviceFault(
                f"{device.ieee} did not answer the reporting set-up of {cluster.name}: {exc!r}"
            ) from exc
        for response in responses if isinstance(responses, list) else [responses]:
            for record in getattr(response, "status_records", []) or []:
                if record.status != foundation.Status.SUCCESS:
                    raise DeviceFault(
                        f"{device.ieee} refused to report {cluster.name}.{attribute}: {record.status!r}"
                    )
        self._watch_reports(device, cluster)

    def _watch_reports(self, device: zigpy.device.Device, cluster: zigpy.zcl.Cluster) -> _ReportWatcher:
        key = (device.ieee, cluster.cluster_id)
        watcher = self._report_watchers.get(key)
        if watcher is None:
            watcher = self._report_watchers[key] = _ReportWatcher()
            cluster.add_listener(watcher)
        return watcher

    def report_waiter(
        self, device: zigpy.device.Device, cluster: zigpy.zcl.Cluster
    ) -> asyncio.Future[dict[int, Any]]:
        """A future that completes with the values of the next Report Attributes of this cluster."""
        future: asyncio.Future[dict[int, Any]] = asyncio.get_running_loop().create_future()
        self._watch_reports(device, cluster).waiters.append(future)
        return future

    async def binding_table(self, device: zigpy.device.Device) -> list[tuple[int, str]]:
        """The device's binding table over ZDO Mgmt_Bind_req: (cluster id, destination) per entry."""
        entries: list[tuple[int, str]] = []
        start = 0
        while True:
            try:
                status, total, _start, records = await device.zdo.Mgmt_Bind_req(start)
            except (TimeoutError, zigpy.exceptions.ZigbeeException) as exc:
                raise DeviceFault(f"{device.ieee} did not answer Mgmt_Bind_req: {exc!r}") from exc
            if status != zdo_t.Status.SUCCESS:
                raise DeviceFault(f"{device.ieee} answered Mgmt_Bind_req with {status!r}")
            for record in records:
                entries.append((int(record.ClusterId), str(record.DstAddress.ieee)))
            start += len(records)
            if not records or start >= total:
                return entries


class Hub(ReportingHub):
    """The harness's CH: one zigpy ControllerApplication and what the scenarios ask of it."""

    def __init__(self, app: zigpy.application.ControllerApplication) -> None:
        self.app = app
        self._report_watchers: dict[tuple[t.EUI64, int], _ReportWatcher] = {}
        # How each device (re)joined, as the Trust Centre reported it: (testbed time, how, admitted).
        self.joins: dict[t.EUI64, list[tuple[float, str, bool]]] = {}
        self._watcher = _InitWatcher()
        self._rejoins: dict[t.EUI64, int] = {}
        self._announce_listeners: set[t.EUI64] = set()

    async def start(self) -> None:
        """Bring the coordinator up and start the network; a radio failure is a bench error."""
        self.app.add_listener(self._watcher)
        self.app.add_listener(self)
        try:
            await self.app.startup(auto_form=False)
        except Exception as exc:
            raise BenchError(f"the hub's radio did not start: {exc!r}") from exc

    async def stop(self) -> None:
        """Shut the coordinator down."""
        with contextlib.suppress(Exception):
            await self.app.shutdown(db=False)

    def device_joined(self, device: zigpy.device.Device) -> None:
        """zigpy listener: count every (re)join or announce, per device."""
        self._rejoins[device.ieee] = self._rejoins.get(device.ieee, 0) + 1

    def trust_centre_join(self, ieee: t.EUI64, nwk: t.NWK, how: str, admitted: bool) -> None:
        """Radio listener: the Trust Centre heard of a join or rejoin (how, and whether it sent the key)."""
        now = asyncio.get_running_loop().time()
        self.joins.setdefault(ieee, []).append((now, how, admitted))

    def trust_centre_rejoins(self, ieee: t.EUI64, since: float) -> list[tuple[float, bool]]:
        """The device's trust-centre rejoins since testbed time ``since``: (time, admitted) each."""
        return [
            (when, ok)
            for when, how, ok in self.joins.get(ieee, [])
            if how == "trust-centre-rejoin" and when >= since
        ]

    def device(self, ieee: t.EUI64) -> zigpy.device.Device | None:
        """The zigpy device with this IEEE address, if it has joined."""
        device = self.app.devices.get(ieee)
        return device if isinstance(device, zigpy.device.Device) else None

    async def wait_until_joined(self, ieee: t.EUI64, timeout: float) -> zigpy.device.Device:
        """Wait until the device has joined and zigpy has interviewed it (endpoints known)."""
        device = self.device(ieee)
        if device is None or not device.is_initialized:
            future: asyncio.Future[zigpy.device.Device] = asyncio.get_running_loop().create_future()
            self._watcher.waiters.setdefault(ieee, []).append(future)
            try:
                device = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise DeviceFault(
                    f"device {ieee} did not join and answer the interview within {timeout:g}s"
                ) from None
        if ieee not in self._announce_listeners:
            self._announce_listeners.add(ieee)
            device.zdo.add_listener(self._watcher)
        return device

    def announce_waiter(self, ieee: t.EUI64) -> asyncio.Future[None]:
        """A future that completes at the device's next Device_annce (e.g. after it reboots)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watcher.announces.setdefault(ieee, []).append(future)
        return future

    async def read_ota_attribute(self, device: zigpy.device.Device, attribute: str) -> Any:
        """Read one attribute of the device's OTA Upgrade client over ZigBee (through every hop)."""
        cluster = device.endpoints[1].out_clusters[Ota.cluster_id]
        return await self._read(device, cluster, attribute)

    async def read_basic_attribute(self, device: zigpy.device.Device, attribute: str) -> Any:
        """Read one Basic cluster attribute of the device over ZigBee."""
        cluster = device.endpoints[1].in_clusters[Basic.cluster_id]
        return await self._read(device, cluster, attribute)

    async def _read(self, device: zigpy.device.Device, cluster: Any, attribute: str) -> Any:
        last: Exception | None = None
        for _ in range(READ_ATTEMPTS):
            try:
                success, failure = await cluster.read_attributes([attribute], allow_cache=False)
            except (TimeoutError, zigpy.exceptions.ZigbeeException) as exc:
                last = exc
                continue
            if attribute in success:
                return success[attribute]
            raise DeviceFault(
                f"{device.ieee} answered the read of {cluster.name}.{attribute} with "
                f"{failure.get(attribute)!r}"
            )
        raise DeviceFault(
            f"{device.ieee} did not answer a read of {cluster.name}.{attribute} "
            f"after {READ_ATTEMPTS} attempts ({last!r})"
        )
