"""The durable write queue: real SQLite files in tmp_path, and replay against real servers."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moviedb.client.address import Address
from moviedb.client.cluster import Cluster, WriteResult, WriteStatus
from moviedb.client.queue import (
    FILE_NAME,
    PendingSummary,
    QueuedWrite,
    WriteQueue,
    needs_queueing,
    replay,
)
from moviedb.model import Movie, validate
from moviedb.server.app import MoviedbServer
from moviedb.versions import Copy, Decision, Relation, child, compare, decide, first_copy
from tests.conftest import StartServers

HOST = "127.0.0.1"
TIMEOUT = 15.0  # an overall bound for each test's network exchanges; never a pause
A = Address(HOST, 7001)
B = Address(HOST, 7002)


def make(title: str, year: int | None = 2000, **fields: Any) -> Copy:
    return first_copy(validate(Movie(title=title, year=year, **fields)))


def edit(parent: Copy, **fields: Any) -> Copy:
    return child([parent], validate(msgspec.structs.replace(parent.movie, **fields)))


def revs(entries: list[QueuedWrite]) -> list[tuple[Address, str, str, str]]:
    return [(e.server, e.key, e.rev, e.state) for e in entries]


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[WriteQueue]:
    with WriteQueue(tmp_path / "state") as q:
        yield q


# --- the file -------------------------------------------------------------------------------------


def test_created_on_first_use_with_wal_and_full_sync(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "state"
    with WriteQueue(directory) as q:
        assert q.path == directory / FILE_NAME
        assert not directory.exists()  # nothing is created until the queue is used
        assert q.count() == 0
        assert q.path.is_file()
        assert q.migrations() == ["0001_writes"]
        assert q._open().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(q.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_file_path_is_used_as_it_is(tmp_path: Path) -> None:
    with WriteQueue(tmp_path / "elsewhere.sqlite3") as q:
        q.add(A, make("Alien", 1979), "unreachable", now=1.0)
        assert q.path == tmp_path / "elsewhere.sqlite3"
        assert q.path.is_file()


def test_the_default_is_the_client_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVIEDB_STATE_DIR", str(tmp_path / "state"))
    with WriteQueue() as q:
        assert q.path == tmp_path / "state" / FILE_NAME


def test_reopening_runs_no_migration_twice(tmp_path: Path) -> None:
    for _ in range(2):
        with WriteQueue(tmp_path) as q:
            assert q.migrations() == ["0001_writes"]


def test_copies_are_stored_as_json(queue: WriteQueue) -> None:
    alien = make("Alien", 1979, director="Ridley Scott")
    queue.add(A, alien, "unreachable", now=1.0)
    with sqlite3.connect(queue.path) as db:
        (doc,) = db.execute("SELECT doc FROM writes").fetchone()
    db.close()
    assert msgspec.json.decode(doc, type=Copy) == alien
    assert msgspec.json.decode(doc)["movie"]["director"] == "Ridley Scott"


# --- adding and replacing -------------------------------------------------------------------------


def test_add_keeps_everything_about_the_write(queue: WriteQueue) -> None:
    alien = make("Alien", 1979)
    queue.add(A, alien, "unknown", now=10.0, error="no answer within 2 s")
    assert queue.entries() == [
        QueuedWrite(A, alien, "unknown", 10.0, 0, "no answer within 2 s", "queued")
    ]


def test_a_newer_write_replaces_the_queued_one_and_keeps_its_age(queue: WriteQueue) -> None:
    v1 = make("Alien", 1979)
    v2 = edit(v1, director="Ridley Scott")
    queue.add(A, v1, "unreachable", now=10.0)
    queue.mark_attempt(A, v1.key, v1.rev, "refused")
    queue.add(A, v2, "unknown", now=20.0)
    (entry,) = queue.entries()
    assert entry.copy == v2
    assert (entry.reason, entry.queued_at, entry.attempts) == ("unknown", 10.0, 1)


def test_an_older_or_the_same_write_does_not_replace_a_newer_one(queue: WriteQueue) -> None:
    v1 = make("Alien", 1979)
    v2 = edit(v1, director="Ridley Scott")
    queue.add(A, v2, "unreachable", now=10.0)
    queue.add(A, v1, "unknown", now=20.0)
    queue.add(A, v2, "error", now=30.0)
    assert [(e.copy, e.reason, e.queued_at) for e in queue.entries()] == [(v2, "unreachable", 10.0)]


def test_a_conflicting_later_write_is_queued_beside_the_other(queue: WriteQueue) -> None:
    """Neither may be dropped: when no server acknowledged either, the queue holds the only
    record of each. A write superseding both then replaces both."""
    base = make("Alien", 1979)
    left, right = edit(base, director="Ridley Scott"), edit(base, director="R. Scott")
    assert compare(left, right) is Relation.CONFLICT
    queue.add(A, left, "unreachable", now=10.0)
    queue.add(A, right, "unreachable", now=20.0)
    assert [e.copy for e in queue.entries()] == [left, right]
    resolution = child([left, right], msgspec.structs.replace(left.movie, director="RS"))
    queue.add(A, resolution, "unreachable", now=30.0)
    assert [(e.copy, e.queued_at) for e in queue.entries()] == [(resolution, 10.0)]


def test_one_entry_per_server_and_movie(queue: WriteQueue) -> None:
    alien, heat = make("Alien", 1979), make("Heat", 1995)
    queue.add(A, alien, "unreachable", now=1.0)
    queue.add(B, alien, "unreachable", now=2.0)
    queue.add(A, heat, "unreachable", now=3.0)
    queue.add(A, alien, "unreachable", now=4.0)
    assert [(e.server, e.copy) for e in queue.entries()] == [(A, alien), (B, alien), (A, heat)]


def test_entries_are_oldest_first_per_server_and_limited(queue: WriteQueue) -> None:
    copies = [make(f"Movie {i}") for i in range(5)]
    for i, copy in reversed(list(enumerate(copies))):
        queue.add(A if i % 2 else B, copy, "unreachable", now=float(i))
    assert [e.copy for e in queue.entries()] == copies
    assert [e.copy for e in queue.entries(A)] == [copies[1], copies[3]]
    assert [e.copy for e in queue.entries(B, limit=2)] == [copies[0], copies[2]]
    assert queue.entries(Address(HOST, 1)) == []


def test_summary_and_count(queue: WriteQueue) -> None:
    assert queue.summary() == {}
    alien, heat, ran = make("Alien", 1979), make("Heat", 1995), make("Ran", 1985)
    queue.add(A, alien, "unreachable", now=5.0)
    queue.add(A, heat, "unreachable", now=3.0)
    queue.add(B, ran, "unknown", now=7.0)
    queue.mark_conflict(A, heat.key, heat.rev, "2-abc")
    assert queue.summary() == {
        A: PendingSummary(count=2, conflicts=1, oldest=3.0),
        B: PendingSummary(count=1, conflicts=0, oldest=7.0),
    }
    assert queue.summary()[A].queued == 1
    assert (queue.count(), queue.count(A), queue.count(B)) == (3, 2, 1)
    assert queue.count(A, state="conflict") == 1
    assert queue.count(state="queued") == 2


# --- outcomes -------------------------------------------------------------------------------------


def test_remove_only_the_revision_that_was_sent(queue: WriteQueue) -> None:
    v1 = make("Alien", 1979)
    v2 = edit(v1, director="Ridley Scott")
    queue.add(A, v1, "unreachable", now=1.0)
    queue.add(A, v2, "unreachable", now=2.0)  # queued while v1 was being replayed
    assert not queue.remove(A, v1.key, v1.rev)
    assert [e.copy for e in queue.entries()] == [v2]
    assert queue.remove(A, v2.key, v2.rev)
    assert queue.entries() == []


def test_mark_attempt_counts_and_keeps_the_error(queue: WriteQueue) -> None:
    alien = make("Alien", 1979)
    queue.add(A, alien, "unreachable", now=1.0)
    assert queue.mark_attempt(A, alien.key, alien.rev, "refused")
    assert queue.mark_attempt(A, alien.key, alien.rev, "timed out")
    assert not queue.mark_attempt(A, alien.key, "9-0000000000000000", "other revision")
    (entry,) = queue.entries()
    assert (entry.attempts, entry.last_error, entry.state) == (2, "timed out", "queued")


def test_a_conflict_is_kept_until_a_resolution_supersedes_it(queue: WriteQueue) -> None:
    base = make("Alien", 1979)
    mine, theirs = edit(base, director="Ridley Scott"), edit(base, director="R. Scott")
    queue.add(A, mine, "unknown", now=1.0)
    assert queue.mark_conflict(A, mine.key, mine.rev, theirs.rev)
    (entry,) = queue.entries()
    assert (entry.state, entry.current_rev) == ("conflict", theirs.rev)

    queue.add(A, base, "unknown", now=2.0)  # older: the conflict stays
    assert revs(queue.entries()) == [(A, mine.key, mine.rev, "conflict")]

    resolution = child([mine, theirs], validate(Movie(title="Alien", year=1979, director="RS")))
    queue.add(A, resolution, "unknown", now=3.0)
    (entry,) = queue.entries()
    assert (entry.copy, entry.state, entry.current_rev, entry.queued_at) == (
        resolution,
        "queued",
        None,
        1.0,
    )


def test_drop_superseded_removes_what_the_copy_supersedes_or_equals(queue: WriteQueue) -> None:
    base = make("Alien", 1979)
    v2 = edit(base, director="Ridley Scott")
    branch = edit(base, director="R. Scott")
    v3 = edit(v2, runtime_min=117)
    c = Address(HOST, 7003)
    d = Address(HOST, 7004)
    queue.add(A, base, "unreachable", now=1.0)
    queue.add(B, v2, "unreachable", now=2.0)
    queue.add(c, branch, "unreachable", now=3.0)
    queue.add(d, v3, "unreachable", now=4.0)
    queue.add(A, make("Heat", 1995), "unreachable", now=5.0)
    assert queue.drop_superseded(base.key, v2) == 2
    assert [(e.server, e.copy) for e in queue.entries()] == [
        (c, branch),
        (d, v3),
        (A, make("Heat", 1995)),
    ]


def test_drop_server(queue: WriteQueue) -> None:
    for i in range(3):
        queue.add(A, make(f"Movie {i}"), "unreachable", now=float(i))
    queue.add(B, make("Heat", 1995), "unreachable", now=9.0)
    assert queue.drop_server(A) == 3
    assert queue.drop_server(A) == 0
    assert list(queue.summary()) == [B]


# --- durability and sharing -----------------------------------------------------------------------


def test_entries_survive_reopening(tmp_path: Path) -> None:
    alien = make("Alien", 1979)
    with WriteQueue(tmp_path) as q:
        q.add(A, alien, "unknown", now=1.0)
        q.mark_attempt(A, alien.key, alien.rev, "timed out")
    with WriteQueue(tmp_path) as q:
        assert q.entries() == [QueuedWrite(A, alien, "unknown", 1.0, 1, "timed out", "queued")]


def test_two_queues_on_one_file_see_each_other(tmp_path: Path) -> None:
    v1 = make("Alien", 1979)
    v2 = edit(v1, director="Ridley Scott")
    with WriteQueue(tmp_path) as first, WriteQueue(tmp_path) as second:
        first.add(A, v2, "unreachable", now=1.0)
        second.add(A, v1, "unreachable", now=2.0)  # older than what the first one queued
        second.add(B, v1, "unreachable", now=3.0)
        assert (
            revs(first.entries())
            == revs(second.entries())
            == [
                (A, v1.key, v2.rev, "queued"),
                (B, v1.key, v1.rev, "queued"),
            ]
        )
        assert first.remove(B, v1.key, v1.rev)
        assert second.count() == 1


WRITER = """
import sys
from moviedb.client.address import Address
from moviedb.client.queue import WriteQueue
from moviedb.model import Movie
from moviedb.versions import child, first_copy

