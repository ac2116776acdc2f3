"""Real servers over TCP, spoken to in raw newline-delimited JSON.

In-process servers (on the test's own event loop, default asyncio) and `moviedb-server`
subprocesses (uvloop) are both covered; many tests run against each. Every wait is on a
condition (a reply, end of stream, a process exit) under an overall timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from moviedb import protocol
from moviedb.model import Movie, validate
from moviedb.server.app import Limits, MoviedbServer, NoFreePort
from moviedb.server.ports import describe
from moviedb.server.storage import Applied, Store
from moviedb.versions import HISTORY_LIMIT, Copy, child, first_copy
from tests.conftest import ServerProcess, StartServers

HOST = "127.0.0.1"
TIMEOUT = 15.0  # an overall bound for each network exchange; never a pause
STOPPED = re.compile(r"stopped after (\d+) writes in (\d+) transactions")

Json = dict[str, Any]


# --- records and requests -------------------------------------------------------------------------


def make(title: str, year: int | None = 2000, **fields: Any) -> Copy:
    return first_copy(validate(Movie(title=title, year=year, **fields)))


def edit(parent: Copy, **fields: Any) -> Copy:
    return child([parent], validate(msgspec.structs.replace(parent.movie, **fields)))


def put(copy: Copy | Json, request_id: Any = None) -> Json:
    body = msgspec.to_builtins(copy) if isinstance(copy, Copy) else copy
    return {"op": "put", "id": request_id, "copy": body}


def copies_of(reply: Json) -> list[Copy]:
    assert reply["ok"], reply
    return msgspec.convert(reply["result"]["copies"], list[Copy])


def assert_error(reply: Json, code: str, request_id: Any = None) -> None:
    """Every error reply has one shape: ok false, the echoed id, and an error code + message."""
    assert reply["ok"] is False, reply
    assert set(reply) <= {"ok", "id", "error"}, reply
    assert reply.get("id") == request_id, reply
    assert set(reply["error"]) == {"code", "message"}, reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str)
    assert reply["error"]["message"].strip(), reply


# --- a raw client ---------------------------------------------------------------------------------


class Client:
    """One TCP connection: JSON objects (or raw bytes) out, one parsed reply per line in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, *messages: Json | bytes) -> None:
        """Everything in one write: a pipeline of requests, or any bytes at all."""
        self.writer.write(
            b"".join(
                m if isinstance(m, bytes) else json.dumps(m).encode() + b"\n" for m in messages
            )
        )

    async def reply(self) -> Json:
        line = await self.reader.readline()
        assert line.endswith(b"\n"), f"the server closed the connection instead: {line!r}"
        reply: Json = json.loads(line)
        return reply

    async def replies(self, count: int) -> list[Json]:
        return [await self.reply() for _ in range(count)]

    async def request(self, message: Json) -> Json:
        self.send(message)
        return await self.reply()

    async def hello(self, request_id: Any = "hello") -> Json:
        reply = await self.request({"op": "hello", "id": request_id})
        assert reply["ok"], reply
        assert reply["id"] == request_id
        result: Json = reply["result"]
        return result

    async def closed_by_server(self) -> bool:
        """Wait for the server to end the stream; True if it did with nothing left unread."""
        return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 24)
    client = Client(reader, writer)
    try:
        yield client
    finally:
        await client.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll a condition of an in-process server (which runs on this same loop).

    The server's state (counters, flags, the writer thread's progress) offers no event to
    await, so this polls it; the timeout bounds the wait, the condition ends it.
    """
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.005)


# --- servers --------------------------------------------------------------------------------------

Launch = Callable[..., Awaitable[int]]


@pytest.fixture(params=["inproc", "subprocess"])
async def launch(
    request: pytest.FixtureRequest, tmp_path: Path, start_servers: StartServers
) -> AsyncIterator[Launch]:
    """`await launch(max_line=1024)` -> the port of a fresh server with those limits."""
    servers: list[MoviedbServer] = []

    async def start(**limits: Any) -> int:
        if request.param == "inproc":
            server = MoviedbServer(
                tmp_path / f"inproc{len(servers)}.sqlite3", name="inproc", limits=Limits(**limits)
            )
            servers.append(server)
            return await server.start(HOST, [0])
        flags = [f"--{name.replace('_', '-')}={value}" for name, value in limits.items()]
        (process,) = await asyncio.to_thread(start_servers, 1, *flags)
        return process.port

    yield start
    for server in servers:
        await server.stop()


async def start_one(start_servers: StartServers, *extra: str) -> ServerProcess:
    (server,) = await asyncio.to_thread(start_servers, 1, *extra)
    return server


async def exited(server: ServerProcess) -> tuple[int, str]:
    """Wait for the server process to exit; its exit status and everything it printed."""
    assert server.proc is not None
    assert server.proc.stdout is not None
    code = await asyncio.to_thread(server.proc.wait, TIMEOUT)
    return code, server.proc.stdout.read().decode()


async def terminate(server: ServerProcess, signum: int = signal.SIGTERM) -> tuple[int, str]:
    server.signal(signum)
    return await exited(server)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """`spawn("7001,7002", *flags)` -> a server process on those ports, not yet waited for."""
    started: list[ServerProcess] = []

    def start(ports: str, *extra: str) -> ServerProcess:
        n = len(started)
        server = ServerProcess(tmp_path / f"p{n}.sqlite3", f"p{n}", ports, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.cleanup()


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port held by a listening socket of this test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port() -> int:
    """A loopback port that was free a moment ago (the system hands out another next time)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class WriterGate:
    """Holds every commit of the in-process writer thread until the test allows it."""

    def __init__(self) -> None:
        self.entered = 0  # commits that reached the gate
        self._permits = threading.Semaphore(0)
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            self.entered += 1
        if not self._permits.acquire(timeout=TIMEOUT):
            raise AssertionError("the test never let this commit through")

    def allow(self, commits: int = 1) -> None:
        self._permits.release(commits)

    def open(self) -> None:
        self._permits.release(100_000)


