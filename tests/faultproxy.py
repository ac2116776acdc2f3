"""A loopback TCP proxy that stands between clients and one server and injects link faults.

`FaultProxy(host, port)` listens on 127.0.0.1, port 0 (a free one), and forwards every
connection to the server. While running it can

- `delay(ms)`: hold every chunk, in both directions, for `ms` milliseconds before forwarding it
  (order kept: a chunk never overtakes an earlier one);
- `blackhole()`: accept connections and read what arrives, but forward nothing in either
  direction (the bytes are dropped, as a firewall that drops packets would; a connection accepted
  meanwhile gets no upstream connection until it has something to forward);
- `heal()`: forward at once again (chunks already held keep their time). A connection that lost
  bytes to the blackhole cannot be framed any more, so heal resets it (a TCP reset to both
  peers); new connections are clean.

Used by the fault-injection tests and the soak benchmark; asyncio only, no threads.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

CHUNK = 1 << 16


@dataclass
class ProxyStats:
    dropped: int = 0  # bytes read and thrown away by the blackhole
    reset: int = 0  # connections reset by heal() because they had lost bytes


class _Link:
    """One client connection and its upstream connection to the server."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client_reader = reader
        self.client_writer = writer
        self.upstream: asyncio.StreamWriter | None = None
        self.lost_bytes = False
        self.ended = 0  # directions whose end of stream was passed on
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()
        self.finished = asyncio.Event()

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client_writer] + ([self.upstream] if self.upstream is not None else [])

    def reset(self) -> None:
        """End both connections with a TCP reset (SO_LINGER 0), as a broken path would."""
        for writer in self.writers():
            sock = writer.get_extra_info("socket")
            if sock is not None and not writer.transport.is_closing():
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.done.set()

    def close(self) -> None:
        for writer in self.writers():
            writer.transport.close()
        self.done.set()

    async def run(self) -> None:
        try:
            if not self.proxy.dropping:
                await self._connect_upstream()
            self._spawn(self._pump(self.client_reader, self._to_server))
            await self.done.wait()
        except OSError:
            pass  # the server is not there: the client sees its connection close
        finally:
            self.close()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.finished.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.tasks.add(asyncio.create_task(coroutine))

    async def _connect_upstream(self) -> None:
        reader, self.upstream = await asyncio.open_connection(
            self.proxy.target_host, self.proxy.target_port
        )
        self._spawn(self._pump(reader, self._to_client))

    async def _to_server(self) -> asyncio.StreamWriter:
        if self.upstream is None:  # accepted while blackholed: connect with the first bytes
            await self._connect_upstream()
        assert self.upstream is not None
        return self.upstream

    async def _to_client(self) -> asyncio.StreamWriter:
        return self.client_writer

    async def _pump(self, reader: asyncio.StreamReader, target: _Target) -> None:
        """Read chunks and queue each with the time it is due; drop them while blackholed.
        The end of the stream is queued too, so that it arrives after the last chunk."""
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._spawn(self._send(outbox, target))
        try:
            while data := await reader.read(CHUNK):
                if proxy.dropping:
                    proxy.stats.dropped += len(data)
                    self.lost_bytes = True
                else:
                    outbox.put_nowait((loop.time() + proxy.delay_s, data))
        except OSError:
            self.done.set()  # reset by a peer
            return
        outbox.put_nowait((loop.time() + proxy.delay_s, b""))

    async def _send(self, outbox: asyncio.Queue[tuple[float, bytes]], target: _Target) -> None:
        proxy = self.proxy
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await outbox.get()
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())  # the injected delay itself
                if not data:
                    self._end(target)
                    return
                if proxy.dropping:
                    proxy.stats.dropped += len(data)
                    self.lost_bytes = True
                    continue
                writer = await target()
                writer.write(data)
                await writer.drain()
        except OSError:
            self.done.set()

    def _end(self, target: _Target) -> None:
        """One direction ended: pass the end on; the link is done when both have ended."""
        writer = self.client_writer if target == self._to_client else self.upstream
        if writer is None:  # never connected upstream: nothing to tell the server
            self.done.set()
            return
        if writer.can_write_eof() and not writer.transport.is_closing():
            writer.write_eof()
        self.ended += 1
        if self.ended == 2:
            self.done.set()


_Target = Callable[[], Awaitable[asyncio.StreamWriter]]


class FaultProxy:
    """`async with FaultProxy(host, port) as proxy:` clients connect to `proxy.address`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay_s = 0.0
        self.dropping = False
        self.stats = ProxyStats()
        self.links: set[_Link] = set()
        self.port = 0
        self._server: asyncio.Server | None = None

    def __repr__(self) -> str:
        mode = "blackhole" if self.dropping else f"delay {self.delay_s * 1000:g} ms"
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self.target_host}:{self.target_port} {mode}>"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def delay(self, ms: float) -> None:
        """Chunks read from now on are forwarded `ms` milliseconds after they arrived."""
        self.delay_s = ms / 1000

    def blackhole(self) -> None:
        """Accept and read, forward nothing."""
        self.dropping = True

    def heal(self) -> None:
        """No delay, no blackhole; connections that lost bytes are reset."""
        self.delay_s = 0.0
        self.dropping = False
        for link in list(self.links):
            if link.lost_bytes:
                self.stats.reset += 1
                link.reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(self, reader, writer)
        self.links.add(link)
        try:
            await link.run()
        except asyncio.CancelledError:
            # Only when the event loop is torn down with the proxy still open. asyncio's
            # start_server logs a cancelled handler as an error (Python 3.11), so end quietly.
            link.reset()
        finally:
            self.links.discard(link)

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close()
        links = list(self.links)
        for link in links:
            link.reset()
        async with asyncio.timeout(10):  # a bound: each link ends as soon as it is reset
            await asyncio.gather(*(link.finished.wait() for link in links))
            await self._server.wait_closed()
        self._server = None
