"""The fault workloads, shared by tests/test_faults.py (which asserts on what they measured) and
benchmarks/soak.py (which runs them for longer and prints figures): writers racing SIGKILLs of
their server, a client's commands while one of three servers is hung or behind a slow or
black-holed link, and many clients editing one movie at once.

Each workload takes its sizes and seeds, and an optional `deadline` (time.monotonic()) after
which it starts no new work; it returns what it measured. Real `moviedb-server` processes on
loopback, signalled only through their own PID; the link faults come from tests/faultproxy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import shutil
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from moviedb import commands
from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import Cluster, CommandBudget, WriteStatus
from moviedb.client.queue import WriteQueue
from moviedb.model import ExtraValue, Movie, validate
from moviedb.versions import Copy, child, first_copy
from tests.faultproxy import FaultProxy

T = TypeVar("T")
HOST = "127.0.0.1"
BOUND = 15.0  # an overall bound on each wait for a condition; never a pause


class WorkloadBroken(AssertionError):
    """Something a workload relies on did not hold: a write refused that nobody else writes, a
    server that does not come back. A test fails on it; the soak stops with it."""


def past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


async def until(check: Callable[[], bool | Awaitable[bool]], bound: float | None = BOUND) -> None:
    """Poll a condition that offers no event to await; `bound` limits it, the condition ends it."""
    async with asyncio.timeout(bound):
        while True:
            outcome = check()
            if await outcome if inspect.isawaitable(outcome) else outcome:
                return
            await asyncio.sleep(0.01)


def movie(title: str, year: int = 2000, **fields: Any) -> Movie:
    return validate(Movie(title=title, year=year, **fields))


def integrity_check(db: Path, scratch: Path) -> str:
    """`PRAGMA integrity_check` of a stopped server's database, on a copy of its files: opening
    the original would recover its WAL and take that work away from the restarting server."""
    scratch.mkdir(parents=True, exist_ok=True)
    copy = scratch / db.name
    for suffix in ("", "-wal"):
        source = Path(f"{db}{suffix}")
        target = Path(f"{copy}{suffix}")
        target.unlink(missing_ok=True)
        if source.exists():
            shutil.copyfile(source, target)
    with contextlib.closing(sqlite3.connect(copy)) as check:
        return "; ".join(str(row[0]) for row in check.execute("PRAGMA integrity_check"))


def held(copy: Copy, stored: Copy | None) -> bool:
    """The stored copy is this revision or a newer one built on it."""
    return stored is not None and (stored.rev == copy.rev or copy.rev in stored.history)


async def not_held(cluster: Cluster, writes: list[tuple[Address, Copy]]) -> int:
    """How many of these (server, copy) writes their server no longer holds."""
    missing = 0
    for server, copy in writes:
        stored = {c.key: c for c in await cluster.fetch(server, [copy.key])}
        missing += not held(copy, stored.get(copy.key))
    return missing


class Signalled(Protocol):
    """A `moviedb-server` process on 127.0.0.1 (tests/conftest.py's ServerProcess, the soak's)."""

    port: int

    def signal(self, signum: int) -> None: ...


class Restartable(Signalled, Protocol):
    db: Path

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""

    def restart(self) -> object:
        """Start again on the same database and, if it is free, the same port."""


def address_of(server: Signalled) -> Address:
    return Address(HOST, server.port)


# --- 1. kill -9 during many concurrent writes -----------------------------------------------------


@dataclass
class Ledger:
    """What the writers were told: per movie, the revisions the server acknowledged (applied or
    already held), oldest first, and the one write still waiting for an answer."""

    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    newest: dict[str, Copy] = field(default_factory=dict)
    in_flight: dict[str, Copy] = field(default_factory=dict)
    count: int = 0
    movies: int = 0
    unanswered: int = 0  # sends that got no answer (unreachable, unknown): sent again later
    since_check: set[str] = field(default_factory=set)

    def record(self, copy: Copy) -> None:
        revs = self.acknowledged.setdefault(copy.key, [])
        self.movies += not revs
        revs.append(copy.rev)
        self.newest[copy.key] = copy
        self.in_flight.pop(copy.key, None)
        self.count += 1
        self.since_check.add(copy.key)

    def lost(self, key: str, stored: Copy | None) -> int:
        """Acknowledged writes of this movie that the stored copy does not hold. Every writer
        builds on its own last acknowledged revision, so a movie's revisions form one chain: the
        stored copy must be its last acknowledged revision, or the one still unanswered."""
        revs = self.acknowledged.get(key, [])
        if stored is None:
            return len(revs)
        if stored.rev in revs:
            return len(revs) - 1 - revs.index(stored.rev)
        pending = self.in_flight.get(key)
        if pending is not None and pending.rev == stored.rev:
            return 0
        return len(revs)


async def write_lane(
    cluster: Cluster, server: Address, name: str, ledger: Ledger, gate: asyncio.Event,
    stop: asyncio.Event, rng: random.Random,
) -> None:  # fmt: skip
    """Write new movies and new revisions of this lane's own movies, one at a time. A write
    that got no answer is sent again (the same revision: idempotent) once the server is back."""
    mine: list[str] = []
    while not stop.is_set():
        await gate.wait()
        if not mine or rng.random() < 0.5:
            new = Movie(title=f"{name} film {len(mine)}", year=1990 + len(mine) % 30)
            copy = first_copy(validate(msgspec.structs.replace(new, extra={"w": 0})))
            mine.append(copy.key)
        else:
            parent = ledger.newest[rng.choice(mine[-8:])]
            extra = {"w": int(parent.movie.extra["w"]) + 1}
            copy = child([parent], validate(msgspec.structs.replace(parent.movie, extra=extra)))
        ledger.in_flight[copy.key] = copy
        while True:
            (result,) = await cluster.put({server: copy})
            if result.stored:
                break
            # One writer per movie: a refusal (stale, conflict) would mean a lost write.
            if result.status not in (WriteStatus.UNREACHABLE, WriteStatus.UNKNOWN):
                raise WorkloadBroken(f"a write was refused: {result}")
            ledger.unanswered += 1
            await gate.wait()
        ledger.record(copy)


@dataclass
class KillFigures:
    ledger: Ledger = field(default_factory=Ledger)
    kills: int = 0  # during writes (one more follows them)
    lost: int = 0
    integrity: list[str] = field(default_factory=list)  # one per kill
    restarts: list[float] = field(default_factory=list)  # seconds from spawn to a hello
    stored: set[str] = field(default_factory=set)  # the keys the server holds at the end


async def kill_nine(
    server: Restartable,
    scratch: Path,
    *,
    writes: int,
    kills: int,
    clients: int,
    lanes: int,
    seed: int,
    lane_seed: Callable[[int, int], int],
    deadline: float | None = None,
) -> KillFigures:
    """`clients` clients x `lanes` writers write until `writes` are acknowledged; `kills`
    SIGKILLs at random moments among them. After each restart every write acknowledged so far is
    read back before writing resumes (a newer revision could otherwise hide a lost one), and the
    database file is checked after each kill. A last kill with nothing in flight, then the whole
    catalog is read back."""
    target, port = address_of(server), server.port
    rng = random.Random(seed)
    span = range(writes // 50, max(writes * 49 // 50, writes // 50 + kills))
    points = sorted(rng.sample(span, kills))
    figures = KillFigures()
    ledger = figures.ledger
    gate, stop = asyncio.Event(), asyncio.Event()
    gate.set()

    async def kill_and_restart(*, during_writes: bool = True) -> None:
        server.signal(signal.SIGKILL)  # while the writers' requests are in flight
        gate.clear()  # no new write until the acknowledged ones are read back
        await asyncio.to_thread(server.kill)
        figures.kills += during_writes
        figures.integrity.append(
            await asyncio.to_thread(integrity_check, server.db, scratch / "check")
        )
        spawned = time.perf_counter()
        await asyncio.to_thread(server.restart)
        if server.port != port:
            raise WorkloadBroken("restarted on another port")
        async with Cluster([target], timeout=10.0) as probe:
            (info,) = await probe.hello()
            if not info.up:
                raise WorkloadBroken(f"no answer to hello after a restart: {info.error}")
            figures.restarts.append(time.perf_counter() - spawned)
            keys, ledger.since_check = ledger.since_check, set()
            stored = {c.key: c for c in await probe.fetch(target, sorted(keys))}
        figures.lost += sum(ledger.lost(key, stored.get(key)) for key in keys)

    pool = [Cluster([target], timeout=5.0) for _ in range(clients)]
    tasks = [
        asyncio.create_task(
            write_lane(c, target, f"c{i}l{j}", ledger, gate, stop, random.Random(lane_seed(i, j)))
        )
        for i, c in enumerate(pool)
        for j in range(lanes)
    ]
    try:
        for point in [*points, writes]:
            # A writer that failed ends the wait at once, and its error ends the run.
            await until(
                lambda: ledger.count >= point or any(t.done() for t in tasks) or past(deadline),  # noqa: B023
                bound=60 if deadline is None else None,
            )
            for finished in [t for t in tasks if t.done()]:
                await finished
            if point == writes or past(deadline):
                break
            await kill_and_restart()
            gate.set()
        stop.set()
        await asyncio.gather(*tasks)  # each finishes the write it has started
        await kill_and_restart(during_writes=False)
        async with Cluster([target], timeout=30.0) as probe:
            stored = {c.key: c async for c in probe.scan(target, page_size=1000)}
        figures.lost += sum(ledger.lost(k, stored.get(k)) for k in ledger.acknowledged)
        figures.stored = set(stored)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.aclose() for c in pool))
    return figures


# --- 2. a hung server, a slow link, a black-holed link --------------------------------------------


class Timed:
    """Runs each command as the interfaces do, under its own time budget (CommandBudget: a
    server that has not answered gets the timeout in all), and keeps its wall time beyond the
    timeout. `tolerate`: errors counted in `failed` (the command then gives None)."""

    def __init__(self, cluster: Cluster, *, tolerate: tuple[type[Exception], ...] = ()) -> None:
        self.cluster = cluster
        self.tolerate = tolerate
        self.overshoot: dict[str, list[float]] = {}
        self.failed = 0

    async def __call__(self, name: str, work: Awaitable[T]) -> T | None:
        timeout = self.cluster.timeout
        self.cluster.budget = CommandBudget(timeout)
        started = time.perf_counter()
        result: T | None = None
        try:
            async with asyncio.timeout(timeout * 4 + 10):  # a guard: they return near timeout
                result = await work
        except self.tolerate:
            self.failed += 1
        finally:
            self.cluster.budget = None
        self.overshoot.setdefault(name, []).append(time.perf_counter() - started - timeout)
        return result

    def worst(self, *names: str) -> float:
        return max((v for n in names for v in self.overshoot.get(n, [])), default=0.0)


@dataclass(frozen=True)
class Fault:
    name: str
    faulty: int  # the index of the faulty server in the cluster
    inject: Callable[[], None]
    heal: Callable[[], None]


def link_faults(hung: Signalled, proxy: FaultProxy, timeout: float) -> list[Fault]:
    """The third server SIGSTOPped; the second's link delayed three timeouts, or black-holed."""
    return [
        Fault(
            "SIGSTOP", 2, lambda: hung.signal(signal.SIGSTOP), lambda: hung.signal(signal.SIGCONT)
        ),
        Fault(f"{timeout * 3:g} s delay", 1, lambda: proxy.delay(timeout * 3000), proxy.heal),
        Fault("blackhole", 1, proxy.blackhole, proxy.heal),
    ]


