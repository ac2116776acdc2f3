"""Cluster and Connection against real servers on loopback: fan-out, statuses, faults, reconnects.

Most tests run servers in-process (on the test's own event loop); the fault tests run
`moviedb-server` subprocesses, which they SIGKILL, SIGSTOP and restart by their PID. Every wait
is on a condition under an overall timeout; no test pauses for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from moviedb.client import Address, Cluster, ReadStatus, WriteStatus
from moviedb.errors import InvalidAddress, ServerUnavailable
from moviedb.model import Movie, validate
from moviedb.server.app import Limits, MoviedbServer
from moviedb.versions import Copy, child, first_copy
from tests.conftest import ServerProcess, StartServers
from tests.faultkit import until

HOST = "127.0.0.1"
TIMEOUT = 15.0  # an overall bound on each wait; never a pause
QUICK = 0.3  # the cluster's per-server timeout where a server is meant to time out


def make(title: str, year: int | None = 1979, **fields: Any) -> Copy:
    return first_copy(validate(Movie(title=title, year=year, **fields)))


def edit(parent: Copy, **fields: Any) -> Copy:
    return child([parent], validate(msgspec.structs.replace(parent.movie, **fields)))


def address_of(server: MoviedbServer | ServerProcess) -> Address:
    return Address(HOST, server.port)


def statuses(results: list[Any]) -> list[Any]:
    return [r.status for r in results]


async def holds(cluster: Cluster, copy: Copy) -> list[bool]:
    """For each of the cluster's servers: does it answer with this very revision?"""
    results = await cluster.get(copy.movie.title, copy.movie.year)
    return [any(c.rev == copy.rev for c in r.copies) for r in results]


async def start(start_servers: StartServers, count: int) -> list[ServerProcess]:
    return await asyncio.to_thread(start_servers, count)


@pytest.fixture
async def local_servers(tmp_path: Path) -> AsyncIterator[list[MoviedbServer]]:
    """Three servers on the test's event loop, each with its own database and free port."""
    servers: list[MoviedbServer] = []
    try:
        for i in range(3):
            server = MoviedbServer(tmp_path / f"local{i}.sqlite3", name=f"local{i}")
            await server.start(HOST, [0])
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            await server.stop()


ALIEN = make("Alien", 1979, director="Ridley Scott", rating=8.1)


# --- reads ----------------------------------------------------------------------------------------


async def test_get_answers_once_per_server_in_list_order(
    local_servers: list[MoviedbServer],
) -> None:
    s0, s1, s2 = map(address_of, local_servers)
    async with asyncio.timeout(TIMEOUT), Cluster([s2, s0, s1]) as cluster:
        written = await cluster.put({s0: ALIEN, s2: ALIEN})
        assert statuses(written) == [WriteStatus.APPLIED] * 2
        results = await cluster.get("Alien")
    assert [r.server for r in results] == [s2, s0, s1]
    assert statuses(results) == [ReadStatus.FOUND, ReadStatus.FOUND, ReadStatus.MISSING]
    assert [r.copies for r in results] == [[ALIEN], [ALIEN], []]
    for result in results:
        assert result.answered
        assert result.error is None
        assert result.latency is not None
        assert result.latency >= 0


async def test_get_folds_the_title_and_filters_by_year(
    local_servers: list[MoviedbServer],
) -> None:
    s0 = address_of(local_servers[0])
    kong_1933, kong_2005 = make("King Kong", 1933), make("King Kong", 2005)
    gone = child([kong_2005], kong_2005.movie, deleted=True)
    async with asyncio.timeout(TIMEOUT), Cluster([s0]) as cluster:
        for copy in (kong_1933, kong_2005, gone):
            assert statuses(await cluster.put({s0: copy})) == [WriteStatus.APPLIED]
        (both,) = await cluster.get("KING  kong!")
        (one,) = await cluster.get("king kong", 1933)
        (none,) = await cluster.get("King Kong", 1976)
    assert both.status is ReadStatus.FOUND
    assert both.copies == [kong_1933, gone]  # key order, the tombstone included
    assert one.copies == [kong_1933]
    assert none.status is ReadStatus.MISSING
    assert none.copies == []