path, tag, parity, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
server = Address("127.0.0.1", 7001)
chain = [first_copy(Movie(title="Shared", year=2000))]
for i in range(1, 10):
    chain.append(child([chain[-1]], Movie(title="Shared", year=2000, director=str(i))))
with WriteQueue(path) as queue:
    for i in range(count):
        queue.add(server, first_copy(Movie(title=f"{tag} {i}", year=2000)), "unknown", now=i)
        if i < len(chain) and i % 2 == parity:
            queue.add(server, chain[i], "unknown", now=i)
"""


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME  # not there yet: the two race to create it too
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(parity), "60"])
        for parity, tag in enumerate(["even", "odd"])
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    with WriteQueue(path) as q:
        entries = q.entries()
    assert len(entries) == 121
    (shared,) = [e for e in entries if e.copy.movie.title == "Shared"]
    assert shared.copy.movie.director == "9"  # the newest, whichever process added it last


# --- replay against real servers ------------------------------------------------------------------

StartInproc = Callable[[], Awaitable[Address]]


@pytest.fixture
async def inproc(tmp_path: Path) -> AsyncIterator[StartInproc]:
    """`await inproc()` -> the address of a fresh in-process server."""
    servers: list[MoviedbServer] = []

    async def start() -> Address:
        server = MoviedbServer(tmp_path / f"db{len(servers)}.sqlite3", name=f"s{len(servers)}")
        servers.append(server)
        return Address(HOST, await server.start(HOST, [0]))

    yield start
    for server in servers:
        await server.stop()


def free_port() -> int:
    """A loopback port that was free a moment ago: nothing listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def catalog(cluster: Cluster, server: Address) -> list[Copy]:
    return [copy async for copy in cluster.scan(server)]