class FaultyRun:
    """One client's commands while one of its three servers is faulty: timed, and what each
    server stored or left unknown recorded. The `check_*` hooks see every outcome; a test
    overrides them to assert, the soak leaves them be."""

    def __init__(self, cluster: Cluster, queue: WriteQueue, timed: Timed) -> None:
        self.cluster, self.queue, self.timed = cluster, queue, timed
        self.acknowledged: list[tuple[Address, Copy]] = []  # (server, copy) of stored writes
        self.unknown: list[tuple[Address, Copy]] = []
        self.delivered = 0  # queued writes the sync after each fault delivered
        self.base = movie("Fault base")

    async def run_commands(self, name: str, faulty: int) -> None:
        cluster, queue, base, timed = self.cluster, self.queue, self.base, self.timed
        got = await timed("get", commands.get(cluster, base.title, base.year))
        self.check_get(name, faulty, got)
        listed = await timed("serverlist", commands.serverlist(cluster, queue))
        self.check_serverlist(name, faulty, listed)
        added = await timed("add", commands.add(cluster, movie(name), queue=queue))
        change: dict[str, ExtraValue | list[str] | None] = {"plot": name}
        edit = commands.edit(cluster, base.title, base.year, change, queue=queue)
        edited = await timed("edit", edit)
        for outcome in (added, edited):
            self.check_written(outcome, cluster.servers[faulty])
            self.record(outcome)
        self.check_queued(name, faulty)
        synced = await timed("sync", commands.sync(cluster, queue=queue))
        self.check_sync(name, faulty, synced)

    def record(self, outcome: commands.WriteOutcome | None) -> None:
        if outcome is None or outcome.copy is None:
            return
        for result in outcome.results:
            if result.stored:
                self.acknowledged.append((result.server, outcome.copy))
            elif result.status is WriteStatus.UNKNOWN:
                self.unknown.append((result.server, outcome.copy))

    async def heal(self, name: str) -> None:
        healed = await commands.sync(self.cluster, queue=self.queue)
        if healed.replayed is not None:
            self.delivered += healed.replayed.delivered
        await self.check_healed(name, healed)

    def check_get(self, name: str, faulty: int, got: commands.GetOutcome | None) -> None:
        pass

    def check_serverlist(
        self, name: str, faulty: int, listed: commands.ServerListOutcome | None
    ) -> None:
        pass

    def check_written(self, outcome: commands.WriteOutcome | None, faulty: Address) -> None:
        pass

    def check_queued(self, name: str, faulty: int) -> None:
        pass

    def check_sync(self, name: str, faulty: int, synced: commands.SyncOutcome | None) -> None:
        pass

    async def check_healed(self, name: str, healed: commands.SyncOutcome) -> None:
        pass


