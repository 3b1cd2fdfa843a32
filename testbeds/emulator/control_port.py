"""An emulated device's control port: a JSON-lines console on TCP (``socket://``) or a pty.

A real meter or bridge on a lab bench has a serial console (a UART on a test header, often behind
a USB adapter) where it prints its log and answers a few test commands. The emulated device offers
the same, so the harness reaches it through pyserial exactly as it reaches hardware: the harness
never holds an emulator object, only the URL of this port. The protocol is documented for users in
``docs/control-port.md``; in short, one JSON object per line, UTF-8, ``\\n`` terminated:

- a request ``{"id": 7, "cmd": "status"}`` (``id`` optional, any JSON value) is answered by
  ``{"id": 7, "ok": true, "result": {...}}`` or ``{"id": 7, "ok": false, "error": "..."}``;
- the device's log arrives unasked as ``{"event": "log", "t": 12.5, "text": "..."}`` where ``t`` is
  the device's clock in seconds (the testbed time);
- power changes arrive as ``{"event": "power", "t": ..., "on": false}``.

The port answers even while the device is powered off: on a bench the console adapter and the power
relay are powered separately, and the emulated port stands in for both (``power`` switches the
device, as the testbed's power switch would).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tty
from collections import deque
from collections.abc import Callable
from typing import Any

from testbeds.emulator.device import EmulatedDevice
from testbeds.emulator.ota_client import (
    ATTR_CURRENT_FILE_VERSION,
    ATTR_CURRENT_ZIGBEE_STACK_VERSION,
    ATTR_DOWNLOADED_FILE_VERSION,
    ATTR_FILE_OFFSET,
    ATTR_IMAGE_TYPE_ID,
    ATTR_IMAGE_UPGRADE_STATUS,
    ATTR_MANUFACTURER_ID,
    ATTR_MINIMUM_BLOCK_PERIOD,
)

PROTOCOL_VERSION = 1
# A line longer than this is not a command anyone meant to send: it is dropped, not buffered forever.
MAX_LINE = 4096
# How many of the device's latest log lines the ``log`` command can show.
RECENT_LINES = 1000

_OTA_ATTRIBUTES = {
    "file_offset": ATTR_FILE_OFFSET,
    "current_file_version": ATTR_CURRENT_FILE_VERSION,
    "current_zigbee_stack_version": ATTR_CURRENT_ZIGBEE_STACK_VERSION,
    "downloaded_file_version": ATTR_DOWNLOADED_FILE_VERSION,
    "image_upgrade_status": ATTR_IMAGE_UPGRADE_STATUS,
    "manufacturer_id": ATTR_MANUFACTURER_ID,
    "image_type_id": ATTR_IMAGE_TYPE_ID,
    "minimum_block_period": ATTR_MINIMUM_BLOCK_PERIOD,
}


Command = Callable[[dict[str, Any]], dict[str, Any]]
"""One control-port command: takes the request object, returns the ``result`` object."""


class CommandError(Exception):
    """A request the port cannot carry out; its text goes back to the client."""


def version_text(version: int) -> str:
    """A 32-bit firmware version as the four dotted bytes people read (0x01020304 -> 1.2.3.4)."""
    return ".".join(str((version >> shift) & 0xFF) for shift in (24, 16, 8, 0))


class ControlPortServer:
    """The control port of one emulated device, served to any number of clients at once."""

    def __init__(
        self,
        device: EmulatedDevice,
        *,
        clock_origin: float = 0.0,
        extra_commands: dict[str, Command] | None = None,
    ) -> None:
        self.device = device
        # Event times are the loop's clock minus this: 0 when the testbed started.
        self.clock_origin = clock_origin
        self.name = device.config.name
        self._clients: list[Callable[[bytes], None]] = []
        self._sessions: list[_TcpSession] = []
        self._servers: list[asyncio.Server] = []
        self._ptys: list[int] = []
        self._pty_out: dict[int, bytearray] = {}
        self._recent: deque[tuple[float, str]] = deque(maxlen=RECENT_LINES)
        self._commands: dict[str, Command] = {
            "hello": self._hello,
            "status": self._status,
            "version": self._version,
            "ota": self._ota,
            "power": self._power,
            "reset": self._reset,
            "log": self._log_tail,
        }
        # Device-type or test-hook commands added by the testbed starter; they may raise CommandError.
        self._commands.update(extra_commands or {})
        device.log_book.listeners.append(self._on_log)
        device.power_listeners.append(self._on_power)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the device runs on."""
        return self.device.loop

    # ---------------------------------------------------------------------------- transports
    async def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on TCP (port 0: one the OS picks) and return the pyserial URL, ``socket://host:port``."""
        server = await self.loop.create_server(lambda: _TcpSession(self), host, port)
        self._servers.append(server)
        bound_host, bound_port = server.sockets[0].getsockname()[:2]
        return f"socket://{bound_host}:{bound_port}"

    def open_pty(self) -> str:
        """Open a pseudo-terminal for the port and return its path (``/dev/pts/N``) for pyserial."""
        master, slave = os.openpty()
        # Raw mode: no echo, no line editing, bytes pass unchanged, as on a UART.
        tty.setraw(slave)
        os.set_blocking(master, False)
        path = os.ttyname(slave)
        # Keep the slave end open ourselves so the pty survives clients coming and going (a
        # closed last slave makes reads on the master fail with EIO).
        self._ptys.extend([master, slave])
        self._pty_out[master] = bytearray()
        buffer = bytearray()

        def readable() -> None:
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                self._feed(buffer, data, lambda out: self._pty_write(master, out))

        self.loop.add_reader(master, readable)
        self._clients.append(lambda out: self._pty_write(master, out))
        return path

    def _pty_write(self, master: int, data: bytes) -> None:
        pending = self._pty_out.get(master)
        if pending is None:
            return
        pending += data
        self._pty_flush(master)

    def _pty_flush(self, master: int) -> None:
        pending = self._pty_out.get(master)
        if pending is None:
            return
        try:
            written = os.write(master, pending) if pending else 0
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            pending.clear()
            return
        del pending[:written]
        # Nobody may be reading the pty: keep a bounded backlog, as a UART's FIFO drops bytes.
        if len(pending) > 1 << 20:
            del pending[: len(pending) - (1 << 20)]
        if pending:
            self.loop.call_later(0.01, self._pty_flush, master)

    def close(self) -> None:
        """Stop serving: close listening sockets, client connections and ptys."""
        with contextlib.suppress(ValueError):
            self.device.log_book.listeners.remove(self._on_log)
        with contextlib.suppress(ValueError):
            self.device.power_listeners.remove(self._on_power)
        for server in self._servers:
            server.close()
        self._servers.clear()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()
        for fd in self._ptys:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._ptys.clear()
        self._pty_out.clear()
        self._clients.clear()

    # ------------------------------------------------------------------------------- lines
    def _feed(self, buffer: bytearray, data: bytes, reply: Callable[[bytes], None]) -> None:
        buffer += data
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > MAX_LINE:
                    buffer.clear()
                    reply(_line({"ok": False, "error": f"line longer than {MAX_LINE} bytes; dropped"}))
                return
            line = bytes(buffer[:end]).strip()
            del buffer[: end + 1]
            if line:
                reply(self.answer(line))

    def answer(self, line: bytes) -> bytes:
        """The reply line (with its newline) to one request line."""
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _line({"ok": False, "error": f"not a JSON line: {exc}"})
        if not isinstance(request, dict):
            return _line({"ok": False, "error": "a request is a JSON object with a 'cmd' field"})
        reply: dict[str, Any] = {"id": request["id"]} if "id" in request else {}
        command = request.get("cmd")
        handler = self._commands.get(command) if isinstance(command, str) else None
        if handler is None:
            reply.update(
                ok=False, error=f"unknown command {command!r}; this port knows: {', '.join(self._commands)}"
            )
            return _line(reply)
        try:
            result = handler(request)
        except CommandError as exc:
            reply.update(ok=False, error=str(exc))
        else:
            reply.update(ok=True, result=result)
        return _line(reply)

    def send_event(self, kind: str, **fields: Any) -> None:
        """Send an event line to every client, stamped with the device's clock (e.g. an alert)."""
        self._broadcast({"event": kind, "t": round(self.loop.time() - self.clock_origin, 6), **fields})

    def _broadcast(self, message: dict[str, Any]) -> None:
        data = _line(message)
        for send in list(self._clients):
            send(data)

    def _on_log(self, now: float, device: str, text: str) -> None:
        if device == self.name:
            now -= self.clock_origin
            self._recent.append((now, text))
            self._broadcast({"event": "log", "t": round(now, 6), "text": text})

    def _on_power(self, on: bool) -> None:
        self._broadcast({"event": "power", "t": round(self.loop.time() - self.clock_origin, 6), "on": on})

    # ---------------------------------------------------------------------------- commands
    def _hello(self, request: dict[str, Any]) -> dict[str, Any]:
        config = self.device.config
        return {
            "device": config.name,
            "type": config.type,
            "ieee": config.ieee[::-1].hex(":"),  # shown as written: most significant byte first
            "protocol": PROTOCOL_VERSION,
            "commands": sorted(self._commands),
        }

    def _status(self, request: dict[str, Any]) -> dict[str, Any]:
        device = self.device
        running = device.flash.running
        return {
            "device": device.config.name,
            "powered": device.powered,
            "boots": device.boots,
            "on_network": device.node is not None and device.node.running,
            "nwk": f"0x{device.config.nwk:04X}",
            "role": device.config.role,
            "firmware_version": running.file_version,
            "firmware_version_text": version_text(running.file_version),
            "stack_version": running.stack_version,
            "image_confirmed": device.flash.confirmed,
            "ota_state": device.ota.state if device.ota is not None else "off",
        }

    def _version(self, request: dict[str, Any]) -> dict[str, Any]:
        running = self.device.flash.running
        return {
            "firmware_version": running.file_version,
            "firmware_version_text": version_text(running.file_version),
            "stack_version": running.stack_version,
            "image_confirmed": self.device.flash.confirmed,
        }

    def _ota(self, request: dict[str, Any]) -> dict[str, Any]:
        ota = self.device.ota
        if ota is None:
            raise CommandError("the device is powered off: its OTA client is not running")
        result: dict[str, Any] = {"state": ota.state, "busy": ota.busy}
        for name, attr_id in _OTA_ATTRIBUTES.items():
            value = ota.read_attribute(attr_id)
            result[name] = value[1] if value is not None else None
        return result

    def _power(self, request: dict[str, Any]) -> dict[str, Any]:
        on = request.get("on")
        if not isinstance(on, bool):
            raise CommandError(f'power needs "on": true or false, got {on!r}')
        if on:
            self.device.power_on()
        else:
            self.device.power_off()
        return {"powered": self.device.powered}

    def _reset(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self.device.powered:
            raise CommandError("the device is powered off; switch power on to start it")
        self.device.reset()
        return {"powered": self.device.powered, "boots": self.device.boots}

    def _log_tail(self, request: dict[str, Any]) -> dict[str, Any]:
        count = request.get("lines", 50)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise CommandError(f'log needs "lines": a count of lines, got {count!r}')
        recent = list(self._recent)[-count:] if count else []
        return {"lines": [{"t": round(t, 6), "text": text} for t, text in recent]}


class _TcpSession(asyncio.Protocol):
    """One client connected over TCP."""

    def __init__(self, server: ControlPortServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._clients.append(self._send)
        self.server._sessions.append(self)

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.server._feed(self.buffer, data, self._send)

    def connection_lost(self, exc: Exception | None) -> None:
        with contextlib.suppress(ValueError):
            self.server._clients.remove(self._send)
        with contextlib.suppress(ValueError):
            self.server._sessions.remove(self)
        self.transport = None


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
