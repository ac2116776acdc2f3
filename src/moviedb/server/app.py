"""The asyncio glue: one Protocol instance per connection, port selection, limits, graceful stop."""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import msgspec

from moviedb import protocol
from moviedb.model import MAX_RECORD_BYTES
from moviedb.protocol import WRITE_OPS, Hello, LineFramer, LineTooLong, RequestError
from moviedb.server.auth import Access, Tokens
from moviedb.server.handlers import ServerState, cached_get, dispatch
from moviedb.server.storage import Store, folded_title
from moviedb.server.writer import MAX_BATCH, Checkpointer, GroupCommitter

log = logging.getLogger("moviedb.server")

# A read that brings this many requests (or bytes) ends the connection's turn (data_received).
YIELD_AFTER_LINES = 64
YIELD_AFTER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """What one server accepts (docs/server.md#limits); each is a `moviedb-server` option."""

    max_line: int = protocol.DEFAULT_MAX_LINE  # bytes of one request line
    max_record: int = MAX_RECORD_BYTES  # bytes of one record's JSON
    max_connections: int = 1000
    idle_timeout: float = 300.0  # seconds without a byte from the client
    line_timeout: float = 30.0  # seconds from a line's first byte to its newline
    max_in_flight: int = 256  # requests of one connection waiting for their reply
    max_db_size: int | None = None  # bytes the database file may grow to (None: the disk's)
    max_batch: int = MAX_BATCH  # writes one commit may hold (1: a commit per write)


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
        # asyncio.ensure_future and get_running_loop() make a getpid() system call each time
        # (CPython checks for a fork): a request's task is made on the loop kept here instead.
        self._loop = asyncio.get_running_loop()
        self._replies: deque[bytes | asyncio.Future[bytes]] = deque()
        self._last_activity = self._connected_at = time.monotonic()
        self._line_started: float | None = None  # when the unfinished line's first byte came
        self._timer: asyncio.TimerHandle | None = None
        # Without tokens every connection may read and write; with them, only after `hello`.
        self._access: Access | None = Access.READ_WRITE if server.tokens is None else None
        self._eof = False
        self._reading_paused = False
        self._writing_paused = False
        self._last_write: asyncio.Future[bytes] | None = None
        self._yielding = False  # reading paused until the loop's next turn (see data_received)
        # Replies ready while one read is being handled, written together at its end: one send
        # for a pipeline of requests instead of one per reply.
        self._batch: list[bytes] | None = None

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
        self._arm_timer(min(server.limits.idle_timeout, server.limits.line_timeout))

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
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
        if data.startswith(b'{"op":"get"') and self._answer_cached_get(data):
            return
        self._batch = []
        try:
            self._receive(data)
        finally:
            batch, self._batch = self._batch, None
            if batch:
                self._send(batch[0] if len(batch) == 1 else b"".join(batch))
            if self._eof:
                self._close_when_flushed()

    def _answer_cached_get(self, data: bytes) -> bool:
        """Answer `data` here if it is one whole line, a `get` whose result is cached, and
        nothing of this connection waits before it (replies, a partial line): the shortcut for
        the busiest request. False, with nothing done: the general path takes it."""
        if (
            self._replies
            or self._eof
            or self._framer.pending
            or data.find(b"\n") != len(data) - 1
            or len(data) > self._server.limits.max_line
        ):
            return False
        reply = self._cached_get(data)
        if reply is None:
            return False
        self._last_activity = time.monotonic()
        self._server.state.bytes_in += len(data)
        self._send(reply)
        return True

    def _cached_get(self, line: bytes) -> bytes | None:
        """The reply to `line` if it is a `get` whose result is cached and this connection may
        be answered at once (authorized, no write of its own pending); else None."""
        server = self._server
        if self._access is None or server.stopping:
            return None
        if self._last_write is not None and not self._last_write.done():
            return None  # a connection reads its own writes: see _handle
        request = protocol.decode_get(line)
        return None if request is None else cached_get(server.state, request)

    def _receive(self, data: bytes) -> None:
        now = self._last_activity = time.monotonic()
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
        if not self._framer.pending:
            self._line_started = None
        elif self._line_started is None or lines:
            self._line_started = now  # a new line began in this chunk
        if len(lines) >= YIELD_AFTER_LINES or len(data) >= YIELD_AFTER_BYTES:
            # uvloop reads a busy socket up to 32 times in one go: a client pipelining
            # thousands of requests would hold the loop for hundreds of milliseconds while
            # every other connection waits. Read no more of this one until the next turn.
            self._yielding = True
            self._update_reading()
            self._loop.call_soon(self._end_turn)

    def _end_turn(self) -> None:
        self._yielding = False
        self._update_reading()

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
        if line.startswith(b'{"op":"get"'):
            cached = self._cached_get(line)
            if cached is not None:
                self._reply(cached)
                return
        try:
            request = protocol.decode_request(line)
        except RequestError as exc:
            self._bad_line(exc.request_id, exc.code, exc.message)
            return
        except Exception:
            log.exception("cannot decode a request of %d bytes", len(line))  # may hold a token
            self._bad_line(None, protocol.INTERNAL, "internal error; see log")
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
        if isinstance(request, Hello) and request.token is not None:
            self._authenticate(request)
            if self._access is None:
                return
        elif self._access is None:
            self._refuse(request.id, "this server requires a token: send hello with a token first")
            return
        last_write = self._last_write
        is_write = isinstance(request, WRITE_OPS)
        if last_write is not None and not last_write.done() and not is_write:
            # A connection reads its own writes: this read waits for the write before it.
            self._reply(self._loop.create_task(self._dispatch_after(last_write, request)))
            return
        reply = self._dispatch(request)
        if isinstance(reply, bytes):
            self._reply(reply)
            return
        # A future is answered by whoever made it (always with bytes); a coroutine runs as a
        # task that answers `internal` if it raises.
        future = (
            reply if isinstance(reply, asyncio.Future) else self._loop.create_task(_guarded(reply))
        )
        if is_write:
            self._last_write = future
        self._reply(future)

    def _bad_line(self, request_id: protocol.RequestId, code: str, message: str) -> None:
        if self._access is None:
            # Before its token, a connection gets nothing but the refusal: garbage must not
            # keep it open (and holding a connection slot) without one.
            self._refuse(request_id, f"{code}: {message}; and this server requires a token first")
        else:
            self._reply(protocol.encode_error(request_id, code, message))

    def _authenticate(self, hello: Hello) -> None:
        tokens = self._server.tokens
        if tokens is None:
            return  # a token is not needed, and not checked: the access is read-write already
        assert hello.token is not None
        self._access = tokens.check(hello.token)
        if self._access is None:
            log.warning("refused a connection from %s: wrong token", self._peer())
            self._refuse(hello.id, "the token is not one this server accepts")

    def _refuse(self, request_id: protocol.RequestId, message: str) -> None:
        """Answer `unauthorized` and close: every guess at a token costs a new connection."""
        self._reply(protocol.encode_error(request_id, protocol.UNAUTHORIZED, message))
        self._eof = True
        self._close_when_flushed()

    def _peer(self) -> str:
        peer = self._transport.get_extra_info("peername") if self._transport else None
        return str(peer[0]) if isinstance(peer, tuple) else "an unknown peer"

    def _dispatch(self, request: protocol.AnyRequest) -> bytes | Awaitable[bytes]:
        assert self._access is not None
        try:
            return dispatch(self._server.state, request, self._access)
        except RequestError as exc:
            return protocol.encode_error(exc.request_id, exc.code, exc.message)
        except Exception:
            log.exception("request failed: %.200r", _without_token(request))
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
            if self._batch is not None:
                self._batch.append(reply)
            else:
                self._send(reply)
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
        ready: list[bytes] = []
        while replies:
            head = replies[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    break
                ready.append(head.result())
            else:
                ready.append(head)
            replies.popleft()
        if ready:
            self._send(b"".join(ready))
        self._update_reading()
        if self._eof:
            self._close_when_flushed()

    def _send(self, data: bytes) -> None:
        if self._transport is not None:
            self._server.state.bytes_out += len(data)
            self._transport.write(data)

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        should_pause = (
            self._writing_paused
            or self._yielding
            or len(self._replies) >= self._server.limits.max_in_flight
        )
        if should_pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def _close_when_flushed(self) -> None:
        # Within data_received, the close waits for the batch to be written (at its end).
        if not self._replies and self._transport is not None and self._batch is None:
            self._transport.close()

    # --- idle and unfinished-line timeouts -----------------------------------------------------

    def _arm_timer(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(delay, 0.01), self._check_timeouts)

    def _check_timeouts(self) -> None:
        limits = self._server.limits
        now = time.monotonic()
        started = self._line_started
        if started is not None and self._reading_paused and not self._yielding:
            # The server stopped reading (replies pending): the line's wait is not the peer's.
            started = self._line_started = now
        if started is not None and now - started >= limits.line_timeout:
            # A line trickled in byte by byte (slowloris) keeps the connection from being idle;
            # this bound holds however slowly the bytes come.
            log.info("closing a connection whose line took over %.0f s", limits.line_timeout)
            self._reply(
                protocol.encode_error(
                    None,
                    protocol.LINE_TIMEOUT,
                    f"a request line must be completed within {limits.line_timeout:g} s "
                    "of its first byte; closing",
                )
            )
            self._eof = True
            self._close_when_flushed()
            return
        if self._access is None and now - self._connected_at >= limits.line_timeout:
            # Without a token a connection may not hold a slot for longer than one line may take.
            self._refuse(None, f"no token within {limits.line_timeout:g} s of connecting")
            return
        idle = now - self._last_activity
        if idle >= limits.idle_timeout and not self._replies:
            log.info("closing a connection idle for %.0f s", idle)
            self.close()
            return
        next_check = limits.idle_timeout - idle
        if started is not None:
            next_check = min(next_check, limits.line_timeout - (now - started))
        if self._access is None:
            next_check = min(next_check, limits.line_timeout - (now - self._connected_at))
        self._arm_timer(next_check)


def _without_token(request: protocol.AnyRequest) -> protocol.AnyRequest:
    """The request as it may be logged."""
    if isinstance(request, Hello) and request.token is not None:
        return msgspec.structs.replace(request, token="<redacted>")
    return request


async def _guarded(reply: Awaitable[bytes]) -> bytes:
    try:
        return await reply
    except Exception:
        log.exception("request failed")
        return protocol.encode_error(None, protocol.INTERNAL, "internal error; see server log")


class MoviedbServer:
    """A server on one SQLite file: start() binds the first free permitted port, stop() drains."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        name: str = "",
        limits: Limits | None = None,
        tokens: Tokens | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.name = name
        self.limits = limits or Limits()
        self.tokens = tokens  # None: no token needed
        self.tls = tls
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
        self._writer_store = Store(
            self.db_path, max_size=self.limits.max_db_size, autocheckpoint=False
        )
        self._reader_store = Store(self.db_path, for_writing=False)
        committer = GroupCommitter(
            self._writer_store,
            loop,
            self._reader_store.count_live(),
            self._reader_store.bucket_digests(),
            self._reader_store.count_entries(),
            Checkpointer(self.db_path),
            max_batch=self.limits.max_batch,
        )
        server_id = self._reader_store.server_id
        self.state = ServerState(
            name=self.name or f"moviedb-{server_id[:8]}",
            store=self._reader_store,
            committer=committer,
            server_id=server_id,
            connections=lambda: len(self.connections),
            max_record=self.limits.max_record,
        )
        cache = self.state.get_cache
        committer.on_commit = lambda keys: cache.invalidate(folded_title(k) for k in keys)
        try:
            self._server, self.port = await _bind_first_free(
                loop,
                lambda: Connection(self),
                host,
                ports or [0],
                self.tls,
                # asyncio's default of 100 overflows when hundreds connect at once, and every
                # connection past it waits a second or more for TCP to retry its SYN.
                backlog=max(100, self.limits.max_connections),
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
    tls: ssl.SSLContext | None = None,
    backlog: int = 100,
) -> tuple[asyncio.Server, int]:
    """Bind the first port of the list that is free, trying them in order."""
    for port in ports:
        try:
            server = await loop.create_server(
                factory,  # type: ignore[arg-type]
                host,
                port,
                ssl=tls,
                ssl_handshake_timeout=30.0 if tls else None,
                backlog=backlog,
            )
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        bound = server.sockets[0].getsockname()[1]
        return server, int(bound)
    raise NoFreePort(host, ports)
