"""Durable writes: group commit (50 concurrent writers against a server) compared, in the same
run, with one commit per write straight into SQLite (the same Store, synchronous=FULL)."""

from __future__ import annotations

import asyncio
import statistics
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


@click.command()
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--count", default=2000, show_default=True, help="Writes per side per run.")
@click.option("--writers", default=50, show_default=True)
@click.option("--max-seconds", default=20.0, show_default=True, help="Cap on each side's run.")
def writes(runs: int, count: int, writers: int, max_seconds: float) -> None:
    """Group commit vs one commit per write (durable: synchronous=FULL, WAL)."""
    single: list[float] = []
    grouped: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(runs):
            # Interleaved, each side on a fresh database, so machine noise hits both alike.
            rate = one_commit_per_write(
                Path(tmp) / f"single{index}.sqlite3", count, time.perf_counter() + max_seconds
            )
            single.append(rate)
            server = start_server(Path(tmp) / f"group{index}.sqlite3")
            try:
                deadline = time.perf_counter() + max_seconds
                grouped.append(run(group_commit(server.address, writers, count, deadline)))
            finally:
                server.stop()
            click.echo(f"run {index + 1}: one commit per write {single[-1]:,.0f}/s, "
                       f"group commit ({writers} writers) {grouped[-1]:,.0f}/s")  # fmt: skip
    ratios = [g / s for g, s in zip(grouped, single, strict=True)]
    click.echo(f"one commit per write, writes/s: {summary(single)}")
    click.echo(f"group commit, {writers} writers, writes/s: {summary(grouped)}")
    click.echo(f"ratio (group / single), per run: median {statistics.median(ratios):.2f}x")
