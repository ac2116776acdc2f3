"""Fault soak: the faults of tests/test_faults.py, for longer, with figures instead of asserts.

Each round runs three phases, each bounded in count and in time:

1. kill -9: concurrent writers (new movies and new revisions of them) against one server that
   is SIGKILLed at random moments and restarted on the same database and port; after each
   restart every acknowledged write is read back before writing resumes, and the database file
   is checked with `PRAGMA integrity_check` after each kill;
2. hung and slow: three servers, one SIGSTOPped or behind tests/faultproxy.py (delayed beyond
   the timeout, or black-holed), in turn; get, serverlist, add, edit and sync are timed, each
   under its own time budget as the interfaces run them, writes the faulty server did not answer
   are queued, and after healing one sync delivers them;
3. contention: many clients editing one movie with conditional puts, each refusal (stale,
   conflict) made again on the server's newest copy; the applied edits must form one chain.

A lost acknowledged write, a broken chain or a failed integrity check makes the exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import click
import msgspec

from benchmarks.harness import LISTENING, run
from moviedb import commands
from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import Cluster, CommandBudget, WriteStatus
from moviedb.client.queue import WriteQueue
from moviedb.model import ExtraValue, Movie, validate
from moviedb.versions import Copy, child, first_copy, generation
from tests.faultproxy import FaultProxy

T = TypeVar("T")


class Process:
    """A `moviedb-server` this benchmark started; signalled only through its own PID."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = 0
        self.proc = self._spawn("0")

    def _spawn(self, ports: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moviedb.server", "--ports", ports, "--db", str(self.db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        match = LISTENING.search(proc.stdout.readline())  # the server's readiness signal
        if not match:
            proc.kill()
            raise RuntimeError(f"the server on {self.db} did not start")
        self.port = int(match.group(1))
        return proc

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.port)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def reap(self) -> None:
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def restart(self) -> None:
        """The same database and, if it is free, the same port (it was killed and reaped)."""
        self.proc = self._spawn(f"{self.port},0")

    def close(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.reap()


def seconds(values: list[float]) -> str:
    if not values:
        return "none"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"


# --- 1. kill -9 during writes ---------------------------------------------------------------------


@dataclass
class Ledger:
    """Per movie, the revisions the server acknowledged, oldest first, and the one unanswered."""

    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    newest: dict[str, Copy] = field(default_factory=dict)
    in_flight: dict[str, Copy] = field(default_factory=dict)
    count: int = 0
    since_check: set[str] = field(default_factory=set)

    def record(self, copy: Copy) -> None:
        self.acknowledged.setdefault(copy.key, []).append(copy.rev)
        self.newest[copy.key] = copy
        self.in_flight.pop(copy.key, None)
        self.count += 1
        self.since_check.add(copy.key)

    def lost(self, key: str, stored: Copy | None) -> int:
        revs = self.acknowledged.get(key, [])
        if stored is not None and stored.rev in revs:
            return len(revs) - 1 - revs.index(stored.rev)
        pending = self.in_flight.get(key)
        if stored is not None and pending is not None and pending.rev == stored.rev:
            return 0
        return len(revs)


@dataclass
class KillFigures:
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    integrity: list[str] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)


def integrity_check(db: Path, scratch: Path) -> str:
    """On a copy of the stopped server's files, so that the server recovers its own WAL."""
    scratch.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        target = Path(f"{scratch / db.name}{suffix}")
        target.unlink(missing_ok=True)
        if Path(f"{db}{suffix}").exists():
            shutil.copyfile(f"{db}{suffix}", target)
    with contextlib.closing(sqlite3.connect(scratch / db.name)) as check:
        return "; ".join(str(row[0]) for row in check.execute("PRAGMA integrity_check"))