async def test_a_reply_the_client_cannot_decode_is_that_servers_error(
    local_servers: list[MoviedbServer],
) -> None:
    """One server's database holds a copy with a member this client does not know (as a newer
    version might write; the server sends stored copies as they are)."""
    addresses = list(map(address_of, local_servers))
    async with asyncio.timeout(TIMEOUT), Cluster(addresses) as cluster:
        assert (
            statuses(await cluster.put(dict.fromkeys(addresses, ALIEN)))
            == [WriteStatus.APPLIED] * 3
        )
        document = msgspec.json.decode(msgspec.json.encode(ALIEN))
        document["supersedes"] = []
        with contextlib.closing(sqlite3.connect(local_servers[1].db_path)) as db, db:
            db.execute(
                "UPDATE movies SET doc = ? WHERE key = ?",
                (msgspec.json.encode(document), ALIEN.key),
            )
        results = await cluster.get("Alien")
    assert statuses(results) == [ReadStatus.FOUND, ReadStatus.ERROR, ReadStatus.FOUND]


def test_cluster_takes_addresses_or_their_text() -> None:
    cluster = Cluster(["127.0.0.1:7001", Address("::1", 7002)], timeout=0.5)
    assert cluster.servers == [Address("127.0.0.1", 7001), Address("::1", 7002)]
    assert cluster.timeout == 0.5
    with pytest.raises(InvalidAddress):
        Cluster(["127.0.0.1"])


# --- writes ---------------------------------------------------------------------------------------


async def test_put_statuses(local_servers: list[MoviedbServer]) -> None:
    s0, s1, _ = map(address_of, local_servers)
    rated = edit(ALIEN, rating=8.5)
    plotted = edit(ALIEN, plot="In space no one can hear you scream.")  # concurrent with rated
    async with asyncio.timeout(TIMEOUT), Cluster([s0, s1]) as cluster:
        first = await cluster.put({s1: ALIEN, s0: ALIEN})
        assert [r.server for r in first] == [s1, s0]  # in the order of the writes
        assert statuses(first) == [WriteStatus.APPLIED] * 2
        assert all(r.stored and r.current is None and r.error is None for r in first)

        again = await cluster.put({s0: ALIEN, s1: ALIEN})
        assert statuses(again) == [WriteStatus.UNCHANGED] * 2
        assert all(r.stored and r.current is None for r in again)

        (newer,) = await cluster.put({s0: rated})
        assert newer.status is WriteStatus.APPLIED

        stale, applied = await cluster.put({s0: ALIEN, s1: rated})
        assert stale.status is WriteStatus.STALE
        assert stale.current == rated
        assert not stale.stored
        assert applied.status is WriteStatus.APPLIED

        (conflict,) = await cluster.put({s1: plotted})
        assert conflict.status is WriteStatus.CONFLICT
        assert conflict.current == rated
        assert not conflict.stored

        resolved = child([rated, plotted], validate(rated.movie))
        assert (
            statuses(await cluster.put({s0: resolved, s1: resolved})) == [WriteStatus.APPLIED] * 2
        )
        assert await holds(cluster, resolved) == [True, True]


async def test_a_refused_put_is_an_error_and_the_connection_survives(
    local_servers: list[MoviedbServer],
) -> None:
    s0 = address_of(local_servers[0])
    wrong_key = msgspec.structs.replace(ALIEN, key="aliens\x1f1986")
    async with asyncio.timeout(TIMEOUT), Cluster([s0]) as cluster:
        (refused,) = await cluster.put({s0: wrong_key})
        assert refused.status is WriteStatus.ERROR
        assert refused.error is not None
        assert "does not match the title and year" in refused.error
        assert not refused.stored
        (result,) = await cluster.get("Alien")
        assert result.status is ReadStatus.MISSING  # nothing was stored
        assert len(local_servers[0].connections) == 1  # the same connection answered


# --- hello, list_page, scan -----------------------------------------------------------------------


async def test_hello_names_each_server(local_servers: list[MoviedbServer]) -> None:
    servers = list(map(address_of, local_servers))
    async with asyncio.timeout(TIMEOUT), Cluster(servers) as cluster:
        await cluster.put({servers[0]: ALIEN, servers[1]: ALIEN})
        other = make("Heat", 1995)
        await cluster.put({servers[0]: other})
        await cluster.put({servers[0]: child([other], other.movie, deleted=True)})
        infos = await cluster.hello()
    assert [i.server for i in infos] == servers
    assert [i.up for i in infos] == [True] * 3
    assert [i.name for i in infos] == ["local0", "local1", "local2"]
    assert [i.server_id for i in infos] == [s.state.server_id for s in local_servers]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i.server_id or "") for i in infos)
    assert [i.movies for i in infos] == [1, 1, 0]  # live movies: a tombstone is not counted
    assert all(i.latency is not None and i.latency >= 0 for i in infos)
    assert all(i.error is None for i in infos)


