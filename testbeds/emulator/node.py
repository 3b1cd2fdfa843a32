"""The ZigBee stack of one emulated device: IEEE 802.15.4 MAC, ZigBee PRO NWK and APS.

What it does, layer by layer (as a real stack does, minus what this issue leaves out):

- MAC: unicast data frames ask for an acknowledgement and are retried up to ``MAC_MAX_FRAME_RETRIES``
  times; a retransmission the receiver already took is acknowledged again but not passed up. A parent
  holds frames for its sleepy children (indirect transmission) until they poll with a Data Request,
  and drops them after ``INDIRECT_PERSISTENCE_S``. Sleepy devices switch their receiver off between
  polls, so a frame sent to them directly is lost on air, as in the field.
- NWK: unicast frames follow the routing table the premises gives each router (the converged mesh);
  routers relay them, decrementing the radius; broadcasts are flooded once by every router (broadcast
  transaction table). The frame path keeps the NWK header bytes separate, so NWK security (AES-CCM*,
  the header being the associated data) slots in at ``_nwk_out`` / ``_nwk_in`` without a rewrite.
- APS: unicast data may ask for an end-to-end APS acknowledgement; the sender retries up to
  ``APS_MAX_FRAME_RETRIES`` times; duplicates (same source and APS counter) are acknowledged and
  dropped.
- Joining (the stack's side of :mod:`testbeds.emulator.joining`): routers answer Beacon Requests with
  beacons (association permit while joining is permitted), accept MAC associations and NWK Rejoin
  Requests, keep a child table (sleepy children in it get their frames indirectly), tell the Trust
  Centre (APS Update Device) and pass on the key it tunnels to a joiner with NWK security off. In a
  secured network the only unsecured frames accepted are those joining needs: a Rejoin Request (a
  Trust Centre rejoin), a Rejoin Response and an APS-secured command to a device waiting for its key.

Everything runs on timers of one asyncio loop (virtual time in tests), never on threads or sleeps.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from testbeds.emulator.commands import (
    APS_CMD_TUNNEL,
    APS_CMD_UPDATE_DEVICE,
    ASSOCIATION_DENIED,
    ASSOCIATION_SUCCESS,
    UPDATE_DEVICE_LEFT,
    UPDATE_SECURED_REJOIN,
    UPDATE_TC_REJOIN,
    UPDATE_UNSECURED_JOIN,
    Beacon,
    Leave,
    UpdateDevice,
    decode_association_request,
    decode_association_response,
    decode_beacon,
    decode_leave,
    decode_rejoin_request,
    decode_rejoin_response,
    decode_tunnel,
    decode_update_device,
    encode_association_request,
    encode_association_response,
    encode_beacon,
    encode_leave,
    encode_rejoin_request,
    encode_rejoin_response,
    encode_update_device,
)
from testbeds.emulator.frames import (
    APS_ACK,
    APS_BROADCAST,
    APS_COMMAND,
    APS_DATA,
    APS_UNICAST,
    BROADCAST_PAN,
    BROADCAST_SHORT,
    MAC_ACK,
    MAC_BEACON,
    MAC_CMD_ASSOCIATION_REQUEST,
    MAC_CMD_ASSOCIATION_RESPONSE,
    MAC_CMD_BEACON_REQUEST,
    MAC_CMD_DATA_REQUEST,
    MAC_COMMAND,
    MAC_DATA,
    NWK_BROADCAST_ALL,
    NWK_BROADCAST_ROUTERS,
    NWK_BROADCAST_RX_ON,
    NWK_CMD_LEAVE,
    NWK_CMD_REJOIN_REQUEST,
    NWK_CMD_REJOIN_RESPONSE,
    NWK_COMMAND,
    NWK_DATA,
    ApsFrame,
    FrameError,
    MacFrame,
    NwkFrame,
    mac_ack,
)
from testbeds.emulator.medium import Medium, airtime
from testbeds.emulator.security import IncomingCounters, NwkSecurity, SecurityError

MAC_MAX_FRAME_RETRIES = 3
MAC_TURNAROUND_S = 192e-6
# macTransactionPersistenceTime with the ZigBee PRO defaults (0x01F4 unit periods of 15.36 ms).
INDIRECT_PERSISTENCE_S = 7.68
# After a Data Request answered with "frame pending", the child keeps its receiver on this long.
POLL_RX_WINDOW_S = 0.05
APS_MAX_FRAME_RETRIES = 3
APS_ACK_WAIT_S = 1.6
APS_ACK_WAIT_EXTENDED_S = 10.0
NWK_DEFAULT_RADIUS = 30
# Routers wait a short random time before re-broadcasting (nwkcMaxBroadcastJitter is 64 ms).
BROADCAST_JITTER_S = 0.064
DUPLICATE_MEMORY = 64
# How long an (address, counter) pair counts as a duplicate: apsDuplicateRejection entries and the
# broadcast transaction table expire (nwkBroadcastDeliveryTime is about 9 s); a rebooted device's
# fresh counters must not be taken for duplicates of frames it sent before the reboot.
DUPLICATE_WINDOW_S = 9.0
# macResponseWaitTime (32 x aBaseSuperframeDuration): from an Association Request to the Data Request
# that fetches the response.
ASSOCIATION_RESPONSE_WAIT_S = 0.49
# How long a rejoining device waits for the Rejoin Response (sleepy ones poll meanwhile).
REJOIN_RESPONSE_WAIT_S = 1.0
REJOIN_POLL_S = 0.1
# Routers answer a Beacon Request after a short random backoff (CSMA-CA in a real radio).
BEACON_JITTER_S = 0.01
# Capability information bits (802.15.4 7.3.1.2; ZigBee 2.3.2.3.6)
CAP_FFD = 0x02
CAP_RX_ON_WHEN_IDLE = 0x08

COORDINATOR, ROUTER, END_DEVICE, SLEEPY_END_DEVICE = (
    "coordinator",
    "router",
    "end_device",
    "sleepy_end_device",
)


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who a node is on the network."""

    name: str
    nwk: int
    ieee: bytes
    pan_id: int
    role: str
    parent: str | None = None

    @property
    def is_router(self) -> bool:
        """Coordinators and routers relay frames and keep their receivers on."""
        return self.role in (COORDINATOR, ROUTER)

    @property
    def is_sleepy(self) -> bool:
        """Sleepy end devices switch their receiver off between polls."""
        return self.role == SLEEPY_END_DEVICE


