"""Durability under faults, measured: servers SIGKILLed during thousands of writes, killed and
brought back while commands write, hung (SIGSTOP) or behind a slow or black-holed link, clients
whose clocks are hours apart, and many clients editing one movie at once.

Each test prints what it measured through the `figure` fixture and asserts on it. Real
`moviedb-server` processes on loopback, stopped only by their PID; the link faults come from
tests/faultproxy.py, and the workloads (kill -9 writers, a faulty server's commands, contended
edits) from tests/faultkit.py, which benchmarks/soak.py runs for longer. Every wait is on a
condition under a bound; no test pauses for a fixed time. Counts and seeds are fixed, so a
failure can be run again as it was.
"""

from __future__ import annotations

import asyncio
import gc
import random
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from moviedb import commands, protocol
from moviedb.client import Cluster, WriteResult, WriteStatus
from moviedb.client.address import Address
from moviedb.client.connection import Connection, ReplyLost
from moviedb.client.queue import WriteQueue
from moviedb.client.reconcile import MovieView
from moviedb.model import ExtraValue, Movie, validate
from moviedb.server.app import MoviedbServer
from moviedb.session import Session
from moviedb.versions import Copy, first_copy, generation
from tests.conftest import ServerProcess, StartServers
from tests.faultkit import (
    BOUND,
    FaultyRun,
    Timed,
    address_of,
    contended_edits,
    count_edit,
    held,
    hung_and_slow,
    kill_nine,
    movie,
    until,
)
from tests.faultproxy import FaultProxy
from tests.test_server import start_one

pytestmark = pytest.mark.fault

T = TypeVar("T")
Figure = Callable[[str], None]


