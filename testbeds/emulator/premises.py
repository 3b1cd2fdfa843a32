"""One emulated premises: the medium, its devices, their routes, their power, and a coordinator radio.

The coordinator (the CH) is either an emulated device or, when the harness plays the CH itself, a bare
coordinator radio (``CoordinatorRadio``): the ZigBee stack a coordinator chip runs (as an EZSP or ZNP
network co-processor does), whose application side is the harness's zigpy controller. The coordinator
is the Trust Centre: it admits a joining device only while joining is permitted for it and only with
the link key its install code gives (:meth:`CoordinatorRadio.permit_with_install_code`).

A commissioned premises starts as a network formed earlier: every parent's child table already holds
its commissioned end devices, and the Trust Centre holds the link key of every device given an install
code.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from testbeds.emulator import zdo
from testbeds.emulator.device import DeviceConfig, DeviceLog, EmulatedDevice
from testbeds.emulator.joining import TrustCentre
from testbeds.emulator.keys import link_key_from_install_code, validate_install_code
from testbeds.emulator.medium import Medium, Sniffer
from testbeds.emulator.node import (
    COORDINATOR,
    ROUTER,
    SLEEPY_END_DEVICE,
    AddressBook,
    ApsIndication,
    ChildEntry,
    Node,
    NodeIdentity,
)
from testbeds.emulator.security import NwkSecurity

if TYPE_CHECKING:
    from testbeds.emulator.comms_hub import CommsHub


@dataclass(frozen=True)
class LinkConfig:
    """A link between two devices: ``radio`` (802.15.4 neighbours) or ``p2p`` (Alt HAN bridge pair)."""

    a: str
    b: str
    kind: str = "radio"
    latency: float = 0.002
    loss: float = 0.0


def compute_routes(devices: Iterable[DeviceConfig], links: Iterable[LinkConfig]) -> dict[str, dict[int, str]]:
    """Next hop from every router to every device, over the shortest router path (the converged mesh).

    Only coordinators and routers relay; ties are broken by device name so the routes, and so the
    whole run, are the same for the same testbed.
    """
    devices = list(devices)
    by_name = {d.name: d for d in devices}
    graph: dict[str, list[str]] = {d.name: [] for d in devices}
    for link in links:
        graph[link.a].append(link.b)
        graph[link.b].append(link.a)
    for neighbours in graph.values():
        neighbours.sort()
    routes: dict[str, dict[int, str]] = {}
    for source in devices:
        if source.role not in (COORDINATOR, ROUTER):
            continue
        first_hop: dict[str, str] = {}
        queue: deque[str] = deque()
        for neighbour in graph[source.name]:
            first_hop[neighbour] = neighbour
            queue.append(neighbour)
        while queue:
            here = queue.popleft()
            if by_name[here].role not in (COORDINATOR, ROUTER):
                continue  # end devices do not relay
            for neighbour in graph[here]:
                if neighbour != source.name and neighbour not in first_hop:
                    first_hop[neighbour] = first_hop[here]
                    queue.append(neighbour)
        routes[source.name] = {by_name[dst].nwk: hop for dst, hop in first_hop.items()}
    return routes


class CoordinatorRadio:
    """The coordinator's radio and stack, driven by an application outside the emulator (zigpy)."""

    def __init__(self, node: Node, trust_centre: TrustCentre) -> None:
        self.node = node
        self.trust_centre = trust_centre

    @property
    def allow_tc_rejoin(self) -> bool:
        """Trust Centre policy: whether a device that lost the network key may get it again (TC rejoin)."""
        return self.trust_centre.allow_tc_rejoin

    @allow_tc_rejoin.setter
    def allow_tc_rejoin(self, allowed: bool) -> None:
        self.trust_centre.allow_tc_rejoin = allowed

    def permit(self, duration_s: int, *, broadcast: bool = True) -> None:
        """Open joining for ``duration_s`` seconds to any device whose link key the Trust Centre holds.

        With ``broadcast`` the routers are told too (ZDO Mgmt_Permit_Joining_req); without it only the
        coordinator's own association permit opens (zigpy broadcasts the request itself).
        """
        self.trust_centre.permit(None, duration_s)
        if broadcast:
            self.trust_centre.permit_joining_broadcast(duration_s)
        else:
            self.node.permit_joining(duration_s)

    def permit_with_link_key(
        self, ieee: bytes, link_key: bytes, duration_s: int, *, broadcast: bool = True
    ) -> None:
        """Let device ``ieee`` (8 bytes, on-air order) join for ``duration_s`` seconds with ``link_key``."""
        if len(ieee) != 8 or len(link_key) != 16:
            raise ValueError("an IEEE address is 8 bytes and a link key 16")
        self.trust_centre.permit(ieee, duration_s, link_key)
        if broadcast:
            self.trust_centre.permit_joining_broadcast(duration_s)
        else:
            self.node.permit_joining(duration_s)

    def permit_with_install_code(self, ieee: bytes, code: bytes, duration_s: int) -> None:
        """Let the device ``ieee`` join for ``duration_s`` seconds with its install code (CRC included)."""
        self.permit_with_link_key(ieee, link_key_from_install_code(code), duration_s)

    def request_leave(self, nwk: int, ieee: bytes, *, rejoin: bool = False) -> None:
        """Ask a device to leave the network (ZDO Mgmt_Leave_req)."""
        payload = zdo.encode_mgmt_leave_req(self.node.next_aps_counter(), ieee, rejoin=rejoin)
        self.node.spawn(
            self.node.aps_send(
                dst=nwk,
                dst_endpoint=0,
                src_endpoint=0,
                profile=zdo.ZDO_PROFILE,
                cluster=zdo.MGMT_LEAVE_REQ,
                payload=payload,
                ack=False,
            )
        )

    def on_join(self, callback: Callable[[int, bytes, str, bool], None] | None) -> None:
        """Call ``callback(nwk, ieee, how, admitted)`` for every join or rejoin the Trust Centre hears of."""
        self.trust_centre.on_join = callback

    def on_device_left(self, callback: Callable[[int, bytes], None] | None) -> None:
        """Call ``callback(nwk, ieee)`` when the Trust Centre learns that a device left."""
        self.trust_centre.on_device_left = callback

    async def send(
        self,
        *,
        dst: int,
        dst_endpoint: int,
        src_endpoint: int,
        profile: int,
        cluster: int,
        payload: bytes,
        ack: bool,
        extended_timeout: bool = False,
    ) -> bool:
        """Send application data from the coordinator; True when delivered (APS-acked if asked)."""
        return await self.node.aps_send(
            dst=dst,
            dst_endpoint=dst_endpoint,
            src_endpoint=src_endpoint,
            profile=profile,
            cluster=cluster,
            payload=payload,
            ack=ack,
            extended_timeout=extended_timeout,
        )

    def stop(self) -> None:
        """Switch the coordinator radio off."""
        self.node.stop()