async def test_a_queued_write_is_delivered_and_removed(
    queue: WriteQueue, inproc: StartInproc
) -> None:
    server = await inproc()
    copies = [make(f"Movie {i}") for i in range(3)]
    for i, copy in enumerate(copies):
        queue.add(server, copy, "unreachable", now=float(i))
    async with asyncio.timeout(TIMEOUT), Cluster([server]) as cluster:
        report = await replay(queue, cluster, budget=10.0, now=100.0)
        assert await catalog(cluster, server) == sorted(copies, key=lambda c: c.key)
    result = report.servers[server]
    assert (result.delivered, result.superseded, result.conflicts, result.still_queued) == (
        3,
        0,
        0,
        0,
    )
    assert result.reachable is True
    assert not result.out_of_time
    assert queue.entries() == []


async def test_replaying_twice_changes_nothing(queue: WriteQueue, inproc: StartInproc) -> None:
    server = await inproc()
    copies = [make(f"Movie {i}") for i in range(3)]
    async with asyncio.timeout(TIMEOUT), Cluster([server]) as cluster:
        for copy in copies:
            queue.add(server, copy, "unknown", now=1.0)
        await replay(queue, cluster, budget=10.0, now=2.0)
        before = await catalog(cluster, server)

        again = await replay(queue, cluster, budget=10.0, now=3.0)
        assert again.servers == {}  # nothing left to send

        # As if the removals had been lost (a crash right after sending): the same writes again.
        for copy in copies:
            queue.add(server, copy, "unknown", now=4.0)
        report = await replay(queue, cluster, budget=10.0, now=5.0)
        assert report.delivered == 3  # the server answers "same": delivered, nothing changed
        assert await catalog(cluster, server) == before
    assert queue.entries() == []