async def test_scan_pages_through_a_catalog(local_servers: list[MoviedbServer]) -> None:
    s0, s1, _ = map(address_of, local_servers)
    copies = [make(f"Movie {i}", 1990 + i % 7) for i in range(23)]
    copies[4] = child([copies[4]], copies[4].movie, deleted=True)  # tombstones are listed too
    async with asyncio.timeout(TIMEOUT), Cluster([s0, s1]) as cluster:
        written = await asyncio.gather(*(cluster.put({s0: c}) for c in copies))
        assert {r.status for (r,) in written} == {WriteStatus.APPLIED}

        scanned = [c async for c in cluster.scan(s0, page_size=5)]
        assert [c.key for c in scanned] == sorted(c.key for c in copies)
        assert sorted(scanned, key=lambda c: c.key) == sorted(copies, key=lambda c: c.key)

        first = await cluster.list_page(s0, None, 5)
        assert [c.key for c in first.copies] == [c.key for c in scanned[:5]]
        assert first.next == scanned[4].key
        second = await cluster.list_page(s0, first.next, 5)
        assert [c.key for c in second.copies] == [c.key for c in scanned[5:10]]
        last = await cluster.list_page(s0, scanned[19].key, 5)
        assert [c.key for c in last.copies] == [c.key for c in scanned[20:]]
        assert last.next is None

        assert [c async for c in cluster.scan(s1, page_size=5)] == []  # an empty catalog


# --- one connection per server --------------------------------------------------------------------


async def test_concurrent_first_requests_share_one_connection(
    local_servers: list[MoviedbServer],
) -> None:
    """Many requests before any connection exists: one connection, replies matched in order."""
    server = local_servers[0]
    s0 = address_of(server)
    movies = [make(f"Title {i}", 2000) for i in range(20)]
    assert not server.connections
    async with asyncio.timeout(TIMEOUT), Cluster([s0]) as cluster:
        written = await asyncio.gather(*(cluster.put({s0: m}) for m in movies))
        assert len(server.connections) == 1
        assert {r.status for (r,) in written} == {WriteStatus.APPLIED}
        read = await asyncio.gather(*(cluster.get(m.movie.title) for m in movies))
        assert [r.copies for (r,) in read] == [[m] for m in movies]
        await cluster.hello()
        assert len(server.connections) == 1
    await until(lambda: not server.connections)  # closed by aclose()


async def test_reconnects_after_the_server_closes_an_idle_connection(tmp_path: Path) -> None:
    server = MoviedbServer(tmp_path / "idle.sqlite3", limits=Limits(idle_timeout=0.2))
    await server.start(HOST, [0])
    try:
        s0 = address_of(server)
        async with asyncio.timeout(TIMEOUT), Cluster([s0]) as cluster:
            assert statuses(await cluster.put({s0: ALIEN})) == [WriteStatus.APPLIED]
            await until(lambda: not server.connections)  # the server closed it
            (result,) = await cluster.get("Alien")
            assert result.status is ReadStatus.FOUND
            (again,) = await cluster.put({s0: ALIEN})
            assert again.status is WriteStatus.UNCHANGED
    finally:
        await server.stop()


async def test_a_request_racing_the_servers_close_is_sent_once_more(
    local_servers: list[MoviedbServer],
) -> None:
    """The server closes the connection (as its idle timeout does) and the request goes out
    before the client has seen the close: it is lost, so it is sent again on a new one."""
    server = local_servers[0]
    s0 = address_of(server)
    async with asyncio.timeout(TIMEOUT), Cluster([s0]) as cluster:
        assert statuses(await cluster.put({s0: ALIEN})) == [WriteStatus.APPLIED]
        (connection,) = server.connections
        connection.close()  # no await until the request is written: the client cannot know
        (result,) = await cluster.get("Alien")
        assert result.status is ReadStatus.FOUND
        assert result.copies == [ALIEN]
        (connection,) = server.connections
        connection.close()
        (again,) = await cluster.put({s0: ALIEN})
        assert again.status is WriteStatus.UNCHANGED


