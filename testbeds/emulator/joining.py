"""Joining, rejoining and leaving: a device's side (the joiner) and the coordinator's (the Trust Centre).

Written from ZigBee Specification 05-3474 R22 §3.6.1.4 (joining through association and by NWK rejoin),
§3.6.1.10 (leaving), §4.6.3 (Trust Centre: Update Device, Transport Key, tunnelling through the parent)
and the ZigBee 3.0 Base Device Behaviour install-code commissioning.

A device that has never joined scans (MAC Beacon Request), picks a parent whose beacon permits joining,
associates with it (MAC Association Request, then a Data Request that fetches the Association Response)
and waits for the network key: its parent tells the Trust Centre (APS Update Device, "unsecured join"),
and the Trust Centre sends an APS Transport Key secured with the key-transport key derived from the
device's own link key (install code), tunnelled to the parent, which hands it to the device with NWK
security off. A device that has joined rejoins at every boot: a *secure* NWK rejoin (Rejoin Request
secured with the network key) if it still holds the key, else a *Trust Centre* rejoin (unsecured Rejoin
Request, then a Transport Key as for a join). Only then does it announce itself (Device_annce).

What a device's stack keeps across power cuts (network key, whether it has joined, its child table, the
stack version it last ran) is a :class:`NetworkState`, held by the device like its flash.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from testbeds.emulator import zdo
from testbeds.emulator.commands import (
    ASSOCIATION_SUCCESS,
    KEY_TYPE_NETWORK,
    UPDATE_DEVICE_LEFT,
    UPDATE_SECURED_REJOIN,
    UPDATE_TC_REJOIN,
    UPDATE_UNSECURED_JOIN,
    Beacon,
    TransportKey,
    UpdateDevice,
    decode_transport_key,
    encode_transport_key,
    encode_tunnel,
)
from testbeds.emulator.frames import APS_COMMAND, NWK_BROADCAST_ROUTERS, ApsFrame, FrameError
from testbeds.emulator.keys import (
    KEY_ID_KEY_TRANSPORT,
    ApsAuxHeader,
    ApsSecurity,
    key_transport_key,
    link_key_from_install_code,
)
from testbeds.emulator.node import COORDINATOR, ChildEntry, Node
from testbeds.emulator.security import NwkSecurity, SecurityError

# From power-up to the start of the rejoin (the stack restoring its tables from NVM).
REJOIN_START_S = 1.0
# Active scan: how long the device listens for beacons after its Beacon Request (scan duration 3:
# (2^3 + 1) x 15.36 ms on one channel).
SCAN_S = 0.138
# How long a joiner waits for the Trust Centre's network key after associating or TC-rejoining
# (apsSecurityTimeOutPeriod is a few seconds; the key may cross a P2P link and a sleepy parent's queue).
KEY_WAIT_S = 5.0
# Sleepy devices poll this often while they wait for a rejoin response or a key.
JOIN_POLL_S = 0.1
# Retry after a failed attempt: doubling from the first value up to the last.
RETRY_FIRST_S = 5.0
RETRY_MAX_S = 60.0
SUCCESS = 0x00


@dataclass
class NetworkState:
    """What a device's ZigBee stack keeps in non-volatile memory about its network."""

    network_key: bytes | None = None
    key_sequence: int = 0
    joined: bool = False
    stack_version: int | None = None
    children: dict[int, ChildEntry] = field(default_factory=dict)


def boot_network_state(
    state: NetworkState,
    *,
    stack_version: int,
    is_router: bool,
    defects: frozenset[str],
    log: Callable[[str], None],
) -> None:
    """Apply what a boot does to the stored network state (and what a defective firmware loses)."""
    previous, state.stack_version = state.stack_version, stack_version
    if (
        "loses-network-key-on-stack-upgrade" in defects
        and previous is not None
        and previous != stack_version
        and state.network_key is not None
    ):
        log(
            f"defect loses-network-key-on-stack-upgrade: stack {previous} -> {stack_version} "
            "lost the network key"
        )
        state.network_key = None
    if "children-do-not-rejoin" in defects and is_router and state.children:
        log(f"defect children-do-not-rejoin: child table ({len(state.children)} entries) not restored")
        state.children.clear()