async def test_a_stale_queued_write_is_dropped_as_superseded(
    queue: WriteQueue, inproc: StartInproc
) -> None:
    server = await inproc()
    v1 = make("Alien", 1979)
    v2 = edit(v1, director="Ridley Scott")
    async with asyncio.timeout(TIMEOUT), Cluster([server]) as cluster:
        assert [r.status for r in await cluster.put({server: v2})] == [WriteStatus.APPLIED]
        queue.add(server, v1, "unknown", now=1.0)
        report = await replay(queue, cluster, budget=10.0, now=2.0)
        assert await catalog(cluster, server) == [v2]
    assert (report.delivered, report.superseded, report.still_queued) == (0, 1, 0)
    assert queue.entries() == []


async def test_a_conflicting_write_is_kept_as_a_conflict(
    queue: WriteQueue, inproc: StartInproc
) -> None:
    server = await inproc()
    base = make("Alien", 1979)
    mine, theirs = edit(base, director="Ridley Scott"), edit(base, director="R. Scott")
    async with asyncio.timeout(TIMEOUT), Cluster([server]) as cluster:
        await cluster.put({server: theirs})
        queue.add(server, mine, "unreachable", now=1.0)
        report = await replay(queue, cluster, budget=10.0, now=2.0)
        assert (report.conflicts, report.still_queued) == (1, 0)
        (entry,) = queue.entries()
        assert (entry.copy, entry.state, entry.current_rev) == (mine, "conflict", theirs.rev)
        assert queue.summary()[server] == PendingSummary(1, 1, 1.0)

        # Sent again (the server decides; it may have been resolved meanwhile): still a conflict.
        again = await replay(queue, cluster, budget=10.0, now=3.0)
        assert (again.conflicts, again.delivered) == (1, 0)
        assert [e.state for e in queue.entries()] == ["conflict"]
        assert await catalog(cluster, server) == [theirs]

        resolution = child([mine, theirs], msgspec.structs.replace(mine.movie, director="RS"))
        queue.add(server, resolution, "unreachable", now=4.0)
        report = await replay(queue, cluster, budget=10.0, now=5.0)
        assert report.delivered == 1
        assert await catalog(cluster, server) == [resolution]
    assert queue.entries() == []


