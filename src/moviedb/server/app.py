"""The asyncio glue: one Protocol instance per connection, port selection, limits, graceful stop."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from moviedb import protocol
from moviedb.protocol import WRITE_OPS, LineFramer, LineTooLong, RequestError
from moviedb.server.handlers import ServerState, dispatch
from moviedb.server.storage import Store
from moviedb.server.writer import GroupCommitter

log = logging.getLogger("moviedb.server")


@dataclass(frozen=True)
class Limits:
    max_line: int = protocol.DEFAULT_MAX_LINE
    max_connections: int = 1000
    idle_timeout: float = 300.0  # seconds without a byte from the client
    max_in_flight: int = 256  # requests of one connection waiting for their reply


class NoFreePort(Exception):
    def __init__(self, host: str, tried: list[int]) -> None:
        from moviedb.server.ports import describe

        super().__init__(f"no free port on {host} among the permitted ports {describe(tried)}")
        self.tried = tried


class Connection(asyncio.Protocol):
    """One client connection: frames lines, dispatches requests, writes replies in order."""

    def __init__(self, server: MoviedbServer) -> None:
        self._server = server
        self._framer = LineFramer(server.limits.max_line)
        self._transport: asyncio.Transport | None = None
        self._replies: deque[bytes | asyncio.Future[bytes]] = deque()
        self._last_activity = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._eof = False
        self._reading_paused = False
        self._writing_paused = False
        self._last_write: asyncio.Future[bytes] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        server = self._server
        if len(server.connections) >= server.limits.max_connections or server.stopping:
            code = protocol.SHUTTING_DOWN if server.stopping else protocol.TOO_MANY_CONNECTIONS
            message = (
                "the server is shutting down"
                if server.stopping
                else f"the server holds its maximum of {server.limits.max_connections} "
                "connections; try again later"
            )
            transport.write(protocol.encode_error(None, code, message))
            transport.close()
            return
        server.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._transport = None

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def busy(self) -> bool:
        return bool(self._replies)

    # --- input ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_activity = time.monotonic()
        self._server.state.bytes_in += len(data)
        if self._eof:
            # Past an oversized line the stream cannot be framed again: drop what follows
            # (instead of buffering it and refusing it once more) until the replies are out.
            return
        try:
            lines = self._framer.feed(data)
        except LineTooLong as exc:
            # The requests that arrived whole before the long line are answered first, in order.
            for line in exc.before:
                self._handle(line)
            self._reply(protocol.encode_error(None, protocol.LINE_TOO_LONG, str(exc)))
            self._eof = True
            self._close_when_flushed()
            return
        for line in lines:
            self._handle(line)

    def eof_received(self) -> bool:
        if not self._eof and self._framer.pending:
            self._reply(
                protocol.encode_error(
                    None, protocol.BAD_JSON, "the stream ended in the middle of a line"
                )
            )
        self._eof = True
        self._close_when_flushed()
        return True  # keep the transport open until every reply is written

    def _handle(self, line: bytes) -> None:
        if self._eof:
            return
        try:
            request = protocol.decode_request(line)
        except RequestError as exc:
            self._reply(protocol.encode_error(exc.request_id, exc.code, exc.message))
            return
        # msgspec reports invalid UTF-8 inside a string and deep nesting with these exceptions,
        # not as a DecodeError; escaping from data_received they would drop the connection
        # without a reply.
        except UnicodeDecodeError as exc:
            message = f"not a JSON object on one UTF-8 line: invalid UTF-8 ({exc.reason})"
            self._reply(protocol.encode_error(None, protocol.BAD_JSON, message))
            return
        except RecursionError:
            message = "not a JSON object on one UTF-8 line: nested too deeply"
            self._reply(protocol.encode_error(None, protocol.BAD_JSON, message))
            return
        except Exception:
            log.exception("cannot decode a request: %.200r", line)
            self._reply(protocol.encode_error(None, protocol.INTERNAL, "internal error; see log"))
            return
        if self._server.stopping:
            # stop() waits only for the requests in flight when it began; one taken on later
            # could commit after its connection is closed, leaving the client unanswered.
            self._reply(
                protocol.encode_error(
                    request.id, protocol.SHUTTING_DOWN, "the server is shutting down; try again"
                )
            )
            return
        last_write = self._last_write
        is_write = isinstance(request, WRITE_OPS)
        if last_write is not None and not last_write.done() and not is_write:
            # A connection reads its own writes: this read waits for the write before it.
            self._reply(asyncio.ensure_future(self._dispatch_after(last_write, request)))
            return
        reply = self._dispatch(request)
        if isinstance(reply, bytes):
            self._reply(reply)
            return
        future = asyncio.ensure_future(_guarded(reply))
        if is_write:
            self._last_write = future
        self._reply(future)

    def _dispatch(self, request: protocol.AnyRequest) -> bytes | Awaitable[bytes]:
        try:
            return dispatch(self._server.state, request)
        except RequestError as exc:
            return protocol.encode_error(exc.request_id, exc.code, exc.message)
        except Exception:
            log.exception("request failed: %.200r", request)
            return protocol.encode_error(request.id, protocol.INTERNAL, "internal error; see log")

    async def _dispatch_after(
        self, write: asyncio.Future[bytes], request: protocol.AnyRequest
    ) -> bytes:
        await asyncio.wait([write])
        reply = self._dispatch(request)
        return reply if isinstance(reply, bytes) else await _guarded(reply)

    # --- output, in request order ---------------------------------------------------------------

    def _reply(self, reply: bytes | asyncio.Future[bytes]) -> None:
        if isinstance(reply, bytes) and not self._replies:
            if self._transport is not None:
                self._server.state.bytes_out += len(reply)
                self._transport.write(reply)
            return
        self._replies.append(reply)
        if isinstance(reply, asyncio.Future):
            self._server.in_flight.add(reply)
            reply.add_done_callback(self._flush)
        self._update_reading()

    def _flush(self, done: asyncio.Future[bytes] | None = None) -> None:
        if done is not None:
            self._server.in_flight.discard(done)
        replies = self._replies
        while replies:
            head = replies[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    break
                data = head.result()
            else:
                data = head
            replies.popleft()
            if self._transport is not None:
                self._server.state.bytes_out += len(data)
                self._transport.write(data)
        self._update_reading()
        if self._eof:
            self._close_when_flushed()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        should_pause = (
            self._writing_paused or len(self._replies) >= self._server.limits.max_in_flight
        )
        if should_pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def _close_when_flushed(self) -> None:
        if not self._replies and self._transport is not None:
            self._transport.close()

    # --- idle timeout ---------------------------------------------------------------------------

    def _arm_idle_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self._server.limits.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        idle = time.monotonic() - self._last_activity
        if idle >= self._server.limits.idle_timeout and not self._replies:
            log.info("closing a connection idle for %.0f s", idle)
            self.close()
            return
        self._arm_idle_timer()


async def _guarded(reply: Awaitable[bytes]) -> bytes:
    try:
        return await reply
    except Exception:
        log.exception("request failed")
        return protocol.encode_error(None, protocol.INTERNAL, "internal error; see server log")


class MoviedbServer:
    """A server on one SQLite file: start() binds the first free permitted port, stop() drains."""

    def __init__(
        self, db_path: str | Path, *, name: str = "", limits: Limits | None = None
    ) -> None:
        self.db_path = Path(db_path)
        self.name = name
        self.limits = limits or Limits()
        self.connections: set[Connection] = set()
        self.in_flight: set[asyncio.Future[bytes]] = set()
        self.stopping = False
        self.host = ""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writer_store: Store | None = None
        self._reader_store: Store | None = None
        self.state: ServerState

    async def start(self, host: str = "127.0.0.1", ports: list[int] | None = None) -> int:
        loop = asyncio.get_running_loop()
        self._writer_store = Store(self.db_path)
        self._reader_store = Store(self.db_path, for_writing=False)
        committer = GroupCommitter(
            self._writer_store,
            loop,
            self._reader_store.count_live(),
            self._reader_store.bucket_digests(),
            self._reader_store.count_entries(),
        )
        server_id = self._reader_store.server_id
        self.state = ServerState(
            name=self.name or f"moviedb-{server_id[:8]}",
            store=self._reader_store,
            committer=committer,
            server_id=server_id,
            connections=lambda: len(self.connections),
        )
        try:
            self._server, self.port = await _bind_first_free(
                loop, lambda: Connection(self), host, ports or [0]
            )
        except BaseException:
            await self._close_storage()
            raise
        self.host = host
        return self.port

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish, close connections and the database."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self.in_flight:
            await asyncio.wait(list(self.in_flight), timeout=grace)
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
        await self._close_storage()

    async def _close_storage(self) -> None:
        state = getattr(self, "state", None)
        if state is not None:
            await asyncio.to_thread(state.committer.close)
        for store in (self._writer_store, self._reader_store):
            if store is not None:
                store.close()
        self._writer_store = self._reader_store = None


async def _bind_first_free(
    loop: asyncio.AbstractEventLoop,
    factory: type[Connection] | object,
    host: str,
    ports: list[int],
) -> tuple[asyncio.Server, int]:
    """Bind the first port of the list that is free, trying them in order."""
    for port in ports:
        try:
            server = await loop.create_server(factory, host, port)  # type: ignore[arg-type]
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        bound = server.sockets[0].getsockname()[1]
        return server, int(bound)
    raise NoFreePort(host, ports)