@pytest.fixture
def writer_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[WriterGate]:
    gate = WriterGate()
    apply = Store.apply

    def gated_apply(self: Store, copies: Sequence[Copy]) -> tuple[list[Applied], int]:
        gate.wait()
        return apply(self, copies)

    monkeypatch.setattr(Store, "apply", gated_apply)
    yield gate
    gate.open()


# --- hello, put, get, list ------------------------------------------------------------------------


async def test_hello_result_fields(inproc_server: MoviedbServer) -> None:
    async with connect(inproc_server.port) as client:
        result = await client.hello(request_id=1)
    assert set(result) == {
        "protocol",
        "name",
        "server_id",
        "movies",
        "software",
        "digest",
        "tombstones",
        "access",
    }
    assert result["access"] == "read-write"
    assert result["digest"] == "0" * 16
    assert result["protocol"] == protocol.PROTOCOL_VERSION
    assert result["name"] == "inproc"
    assert result["server_id"] == inproc_server.state.store.server_id
    assert re.fullmatch(r"[0-9a-f]{32}", result["server_id"])
    assert result["movies"] == 0
    assert result["software"].startswith("moviedb")


async def test_hello_from_a_subprocess_names_it(start_servers: StartServers) -> None:
    server = await start_one(start_servers)
    async with connect(server.port) as client:
        first = await client.hello(request_id="a")
        assert first["name"] == server.name
        assert first["protocol"] == protocol.PROTOCOL_VERSION
    restarted = await asyncio.to_thread(server.restart)
    async with connect(restarted.port) as client:
        again = await client.hello(request_id="b")
    assert again["server_id"] == first["server_id"]  # the id lives in the database


async def test_unnamed_server_is_named_after_its_id(tmp_path: Path) -> None:
    server = MoviedbServer(tmp_path / "anon.sqlite3")
    port = await server.start(HOST, [0])
    try:
        async with connect(port) as client:
            result = await client.hello()
        assert result["name"] == f"moviedb-{result['server_id'][:8]}"
    finally:
        await server.stop()


async def test_put_then_get(launch: Launch) -> None:
    port = await launch()
    alien = make("Alien", 1979, director="Ridley Scott", cast=["Sigourney Weaver"])
    remake = make("Alien", 2030)
    async with asyncio.timeout(TIMEOUT), connect(port) as client:
        reply = await client.request(put(alien, "p1"))
        assert reply == {"ok": True, "id": "p1", "result": {"status": "applied"}}
        reply = await client.request(put(alien, "p2"))
        assert reply == {"ok": True, "id": "p2", "result": {"status": "same"}}
        await client.request(put(remake, 3))

        reply = await client.request({"op": "get", "id": 4, "title": "ALIEN", "year": 1979})
        assert reply["id"] == 4
        assert copies_of(reply) == [alien]
        reply = await client.request({"op": "get", "id": 5, "title": "alien"})
        assert copies_of(reply) == [alien, remake]  # every year, in key order
        reply = await client.request({"op": "get", "id": 6, "title": "Aliens"})
        assert copies_of(reply) == []
        assert (await client.hello())["movies"] == 2


async def test_stale_and_conflict_return_the_stored_copy(inproc_server: MoviedbServer) -> None:
    v1 = make("Heat", 1995)
    v2 = edit(v1, director="Michael Mann")
    other = edit(v1, rating=8.3)
    async with asyncio.timeout(TIMEOUT), connect(inproc_server.port) as client:
        client.send(put(v1, 1), put(v2, 2), put(v1, 3), put(other, 4))
        replies = await client.replies(4)
        assert [r["result"]["status"] for r in replies] == [
            "applied",
            "applied",
            "stale",
            "conflict",
        ]
        for reply in replies[2:]:
            assert msgspec.convert(reply["result"]["current"], Copy) == v2
        assert "current" not in replies[0]["result"]
        reply = await client.request({"op": "get", "id": 5, "title": "heat"})
        assert copies_of(reply) == [v2]