async def test_a_refused_connection_is_an_error(tmp_path: Path) -> None:
    """A server at its connection limit answers `too_many_connections` and closes."""
    server = MoviedbServer(tmp_path / "full.sqlite3", limits=Limits(max_connections=1))
    await server.start(HOST, [0])
    try:
        s0 = address_of(server)
        async with asyncio.timeout(TIMEOUT), Cluster([s0]) as holder, Cluster([s0]) as late:
            assert statuses(await holder.put({s0: ALIEN})) == [WriteStatus.APPLIED]
            (read,) = await late.get("Alien")
            assert read.status is ReadStatus.ERROR
            assert not read.answered
            assert read.error is not None
            assert read.error.startswith("too_many_connections: ")
            (write,) = await late.put({s0: edit(ALIEN, rating=9.0)})
            assert write.status is WriteStatus.ERROR
            (info,) = await late.hello()
            assert not info.up
            assert info.error is not None
            assert "too_many_connections" in info.error
            (still,) = await holder.get("Alien")
            assert still.copies == [ALIEN]  # the refused write changed nothing
    finally:
        await server.stop()


async def test_a_server_that_is_not_there(tmp_path: Path) -> None:
    """A port nobody listens on: unreachable at once, for every operation."""
    server = MoviedbServer(tmp_path / "gone.sqlite3")
    await server.start(HOST, [0])
    await server.stop()  # its port is closed now
    gone = address_of(server)
    async with asyncio.timeout(TIMEOUT), Cluster([gone], timeout=TIMEOUT) as cluster:
        (read,) = await cluster.get("Alien")
        assert read.status is ReadStatus.UNREACHABLE
        assert not read.answered
        assert read.error is not None
        assert str(gone) in read.error
        (write,) = await cluster.put({gone: ALIEN})
        assert write.status is WriteStatus.UNREACHABLE  # never sent: certainly not applied
        assert not write.stored
        (info,) = await cluster.hello()
        assert not info.up
        assert info.error is not None
        assert str(gone) in info.error
        with pytest.raises(ServerUnavailable, match=re.escape(str(gone))):
            await cluster.list_page(gone, None)


# --- faults: real processes, killed, stopped, restarted -------------------------------------------


@pytest.mark.fault
async def test_a_killed_server_is_unreachable_and_the_others_answer(
    start_servers: StartServers,
) -> None:
    servers = await start(start_servers, 3)
    addresses = list(map(address_of, servers))
    dead = addresses[1]
    async with asyncio.timeout(TIMEOUT), Cluster(addresses, timeout=5.0) as cluster:
        written = await cluster.put(dict.fromkeys(addresses, ALIEN))
        assert statuses(written) == [WriteStatus.APPLIED] * 3  # every connection is open
        servers[1].kill()

        results = await cluster.get("Alien")
        assert statuses(results) == [ReadStatus.FOUND, ReadStatus.UNREACHABLE, ReadStatus.FOUND]
        assert results[1].error is not None
        assert str(dead) in results[1].error
        assert results[1].copies == []

        rated = edit(ALIEN, rating=8.5)
        written = await cluster.put(dict.fromkeys(addresses, rated))
        assert statuses(written) == [
            WriteStatus.APPLIED,
            WriteStatus.UNREACHABLE,
            WriteStatus.APPLIED,
        ]
        assert written[1].error is not None

        infos = await cluster.hello()
        assert [i.up for i in infos] == [True, False, True]
        assert [i.name for i in infos] == ["s0", None, "s2"]

        with pytest.raises(ServerUnavailable, match=re.escape(str(dead))):
            await cluster.list_page(dead, None)
        with pytest.raises(ServerUnavailable, match=re.escape(str(dead))):
            _ = [c async for c in cluster.scan(dead)]
        assert len((await cluster.list_page(addresses[0], None)).copies) == 1


