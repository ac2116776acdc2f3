"""Request handling, apart from the asyncio glue: a table `request type -> handler`.

A handler returns the encoded reply line, or an awaitable of it for writes (which wait for
their commit). Peer mistakes raise RequestError; anything else is a bug, reported as `internal`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from moviedb import digests, protocol
from moviedb.errors import InvalidMovie
from moviedb.model import MAX_RECORD_BYTES, check_size, key_of, validate
from moviedb.protocol import (
    Digest,
    Fetch,
    Get,
    Hello,
    Keys,
    ListPage,
    Purge,
    Put,
    PutBatch,
    RequestError,
    Search,
    Stats,
)
from moviedb.server import search
from moviedb.server.auth import Access
from moviedb.server.cache import GetCache
from moviedb.server.storage import (
    Applied,
    Outcome,
    Purged,
    PurgeTombstone,
    StorageError,
    Store,
)
from moviedb.server.writer import GroupCommitter
from moviedb.versions import HISTORY_LIMIT, Copy

_REV: Final = re.compile(r"[1-9][0-9]{0,9}-[0-9a-f]{16}")

log = logging.getLogger("moviedb.server")


@functools.cache
def software() -> str:
    """`moviedb VERSION` (importlib.metadata costs 10 ms at import: asked at the first hello)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"moviedb {version('moviedb')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "moviedb (source)"


class RawCopies(msgspec.Struct):
    copies: list[msgspec.Raw]


class RawPage(msgspec.Struct):
    copies: list[msgspec.Raw]
    next: str | None


@dataclass
class ServerState:
    """What the handlers need: the read connection, the writer, and who this server is."""

    name: str
    store: Store
    committer: GroupCommitter
    server_id: str
    counters: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    connections: Callable[[], int] = lambda: 0
    max_record: int = MAX_RECORD_BYTES  # bytes of a record's JSON (--max-record)
    get_cache: GetCache = field(default_factory=GetCache)


Reply = bytes | Awaitable[bytes]


def handle_hello(state: ServerState, request: Hello, access: Access = Access.READ_WRITE) -> Reply:
    result = protocol.HelloResult(
        protocol=protocol.PROTOCOL_VERSION,
        name=state.name,
        server_id=state.server_id,
        movies=state.committer.live_count,
        software=software(),
        digest=digests.to_hex(state.committer.digest),
        tombstones=state.committer.entries - state.committer.live_count,
        access=access.value,
    )
    return protocol.encode_ok(request.id, result)


def handle_digest(state: ServerState, request: Digest) -> Reply:
    committer = state.committer
    result = protocol.DigestResult(
        digest=digests.to_hex(committer.digest),
        entries=committer.entries,
        tombstones=committer.entries - committer.live_count,
        buckets=[digests.to_hex(d) for d in committer.buckets],
    )
    return protocol.encode_ok(request.id, result)


def handle_keys(state: ServerState, request: Keys) -> Reply:
    if not 0 <= request.bucket < digests.BUCKETS:
        raise RequestError(
            protocol.BAD_REQUEST, f"bucket must be 0 to {digests.BUCKETS - 1}", request.id
        )
    _check_limit(request.limit, request.id)
    entries, next_key = state.store.bucket_keys(request.bucket, request.after, request.limit)
    return protocol.encode_ok(request.id, protocol.KeysResult(entries, next_key))


def handle_fetch(state: ServerState, request: Fetch) -> Reply:
    if len(request.keys) > protocol.MAX_PAGE:
        raise RequestError(
            protocol.BAD_REQUEST, f"fetch takes at most {protocol.MAX_PAGE} keys", request.id
        )
    docs = state.store.fetch_raw(request.keys)
    return protocol.encode_ok(request.id, RawCopies([msgspec.Raw(d) for d in docs]))


def handle_purge(state: ServerState, request: Purge) -> Reply:
    if not _REV.fullmatch(request.rev):
        raise RequestError(protocol.BAD_REQUEST, "rev must look like N-<16 hex>", request.id)
    if not 0 <= request.min_age < float("inf"):
        raise RequestError(protocol.BAD_REQUEST, "min_age must be 0 or more seconds", request.id)
    return _write(state, PurgeTombstone(request.key, request.rev, request.min_age), request.id)