def seconds(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"


# --- 1. kill -9 during many concurrent writes -----------------------------------------------------

KILLS = 20
ACKNOWLEDGED = 10_000  # acknowledged writes, at least, across the kills
CLIENTS = 6  # each its own Cluster (its own connection)
LANES = 8  # writers per client, each waiting for its write's answer before the next
RESTART_LIMIT = 2.0  # seconds from spawn to an answered hello


async def test_kill_9_during_concurrent_writes_loses_no_acknowledged_write(
    start_servers: StartServers, tmp_path: Path, figure: Figure
) -> None:
    """20 SIGKILLs at random moments while 48 writers write: after each restart every write
    acknowledged so far is read back before writing resumes (a newer revision could otherwise
    hide a lost one), and the database file passes `PRAGMA integrity_check` after each kill."""
    server = await start_one(start_servers)
    async with asyncio.timeout(120):
        killed = await kill_nine(
            server,
            tmp_path,
            writes=ACKNOWLEDGED,
            kills=KILLS,
            clients=CLIENTS,
            lanes=LANES,
            seed=20,
            lane_seed=lambda i, j: i * 100 + j,
        )
    ledger, lost, checks, restarts = killed.ledger, killed.lost, killed.integrity, killed.restarts

    figure(
        f"{lost} of {ledger.count:,} acknowledged writes lost ({ledger.movies:,} movies, "
        f"{ledger.count - ledger.movies:,} revisions; {ledger.unanswered} unanswered sends "
        f"sent again) across {KILLS} SIGKILLs during writes; integrity_check "
        f"{'ok' if set(checks) == {'ok'} else checks} after each of {len(checks)} kills; "
        f"restart to hello {seconds(restarts)}"
    )
    assert lost == 0
    assert ledger.count >= ACKNOWLEDGED
    assert len(restarts) == KILLS + 1
    assert set(checks) == {"ok"}
    assert killed.stored == set(ledger.acknowledged)  # and nothing that was never written
    assert max(restarts) < RESTART_LIMIT


async def test_requests_cut_off_while_being_sent_leave_no_unretrieved_error(
    start_servers: StartServers, figure: Figure
) -> None:
    """A SIGSTOPped server reads nothing, so 128 large pipelined puts fill the socket buffers and
    wait in drain(); then SIGKILL resets the connection. Each request fails with ReplyLost,
    as it should, and nothing else may be left behind."""
    server = await start_one(start_servers)
    loop = asyncio.get_running_loop()
    unretrieved: list[str] = []
    loop.set_exception_handler(lambda _, context: unretrieved.append(str(context["message"])))
    connection = Connection(address_of(server))
    try:
        async with asyncio.timeout(BOUND):
            await connection.request(protocol.Hello(client="faults"))
            server.signal(signal.SIGSTOP)
            text = "x" * 19_000  # each record ~190 KB: 128 of them are ~24 MB
            extra: dict[str, ExtraValue] = {f"f{i}": text for i in range(9)}
            copies = [first_copy(movie(f"Large {i}", plot=text, extra=extra)) for i in range(128)]
            sending = [
                asyncio.create_task(connection.request(protocol.Put(copy=c))) for c in copies
            ]
            # All written (what its repr shows as waiting=N): each is a reply awaited.
            await until(lambda: len(connection._waiting) == len(copies))
            await asyncio.to_thread(server.kill)  # a stopped process dies too; unread bytes: RST
            outcomes = await asyncio.gather(*sending, return_exceptions=True)
        assert all(isinstance(o, ReplyLost) for o in outcomes), outcomes
        del sending, outcomes
        gc.collect()
    finally:
        await connection.aclose()
        loop.set_exception_handler(None)
    figure(
        f"{len(copies)} puts cut off while being sent: each failed with ReplyLost; "
        f"{len(unretrieved)} 'Future exception was never retrieved' errors logged"
    )
    assert unretrieved == []


# --- 2. a server killed while add and edit write, then back: queue, replay, sync ------------------

OUTAGE_WRITES = 40


async def digests(cluster: Cluster) -> list[str]:
    replies = await cluster.digest()
    return [r if isinstance(r, str) else r.digest for r in replies.values()]


async def test_a_server_killed_during_add_and_edit_gets_every_write_by_replay_and_sync(
    start_servers: StartServers, tmp_path: Path, figure: Figure
) -> None:
    """One client runs add and edit commands one after another; the second server is SIGKILLed
    at a random point among them. Each command's per-server result says what is known, the
    queue holds what the dead server did not acknowledge; back, replay delivers it all."""
    servers = await asyncio.to_thread(start_servers, 3)
    addresses = list(map(address_of, servers))
    dead = servers[1]
    queue = WriteQueue(tmp_path / "client")
    rng = random.Random(2)
    kill_after = rng.randint(3, 8)  # writes finished before the kill is sent
    written: list[tuple[bool, commands.WriteOutcome]] = []  # (started after the kill, outcome)
    killed = asyncio.Event()

    async def write_commands(cluster: Cluster) -> None:
        for i in range(OUTAGE_WRITES):
            after_kill = killed.is_set()
            if i % 2:
                outcome = await commands.add(cluster, movie(f"Outage new {i}"), queue=queue)
            else:
                changes: dict[str, ExtraValue | list[str] | None] = {"rating": i / 10}
                title = f"Outage {i % 10}"
                outcome = await commands.edit(cluster, title, 2000, changes, queue=queue)
            written.append((after_kill, outcome))

    async def kill() -> None:
        await until(lambda: len(written) >= kill_after)
        await asyncio.to_thread(dead.kill)  # SIGKILL, while the next command runs
        killed.set()

    with queue:
        async with asyncio.timeout(60), Cluster(addresses, timeout=2.0) as cluster:
            for i in range(10):
                added = await commands.add(cluster, movie(f"Outage {i}"), queue=queue)
                assert added.exit_code == commands.OK, added
            await asyncio.gather(write_commands(cluster), kill())

            seen: dict[WriteStatus, int] = {}
            expected: dict[str, str] = {}  # per movie, the newest write the dead server lacks
            for after_kill, outcome in written:
                assert outcome.copy is not None, outcome
                others = [r.status for r in outcome.results if r.server != address_of(dead)]
                (mine,) = [r for r in outcome.results if r.server == address_of(dead)]
                assert others == [WriteStatus.APPLIED] * 2, outcome
                allowed = {WriteStatus.UNREACHABLE, WriteStatus.UNKNOWN}
                assert mine.status in (allowed if after_kill else {*allowed, WriteStatus.APPLIED})
                seen[mine.status] = seen.get(mine.status, 0) + 1
                if not mine.stored:
                    expected[outcome.copy.key] = outcome.copy.rev
            after = sum(a for a, _ in written)
            assert after >= OUTAGE_WRITES // 2  # most of them ran into the outage
            queued = {e.key: e.rev for e in queue.entries(address_of(dead))}
            assert queued == expected  # every unacknowledged write, the newest per movie
            assert queue.count() == len(expected)  # and nothing for the servers that answered

            await asyncio.to_thread(dead.restart)
            assert address_of(dead) == addresses[1]
            replayed = await commands.replay_pending(cluster, queue, budget=20.0)
            assert replayed is not None
            assert (replayed.delivered, replayed.still_queued) == (len(expected), 0)
            assert queue.count() == 0
            fetched = await cluster.fetch(addresses[1], sorted(expected))
            assert {c.key: c.rev for c in fetched} == expected

            first = await commands.sync(cluster, queue=queue)
            assert first.exit_code == commands.OK, first
            after_first = await digests(cluster)
            second = await commands.sync(cluster, queue=queue)
            assert second.exit_code == commands.OK, second

    counts = ", ".join(f"{n} {s.value}" for s, n in sorted(seen.items(), key=lambda i: i[0].value))
    figure(
        f"{OUTAGE_WRITES} add/edit commands, {dead.name} SIGKILLed after {kill_after} of them "
        f"({after} started after the kill): {dead.name} {counts}, the other two applied all; "
        f"{len(expected)} movies queued for {dead.name}; replay delivered {replayed.delivered}, "
        f"{replayed.still_queued} still queued; first sync repaired {first.repaired}, "
        f"digests {'equal' if len(set(after_first)) == 1 else after_first}; "
        f"second sync changed {second.repaired + second.failed}"
    )
    assert len(set(after_first)) == 1
    assert second.repaired + second.failed == 0
    assert second.plan.total_writes == 0


# --- 3. a hung server, a slow link, a black-holed link --------------------------------------------


async def test_the_fault_proxy_delays_in_order_drops_and_heals(
    inproc_server: MoviedbServer, figure: Figure
) -> None:
    """The proxy itself: a delay holds both directions and keeps the order of pipelined
    requests; a black hole accepts and answers nothing; heal resets what lost bytes."""
    server = Address("127.0.0.1", inproc_server.port)
    copies = [first_copy(movie(f"Proxied {i}")) for i in range(20)]
    async with Cluster([server]) as direct:
        assert all(r.stored for r in await direct.put_many(server, copies))
    async with (
        asyncio.timeout(BOUND),
        FaultProxy("127.0.0.1", inproc_server.port) as proxy,
        Cluster([proxy.address], timeout=5.0) as cluster,
    ):
        (plain,) = await cluster.hello()
        proxy.delay(200)
        (slow,) = await cluster.hello()
        pipelined = await asyncio.gather(*(cluster.get(c.movie.title) for c in copies))
        assert [r.copies for (r,) in pipelined] == [[c] for c in copies]  # in order
        proxy.blackhole()
        cluster.timeout = 0.3
        (dropped,) = await cluster.hello()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b'{"op": "hello"}\n')  # lost: this connection cannot be framed again
        await writer.drain()
        await until(lambda: proxy.stats.dropped > 0 and len(proxy.links) == 1)
        proxy.heal()
        try:
            answer = await reader.read()
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # reset: never an answer
        writer.close()
        cluster.timeout = 5.0
        (healed,) = await cluster.hello()
    assert [plain.up, slow.up, dropped.up, healed.up] == [True, True, False, True]
    assert plain.latency is not None
    assert slow.latency is not None
    figure(
        f"hello through the proxy {plain.latency * 1000:.1f} ms; delayed 200 ms each way "
        f"{slow.latency * 1000:.0f} ms; 20 pipelined gets in order; black hole: "
        f"{dropped.error}; {proxy.stats.reset} connection reset on heal"
    )
    assert slow.latency >= 0.4
    assert proxy.stats.reset == 1