async def test_a_down_server_keeps_its_writes_and_does_not_delay_the_others(
    queue: WriteQueue, inproc: StartInproc
) -> None:
    up = await inproc()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    silent = await asyncio.start_server(never_answer, HOST, 0)
    hung = Address(HOST, silent.sockets[0].getsockname()[1])
    refused = Address(HOST, free_port())
    for i in range(5):
        for server in (up, hung, refused):
            queue.add(server, make(f"Movie {i}"), "unreachable", now=float(i))

    timeout = 1.0
    try:
        async with asyncio.timeout(TIMEOUT), Cluster([up, hung, refused], timeout=timeout) as c:
            started = time.monotonic()
            # The budget ends before the hung server's timeout: the up server is done by then.
            report = await replay(queue, c, budget=timeout / 2, now=100.0)
            elapsed = time.monotonic() - started
            assert len(await catalog(c, up)) == 5
    finally:
        silent.close()
        await silent.wait_closed()

    assert elapsed < 2 * timeout  # one timeout for the hung server, not one per write
    assert (report.servers[up].delivered, report.servers[up].reachable) == (5, True)
    for server in (hung, refused):
        result = report.servers[server]
        assert (result.delivered, result.still_queued, result.reachable) == (0, 5, False)
        assert result.error
        attempts = [(e.attempts, e.last_attempt_at) for e in queue.entries(server)]
        assert attempts == [(1, 100.0)] + [(0, None)] * 4  # stopped after the first failure
    assert report.servers[hung].error == f"no answer within {timeout:g} s"
    assert queue.count(up) == 0


async def test_replay_can_be_limited_to_some_servers(
    queue: WriteQueue, inproc: StartInproc
) -> None:
    first, second = await inproc(), await inproc()
    outside = Address(HOST, 1)  # queued, but not in the cluster's list
    for server in (first, second, outside):
        queue.add(server, make("Alien", 1979), "unreachable", now=1.0)
    async with asyncio.timeout(TIMEOUT), Cluster([first, second]) as cluster:
        report = await replay(queue, cluster, servers=[second, outside], budget=10.0, now=2.0)
    assert list(report.servers) == [second]
    assert sorted(queue.summary()) == sorted([first, outside])