async def test_delete_is_a_tombstone_over_the_wire(inproc_server: MoviedbServer) -> None:
    alien = make("Alien", 1979)
    gone = child([alien], alien.movie, deleted=True)
    async with asyncio.timeout(TIMEOUT), connect(inproc_server.port) as client:
        client.send(put(alien, 1), put(gone, 2), put(alien, 3))
        replies = await client.replies(3)
        assert [r["result"]["status"] for r in replies] == ["applied", "applied", "stale"]
        assert (await client.hello())["movies"] == 0
        (stored,) = copies_of(await client.request({"op": "get", "id": 4, "title": "Alien"}))
        assert stored.deleted


async def test_list_pages_through_every_movie(inproc_server: MoviedbServer) -> None:
    copies = [make(f"Movie {i}", 1990 + i % 7) for i in range(23)]
    async with asyncio.timeout(TIMEOUT), connect(inproc_server.port) as client:
        client.send(*[put(c, i) for i, c in enumerate(copies)])
        await client.replies(len(copies))
        keys: list[str] = []
        after = None
        while True:
            reply = await client.request({"op": "list", "id": "l", "after": after, "limit": 5})
            page = copies_of(reply)
            keys.extend(c.key for c in page)
            after = reply["result"]["next"]
            if after is None:
                break
        assert keys == sorted(c.key for c in copies)


# --- pipelining -----------------------------------------------------------------------------------


async def test_pipelined_requests_are_answered_in_order(launch: Launch) -> None:
    port = await launch()
    requests: list[Json] = []
    expected: list[tuple[Any, str]] = []
    for i in range(25):  # 4 requests each: 100 in all, ids of both kinds
        copy = make(f"Pipelined {i}", 2001)
        requests += [
            put(copy, i * 4),
            {"op": "get", "id": f"get-{i}", "title": copy.movie.title, "year": 2001},
            {"op": "hello", "id": i * 4 + 2},
            {"op": "frobnicate", "id": f"bad-{i}"},
        ]
        expected += [(i * 4, "put"), (f"get-{i}", "get"), (i * 4 + 2, "hello"), (f"bad-{i}", "bad")]
    assert len(requests) == 100

    async with asyncio.timeout(TIMEOUT), connect(port) as client:
        client.send(*requests)  # one write
        replies = await client.replies(100)

    assert [r.get("id") for r in replies] == [request_id for request_id, _ in expected]
    for i, (reply, (_, kind)) in enumerate(zip(replies, expected, strict=True)):
        if kind == "put":
            assert reply["result"] == {"status": "applied"}
        elif kind == "get":
            # A connection reads its own writes: the get sees the put just before it.
            (found,) = copies_of(reply)
            assert found.movie.title == f"Pipelined {i // 4}"
        elif kind == "hello":
            assert reply["ok"]
            assert reply["result"]["movies"] >= i // 4 + 1
        else:
            assert_error(reply, protocol.UNKNOWN_OP, reply["id"])


async def test_a_long_pipeline_is_answered_completely(launch: Launch) -> None:
    """More requests than a connection may have waiting: the server pauses reading, not fails."""
    port = await launch()
    count = 1200
    copies = [make(f"Bulk {i}", 1999) for i in range(count)]
    async with asyncio.timeout(TIMEOUT * 2), connect(port) as client:
        client.send(*[put(c, i) for i, c in enumerate(copies)])
        replies = await client.replies(count)
        assert [r["id"] for r in replies] == list(range(count))
        assert all(r["result"] == {"status": "applied"} for r in replies)
        assert (await client.hello())["movies"] == count


# --- bad input ------------------------------------------------------------------------------------

_VALID = msgspec.to_builtins(make("Alien", 1979))


def _copy_with(**changes: Any) -> Json:
    return {**_VALID, **changes}


