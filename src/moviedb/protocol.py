"""The wire protocol: newline-delimited JSON requests and replies, and line framing (pure: no I/O).

One request object per line, one reply per line, replies in request order. Every error reply has
the same shape: `{"id": ..., "ok": false, "error": {"code": ..., "message": ...}}`.
See docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final, TypeVar

import msgspec

from moviedb.versions import Copy

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_LINE: Final = 1 << 20  # 1 MiB
MAX_PAGE: Final = 1000

RequestId = int | str | None
T = TypeVar("T")

# Stable error codes (documented in docs/protocol.md).
BAD_JSON: Final = "bad_json"
BAD_REQUEST: Final = "bad_request"
UNKNOWN_OP: Final = "unknown_op"
LINE_TOO_LONG: Final = "line_too_long"
INVALID_MOVIE: Final = "invalid_movie"
TOO_MANY_CONNECTIONS: Final = "too_many_connections"
SHUTTING_DOWN: Final = "shutting_down"
STORAGE_ERROR: Final = "storage_error"
INTERNAL: Final = "internal"
UNAUTHORIZED: Final = "unauthorized"
FORBIDDEN: Final = "forbidden"
LINE_TIMEOUT: Final = "line_timeout"
ERROR_CODES: Final = (
    BAD_JSON,
    BAD_REQUEST,
    UNKNOWN_OP,
    LINE_TOO_LONG,
    INVALID_MOVIE,
    TOO_MANY_CONNECTIONS,
    SHUTTING_DOWN,
    STORAGE_ERROR,
    INTERNAL,
    UNAUTHORIZED,
    FORBIDDEN,
    LINE_TIMEOUT,
)


# --- requests ---------------------------------------------------------------------------------


class Request(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    id: RequestId = None


class Hello(Request, tag="hello"):
    client: str | None = None
    token: str | None = None  # required first on a server started with --token-file


class Get(Request, tag="get"):
    title: str
    year: int | None = None


class Put(Request, tag="put"):
    copy: Copy


class PutBatch(Request, tag="put_batch"):
    """Conditional writes of up to MAX_PAGE copies, committed together (bulk import)."""

    copies: list[msgspec.Raw]  # each checked on its own: one bad copy does not refuse the rest


class ListPage(Request, tag="list"):
    after: str | None = None
    limit: int = 500
    tombstones: bool = False  # only the tombstones (deleted movies)


class Digest(Request, tag="digest"):
    """The catalog digest and every bucket's digest (see digests.py)."""


class Keys(Request, tag="keys"):
    """The keys and revisions stored in one bucket, paged in key order."""

    bucket: int
    after: str | None = None
    limit: int = MAX_PAGE


class Fetch(Request, tag="fetch"):
    """The stored copies (tombstones included) of the given keys."""

    keys: list[str]


class Purge(Request, tag="purge"):
    """Remove a tombstone, only if it is still the stored copy with this revision."""

    key: str
    rev: str
    min_age: float = 0.0  # seconds since this server stored it, by the server's own clock


class Search(Request, tag="search"):
    """Movies whose title matches `query` (words, prefixes, typos), filtered, best first."""

    query: str = ""
    year: int | None = None
    director: str | None = None  # folded like titles; matches any word sequence of the name
    genre: str | None = None  # one of the movie's genres, compared folded
    min_rating: float | None = None
    limit: int = 20  # 1 to MAX_PAGE
    offset: int = 0  # for the next page: the number of hits already shown


class Stats(Request, tag="stats"):
    """What the server has served: requests per op, bytes, writes and commits."""


AnyRequest = (
    Hello | Get | Put | PutBatch | ListPage | Digest | Keys | Fetch | Purge | Search | Stats
)
_REQUEST_TYPES: Final = (
    Hello,
    Get,
    Put,
    PutBatch,
    ListPage,
    Digest,
    Keys,
    Fetch,
    Purge,
    Search,
    Stats,
)
OPS: Final = tuple(sorted(str(t.__struct_config__.tag) for t in _REQUEST_TYPES))
WRITE_OPS: Final = (
    Put,
    PutBatch,
    Purge,
)  # acknowledged after their commit; later reads wait for them