async def test_the_budget_stops_replay(queue: WriteQueue, inproc: StartInproc) -> None:
    first, second = await inproc(), await inproc()
    for i in range(30):
        for server in (first, second):
            queue.add(server, make(f"Movie {i}"), "unreachable", now=float(i))
    async with asyncio.timeout(TIMEOUT), Cluster([first, second]) as cluster:
        report = await replay(queue, cluster, budget=0.0, now=100.0)
    for server in (first, second):
        result = report.servers[server]
        assert result.delivered <= 1
        assert result.still_queued == 30 - result.delivered
        assert result.out_of_time
    assert queue.count() == 60 - report.delivered


@pytest.mark.fault
async def test_writes_for_a_killed_server_wait_for_its_restart(
    queue: WriteQueue, start_servers: StartServers
) -> None:
    (process,) = await asyncio.to_thread(start_servers, 1)
    server = Address(HOST, process.port)
    alien = make("Alien", 1979)
    async with asyncio.timeout(TIMEOUT), Cluster([server], timeout=2.0) as cluster:
        await cluster.put({server: alien})
        await asyncio.to_thread(process.kill)

        # What a client does with writes the server did not acknowledge: queue them.
        edits = [edit(alien, director="Ridley Scott"), make("Heat", 1995), make("Ran", 1985)]
        for i, copy in enumerate(edits):
            (result,) = await cluster.put({server: copy})
            assert result.status is WriteStatus.UNREACHABLE
            queue.add(server, copy, result.status.value, now=float(i), error=result.error)

        report = await replay(queue, cluster, budget=10.0, now=10.0)
        assert report.servers[server].reachable is False
        assert [e.attempts for e in queue.entries()] == [1, 0, 0]

        restarted = await asyncio.to_thread(process.restart)
        assert restarted.port == server.port
        report = await replay(queue, cluster, budget=10.0, now=20.0)
        assert (report.delivered, report.still_queued) == (3, 0)
        assert await catalog(cluster, server) == sorted(edits, key=lambda c: c.key)
    assert queue.entries() == []


# --- replay is idempotent -------------------------------------------------------------------------


def family(title: str) -> dict[str, Copy]:
    """Versions of one movie: a chain v0-v1-v2, a branch w1 off v0, a resolution, a tombstone."""
    movie = validate(Movie(title=title, year=2000))
    v0 = first_copy(movie)
    v1 = edit(v0, director="a")
    v2 = edit(v1, director="b")
    w1 = edit(v0, director="c")
    resolution = child([v2, w1], msgspec.structs.replace(movie, director="d"))
    tombstone = child([v1], v1.movie, deleted=True)
    return {"v0": v0, "v1": v1, "v2": v2, "w1": w1, "r": resolution, "t": tombstone}


FAMILIES = {title: family(title) for title in ("Alien", "Heat", "Ran")}
NAMES = sorted(FAMILIES["Alien"])

plans = st.dictionaries(
    st.sampled_from(sorted(FAMILIES)),
    st.tuples(
        st.none() | st.sampled_from(NAMES),  # what the server holds before the replay
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),  # writes queued, in order
    ),
    min_size=1,
)


def expected(plan: dict[str, tuple[str | None, list[str]]]) -> tuple[list[Copy], set[str]]:
    """The server's catalog after a replay, and the revisions left in the queue (conflicts).

    The model of the queue: a write already queued, or superseded by a queued one, changes
    nothing; a newer write replaces what it supersedes (keeping the first queued time); a
    concurrent one joins. Replay sends them oldest first and the server applies its rule.
    """
    stored: list[Copy] = []
    conflicts: set[str] = set()
    for title, (seed, queued) in sorted(plan.items()):
        versions = FAMILIES[title]
        entries: list[tuple[float, int, Copy]] = []
        for order, name in enumerate(queued):
            new = versions[name]
            if any(compare(new, c) in (Relation.SAME, Relation.OLDER) for *_, c in entries):
                continue
            replaced = [e for e in entries if compare(new, e[2]) is Relation.NEWER]
            first = min([float(order), *(e[0] for e in replaced)])
            entries = [e for e in entries if e not in replaced] + [(first, order, new)]
        held = None if seed is None else versions[seed]
        for *_, write in sorted(entries, key=lambda e: (e[0], e[1])):
            decision = decide(held, write)
            if decision is Decision.APPLY:
                held = write
            elif decision is Decision.CONFLICT:
                conflicts.add(write.rev)
        assert held is not None
        stored.append(held)
    return sorted(stored, key=lambda c: c.key), conflicts


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=plans, times=st.integers(1, 4))
def test_replaying_k_times_stores_what_replaying_once_does(
    tmp_path_factory: pytest.TempPathFactory,
    plan: dict[str, tuple[str | None, list[str]]],
    times: int,
) -> None:
    directory = tmp_path_factory.mktemp("replay")
    asyncio.run(replay_times(directory, plan, times))