@dataclass(frozen=True, slots=True)
class ChildEntry:
    """One end device in a parent's child table (which the parent keeps in non-volatile memory)."""

    name: str
    nwk: int
    ieee: bytes
    rx_on_when_idle: bool


MacHeader = tuple[int | None, int | bytes | None, int | None, int | bytes | None]
"""Explicit MAC addressing for a frame: (destination PAN, destination, source PAN, source)."""


@dataclass(frozen=True, slots=True)
class ApsIndication:
    """One APS data frame delivered to the application (the APSDE-DATA.indication)."""

    src_nwk: int
    dst_nwk: int
    src_endpoint: int
    dst_endpoint: int
    profile: int
    cluster: int
    payload: bytes
    broadcast: bool


@dataclass
class AddressBook:
    """Names and 16-bit network addresses of the premises' devices (what neighbour tables hold)."""

    by_name: dict[str, int] = field(default_factory=dict)
    by_nwk: dict[int, str] = field(default_factory=dict)
    sleepy: set[str] = field(default_factory=set)

    def add(self, name: str, nwk: int, *, sleepy: bool) -> None:
        """Record a device."""
        self.by_name[name] = nwk
        self.by_nwk[nwk] = name
        if sleepy:
            self.sleepy.add(name)


@dataclass
class _Indirect:
    frame: NwkFrame | bytes
    done: asyncio.Future[bool]
    expiry: asyncio.TimerHandle | None = None
    frame_type: int = MAC_DATA
    secure: bool = True
    header: MacHeader | None = None


@dataclass
class _TxJob:
    """One frame waiting for the radio: unicast to ``neighbour`` or, with None, a broadcast.

    ``header`` overrides the usual short-address MAC addressing (joining uses extended addresses);
    ``secure`` False sends a NWK frame without NWK security (joining traffic only).
    """

    neighbour: str | None
    payload: NwkFrame | bytes
    frame_pending: bool
    frame_type: int
    done: asyncio.Future[bool] | None
    secure: bool = True
    header: MacHeader | None = None


@dataclass
class NodeCounters:
    """What a node did, for status reports and tests."""

    mac_tx: int = 0
    mac_retries: int = 0
    mac_failures: int = 0
    mac_rx: int = 0
    mac_duplicates: int = 0
    nwk_relayed: int = 0
    nwk_no_route: int = 0
    aps_retries: int = 0
    aps_failures: int = 0
    aps_duplicates: int = 0
    malformed: int = 0
    indirect_expired: int = 0
    polls: int = 0
    security_drops: int = 0
    replays: int = 0