# --- results (the `result` member of a successful reply) -----------------------------------------


class HelloResult(msgspec.Struct):
    protocol: int
    name: str
    server_id: str
    movies: int
    software: str
    digest: str = ""  # the catalog digest: equal on servers that hold the same versions
    tombstones: int = 0  # deleted movies still stored (see purge)
    access: str = "read-write"  # what this connection may do: "read-write" or "read-only"


class DigestResult(msgspec.Struct):
    digest: str  # XOR of every bucket digest, 16 hex digits
    entries: int  # stored copies, tombstones included
    tombstones: int  # of which deleted
    buckets: list[str]  # digests.BUCKETS digests, 16 hex digits each, in bucket order


class KeysResult(msgspec.Struct):
    entries: list[tuple[str, str]]  # (key, rev), in key order
    next: str | None  # pass as `after` for the next page; null on the last page


class PurgeResult(msgspec.Struct, omit_defaults=True):
    status: str  # "purged", or "kept" when the stored copy is not that tombstone
    current: Copy | None = None  # the stored copy when kept (null when there is none)


class SearchHit(msgspec.Struct):
    score: float  # 0-100, higher is a better match; comparable between servers
    copy: Copy  # live copies only


class SearchResult(msgspec.Struct):
    hits: list[SearchHit]
    more: bool  # further hits exist past offset + limit


class StatsResult(msgspec.Struct):
    requests: dict[str, int]  # requests answered per op since start
    bytes_in: int
    bytes_out: int
    connections: int  # open now
    writes: int  # puts and purges committed
    commits: int  # transactions they were grouped in


class GetResult(msgspec.Struct):
    copies: list[Copy]


class PutResult(msgspec.Struct, omit_defaults=True):
    status: str  # a versions.Decision value: applied, same, stale, conflict
    current: Copy | None = None  # the stored copy, returned with stale and conflict


class BatchItem(msgspec.Struct, omit_defaults=True):
    status: str  # applied, same, stale, conflict, or invalid (then `error` says why)
    error: str | None = None


class PutBatchResult(msgspec.Struct):
    results: list[BatchItem]  # one per copy, in order


class ListResult(msgspec.Struct):
    copies: list[Copy]
    next: str | None  # pass as `after` for the next page; null on the last page


class ErrorBody(msgspec.Struct):
    code: str
    message: str


class Reply(msgspec.Struct, omit_defaults=True):
    ok: bool
    id: RequestId = None
    result: Any = None
    error: ErrorBody | None = None


class RawReply(msgspec.Struct):
    """A reply whose result is left undecoded until the caller knows its type."""

    ok: bool
    id: RequestId = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: ErrorBody | None = None