async def replay_times(
    directory: Path, plan: dict[str, tuple[str | None, list[str]]], times: int
) -> None:
    server = MoviedbServer(directory / "db.sqlite3")
    address = Address(HOST, await server.start(HOST, [0]))
    try:
        async with asyncio.timeout(TIMEOUT), Cluster([address]) as cluster:
            for title, (seed, _) in plan.items():
                if seed is not None:
                    await cluster.put({address: FAMILIES[title][seed]})
            outcomes = []
            for round_ in range(times):
                # Each round starts from the same queue, as if every removal had been lost.
                with WriteQueue(directory / f"queue{round_}.sqlite3") as queue:
                    for title, (_, queued) in plan.items():
                        for i, name in enumerate(queued):
                            queue.add(address, FAMILIES[title][name], "unknown", now=float(i))
                    await replay(queue, cluster, budget=TIMEOUT, now=100.0)
                    outcomes.append((await catalog(cluster, address), revs(queue.entries())))
    finally:
        await server.stop()

    stored, conflicts = expected(plan)
    first_catalog, first_queue = outcomes[0]
    assert first_catalog == stored
    assert {rev for _, _, rev, _ in first_queue} == conflicts
    assert all(state == "conflict" for *_, state in first_queue)
    assert outcomes == [outcomes[0]] * times


async def test_a_write_refused_for_what_it_is_is_dropped_and_blocks_nothing(
    queue: WriteQueue, tmp_path: Path
) -> None:
    """A record the server will never take (here: over its line limit) leaves the queue; the
    writes queued after it are delivered. Transient errors keep their entries."""
    from moviedb.server.app import Limits

    server = MoviedbServer(tmp_path / "small.sqlite3", limits=Limits(max_line=4000))
    address = Address(HOST, await server.start(HOST, [0]))
    try:
        big = make("Epic", plot="x" * 5000)
        small = [make(f"Short {i}") for i in range(3)]
        queue.add(address, big, "error", now=1.0)
        for i, copy in enumerate(small):
            queue.add(address, copy, "unreachable", now=2.0 + i)
        async with asyncio.timeout(TIMEOUT), Cluster([address]) as cluster:
            report = await replay(queue, cluster, budget=10.0, now=10.0)
            result = report.servers[address]
            assert (result.delivered, result.still_queued) == (3, 0)
            assert result.error is not None
            assert result.error.startswith("line_too_long")
            assert await catalog(cluster, address) == sorted(small, key=lambda c: c.key)
        assert queue.entries() == []
    finally:
        await server.stop()


def test_which_write_outcomes_are_queued() -> None:
    server = Address(HOST, 7001)
    queued = {
        WriteStatus.UNREACHABLE: None,
        WriteStatus.UNKNOWN: "no answer within 2 s",
        WriteStatus.ERROR: "storage_error: the database refused the write: disk full",
    }
    for status, error in queued.items():
        assert needs_queueing(WriteResult(server, status, error=error))
    for status, error in {
        WriteStatus.ERROR: "invalid_movie: rating: 11 is out of range",
        WriteStatus.APPLIED: None,
        WriteStatus.UNCHANGED: None,
        WriteStatus.STALE: None,
        WriteStatus.CONFLICT: None,
    }.items():
        assert not needs_queueing(WriteResult(server, status, error=error))