class Premises:
    """The emulated devices of one premises on one simulated medium."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        devices: list[DeviceConfig],
        links: list[LinkConfig],
        seed: int,
        network_key: bytes | None = None,
        network_key_sequence: int = 0,
    ) -> None:
        self.loop = loop
        self.seed = seed
        self.network_key = network_key
        self.network_key_sequence = network_key_sequence
        self.rng = random.Random(seed)
        self.medium = Medium(loop=loop, rng=random.Random(f"{seed}/medium"))
        for link in links:
            self.medium.connect(link.a, link.b, kind=link.kind, latency=link.latency, loss=link.loss)
        self.configs = {d.name: d for d in devices}
        for d in devices:
            if d.install_code is not None:
                validate_install_code(d.install_code)
        self.addresses = AddressBook()
        for d in devices:
            self.addresses.add(d.name, d.nwk, sleepy=d.role == "sleepy_end_device")
        self.routes = compute_routes(devices, links)
        self.log = DeviceLog()
        self.devices: dict[str, EmulatedDevice] = {}
        self.coordinator: CoordinatorRadio | None = None

    def _routes_for(self, config: DeviceConfig) -> dict[int, str]:
        return self.routes.get(config.name, {})

    def _commissioned_children(self, parent: str) -> dict[int, ChildEntry]:
        return {
            d.nwk: ChildEntry(d.name, d.nwk, d.ieee, d.role != SLEEPY_END_DEVICE)
            for d in self.configs.values()
            if d.parent == parent and d.commissioned and d.role not in (COORDINATOR, ROUTER)
        }

    def add_sniffer(self, sniffer: Sniffer) -> None:
        """Show every frame on air (radio and P2P) to ``sniffer``."""
        self.medium.add_sniffer(sniffer)

    def add_log_listener(self, listener: Callable[[float, str, str], None]) -> None:
        """Receive every device log line as (testbed time, device name, text)."""
        self.log.listeners.append(listener)

    def emulate(self, name: str) -> EmulatedDevice:
        """Create the emulated device ``name`` (powered off until :meth:`power_on`)."""
        config = self.configs[name]
        device = EmulatedDevice(
            config,
            loop=self.loop,
            medium=self.medium,
            addresses=self.addresses,
            routes=self._routes_for(config),
            rng=random.Random(f"{self.seed}/{name}"),
            log=self.log,
            ieee_map={c.ieee: c.nwk for c in self.configs.values()},
        )
        if config.commissioned and config.role in (COORDINATOR, ROUTER):
            device.network_state.children.update(self._commissioned_children(name))
        self.devices[name] = device
        return device

    def attach_coordinator(
        self,
        name: str,
        on_data: Callable[[ApsIndication], None],
        log: Callable[[str], None],
        frame_counter: Callable[[], int] | None = None,
    ) -> CoordinatorRadio:
        """Switch on the coordinator radio for device ``name``; its received data goes to ``on_data``.

        ``frame_counter`` gives the NWK frame counter of each secured frame sent (an emulated CH keeps
        it in flash so it survives a power cut); without it the counter starts at 0 in RAM.
        """
        config = self.configs[name]
        node = Node(
            loop=self.loop,
            medium=self.medium,
            identity=NodeIdentity(
                name=name, nwk=config.nwk, ieee=config.ieee, pan_id=config.pan_id, role=COORDINATOR
            ),
            addresses=self.addresses,
            routes=self._routes_for(config),
            rng=random.Random(f"{self.seed}/{name}/radio"),
            on_data=on_data,
            log=log,
            security=NwkSecurity(self.network_key, self.network_key_sequence) if self.network_key else None,
            children=self._commissioned_children(name),
            frame_counter=frame_counter,
        )
        link_keys = {
            d.ieee: link_key_from_install_code(d.install_code)
            for d in self.configs.values()
            if d.commissioned and d.install_code is not None
        }
        trust_centre = TrustCentre(
            node=node,
            network_key=self.network_key,
            key_sequence=self.network_key_sequence,
            link_keys=link_keys,
            log=log,
        )
        node.start()
        self.coordinator = CoordinatorRadio(node, trust_centre)
        return self.coordinator

    def emulate_hub(self, name: str) -> CommsHub:
        """Create the emulated Communications Hub ``name`` (powered off until :meth:`power_on`).

        The CH is an application (OTA server, Gas Proxy Function, GBCS commands on its control port)
        on this premises' coordinator radio (:meth:`attach_coordinator`); every other device of the
        premises is in its device log.
        """
        from testbeds.emulator.comms_hub import CommsHub

        config = self.configs[name]
        hub = CommsHub(
            config,
            attach=lambda on_data, log, counter: self.attach_coordinator(name, on_data, log, counter),
            clients=[c for c in self.configs.values() if c.name != name],
            loop=self.loop,
            medium=self.medium,
            addresses=self.addresses,
            routes=self._routes_for(config),
            rng=random.Random(f"{self.seed}/{name}"),
            log=self.log,
            ieee_map={c.ieee: c.nwk for c in self.configs.values()},
        )
        self.devices[name] = hub
        return hub

    def power_on(self, name: str) -> None:
        """Apply power to an emulated device."""
        self.devices[name].power_on()

    def power_off(self, name: str) -> None:
        """Cut power to an emulated device."""
        self.devices[name].power_off()

    def shutdown(self) -> None:
        """Power everything off and switch the coordinator radio off."""
        for device in self.devices.values():
            device.power_off()
        if self.coordinator is not None:
            self.coordinator.stop()