class Joiner:
    """A device's joining procedure: association, secure or Trust Centre rejoin, key, announce; and leave."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        node: Node,
        state: NetworkState,
        secured_network: bool,
        capability: int,
        install_code: bytes | None,
        defects: frozenset[str],
        rebooted: bool,
        upgraded: bool,
        log: Callable[[str], None],
        rng: random.Random,
        boot_time: float,
        on_ready: Callable[[], None],
        announce: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.node = node
        self.state = state
        self.secured_network = secured_network
        self.capability = capability
        self.link_key = link_key_from_install_code(install_code) if install_code is not None else None
        self.defects = defects
        self.rebooted = rebooted
        self.upgraded = upgraded
        self.log = log
        self.rng = rng
        self.boot_time = boot_time
        self._on_ready = on_ready
        self._announce = announce
        self._ready_sent = False
        self._started_at = 0.0
        self._key: asyncio.Future[TransportKey] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        node.on_aps_command = self._on_aps_command
        node.on_leave_request = self._on_leave_request

    # ------------------------------------------------------------------------------------ control
    def start(self) -> None:
        """Begin after power-up: rejoin (or join) and then announce, as the firmware's stack does."""
        self._started_at = self.loop.time()
        if "drops-off-after-upgrade" in self.defects and self.upgraded:
            # That firmware's stack never tries to rejoin; the device itself falls silent when ready.
            self._call_later(self.boot_time, self._ready)
            return
        if "never-rejoins-after-reboot" in self.defects and self.rebooted:
            self.log("defect never-rejoins-after-reboot: stack stays off the network after the reboot")
            self.node.on_network = False
            return
        self._spawn(self._run(REJOIN_START_S))

    def stop(self) -> None:
        """Power lost: cancel every timer and task (the procedure starts again at the next boot)."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call_later(self, delay: float, callback: Callable[[], None]) -> None:
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = self.loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)

    def _ready(self) -> None:
        if self._ready_sent:
            self._announce()
            return
        self._ready_sent = True
        self._on_ready()

    # ---------------------------------------------------------------------------------- procedure
    async def _run(self, delay: float) -> None:
        await asyncio.sleep(delay)
        retry = RETRY_FIRST_S
        while True:
            joined = await self._attempt()
            if not joined and self._may_resume():
                # A router needs no parent: it carries on with the network state it stored.
                self.log("no parent answered the rejoin; resuming on the stored network state")
                joined = True
            if joined:
                self.state.joined = True
                remaining = self._started_at + self.boot_time - self.loop.time()
                self._call_later(remaining, self._ready)
                return
            self.log(f"not on the network; next attempt in {retry:g}s")
            await asyncio.sleep(retry)
            retry = min(retry * 2, RETRY_MAX_S)

    def _may_resume(self) -> bool:
        state = self.state
        return (
            self.node.me.is_router
            and state.joined
            and (state.network_key is not None or not self.secured_network)
        )

    async def _attempt(self) -> bool:
        if self.state.joined and (self.state.network_key is not None or not self.secured_network):
            return await self._rejoin(secure=self.secured_network)
        if self.state.joined:
            return await self._rejoin(secure=False)
        return await self._associate()

    def _choose_parent(
        self, beacons: list[tuple[str, int, Beacon]], *, need_permit: bool
    ) -> tuple[str, int] | None:
        candidates = [(name, nwk) for name, nwk, b in beacons if b.association_permit or not need_permit]
        configured = self.node.configured_parent
        if configured is not None:
            # An end device's routes run through the parent the premises gives it.
            return next(((n, a) for n, a in candidates if n == configured), None)
        if not candidates:
            return None
        return min(candidates, key=lambda c: c[1])  # the coordinator (0x0000) first, then the lowest address

    async def _associate(self) -> bool:
        if self.link_key is None:
            self.log("cannot join: no install code, so no link key to receive the network key with")
            return False
        beacons = await self.node.scan(SCAN_S)
        choice = self._choose_parent(beacons, need_permit=True)
        if choice is None:
            heard = ", ".join(sorted({name for name, _, _ in beacons})) or "none"
            self.log(f"join: no parent permits joining (beacons from: {heard})")
            return False
        parent, parent_nwk = choice
        self.log(f"join: associating with {parent} (0x{parent_nwk:04X})")
        result = await self.node.associate(parent, parent_nwk, self.capability)
        if result is None:
            self.log(f"join: no association response from {parent}")
            return False
        short, status = result
        if status != ASSOCIATION_SUCCESS:
            self.log(f"join: {parent} refused the association (status 0x{status:02X})")
            return False
        self.log(f"join: associated as 0x{short:04X}; waiting for the network key")
        return await self._wait_for_key(parent)

    async def _rejoin(self, *, secure: bool) -> bool:
        kind = "secure rejoin" if secure else "trust centre rejoin"
        if not self.secured_network:
            kind = "rejoin"
        beacons = await self.node.scan(SCAN_S)
        choice = self._choose_parent(beacons, need_permit=False)
        if choice is None:
            heard = ", ".join(sorted({name for name, _, _ in beacons})) or "none"
            self.log(f"{kind}: no parent found (beacons from: {heard})")
            return False
        parent, parent_nwk = choice
        self.log(f"{kind}: Rejoin Request to {parent} (0x{parent_nwk:04X})")
        waiter = self._key_waiter() if not secure and self.secured_network else None
        status = await self.node.rejoin(parent, parent_nwk, self.capability, secure=secure)
        if status != SUCCESS:
            self.node.awaiting_key = False
            self._key = None
            if status is None:
                self.log(f"{kind}: no Rejoin Response from {parent}")
            else:
                self.log(f"{kind}: {parent} refused (status 0x{status:02X})")
            return False
        if waiter is None:
            self.log(f"{kind}: accepted by {parent}")
            return True
        self.log(f"{kind}: accepted by {parent}; waiting for the network key")
        return await self._wait_for_key(parent, waiter)

    def _key_waiter(self) -> asyncio.Future[TransportKey]:
        self._key = self.loop.create_future()
        self.node.awaiting_key = True
        return self._key

    async def _wait_for_key(self, parent: str, waiter: asyncio.Future[TransportKey] | None = None) -> bool:
        waiter = waiter or self._key_waiter()
        polling = self.node.me.is_sleepy
        try:
            deadline = self.loop.time() + KEY_WAIT_S
            while not waiter.done() and self.loop.time() < deadline:
                if polling:
                    self.node.poll_now()
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), JOIN_POLL_S if polling else KEY_WAIT_S)
                except TimeoutError:
                    continue
            if not waiter.done():
                self.log(f"no network key from the trust centre within {KEY_WAIT_S:g}s")
                return False
            key = waiter.result()
        finally:
            self.node.awaiting_key = False
            self._key = None
        self.state.network_key = key.key
        self.state.key_sequence = key.key_sequence
        self.node.security = NwkSecurity(key.key, key.key_sequence)
        self.node.on_network = True
        self.log(f"network key received from the trust centre (sequence {key.key_sequence}); stored")
        return True

    def _on_aps_command(self, src: int, raw: bytes) -> None:
        waiter = self._key
        if waiter is None or waiter.done():
            self.log(f"dropped APS command from 0x{src:04X}: not waiting for a key")
            return
        if self.link_key is None:
            self.log(f"dropped APS command from 0x{src:04X}: no link key to open it")
            return
        try:
            opened = ApsSecurity(key_transport_key(self.link_key)).unprotect(raw)
            if opened.aux.key_id != KEY_ID_KEY_TRANSPORT:
                raise SecurityError(f"key identifier {opened.aux.key_id} is not the key-transport key")
            key = decode_transport_key(opened.plaintext)
        except (FrameError, SecurityError) as exc:
            self.log(f"dropped APS command from 0x{src:04X}: {exc}")
            return
        if key.key_type != KEY_TYPE_NETWORK or key.destination != self.node.me.ieee:
            self.log(f"dropped Transport Key from 0x{src:04X}: not a network key for this device")
            return
        waiter.set_result(key)

    # -------------------------------------------------------------------------------------- leave
    def handle_zdo(self, cluster: int, payload: bytes, src: int, broadcast: bool) -> bool:
        """Network management requests the stack itself serves; True when ``cluster`` was one of them."""
        if cluster == zdo.MGMT_PERMIT_JOINING_REQ:
            try:
                tsn, duration, _tc = zdo.decode_mgmt_permit_joining_req(payload)
            except FrameError as exc:
                self.log(f"dropped malformed Mgmt_Permit_Joining_req: {exc}")
                return True
            if self.node.me.is_router:
                self.node.permit_joining(duration)
                self.log(f"permit joining for {duration}s")
            if not broadcast:
                self._zdo_reply(src, zdo.MGMT_PERMIT_JOINING_RSP, zdo.encode_mgmt_permit_joining_rsp(tsn, 0))
            return True
        if cluster == zdo.MGMT_LEAVE_REQ and not broadcast:
            try:
                tsn, ieee, _remove_children, rejoin = zdo.decode_mgmt_leave_req(payload)
            except FrameError as exc:
                self.log(f"dropped malformed Mgmt_Leave_req: {exc}")
                return True
            if ieee not in (bytes(8), self.node.me.ieee):
                self._zdo_reply(src, zdo.MGMT_LEAVE_RSP, zdo.encode_mgmt_leave_rsp(tsn, zdo.NOT_SUPPORTED))
                return True
            self._zdo_reply(src, zdo.MGMT_LEAVE_RSP, zdo.encode_mgmt_leave_rsp(tsn, zdo.SUCCESS))
            self.log(f"Mgmt_Leave_req from 0x{src:04X} (rejoin={rejoin})")
            self._call_later(0.2, lambda: self.leave(rejoin=rejoin))
            return True
        return False

    def _zdo_reply(self, dst: int, cluster: int, payload: bytes) -> None:
        self._spawn(
            self.node.aps_send(
                dst=dst,
                dst_endpoint=0,
                src_endpoint=0,
                profile=zdo.ZDO_PROFILE,
                cluster=cluster,
                payload=payload,
                ack=False,
            )
        )

    def _on_leave_request(self, rejoin: bool) -> None:
        self.log(f"asked to leave by the parent (rejoin={rejoin})")
        self.leave(rejoin=rejoin)

    def leave(self, *, rejoin: bool = False) -> None:
        """Leave the network (NWK Leave); without ``rejoin`` forget the key and switch the stack off."""
        self._spawn(self._leave(rejoin))

    async def _leave(self, rejoin: bool) -> None:
        await self.node.send_leave(rejoin=rejoin)
        if rejoin:
            self.log("left the network to rejoin")
            self._spawn(self._run(0.0))
            return
        self.state.network_key = None
        self.state.joined = False
        self.state.children.clear()
        self.node.security = None
        self.node.on_network = False
        self.log("left the network: network key dropped, stack stopped")
        self.node.stop()


class TrustCentre:
    """The coordinator's Trust Centre: who may join, their link keys, and the network key they get."""

    def __init__(
        self,
        *,
        node: Node,
        network_key: bytes | None,
        key_sequence: int,
        link_keys: dict[bytes, bytes],
        log: Callable[[str], None],
    ) -> None:
        self.node = node
        self.network_key = network_key
        self.key_sequence = key_sequence
        self.link_keys = dict(link_keys)
        self.log = log
        self.allow_tc_rejoin = True
        self._permitted: dict[bytes, float] = {}
        self._open_until = 0.0
        self._aps_counter = 0
        self.on_device_left: Callable[[int, bytes], None] | None = None
        # Told (nwk, ieee, how, admitted) for every join or rejoin a parent reports, as an NCP's trust
        # centre join handler tells its host; how is 'secured-rejoin', 'join' or 'trust-centre-rejoin'.
        self.on_join: Callable[[int, bytes, str, bool], None] | None = None
        self.admitted: list[bytes] = []
        node.trust_centre = self.on_update_device

    def permit(self, ieee: bytes | None, duration_s: float, link_key: bytes | None = None) -> None:
        """Let ``ieee`` (or, with None, any device whose link key is known) join for ``duration_s``."""
        until = self.node.loop.time() + duration_s
        if ieee is None:
            self._open_until = until
            return
        if link_key is not None:
            self.link_keys[ieee] = link_key
        self._permitted[ieee] = until

    def _may_join(self, ieee: bytes) -> bool:
        now = self.node.loop.time()
        return now < self._permitted.get(ieee, 0.0) or now < self._open_until

    def on_update_device(self, update: UpdateDevice, parent_nwk: int) -> None:
        """A parent reports a device that joined, rejoined or left (APS Update Device)."""
        who = f"{update.ieee[::-1].hex(':')} (0x{update.nwk:04X}) via 0x{parent_nwk:04X}"
        if update.status == UPDATE_SECURED_REJOIN:
            self.log(f"trust centre: {who} rejoined securely")
            self._tell_join(update, "secured-rejoin", True)
            return
        if update.status == UPDATE_DEVICE_LEFT:
            self.log(f"trust centre: {who} left")
            if self.on_device_left is not None:
                self.on_device_left(update.nwk, update.ieee)
            return
        if update.status == UPDATE_UNSECURED_JOIN:
            if not self._may_join(update.ieee):
                self.log(f"trust centre: {who} joined without permission; no key sent")
                self._tell_join(update, "join", False)
                return
            if update.ieee not in self.link_keys:
                self.log(f"trust centre: {who} has no link key here; no key sent")
                self._tell_join(update, "join", False)
                return
            self._tell_join(update, "join", True)
        elif update.status == UPDATE_TC_REJOIN:
            if not self.allow_tc_rejoin:
                self.log(f"trust centre: {who} asked for a trust centre rejoin; refused by policy")
                self._tell_join(update, "trust-centre-rejoin", False)
                return
            if update.ieee not in self.link_keys:
                self.log(f"trust centre: {who} trust centre rejoin without a known link key; refused")
                self._tell_join(update, "trust-centre-rejoin", False)
                return
            self._tell_join(update, "trust-centre-rejoin", True)
        else:
            self.log(f"trust centre: {who} update status 0x{update.status:02X} ignored")
            return
        self._send_network_key(update.ieee, parent_nwk)

    def _tell_join(self, update: UpdateDevice, how: str, admitted: bool) -> None:
        if self.on_join is not None:
            self.on_join(update.nwk, update.ieee, how, admitted)

    def _next_counter(self) -> int:
        self._aps_counter = (self._aps_counter + 1) & 0xFFFFFFFF
        return self._aps_counter

    def _send_network_key(self, ieee: bytes, parent_nwk: int) -> None:
        if self.network_key is None:
            self.log("trust centre: the network has no key to send")
            return
        node = self.node
        body = encode_transport_key(
            TransportKey(KEY_TYPE_NETWORK, self.network_key, ieee, node.me.ieee, self.key_sequence)
        )
        frame = ApsFrame(frame_type=APS_COMMAND, counter=node.next_aps_counter(), payload=body)
        aux = ApsAuxHeader(KEY_ID_KEY_TRANSPORT, self._next_counter(), node.me.ieee)
        secured = ApsSecurity(key_transport_key(self.link_keys[ieee])).protect(frame, aux)
        self.admitted.append(ieee)
        if parent_nwk == node.me.nwk:
            self.log(f"trust centre: network key to {ieee[::-1].hex(':')} (its parent is the coordinator)")
            node.send_to_joiner(ieee, secured)
            return
        tunnel = ApsFrame(
            frame_type=APS_COMMAND, counter=node.next_aps_counter(), payload=encode_tunnel(ieee, secured)
        ).encode()
        self.log(f"trust centre: network key to {ieee[::-1].hex(':')}, tunnelled through 0x{parent_nwk:04X}")
        node.spawn(node.nwk_send(parent_nwk, tunnel))

    def permit_joining_broadcast(self, duration_s: int) -> None:
        """Broadcast ZDO Mgmt_Permit_Joining_req so every router accepts associations meanwhile."""
        payload = zdo.encode_mgmt_permit_joining_req(self.node.next_aps_counter(), duration_s, True)
        self.node.spawn(
            self.node.aps_send(
                dst=NWK_BROADCAST_ROUTERS,
                dst_endpoint=0,
                src_endpoint=0,
                profile=zdo.ZDO_PROFILE,
                cluster=zdo.MGMT_PERMIT_JOINING_REQ,
                payload=payload,
                ack=False,
            )
        )
        self.node.permit_joining(duration_s)


__all__ = [
    "COORDINATOR",
    "Joiner",
    "NetworkState",
    "TrustCentre",
    "boot_network_state",
]