BAD_REQUESTS: list[tuple[str, bytes | Json, str, Any]] = [
    ("not json", b"{not json\n", protocol.BAD_JSON, None),
    ("not utf-8", b'{"op":"hello","id":1,"x":"\xff\xfe"}\n', protocol.BAD_JSON, None),
    ("lone surrogate", b'{"op":"get","id":1,"title":"\\ud800"}\n', protocol.BAD_JSON, None),
    (
        "nested too deeply",
        b'{"op":"hello","id":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        protocol.BAD_JSON,
        None,
    ),
    ("number out of range", b'{"op":"hello","id":1e400}\n', protocol.BAD_REQUEST, None),
    ("array", b"[1, 2, 3]\n", protocol.BAD_REQUEST, None),
    ("string", b'"hello"\n', protocol.BAD_REQUEST, None),
    ("unknown op", {"op": "frobnicate", "id": 1}, protocol.UNKNOWN_OP, 1),
    ("op of the wrong type", {"op": 5, "id": 2}, protocol.BAD_REQUEST, 2),
    ("no op", {"id": 3, "title": "Alien"}, protocol.BAD_REQUEST, 3),
    ("title not text", {"op": "get", "id": 4, "title": 42}, protocol.BAD_REQUEST, 4),
    ("no title", {"op": "get", "id": "five"}, protocol.BAD_REQUEST, "five"),
    ("blank title", {"op": "get", "id": 6, "title": "   "}, protocol.BAD_REQUEST, 6),
    ("year a bool", {"op": "get", "id": 7, "title": "x", "year": True}, protocol.BAD_REQUEST, 7),
    ("id a bool", {"op": "get", "id": True, "title": "x"}, protocol.BAD_REQUEST, None),
    ("id a float", {"op": "hello", "id": 1.5}, protocol.BAD_REQUEST, None),
    ("unknown field", {"op": "hello", "id": 8, "surprise": 1}, protocol.BAD_REQUEST, 8),
    ("limit text", {"op": "list", "id": 9, "limit": "ten"}, protocol.BAD_REQUEST, 9),
    ("limit zero", {"op": "list", "id": 10, "limit": 0}, protocol.BAD_REQUEST, 10),
    ("limit too big", {"op": "list", "id": 11, "limit": 1001}, protocol.BAD_REQUEST, 11),
    ("put without copy", {"op": "put", "id": 12}, protocol.BAD_REQUEST, 12),
    ("copy of wrong shape", put({"key": "k"}, 13), protocol.BAD_REQUEST, 13),
    ("copy extra field", put(_copy_with(colour="red"), 14), protocol.BAD_REQUEST, 14),
    (
        "year out of range",
        put(_copy_with(key="old\x1f1500", movie={"title": "Old", "year": 1500}), 15),
        protocol.INVALID_MOVIE,
        15,
    ),
    (
        "record not normalised",
        put(_copy_with(movie={"title": " Alien ", "year": 1979}), 16),
        protocol.INVALID_MOVIE,
        16,
    ),
    ("key mismatch", put(_copy_with(key="aliens\x1f1979"), 17), protocol.BAD_REQUEST, 17),
    ("malformed rev", put(_copy_with(rev="1-xyz"), 18), protocol.BAD_REQUEST, 18),
    ("rev generation 0", put(_copy_with(rev="0-0123456789abcdef"), 19), protocol.BAD_REQUEST, 19),
    (
        "malformed history",
        put(_copy_with(history=["1-0123456789abcdef", "junk"]), 20),
        protocol.BAD_REQUEST,
        20,
    ),
    (
        "history too long",
        put(_copy_with(history=[f"{n}-0123456789abcdef" for n in range(1, HISTORY_LIMIT + 2)]), 21),
        protocol.BAD_REQUEST,
        21,
    ),
]


async def test_bad_requests_get_structured_errors_and_the_connection_survives(
    launch: Launch,
) -> None:
    port = await launch()
    async with asyncio.timeout(TIMEOUT), connect(port) as client:
        for n, (what, message, code, request_id) in enumerate(BAD_REQUESTS):
            client.send(message)
            reply = await client.reply()
            try:
                assert_error(reply, code, request_id)
            except AssertionError as exc:
                raise AssertionError(f"{what}: {exc}") from None
            # Still the same connection, still usable.
            assert (await client.hello(request_id=f"after-{n}"))["movies"] == 0
        # Nothing bad was stored.
        assert copies_of(await client.request({"op": "get", "id": 0, "title": "old"})) == []


async def test_bad_requests_in_a_pipeline_keep_their_places(inproc_server: MoviedbServer) -> None:
    messages = [m for _, m, _, _ in BAD_REQUESTS]
    async with asyncio.timeout(TIMEOUT), connect(inproc_server.port) as client:
        client.send(*messages, b"\r\n", b"   \n", {"op": "hello", "id": "last"})
        replies = await client.replies(len(messages) + 1)  # blank lines get no reply
    for (_, _, code, request_id), reply in zip(BAD_REQUESTS, replies, strict=False):
        assert_error(reply, code, request_id)
    assert replies[-1]["id"] == "last"
    assert replies[-1]["ok"]