class Node:
    """One device's radio stack on the simulated medium."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        medium: Medium,
        identity: NodeIdentity,
        addresses: AddressBook,
        routes: dict[int, str],
        rng: random.Random,
        on_data: Callable[[ApsIndication], None],
        log: Callable[[str], None],
        poll_interval: Callable[[], float] | None = None,
        security: NwkSecurity | None = None,
        frame_counter: Callable[[], int] | None = None,
        children: dict[int, ChildEntry] | None = None,
        secured_network: bool | None = None,
        joined: bool = True,
    ) -> None:
        self.loop = loop
        self.medium = medium
        self.me = identity
        self.addresses = addresses
        self.routes = routes
        self.rng = rng
        self.on_data = on_data
        self.log = log
        self.counters = NodeCounters()
        self._poll_interval = poll_interval
        self.security = security
        self._frame_counter = frame_counter or _RamCounter()
        self.incoming_counters = IncomingCounters()
        self._mac_seq = rng.randrange(256)
        self._nwk_seq = rng.randrange(256)
        self._aps_counter = rng.randrange(256)
        self._last_mac_seq: dict[str, int] = {}
        self._pending_mac_acks: dict[int, tuple[asyncio.Future[bool], str]] = {}
        self._indirect: dict[str, deque[_Indirect]] = {}
        self._broadcasts_seen = _RecentSet(loop)
        self._aps_seen = _RecentSet(loop)
        self._aps_waiting: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._awake = 0
        self._tx_queue: deque[_TxJob] = deque()
        self._tx_busy = False
        self._polling = True
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self._running = False
        # Joining state. ``children`` is the child table (None: every sleepy device of the address book
        # counts as a child, for a stack built without one); it is the caller's object, so a device can
        # keep it in non-volatile memory.
        self.children = children
        self.secured_network = security is not None if secured_network is None else secured_network
        self.associated = joined
        self.on_network = joined and (security is not None or not self.secured_network)
        self.parent = identity.parent
        self.configured_parent = identity.parent
        self.awaiting_key = False
        self.joining: dict[bytes, str] = {}
        self.permit_until = 0.0
        self.trust_centre: Callable[[UpdateDevice, int], None] | None = None
        self.on_aps_command: Callable[[int, bytes], None] | None = None
        self.on_leave_request: Callable[[bool], None] | None = None
        self._beacons: list[tuple[str, int, Beacon]] | None = None
        self._association: asyncio.Future[tuple[int, int]] | None = None
        self._rejoin: asyncio.Future[int] | None = None

    # ----------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Switch the radio on (power-up): attach to the medium and, if sleepy, start polling."""
        self._running = True
        self.medium.attach(self.me.name, self._receive)
        if self.me.is_sleepy:
            self.medium.set_listening(self.me.name, False)
            self._schedule_poll(self.rng.uniform(0.0, 0.5))

    @property
    def running(self) -> bool:
        """Whether the radio is on (started and not stopped)."""
        return self._running

    def stop(self) -> None:
        """Switch the radio off (power cut): detach, cancel every timer, forget all RAM state."""
        self._running = False
        self.medium.detach(self.me.name)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for job in self._tx_queue:
            if job.done is not None and not job.done.done():
                job.done.set_result(False)
        self._tx_queue.clear()
        self._tx_busy = False
        for future, _ in self._pending_mac_acks.values():
            if not future.done():
                future.set_result(False)
        self._pending_mac_acks.clear()
        for queue in self._indirect.values():
            for entry in queue:
                if not entry.done.done():
                    entry.done.set_result(False)
        self._indirect.clear()
        for waiter in self._aps_waiting.values():
            waiter.cancel()
        self._aps_waiting.clear()

    def _later(self, delay: float, callback: Callable[..., None], *args: object) -> None:
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            callback(*args)

        handle = self.loop.call_later(delay, fire)
        self._timers.add(handle)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run ``coro`` as part of this stack: it is cancelled when the radio is switched off."""
        self._spawn(coro)

    # ------------------------------------------------------------------------------------ MAC
    def _next_mac_seq(self) -> int:
        self._mac_seq = (self._mac_seq + 1) & 0xFF
        return self._mac_seq

    def _wake(self) -> None:
        self._awake += 1
        if self.me.is_sleepy:
            self.medium.set_listening(self.me.name, True)

    def _doze(self) -> None:
        self._awake = max(0, self._awake - 1)
        if self.me.is_sleepy and self._awake == 0:
            self.medium.set_listening(self.me.name, False)

    def _link_kind(self, neighbour: str) -> str:
        link = self.medium.link(self.me.name, neighbour)
        return link.kind if link is not None else "radio"

    def _ack_wait(self, neighbour: str, frame: bytes) -> float:
        link = self.medium.link(self.me.name, neighbour)
        latency = link.latency if link is not None else 0.0
        return airtime(frame) + airtime(b"\0" * 5) + 2 * latency + MAC_TURNAROUND_S + 0.001

    async def _mac_unicast(
        self,
        neighbour: str,
        payload: NwkFrame | bytes,
        *,
        frame_pending: bool = False,
        frame_type: int = MAC_DATA,
        urgent: bool = False,
        secure: bool = True,
        header: MacHeader | None = None,
    ) -> bool:
        """Queue one frame for a neighbour (acknowledged, retried); True when it was acked."""
        done: asyncio.Future[bool] = self.loop.create_future()
        job = _TxJob(neighbour, payload, frame_pending, frame_type, done, secure, header)
        if urgent:
            self._tx_queue.appendleft(job)
        else:
            self._tx_queue.append(job)
        self._tx_kick()
        return await done

    def _mac_broadcast(
        self, payload: NwkFrame | bytes, *, frame_type: int = MAC_DATA, header: MacHeader | None = None
    ) -> None:
        """Queue one broadcast frame (no acknowledgement) for every link kind this node has."""
        self._tx_queue.append(_TxJob(None, payload, False, frame_type, None, True, header))
        self._tx_kick()

    def _tx_kick(self) -> None:
        # One radio, one frame at a time (as CSMA-CA serialises a real transceiver): frames, and so
        # their NWK frame counters, leave in order, and a retry ends before the next frame starts.
        if self._tx_busy or not self._tx_queue or not self._running:
            return
        self._tx_busy = True
        self._spawn(self._transmit(self._tx_queue.popleft()))

    async def _transmit(self, job: _TxJob) -> None:
        ok = False
        try:
            # Secured only now, as it leaves the radio, so frame counters go out in ascending order.
            payload = (
                self._nwk_out(job.payload, secure=job.secure)
                if isinstance(job.payload, NwkFrame)
                else job.payload
            )
            if job.neighbour is None:
                sent = self._send_broadcast(payload, job.frame_type, job.header)
                ok = True
                # No ack to wait for: hold the radio until the frame has left it, so the next frame
                # cannot overtake it on air.
                await asyncio.sleep(airtime(sent) + MAC_TURNAROUND_S)
            else:
                ok = await self._send_unicast(
                    job.neighbour, payload, job.frame_pending, job.frame_type, job.header
                )
        finally:
            self._tx_busy = False
            if job.done is not None and not job.done.done():
                job.done.set_result(ok)
            self._tx_kick()

    async def _send_unicast(
        self,
        neighbour: str,
        payload: bytes,
        frame_pending: bool,
        frame_type: int,
        header: MacHeader | None = None,
    ) -> bool:
        if header is None:
            dst = self.addresses.by_name.get(neighbour)
            if dst is None:
                return False
            header = (self.me.pan_id, dst, None, self.me.nwk)
        self._wake()
        # A retransmission carries the same sequence number, so the receiver can drop the copy.
        seq = self._next_mac_seq()
        try:
            frame = MacFrame(
                frame_type=frame_type,
                seq=seq,
                dst_pan=header[0],
                dst=header[1],
                src_pan=header[2],
                src=header[3],
                ack_request=True,
                frame_pending=frame_pending,
                payload=payload,
            ).encode()
            for attempt in range(MAC_MAX_FRAME_RETRIES + 1):
                if not self._running:
                    return False
                acked: asyncio.Future[bool] = self.loop.create_future()
                self._pending_mac_acks[seq] = (acked, neighbour)
                self.counters.mac_tx += 1
                if attempt:
                    self.counters.mac_retries += 1
                self.medium.transmit(self.me.name, frame, neighbour, self._link_kind(neighbour))
                handle = self.loop.call_later(self._ack_wait(neighbour, frame), _resolve, acked, False)
                try:
                    ok = await acked
                finally:
                    handle.cancel()
                    self._pending_mac_acks.pop(seq, None)
                if ok:
                    return True
            self.counters.mac_failures += 1
            return False
        finally:
            self._doze()

    def _send_broadcast(
        self, payload: bytes, frame_type: int = MAC_DATA, header: MacHeader | None = None
    ) -> bytes:
        dst_pan, dst, src_pan, src = header or (self.me.pan_id, BROADCAST_SHORT, None, self.me.nwk)
        frame = MacFrame(
            frame_type=frame_type,
            seq=self._next_mac_seq(),
            dst_pan=dst_pan,
            dst=dst,
            src_pan=src_pan,
            src=src,
            payload=payload,
        ).encode()
        kinds = {link.kind for link in self.medium.neighbours(self.me.name).values()}
        for kind in sorted(kinds):
            self.medium.transmit(self.me.name, frame, None, kind)
        return frame

    def _sleepy_child(self, neighbour: str) -> bool:
        if self.children is None:
            return neighbour in self.addresses.sleepy
        nwk = self.addresses.by_name.get(neighbour)
        entry = self.children.get(nwk) if nwk is not None else None
        return entry is not None and entry.name == neighbour and not entry.rx_on_when_idle

    async def _mac_send(self, neighbour: str, frame: NwkFrame, *, secure: bool = True) -> bool:
        """Hand a NWK frame to a neighbour: directly, or held for a sleepy child until it polls."""
        if self.me.is_router and self._sleepy_child(neighbour):
            return await self._queue_indirect(
                neighbour, _Indirect(frame, self.loop.create_future(), secure=secure)
            )
        return await self._mac_unicast(neighbour, frame, secure=secure)

    async def _queue_indirect(self, child: str, entry: _Indirect) -> bool:
        queue = self._indirect.setdefault(child, deque())
        queue.append(entry)

        def expire() -> None:
            if entry in queue:
                queue.remove(entry)
                self.counters.indirect_expired += 1
                self.log(f"indirect frame for {child} expired after {INDIRECT_PERSISTENCE_S}s")
                _resolve(entry.done, False)

        entry.expiry = self.loop.call_later(INDIRECT_PERSISTENCE_S, expire)
        try:
            return await entry.done
        finally:
            entry.expiry.cancel()

    def _receive(self, raw: bytes, sender: str, kind: str) -> None:
        if not self._running:
            return
        try:
            frame = MacFrame.decode(raw)
        except FrameError as exc:
            self.counters.malformed += 1
            self.log(f"dropped malformed MAC frame from {sender}: {exc}")
            return
        if frame.frame_type == MAC_ACK:
            pending = self._pending_mac_acks.get(frame.seq)
            if pending is not None and pending[1] == sender:
                _resolve(pending[0], True)
                if self.me.is_sleepy and frame.frame_pending:
                    self._wake()
                    self._later(POLL_RX_WINDOW_S, self._doze)
            return
        if frame.frame_type == MAC_BEACON:
            self._on_beacon(frame, sender)
            return
        if frame.dst_pan not in (self.me.pan_id, BROADCAST_SHORT):
            return
        # Until it has associated a device has no short address: only its extended one is its own.
        for_me = frame.dst == self.me.ieee or (self.associated and frame.dst == self.me.nwk)
        if not for_me and frame.dst != BROADCAST_SHORT:
            return
        self.counters.mac_rx += 1
        if frame.ack_request and for_me:
            self._later(
                MAC_TURNAROUND_S,
                self._send_ack,
                frame.seq,
                sender,
                kind,
                frame.frame_type == MAC_COMMAND and self._has_indirect(sender),
            )
            if self._last_mac_seq.get(sender) == frame.seq:
                self.counters.mac_duplicates += 1
                return
            self._last_mac_seq[sender] = frame.seq
        if frame.frame_type == MAC_COMMAND:
            command = frame.payload[0]
            if command == MAC_CMD_DATA_REQUEST:
                self._later(MAC_TURNAROUND_S * 2, self._serve_poll, sender)
            elif command == MAC_CMD_BEACON_REQUEST:
                if self.me.is_router and self.on_network:
                    self._later(self.rng.uniform(0, BEACON_JITTER_S), self._send_beacon)
            elif command == MAC_CMD_ASSOCIATION_REQUEST and for_me:
                self._on_association_request(frame, sender)
            elif command == MAC_CMD_ASSOCIATION_RESPONSE and for_me:
                self._on_association_response(frame, sender)
            return
        if frame.frame_type == MAC_DATA and self.associated:
            if self.me.is_sleepy and frame.frame_pending:
                self._later(0.001, self._poll_once)
            self._nwk_in(frame.payload, sender)

    def _send_ack(self, seq: int, to: str, kind: str, pending: bool) -> None:
        if self._running:
            self.medium.transmit(self.me.name, mac_ack(seq, pending), to, kind)

    def _has_indirect(self, child: str) -> bool:
        return bool(self._indirect.get(child))

    def _serve_poll(self, child: str) -> None:
        queue = self._indirect.get(child)
        if not queue:
            return
        entry = queue.popleft()
        more = bool(queue)

        async def deliver() -> None:
            ok = await self._mac_unicast(
                child,
                entry.frame,
                frame_pending=more,
                urgent=True,
                frame_type=entry.frame_type,
                secure=entry.secure,
                header=entry.header,
            )
            _resolve(entry.done, ok)

        self._spawn(deliver())

    # ---------------------------------------------------------------------------------- polling
    def _schedule_poll(self, delay: float) -> None:
        self._later(delay, self._poll_tick)

    def stop_polling(self) -> None:
        """A sleepy device stops polling its parent (it then hears nothing more)."""
        self._polling = False

    def _poll_tick(self) -> None:
        if not self._polling:
            return
        self._poll_once()
        interval = self._poll_interval() if self._poll_interval else 7.5
        self._schedule_poll(interval)

    def _poll_once(self) -> None:
        parent = self.parent
        if parent is None or not self._running or not self.associated:
            return
        self.counters.polls += 1
        self._spawn(self._mac_unicast(parent, bytes([MAC_CMD_DATA_REQUEST]), frame_type=MAC_COMMAND))

    # ------------------------------------------------------------------------------------ NWK
    def _next_nwk_seq(self) -> int:
        self._nwk_seq = (self._nwk_seq + 1) & 0xFF
        return self._nwk_seq

    def _nwk_out(self, frame: NwkFrame, *, secure: bool = True) -> bytes:
        """The NWK frame as sent: secured hop by hop with our own IEEE address and frame counter."""
        if self.security is None or not secure:
            return frame.encode()
        return self.security.protect(frame, source_ieee=self.me.ieee, frame_counter=self._frame_counter())

    def _nwk_in(self, raw: bytes, sender: str) -> None:
        try:
            frame = NwkFrame.decode(raw)
        except FrameError as exc:
            self.counters.malformed += 1
            self.log(f"dropped malformed NWK frame from {sender}: {exc}")
            return
        secured = self._nwk_check(frame, sender)
        if secured is None:
            return
        if frame.frame_type == NWK_COMMAND:
            self._nwk_command_in(frame, sender, secured)
            return
        if not self.on_network:
            if frame.dst == self.me.nwk and not secured and self.awaiting_key:
                self._aps_in(frame.payload, frame.src, frame.dst, broadcast=False, nwk_secured=False)
            return
        if frame.dst >= NWK_BROADCAST_ROUTERS:
            self._nwk_broadcast_in(frame)
        elif frame.dst == self.me.nwk:
            self._aps_in(frame.payload, frame.src, frame.dst, broadcast=False, nwk_secured=secured)
        elif self.me.is_router:
            self._relay(frame)

    def _unsecured_allowed(self, frame: NwkFrame) -> bool:
        """In a secured network, the unsecured frames joining needs (§4.3.1.2, §4.6.3.3)."""
        payload = frame.payload
        if frame.frame_type == NWK_COMMAND and payload:
            if payload[0] == NWK_CMD_REJOIN_REQUEST:
                return self.me.is_router and self.on_network  # a Trust Centre rejoin
            if payload[0] == NWK_CMD_REJOIN_RESPONSE:
                return self._rejoin is not None and frame.dst == self.me.nwk
            return False
        # The network key on its last hop to a joiner: NWK unsecured, the APS command secured.
        return (
            frame.frame_type == NWK_DATA
            and self.awaiting_key
            and frame.dst == self.me.nwk
            and len(payload) >= 2
            and payload[0] & 0x03 == APS_COMMAND
            and bool(payload[0] & 0x20)
        )

    def _nwk_check(self, frame: NwkFrame, sender: str) -> bool | None:
        """Accept a frame under the network's security policy: None to drop it, else whether it was
        secured (its payload is then the plaintext)."""
        if not frame.security:
            if not self.secured_network or self._unsecured_allowed(frame):
                return False
            self.counters.security_drops += 1
            self.log(f"dropped unsecured NWK frame from {sender}")
            return None
        if self.security is None:
            if self.secured_network:
                self.counters.security_drops += 1
                self.log(f"dropped secured NWK frame from {sender}: no network key")
            return None
        try:
            opened = self.security.unprotect(frame)
        except SecurityError as exc:
            self.counters.security_drops += 1
            self.log(f"dropped secured NWK frame from {sender}: {exc}")
            return None
        if not self.incoming_counters.accept(opened.aux.source_ieee, opened.aux.frame_counter):
            self.counters.replays += 1
            last = self.incoming_counters.last(opened.aux.source_ieee)
            self.log(
                f"dropped frame from {sender}: frame counter {opened.aux.frame_counter} is not newer "
                f"than {last} (replay or counter gone backwards)"
            )
            return None
        frame.security = False
        frame.payload = opened.plaintext
        return True

    def _nwk_broadcast_in(self, frame: NwkFrame) -> None:
        key = (frame.src, frame.seq)
        if frame.src == self.me.nwk or not self._broadcasts_seen.add(key):
            return
        for_me = (
            frame.dst == NWK_BROADCAST_ALL
            or (frame.dst == NWK_BROADCAST_RX_ON and not self.me.is_sleepy)
            or (frame.dst == NWK_BROADCAST_ROUTERS and self.me.is_router)
        )
        if self.me.is_router and frame.radius > 1 and self.on_network:
            frame.radius -= 1
            self._later(self.rng.uniform(0, BROADCAST_JITTER_S), self._mac_broadcast, frame)
        if for_me:
            self._aps_in(frame.payload, frame.src, frame.dst, broadcast=True)

    def _relay(self, frame: NwkFrame) -> None:
        next_hop = self.routes.get(frame.dst)
        if next_hop is None or frame.radius <= 1:
            self.counters.nwk_no_route += 1
            self.log(f"no route to 0x{frame.dst:04X} (radius {frame.radius}); frame dropped")
            return
        frame.radius -= 1
        self.counters.nwk_relayed += 1
        self._spawn(self._mac_send(next_hop, frame))

    async def nwk_send(self, dst: int, aps_bytes: bytes, *, radius: int = NWK_DEFAULT_RADIUS) -> bool:
        """Send an APS frame to a network address; True when the first hop took it."""
        frame = NwkFrame(
            frame_type=NWK_DATA,
            dst=dst,
            src=self.me.nwk,
            radius=radius,
            seq=self._next_nwk_seq(),
            payload=aps_bytes,
        )
        if dst >= NWK_BROADCAST_ROUTERS:
            self._broadcasts_seen.add((self.me.nwk, frame.seq))
            if self.me.is_router:
                self._mac_broadcast(frame)
            elif self.parent is not None:
                return await self._mac_unicast(self.parent, frame)
            return True
        if dst == self.me.nwk:
            self._aps_in(aps_bytes, self.me.nwk, dst, broadcast=False)
            return True
        next_hop = self.parent if not self.me.is_router else self.routes.get(dst)
        if next_hop is None:
            self.counters.nwk_no_route += 1
            self.log(f"no route to 0x{dst:04X}")
            return False
        return await self._mac_send(next_hop, frame)

    # ------------------------------------------------------------------------------------ APS
    def _next_aps_counter(self) -> int:
        self._aps_counter = (self._aps_counter + 1) & 0xFF
        return self._aps_counter

    async def aps_send(
        self,
        *,
        dst: int,
        dst_endpoint: int,
        src_endpoint: int,
        profile: int,
        cluster: int,
        payload: bytes,
        ack: bool = True,
        extended_timeout: bool = False,
    ) -> bool:
        """Send application data (APSDE-DATA.request); with ``ack`` wait for the end-to-end APS ack."""
        broadcast = dst >= NWK_BROADCAST_ROUTERS
        counter = self._next_aps_counter()
        frame = ApsFrame(
            frame_type=APS_DATA,
            delivery=APS_BROADCAST if broadcast else APS_UNICAST,
            ack_request=ack and not broadcast,
            dst_endpoint=dst_endpoint,
            cluster=cluster,
            profile=profile,
            src_endpoint=src_endpoint,
            counter=counter,
            payload=payload,
        ).encode()
        if broadcast or not ack:
            return await self.nwk_send(dst, frame)
        wait = APS_ACK_WAIT_EXTENDED_S if extended_timeout else APS_ACK_WAIT_S
        key = (dst, counter)
        for attempt in range(APS_MAX_FRAME_RETRIES + 1):
            if not self._running:
                return False
            if attempt:
                self.counters.aps_retries += 1
            acked: asyncio.Future[None] = self.loop.create_future()
            self._aps_waiting[key] = acked
            try:
                await self.nwk_send(dst, frame)
                await asyncio.wait_for(asyncio.shield(acked), wait)
                return True
            except (TimeoutError, asyncio.CancelledError):
                if not self._running:
                    return False
                continue
            finally:
                self._aps_waiting.pop(key, None)
        self.counters.aps_failures += 1
        return False

    def _aps_in(self, raw: bytes, src: int, dst: int, *, broadcast: bool, nwk_secured: bool = True) -> None:
        try:
            frame = ApsFrame.decode(raw)
        except FrameError as exc:
            self.counters.malformed += 1
            self.log(f"dropped malformed APS frame from 0x{src:04X}: {exc}")
            return
        if frame.frame_type == APS_COMMAND:
            if not broadcast:
                self._aps_command_in(frame, raw, src, nwk_secured)
            return
        if not self.on_network:
            return
        if frame.frame_type == APS_ACK:
            waiter = self._aps_waiting.get((src, frame.counter))
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if frame.frame_type != APS_DATA:
            return
        if frame.ack_request and not broadcast:
            ack = ApsFrame(
                frame_type=APS_ACK,
                dst_endpoint=frame.src_endpoint,
                cluster=frame.cluster,
                profile=frame.profile,
                src_endpoint=frame.dst_endpoint,
                counter=frame.counter,
            ).encode()
            self._spawn(self.nwk_send(src, ack))
        key = (src, frame.counter)
        if not broadcast and not self._aps_seen.add(key):
            self.counters.aps_duplicates += 1
            return
        self.on_data(
            ApsIndication(
                src_nwk=src,
                dst_nwk=dst,
                src_endpoint=frame.src_endpoint or 0,
                dst_endpoint=frame.dst_endpoint if frame.dst_endpoint is not None else 0xFF,
                profile=frame.profile or 0,
                cluster=frame.cluster or 0,
                payload=frame.payload,
                broadcast=broadcast,
            )
        )

    # -------------------------------------------------------------------------------- commands
    def next_aps_counter(self) -> int:
        """A fresh APS counter for a frame built outside the node (e.g. the Trust Centre's commands)."""
        return self._next_aps_counter()

    def _aps_command_in(self, frame: ApsFrame, raw: bytes, src: int, nwk_secured: bool) -> None:
        if frame.security:
            # APS-secured commands (a Transport Key) are the joining procedure's to open.
            if self.on_aps_command is not None:
                self.on_aps_command(src, raw)
            return
        if not nwk_secured and self.secured_network:
            self.counters.security_drops += 1
            self.log(f"dropped APS command from 0x{src:04X}: secured by neither NWK nor APS")
            return
        command = frame.payload[:1]
        try:
            if command == bytes([APS_CMD_TUNNEL]) and self.me.is_router:
                target, inner = decode_tunnel(frame.payload)
                if not self.send_to_joiner(target, inner):
                    self.log(f"tunnel from 0x{src:04X} for {target[::-1].hex(':')}: not a joining child")
            elif command == bytes([APS_CMD_UPDATE_DEVICE]) and self.trust_centre is not None:
                self.trust_centre(decode_update_device(frame.payload), src)
        except FrameError as exc:
            self.counters.malformed += 1
            self.log(f"dropped malformed APS command from 0x{src:04X}: {exc}")

    def _nwk_command_in(self, frame: NwkFrame, sender: str, secured: bool) -> None:
        payload = frame.payload
        if not payload:
            self.counters.malformed += 1
            self.log(f"dropped NWK command from {sender}: no command identifier")
            return
        try:
            if payload[0] == NWK_CMD_REJOIN_REQUEST and frame.dst == self.me.nwk:
                self._on_rejoin_request(frame, sender, secured, decode_rejoin_request(payload))
            elif payload[0] == NWK_CMD_REJOIN_RESPONSE and frame.dst == self.me.nwk:
                _nwk, status = decode_rejoin_response(payload)
                if self._rejoin is not None and not self._rejoin.done():
                    self._rejoin.set_result(status)
            elif payload[0] == NWK_CMD_LEAVE and (
                frame.dst == self.me.nwk or frame.dst >= NWK_BROADCAST_ROUTERS
            ):
                self._on_leave(frame, sender, decode_leave(payload))
        except FrameError as exc:
            self.counters.malformed += 1
            self.log(f"dropped malformed NWK command from {sender}: {exc}")

    def _register_child(self, name: str, nwk: int, ieee: bytes, capability: int) -> None:
        if capability & CAP_FFD or self.children is None:
            return  # routers are neighbours, not children to hold frames for
        self.children[nwk] = ChildEntry(name, nwk, ieee, bool(capability & CAP_RX_ON_WHEN_IDLE))

    def _report_to_tc(self, ieee: bytes, nwk: int, status: int) -> None:
        if not self.secured_network:
            return
        update = UpdateDevice(ieee, nwk, status)
        if self.trust_centre is not None:
            self.trust_centre(update, self.me.nwk)
            return
        command = ApsFrame(
            frame_type=APS_COMMAND, counter=self._next_aps_counter(), payload=encode_update_device(update)
        ).encode()
        self._spawn(self.nwk_send(0x0000, command))

    def send_to_joiner(self, ieee: bytes, aps_bytes: bytes) -> bool:
        """Pass an APS frame to a device that is joining through us, NWK unsecured (its last hop)."""
        name = self.joining.pop(ieee, None)
        nwk = self.addresses.by_name.get(name) if name is not None else None
        if name is None or nwk is None:
            return False
        frame = NwkFrame(
            frame_type=NWK_DATA,
            dst=nwk,
            src=self.me.nwk,
            radius=1,
            seq=self._next_nwk_seq(),
            payload=aps_bytes,
        )
        self._spawn(self._mac_send(name, frame, secure=False))
        return True

    # ---------------------------------------------------------------------------- parent side
    def permit_joining(self, duration_s: float) -> None:
        """Accept associations for ``duration_s`` seconds (0 closes); beacons say so meanwhile."""
        self.permit_until = self.loop.time() + max(0.0, float(duration_s))

    @property
    def permitting(self) -> bool:
        """Whether this router accepts associations now."""
        return self.loop.time() < self.permit_until

    def _send_beacon(self) -> None:
        if not self._running or not self.on_network:
            return
        beacon = Beacon(
            pan_coordinator=self.me.role == COORDINATOR,
            association_permit=self.permitting,
            router_capacity=True,
            end_device_capacity=True,
            depth=0 if self.me.role == COORDINATOR else 1,
            extended_pan_id=self.me.pan_id.to_bytes(8, "little"),
        )
        header: MacHeader = (None, None, self.me.pan_id, self.me.nwk)
        self._mac_broadcast(encode_beacon(beacon), frame_type=MAC_BEACON, header=header)

    def _on_association_request(self, frame: MacFrame, sender: str) -> None:
        if not isinstance(frame.src, bytes) or not self.me.is_router:
            return
        try:
            capability = decode_association_request(frame.payload)
        except FrameError as exc:
            self.counters.malformed += 1
            self.log(f"dropped malformed association request from {sender}: {exc}")
            return
        joiner = frame.src
        nwk = self.addresses.by_name.get(sender)
        accepted = self.on_network and self.permitting and nwk is not None
        status = ASSOCIATION_SUCCESS if accepted else ASSOCIATION_DENIED
        response = encode_association_response(nwk if accepted and nwk is not None else 0xFFFF, status)
        # 802.15.4 7.5.3.1: the response waits (indirect) until the device asks with a Data Request.
        entry = _Indirect(
            response,
            self.loop.create_future(),
            frame_type=MAC_COMMAND,
            header=(self.me.pan_id, joiner, None, self.me.ieee),
        )
        self.log(f"association request from {sender}: {'accepted' if accepted else 'denied'}")

        async def answer() -> None:
            delivered = await self._queue_indirect(sender, entry)
            if delivered and accepted and nwk is not None:
                self._register_child(sender, nwk, joiner, capability)
                self.joining[joiner] = sender
                self.log(f"{sender} associated as 0x{nwk:04X}")
                self._report_to_tc(joiner, nwk, UPDATE_UNSECURED_JOIN)

        self._spawn(answer())

    def _on_rejoin_request(self, frame: NwkFrame, sender: str, secured: bool, capability: int) -> None:
        if not self.me.is_router or not self.on_network:
            return
        ieee = frame.src_ieee
        if ieee is None:
            self.log(f"dropped rejoin request from {sender}: no source IEEE address")
            return
        nwk = frame.src
        self._register_child(sender, nwk, ieee, capability)
        trust_centre_rejoin = self.secured_network and not secured
        if trust_centre_rejoin:
            self.joining[ieee] = sender
        response = NwkFrame(
            frame_type=NWK_COMMAND,
            dst=nwk,
            src=self.me.nwk,
            radius=1,
            seq=self._next_nwk_seq(),
            dst_ieee=ieee,
            src_ieee=self.me.ieee,
            payload=encode_rejoin_response(nwk, 0x00),
        )
        kind = "trust centre" if trust_centre_rejoin else "secure" if secured else "unsecured-network"
        self.log(f"{kind} rejoin of {sender} (0x{nwk:04X}) accepted")
        self._spawn(self._mac_send(sender, response, secure=secured))
        self._report_to_tc(ieee, nwk, UPDATE_TC_REJOIN if trust_centre_rejoin else UPDATE_SECURED_REJOIN)

    def _on_leave(self, frame: NwkFrame, sender: str, leave: Leave) -> None:
        if leave.request:
            # Only our parent (or, for a router, the Trust Centre) may tell us to leave.
            if frame.src in (self.addresses.by_name.get(self.parent or ""), 0x0000) and self.on_leave_request:
                self.on_leave_request(leave.rejoin)
            return
        child = self.children.pop(frame.src, None) if self.children is not None else None
        ieee = frame.src_ieee or (child.ieee if child is not None else None)
        if child is not None:
            self.log(f"child {sender} (0x{frame.src:04X}) left")
        if ieee is not None and (child is not None or self.trust_centre is not None):
            self._report_to_tc(ieee, frame.src, UPDATE_DEVICE_LEFT)

    # ----------------------------------------------------------------------------- joiner side
    def _on_beacon(self, frame: MacFrame, sender: str) -> None:
        if self._beacons is None or frame.source_pan != self.me.pan_id or not isinstance(frame.src, int):
            return
        try:
            beacon = decode_beacon(frame.payload)
        except FrameError as exc:
            self.log(f"dropped beacon from {sender}: {exc}")
            return
        self._beacons.append((sender, frame.src, beacon))

    async def scan(self, duration: float) -> list[tuple[str, int, Beacon]]:
        """Active scan: broadcast a Beacon Request and collect (sender, short address, beacon)."""
        self._beacons = []
        self._wake()
        try:
            header: MacHeader = (BROADCAST_PAN, BROADCAST_SHORT, None, None)
            self._mac_broadcast(bytes([MAC_CMD_BEACON_REQUEST]), frame_type=MAC_COMMAND, header=header)
            await asyncio.sleep(duration)
        finally:
            self._doze()
        found, self._beacons = self._beacons, None
        return found

    async def associate(self, parent: str, parent_nwk: int, capability: int) -> tuple[int, int] | None:
        """MAC association with ``parent``: (short address, status), or None when it did not answer."""
        future: asyncio.Future[tuple[int, int]] = self.loop.create_future()
        self._association = future
        try:
            sent = await self._mac_unicast(
                parent,
                encode_association_request(capability),
                frame_type=MAC_COMMAND,
                header=(self.me.pan_id, parent_nwk, BROADCAST_PAN, self.me.ieee),
            )
            if not sent:
                return None
            await asyncio.sleep(ASSOCIATION_RESPONSE_WAIT_S)
            self._wake()
            try:
                polled = await self._mac_unicast(
                    parent,
                    bytes([MAC_CMD_DATA_REQUEST]),
                    frame_type=MAC_COMMAND,
                    header=(self.me.pan_id, parent_nwk, None, self.me.ieee),
                )
                if not polled:
                    return None
                try:
                    result = await asyncio.wait_for(asyncio.shield(future), POLL_RX_WINDOW_S * 4)
                except TimeoutError:
                    return None
            finally:
                self._doze()
        finally:
            self._association = None
        if result[1] == ASSOCIATION_SUCCESS:
            self.associated = True
            self.parent = parent
        return result

    def _on_association_response(self, frame: MacFrame, sender: str) -> None:
        future = self._association
        if future is None or future.done():
            return
        try:
            future.set_result(decode_association_response(frame.payload))
        except FrameError as exc:
            self.log(f"dropped malformed association response from {sender}: {exc}")

    async def rejoin(self, parent: str, parent_nwk: int, capability: int, *, secure: bool) -> int | None:
        """NWK rejoin through ``parent`` (secured with the network key or not): the rejoin status,
        or None when no Rejoin Response came."""
        future: asyncio.Future[int] = self.loop.create_future()
        self._rejoin = future
        self.associated = True
        try:
            frame = NwkFrame(
                frame_type=NWK_COMMAND,
                dst=parent_nwk,
                src=self.me.nwk,
                radius=1,
                seq=self._next_nwk_seq(),
                src_ieee=self.me.ieee,
                payload=encode_rejoin_request(capability),
            )
            if not await self._mac_unicast(parent, frame, secure=secure):
                return None
            self.parent = parent if not self.me.is_router else self.parent
            deadline = self.loop.time() + REJOIN_RESPONSE_WAIT_S
            while not future.done() and self.loop.time() < deadline:
                if self.me.is_sleepy:
                    self._mac_poll(parent)
                try:
                    await asyncio.wait_for(asyncio.shield(future), REJOIN_POLL_S)
                except TimeoutError:
                    continue
            return future.result() if future.done() else None
        finally:
            self._rejoin = None

    def _mac_poll(self, parent: str) -> None:
        self.counters.polls += 1
        self._spawn(self._mac_unicast(parent, bytes([MAC_CMD_DATA_REQUEST]), frame_type=MAC_COMMAND))

    def poll_now(self) -> None:
        """Send one Data Request to the parent now (a joining sleepy device fetching its key)."""
        if self.parent is not None and self._running and self.associated:
            self._mac_poll(self.parent)

    async def send_leave(self, *, rejoin: bool) -> bool:
        """Announce that this device leaves: to its parent (end device) or its neighbours (router)."""
        dst = (
            NWK_BROADCAST_RX_ON
            if self.me.is_router
            else self.addresses.by_name.get(self.parent or "", 0x0000)
        )
        frame = NwkFrame(
            frame_type=NWK_COMMAND,
            dst=dst,
            src=self.me.nwk,
            radius=1,
            seq=self._next_nwk_seq(),
            src_ieee=self.me.ieee,
            payload=encode_leave(Leave(request=False, rejoin=rejoin)),
        )
        if self.me.is_router:
            self._broadcasts_seen.add((self.me.nwk, frame.seq))
            self._mac_broadcast(frame)
            await asyncio.sleep(0.01)
            return True
        if self.parent is None:
            return False
        return await self._mac_unicast(self.parent, frame)


class _RamCounter:
    """An outgoing frame counter held in RAM (a coordinator radio whose host keeps the real one)."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        value = self.value
        self.value = (value + 1) & 0xFFFFFFFF
        return value


class _RecentSet:
    """Keys seen in the last DUPLICATE_WINDOW_S seconds (at most DUPLICATE_MEMORY of them)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._seen: dict[tuple[int, int], float] = {}
        self._order: deque[tuple[int, int]] = deque()

    def add(self, key: tuple[int, int]) -> bool:
        """Remember ``key``; False if it was already seen within the window (a duplicate)."""
        now = self._loop.time()
        while self._order and (
            len(self._order) > DUPLICATE_MEMORY or now - self._seen[self._order[0]] > DUPLICATE_WINDOW_S
        ):
            self._seen.pop(self._order.popleft(), None)
        seen_at = self._seen.get(key)
        if seen_at is not None and now - seen_at <= DUPLICATE_WINDOW_S:
            return False
        if key not in self._seen:
            self._order.append(key)
        self._seen[key] = now
        return True


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