def handle_stats(state: ServerState, request: Stats) -> Reply:
    result = protocol.StatsResult(
        requests=dict(state.counters),
        bytes_in=state.bytes_in,
        bytes_out=state.bytes_out,
        connections=state.connections(),
        writes=state.committer.writes,
        commits=state.committer.commits,
    )
    return protocol.encode_ok(request.id, result)


def _check_limit(limit: int, request_id: protocol.RequestId) -> None:
    if not 1 <= limit <= protocol.MAX_PAGE:
        raise RequestError(
            protocol.BAD_REQUEST, f"limit must be 1 to {protocol.MAX_PAGE}", request_id
        )


def handle_get(state: ServerState, request: Get) -> Reply:
    title, year, cache = request.title, request.year, state.get_cache
    result = cache.get(title, year)
    if result is None:  # checked only on a miss: what is cached passed the check
        if not title or title.isspace():
            raise RequestError(protocol.BAD_REQUEST, "title must not be empty", request.id)
        docs = state.store.get_raw(title, year)
        result = _encode(RawCopies([msgspec.Raw(d) for d in docs]))
        cache.put(title, year, result)
    return _get_reply(request.id, result)


def cached_get(state: ServerState, request: Get) -> bytes | None:
    """The reply to a `get` whose result is cached, counted as dispatch counts it; None on a
    miss (then dispatch answers it)."""
    cache = state.get_cache
    result = cache.peek(request.title, request.year)
    if result is None:
        return None
    cache.hits += 1
    counters = state.counters
    counters["get"] = counters.get("get", 0) + 1
    return _get_reply(request.id, result)


def _get_reply(request_id: protocol.RequestId, result: bytes) -> bytes:
    # encode_ok's bytes, without encoding the envelope around the cached result each time.
    if request_id is None:
        return b'{"ok":true,"result":' + result + b"}\n"
    return b'{"ok":true,"id":' + _encode(request_id) + b',"result":' + result + b"}\n"


def handle_list(state: ServerState, request: ListPage) -> Reply:
    _check_limit(request.limit, request.id)
    docs, next_key = state.store.list_raw(
        request.after, request.limit, tombstones=request.tombstones
    )
    return protocol.encode_ok(request.id, RawPage([msgspec.Raw(d) for d in docs], next_key))


def check_copy(copy: Copy, max_record: int = MAX_RECORD_BYTES) -> None:
    """Refuse a copy whose record is invalid or whose version fields are malformed."""
    try:
        movie = validate(copy.movie)
        if max_record < MAX_RECORD_BYTES:
            check_size(movie, max_record)
    except InvalidMovie as exc:
        raise RequestError(protocol.INVALID_MOVIE, str(exc)) from None
    # Struct equality compares `extra` as dicts, blind to their order; sorted is the normal form.
    if movie != copy.movie or list(movie.extra) != list(copy.movie.extra):
        raise RequestError(
            protocol.INVALID_MOVIE,
            "the record is not in normal form (untrimmed text, empty list items or unsorted "
            "extra fields); send what model.validate returns",
        )
    if copy.key != key_of(movie):
        raise RequestError(
            protocol.BAD_REQUEST, f"key {copy.key!r} does not match the title and year"
        )
    if not _REV.fullmatch(copy.rev) or not all(_REV.fullmatch(r) for r in copy.history):
        raise RequestError(
            protocol.BAD_REQUEST, "rev and history entries must look like N-<16 hex>"
        )
    if len(copy.history) > HISTORY_LIMIT:
        raise RequestError(protocol.BAD_REQUEST, f"history holds at most {HISTORY_LIMIT} entries")


_decode_copy: Final = msgspec.json.Decoder(Copy).decode
_encode: Final = msgspec.json.Encoder().encode


def handle_put_batch(state: ServerState, request: PutBatch) -> Reply:
    if len(request.copies) > protocol.MAX_PAGE:
        raise RequestError(
            protocol.BAD_REQUEST, f"put_batch takes at most {protocol.MAX_PAGE} copies", request.id
        )
    checked: list[Copy | str] = []
    for raw in request.copies:
        try:
            copy = _decode_copy(raw)
            check_copy(copy, state.max_record)
        except msgspec.ValidationError as exc:
            checked.append(f"bad copy: {exc}")
        except RequestError as exc:
            checked.append(f"{exc.code}: {exc.message}")
        else:
            checked.append(copy)
    # Queued together (and now, see handle_purge), the writes reach the writer together.
    futures = [state.committer.submit(c) for c in checked if not isinstance(c, str)]
    return _put_batch(request, checked, futures)