async def test_a_decoder_failure_is_reported_and_the_connection_survives(
    inproc_server: MoviedbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = protocol.decode_request

    def flaky_decode(line: bytes) -> protocol.AnyRequest:
        if b"boom" in line:
            raise ValueError("a bug in the decoder")
        return decode(line)

    monkeypatch.setattr(protocol, "decode_request", flaky_decode)
    async with asyncio.timeout(TIMEOUT), connect(inproc_server.port) as client:
        client.send({"op": "hello", "id": "boom"}, {"op": "hello", "id": 2})
        assert_error(await client.reply(), protocol.INTERNAL)
        assert (await client.reply())["id"] == 2


async def test_crlf_line_endings_are_accepted(inproc_server: MoviedbServer) -> None:
    async with asyncio.timeout(TIMEOUT), connect(inproc_server.port) as client:
        client.send(b'{"op":"hello","id":1}\r\n{"op":"hello","id":2}\r\n')
        assert [r["id"] for r in await client.replies(2)] == [1, 2]


async def test_a_request_split_across_writes(inproc_server: MoviedbServer) -> None:
    line = json.dumps({"op": "hello", "id": "split"}).encode() + b"\n"
    async with asyncio.timeout(TIMEOUT), connect(inproc_server.port) as client:
        for i in range(len(line)):
            client.send(line[i : i + 1])
            await client.writer.drain()
        assert (await client.reply())["id"] == "split"


# --- limits ---------------------------------------------------------------------------------------


def hello_padded_to(length: int, request_id: int) -> bytes:
    line = json.dumps({"op": "hello", "id": request_id}).encode()
    return line + b" " * (length - len(line)) + b"\n"


async def test_line_over_the_limit_is_refused_and_the_connection_closed(launch: Launch) -> None:
    port = await launch(max_line=1024)
    async with asyncio.timeout(TIMEOUT):
        async with connect(port) as client:
            client.send(hello_padded_to(1024, 1))  # exactly at the limit: fine
            assert (await client.reply())["id"] == 1
            client.send(hello_padded_to(1025, 2))
            reply = await client.reply()
            assert_error(reply, protocol.LINE_TOO_LONG)
            assert "1024" in reply["error"]["message"]
            assert await client.closed_by_server()

        # An endless line without a newline is refused once it passes the limit.
        async with connect(port) as client:
            client.send(b'{"op":"hello","id":"' + b"x" * 2000)
            assert_error(await client.reply(), protocol.LINE_TOO_LONG)
            assert await client.closed_by_server()

        async with connect(port) as client:  # the server carries on
            await client.hello()


async def test_requests_before_a_long_line_are_still_answered(tmp_path: Path) -> None:
    server = MoviedbServer(tmp_path / "db.sqlite3", limits=Limits(max_line=1024))
    port = await server.start(HOST, [0])
    try:
        async with asyncio.timeout(TIMEOUT), connect(port) as client:
            client.send({"op": "hello", "id": 1}, hello_padded_to(2000, 2))
            first = await client.reply()
            assert first["id"] == 1
            assert first["ok"]
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "then",
    [
        b"y" * 2000 + b'\n{"op":"hello","id":"late"}\n',  # more of the line, then a request
        b"",  # just the end of the stream, in the middle of the long line
    ],
    ids=["more", "eof"],
)
async def test_nothing_more_is_said_after_a_long_line(
    tmp_path: Path, writer_gate: WriterGate, then: bytes
) -> None:
    """Once the line limit is broken the server answers what came before, once, then closes."""
    server = MoviedbServer(tmp_path / "db.sqlite3", limits=Limits(max_line=1024))
    port = await server.start(HOST, [0])
    try:
        async with asyncio.timeout(TIMEOUT), connect(port) as client:
            client.send(put(make("Alien", 1979), "w"))
            await wait_until(lambda: writer_gate.entered == 1)  # its reply must wait
            client.send(b"x" * 2000)  # over the limit, no newline
            await wait_until(lambda: any(c._eof for c in server.connections))  # refused
            client.send(then)
            await client.writer.drain()
            client.writer.write_eof()
            writer_gate.open()
            reply = await client.reply()
            assert reply["id"] == "w"
            assert reply["result"] == {"status": "applied"}
            assert_error(await client.reply(), protocol.LINE_TOO_LONG)
            assert await client.closed_by_server()
    finally:
        writer_gate.open()
        await server.stop()


async def test_partial_line_then_end_of_stream(launch: Launch) -> None:
    port = await launch()
    async with asyncio.timeout(TIMEOUT):
        async with connect(port) as client:
            client.send({"op": "hello", "id": 1}, b'{"op":"hel')
            await client.writer.drain()
            client.writer.write_eof()  # half-close: the replies still come back
            assert (await client.reply())["id"] == 1
            reply = await client.reply()
            assert_error(reply, protocol.BAD_JSON)
            assert "middle of a line" in reply["error"]["message"]
            assert await client.closed_by_server()

        async with connect(port) as client:  # a complete line then end of stream: no error
            client.send({"op": "hello", "id": 2})
            await client.writer.drain()
            client.writer.write_eof()
            assert (await client.reply())["id"] == 2
            assert await client.closed_by_server()

        async with connect(port) as client:  # a partial line then a hard close
            client.send(b'{"op":"put","id":3,"copy":{"key"')
            await client.writer.drain()

        async with connect(port) as client:  # the server is still there
            await client.hello()


