"""Sync cost grows with the difference, not the catalog: two servers holding the same large
catalog, synced when identical and when a few movies differ, compared in the same run with the
naive way (both catalogs listed in full and compared), in time and in bytes the servers sent."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import click

from benchmarks.harness import Server, run, server_command, start_servers, summary
from benchmarks.records import write_all
from moviedb import commands
from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import Cluster
from moviedb.model import Movie, validate
from moviedb.versions import Copy, child, first_copy


def catalog(count: int) -> list[Copy]:
    return [
        first_copy(validate(Movie(title=f"Film {i}", year=1950 + i % 70, director=f"D {i % 997}")))
        for i in range(count)
    ]


async def bytes_sent(cluster: Cluster) -> int:
    """Bytes every server has sent so far (a reply is counted once written, so this call's own
    `stats` replies appear in the next call's figure; `measure` subtracts them)."""
    total = 0
    for server in cluster.servers:
        total += (await cluster.stats(server)).bytes_out
    return total


async def stats_overhead(cluster: Cluster) -> int:
    """The bytes of one round of `stats` replies, as the next round counts them."""
    first = await bytes_sent(cluster)
    return await bytes_sent(cluster) - first


async def timed_sync(cluster: Cluster, overhead: int) -> tuple[float, int, int]:
    """Seconds, bytes the servers sent, and copies repaired, for one `sync`."""
    before = await bytes_sent(cluster)
    started = time.perf_counter()
    outcome = await commands.sync(cluster, purge_after_days=1e9)
    elapsed = time.perf_counter() - started
    return elapsed, await bytes_sent(cluster) - before - overhead, outcome.repaired


async def timed_full_scan(cluster: Cluster, overhead: int) -> tuple[float, int, int]:
    """The naive comparison: every server's whole catalog listed, compared key by key."""
    before = await bytes_sent(cluster)
    started = time.perf_counter()
    held: list[dict[str, str]] = []
    for server in cluster.servers:
        held.append({c.key: c.rev async for c in cluster.scan(server, page_size=1000)})
    differing = sum(held[0].get(k) != held[1].get(k) for k in held[0].keys() | held[1].keys())
    elapsed = time.perf_counter() - started
    return elapsed, await bytes_sent(cluster) - before - overhead, differing


async def diverge(
    cluster: Cluster, server: Address, copies: list[Copy], count: int, tag: str
) -> None:
    """Edit `count` movies on one server only."""
    edited = [
        child([c], validate(Movie(title=c.movie.title, year=c.movie.year, plot=tag)))
        for c in copies[:count]
    ]
    results = await cluster.put_many(server, edited)
    if not all(r.stored for r in results):
        raise RuntimeError("an edit was not stored")
    copies[:count] = edited


@click.command()
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--movies", default=100_000, show_default=True, help="Movies on each server.")
@click.option("--differ", default=100, show_default=True, help="Movies edited on one server.")
def sync(runs: int, movies: int, differ: int) -> None:
    """Sync of identical and slightly different catalogs vs listing both catalogs in full."""
    copies = catalog(movies)
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp, "a.sqlite3"), Path(tmp, "b.sqlite3")
        write_all(first, copies)
        shutil.copy(first, second)
        servers = start_servers([server_command(first), server_command(second)])
        try:
            figures = run(_measure(servers, copies, runs, differ))
        finally:
            for server in servers:
                server.stop()
    click.echo(f"{movies:,} movies on each of 2 servers; {differ} edited on one before each run")
    for name, values in figures.items():
        seconds = [v[0] for v in values]
        sent = [v[1] for v in values]
        click.echo(
            f"{name:<34} time ms {summary([s * 1000 for s in seconds], ',.1f')}   "
            f"bytes sent median {statistics.median(sent):,.0f}   changed {values[-1][2]}"
        )
    ratio = statistics.median(v[0] for v in figures["sync, identical"]) / statistics.median(
        v[0] for v in figures["full listing, identical"]
    )
    click.echo(f"ratio (sync / full listing, identical catalogs, median time): {ratio:.4f}")


async def _measure(
    servers: list[Server], copies: list[Copy], runs: int, differ: int
) -> dict[str, list[tuple[float, int, int]]]:
    figures: dict[str, list[tuple[float, int, int]]] = {
        "sync, identical": [],
        "full listing, identical": [],
        f"sync, {differ} differ": [],
    }
    addresses = [parse_address(s.address) for s in servers]
    async with Cluster(addresses, timeout=60.0) as cluster:
        overhead = await stats_overhead(cluster)
        for index in range(runs):
            # Interleaved: each run measures every side once, on the same servers.
            figures["sync, identical"].append(await timed_sync(cluster, overhead))
            figures["full listing, identical"].append(await timed_full_scan(cluster, overhead))
            await diverge(cluster, addresses[0], copies, differ, f"run {index}")
            figures[f"sync, {differ} differ"].append(await timed_sync(cluster, overhead))
    return figures