QUICK = 0.5  # the per-server timeout of these tests
SLACK = 0.2  # what a command may take beyond it


class CheckedRun(FaultyRun):
    """faultkit's commands against a faulty server, with what each must show asserted, and the
    writes sent to the faulty server counted."""

    def __init__(self, cluster: Cluster, queue: WriteQueue, timed: Timed) -> None:
        super().__init__(cluster, queue, timed)
        self.sent_to_faulty = 0

    @staticmethod
    def answering(faulty: int) -> list[bool]:
        return [i != faulty for i in range(3)]

    def check_get(self, name: str, faulty: int, got: commands.GetOutcome | None) -> None:
        assert got is not None
        assert [r.answered for r in got.results] == self.answering(faulty), (name, got.results)

    def check_serverlist(
        self, name: str, faulty: int, listed: commands.ServerListOutcome | None
    ) -> None:
        assert listed is not None
        assert [s.up for s in listed.servers] == self.answering(faulty), (name, listed.servers)

    def check_written(self, outcome: commands.WriteOutcome | None, faulty: Address) -> None:
        """Applied by the servers that answer; unknown (sent, no answer) on the faulty one."""
        assert outcome is not None
        assert outcome.copy is not None, outcome
        for result in outcome.results:
            unknown = result.server == faulty
            self.sent_to_faulty += unknown
            assert result.status is (WriteStatus.UNKNOWN if unknown else WriteStatus.APPLIED)

    def check_queued(self, name: str, faulty: int) -> None:
        entries = self.queue.entries(self.cluster.servers[faulty])
        queued = {(e.key, e.rev, e.reason) for e in entries}
        assert queued == {(c.key, c.rev, "unknown") for _, c in self.unknown[-2:]}, name

    def check_sync(self, name: str, faulty: int, synced: commands.SyncOutcome | None) -> None:
        assert synced is not None
        assert list(synced.unreachable) == [self.cluster.servers[faulty]], (
            name,
            synced.unreachable,
        )
        assert synced.exit_code == commands.PARTIAL_WRITE

    async def check_healed(self, name: str, healed: commands.SyncOutcome) -> None:
        assert healed.exit_code == commands.OK, (name, healed)
        assert healed.replayed is not None
        assert self.queue.count() == 0
        assert len(set(await digests(self.cluster))) == 1, name


