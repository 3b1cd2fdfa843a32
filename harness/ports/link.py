"""A line-oriented serial link on the asyncio loop, opened through pyserial from a URL.

The harness reaches every control port, emulated or real, through pyserial: ``/dev/ttyUSB0`` (a
USB-serial adapter on a bench), ``/dev/pts/N`` (a pty an emulator opened) or ``socket://host:port``
(an emulator's TCP console, or a serial-to-TCP bridge such as ser2net). pyserial is blocking, so the
link opens the port with ``timeout=0`` and asks the loop to call it when the port's file descriptor
is readable: one loop, no threads. (pyserial-asyncio-fast does the same, but opens ports in an
executor thread; on a virtual clock a thread lets the testbed time run on while it waits.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import urlparse

import serial

from harness.errors import BadInputError, BenchError

# A console line longer than this is noise (a baud-rate mismatch, a binary dump): cut it, keep going.
MAX_LINE = 65536
SUPPORTED_SCHEMES = ("socket", "file path (/dev/tty*, /dev/pts/*)")


class SerialLineLink:
    """One open serial port that delivers whole lines to a callback and writes lines."""

    def __init__(
        self,
        url: str,
        *,
        on_line: Callable[[bytes], None],
        on_lost: Callable[[str], None],
        baudrate: int = 115200,
    ) -> None:
        self.url = url
        self._on_line = on_line
        self._on_lost = on_lost
        self._baudrate = baudrate
        self._serial: serial.SerialBase | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray()

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._serial is not None

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the port and start delivering lines; a port that cannot be opened is a bench error."""
        scheme = urlparse(self.url).scheme
        if scheme not in ("", "socket"):
            raise BadInputError(
                f"control ports are reached as {' or '.join(SUPPORTED_SCHEMES)}; "
                f"the {scheme!r} scheme is not supported",
                field="url",
                value=self.url,
            )
        try:
            port = serial.serial_for_url(self.url, baudrate=self._baudrate, timeout=0, write_timeout=2)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise BenchError(f"cannot open control port {self.url}: {exc}") from exc
        self._serial = port
        self._fd = _file_descriptor(port)
        self._loop = loop
        loop.add_reader(self._fd, self._readable)

    def write_line(self, line: bytes) -> None:
        """Send one line (a newline is added)."""
        if self._serial is None:
            raise BenchError(f"control port {self.url} is closed")
        try:
            self._serial.write(line + b"\n")
        except (serial.SerialException, OSError) as exc:
            self._lost(f"write failed: {exc}")
            raise BenchError(f"control port {self.url} is gone: {exc}") from exc

    def close(self) -> None:
        """Close the port; no more lines are delivered."""
        if self._serial is None:
            return
        if self._loop is not None and self._fd is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        sock = getattr(self._serial, "_socket", None)
        if sock is not None:
            # pyserial's socket:// close() sleeps 0.3 s of wall time ("give the server some time" for
            # quick reconnects), blocking the whole loop; we never reconnect to the same port, so close
            # the socket ourselves and leave pyserial nothing to do.
            with contextlib.suppress(OSError):
                sock.close()
            self._serial._socket = None
            self._serial.is_open = False
        with contextlib.suppress(Exception):
            self._serial.close()
        self._serial = None
        self._fd = None

    def _readable(self) -> None:
        if self._serial is None:
            return
        try:
            data = self._serial.read(4096)
        except (serial.SerialException, OSError) as exc:
            self._lost(str(exc))
            return
        if not data:
            return
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    self._buffer.clear()
                return
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            self._on_line(line)

    def _lost(self, why: str) -> None:
        self.close()
        self._on_lost(why)


def _file_descriptor(port: serial.SerialBase) -> int:
    fileno = getattr(port, "fileno", None)
    if callable(fileno):
        fd = fileno()
        if isinstance(fd, int):
            return fd
    # pyserial's socket:// handler keeps its socket private and offers no fileno();
    # pyserial-asyncio-fast reads the same attribute for the same reason.
    sock = getattr(port, "_socket", None)
    if sock is not None:
        return int(sock.fileno())
    raise BadInputError(
        "this kind of port cannot be watched by the event loop (no file descriptor)",
        field="url",
        value=getattr(port, "portstr", None),
    )
