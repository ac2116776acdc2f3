"""Many servers at once: every operation runs on all of them concurrently, each with its own
deadline, and returns one result per server. A slow or dead server never delays the others."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

import msgspec

from moviedb import protocol
from moviedb.client.address import Address, parse_address
from moviedb.client.connection import Connection, NotSent, Refused
from moviedb.client.security import PLAIN, ServerSecurity
from moviedb.errors import ServerUnavailable
from moviedb.versions import Copy

DEFAULT_TIMEOUT = 2.0
_encode = msgspec.json.Encoder().encode
T = TypeVar("T")


class ReadStatus(enum.Enum):
    FOUND = "found"
    MISSING = "missing"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    ERROR = "error"


class WriteStatus(enum.Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # the server already held this very revision
    STALE = "stale"  # the server holds a newer revision; nothing written
    CONFLICT = "conflict"  # the server holds a concurrent revision; nothing written
    UNKNOWN = "unknown"  # sent, but no answer: it may or may not have been applied
    UNREACHABLE = "unreachable"  # never sent
    ERROR = "error"  # the server refused the request; nothing written


class ReadResult(msgspec.Struct, frozen=True):
    server: Address
    status: ReadStatus
    copies: list[Copy] = msgspec.field(default_factory=list)
    error: str | None = None
    latency: float | None = None

    @property
    def answered(self) -> bool:
        return self.status in (ReadStatus.FOUND, ReadStatus.MISSING)


class WriteResult(msgspec.Struct, frozen=True):
    server: Address
    status: WriteStatus
    current: Copy | None = None  # the server's copy when it refused (stale, conflict)
    error: str | None = None

    @property
    def stored(self) -> bool:
        """The server now holds the written revision."""
        return self.status in (WriteStatus.APPLIED, WriteStatus.UNCHANGED)


class ServerInfo(msgspec.Struct, frozen=True):
    server: Address
    up: bool
    name: str | None = None
    server_id: str | None = None
    movies: int | None = None
    latency: float | None = None
    error: str | None = None
    digest: str | None = None  # equal on servers that hold the same version of every movie
    tombstones: int = 0
    access: str | None = None  # "read-write" or "read-only" (what the token allows)
    transport: str = PLAIN.describe()  # ServerSecurity.describe(): "TLS", "token"...


_WRITE_STATUS = {
    "applied": WriteStatus.APPLIED,
    "same": WriteStatus.UNCHANGED,
    "stale": WriteStatus.STALE,
    "conflict": WriteStatus.CONFLICT,
}


# A write's failure kind -> what is known of it: never sent, or sent and unanswered.
_WRITE_FAILURE = {
    "unreachable": WriteStatus.UNREACHABLE,
    "timeout": WriteStatus.UNKNOWN,
    "lost": WriteStatus.UNKNOWN,
}


# Within a command, a server that has not answered yet gets at least this long for each further
# request: enough to connect and send on a local network, so a write is `unknown`, not unsent.
MIN_WAIT = 0.05


class CommandBudget(msgspec.Struct):
    """One command's time: a server that has not answered any of its requests gets `timeout`
    seconds in all, from the command's start, not `timeout` per request. A hung server then
    costs a command that reads and then writes (edit, add, delete) one timeout, not two.
    A server that has answered is alive: each of its requests gets the full timeout."""

    timeout: float
    start: float = msgspec.field(default_factory=time.monotonic)
    answered: set[Address] = msgspec.field(default_factory=set)

    def limit(self, address: Address) -> float:
        if address in self.answered:
            return self.timeout
        left = self.start + self.timeout - time.monotonic()
        return min(self.timeout, max(left, MIN_WAIT))


class _Failure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "unreachable" (never sent), "timeout", "lost" (no reply), "error"
        self.message = message


class Cluster:
    """`async with Cluster(["127.0.0.1:7001", ...]) as c: results = await c.get("Alien")`."""

    def __init__(
        self,
        servers: Iterable[str | Address],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        security: Mapping[Address, ServerSecurity] | None = None,
    ) -> None:
        self.servers = [s if isinstance(s, Address) else parse_address(s) for s in servers]
        self.timeout = timeout
        self.security = dict(security or {})  # token and TLS per server; absent: plain TCP
        self.budget: CommandBudget | None = None  # set by an interface around each command
        # Wall-clock time stamped on new versions (`written_at`) and queue entries: shown to
        # people, never used to order versions. Injected by tests to skew clients apart.
        self.clock = clock
        self._connections = {
            address: Connection(address, security=self.security.get(address, PLAIN))
            for address in self.servers
        }

    def subset(self, servers: Iterable[Address]) -> Cluster:
        """A new cluster of some of these servers, with the same timeout, clock and security
        (and its own connections: close it when done)."""
        return Cluster(servers, timeout=self.timeout, clock=self.clock, security=self.security)

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._connections.values()))

    # --- one server, one request ----------------------------------------------------------------

    async def _call(
        self, address: Address, request: protocol.AnyRequest, kind: type[T]
    ) -> tuple[T, float]:
        """The decoded result and the latency, or _Failure saying what went wrong."""
        connection = self._connections[address]
        started = time.perf_counter()
        sent = False
        budget = self.budget
        limit = self.timeout if budget is None else budget.limit(address)
        try:
            async with asyncio.timeout(limit):
                await connection.connect()
                sent = True
                reply = await connection.request(request)
        except TimeoutError:
            waited = (
                f"{self.timeout:g} s"
                if limit == self.timeout
                else f"{limit:.2g} s left of this command's {self.timeout:g} s"
            )
            raise _Failure(
                "timeout" if sent else "unreachable",
                f"no answer within {waited}" if sent else f"could not connect within {waited}",
            ) from None
        except Refused as exc:
            raise _Failure("error", str(exc)) from None
        except NotSent as exc:
            raise _Failure("unreachable", str(exc)) from None
        except ServerUnavailable as exc:
            raise _Failure("lost", str(exc)) from None
        latency = time.perf_counter() - started
        if budget is not None:
            budget.answered.add(address)
        if not reply.ok:
            error = reply.error
            message = f"{error.code}: {error.message}" if error else "error without detail"
            raise _Failure("error", message)
        try:
            return protocol.decode_result(reply.result, kind), latency
        except msgspec.ValidationError as exc:
            # A result this client cannot read (a newer server, a damaged record) is that
            # server's error; the other servers' answers still count.
            raise _Failure("error", f"unreadable reply: {exc}") from None

    async def _each(
        self, servers: Sequence[Address], call: Callable[[Address], Awaitable[T]]
    ) -> list[T]:
        # Each call turns its own failure into a result, so one server never cancels another.
        return list(await asyncio.gather(*(call(address) for address in servers)))

    # --- operations -----------------------------------------------------------------------------

    async def hello(self) -> list[ServerInfo]:
        async def one(address: Address) -> ServerInfo:
            transport = self.security.get(address, PLAIN).describe()
            try:
                info, latency = await self._call(
                    address, protocol.Hello(client="moviedb"), protocol.HelloResult
                )
            except _Failure as exc:
                return ServerInfo(address, up=False, error=exc.message, transport=transport)
            return ServerInfo(
                address,
                True,
                info.name,
                info.server_id,
                info.movies,
                latency,
                digest=info.digest,
                tombstones=info.tombstones,
                access=info.access,
                transport=transport,
            )

        return await self._each(self.servers, one)

    async def get(self, title: str, year: int | None = None) -> list[ReadResult]:
        async def one(address: Address) -> ReadResult:
            try:
                found, latency = await self._call(
                    address, protocol.Get(title=title, year=year), protocol.GetResult
                )
            except _Failure as exc:
                status = {
                    "unreachable": ReadStatus.UNREACHABLE,
                    "lost": ReadStatus.UNREACHABLE,
                    "timeout": ReadStatus.TIMEOUT,
                }.get(exc.kind, ReadStatus.ERROR)
                return ReadResult(address, status, error=exc.message)
            status = ReadStatus.FOUND if found.copies else ReadStatus.MISSING
            return ReadResult(address, status, found.copies, latency=latency)

        return await self._each(self.servers, one)

    async def put(self, writes: Mapping[Address, Copy]) -> list[WriteResult]:
        """Write a copy to each named server concurrently; one result per server."""

        async def one(address: Address) -> WriteResult:
            try:
                result, _ = await self._call(
                    address, protocol.Put(copy=writes[address]), protocol.PutResult
                )
            except _Failure as exc:
                status = _WRITE_FAILURE.get(exc.kind, WriteStatus.ERROR)
                return WriteResult(address, status, error=exc.message)
            status = _WRITE_STATUS.get(result.status, WriteStatus.ERROR)
            return WriteResult(address, status, current=result.current)

        return await self._each(list(writes), one)

    async def put_many(
        self, address: Address, copies: Sequence[Copy], *, window: int = 128
    ) -> list[WriteResult]:
        """Write many copies to one server, pipelined (at most `window` awaiting replies)."""
        gate = asyncio.Semaphore(window)

        async def one(copy: Copy) -> WriteResult:
            async with gate:
                (result,) = await self.put({address: copy})
                return result

        return list(await asyncio.gather(*(one(c) for c in copies)))

    async def put_batch(
        self, address: Address, copies: Sequence[Copy | msgspec.Raw]
    ) -> list[WriteResult]:
        """Write up to protocol.MAX_PAGE copies to one server in one request (one commit). A
        copy may come encoded already (msgspec.Raw of its JSON): one encoding for many servers."""
        request = protocol.PutBatch(
            copies=[c if isinstance(c, msgspec.Raw) else msgspec.Raw(_encode(c)) for c in copies]
        )
        try:
            result, _ = await self._call(address, request, protocol.PutBatchResult)
        except _Failure as exc:
            status = _WRITE_FAILURE.get(exc.kind, WriteStatus.ERROR)
            return [WriteResult(address, status, error=exc.message) for _ in copies]
        return [
            WriteResult(
                address, _WRITE_STATUS.get(item.status, WriteStatus.ERROR), error=item.error
            )
            for item in result.results
        ]

    async def search(self, request: protocol.Search) -> dict[Address, protocol.SearchResult | str]:
        """Every server's hits for one search, or why it has none (an error text)."""

        async def one(address: Address) -> protocol.SearchResult | str:
            try:
                result, _ = await self._call(address, request, protocol.SearchResult)
            except _Failure as exc:
                return exc.message
            return result

        return dict(zip(self.servers, await self._each(self.servers, one), strict=True))

    async def digest(self) -> dict[Address, protocol.DigestResult | str]:
        """Every server's catalog digest and bucket digests, or why it has none (an error text)."""

        async def one(address: Address) -> protocol.DigestResult | str:
            try:
                result, _ = await self._call(address, protocol.Digest(), protocol.DigestResult)
            except _Failure as exc:
                return exc.message
            return result

        return dict(zip(self.servers, await self._each(self.servers, one), strict=True))

    async def bucket_keys(self, address: Address, bucket: int) -> dict[str, str]:
        """key -> rev of everything one server stores in one bucket (every page)."""
        entries: dict[str, str] = {}
        after: str | None = None
        while True:
            try:
                page, _ = await self._call(
                    address, protocol.Keys(bucket=bucket, after=after), protocol.KeysResult
                )
            except _Failure as exc:
                raise ServerUnavailable(f"{address}: {exc.message}") from None
            entries.update(page.entries)
            if page.next is None:
                return entries
            after = page.next

    async def fetch(self, address: Address, keys: Sequence[str]) -> list[Copy]:
        """The copies one server stores for these keys (tombstones included)."""
        copies: list[Copy] = []
        for start in range(0, len(keys), protocol.MAX_PAGE):
            chunk = list(keys[start : start + protocol.MAX_PAGE])
            try:
                found, _ = await self._call(address, protocol.Fetch(keys=chunk), protocol.GetResult)
            except _Failure as exc:
                raise ServerUnavailable(f"{address}: {exc.message}") from None
            copies.extend(found.copies)
        return copies

    async def purge(self, address: Address, key: str, rev: str, *, min_age: float = 0.0) -> bool:
        """Remove a tombstone from one server if it still stores that revision and has held it
        for `min_age` seconds (by the server's clock); True if gone."""
        request = protocol.Purge(key=key, rev=rev, min_age=min_age)
        try:
            result, _ = await self._call(address, request, protocol.PurgeResult)
        except _Failure as exc:
            raise ServerUnavailable(f"{address}: {exc.message}") from None
        return result.status == "purged"

    async def stats(self, address: Address) -> protocol.StatsResult:
        try:
            result, _ = await self._call(address, protocol.Stats(), protocol.StatsResult)
        except _Failure as exc:
            raise ServerUnavailable(f"{address}: {exc.message}") from None
        return result

    async def list_page(
        self, address: Address, after: str | None, limit: int = 500, *, tombstones: bool = False
    ) -> protocol.ListResult:
        """One page of one server's catalog; raises ServerUnavailable when it cannot be had."""
        request = protocol.ListPage(after=after, limit=limit, tombstones=tombstones)
        try:
            page, _ = await self._call(address, request, protocol.ListResult)
        except _Failure as exc:
            raise ServerUnavailable(f"{address}: {exc.message}") from None
        return page

    async def scan(
        self, address: Address, page_size: int = 500, *, tombstones: bool = False
    ) -> AsyncIterator[Copy]:
        """Every copy one server stores (tombstones included; only them with `tombstones`), in
        key order, page by page."""
        after: str | None = None
        while True:
            page = await self.list_page(address, after, page_size, tombstones=tombstones)
            for copy in page.copies:
                yield copy
            if page.next is None:
                return
            after = page.next