async def test_a_hung_server_a_slow_link_and_a_black_hole_are_timed_out_queued_and_healed(
    start_servers: StartServers, tmp_path: Path, figure: Figure
) -> None:
    """The faulty server is the third (SIGSTOP) or the second, behind the proxy (delay, drop).
    Every command returns within its timeout + 200 ms, the faulty server's share of each write
    is `unknown` and queued, and after healing one sync delivers it."""
    servers = await asyncio.to_thread(start_servers, 3)
    faulted = await hung_and_slow(
        list(servers), tmp_path / "client", timeout=QUICK, cycles=3, new_run=CheckedRun
    )
    run, lost, undelivered = faulted.run, faulted.lost, faulted.undelivered
    assert isinstance(run, CheckedRun)
    delivered, dropped = run.delivered, faulted.dropped

    worst = {n: run.timed.worst(n) for n in run.timed.overshoot}
    unknown, sent = len(run.unknown), run.sent_to_faulty
    figure(
        f"SIGSTOP, {QUICK * 3:g} s delay, blackhole ({dropped:,} bytes dropped) at timeout "
        f"{QUICK:g} s, beyond the timeout at most: "
        + ", ".join(f"{n} {v * 1000:+.0f} ms" for n, v in worst.items())
        + f"; {unknown} of {sent} writes to the faulty server unknown and queued, replay "
        f"delivered {delivered}; {lost} of {len(run.acknowledged)} acknowledged writes lost, "
        f"{undelivered} unknown writes missing after healing"
    )
    assert max(worst.values()) <= SLACK
    assert (lost, undelivered) == (0, 0)
    assert delivered == unknown == sent == 6  # add and edit, in each of 3 faults
    assert dropped > 0


# --- 4. clients whose clocks are hours apart ------------------------------------------------------

HOUR = 3600.0
SKEWED_EDITS = 30
CONCURRENT_ROUNDS = 3  # of each kind: partitioned, racing


def skewed(hours: float) -> Callable[[], float]:
    return lambda: time.time() + hours * HOUR


class SessionClient:
    """A client built the way the CLI builds one (a Session, with its own event loop), run in a
    thread of its own so that it can act while this test's loop does too."""

    def __init__(self, servers: list[ServerProcess], clock: Callable[[], float]) -> None:
        self.session = Session(
            servers=",".join(s.address for s in servers), timeout=5.0, clock=clock
        )
        self.thread = ThreadPoolExecutor(max_workers=1)

    async def __call__(self, work: Callable[[Cluster], Awaitable[T]]) -> T:
        async def run() -> T:
            return await work(self.session.cluster())

        return await asyncio.get_running_loop().run_in_executor(
            self.thread, lambda: self.session.run(run())
        )

    def close(self) -> None:
        self.thread.submit(self.session.close).result(timeout=BOUND)
        self.thread.shutdown()