async def test_a_write_still_answers_after_end_of_stream(
    tmp_path: Path, writer_gate: WriterGate
) -> None:
    server = MoviedbServer(tmp_path / "db.sqlite3")
    port = await server.start(HOST, [0])
    try:
        async with asyncio.timeout(TIMEOUT), connect(port) as client:
            client.send(put(make("Alien", 1979), 1), {"op": "get", "id": 2, "title": "alien"})
            await client.writer.drain()
            client.writer.write_eof()
            await wait_until(lambda: writer_gate.entered == 1)
            writer_gate.open()
            assert (await client.reply())["result"] == {"status": "applied"}
            assert len(copies_of(await client.reply())) == 1
            assert await client.closed_by_server()
    finally:
        writer_gate.open()
        await server.stop()


async def test_connections_over_the_maximum_are_refused(launch: Launch) -> None:
    port = await launch(max_connections=2)
    async with asyncio.timeout(TIMEOUT):
        async with connect(port) as first, connect(port) as second:
            await first.hello()
            await second.hello()
            async with connect(port) as third:
                reply = await third.reply()  # told without asking
                assert_error(reply, protocol.TOO_MANY_CONNECTIONS)
                assert "2" in reply["error"]["message"]
                assert await third.closed_by_server()
            await first.hello()  # the held ones are unaffected
        # Once they are gone, a new connection is served (after the server notices the close).
        while True:
            async with connect(port) as client:
                client.send({"op": "hello", "id": "again"})
                reply = await client.reply()
            if reply["ok"]:
                break
            assert_error(reply, protocol.TOO_MANY_CONNECTIONS)
            await asyncio.sleep(0.01)


async def test_idle_connections_are_closed(launch: Launch) -> None:
    idle_timeout = 0.3
    port = await launch(idle_timeout=idle_timeout)
    async with asyncio.timeout(TIMEOUT), connect(port) as silent, connect(port) as talker:
        started = time.monotonic()
        await talker.hello()
        assert await talker.closed_by_server()
        assert await silent.closed_by_server()
        assert time.monotonic() - started >= idle_timeout


async def test_a_busy_connection_is_not_idle(tmp_path: Path, writer_gate: WriterGate) -> None:
    """A connection waiting for its own reply is not closed for idleness."""
    idle_timeout = 0.2
    server = MoviedbServer(tmp_path / "db.sqlite3", limits=Limits(idle_timeout=idle_timeout))
    port = await server.start(HOST, [0])
    try:
        async with asyncio.timeout(TIMEOUT), connect(port) as client, connect(port) as idle:
            client.send(put(make("Alien", 1979), 1))
            await wait_until(lambda: writer_gate.entered == 1)
            assert await idle.closed_by_server()  # the idle timeout has passed...
            writer_gate.open()
            assert (await client.reply())["result"] == {"status": "applied"}  # ...yet it answered
    finally:
        writer_gate.open()
        await server.stop()


# --- many writers, group commit -------------------------------------------------------------------


async def test_concurrent_clients_are_all_acknowledged_in_fewer_commits(
    start_servers: StartServers,
) -> None:
    server = await start_one(start_servers)
    clients, each = 50, 10

    async def write(n: int) -> list[Json]:
        async with connect(server.port) as client:
            return [
                await client.request(put(make(f"Client {n} movie {i}", 2000), f"{n}/{i}"))
                for i in range(each)
            ]

    async with asyncio.timeout(TIMEOUT * 2):
        results = await asyncio.gather(*(write(n) for n in range(clients)))
        for n, replies in enumerate(results):
            assert [r["id"] for r in replies] == [f"{n}/{i}" for i in range(each)]
            assert all(r["result"] == {"status": "applied"} for r in replies)
        async with connect(server.port) as client:
            assert (await client.hello())["movies"] == clients * each

    code, out = await terminate(server)
    assert code == 0, out
    match = STOPPED.search(out)
    assert match, out
    writes, commits = int(match[1]), int(match[2])
    assert writes == clients * each
    assert 1 <= commits < writes


async def test_inproc_commit_count_is_below_write_count(inproc_server: MoviedbServer) -> None:
    async def write(n: int) -> Json:
        async with connect(inproc_server.port) as client:
            return await client.request(put(make(f"Movie {n}", 2000), n))

    async with asyncio.timeout(TIMEOUT):
        replies = await asyncio.gather(*(write(n) for n in range(50)))
    assert all(r["result"] == {"status": "applied"} for r in replies)
    committer = inproc_server.state.committer
    assert committer.writes == 50
    assert committer.commits < committer.writes
    assert committer.live_count == 50


# --- faults and stopping --------------------------------------------------------------------------


