"""A device's control port as the harness uses it: JSON-lines requests, replies and log events.

The protocol (``docs/control-port.md``) is one JSON object per line. The harness sends
``{"id": N, "cmd": "...", ...}`` and waits for the reply with the same ``id``; every other line the
device prints is an event (``{"event": "log", "t": ..., "text": ...}``) handed to the listeners, or,
if it is not JSON at all, a raw console line handed to them as a log line (a real device's boot
ROM prints plain text before its firmware speaks JSON).

On the emulated testbed the loop's clock is virtual. A reply travels through the operating system
(a socket or a pty), and while the harness waits for it the loop would otherwise be idle, so the
virtual clock would jump ahead to the next timer: the same power cut would land at a different
testbed time from run to run. While a request is outstanding the port therefore keeps the loop busy
(one no-op callback per cycle) so the virtual clock stands still until the reply arrives, bounded by
a wall-clock deadline. On a real loop this hold is off and the deadline is an ordinary timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import looptime

from harness.errors import BenchError
from harness.ports.link import SerialLineLink

# Seconds (wall time) to wait for a reply before calling the port dead.
REPLY_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PortEvent:
    """One line the device sent unasked: its kind (``log``, ``power``, ...), device time and fields."""

    kind: str
    device_time: float | None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The log text of a ``log`` event, or a one-line rendering of any other event."""
        if self.kind == "log":
            return str(self.fields.get("text", ""))
        shown = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"[{self.kind}] {shown}".strip()


EventListener = Callable[[PortEvent], None]
TranscriptListener = Callable[[str, str, "float | None"], None]
"""Receives (direction '>' sent or '<' received, line text, device time if the line carried one)."""


class ControlPortError(BenchError):
    """The control port refused a request or went away."""


class ControlPort:
    """A connection to one device's control port, reached through pyserial at ``url``."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        loop: asyncio.AbstractEventLoop,
        reply_timeout: float = REPLY_TIMEOUT_S,
        hold_virtual_time: bool | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.loop = loop
        self.reply_timeout = reply_timeout
        if hold_virtual_time is None:
            hold_virtual_time = isinstance(loop, looptime.LoopTimeEventLoop) and loop.looptime_on
        self.hold_virtual_time = hold_virtual_time
        self._link = SerialLineLink(url, on_line=self._on_line, on_lost=self._on_lost)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._event_listeners: list[EventListener] = []
        self._transcript: list[TranscriptListener] = []
        self._lost_reason: str | None = None

    # ---------------------------------------------------------------------------- lifecycle
    async def open(self) -> dict[str, Any]:
        """Open the port and greet the device; returns what it says of itself (``hello``)."""
        self._link.open(self.loop)
        hello = await self.request("hello")
        device = hello.get("device")
        if device is not None and device != self.name:
            self.close()
            raise ControlPortError(
                f"control port {self.url} answers as device {device!r}, but the testbed says it is "
                f"{self.name!r}: check the port's URL"
            )
        return hello

    def close(self) -> None:
        """Close the port; requests still waiting fail."""
        self._link.close()
        self._fail_pending("the harness closed the port")

    # ------------------------------------------------------------------------------ observers
    def add_event_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for every line the device sends unasked (its log, power events)."""
        self._event_listeners.append(listener)

    def add_transcript_listener(self, listener: TranscriptListener) -> None:
        """Call ``listener(direction, line, device_time)`` for every line sent or received."""
        self._transcript.append(listener)

    # ------------------------------------------------------------------------------- requests
    async def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        """Send one command and return its result; a refusal or a silent port raises a bench error."""
        if self._lost_reason is not None:
            raise ControlPortError(f"control port of {self.name} ({self.url}) is gone: {self._lost_reason}")
        self._next_id += 1
        request_id = self._next_id
        message = {"id": request_id, "cmd": command, **arguments}
        line = json.dumps(message, separators=(",", ":"))
        reply: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self._pending[request_id] = reply
        self._tell_transcript(">", line, None)
        try:
            self._link.write_line(line.encode())
            if self.hold_virtual_time:
                answer = await self._await_holding_time(reply)
            else:
                answer = await asyncio.wait_for(reply, self.reply_timeout)
        except TimeoutError:
            raise ControlPortError(
                f"control port of {self.name} ({self.url}) did not answer {command!r} "
                f"within {self.reply_timeout:g}s"
            ) from None
        finally:
            self._pending.pop(request_id, None)
        if not answer.get("ok"):
            raise ControlPortError(
                f"{self.name} refused {command!r} on its control port: "
                f"{answer.get('error', 'no reason given')}"
            )
        result = answer.get("result", {})
        return result if isinstance(result, dict) else {"value": result}

    async def _await_holding_time(self, reply: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        deadline = time.monotonic() + self.reply_timeout

        def keep_busy() -> None:
            # A ready callback makes the loop poll I/O without sleeping, so looptime does not jump.
            if reply.done():
                return
            if time.monotonic() > deadline:
                reply.set_exception(TimeoutError())
                return
            self.loop.call_soon(keep_busy)

        self.loop.call_soon(keep_busy)
        return await reply

    # --------------------------------------------------------------------------------- lines
    def _on_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="backslashreplace")
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            # Plain console text (a boot ROM banner, a crash dump): keep it as a log line.
            self._tell_transcript("<", text, None)
            if text.strip():
                self._tell_events(PortEvent("log", None, {"text": text}))
            return
        if "event" in message:
            device_time = message.get("t")
            t = float(device_time) if isinstance(device_time, int | float) else None
            fields = {k: v for k, v in message.items() if k not in ("event", "t")}
            event = PortEvent(str(message["event"]), t, fields)
            self._tell_transcript("<", event.text, t)
            self._tell_events(event)
            return
        self._tell_transcript("<", text, None)
        request_id = message.get("id")
        waiting = self._pending.get(request_id) if isinstance(request_id, int) else None
        if waiting is not None and not waiting.done():
            waiting.set_result(message)

    def _on_lost(self, why: str) -> None:
        self._lost_reason = why
        self._fail_pending(why)
        self._tell_events(PortEvent("port-lost", None, {"reason": why}))

    def _fail_pending(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    ControlPortError(f"control port of {self.name} ({self.url}) is gone: {why}")
                )

    def _tell_events(self, event: PortEvent) -> None:
        for listener in list(self._event_listeners):
            listener(event)

    def _tell_transcript(self, direction: str, line: str, device_time: float | None) -> None:
        for listener in list(self._transcript):
            listener(direction, line, device_time)