def refused_visibly(copy: Copy, result: WriteResult) -> bool:
    """A refusal the writer is told of: a concurrent version, or a newer one built on `copy`."""
    if result.status is WriteStatus.CONFLICT:
        return True
    return result.status is WriteStatus.STALE and held(copy, result.current)


async def one_view(cluster: Cluster, title: str, year: int) -> MovieView:
    got = await commands.get(cluster, title, year)
    (view,) = got.movies
    return view


def edit_of(changes: dict[str, ExtraValue | list[str] | None]) -> EditWork:
    def work(cluster: Cluster) -> Awaitable[commands.WriteOutcome]:
        return commands.edit(cluster, SKEW.title, SKEW.year, changes)

    return work


EditWork = Callable[[Cluster], Awaitable[commands.WriteOutcome]]
SKEW = Movie(title="Skew", year=1999)


async def test_clients_hours_apart_order_by_versions_and_lose_no_update(
    start_servers: StartServers, figure: Figure
) -> None:
    """Three clients at -5 h (a Session, as the CLI runs), 0 and +5 h. Sequential edits, each
    on the newest version, all supersede whatever the clocks say; concurrent ones become a
    conflict that get and sync show and never decide, and a resolution keeps both."""
    servers = await asyncio.to_thread(start_servers, 3)
    addresses = list(map(address_of, servers))
    rng = random.Random(4)
    behind = SessionClient(servers, skewed(-5))
    exact = Cluster(addresses, timeout=5.0)
    ahead = Cluster(addresses, timeout=5.0, clock=skewed(+5))
    partitioned = {  # the same clients, each seeing only part of the servers
        "ahead": Cluster(addresses[:2], timeout=5.0, clock=skewed(+5)),
        "behind": Cluster(addresses[2:], timeout=5.0, clock=skewed(-5)),
    }

    async def as_client(name: str, work: EditWork) -> commands.WriteOutcome:
        if name == "behind":
            return await behind(work)
        return await work(ahead if name == "ahead" else exact)

    backwards = 0
    updates = kept = refused = conflicts = 0
    try:
        async with asyncio.timeout(60):
            # 1. Sequential edits from the newest version: each supersedes its parent.
            added = await commands.add(ahead, SKEW)
            assert added.exit_code == commands.OK, added
            others = (rng.choice(["behind", "exact", "ahead"]) for _ in range(SKEWED_EDITS - 1))
            order = ["behind", *others]
            for i, name in enumerate(order):
                parent = (await one_view(exact, SKEW.title, 1999)).newest
                assert parent is not None
                outcome = await as_client(name, edit_of({f"e{i:02d}": name}))
                assert outcome.exit_code == commands.OK, (name, outcome)
                assert outcome.copy is not None
                backwards += outcome.copy.written_at < parent.written_at
                if i == 0:  # behind edits what ahead added: stamped 10 hours before its parent
                    assert parent.written_at - outcome.copy.written_at > 9.9 * HOUR
                view = await one_view(exact, SKEW.title, 1999)
                assert (view.state, view.newest) == ("agree", outcome.copy), (name, view)
            final = (await one_view(exact, SKEW.title, 1999)).newest
            assert final is not None
            assert generation(final.rev) == 1 + SKEWED_EDITS
            assert {k: v for k, v in final.movie.extra.items() if k.startswith("e")} == {
                f"e{i:02d}": name for i, name in enumerate(order)
            }

            # 2. Concurrent edits of the same version: partitioned, then racing on every server.
            for round_ in range(2 * CONCURRENT_ROUNDS):
                racing = round_ >= CONCURRENT_ROUNDS
                rating, plot = float(round_), f"round {round_}"
                work = {"ahead": edit_of({"rating": rating}), "behind": edit_of({"plot": plot})}
                if racing:
                    outcomes = await asyncio.gather(
                        as_client("ahead", work["ahead"]), as_client("behind", work["behind"])
                    )
                else:
                    outcomes = await asyncio.gather(
                        work["ahead"](partitioned["ahead"]), work["behind"](partitioned["behind"])
                    )
                updates += 2
                stored = {}  # the updates some server stored, by writer
                for name, outcome in zip(("ahead", "behind"), outcomes, strict=True):
                    assert outcome.copy is not None, outcome
                    for result in outcome.results:
                        # Not stored is said, never hidden: the server holds a concurrent
                        # version, or (in a race) a newer one built on this very update.
                        assert result.stored or refused_visibly(outcome.copy, result), result
                    if any(r.stored for r in outcome.results):
                        stored[name] = outcome.copy
                    else:
                        assert outcome.exit_code == commands.REFUSED
                        refused += 1
                view = await one_view(exact, SKEW.title, 1999)
                if view.state == "conflict":
                    conflicts += 1
                    synced = await commands.sync(exact)
                    assert synced.exit_code == commands.REFUSED  # shown, never decided
                    assert [v.key for v in synced.plan.conflicts] == [view.key]
                    assert synced.plan.total_writes == 0
                    holder = {
                        name: next(g.servers[0] for g in view.groups if g.copy.rev == copy.rev)
                        for name, copy in stored.items()
                    }
                    proposal = await commands.resolve_plan(
                        exact,
                        SKEW.title,
                        1999,
                        fields=[f"rating={holder['ahead']}", f"plot={holder['behind']}"],
                    )
                    resolved = await commands.write_proposal(exact, proposal)
                    assert resolved.exit_code == commands.OK, resolved
                    view = await one_view(exact, SKEW.title, 1999)
                assert view.state == "agree", view
                assert view.newest is not None
                now = view.newest.movie
                kept += ("ahead" in stored and now.rating == rating) + (
                    "behind" in stored and now.plot == plot
                )
    finally:
        behind.close()
        for cluster in (exact, ahead, *partitioned.values()):
            await cluster.aclose()

    lost = updates - kept - refused
    figure(
        f"{SKEWED_EDITS} sequential edits from clients at -5 h, 0, +5 h: {SKEWED_EDITS} applied "
        f"everywhere ({backwards} stamped hours before their parent), generation "
        f"{generation(final.rev)}; {updates} concurrent updates: {conflicts} visible conflicts "
        f"(never decided by sync), {kept} kept by the resolution, {refused} refused with a "
        f"conflict reported to their writer; {lost} updates silently lost"
    )
    assert backwards >= 5
    assert conflicts >= CONCURRENT_ROUNDS
    assert lost == 0