async def _put_batch(
    request: PutBatch, checked: list[Copy | str], futures: list[asyncio.Future[Outcome]]
) -> bytes:
    try:
        outcomes = iter(await asyncio.gather(*futures))
    except StorageError as exc:
        return protocol.encode_error(request.id, protocol.STORAGE_ERROR, str(exc))
    items: list[protocol.BatchItem] = []
    for entry in checked:
        if isinstance(entry, str):
            items.append(protocol.BatchItem("invalid", entry))
        else:
            outcome = next(outcomes)
            assert isinstance(outcome, Applied)
            items.append(protocol.BatchItem(outcome.decision.value))
    return protocol.encode_ok(request.id, protocol.PutBatchResult(items))


def handle_put(state: ServerState, request: Put) -> Reply:
    try:
        check_copy(request.copy, state.max_record)
    except RequestError as exc:
        exc.request_id = request.id
        raise
    return _write(state, request.copy, request.id)


def _write(
    state: ServerState, write: Copy | PurgeTombstone, request_id: protocol.RequestId
) -> Reply:
    """Queue a write for the writer now, as its request is read (never later from a task: a
    connection's writes must reach the writer in the order they were sent); the writer's
    delivery answers it (see submit_then), with no task and no turn of the loop per write."""
    reply: asyncio.Future[bytes] = state.committer.loop.create_future()
    state.committer.submit_then(write, functools.partial(_answer_write, reply, request_id))
    return reply


def _answer_write(
    reply: asyncio.Future[bytes], request_id: protocol.RequestId, outcome: Outcome | Exception
) -> None:
    if isinstance(outcome, Applied):
        result = protocol.PutResult(status=outcome.decision.value, current=outcome.current)
        answer = protocol.encode_ok(request_id, result)
    elif isinstance(outcome, Purged):
        status = "purged" if outcome.purged else "kept"
        answer = protocol.encode_ok(request_id, protocol.PurgeResult(status, outcome.current))
    elif isinstance(outcome, StorageError):
        answer = protocol.encode_error(request_id, protocol.STORAGE_ERROR, str(outcome))
    else:  # an exception the commit raised
        log.error("a write failed: %r", outcome, exc_info=outcome)
        answer = protocol.encode_error(request_id, protocol.INTERNAL, "internal error; see log")
    if not reply.done():
        reply.set_result(answer)


def handle_search(state: ServerState, request: Search) -> Reply:
    search.check(request)
    return _search(state, request)


async def _search(state: ServerState, request: Search) -> bytes:
    # Tens of milliseconds on a large catalog: a worker thread (with its own connection) runs
    # it, so that the event loop goes on serving other requests meanwhile.
    live = state.committer.live_count
    return await asyncio.to_thread(search.answer, state.store, live, request)


HANDLERS: Final[dict[type[Any], Callable[[ServerState, Any], Reply]]] = {
    Hello: handle_hello,
    Get: handle_get,
    ListPage: handle_list,
    Put: handle_put,
    PutBatch: handle_put_batch,
    Digest: handle_digest,
    Keys: handle_keys,
    Fetch: handle_fetch,
    Purge: handle_purge,
    Search: handle_search,
    Stats: handle_stats,
}


_OP_NAMES: Final = {kind: str(kind.__struct_config__.tag) for kind in HANDLERS}


def dispatch(
    state: ServerState, request: protocol.AnyRequest, access: Access = Access.READ_WRITE
) -> Reply:
    """Answer a request of a connection that was granted `access` (see auth.py)."""
    kind = type(request)
    op = _OP_NAMES[kind]
    counters = state.counters
    counters[op] = counters.get(op, 0) + 1
    if kind is Hello:
        return handle_hello(state, request, access)  # type: ignore[arg-type]
    if access is Access.READ_ONLY and isinstance(request, protocol.WRITE_OPS):
        raise RequestError(
            protocol.FORBIDDEN,
            f"{op} is a write and this connection's token is read-only; "
            "writes need a read-write token",
            request.id,
        )
    return HANDLERS[type(request)](state, request)