@pytest.mark.fault
async def test_sigkill_then_restart_keeps_every_acknowledged_write(
    start_servers: StartServers,
) -> None:
    server = await start_one(start_servers)
    acknowledged: dict[str, Copy] = {}
    enough = asyncio.Event()

    async def write(n: int) -> None:
        copies = [make(f"Writer {n} movie {i}", 2000) for i in range(500)]
        async with connect(server.port) as client:
            client.send(*[put(c, i) for i, c in enumerate(copies)])
            with contextlib.suppress(ConnectionError):
                while line := await client.reader.readline():
                    if not line.endswith(b"\n"):
                        break  # cut off by the kill
                    reply = json.loads(line)
                    assert reply["result"] == {"status": "applied"}, reply
                    copy = copies[reply["id"]]
                    acknowledged[copy.key] = copy
                    if len(acknowledged) >= 300:
                        enough.set()

    async with asyncio.timeout(TIMEOUT * 2):
        writers = [asyncio.create_task(write(n)) for n in range(4)]
        await enough.wait()
        await asyncio.to_thread(server.kill)  # SIGKILL while writes are still arriving
        await asyncio.gather(*writers)

    restarted = await asyncio.to_thread(server.restart)
    async with asyncio.timeout(TIMEOUT), connect(restarted.port) as client:
        wanted = list(acknowledged.values())
        client.send(
            *[
                {"op": "get", "id": i, "title": c.movie.title, "year": 2000}
                for i, c in enumerate(wanted)
            ]
        )
        replies = await client.replies(len(wanted))
        for copy, reply in zip(wanted, replies, strict=True):
            assert copies_of(reply) == [copy], f"acknowledged write lost: {copy.movie.title}"
        assert (await client.hello())["movies"] >= len(wanted)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_exits_cleanly(start_servers: StartServers, signum: int) -> None:
    server = await start_one(start_servers)
    alien = make("Alien", 1979)
    async with asyncio.timeout(TIMEOUT), connect(server.port) as idle:
        async with connect(server.port) as client:
            assert (await client.request(put(alien, 1)))["ok"]
        await idle.hello()
        code, out = await terminate(server, signum)
        assert await idle.closed_by_server()  # connections are closed, not left hanging
    assert code == 0, out
    assert f"moviedb-server {server.name}: stopping" in out
    assert f"moviedb-server {server.name}: stopped after 1 writes in 1 transactions" in out
    assert out.index("stopping") < out.index("stopped")

    restarted = await asyncio.to_thread(server.restart)
    async with asyncio.timeout(TIMEOUT), connect(restarted.port) as client:
        reply = await client.request({"op": "get", "id": 1, "title": "alien"})
        assert copies_of(reply) == [alien]


async def test_sigterm_finishes_requests_in_flight(start_servers: StartServers) -> None:
    server = await start_one(start_servers)
    copies = [make(f"In flight {i}", 2000) for i in range(200)]
    async with asyncio.timeout(TIMEOUT), connect(server.port) as client:
        client.send(*[put(c, i) for i, c in enumerate(copies)])
        replies = [await client.reply()]  # the server is at work on them
        server.signal(signal.SIGTERM)
        while line := await client.reader.readline():
            assert line.endswith(b"\n"), f"a reply was cut off: {line!r}"
            replies.append(json.loads(line))
        code, out = await exited(server)

    assert code == 0, out
    # Every reply came whole and in order; those it read were finished, not dropped.
    assert [r["id"] for r in replies] == list(range(len(replies)))
    applied = [r for r in replies if r["ok"]]
    assert all(r["result"] == {"status": "applied"} for r in applied)
    for r in replies[len(applied) :]:
        assert_error(r, protocol.SHUTTING_DOWN, r["id"])
    match = STOPPED.search(out)
    assert match, out
    assert int(match[1]) == len(applied)  # no write committed without its reply

    restarted = await asyncio.to_thread(server.restart)
    async with asyncio.timeout(TIMEOUT), connect(restarted.port) as client:
        assert (await client.hello())["movies"] == len(applied)


async def test_stop_finishes_requests_in_flight(tmp_path: Path, writer_gate: WriterGate) -> None:
    """Deterministic: the writes are held in the writer thread while the server is told to stop."""
    server = MoviedbServer(tmp_path / "db.sqlite3")
    port = await server.start(HOST, [0])
    stopping: asyncio.Task[None] | None = None
    copies = [make(f"In flight {i}", 2000) for i in range(60)]
    try:
        async with asyncio.timeout(TIMEOUT), connect(port) as client, connect(port) as other:
            await other.hello()
            client.send(put(copies[0], 0))
            await wait_until(lambda: writer_gate.entered == 1)  # the first commit is held
            client.send(*[put(c, i) for i, c in enumerate(copies[1:50], start=1)])
            client.send({"op": "hello", "id": "h"})
            await wait_until(lambda: server.state.counters.get("put") == 50)  # all were read
            assert len(server.in_flight) == 51

            stopping = asyncio.create_task(server.stop())
            await wait_until(lambda: server.stopping)
            writer_gate.allow()  # the first commit; the other 49 wait in the next one
            await wait_until(lambda: writer_gate.entered == 2)
            # A request that arrives while the server stops is refused at once, not half-done:
            # were it taken on, its write could commit after the connection had been closed.
            late = await other.request(put(copies[50], "late"))
            assert_error(late, protocol.SHUTTING_DOWN, "late")
            # The same on the busy connection, where the refusals queue behind the writes.
            client.send(*[put(c, i) for i, c in enumerate(copies[51:], start=51)])
            assert not stopping.done()  # still waiting for the held commit
            writer_gate.open()

            replies = await client.replies(51)
            assert [r["id"] for r in replies] == [*range(50), "h"]
            assert all(r["result"] == {"status": "applied"} for r in replies[:50])
            assert replies[50]["result"]["movies"] == 50
            while line := await client.reader.readline():
                reply = json.loads(line)
                assert_error(reply, protocol.SHUTTING_DOWN, reply["id"])
            assert await other.closed_by_server()
            await stopping
        assert server.state.committer.writes == 50  # no write done without its reply
    finally:
        writer_gate.open()
        if stopping is None:
            await server.stop()
    reopened = Store(tmp_path / "db.sqlite3")
    try:
        assert reopened.count_live() == 50
    finally:
        reopened.close()


