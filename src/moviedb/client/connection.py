"""One persistent, pipelined connection to one server; its one seam is `request()`."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
import ssl
from collections import deque
from typing import Final

import msgspec

from moviedb import protocol
from moviedb.client.address import Address
from moviedb.client.security import PLAIN, ServerSecurity
from moviedb.errors import ServerUnavailable
from moviedb.protocol import LineFramer, LineTooLong, RawReply


class State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"  # by us, by the server, or after a failure; the next request reconnects


class NotSent(ServerUnavailable):
    """The request never left this process: the server did not accept a connection."""


class ReplyLost(ServerUnavailable):
    """The request was sent but no reply came back; it may or may not have been applied."""


class Refused(ServerUnavailable):
    """The server refused this client's token (or TLS certificate check failed): nothing of the
    request was sent, and sending it again will not help until the configuration changes."""


# Replies carry pages of up to 1,000 records (list, fetch, search): far longer than a request
# may be. The bound only protects against a server gone mad.
MAX_REPLY_LINE: Final = 256 << 20
TLS_GOODBYE: Final = 0.2  # seconds to wait for a TLS close_notify exchange when closing


class Connection:
    """Requests go out in order; replies are matched to them in the same order."""

    def __init__(
        self,
        address: Address,
        *,
        max_line: int = MAX_REPLY_LINE,
        security: ServerSecurity = PLAIN,
    ) -> None:
        self.address = address
        self.security = security
        self._tls = security.ssl_context()
        self.access: str | None = None  # what the server's hello granted, once authenticated
        self.state = State.NEW
        self._max_line = max_line
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: deque[asyncio.Future[RawReply]] = deque()
        self._connecting = asyncio.Lock()  # concurrent first requests share one connection

    def __repr__(self) -> str:
        return f"<Connection {self.address} {self.state.value} waiting={len(self._waiting)}>"

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    async def connect(self) -> None:
        if self.is_open:
            return
        async with self._connecting:
            if self.is_open:  # another request connected while we waited
                return
            host, port = self.address
            try:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self._tls, server_hostname=host if self._tls else None
                )
            except ssl.SSLCertVerificationError as exc:
                raise Refused(
                    f"refused: {self.address}: TLS: the server's certificate is not trusted "
                    f"({exc.verify_message}); check this server's ca in the config"
                ) from None
            except ssl.SSLError as exc:
                raise NotSent(f"{self.address}: TLS handshake failed ({exc.reason})") from None
            except OSError as exc:
                # The system's words for the errno: event loops word their own messages apart
                # (a name that does not resolve keeps the resolver's words).
                code = exc.errno
                if isinstance(exc, socket.gaierror) or code is None or code <= 0:
                    reason = exc.strerror or str(exc)
                else:
                    reason = os.strerror(code)
                raise NotSent(f"{self.address}: cannot connect ({reason})") from None
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_replies(reader))
            if self.security.token is not None:
                await self._authenticate(self.security.token)
            # Open (for other requests) only once authenticated: none goes out ahead of hello.
            if self._writer is not None:
                self.state = State.OPEN

    async def _authenticate(self, token: str) -> None:
        """The first request of the connection: hello with the token (protocol.md#tokens)."""
        try:
            reply = await self._send(protocol.Hello(id="auth", token=token))
        except ReplyLost as exc:
            raise NotSent(f"{exc} (while sending the token)") from None
        if not reply.ok:
            self.close()
            error = reply.error
            detail = f"{error.code}: {error.message}" if error else "refused without detail"
            if reply.id != "auth" or error is None or error.code != protocol.UNAUTHORIZED:
                # The server turned the connection away before reading the token (it is full
                # or stopping): unsent, and worth trying again.
                raise NotSent(f"{self.address}: {detail}")
            raise Refused(
                f"refused: {self.address}: the server refused this client's token ({detail})"
            )
        hello = protocol.decode_result(reply.result, protocol.HelloResult)
        self.access = hello.access

    async def request(self, request: protocol.AnyRequest) -> RawReply:
        """Send one request and wait for its reply (cancel-safe: a cancel closes the connection).

        A connection that sat idle may have been closed by the server without our noticing;
        such a request is sent once more on a new connection. Every request is idempotent
        (reads, and writes of a revision), so the repeat is safe.
        """
        reused = self.state is State.OPEN
        try:
            return await self._request_once(request)
        except ReplyLost:
            if not reused:
                raise
        try:
            return await self._request_once(request)
        except NotSent as exc:
            # The first attempt left this process: whether it was applied is unknown.
            raise ReplyLost(f"{exc}; an earlier attempt was sent, its outcome is unknown") from None

    async def _request_once(self, request: protocol.AnyRequest) -> RawReply:
        await self.connect()
        return await self._send(request)

    async def _send(self, request: protocol.AnyRequest) -> RawReply:
        if self._writer is None:
            raise ReplyLost(f"{self.address}: the connection was closed")
        future: asyncio.Future[RawReply] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            self._writer.write(protocol.encode_request(request))
            await self._writer.drain()
            return await future
        except asyncio.CancelledError:
            # The reply may still arrive and would be matched to the next request: start afresh.
            self.close()
            _retrieve(future)
            raise
        except OSError as exc:
            self.close()
            _retrieve(future)
            raise ReplyLost(f"{self.address}: connection failed ({exc})") from None

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        framer = LineFramer(self._max_line)
        reason = "the server closed the connection"
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                for line in framer.feed(data):
                    reply = protocol.decode_reply(line)
                    if not self._waiting:
                        # An unsolicited error (the server refused this connection): keep it.
                        if reply.error is not None:
                            reason = f"{reply.error.code}: {reply.error.message}"
                        continue
                    waiter = self._waiting.popleft()
                    if not waiter.done():
                        waiter.set_result(reply)
        except (OSError, LineTooLong, msgspec.DecodeError) as exc:
            reason = f"bad reply stream: {exc}"
        finally:
            self._fail_waiting(reason)
            self._drop_writer()

    def _fail_waiting(self, reason: str) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(ReplyLost(f"{self.address}: {reason}"))

    def _drop_writer(self) -> None:
        self.state = State.CLOSED
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        if self._reader_task is not None and not self._reader_task.done():
            self._reader_task.cancel()
        self._fail_waiting("the connection was closed")
        self._drop_writer()

    async def aclose(self) -> None:
        task = self._reader_task
        writer = self._writer
        self.close()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if writer is not None and self._tls is not None:
            # TLS says goodbye (close_notify) on the loop: let it finish before the loop closes,
            # but never wait long on a peer that does not answer (a hung server would otherwise
            # add this wait to the command that closes the connection).
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(TLS_GOODBYE):
                    await writer.wait_closed()


def _retrieve(future: asyncio.Future[RawReply]) -> None:
    """Mark the failure of a reply nobody will await as seen (close() failed it with ReplyLost
    while the request was still being sent), so asyncio does not log it as never retrieved."""
    if future.done() and not future.cancelled():
        future.exception()