@pytest.mark.fault
async def test_a_stopped_server_times_out_and_a_write_to_it_is_unknown(
    start_servers: StartServers,
) -> None:
    servers = await start(start_servers, 3)
    addresses = list(map(address_of, servers))
    hung = servers[1]
    rated = edit(ALIEN, rating=8.5)
    async with Cluster(addresses, timeout=QUICK) as cluster:
        async with asyncio.timeout(TIMEOUT):
            assert (
                statuses(await cluster.put(dict.fromkeys(addresses, ALIEN)))
                == [WriteStatus.APPLIED] * 3
            )
        hung.signal(signal.SIGSTOP)
        try:
            async with asyncio.timeout(QUICK + 10):  # a guard: the calls return near QUICK
                results = await cluster.get("Alien")
            assert statuses(results) == [ReadStatus.FOUND, ReadStatus.TIMEOUT, ReadStatus.FOUND]
            assert results[1].error == f"no answer within {QUICK:g} s"
            assert not results[1].answered
            assert results[0].copies == results[2].copies == [ALIEN]

            async with asyncio.timeout(QUICK + 10):
                written = await cluster.put(dict.fromkeys(addresses, rated))
            assert statuses(written) == [
                WriteStatus.APPLIED,
                WriteStatus.UNKNOWN,
                WriteStatus.APPLIED,
            ]
            assert not written[1].stored  # not known to be stored, nor known to have failed

            async with asyncio.timeout(QUICK + 10):
                infos = await cluster.hello()
            assert [i.up for i in infos] == [True, False, True]
        finally:
            hung.signal(signal.SIGCONT)

        # "Unknown" is meant: the write was sent and the server, running again, applies it.
        # The cluster reconnects after the timeouts closed its connection.
        async def all_hold_rated() -> bool:
            return await holds(cluster, rated) == [True] * 3

        await until(all_hold_rated)
        async with asyncio.timeout(TIMEOUT):
            assert statuses(await cluster.get("Alien")) == [ReadStatus.FOUND] * 3


@pytest.mark.fault
async def test_put_reaches_every_server_without_waiting_for_the_others(
    start_servers: StartServers,
) -> None:
    """Every server is stopped; only the last one is continued, and it gets the write while
    the first two have not answered. One at a time, it would wait for them forever."""
    servers = await start(start_servers, 3)
    addresses = list(map(address_of, servers))
    async with Cluster(addresses, timeout=TIMEOUT) as cluster, Cluster([addresses[2]]) as last:
        for server in servers:
            server.signal(signal.SIGSTOP)
        try:
            writing = asyncio.create_task(cluster.put(dict.fromkeys(addresses, ALIEN)))
            servers[2].signal(signal.SIGCONT)

            async def last_holds_it() -> bool:
                return await holds(last, ALIEN) == [True]

            await until(last_holds_it)
            assert not writing.done()
        finally:
            for server in servers:
                server.signal(signal.SIGCONT)
        async with asyncio.timeout(TIMEOUT):
            written = await writing
        assert statuses(written) == [WriteStatus.APPLIED] * 3


@pytest.mark.fault
async def test_get_reaches_every_server_without_waiting_for_the_others(
    start_servers: StartServers, inproc_server: MoviedbServer
) -> None:
    """The first server is stopped; the second (in-process) one is connected to all the same."""
    (stopped,) = await start(start_servers, 1)
    addresses = [address_of(stopped), address_of(inproc_server)]
    async with Cluster(addresses[1:]) as writer:
        assert statuses(await writer.put({addresses[1]: ALIEN})) == [WriteStatus.APPLIED]
    await until(lambda: not inproc_server.connections)
    async with Cluster(addresses, timeout=TIMEOUT) as cluster:  # no connection yet
        stopped.signal(signal.SIGSTOP)
        try:
            reading = asyncio.create_task(cluster.get("Alien"))
            await until(lambda: bool(inproc_server.connections))
            assert not reading.done()
        finally:
            stopped.signal(signal.SIGCONT)
        async with asyncio.timeout(TIMEOUT):
            results = await reading
    assert statuses(results) == [ReadStatus.MISSING, ReadStatus.FOUND]


@pytest.mark.fault
async def test_reconnects_after_a_restart_on_the_same_port(start_servers: StartServers) -> None:
    (server,) = await start(start_servers, 1)
    address = address_of(server)
    async with Cluster([address], timeout=5.0) as cluster:
        async with asyncio.timeout(TIMEOUT):
            assert statuses(await cluster.put({address: ALIEN})) == [WriteStatus.APPLIED]
            (before,) = await cluster.hello()
        await asyncio.to_thread(server.restart)  # SIGKILL, then the same database and port
        assert address_of(server) == address
        async with asyncio.timeout(TIMEOUT):
            (result,) = await cluster.get("Alien")  # the same Cluster, no error in between
            (after,) = await cluster.hello()
    assert result.status is ReadStatus.FOUND
    assert result.copies == [ALIEN]  # acknowledged before the SIGKILL, so it survived
    assert after.up
    assert after.server_id == before.server_id