# --- 5. ten clients editing one movie at once -----------------------------------------------------

EDITORS = 10
EDITS_EACH = 1_000  # at most 4,096: a token is 3 hex digits


def with_token(movie: Movie, editor: int, n: int) -> Movie:
    """`movie` with edit n of this editor counted and its token appended to its token list."""
    counted = count_edit(movie, editor, n)
    extra = dict(counted.extra)
    extra[f"t{editor}"] = f"{extra.get(f't{editor}', '')}{n:03x}"  # fixed width, no separator
    return validate(msgspec.structs.replace(counted, extra=extra))


def tokens(movie: Movie, editor: int) -> list[int]:
    text = str(movie.extra.get(f"t{editor}", ""))
    return [int(text[i : i + 3], 16) for i in range(0, len(text), 3)]


async def test_ten_clients_editing_one_movie_apply_every_edit_exactly_once(
    start_servers: StartServers, figure: Figure
) -> None:
    """Every edit is a conditional put of a child of the newest version the client knows; a
    refusal (stale, conflict) returns the server's newest copy, and the edit is made again as
    a child of that. Applied edits must form one unbroken chain of revisions."""
    server = await start_one(start_servers)
    async with asyncio.timeout(120):
        edited = await contended_edits(
            address_of(server), editors=EDITORS, edits=EDITS_EACH, change=with_token
        )
    assert edited.final is not None
    final, base, parent_of = edited.final, edited.base, edited.parent_of
    refused, unknown, elapsed = edited.refused, edited.unknown, edited.seconds
    chain, rev = edited.chain()
    every_token_once = all(
        tokens(final.movie, i) == list(range(EDITS_EACH)) for i in range(EDITORS)
    )
    counted = edited.counted(EDITORS)
    total = EDITORS * EDITS_EACH
    figure(
        f"{EDITORS} clients x {EDITS_EACH:,} edits of one movie: {len(parent_of):,} applied "
        f"({refused:,} refused as stale or conflict and made again, {unknown} unknown), "
        f"final generation {generation(final.rev):,}, counters sum {counted:,}, every token "
        f"{'present exactly once' if every_token_once else 'NOT present exactly once'}, "
        f"unbroken chain of {chain:,} applied revisions back to the first; "
        f"{total / elapsed:,.0f} applied edits/s"
    )
    assert len(parent_of) == total
    assert generation(final.rev) == total + 1
    assert counted == total
    assert every_token_once
    assert (chain, rev) == (total, base.rev)