async def kill_nine(
    tmp: Path, writes: int, kills: int, clients: int, lanes: int, deadline: float, seed: int
) -> KillFigures:
    server = Process(tmp / "kill.sqlite3")
    target, port = server.address, server.port
    rng = random.Random(seed)
    points = sorted(
        rng.sample(range(writes // 50, max(writes * 49 // 50, writes // 50 + kills)), kills)
    )
    ledger, figures = Ledger(), KillFigures()
    gate, stop = asyncio.Event(), asyncio.Event()
    gate.set()

    async def lane(cluster: Cluster, name: str, lane_rng: random.Random) -> None:
        mine: list[str] = []
        while not stop.is_set():
            await gate.wait()
            if not mine or lane_rng.random() < 0.5:
                movie = Movie(title=f"{name} film {len(mine)}", year=2000, extra={"w": 0})
                copy = first_copy(validate(movie))
                mine.append(copy.key)
            else:
                parent = ledger.newest[lane_rng.choice(mine[-8:])]
                extra = {"w": int(parent.movie.extra["w"]) + 1}
                copy = child([parent], validate(msgspec.structs.replace(parent.movie, extra=extra)))
            ledger.in_flight[copy.key] = copy
            while True:
                (result,) = await cluster.put({target: copy})
                if result.stored:
                    break
                if result.status not in (WriteStatus.UNREACHABLE, WriteStatus.UNKNOWN):
                    raise RuntimeError(f"a write was refused: {result}")
                await gate.wait()  # the same revision again once the server is back
            ledger.record(copy)

    async def kill_and_restart(*, during_writes: bool = True) -> None:
        server.signal(signal.SIGKILL)
        gate.clear()
        await asyncio.to_thread(server.reap)
        figures.kills += during_writes
        figures.integrity.append(await asyncio.to_thread(integrity_check, server.db, tmp / "chk"))
        spawned = time.perf_counter()
        await asyncio.to_thread(server.restart)
        if server.port != port:
            raise RuntimeError("the server restarted on another port")
        async with Cluster([target], timeout=5.0) as probe:
            (info,) = await probe.hello()
            figures.restarts.append(time.perf_counter() - spawned)
            if not info.up:
                raise RuntimeError(f"no hello after a restart: {info.error}")
            keys, ledger.since_check = ledger.since_check, set()
            stored = {c.key: c for c in await probe.fetch(target, sorted(keys))}
        figures.lost += sum(ledger.lost(k, stored.get(k)) for k in keys)

    pool = [Cluster([target], timeout=5.0) for _ in range(clients)]
    tasks = [
        asyncio.create_task(lane(c, f"c{i}l{j}", random.Random(seed * 1000 + i * lanes + j)))
        for i, c in enumerate(pool)
        for j in range(lanes)
    ]
    try:
        for point in [*points, writes]:
            while ledger.count < point and time.monotonic() < deadline:
                if any(t.done() for t in tasks):
                    await asyncio.gather(*tasks)  # a writer failed: its error ends the run
                await asyncio.sleep(0.01)  # polling a counter that offers nothing to await
            if point == writes or time.monotonic() >= deadline:
                break
            await kill_and_restart()
            gate.set()
        stop.set()
        await asyncio.gather(*tasks)
        await kill_and_restart(during_writes=False)  # nothing in flight; then read everything
        async with Cluster([target], timeout=30.0) as probe:
            stored = {c.key: c async for c in probe.scan(target, page_size=1000)}
        figures.lost += sum(ledger.lost(k, stored.get(k)) for k in ledger.acknowledged)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.aclose() for c in pool))
        server.close()
    figures.acknowledged = ledger.count
    return figures


# --- 2. hung server, slow link, black hole --------------------------------------------------------


@dataclass
class FaultFigures:
    faults: int = 0
    overshoot: dict[str, list[float]] = field(default_factory=dict)  # seconds beyond the timeout
    unknown: int = 0
    delivered: int = 0
    acknowledged: int = 0
    lost: int = 0
    failed: int = 0  # commands that found no server answering

    def worst(self, *names: str) -> float:
        values = [v for n in names for v in self.overshoot.get(n, [])]
        return max(values, default=0.0)


class FaultRun:
    """One client (a Cluster and its queue) running commands while one server is faulty."""

    def __init__(self, cluster: Cluster, queue: WriteQueue, figures: FaultFigures) -> None:
        self.cluster, self.queue, self.figures = cluster, queue, figures
        self.acknowledged: list[tuple[Address, Copy]] = []  # (server, copy) of stored writes
        self.base = validate(Movie(title="Soak base", year=2000))

    async def timed(self, name: str, work: Awaitable[T]) -> T | None:
        """One command under its own time budget, as the interfaces run it."""
        self.cluster.budget = CommandBudget(self.cluster.timeout)
        started = time.perf_counter()
        try:
            result: T | None = await work
        except commands.CommandError:  # no server answered in time (a loaded machine)
            self.figures.failed += 1
            result = None
        finally:
            self.cluster.budget = None
        beyond = time.perf_counter() - started - self.cluster.timeout
        self.figures.overshoot.setdefault(name, []).append(beyond)
        return result

    async def commands_during(self, cycle: int) -> list[commands.WriteOutcome | None]:
        cluster, queue, base = self.cluster, self.queue, self.base
        await self.timed("get", commands.get(cluster, base.title, base.year))
        await self.timed("serverlist", commands.serverlist(cluster, queue))
        movie = validate(Movie(title=f"Soak {cycle}", year=2000))
        added = await self.timed("add", commands.add(cluster, movie, queue=queue))
        change: dict[str, ExtraValue | list[str] | None] = {"plot": f"cycle {cycle}"}
        edit = commands.edit(cluster, base.title, base.year, change, queue=queue)
        edited = await self.timed("edit", edit)
        await self.timed("sync", commands.sync(cluster, queue=queue))
        return [added, edited]

    def record(self, written: list[commands.WriteOutcome | None]) -> None:
        for outcome in written:
            if outcome is None or outcome.copy is None:
                continue
            for result in outcome.results:
                if result.stored:
                    self.acknowledged.append((result.server, outcome.copy))
                self.figures.unknown += result.status is WriteStatus.UNKNOWN

    async def heal(self) -> None:
        healed = await commands.sync(self.cluster, queue=self.queue)
        if healed.replayed is not None:
            self.figures.delivered += healed.replayed.delivered

    async def count_lost(self) -> None:
        for holder, copy in self.acknowledged:
            held = {c.key: c for c in await self.cluster.fetch(holder, [copy.key])}
            found = held.get(copy.key)
            newer = found is not None and (found.rev == copy.rev or copy.rev in found.history)
            self.figures.lost += not newer
        self.figures.acknowledged = len(self.acknowledged)


