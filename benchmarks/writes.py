"""Durable writes: group commit (50 concurrent writers against a server) compared, in the same
run, with a commit per write: the same server and writers with --max-batch 1, and the Store in
process committing one write at a time (synchronous=FULL everywhere)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import click

from benchmarks.harness import run, start_server, summary
from moviedb.client.address import parse_address
from moviedb.client.connection import Connection
from moviedb.model import Movie
from moviedb.protocol import Put
from moviedb.server.storage import Store
from moviedb.server.writer import MAX_BATCH
from moviedb.versions import Copy, first_copy


def movies(count: int, tag: str) -> list[Copy]:
    return [first_copy(Movie(title=f"{tag} movie {i}", year=2000 + i % 20)) for i in range(count)]


def one_commit_per_write(db: Path, count: int, deadline: float) -> float:
    """Writes per second when every write is its own transaction."""
    store = Store(db)
    copies = movies(count, "single")
    started = time.perf_counter()
    done = 0
    for copy in copies:
        store.apply([copy])
        done += 1
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    store.close()
    return done / elapsed


async def group_commit(address: str, writers: int, count: int, deadline: float) -> float:
    """Writes per second acknowledged by a server, from `writers` connections at once, each
    waiting for its acknowledgement before the next write (no pipelining)."""
    copies = movies(count, f"group {time.time_ns()}")
    connections = [Connection(parse_address(address)) for _ in range(writers)]
    done = 0

    async def writer(connection: Connection, share: list[Copy]) -> None:
        nonlocal done
        for copy in share:
            reply = await connection.request(Put(copy=copy))
            if not reply.ok:
                raise RuntimeError(f"write refused: {reply.error}")
            done += 1
            if time.perf_counter() > deadline:
                return

    await asyncio.gather(*(c.connect() for c in connections))
    started = time.perf_counter()
    await asyncio.gather(*(writer(c, copies[i::writers]) for i, c in enumerate(connections)))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(c.aclose() for c in connections))
    return done / elapsed


SIDES = ("store single", "server single", "group")  # the order of the first run


def one_side(side: str, tmp: Path, index: int, count: int, writers: int, seconds: float) -> float:
    """Writes per second of one side, on a fresh database: the server with group commit (up to
    MAX_BATCH writes a commit, its default), the same server with --max-batch 1, or the Store
    in process; each bounded to `seconds` of writing (a server's start not counted)."""
    if side == "store single":
        deadline = time.perf_counter() + seconds
        return one_commit_per_write(tmp / f"single{index}.sqlite3", count, deadline)
    batch = str(MAX_BATCH if side == "group" else 1)
    server = start_server(tmp / f"server{batch}-{index}.sqlite3", "--max-batch", batch)
    try:
        deadline = time.perf_counter() + seconds
        return run(group_commit(server.address, writers, count, deadline))
    finally:
        server.stop()


@click.command()
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--count", default=2000, show_default=True, help="Writes per side per run.")
@click.option("--writers", default=50, show_default=True)
@click.option("--max-seconds", default=20.0, show_default=True, help="Cap on each side's run.")
def writes(runs: int, count: int, writers: int, max_seconds: float) -> None:
    """Group commit vs one commit per write (durable: synchronous=FULL, WAL).

    Three sides, interleaved in every run, each on a fresh database: the server with group
    commit and `writers` concurrent writers; the same server and writers with --max-batch 1 (a
    commit per write: what group commit is measured against); and, for reference, the Store in
    process committing one write at a time (no network, no protocol, no event loop). The side
    that goes first rotates from run to run, so that noise hits all three alike."""
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(runs):
            shift = index % len(SIDES)
            for side in SIDES[shift:] + SIDES[:shift]:
                rates[side].append(one_side(side, Path(tmp), index, count, writers, max_seconds))
            click.echo(
                f"run {index + 1}: group commit ({writers} writers) "
                f"{rates['group'][-1]:,.0f}/s; a commit per write: server ({writers} writers, "
                f"--max-batch 1) {rates['server single'][-1]:,.0f}/s, Store in process "
                f"{rates['store single'][-1]:,.0f}/s"
            )
    grouped, server_single, single = rates["group"], rates["server single"], rates["store single"]
    click.echo(f"group commit, {writers} writers, writes/s: {summary(grouped)}")
    click.echo(f"a commit per write, server, {writers} writers: {summary(server_single)}")
    click.echo(f"a commit per write, Store in process, writes/s: {summary(single)}")
    against_server = [g / s for g, s in zip(grouped, server_single, strict=True)]
    against_store = [g / s for g, s in zip(grouped, single, strict=True)]
    click.echo(
        "ratio group / a commit per write (server, same writers), per run: "
        + summary(against_server, ".2f", "x")
    )
    click.echo(
        "ratio group / a commit per write (Store in process), per run: "
        + summary(against_store, ".2f", "x")
    )