@dataclass
class FaultFigures:
    run: FaultyRun
    faults: int = 0
    lost: int = 0  # acknowledged writes their server no longer holds
    undelivered: int = 0  # unknown writes still missing after healing
    dropped: int = 0  # bytes the black hole threw away


async def hung_and_slow(
    servers: list[Signalled],
    queue_dir: Path,
    *,
    timeout: float,
    cycles: int,
    new_run: Callable[[Cluster, WriteQueue, Timed], FaultyRun] = FaultyRun,
    tolerate: tuple[type[Exception], ...] = (),
    deadline: float | None = None,
) -> FaultFigures:
    """Three servers; in turn the third is SIGSTOPped, and the second's link (through the proxy)
    delayed three times the timeout or black-holed, while a client runs every command; after
    each fault is healed, one sync delivers what was queued."""
    async with FaultProxy(HOST, servers[1].port) as proxy:
        addresses = [address_of(servers[0]), parse_address(proxy.address), address_of(servers[2])]
        with WriteQueue(queue_dir) as queue:
            async with Cluster(addresses, timeout=timeout) as cluster:
                run = new_run(cluster, queue, Timed(cluster, tolerate=tolerate))
                figures = FaultFigures(run)
                added = await commands.add(cluster, run.base, queue=queue)
                if added.exit_code != commands.OK:
                    raise WorkloadBroken(f"the base movie was not added: {added}")
                faults = link_faults(servers[2], proxy, timeout)
                for cycle in range(cycles):
                    if past(deadline):
                        break
                    fault = faults[cycle % len(faults)]
                    name = fault.name if cycle < len(faults) else f"{fault.name} {cycle}"
                    fault.inject()
                    try:
                        await run.run_commands(name, fault.faulty)
                    finally:
                        fault.heal()
                    figures.faults += 1
                    await run.heal(name)
                figures.lost = await not_held(cluster, run.acknowledged)
                figures.undelivered = await not_held(cluster, run.unknown)
        figures.dropped = proxy.stats.dropped
    return figures