class RequestError(Exception):
    """A peer's request that cannot be served; carries the code, message and the echoed id."""

    def __init__(self, code: str, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


_request_decoder: Final = msgspec.json.Decoder(AnyRequest)
_id_decoder: Final = msgspec.json.Decoder(dict[str, Any])
_encoder: Final = msgspec.json.Encoder()
_raw_reply_decoder: Final = msgspec.json.Decoder(RawReply)


def _usable_id(value: object) -> RequestId:
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def decode_request(line: bytes) -> AnyRequest:
    """Parse one line into a request, or raise RequestError saying what was wrong."""
    # msgspec reports invalid UTF-8 inside a string and deep nesting with these exceptions, not
    # as a DecodeError; both are the peer's mistake, so they become `bad_json` here.
    try:
        return _decode_request(line)
    except UnicodeDecodeError as exc:
        message = f"not a JSON object on one UTF-8 line: invalid UTF-8 ({exc.reason})"
        raise RequestError(BAD_JSON, message) from None
    except RecursionError:
        message = "not a JSON object on one UTF-8 line: nested too deeply"
        raise RequestError(BAD_JSON, message) from None


def _decode_request(line: bytes) -> AnyRequest:
    try:
        request: AnyRequest = _request_decoder.decode(line)
    except msgspec.ValidationError as exc:
        invalid = exc
    except msgspec.DecodeError as exc:
        raise RequestError(BAD_JSON, f"not a JSON object on one UTF-8 line: {exc}") from None
    else:
        return request
    # msgspec validates while it parses: the line may be malformed after the invalid member
    # (`{"op":"zap"` stops at the op), and then it is not JSON at all.
    try:
        members = _id_decoder.decode(line)
    except msgspec.ValidationError:
        members = {}  # JSON, but not an object, or holding a number out of range
    except msgspec.DecodeError as exc:
        raise RequestError(BAD_JSON, f"not a JSON object on one UTF-8 line: {exc}") from None
    request_id = _usable_id(members.get("id"))
    text = str(invalid)
    if text.endswith("`$.op`") and text.startswith("Invalid value"):
        op = members.get("op")
        shown = (
            repr(op) if isinstance(op, str) else text[len("Invalid value ") : -len(" - at `$.op`")]
        )
        raise RequestError(
            UNKNOWN_OP, f"unknown op {shown}; accepted: {', '.join(OPS)}", request_id
        ) from None
    if "missing required field `op`" in text:
        text = f"every request needs an op; accepted: {', '.join(OPS)}"
    raise RequestError(BAD_REQUEST, text, request_id) from None


_get_decoder: Final = msgspec.json.Decoder(Get)


def decode_get(line: bytes) -> Get | None:
    """The line as a `get`, or None when it is anything else (valid or not): the server's
    shortcut for its busiest request, which falls back to decode_request for the rest."""
    try:
        return _get_decoder.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def encode_request(request: AnyRequest) -> bytes:
    return _encoder.encode(request) + b"\n"


def encode_ok(request_id: RequestId, result: object) -> bytes:
    return _encoder.encode(Reply(ok=True, id=request_id, result=result)) + b"\n"


def encode_error(request_id: RequestId, code: str, message: str) -> bytes:
    return _encoder.encode(Reply(ok=False, id=request_id, error=ErrorBody(code, message))) + b"\n"


def decode_reply(line: bytes) -> RawReply:
    return _raw_reply_decoder.decode(line)


def decode_result(raw: msgspec.Raw, kind: type[T]) -> T:
    return msgspec.json.decode(raw, type=kind)


def token_lines(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """A token file (the server's and a client's): each line's number, token and the words
    after it; blank lines and `#` comments skipped."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            token, *rest = line.split()
            yield number, token, rest


def is_loopback(host: str) -> bool:
    """Whether `host` keeps traffic on this machine (127.0.0.0/8, ::1, localhost): where a
    server may listen without a token, and a client may send one without TLS."""
    if host == "localhost":
        return True
    import ipaddress  # here: most commands never ask (see launcher.py)

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve to anything


# --- framing ------------------------------------------------------------------------------------


class LineTooLong(Exception):
    """A line broke the limit; `before` holds the complete lines that came ahead of it."""

    def __init__(self, limit: int, before: list[bytes] | None = None) -> None:
        super().__init__(f"line longer than {limit} bytes; the limit is {limit} bytes")
        self.limit = limit
        self.before = before or []


class LineFramer:
    """Splits a byte stream into lines and enforces the line limit; fed by whoever owns I/O."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, limit: int = DEFAULT_MAX_LINE) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines (without their newline) from what has arrived so far."""
        if not self._buffer and data.endswith(b"\n") and len(data) <= self._limit:
            # The common case: whole lines, none of them near the limit; no copies.
            return [
                line[:-1] if line.endswith(b"\r") else line
                for line in data.split(b"\n")[:-1]
                if line and not line.isspace()
            ]
        self._buffer += data
        if b"\n" not in data:
            if len(self._buffer) > self._limit:
                raise LineTooLong(self._limit)
            return []
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        complete: list[bytes] = []
        for line in lines:
            if len(line) > self._limit:
                raise LineTooLong(self._limit, complete)
            if line.strip():
                complete.append(bytes(line.rstrip(b"\r")))
        if len(rest) > self._limit:
            raise LineTooLong(self._limit, complete)
        return complete

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line; at end of stream these are a truncated request."""
        return len(self._buffer)