async def hung_and_slow(tmp: Path, cycles: int, timeout: float, deadline: float) -> FaultFigures:
    """Three servers; in turn the third is SIGSTOPped, and the second's link (through the proxy)
    delayed three times the timeout or black-holed, while a client runs every command."""
    servers = [Process(tmp / f"fault{i}.sqlite3") for i in range(3)]
    figures = FaultFigures()
    hung = servers[2]
    try:
        async with FaultProxy("127.0.0.1", servers[1].port) as proxy:
            faults: list[tuple[Callable[[], None], Callable[[], None]]] = [
                (lambda: hung.signal(signal.SIGSTOP), lambda: hung.signal(signal.SIGCONT)),
                (lambda: proxy.delay(timeout * 3000), proxy.heal),
                (proxy.blackhole, proxy.heal),
            ]
            addresses = [servers[0].address, parse_address(proxy.address), hung.address]
            with WriteQueue(tmp / "client") as queue:
                async with Cluster(addresses, timeout=timeout) as cluster:
                    client = FaultRun(cluster, queue, figures)
                    await commands.add(cluster, client.base, queue=queue)
                    for cycle in range(cycles):
                        if time.monotonic() >= deadline:
                            break
                        inject, heal = faults[cycle % len(faults)]
                        inject()
                        try:
                            written = await client.commands_during(cycle)
                        finally:
                            heal()
                        figures.faults += 1
                        client.record(written)
                        await client.heal()
                    await client.heal()
                    await client.count_lost()
    finally:
        for process in servers:
            process.close()
    return figures


# --- 3. many clients editing one movie ------------------------------------------------------------


@dataclass
class EditFigures:
    applied: int = 0
    refused: int = 0
    unknown: int = 0
    chain: int = 0
    chain_ok: bool = False
    seconds: float = 0.0


async def contention(tmp: Path, editors: int, edits: int, deadline: float) -> EditFigures:
    server = Process(tmp / "edits.sqlite3")
    target = server.address
    base = first_copy(validate(Movie(title="Contended", year=2001)))
    parent_of: dict[str, str] = {}
    figures = EditFigures()

    async def editor(index: int) -> None:
        async with Cluster([target], timeout=10.0) as cluster:
            (found,) = await cluster.get("Contended", 2001)
            (current,) = found.copies
            for _ in range(edits):
                if time.monotonic() >= deadline:
                    return
                while True:
                    extra = dict(current.movie.extra)
                    extra[f"n{index}"] = int(extra.get(f"n{index}", 0)) + 1
                    movie = validate(msgspec.structs.replace(current.movie, extra=extra))
                    edit = child([current], movie)
                    (result,) = await cluster.put({target: edit})
                    newest: Copy | None = edit
                    if result.status in (WriteStatus.STALE, WriteStatus.CONFLICT):
                        figures.refused += 1
                        newest = result.current
                    elif result.status is not WriteStatus.APPLIED:
                        figures.unknown += 1  # no answer: read what the server holds
                        (found,) = await cluster.get("Contended", 2001)
                        (newest,) = found.copies
                    assert newest is not None
                    if newest.rev == edit.rev or edit.rev in newest.history:
                        parent_of[edit.rev] = current.rev  # applied (known, or read back)
                        current = edit
                        break
                    current = newest

    try:
        async with Cluster([target], timeout=10.0) as cluster:
            await cluster.put({target: base})
            started = time.perf_counter()
            await asyncio.gather(*(editor(i) for i in range(editors)))
            figures.seconds = time.perf_counter() - started
            (found,) = await cluster.get("Contended", 2001)
    finally:
        server.close()
    (final,) = found.copies
    rev = final.rev
    while rev in parent_of:
        rev = parent_of[rev]
        figures.chain += 1
    figures.applied = len(parent_of)
    counted = sum(int(final.movie.extra.get(f"n{i}", 0)) for i in range(editors))
    figures.chain_ok = (
        rev == base.rev
        and figures.chain == figures.applied == counted
        and generation(final.rev) == figures.applied + 1
    )
    return figures