# --- 3. many clients editing one movie at once ----------------------------------------------------


def count_edit(current: Movie, editor: int, n: int) -> Movie:
    """`current` with one more edit of this editor counted (`n` is not recorded)."""
    extra = dict(current.extra)
    extra[f"n{editor}"] = int(extra.get(f"n{editor}", 0)) + 1
    return validate(msgspec.structs.replace(current, extra=extra))


@dataclass
class EditFigures:
    base: Copy
    final: Copy | None = None
    parent_of: dict[str, str] = field(default_factory=dict)  # applied edit's rev -> its parent's
    refused: int = 0
    unknown: int = 0
    seconds: float = 0.0

    @property
    def applied(self) -> int:
        return len(self.parent_of)

    def chain(self) -> tuple[int, str]:
        """How many applied revisions lead back from the final copy, and where the chain ends."""
        assert self.final is not None
        length, rev = 0, self.final.rev
        while rev in self.parent_of:
            rev = self.parent_of[rev]
            length += 1
        return length, rev

    def counted(self, editors: int) -> int:
        assert self.final is not None
        return sum(int(self.final.movie.extra.get(f"n{i}", 0)) for i in range(editors))


async def contended_edits(
    target: Address,
    *,
    editors: int,
    edits: int,
    change: Callable[[Movie, int, int], Movie] = count_edit,
    deadline: float | None = None,
) -> EditFigures:
    """Every edit is a conditional put of a child of the newest version the client knows; a
    refusal (stale, conflict) returns the server's newest copy, and the edit is made again as a
    child of that. `change(movie, editor, n)` makes edit n of an editor."""
    figures = EditFigures(first_copy(movie("Contended", 2001)))
    base = figures.base

    async def editor(index: int) -> None:
        async with Cluster([target], timeout=10.0) as cluster:
            (found,) = await cluster.get(base.movie.title, base.movie.year)
            (current,) = found.copies
            for n in range(edits):
                if past(deadline):
                    return
                while True:
                    edit = child([current], change(current.movie, index, n))
                    (result,) = await cluster.put({target: edit})
                    if result.status is WriteStatus.APPLIED:
                        figures.parent_of[edit.rev] = current.rev
                        current = edit
                        break
                    if result.status in (WriteStatus.STALE, WriteStatus.CONFLICT):
                        figures.refused += 1
                        if result.current is None:
                            raise WorkloadBroken(f"a refusal without the server's copy: {result}")
                        current = result.current
                        continue
                    # No answer: read what the server holds; it may have applied this edit.
                    if result.status is not WriteStatus.UNKNOWN:
                        raise WorkloadBroken(f"an edit was not answered as expected: {result}")
                    figures.unknown += 1
                    (found,) = await cluster.get(base.movie.title, base.movie.year)
                    (newest,) = found.copies
                    if held(edit, newest):
                        figures.parent_of[edit.rev] = current.rev
                        current = edit
                        break
                    current = newest

    async with Cluster([target], timeout=10.0) as cluster:
        (put,) = await cluster.put({target: base})
        if put.status is not WriteStatus.APPLIED:
            raise WorkloadBroken(f"the base version was not applied: {put}")
        started = time.perf_counter()
        await asyncio.gather(*(editor(i) for i in range(editors)))
        figures.seconds = time.perf_counter() - started
        (found,) = await cluster.get(base.movie.title, base.movie.year)
    (figures.final,) = found.copies
    return figures