# --- ports ----------------------------------------------------------------------------------------


async def test_taken_port_is_skipped(spawn: Callable[..., ServerProcess]) -> None:
    with taken_port() as taken:
        wanted = free_port()
        server = await asyncio.to_thread(spawn(f"{taken},{wanted}").wait_listening)
        assert server.port == wanted
        async with asyncio.timeout(TIMEOUT), connect(wanted) as client:
            await client.hello()


async def test_inproc_taken_port_is_skipped(tmp_path: Path) -> None:
    with taken_port() as taken:
        wanted = free_port()
        server = MoviedbServer(tmp_path / "db.sqlite3")
        assert await server.start(HOST, [taken, wanted]) == wanted
        try:
            assert server.port == wanted
        finally:
            await server.stop()


async def test_no_free_port_exits_with_status_2(spawn: Callable[..., ServerProcess]) -> None:
    with taken_port() as first, taken_port() as second:
        server = spawn(f"{first},{second}")
        assert server.proc is not None
        code = await asyncio.to_thread(server.proc.wait, TIMEOUT)
        assert server.proc.stdout is not None
        out = server.proc.stdout.read()
    assert code == 2
    assert b"listening" not in out
    message = server.log.read_text()
    assert "no free port on 127.0.0.1" in message
    assert describe([first, second]) in message  # names the ports it tried


async def test_inproc_no_free_port(tmp_path: Path) -> None:
    with taken_port() as taken:
        server = MoviedbServer(tmp_path / "db.sqlite3")
        with pytest.raises(NoFreePort) as info:
            await server.start(HOST, [taken])
    assert info.value.tried == [taken]
    assert str(taken) in str(info.value)
    assert not server.state.committer._thread.is_alive()  # storage was closed again


async def test_ports_file_is_used(tmp_path: Path, spawn: Callable[..., ServerProcess]) -> None:
    with taken_port() as taken:
        wanted = free_port()
        ports_file = tmp_path / "ports.txt"
        ports_file.write_text(
            f"# the cluster's ports\n\n{taken}   # taken by the test\n{wanted}\n", encoding="utf-8"
        )
        # --ports-file wins over --ports (which ServerProcess always passes, as "0").
        server = spawn("0", "--ports-file", str(ports_file))
        await asyncio.to_thread(server.wait_listening)
        assert server.port == wanted


async def test_database_that_cannot_be_opened_exits_with_status_1(
    tmp_path: Path, spawn: Callable[..., ServerProcess]
) -> None:
    server = spawn("0", "--db", str(tmp_path / "missing-dir" / "db.sqlite3"))
    assert server.proc is not None
    assert await asyncio.to_thread(server.proc.wait, TIMEOUT) == 1
    assert "cannot open the database" in server.log.read_text()


@pytest.mark.parametrize(("max_batch", "commits"), [(1000, 2), (1, 10), (4, 4)])
async def test_max_batch_caps_the_writes_of_a_commit(
    tmp_path: Path, writer_gate: WriterGate, max_batch: int, commits: int
) -> None:
    """Ten writes queue up behind a commit held at the gate: then they are committed together
    (the default), one commit each (--max-batch 1), or in commits of at most four."""
    server = MoviedbServer(tmp_path / "db.sqlite3", limits=Limits(max_batch=max_batch))
    await server.start(HOST, [0])
    try:
        async with asyncio.timeout(TIMEOUT), connect(server.port) as client:
            client.send(put(make("First", 2000), 0))
            await wait_until(lambda: writer_gate.entered == 1)
            client.send(*[put(make(f"Movie {i}", 2000), i) for i in range(1, 10)])
            await wait_until(lambda: server.state.counters.get("put", 0) == 10)
            writer_gate.open()
            replies = await client.replies(10)
        assert [r["result"]["status"] for r in replies] == ["applied"] * 10
        committer = server.state.committer
        assert (committer.writes, committer.commits) == (10, commits)
    finally:
        await server.stop()