# --- the command ----------------------------------------------------------------------------------


@click.command()
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--writes", default=20_000, show_default=True, help="Acknowledged writes per round.")
@click.option("--kills", default=20, show_default=True, help="SIGKILLs per round.")
@click.option("--cycles", default=9, show_default=True, help="Hung/slow faults per round.")
@click.option("--timeout", default=0.5, show_default=True, help="Per-server timeout, seconds.")
@click.option("--editors", default=10, show_default=True)
@click.option("--edits", default=1_000, show_default=True, help="Edits per editor per round.")
@click.option("--max-seconds", default=900.0, show_default=True, help="Stop starting new work.")
@click.option("--seed", default=1, show_default=True)
def soak(
    rounds: int, writes: int, kills: int, cycles: int, timeout: float, editors: int, edits: int,
    max_seconds: float, seed: int,
) -> None:  # fmt: skip
    """Faults for longer: kill -9 during writes, hung and slow servers, contended edits."""
    deadline = time.monotonic() + max_seconds
    began = time.perf_counter()
    killed: list[KillFigures] = []
    faulted: list[FaultFigures] = []
    edited: list[EditFigures] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            if time.monotonic() >= deadline:
                click.echo(f"stopped by --max-seconds before round {index + 1}")
                break
            where = Path(tmp) / f"round{index}"
            where.mkdir()
            k = run(kill_nine(where, writes, kills, 6, 8, deadline, seed + index))
            click.echo(
                f"round {index + 1} kill -9: {k.kills} SIGKILLs during writes and one after, "
                f"{k.acknowledged:,} acknowledged "
                f"writes, {k.lost} lost; integrity_check ok {k.integrity.count('ok')} of "
                f"{len(k.integrity)}; restart to hello {seconds(k.restarts)}"
            )
            f = run(hung_and_slow(where, cycles, timeout, deadline))
            click.echo(
                f"round {index + 1} hung/slow: {f.faults} faults (SIGSTOP, delay, blackhole) at "
                f"timeout {timeout:g} s; beyond it at most: "
                + ", ".join(f"{n} {f.worst(n) * 1000:+.0f} ms" for n in f.overshoot)
                + f"; {f.unknown} unknown writes, "
                f"{f.delivered} delivered after healing; {f.failed} commands without an answer; "
                f"{f.lost} of {f.acknowledged} acknowledged writes lost"
            )
            e = run(contention(where, editors, edits, deadline))
            click.echo(
                f"round {index + 1} edits: {editors} clients, {e.applied:,} applied, "
                f"{e.refused:,} refused and made again, {e.unknown} unknown; chain "
                f"{'unbroken' if e.chain_ok else 'BROKEN'} ({e.chain:,}); "
                f"{e.applied / max(e.seconds, 1e-9):,.0f} applied edits/s"
            )
            killed.append(k)
            faulted.append(f)
            edited.append(e)
    lost = sum(k.lost for k in killed) + sum(f.lost for f in faulted)
    broken = sum(not e.chain_ok for e in edited)
    damaged = sum(c != "ok" for k in killed for c in k.integrity)
    click.echo(
        f"total: {len(killed)} round{'' if len(killed) == 1 else 's'} in "
        f"{time.perf_counter() - began:.0f} s; "
        f"{sum(k.kills for k in killed)} SIGKILLs, "
        f"{sum(k.acknowledged for k in killed) + sum(f.acknowledged for f in faulted):,} "
        f"acknowledged writes, {lost} lost; {damaged} failed integrity checks; restart to hello "
        f"{seconds([r for k in killed for r in k.restarts])}; commands beyond the timeout at "
        f"most {max((f.worst(*f.overshoot) for f in faulted), default=0.0) * 1000:+.0f} ms; "
        f"{sum(e.applied for e in edited):,} contended edits, {broken} broken chains"
    )
    if lost or broken or damaged:
        raise SystemExit(1)
