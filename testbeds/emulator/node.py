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

Everything runs on timers of one asyncio loop (virtual time in tests), never on threads or sleeps.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from testbeds.emulator.frames import (
    APS_ACK,
    APS_BROADCAST,
    APS_DATA,
    APS_UNICAST,
    BROADCAST_SHORT,
    MAC_ACK,
    MAC_CMD_DATA_REQUEST,
    MAC_COMMAND,
    MAC_DATA,
    NWK_BROADCAST_ALL,
    NWK_BROADCAST_ROUTERS,
    NWK_BROADCAST_RX_ON,
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
    frame: NwkFrame
    done: asyncio.Future[bool]
    expiry: asyncio.TimerHandle | None = None


@dataclass
class _TxJob:
    """One frame waiting for the radio: unicast to ``neighbour`` or, with None, a broadcast."""

    neighbour: str | None
    payload: NwkFrame | bytes
    frame_pending: bool
    frame_type: int
    done: asyncio.Future[bool] | None


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
    ) -> bool:
        """Queue one frame for a neighbour (acknowledged, retried); True when it was acked."""
        done: asyncio.Future[bool] = self.loop.create_future()
        job = _TxJob(neighbour, payload, frame_pending, frame_type, done)
        if urgent:
            self._tx_queue.appendleft(job)
        else:
            self._tx_queue.append(job)
        self._tx_kick()
        return await done

    def _mac_broadcast(self, payload: NwkFrame | bytes) -> None:
        """Queue one broadcast frame (no acknowledgement) for every link kind this node has."""
        self._tx_queue.append(_TxJob(None, payload, False, MAC_DATA, None))
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
            payload = self._nwk_out(job.payload) if isinstance(job.payload, NwkFrame) else job.payload
            if job.neighbour is None:
                sent = self._send_broadcast(payload)
                ok = True
                # No ack to wait for: hold the radio until the frame has left it, so the next frame
                # cannot overtake it on air.
                await asyncio.sleep(airtime(sent) + MAC_TURNAROUND_S)
            else:
                ok = await self._send_unicast(job.neighbour, payload, job.frame_pending, job.frame_type)
        finally:
            self._tx_busy = False
            if job.done is not None and not job.done.done():
                job.done.set_result(ok)
            self._tx_kick()

    async def _send_unicast(
        self, neighbour: str, payload: bytes, frame_pending: bool, frame_type: int
    ) -> bool:
        dst = self.addresses.by_name.get(neighbour)
        if dst is None:
            return False
        self._wake()
        # A retransmission carries the same sequence number, so the receiver can drop the copy.
        seq = self._next_mac_seq()
        try:
            frame = MacFrame(
                frame_type=frame_type,
                seq=seq,
                dst_pan=self.me.pan_id,
                dst=dst,
                src=self.me.nwk,
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

    def _send_broadcast(self, payload: bytes) -> bytes:
        frame = MacFrame(
            frame_type=MAC_DATA,
            seq=self._next_mac_seq(),
            dst_pan=self.me.pan_id,
            dst=BROADCAST_SHORT,
            src=self.me.nwk,
            payload=payload,
        ).encode()
        kinds = {link.kind for link in self.medium.neighbours(self.me.name).values()}
        for kind in sorted(kinds):
            self.medium.transmit(self.me.name, frame, None, kind)
        return frame

    async def _mac_send(self, neighbour: str, frame: NwkFrame) -> bool:
        """Hand a NWK frame to a neighbour: directly, or held for a sleepy child until it polls."""
        if neighbour in self.addresses.sleepy and self.me.is_router:
            return await self._queue_indirect(neighbour, frame)
        return await self._mac_unicast(neighbour, frame)

    async def _queue_indirect(self, child: str, frame: NwkFrame) -> bool:
        entry = _Indirect(frame, self.loop.create_future())
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
        if frame.dst_pan not in (self.me.pan_id, BROADCAST_SHORT):
            return
        if frame.dst not in (self.me.nwk, BROADCAST_SHORT):
            return
        self.counters.mac_rx += 1
        if frame.ack_request and frame.dst == self.me.nwk:
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
            if frame.payload[:1] == bytes([MAC_CMD_DATA_REQUEST]):
                self._later(MAC_TURNAROUND_S * 2, self._serve_poll, sender)
            return
        if frame.frame_type == MAC_DATA:
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
            ok = await self._mac_unicast(child, entry.frame, frame_pending=more, urgent=True)
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
        parent = self.me.parent
        if parent is None or not self._running:
            return
        self.counters.polls += 1
        self._spawn(self._mac_unicast(parent, bytes([MAC_CMD_DATA_REQUEST]), frame_type=MAC_COMMAND))

    # ------------------------------------------------------------------------------------ NWK
    def _next_nwk_seq(self) -> int:
        self._nwk_seq = (self._nwk_seq + 1) & 0xFF
        return self._nwk_seq

    def _nwk_out(self, frame: NwkFrame) -> bytes:
        """The NWK frame as sent: secured hop by hop with our own IEEE address and frame counter."""
        if self.security is None:
            return frame.encode()
        return self.security.protect(frame, source_ieee=self.me.ieee, frame_counter=self._frame_counter())

    def _nwk_in(self, raw: bytes, sender: str) -> None:
        try:
            frame = NwkFrame.decode(raw)
        except FrameError as exc:
            self.counters.malformed += 1
            self.log(f"dropped malformed NWK frame from {sender}: {exc}")
            return
        if frame.frame_type != NWK_DATA:
            return
        if not self._nwk_check(frame, sender):
            return
        if frame.dst >= NWK_BROADCAST_ROUTERS:
            self._nwk_broadcast_in(frame)
        elif frame.dst == self.me.nwk:
            self._aps_in(frame.payload, frame.src, frame.dst, broadcast=False)
        elif self.me.is_router:
            self._relay(frame)

    def _nwk_check(self, frame: NwkFrame, sender: str) -> bool:
        """Accept a frame under the network's security policy; on success its payload is plaintext."""
        if self.security is None:
            return not frame.security
        if not frame.security:
            self.counters.security_drops += 1
            self.log(f"dropped unsecured NWK frame from {sender}")
            return False
        try:
            opened = self.security.unprotect(frame)
        except SecurityError as exc:
            self.counters.security_drops += 1
            self.log(f"dropped secured NWK frame from {sender}: {exc}")
            return False
        if not self.incoming_counters.accept(opened.aux.source_ieee, opened.aux.frame_counter):
            self.counters.replays += 1
            last = self.incoming_counters.last(opened.aux.source_ieee)
            self.log(
                f"dropped frame from {sender}: frame counter {opened.aux.frame_counter} is not newer "
                f"than {last} (replay or counter gone backwards)"
            )
            return False
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
        if self.me.is_router and frame.radius > 1:
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
            elif self.me.parent is not None:
                return await self._mac_unicast(self.me.parent, frame)
            return True
        if dst == self.me.nwk:
            self._aps_in(aps_bytes, self.me.nwk, dst, broadcast=False)
            return True
        next_hop = self.me.parent if not self.me.is_router else self.routes.get(dst)
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

    def _aps_in(self, raw: bytes, src: int, dst: int, *, broadcast: bool) -> None:
        try:
            frame = ApsFrame.decode(raw)
        except FrameError as exc:
            self.counters.malformed += 1
            self.log(f"dropped malformed APS frame from 0x{src:04X}: {exc}")
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
