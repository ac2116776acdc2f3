"""Faults at the wire, the limits and the disk, against real servers on loopback.

A hundred thousand malformed lines, oversized and slow lines, too many connections, a database at
its size quota and a filesystem that is full, Unicode and size edges. Every test prints what it
measured through the `figure` fixture and asserts on it. Servers are `moviedb-server`
subprocesses (a crash shows as a dead process); every wait is on a condition under a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import random
import socket
import sqlite3
import subprocess
import time
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.processes import memory_kib
from moviedb import digests, protocol
from moviedb.errors import InvalidMovie
from moviedb.model import (
    MAX_RECORD_BYTES,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    Movie,
    check_size,
    key_of,
    record_size,
    validate,
)
from moviedb.server.__main__ import REQUEST_OVERHEAD
from moviedb.versions import HISTORY_LIMIT, Copy, child, first_copy
from tests.conftest import ServerProcess, StartServers
from tests.test_server import Client, connect, make, start_one

pytestmark = pytest.mark.fault

HOST = "127.0.0.1"
TIMEOUT = 30.0  # an overall bound for each exchange; never a pause
P99_BOUND = 0.200  # seconds: what a well-behaved client may wait, at the 99th percentile
KEPT = frozenset(
    {protocol.BAD_JSON, protocol.BAD_REQUEST, protocol.UNKNOWN_OP, protocol.INVALID_MOVIE}
)

Json = dict[str, Any]
RequestId = int | str | None
Malformed = tuple[bytes, RequestId, bool]  # a line, the id in it, whether the reply must echo it

_encode = msgspec.json.Encoder().encode


# --- records, lines and replies ------------------------------------------------------------------


def line_of(message: object) -> bytes:
    return _encode(message) + b"\n"


def put_line(copy: Copy, request_id: RequestId) -> bytes:
    return line_of({"op": "put", "id": request_id, "copy": copy})


def get_line(title: str, year: int | None, request_id: RequestId) -> bytes:
    return line_of({"op": "get", "id": request_id, "title": title, "year": year})


def found_line(copies: Sequence[Copy], request_id: RequestId) -> bytes:
    """The exact reply line of a get that finds these copies (the server sends stored JSON)."""
    docs = b",".join(_encode(copy) for copy in copies)
    return b'{"ok":true,"id":' + _encode(request_id) + b',"result":{"copies":[' + docs + b"]}}\n"


def error_code(reply: Json, request_id: RequestId = None, *, echo: bool = True) -> str:
    """Every error reply has one shape; returns its code. `echo`: the id must come back."""
    assert reply.get("ok") is False, reply
    assert set(reply) <= {"ok", "id", "error"}, reply
    if echo:
        assert reply.get("id") == request_id, reply
    else:
        assert reply.get("id") in (None, request_id), reply
    error = reply["error"]
    assert set(error) == {"code", "message"}, reply
    assert error["code"] in protocol.ERROR_CODES, reply
    assert isinstance(error["message"], str), reply
    assert error["message"].strip(), reply
    return str(error["code"])


def p99(latencies: Sequence[float]) -> float:
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- clients --------------------------------------------------------------------------------------


class Wire(Client):
    """tests/test_server.py's Client, which also hands over a reply line as the server sent it,
    and sends requests already encoded (the exact bytes a test means to send)."""

    async def line(self) -> bytes:
        line = await self.reader.readline()
        assert line.endswith(b"\n"), f"the server closed the connection instead: {line[:200]!r}"
        return line

    async def request(self, message: Json | bytes) -> Json:
        self.send(message)
        return await self.reply()


@contextlib.asynccontextmanager
async def wire(port: int) -> AsyncIterator[Wire]:
    async with connect(port) as client:
        yield Wire(client.reader, client.writer)


class Probe(asyncio.Protocol):
    """A raw connection that records what the server sends and when it closes (a reset too)."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.first_line: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[float] = loop.create_future()
        self.first_byte_at = time.monotonic()  # until a byte is sent: when it connected
        self.sent = False
        self.reset = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.data += data
        if b"\n" in data and not self.first_line.done():
            self.first_line.set_result(bytes(self.data[: self.data.index(b"\n") + 1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reset = exc is not None
        if not self.first_line.done():
            self.first_line.set_result(bytes(self.data))
        self.closed.set_result(time.monotonic())

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if not self.sent:
            self.sent = True
            self.first_byte_at = time.monotonic()
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def replies(self) -> list[Json]:
        return [json.loads(line) for line in bytes(self.data).splitlines() if line.strip()]


async def open_probe(port: int) -> Probe:
    loop = asyncio.get_running_loop()
    connecting = time.monotonic()
    _, probe = await loop.create_connection(Probe, HOST, port)
    probe.first_byte_at = connecting  # no later than the server's start of this connection
    return probe


async def open_probes(port: int, count: int) -> list[Probe]:
    """Many connections at once."""
    return list(await asyncio.gather(*(open_probe(port) for _ in range(count))))


class SteadyClient:
    """A well-behaved client on its own connection while others misbehave: gets of a stored
    movie, with a put of a new movie every tenth request, each timed and its reply checked
    byte for byte. Paced, so that it measures the server and does not load it. The bound is on
    the gets; a put also waits for its commit's fsync, which the disk decides."""

    PACE = 0.003  # seconds between requests: a steady rate, not a wait for anything

    def __init__(self, port: int, tag: str) -> None:
        self.port = port
        self.tag = tag
        self.gets: list[float] = []  # seconds each get took
        self.puts: list[float] = []
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._wire: Wire | None = None
        self._connection = contextlib.AsyncExitStack()

    async def __aenter__(self) -> SteadyClient:
        self._wire = await self._connection.enter_async_context(wire(self.port))
        self.reference = make(f"Steady {self.tag}", 1999)
        reply = await self._wire.request(put_line(self.reference, "ref"))
        assert reply["ok"], reply
        self._task = asyncio.create_task(self._run(self._wire))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
        await self._connection.aclose()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def request(self, data: bytes) -> Json:
        """One more request on the steady connection (after stop())."""
        assert self._wire is not None
        async with asyncio.timeout(TIMEOUT):
            return await self._wire.request(data)

    async def _run(self, connection: Wire) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            if n % 10 == 0:
                line = put_line(make(f"Steady {self.tag} {n}", 2001), n)
                expected = b'{"ok":true,"id":%d,"result":{"status":"applied"}}\n' % n
                timings = self.puts
            else:
                line = get_line(self.reference.movie.title, 1999, n)
                expected = found_line([self.reference], n)
                timings = self.gets
            started = time.perf_counter()
            try:
                async with asyncio.timeout(TIMEOUT):
                    connection.send(line)
                    answer = await connection.line()
            except (TimeoutError, ConnectionError, AssertionError) as exc:
                self.failures.append(f"request {n}: {exc!r}")
                return
            timings.append(time.perf_counter() - started)
            if answer != expected:
                self.failures.append(f"request {n}: {answer[:300]!r}")
            await asyncio.sleep(self.PACE)

    def summary(self) -> str:
        ok = "all ok" if not self.failures else f"{len(self.failures)} FAILED"
        slowest_put = ms(max(self.puts)) if self.puts else "-"
        return (
            f"a normal client's {len(self.gets):,} gets and {len(self.puts)} puts {ok}, "
            f"get p99 {ms(p99(self.gets))}, slowest put {slowest_put}"
        )

    def check(self, minimum: int = 50) -> None:
        assert not self.failures, self.failures[:5]
        assert len(self.gets) >= minimum, f"only {len(self.gets)} normal gets ran"
        assert p99(self.gets) < P99_BOUND, self.summary()


def assert_alive(server: ServerProcess) -> None:
    assert server.proc is not None
    assert server.proc.poll() is None, f"the server died: {server.log.read_text()[-3000:]}"


def server_log_problems(server: ServerProcess) -> list[str]:
    text = server.log.read_text(errors="replace")
    return [row for row in text.splitlines() if "Traceback" in row or " ERROR " in row]


# --- 1. malformed input ---------------------------------------------------------------------------

_TITLES = ["Alien", "Amélie", "千と千尋の神隠し", "Брат", "🎬 Night", "Heat"]
_BAD_UTF8 = [
    b"\xff",
    b"\xfe\xfe",
    b"\x80",
    b"\xc3",
    b"\xc3(",
    b"\xe2\x82",
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",  # overlong, three bytes
    b"\xed\xa0\x80",  # a UTF-16 surrogate, encoded
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # five bytes
]
_BAD_NUMBERS = [
    b"NaN",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"inf",
    b"+1",
    b"01",
    b"1.",
    b".5",
    b"1e",
    b"0x10",
    b"-",
    b"1_000",
    "∞".encode(),
]
_NUMBER_MARK = 987654321987  # replaced in the encoded text by something that is not JSON
_HEX = "0123456789abcdef"


def _rev(rng: random.Random, generation: int = 1) -> str:
    return f"{generation}-{''.join(rng.choice(_HEX) for _ in range(16))}"


def _movie_dict(rng: random.Random, title: str | None = None) -> Json:
    movie: Json = {"title": title or rng.choice(_TITLES), "year": rng.randint(1870, 2200)}
    if rng.random() < 0.5:
        movie["director"] = "Ridley Scott"
    if rng.random() < 0.3:
        movie["rating"] = round(rng.uniform(0, 10), 1)
    return movie


def _copy_dict(rng: random.Random, movie: Json | None = None) -> Json:
    movie = movie or _movie_dict(rng)
    try:
        key = key_of(validate(Movie(title=movie["title"], year=movie.get("year"))))
    except InvalidMovie:
        key = "alien\x1f2000"
    return {"key": key, "movie": movie, "rev": _rev(rng)}


def _template(rng: random.Random, rid: RequestId, title: str = "Alien") -> Json:
    """A valid request (before it is broken)."""
    kind = rng.randrange(8)
    request: Json
    if kind == 0:
        request = {"op": "hello", "client": "fuzz"}
    elif kind == 1:
        request = {"op": "get", "title": title, "year": rng.randint(1870, 2200)}
    elif kind == 2:
        request = {"op": "list", "after": title, "limit": rng.randint(1, 1000)}
    elif kind == 3:
        request = {"op": "keys", "bucket": rng.randrange(1024), "limit": 10}
    elif kind == 4:
        request = {"op": "fetch", "keys": [f"{title}\x1f2000"]}
    elif kind == 5:
        request = {"op": "search", "query": title, "limit": 5}
    elif kind == 6:
        request = {"op": "put", "copy": _copy_dict(rng, _movie_dict(rng, title))}
    else:
        request = {"op": "purge", "key": "gone\x1f2000", "rev": _rev(rng, 2), "min_age": 1.5}
    if rid is not None:
        request["id"] = rid
    return request


def _dumps(rng: random.Random, value: object) -> bytes:
    return json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()


# Each: (base request, member, values that are wrong there).
_WRONG_TYPES: list[tuple[Json, str, list[object]]] = [
    ({"op": "get"}, "title", [42, -1, 1.5, True, None, [], ["Alien"], {}, "   ", ""]),
    ({"op": "get", "title": "Alien"}, "year", ["1979", 1979.5, 2000.0, True, [], {}, [1979]]),
    ({"op": "list"}, "limit", ["10", 1.5, True, None, [], 0, -1, 1001, 10**6]),
    ({"op": "list"}, "after", [5, 1.5, True, [], {}]),
    ({"op": "list"}, "tombstones", ["yes", 1, 0, None, []]),
    ({"op": "keys"}, "bucket", ["1", -1, 1024, 1.5, None, True]),
    ({"op": "keys", "bucket": 3}, "limit", [0, 1001, "x"]),
    ({"op": "fetch"}, "keys", ["k", [1, 2], {}, None, [None], [["k"]]]),
    ({"op": "purge", "key": "k"}, "rev", ["zzz", "1-xyz", "0-0123456789abcdef", 5, None]),
    ({"op": "purge", "rev": "2-0123456789abcdef"}, "key", [5, None, []]),
    ({"op": "purge", "key": "k", "rev": "2-0123456789abcdef"}, "min_age", [-1, "0", None, []]),
    ({"op": "search", "query": "alien"}, "limit", [0, 1001, "5", None]),
    ({"op": "search", "query": "alien"}, "offset", [-1, 10_001, "0"]),
    ({"op": "search"}, "query", [5, [], None, "", "   "]),
    ({"op": "search", "query": "alien"}, "year", ["2000", 2000.5, 1869, 2201]),
    ({"op": "search", "query": "alien"}, "min_rating", ["8", -1, 11, []]),
    ({"op": "search", "query": "alien"}, "director", [5, "  "]),
    ({"op": "hello"}, "client", [5, [], {}, True]),
    ({"op": "hello"}, "token", [5, [], True]),
    ({"op": "put"}, "copy", ["x", [], 5, None, True, {}]),
    ({"op": "put_batch"}, "copies", ["x", 5, None, {}, True]),
    ({"op": "digest"}, "buckets", [1, []]),
    ({"op": "stats"}, "verbose", [True]),
]
_MISSING: list[Json] = [
    {"op": "get"},
    {"op": "get", "year": 2000},
    {"op": "put"},
    {"op": "keys"},
    {"op": "fetch"},
    {"op": "purge", "rev": "2-0123456789abcdef"},
    {"op": "purge", "key": "k"},
    {"op": "put_batch"},
    {"op": "search"},
    {"title": "Alien"},
    {},
]
# Changes to a valid movie that make it invalid: (member, value); None removes the member.
_MOVIE_FAULTS: list[tuple[str, object]] = [
    ("title", ""),
    ("title", "   "),
    ("title", "x" * (MAX_TITLE_CHARS + 1)),
    ("title", "a\x00b"),
    ("title", " Alien "),  # not trimmed: not the normal form
    ("title", 5),
    ("title", None),
    ("year", 1869),
    ("year", 2201),
    ("year", "2000"),
    ("year", 2000.5),
    ("year", 10**30),
    ("year", -(10**30)),
    ("rating", 10.01),
    ("rating", -0.5),
    ("rating", "8"),
    ("rating", True),
    ("runtime_min", 0),
    ("runtime_min", -5),
    ("runtime_min", 100_001),
    ("runtime_min", 1.5),
    ("cast", "Sigourney Weaver"),
    ("cast", [1]),
    ("cast", ["", "Sigourney Weaver"]),  # an empty item: not the normal form
    ("cast", ["x" * 1001]),
    ("genres", {}),
    ("genres", [None]),
    ("director", 5),
    ("director", "x" * 1001),
    ("plot", "x" * (MAX_TEXT_CHARS + 1)),
    ("plot", 5),
    ("extra", {"rev": "x"}),
    ("extra", {"deleted": True}),
    ("extra", {"title": "x"}),
    ("extra", {"": "x"}),
    ("extra", {"k": [1]}),
    ("extra", {"k": {"a": 1}}),
    ("extra", {"k": None}),
    ("extra", {"b": 1, "a": 2}),  # unsorted: not the normal form
    ("extra", {f"k{i:03d}": i for i in range(101)}),
    ("extra", {"k" * 101: 1}),
    ("extra", "x"),
    ("colour", "red"),
]
_COPY_FAULTS: list[tuple[str, object]] = [
    ("key", "somebody else\x1f2000"),
    ("key", 5),
    ("rev", "1-xyz"),
    ("rev", "0-0123456789abcdef"),
    ("rev", 5),
    ("history", ["junk"]),
    ("history", [f"{n}-0123456789abcdef" for n in range(1, HISTORY_LIMIT + 2)]),
    ("history", "1-0123456789abcdef"),
    ("deleted", "yes"),
    ("written_at", "now"),
    ("colour", "red"),
    ("movie", None),
    ("movie", []),
]
_NON_OBJECTS: list[object] = [
    [],
    [1, 2],
    "hello",
    5,
    -1.5,
    True,
    False,
    None,
    [{"op": "hello"}],
    '{"op": "hello"}',
    [[[]]],
]
# Ways to break the syntax of a valid request's JSON text.
_MANGLERS: list[Callable[[bytes], bytes]] = [
    lambda t: t + b"x",
    lambda t: t + b",",
    lambda t: t + b"}",
    lambda t: t + b" {}",
    lambda t: t + b"]",
    lambda t: t + b"\rjunk",
    lambda t: b"x" + t,
    lambda t: b"\xef\xbb\xbf" + t,  # a byte order mark
    lambda t: b"/*c*/" + t,
    lambda t: t.replace(b'"', b"'"),
    lambda t: t[:-1] + b",}",
    lambda t: t.replace(b'"op"', b'"o\x01p"', 1),  # a raw control character
]
_OPS_TO_MISSPELL = [*protocol.OPS, "delete", "quit", "admin"]


class MalformedLines:
    """A seeded generator of lines that no server may accept, in every category of the issue:
    random bytes, bad JSON, wrong types, deep nesting, huge numbers, NaN and Infinity, invalid
    UTF-8, unknown ops, missing ids and fields, wrong id types, non-objects, invalid records.
    Lines never hold a newline; a few blank lines (which get no reply) are mixed in."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0
        self._makers: list[tuple[float, Callable[[RequestId], Malformed]]] = [
            (14, self.random_bytes),
            (6, self.jsonish_bytes),
            (10, self.truncated),
            (8, self.invalid_utf8),
            (7, self.bad_number),
            (10, self.wrong_type),
            (7, self.missing_field),
            (7, self.unknown_op),
            (5, self.wrong_id_type),
            (5, self.non_object),
            (12, self.invalid_record),
            (4, self.huge_number),
            (1, self.deep_nesting),
            (4, self.bad_syntax),
            (0.5, self.blank),
        ]
        self._weights = [w for w, _ in self._makers]

    def lines(self, count: int) -> list[Malformed]:
        makers = self.rng.choices([m for _, m in self._makers], self._weights, k=count)
        out: list[Malformed] = []
        for maker in makers:
            self.serial += 1
            roll = self.rng.random()
            rid: RequestId = (
                self.serial if roll < 0.6 else f"s{self.serial}" if roll < 0.8 else None
            )
            line, line_id, echo = maker(rid)
            assert b"\n" not in line
            out.append((line, line_id, echo))
        return out

    def _object(self, request: Json, rid: RequestId) -> bytes:
        if rid is not None and "id" not in request:
            request = {**request, "id": rid}
        return _dumps(self.rng, request)

    # bytes that are not JSON, or not a request

    def random_bytes(self, rid: RequestId) -> Malformed:
        size = self.rng.choice([1, 2, 3, 5, 8, 20, 100, 1000])
        data = self.rng.randbytes(self.rng.randint(1, size)).replace(b"\n", b" ")
        return (data if data.strip() else b"#" + data), None, False

    def jsonish_bytes(self, rid: RequestId) -> Malformed:
        # JSON's characters at random (without the letters of "op": never a request).
        alphabet = b'{}[]":,0123456789.eE+-truefalsnul \\'
        data = bytes(self.rng.choices(alphabet, k=self.rng.randint(1, 60)))
        return (data if data.strip() else b"{" + data), None, False

    def truncated(self, rid: RequestId) -> Malformed:
        text = _dumps(self.rng, _template(self.rng, rid, self.rng.choice(_TITLES)))
        return text[: self.rng.randrange(1, len(text))], rid, False

    def invalid_utf8(self, rid: RequestId) -> Malformed:
        text = json.dumps(_template(self.rng, rid, self.rng.choice(_TITLES)), ensure_ascii=False)
        data = text.encode()
        # Inside a string: right after one of the quotes that open a member name or a text.
        quotes = [i + 1 for i, byte in enumerate(data) if byte == ord('"')]
        at = self.rng.choice(quotes)
        return data[:at] + self.rng.choice(_BAD_UTF8) + data[at:], None, False

    def bad_number(self, rid: RequestId) -> Malformed:
        slots: list[Json] = [
            {"op": "get", "title": "Alien", "year": _NUMBER_MARK},
            {"op": "list", "limit": _NUMBER_MARK},
            {"op": "keys", "bucket": _NUMBER_MARK},
            {"op": "search", "query": "alien", "min_rating": _NUMBER_MARK},
            {"op": "put", "copy": _copy_dict(self.rng, {"title": "Alien", "rating": _NUMBER_MARK})},
            {"op": "hello", "id": _NUMBER_MARK},
        ]
        text = self._object(self.rng.choice(slots), rid)
        return text.replace(str(_NUMBER_MARK).encode(), self.rng.choice(_BAD_NUMBERS)), None, False

    # JSON objects that are not acceptable requests: the reply echoes their id

    def wrong_type(self, rid: RequestId) -> Malformed:
        base, member, values = self.rng.choice(_WRONG_TYPES)
        return self._object({**base, member: self.rng.choice(values)}, rid), rid, True

    def missing_field(self, rid: RequestId) -> Malformed:
        return self._object(self.rng.choice(_MISSING), rid), rid, True

    def unknown_op(self, rid: RequestId) -> Malformed:
        rng = self.rng
        op = rng.choice(_OPS_TO_MISSPELL)
        choice = rng.randrange(9)
        if choice == 0:
            op = op.upper()
        elif choice == 1:
            op = op.title()
        elif choice == 2:
            op = f" {op}"
        elif choice == 3:
            op = f"{op}s"
        elif choice == 4:
            op = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz_", k=rng.randint(0, 12)))
        elif choice == 5:
            op = "".join(chr(rng.randint(0x80, 0xFFFF)) for _ in range(rng.randint(1, 8)))
            op = op.encode("utf-8", "replace").decode("utf-8", "replace")
        elif choice == 6:
            op = "x" * rng.choice([1_000, 10_000])
        elif choice == 7:
            return self._object({"op": rng.choice([5, None, [], {}, True])}, rid), rid, True
        if op in protocol.OPS:
            op = f"{op}!"
        return self._object({"op": op, "title": "Alien"}, rid), rid, True

    def wrong_id_type(self, rid: RequestId) -> Malformed:
        bad_id = self.rng.choice([1.5, 1.0, -0.0, True, False, [1], {"id": 1}, [], 1e300])
        request = {**_template(self.rng, None), "id": bad_id}
        return _dumps(self.rng, request), None, True  # an id that cannot be read is not echoed

    def non_object(self, rid: RequestId) -> Malformed:
        return _dumps(self.rng, self.rng.choice(_NON_OBJECTS)), None, True

    def invalid_record(self, rid: RequestId) -> Malformed:
        copy = _copy_dict(self.rng)
        if self.rng.random() < 0.75:
            member, value = self.rng.choice(_MOVIE_FAULTS)
            movie = dict(copy["movie"])
            if value is None:
                movie.pop(member, None)
            else:
                movie[member] = value
            copy["movie"] = movie
        else:
            member, value = self.rng.choice(_COPY_FAULTS)
            copy[member] = value
        return self._object({"op": "put", "copy": copy}, rid), rid, True

    def huge_number(self, rid: RequestId) -> Malformed:
        rng = self.rng
        big = rng.choice([1, -1]) * 10 ** rng.randint(19, 400)
        choice = rng.randrange(6)
        if choice == 0:
            return self._object({"op": "list", "limit": big}, rid), rid, True
        if choice == 1:
            return self._object({"op": "keys", "bucket": big}, rid), rid, True
        if choice == 2:
            return self._object({"op": "search", "query": "a", "offset": abs(big)}, rid), rid, True
        if choice == 3:
            movie = {"title": "Alien", "year": big}
            return self._object({"op": "put", "copy": _copy_dict(rng, movie)}, rid), rid, True
        # Past what a float holds: the number itself is refused, and no id is read.
        huge = rng.choice([b"1e400", b"-1e999", b"9" * 400 + b".5e400"])
        request = {"op": "search", "query": "alien", "min_rating": _NUMBER_MARK}
        text = self._object(request, rid).replace(str(_NUMBER_MARK).encode(), huge)
        return text, rid, False

    def deep_nesting(self, rid: RequestId) -> Malformed:
        depth = self.rng.choice([50, 500, 2_000, 20_000])
        opener, closer = self.rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        nested = opener * depth + b"1" + closer * depth
        if self.rng.random() < 0.3:
            nested = nested[: len(nested) // 2]  # unbalanced too
        text = self._object({"op": "get", "title": _NUMBER_MARK}, rid)
        return text.replace(str(_NUMBER_MARK).encode(), nested), rid, False

    def bad_syntax(self, rid: RequestId) -> Malformed:
        text = _dumps(self.rng, _template(self.rng, rid))
        return self.rng.choice(_MANGLERS)(text), rid, False

    def blank(self, rid: RequestId) -> Malformed:
        return self.rng.choice([b"", b" ", b"\t", b"\r", b" \t \r"]), None, False


# Hypothesis draws its own lines, in the same categories, from its strategies.

_ids = st.none() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# (base request, member, what a correct value is): any other value is refused.
_TYPED_SLOTS: list[tuple[Json, str, Callable[[object], bool]]] = [
    ({"op": "get"}, "title", lambda v: isinstance(v, str) and bool(v.strip())),
    ({"op": "get", "title": "Alien"}, "year", lambda v: v is None or _is_int(v)),
    ({"op": "list"}, "limit", lambda v: _is_int(v) and 1 <= v <= 1000),  # type: ignore[operator]
    ({"op": "list"}, "after", lambda v: v is None or isinstance(v, str)),
    ({"op": "list"}, "tombstones", lambda v: isinstance(v, bool)),
    ({"op": "keys"}, "bucket", lambda v: _is_int(v) and 0 <= v < 1024),  # type: ignore[operator]
    ({"op": "fetch"}, "keys", lambda v: isinstance(v, list) and all(isinstance(k, str) for k in v)),
    ({"op": "hello"}, "client", lambda v: v is None or isinstance(v, str)),
    ({"op": "put"}, "copy", lambda v: isinstance(v, dict) and "rev" in v),
    (
        {"op": "purge", "key": "k", "rev": "2-0123456789abcdef"},
        "min_age",
        lambda v: (_is_int(v) or isinstance(v, float)) and 0 <= v < math.inf,  # type: ignore[operator]
    ),
]


def _encode_object(request: Json, request_id: RequestId, ascii_only: bool) -> bytes:
    if request_id is not None:
        request = {**request, "id": request_id}
    return json.dumps(request, ensure_ascii=ascii_only).encode()


@st.composite
def _wrong_typed(draw: st.DrawFn) -> tuple[bytes, RequestId]:
    base, member, correct = draw(st.sampled_from(_TYPED_SLOTS))
    value = draw(_json_values.filter(lambda v: not correct(v)))
    rid = draw(_ids)
    return _encode_object({**base, member: value}, rid, draw(st.booleans())), rid


@st.composite
def _unknown_op(draw: st.DrawFn) -> tuple[bytes, RequestId]:
    op = draw((st.text(max_size=20) | _json_scalars).filter(lambda v: v not in protocol.OPS))
    rid = draw(_ids)
    members = draw(st.dictionaries(st.text(max_size=8), _json_values, max_size=3))
    members.pop("id", None)
    return _encode_object({**members, "op": op}, rid, draw(st.booleans())), rid


@st.composite
def _invalid_movie(draw: st.DrawFn) -> tuple[bytes, RequestId]:
    movie: Json = {"title": "Alien", "year": 1979}
    fault = draw(st.integers(0, 6))
    if fault == 0:
        movie["title"] = draw(st.text(min_size=MAX_TITLE_CHARS + 1, max_size=MAX_TITLE_CHARS + 40))
    elif fault == 1:
        movie["title"] = draw(st.text(alphabet=" \t\u2003\u3000\u00a0", max_size=5))
    elif fault == 2:
        movie["year"] = draw(st.integers().filter(lambda y: not 1870 <= y <= 2200))
    elif fault == 3:
        movie["rating"] = draw(st.floats().filter(lambda r: not 0 <= r <= 10))
    elif fault == 4:
        movie["runtime_min"] = draw(st.integers().filter(lambda r: not 1 <= r <= 100_000))
    elif fault == 5:
        name = draw(st.sampled_from(["rev", "deleted", "extra", "title", "year", ""]))
        movie["extra"] = {name: draw(st.text(max_size=5))}
    else:
        value = draw(_json_values.filter(lambda v: isinstance(v, list | dict) or v is None))
        movie["extra"] = {"note": value}
    copy = {"key": "alien\x1f1979", "movie": movie, "rev": "1-0123456789abcdef"}
    rid = draw(_ids)
    return _encode_object({"op": "put", "copy": copy}, rid, draw(st.booleans())), rid


@st.composite
def _broken_text(draw: st.DrawFn) -> tuple[bytes, RequestId]:
    rid = draw(_ids)
    rng = random.Random(draw(st.integers(0, 2**32)))
    text = _encode_object(_template(rng, None, draw(st.sampled_from(_TITLES))), rid, False)
    how = draw(st.integers(0, 2))
    if how == 0:  # cut short
        return text[: draw(st.integers(1, len(text) - 1))], rid
    if how == 1:  # invalid UTF-8 inside
        at = draw(st.integers(1, len(text) - 1))
        return text[:at] + draw(st.sampled_from(_BAD_UTF8)) + text[at:], rid
    number = draw(st.sampled_from(_BAD_NUMBERS))
    return text[:-1] + b',"n":' + number + b"}", rid


_raw_bytes = (
    st.binary(min_size=1, max_size=200)
    .map(lambda b: b.replace(b"\n", b" "))
    .filter(lambda b: bool(b.strip()))
    .map(lambda b: (b, None))
)
_non_object_text = _json_values.filter(lambda v: not isinstance(v, dict)).map(
    lambda v: (json.dumps(v).encode(), None)
)
MALFORMED_LINE = st.one_of(
    _raw_bytes, _non_object_text, _wrong_typed(), _unknown_op(), _invalid_movie(), _broken_text()
)
HYPOTHESIS_EXAMPLES = 100
HYPOTHESIS_BATCH = 100


def exchange(port: int, lines: Sequence[bytes]) -> list[Json]:
    """Send lines (blocking, one connection) and return the replies that came before the reply
    to a final hello."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(line + b"\n" for line in lines) + b'{"op":"hello","id":"end"}\n')
        replies: list[Json] = []
        buffer = b""
        while True:
            chunk = sock.recv(1 << 16)
            assert chunk, f"the server closed the connection after {len(replies)} replies"
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                reply = json.loads(raw)
                if reply.get("id") == "end" and reply.get("ok"):
                    return replies
                replies.append(reply)


def hypothesis_part(port: int) -> Counter[str]:
    """Batches of malformed lines drawn by hypothesis; a failure shrinks to the smallest."""
    codes: Counter[str] = Counter()

    @settings(
        max_examples=HYPOTHESIS_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(MALFORMED_LINE, min_size=HYPOTHESIS_BATCH // 2, max_size=HYPOTHESIS_BATCH))
    def batch_gets_one_error_each(batch: list[tuple[bytes, RequestId]]) -> None:
        replies = exchange(port, [line for line, _ in batch])
        assert len(replies) == len(batch)
        for (_, rid), reply in zip(batch, replies, strict=True):
            code = error_code(reply, rid, echo=False)
            assert code in KEPT, reply
            codes[code] += 1
        codes["lines"] += len(batch)

    batch_gets_one_error_each()
    return codes


async def fuzz_one_connection(port: int, items: Sequence[Malformed], codes: Counter[str]) -> None:
    """Pipeline every line on one connection while reading the replies; each non-blank line
    gets exactly one error, in order, and then the final hello is answered."""
    async with wire(port) as connection:

        async def write() -> None:
            for start in range(0, len(items), 256):
                chunk = items[start : start + 256]
                connection.send(b"".join(line + b"\n" for line, _, _ in chunk))
                await connection.writer.drain()
            connection.send(line_of({"op": "hello", "id": "end"}))
            await connection.writer.drain()

        writer = asyncio.create_task(write())
        try:
            expected = [(rid, echo) for line, rid, echo in items if line.strip()]
            for n, (rid, echo) in enumerate(expected):
                reply = await connection.reply()
                code = error_code(reply, rid, echo=echo)
                assert code in KEPT, reply
                codes[code] += 1
                if n % 128 == 0:
                    await asyncio.sleep(0)  # let the steady client's replies be read on time
            last = await connection.reply()
            assert last.get("id") == "end", last
            assert last["ok"], last
            codes["blank"] += len(items) - len(expected)
            await writer
        finally:
            writer.cancel()


async def test_malformed_lines_get_structured_errors(
    start_servers: StartServers, figure: Callable[[str], None]
) -> None:
    server = await start_one(start_servers)
    generator = MalformedLines(seed=20261125)
    bulk = generator.lines(100_000)
    connections = 4
    codes: Counter[str] = Counter()
    started = time.monotonic()
    async with asyncio.timeout(120), SteadyClient(server.port, "fuzz") as steady:
        drawn = await asyncio.to_thread(hypothesis_part, server.port)
        before_flood = len(steady.gets)
        flood_started = time.monotonic()
        async with asyncio.TaskGroup() as group:  # one failure stops them all
            for i in range(connections):
                group.create_task(fuzz_one_connection(server.port, bulk[i::connections], codes))
        flood_time = time.monotonic() - flood_started
        await steady.stop()
        assert_alive(server)
        async with wire(server.port) as connection:
            hello = await connection.hello()
    elapsed = time.monotonic() - started

    lines = len(bulk) + drawn["lines"]
    blank = codes.pop("blank")
    errors = sum(codes.values()) + sum(v for k, v in drawn.items() if k != "lines")
    assert lines >= 100_000
    assert errors == lines - blank  # one structured error for every non-blank line
    assert hello["movies"] == 1 + len(steady.puts)  # nothing malformed was stored
    assert not server_log_problems(server), server_log_problems(server)
    steady.check()
    # The gets that ran while 4 connections pipelined the 100,000 seeded lines, on their own.
    flood = steady.gets[before_flood:]
    assert len(flood) >= 5, f"only {len(flood)} gets during the flood"
    assert p99(flood) < P99_BOUND, f"gets during the flood: p99 {ms(p99(flood))}"
    by_code = codes + Counter({k: v for k, v in drawn.items() if k != "lines"})
    figure(
        f"{lines:,} malformed lines ({drawn['lines']:,} drawn by hypothesis, {len(bulk):,} "
        f"seeded; {blank:,} of them blank) in {elapsed:.1f} s: {errors:,} structured errors "
        f"({', '.join(f'{k} {v:,}' for k, v in by_code.most_common())}), 0 internal, server "
        f"alive; {steady.summary()}; during the {len(bulk):,}-line flood on 4 connections "
        f"({flood_time:.1f} s) {len(flood)} gets, p99 {ms(p99(flood))}"
    )


# --- 2. oversized lines ---------------------------------------------------------------------------


def padded_hello(length: int, request_id: int) -> bytes:
    """A hello line of exactly `length` bytes before its newline."""
    line = json.dumps({"op": "hello", "id": request_id}).encode()
    return line + b" " * (length - len(line)) + b"\n"


@dataclass
class Refusal:
    sent: int  # bytes the client got out before the server closed
    reply: bytes  # everything the server said
    seconds: float  # from the first byte to the end of the connection


def send_and_collect(port: int, stream: Iterable[bytes]) -> Refusal:
    """Send chunks (blocking) until done or the server closes; then read everything it sent."""
    sent = 0
    received = bytearray()
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for chunk in stream:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.shutdown(socket.SHUT_WR)  # the end of the stream: the server closes after replying
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(1 << 16):
                received += data
    return Refusal(sent, bytes(received), time.monotonic() - started)


async def test_oversized_lines_are_refused_and_the_server_carries_on(
    start_servers: StartServers, figure: Callable[[str], None]
) -> None:
    limit = protocol.DEFAULT_MAX_LINE
    rounds, huge = 10, 64 << 20
    server = await start_one(start_servers)
    just_over: list[Refusal] = []
    endless: list[Refusal] = []
    async with asyncio.timeout(60), SteadyClient(server.port, "long") as steady:
        peak_before = memory_kib(server.pid, "VmHWM")
        at_limit = await asyncio.to_thread(send_and_collect, server.port, [padded_hello(limit, 1)])
        for _ in range(rounds):
            just_over.append(
                await asyncio.to_thread(send_and_collect, server.port, [padded_hello(limit + 1, 2)])
            )
            chunks = (b"x" * (1 << 20) for _ in range(huge >> 20))  # no newline, ever
            endless.append(await asyncio.to_thread(send_and_collect, server.port, chunks))
        peak_after = memory_kib(server.pid, "VmHWM")
        await steady.stop()
        assert_alive(server)
        async with wire(server.port) as connection:
            await connection.hello()

    # Exactly at the limit: answered.
    assert at_limit.reply.startswith(b'{"ok":true,"id":1,'), at_limit.reply[:200]
    for refusal in [*just_over, *endless]:
        replies = [json.loads(line) for line in refusal.reply.splitlines()]
        assert len(replies) == 1, refusal.reply[:500]  # told once, then closed
        assert error_code(replies[0]) == protocol.LINE_TOO_LONG
        assert f"{limit}" in replies[0]["error"]["message"]
    most_sent = max(r.sent for r in endless)
    assert most_sent < huge, "the server read a 64 MiB line to its end"
    grown = (peak_after - peak_before) / 1024
    assert grown < 32, f"the server's peak memory grew by {grown:.0f} MiB"
    steady.check(minimum=5)
    figure(
        f"{rounds} lines of {limit + 1:,} bytes: line_too_long and closed, slowest in "
        f"{ms(max(r.seconds for r in just_over))}; {rounds} endless 64 MiB lines: "
        f"line_too_long and closed after at most {most_sent / 2**20:.0f} MiB were sent, slowest "
        f"in {ms(max(r.seconds for r in endless))}; a line of exactly {limit:,} bytes answered; "
        f"server peak memory +{grown:.1f} MiB; {steady.summary()}"
    )


# --- 3. slow and silent connections ---------------------------------------------------------------

SLOW = 500
LINE_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
TRICKLE_EVERY = 0.45  # seconds between bytes: ~0.5 s, off the line timeout's beat


async def trickle(probe: Probe, text: bytes) -> None:
    """One byte at a time until the server closes the connection."""
    for byte in text:
        if probe.closed.done():
            return
        probe.send(bytes([byte]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(probe.closed), TRICKLE_EVERY)
    raise AssertionError("the trickle ran out of bytes before the server closed")


@pytest.mark.parametrize("kind", ["silent", "partial", "trickle"])
async def test_slow_connections_are_closed_while_others_are_served(
    start_servers: StartServers, figure: Callable[[str], None], kind: str
) -> None:
    server = await start_one(
        start_servers, f"--line-timeout={LINE_TIMEOUT}", f"--idle-timeout={IDLE_TIMEOUT}"
    )
    partial = b'{"op":"get","id":1,"title":"' + b"a" * 200
    async with asyncio.timeout(60), SteadyClient(server.port, kind) as steady:
        connecting = time.monotonic()
        probes = await open_probes(server.port, SLOW)
        connected = time.monotonic() - connecting
        # A listen queue shorter than the burst makes TCP retry SYNs after a second or more.
        assert connected < LINE_TIMEOUT, f"{SLOW} connections took {connected:.2f} s"
        tricklers = []
        if kind == "partial":
            for probe in probes:
                probe.send(partial[:30])
        elif kind == "trickle":
            tricklers = [asyncio.create_task(trickle(probe, partial)) for probe in probes]
        stalled_at = time.monotonic()
        closed_at = await asyncio.gather(*(probe.closed for probe in probes))
        await asyncio.gather(*tricklers)
        await steady.stop()
        stats = await steady.request(line_of({"op": "stats", "id": "stats"}))
        assert_alive(server)

    timeout = IDLE_TIMEOUT if kind == "silent" else LINE_TIMEOUT
    lives = [end - probe.first_byte_at for probe, end in zip(probes, closed_at, strict=True)]
    unanswered = sum(not probe.data for probe in probes)
    for probe in probes:
        if kind == "silent":
            assert probe.data == b"", probe.data  # an idle connection is closed without a word
        else:
            assert probe.data, f"{unanswered} of {SLOW} were closed without being told why"
            (reply,) = probe.replies()  # told why, then closed
            assert error_code(reply) == protocol.LINE_TIMEOUT
            assert f"{LINE_TIMEOUT:g} s" in reply["error"]["message"]
    assert min(lives) >= timeout - 0.05, f"closed early: {min(lives):.3f} s"
    assert max(lives) < timeout + 2.0, f"closed late: {max(lives):.3f} s"
    assert stats["result"]["connections"] == 1  # only the steady client is left
    steady.check()
    last = max(closed_at) - stalled_at
    what = {
        "silent": "silent connections",
        "partial": "connections stalled mid-line",
        "trickle": f"connections trickling a byte every {TRICKLE_EVERY} s",
    }[kind]
    which = "idle" if kind == "silent" else "line"
    figure(
        f"{SLOW} {what} (connected in {connected:.2f} s) closed by the {which} timeout "
        f"({timeout:g} s) {min(lives):.2f}-{max(lives):.2f} s after their "
        f"{'connection' if kind == 'silent' else 'first byte'}; all {SLOW} closed "
        f"{last:.2f} s after the last stalled; {steady.summary()}"
    )


# --- 4. the connection limit ----------------------------------------------------------------------


async def test_connections_past_the_maximum_are_refused_then_accepted_again(
    start_servers: StartServers, figure: Callable[[str], None]
) -> None:
    maximum, extra, freed = 50, 20, 10
    server = await start_one(start_servers, f"--max-connections={maximum}")
    async with asyncio.timeout(60), contextlib.AsyncExitStack() as connections:
        held = list(
            await asyncio.gather(
                *(connections.enter_async_context(connect(server.port)) for _ in range(maximum))
            )
        )
        await asyncio.gather(*(connection.hello() for connection in held))
        started = time.monotonic()
        refused = await open_probes(server.port, extra)
        await asyncio.gather(*(probe.closed for probe in refused))
        refusal_time = time.monotonic() - started
        for probe in refused:
            (reply,) = probe.replies()  # unprompted, without an id
            assert "id" not in reply
            assert error_code(reply) == protocol.TOO_MANY_CONNECTIONS
            assert f"{maximum}" in reply["error"]["message"]

        for connection in held[:freed]:
            await connection.close()
        held = held[freed:]
        # The server frees a place once it sees the close; until then it still refuses.
        accepted: list[Probe] = []
        attempts = 0
        while len(accepted) < freed:
            attempts += 1
            probe = await open_probe(server.port)
            probe.send(line_of({"op": "hello", "id": attempts}))
            reply = json.loads(await probe.first_line)
            if reply["ok"]:
                accepted.append(probe)
            else:
                assert error_code(reply) == protocol.TOO_MANY_CONNECTIONS
                await probe.closed
        over = await open_probe(server.port)
        reply = json.loads(await over.first_line)
        assert error_code(reply) == protocol.TOO_MANY_CONNECTIONS
        await over.closed
        for connection in held:  # the held ones were never disturbed
            await connection.hello()
        for probe in accepted:
            probe.close()
    assert_alive(server)
    figure(
        f"--max-connections {maximum}: {extra} connections over it refused with "
        f"too_many_connections (no id) and closed, all within {ms(refusal_time)}; after {freed} "
        f"closed, {freed} accepted again ({attempts - freed} refused while the server noticed), "
        f"the next refused"
    )


# --- 5. a full disk -------------------------------------------------------------------------------


def filler_copy(n: int, rng: random.Random, size: int = 3000) -> Copy:
    plot = "".join(rng.choices("abcdefghij klmnopqrstuvwxyz", k=size))
    return make(f"Filler {n}", 2000, plot=plot)


def digest_of(copies: Iterable[Copy]) -> str:
    """The catalog digest a server holding exactly these copies reports."""
    return digests.to_hex(digests.combine(digests.entry_hash(c.key, c.rev) for c in copies))


@dataclass
class OnDisk:
    integrity: str
    live: int
    entries: int
    digest: str  # from the rows
    buckets_digest: str  # from the stored bucket digests


def read_disk(db: Path) -> OnDisk:
    """What the database file holds, read by a connection of our own (read-only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (integrity,) = con.execute("PRAGMA integrity_check").fetchone()
        (live,) = con.execute("SELECT count(*) FROM movies WHERE deleted = 0").fetchone()
        rows = con.execute("SELECT key, rev FROM movies").fetchall()
        buckets = [digests.from_signed(v) for (v,) in con.execute("SELECT digest FROM buckets")]
    finally:
        con.close()
    from_rows = digests.combine(digests.entry_hash(key, rev) for key, rev in rows)
    return OnDisk(
        integrity,
        live,
        len(rows),
        digests.to_hex(from_rows),
        digests.to_hex(digests.combine(buckets)),
    )


def file_sizes(db: Path) -> str:
    def size(path: Path) -> str:
        return f"{path.stat().st_size / 1024:,.0f} KiB" if path.exists() else "absent"

    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    return f"db {size(db)}, -wal {size(wal)}, -shm {size(shm)}"


@dataclass
class Filled:
    acknowledged: dict[str, Copy]
    refused: list[Copy]
    messages: set[str]


async def fill_until_refused(
    connection: Wire, rng: random.Random, acknowledged: dict[str, Copy], limit: int = 5_000
) -> Filled:
    """Put new movies (pipelined 20 at a time, then one by one once refusals start) until ten
    single writes in a row are refused. A write is acknowledged or refused, never both."""
    refused: list[Copy] = []
    messages: set[str] = set()
    in_a_row = 0
    n = len(acknowledged)
    while in_a_row < 10:
        assert n < limit, f"{limit} writes and the disk never filled"
        batch = [filler_copy(n + i, rng) for i in range(1 if refused else 20)]
        n += len(batch)
        connection.send(b"".join(put_line(copy, i) for i, copy in enumerate(batch)))
        for i, copy in enumerate(batch):
            reply = await connection.reply()
            if reply["ok"]:
                assert reply == {"ok": True, "id": i, "result": {"status": "applied"}}, reply
                acknowledged[copy.key] = copy
                in_a_row = 0
            else:
                assert error_code(reply, i) == protocol.STORAGE_ERROR
                messages.add(reply["error"]["message"])
                refused.append(copy)
                # A group of writes may be too large where a single one still fits.
                in_a_row += len(batch) == 1
    return Filled(acknowledged, refused, messages)


async def check_reads(connection: Wire, present: Sequence[Copy], absent: Sequence[Copy]) -> None:
    """Every acknowledged write reads back exactly; no refused write is there."""
    connection.send(
        b"".join(get_line(c.movie.title, c.movie.year, i) for i, c in enumerate(present))
    )
    for i, copy in enumerate(present):
        assert await connection.line() == found_line([copy], i), f"lost: {copy.movie.title}"
    connection.send(
        b"".join(get_line(c.movie.title, c.movie.year, i) for i, c in enumerate(absent))
    )
    for i, copy in enumerate(absent):
        assert await connection.line() == found_line([], i), f"stored: {copy.movie.title}"


async def check_counters(connection: Wire, db: Path, stored: dict[str, Copy]) -> Json:
    """The server's own counts and digest agree with what it acknowledged and with the file."""
    hello = await connection.hello()
    disk = await asyncio.to_thread(read_disk, db)
    live = sum(not copy.deleted for copy in stored.values())
    expected = digest_of(stored.values())
    assert disk.integrity == "ok"
    assert hello["movies"] == live == disk.live
    assert hello["movies"] + hello["tombstones"] == len(stored) == disk.entries
    assert hello["digest"] == expected == disk.digest == disk.buckets_digest
    return hello


async def all_applied(connection: Wire, copies: Sequence[Copy]) -> None:
    connection.send(b"".join(put_line(copy, i) for i, copy in enumerate(copies)))
    for i, copy in enumerate(copies):
        reply = await connection.reply()
        assert reply == {"ok": True, "id": i, "result": {"status": "applied"}}, copy.movie.title


async def launch(servers: list[ServerProcess], db: Path, name: str, *flags: str) -> ServerProcess:
    """A server on this database file (again on the file as the last one left it); `servers`
    collects every one started, for the test to clean up."""
    server = ServerProcess(db, name, "0", *flags)
    servers.append(server)
    return await asyncio.to_thread(server.wait_listening)


async def test_database_size_quota_refuses_writes_and_loses_nothing(
    tmp_path: Path, figure: Callable[[str], None]
) -> None:
    db = tmp_path / "quota.sqlite3"
    rng = random.Random(5)
    servers: list[ServerProcess] = []
    try:
        server = await launch(servers, db, "quota", "--max-db-size=1MB")
        async with asyncio.timeout(60), wire(server.port) as connection:
            filled = await fill_until_refused(connection, rng, {})
            stored = filled.acknowledged
            first_acknowledged = len(stored)
            # A batch is refused whole; nothing of it is stored.
            batch = [filler_copy(9000 + i, rng) for i in range(5)]
            reply = await connection.request(
                line_of({"op": "put_batch", "id": "b", "copies": batch})
            )
            assert error_code(reply, "b") == protocol.STORAGE_ERROR
            refused = [*filled.refused, *batch]
            full_files = file_sizes(db)
            await check_reads(connection, list(stored.values()), refused)
            await check_counters(connection, db, stored)

            # Deleting makes room once the tombstones are purged: every tenth movie.
            doomed = list(stored.values())[::10]
            tombstones = [
                child([c], Movie(c.movie.title, c.movie.year), deleted=True) for c in doomed
            ]
            await all_applied(connection, tombstones)
            connection.send(
                b"".join(
                    line_of({"op": "purge", "id": i, "key": t.key, "rev": t.rev})
                    for i, t in enumerate(tombstones)
                )
            )
            for i in range(len(tombstones)):
                purged = await connection.reply()
                assert purged == {"ok": True, "id": i, "result": {"status": "purged"}}, purged
            for tombstone in tombstones:
                del stored[tombstone.key]
            resumed = refused[:5]
            await all_applied(connection, resumed)
            stored |= {c.key: c for c in resumed}
            await check_counters(connection, db, stored)
        assert await asyncio.to_thread(server.stop) == 0

        # More room: the same file under a larger quota takes the rest.
        server = await launch(servers, db, "quota", "--max-db-size=4MB")
        async with asyncio.timeout(60), wire(server.port) as connection:
            rest = refused[5:]
            await all_applied(connection, rest)
            stored |= {c.key: c for c in rest}
            await check_reads(connection, list(stored.values()), [])
            await check_counters(connection, db, stored)
        assert await asyncio.to_thread(server.stop) == 0
    finally:
        for server in servers:
            server.cleanup()
    disk = read_disk(db)
    assert disk.integrity == "ok"
    assert disk.entries == len(stored)
    assert disk.digest == digest_of(stored.values())
    (message,) = filled.messages
    assert "disk is full" in message, message
    assert "--max-db-size" in message, message
    figure(
        f"--max-db-size 1MB: {first_acknowledged:,} writes "
        f"acknowledged, then {len(refused)} refused with storage_error (never acknowledged, "
        f"never stored; {full_files}); reads, count and digest unchanged and equal to the file; "
        f"{len(doomed)} deletes (tombstone, then purge) made room for 5 of them; under 4MB the "
        f"other {len(rest)} went in; 0 acknowledged writes lost, integrity_check ok"
    )


@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where`, unmounted (lazily) afterwards; skips the test
    when mounting is not permitted here."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], timeout=TIMEOUT, check=False)


def fill_disk(path: Path) -> int:
    """Write a file until the filesystem has no byte left; returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    written = 0
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            block = b"\0" * size
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


async def test_full_filesystem_refuses_writes_until_space_is_freed(
    tmp_path: Path, figure: Callable[[str], None]
) -> None:
    rng = random.Random(6)
    servers: list[ServerProcess] = []
    with small_filesystem(tmp_path / "small-disk", "16m") as disk:
        db = disk / "db.sqlite3"
        try:
            server = await launch(servers, db, "small")
            async with asyncio.timeout(60), wire(server.port) as connection:
                first = [filler_copy(i, rng, 2000) for i in range(100)]
                await all_applied(connection, first)
                acknowledged = {c.key: c for c in first}
                filler = disk / "filler"
                filler_size = await asyncio.to_thread(fill_disk, filler)
                filled = await fill_until_refused(connection, rng, acknowledged)
                while_full = len(acknowledged) - len(first)  # room left in the WAL file
                full_files = file_sizes(db)
                await check_reads(connection, list(acknowledged.values()), filled.refused)
                hello = await check_counters(connection, db, acknowledged)
            # Stopped and started again on the full disk: the WAL and -shm files it leaves
            # behind (no room to checkpoint into the database) are read back as they are.
            assert await asyncio.to_thread(server.stop) == 0
            stopped_files = file_sizes(db)
            server = await launch(servers, db, "small")
            async with asyncio.timeout(60), wire(server.port) as connection:
                await check_reads(connection, list(acknowledged.values()), filled.refused)
                again = await check_counters(connection, db, acknowledged)
                assert again["digest"] == hello["digest"]
                reply = await connection.request(put_line(filled.refused[0], "full"))
                assert error_code(reply, "full") == protocol.STORAGE_ERROR

                filler.unlink()  # space is freed: writes resume, no restart needed
                await all_applied(connection, filled.refused)
                acknowledged |= {c.key: c for c in filled.refused}
                await check_reads(connection, list(acknowledged.values()), [])
                await check_counters(connection, db, acknowledged)
            assert await asyncio.to_thread(server.stop) == 0
            closed_files = file_sizes(db)
            disk_state = read_disk(db)
        finally:
            for started in servers:
                started.cleanup()
    assert disk_state.integrity == "ok"
    assert disk_state.entries == len(acknowledged)
    assert disk_state.digest == digest_of(acknowledged.values())
    (message,) = filled.messages
    assert "disk is full" in message, message
    refused = len(filled.refused)
    figure(
        f"16 MiB tmpfs, {filler_size / 2**20:.1f} MiB filler: {while_full} more writes "
        f"acknowledged, then {refused} refused with storage_error ({full_files}); reads, count "
        f"and digest equal to the file; stopped on the full disk ({stopped_files}) and started "
        f"again: the same reads and digest, writes still refused; filler deleted: the {refused} "
        f"went in without a restart; after a clean stop {closed_files}; 0 acknowledged writes "
        f"lost, integrity_check ok"
    )


# --- 6. Unicode and size edges --------------------------------------------------------------------

AMELIE = "Amélie"
TITLES = [
    AMELIE,  # NFC
    unicodedata.normalize("NFD", AMELIE),  # the same letters, decomposed
    "Ça tourne à Manhattan",
    "Ζορμπάς ο Έλλην",
    "Броненосец «Потёмкин»",
    "الرسالة",
    "גבעת חלפון אינה עונה",
    "दिलवाले दुल्हनिया ले जाएंगे",
    "ภาพยนตร์ไทย",
    "卧虎藏龙",
    "千と千尋の神隠し",
    "ｶﾀｶﾅ ﾉ ｴｲｶﾞ",  # half-width katakana (NFKD changes them)
    "기생충",
    unicodedata.normalize("NFD", "기생충"),  # Hangul as jamo
    "🎬🍿",
    "👩‍🚀 Astronaut",  # a ZWJ sequence
    "👨‍👩‍👧‍👦",  # a family: four people, three joiners
    "🇫🇷🇯🇵🏴󠁧󠁢󠁳󠁣󠁴󠁿",  # flags, one of them a tag sequence
    "👍🏽 1️⃣",  # skin tone, keycap
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",  # stacked combining marks
    "𝔄𝔩𝔦𝔢𝔫",  # mathematical letters (NFKD: Alien)
    "𠜎𠜱𠝹",  # beyond the BMP
    "A\u2028B\u2029C\u0085D",  # line separators inside a line
    "\u202eevil\u202c \u200b\ufeff",  # bidi override, zero-width space, BOM inside
    "Tab\there",
    '"Quotes" \\ and \u001f inside',
]


class _MovieText(msgspec.Struct):
    movie: msgspec.Raw


class _GetResult(msgspec.Struct):
    copies: list[msgspec.Raw]


class _GetReply(msgspec.Struct):
    ok: bool
    result: _GetResult


def raw_copies(line: bytes) -> list[bytes]:
    """The copies of a get reply exactly as the server sent them."""
    reply = msgspec.json.decode(line, type=_GetReply)
    assert reply.ok
    return [bytes(raw) for raw in reply.result.copies]


def raw_movie(copy_text: bytes) -> bytes:
    return bytes(msgspec.json.decode(copy_text, type=_MovieText).movie)


async def round_trip(port: int, copies: Sequence[Copy]) -> None:
    """Put every copy, then get each back: the record's JSON text comes back byte for byte."""
    async with wire(port) as connection:
        await all_applied(connection, copies)
        connection.send(
            b"".join(get_line(c.movie.title, c.movie.year, i) for i, c in enumerate(copies))
        )
        for copy in copies:
            (text,) = raw_copies(await connection.line())
            assert raw_movie(text) == _encode(copy.movie), copy.movie.title
            assert text == _encode(copy), copy.movie.title
            assert msgspec.json.decode(text, type=Copy).movie.title == copy.movie.title


def drawn_titles(count: int) -> list[str]:
    """Titles drawn by hypothesis from all of Unicode (but lone surrogates and NUL)."""
    titles: list[str] = []
    text = st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        min_size=1,
        max_size=MAX_TITLE_CHARS,
    )

    @settings(max_examples=count // 20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(text, min_size=20, max_size=20))
    def draw(batch: list[str]) -> None:
        titles.extend(batch)

    draw()
    return titles


async def test_titles_in_every_script_round_trip_byte_exact(
    start_servers: StartServers, figure: Callable[[str], None]
) -> None:
    servers = await asyncio.to_thread(start_servers, 3)
    copies = [make(title, 1900 + i) for i, title in enumerate(TITLES)]
    for copy, title in zip(copies, TITLES, strict=True):
        assert copy.movie.title == title  # nothing trimmed or normalised on the way
    drawn: list[Copy] = []
    for i, title in enumerate(await asyncio.to_thread(drawn_titles, 200)):
        with contextlib.suppress(InvalidMovie):  # blank once trimmed
            drawn.append(make(title, 1870 + i % 300, director=title[:1000]))
    drawn = list({c.key: c for c in drawn if c.key not in {x.key for x in copies}}.values())
    async with asyncio.timeout(60):
        await asyncio.gather(*(round_trip(s.port, [*copies, *drawn]) for s in servers))
        # NFC and NFD spellings are one title to look up, and each stays as it was written.
        for server in servers:
            async with wire(server.port) as connection:
                answers = []
                for title in TITLES[:2]:
                    connection.send(get_line(title, None, 1))
                    answers.append(raw_copies(await connection.line()))
                assert answers[0] == answers[1] == [_encode(copies[0]), _encode(copies[1])]
                digest = (await connection.hello())["digest"]
                assert digest == digest_of([*copies, *drawn])
    figure(
        f"{len(TITLES)} titles (Latin, Greek, Cyrillic, Arabic, Hebrew, Devanagari, Thai, CJK, "
        f"kana, Hangul, emoji with ZWJ, flags and keycaps, combining marks, NFC and NFD, astral, "
        f"line separators, bidi controls) and {len(drawn)} drawn by hypothesis: put then get "
        f"byte-exact on all 3 servers, digests equal; NFC and NFD found by either spelling, "
        f"each kept as sent"
    )


def record_of_size(size: int, title: str = "Size edge", year: int = 2000) -> Movie:
    """A record whose JSON is exactly `size` bytes: two-byte letters in full extra fields,
    then ASCII to the byte. It is in normal form (extra names sorted)."""
    extra: dict[str, str | int | float | bool] = {}
    for i in range(100):
        name = f"pad{i:02d}"
        extra[name] = ""
        missing = size - record_size(Movie(title=title, year=year, extra=dict(extra)))
        if missing < 0:
            raise ValueError(f"a record of {size} bytes cannot hold this title")
        if missing < MAX_TEXT_CHARS:  # (one more byte stays within the field's limit)
            extra[name] = "x" * missing
            break
        extra[name] = "é" * min(MAX_TEXT_CHARS, (missing - 64) // 2)
    movie = Movie(title=title, year=year, extra=extra)
    assert record_size(movie) == size
    return movie


def one_byte_more(movie: Movie) -> Movie:
    *_, last = movie.extra
    extra = dict(movie.extra)
    extra[last] = f"{extra[last]}x"
    return msgspec.structs.replace(movie, extra=extra)


def long_history(movie: Movie) -> Copy:
    """A copy of `movie` whose history is full (HISTORY_LIMIT revisions)."""
    copy = first_copy(Movie(title=movie.title, year=movie.year))
    for n in range(HISTORY_LIMIT):
        copy = child([copy], Movie(title=movie.title, year=movie.year, runtime_min=n + 1))
    final = child([copy], movie)
    assert len(final.history) == HISTORY_LIMIT
    return final


async def refused_as(port: int, copy: Copy, field: str, limit: int) -> str:
    async with wire(port) as connection:
        reply = await connection.request(put_line(copy, "edge"))
        assert error_code(reply, "edge") == protocol.INVALID_MOVIE
        message: str = reply["error"]["message"]
        assert message.startswith(f"{field}:"), message
        assert f"{limit:,}" in message or f"{limit}" in message, message
        await connection.hello()  # the connection is still usable
        return message


async def test_title_and_record_size_limits_are_exact(
    start_servers: StartServers, figure: Callable[[str], None]
) -> None:
    lowered = 10_000
    (server,) = await asyncio.to_thread(start_servers, 1)
    (small,) = await asyncio.to_thread(start_servers, 1, f"--max-record={lowered}")

    # Titles: characters, not bytes or graphemes.
    longest = [
        "T" * MAX_TITLE_CHARS,
        "🎬" * MAX_TITLE_CHARS,  # 4 bytes each
        "e\u0301" * (MAX_TITLE_CHARS // 2),  # 250 letters, 500 code points
    ]
    titles_ok = [make(title, 2000 + i) for i, title in enumerate(longest)]
    too_long = Movie(title="🎬" * (MAX_TITLE_CHARS + 1), year=2010)
    with pytest.raises(InvalidMovie) as refused_title:
        validate(too_long)
    assert refused_title.value.field == "title"

    # Records: bytes of JSON. The largest, with the longest title and a full history.
    biggest = record_of_size(MAX_RECORD_BYTES, title="🎬" * MAX_TITLE_CHARS)
    assert validate(biggest) == biggest
    over = one_byte_more(biggest)
    with pytest.raises(InvalidMovie) as refused_record:
        validate(over)
    assert refused_record.value.field == "record"
    biggest_copy = long_history(biggest)
    line = put_line(biggest_copy, "big")
    assert len(line) <= protocol.DEFAULT_MAX_LINE  # fits in the default request line

    at_lowered = record_of_size(lowered, title="Lowered edge")
    over_lowered = one_byte_more(at_lowered)
    check_size(at_lowered, lowered)
    with pytest.raises(InvalidMovie):
        check_size(over_lowered, lowered)

    async with asyncio.timeout(60):
        await round_trip(server.port, [*titles_ok, biggest_copy, first_copy(over_lowered)])
        title_message = await refused_as(
            server.port, first_copy(too_long), "title", MAX_TITLE_CHARS
        )
        record_message = await refused_as(server.port, first_copy(over), "record", MAX_RECORD_BYTES)
        await round_trip(small.port, [first_copy(at_lowered)])
        await refused_as(small.port, first_copy(over_lowered), "record", lowered)
    figure(
        f"title of {MAX_TITLE_CHARS} characters (ASCII, 4-byte emoji, combining) stored "
        f"byte-exact, {MAX_TITLE_CHARS + 1} refused ('{title_message[:60]}'); record of "
        f"{MAX_RECORD_BYTES:,} bytes with the longest title and a full history stored "
        f"byte-exact in a {len(line):,}-byte put line (limit {protocol.DEFAULT_MAX_LINE:,}), "
        f"{MAX_RECORD_BYTES + 1:,} refused by validate() and by the server "
        f"('{record_message[:50]}'); --max-record {lowered:,}: {lowered:,} stored, "
        f"{lowered + 1:,} refused"
    )


async def test_a_record_at_the_derived_limit_fits_in_a_small_line(
    start_servers: StartServers, figure: Callable[[str], None]
) -> None:
    max_line = 65_536
    (server,) = await asyncio.to_thread(start_servers, 1, f"--max-line={max_line}")
    derived = max_line - REQUEST_OVERHEAD  # the server's --max-record when none is given
    movie = record_of_size(derived, title="\ufdfa" * MAX_TITLE_CHARS)
    assert validate(movie) == movie
    line = put_line(long_history(movie), "worst")
    figure(f"a {derived:,}-byte record's put line is {len(line):,} bytes (--max-line {max_line:,})")
    async with asyncio.timeout(TIMEOUT), wire(server.port) as connection:
        reply = await connection.request(line)
    assert reply == {"ok": True, "id": "worst", "result": {"status": "applied"}}, reply
