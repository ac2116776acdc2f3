"""Fan-out get across many servers: moviedb's `Cluster.get` (every server at once, persistent
connections, uvloop) against the original design's client (benchmarks/original.py: servers one
after another, a new TCP connection per request), each on its own servers holding the same
catalog; one get of a title across all servers, the two sides alternating get by get."""

from __future__ import annotations

import pickle
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

from benchmarks.harness import percentiles, run, server_command, start_servers, summary
from benchmarks.original import OriginalClient
from moviedb.client.cluster import Cluster, ReadStatus
from moviedb.model import Movie, validate
from moviedb.protocol import MAX_PAGE
from moviedb.versions import Copy, first_copy

ORIGINAL = Path(__file__).with_name("original.py")
WARM_UP = 20  # unmeasured gets per side and run, of titles of their own: code paths warm
SIDES = ("moviedb", "original")
TARGET = 0.3  # issue 6: moviedb's p50 at most 0.3x the original's


def catalog(count: int) -> list[Movie]:
    return [
        validate(
            Movie(
                title=f"Film {i}",
                year=1950 + i % 70,
                director=f"Director {i % 997}",
                genres=["drama"],
                plot=f"The plot of film {i}, in a sentence or two.",
            )
        )
        for i in range(count)
    ]


def original_database(movies: list[Movie]) -> dict[str, dict[str, object]]:
    """The original's dict: title -> information."""
    return {
        m.title: {"year": m.year, "director": m.director, "genres": m.genres, "plot": m.plot}
        for m in movies
    }


async def load(cluster: Cluster, copies: list[Copy]) -> None:
    for server in cluster.servers:
        for start in range(0, len(copies), MAX_PAGE):
            results = await cluster.put_batch(server, copies[start : start + MAX_PAGE])
            if not all(r.stored for r in results):
                raise RuntimeError(f"{server}: catalog not loaded: {results[0]}")


async def fanout_get(cluster: Cluster, title: str) -> float:
    started = time.perf_counter()
    results = await cluster.get(title)
    elapsed = time.perf_counter() - started
    if not all(r.status is ReadStatus.FOUND for r in results):
        raise RuntimeError(f"moviedb get {title!r}: {[r.status.value for r in results]}")
    return elapsed


def original_get(client: OriginalClient, title: str) -> float:
    started = time.perf_counter()
    replies = client.get(title)
    elapsed = time.perf_counter() - started
    if not all(reply.get("ok") for _, reply in replies):
        raise RuntimeError(f"original get {title!r}: {replies}")
    return elapsed


async def one_run(
    cluster: Cluster, client: OriginalClient, warm: list[str], titles: list[str], deadline: float
) -> tuple[list[float], list[float]]:
    """Seconds per get of each side, alternating which side goes first, after unmeasured gets
    of the `warm` titles (drawn apart from the measured ones)."""
    for title in warm:
        await fanout_get(cluster, title)
        original_get(client, title)
    fanout: list[float] = []
    sequential: list[float] = []
    for index, title in enumerate(titles):
        if index % 2:
            sequential.append(original_get(client, title))
            fanout.append(await fanout_get(cluster, title))
        else:
            fanout.append(await fanout_get(cluster, title))
            sequential.append(original_get(client, title))
        if time.perf_counter() > deadline:
            break
    return fanout, sequential


async def one_server_rates(
    cluster: Cluster,
    client: OriginalClient,
    titles: list[str],
    deadline: float,
    order: tuple[str, ...],
) -> dict[str, float]:
    """Gets per second against one server, one get at a time: moviedb on its persistent
    connection, the original with a connection per request; the sides in `order` (which the
    caller reverses every other run, so that noise hits both sides alike)."""
    rates = {}
    for side in order:
        started = time.perf_counter()
        done = 0
        for title in titles:
            if side == "moviedb":
                await fanout_get(cluster, title)
            else:
                original_get(client, title)
            done += 1
            if time.perf_counter() > deadline:
                break
        rates[side] = done / (time.perf_counter() - started)
    return rates


async def measure(
    moviedb: list[str],
    original: list[tuple[str, int]],
    movies: list[Movie],
    *,
    runs: int,
    gets: int,
    rate_gets: int,
    max_seconds: float,
) -> tuple[list[tuple[list[float], list[float]]], list[tuple[float, float]]]:
    rng = random.Random(5)
    async with Cluster(moviedb) as cluster, cluster.subset(cluster.servers[:1]) as single:
        await load(cluster, [first_copy(m) for m in movies])
        client = OriginalClient(original)
        lone = OriginalClient(original[:1])
        await fanout_get(single, movies[0].title)  # connected before its gets/s are timed
        latencies = []
        rates = []
        for index in range(runs):
            warm = [rng.choice(movies).title for _ in range(WARM_UP)]
            titles = [rng.choice(movies).title for _ in range(gets)]
            deadline = time.perf_counter() + max_seconds
            fanout, sequential = await one_run(cluster, client, warm, titles, deadline)
            latencies.append((fanout, sequential))
            line = f"run {index + 1}: {len(fanout)} gets each; " + "; ".join(
                f"{name} p50 {p50:.2f} ms p99 {p99:.2f} ms"
                for name, (p50, p99) in (
                    ("moviedb", percentiles(fanout)),
                    ("original", percentiles(sequential)),
                )
            )
            if rate_gets:
                titles = [rng.choice(movies).title for _ in range(rate_gets)]
                deadline = time.perf_counter() + max_seconds
                order = SIDES if index % 2 == 0 else SIDES[::-1]
                rate = await one_server_rates(single, lone, titles, deadline, order)
                rates.append((rate["moviedb"], rate["original"]))
                line += f"; one server {rates[-1][0]:,.0f} vs {rates[-1][1]:,.0f} gets/s"
            click.echo(line)
        return latencies, rates


@click.command()
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--servers", default=10, show_default=True, type=click.IntRange(1, 50))
@click.option("--gets", default=1000, show_default=True, type=click.IntRange(2, 100_000),
              help="Measured gets per side per run.")  # fmt: skip
@click.option("--movies", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Movies on every server.")  # fmt: skip
@click.option("--rate-gets", default=2000, show_default=True, type=click.IntRange(0, 100_000),
              help="Gets per side per run against one server for gets/s (0: skip).")  # fmt: skip
@click.option("--max-seconds", default=60.0, show_default=True, help="Cap on each measured pass.")
def fanout(
    runs: int, servers: int, gets: int, movies: int, rate_gets: int, max_seconds: float
) -> None:
    """One get across --servers servers: moviedb's parallel fan-out vs the original sequential,
    connection-per-request client (p50, p99)."""
    chosen = catalog(movies)
    with tempfile.TemporaryDirectory() as tmp:
        commands = [server_command(Path(tmp, f"moviedb{i}.sqlite3")) for i in range(servers)]
        for i in range(servers):
            db = Path(tmp, f"original{i}.p")
            db.write_bytes(pickle.dumps(original_database(chosen)))  # loaded by the server
            commands.append([sys.executable, str(ORIGINAL), "--ports", "0", "--db", str(db)])
        both = start_servers(commands)
        try:
            latencies, rates = run(
                measure(
                    [s.address for s in both[:servers]],
                    [("127.0.0.1", s.port) for s in both[servers:]],
                    chosen,
                    runs=runs,
                    gets=gets,
                    rate_gets=rate_gets,
                    max_seconds=max_seconds,
                )
            )
        finally:
            for server in both:
                server.stop()
    click.echo(
        f"{servers} servers a side, {movies:,} movies each; one get of a title across all "
        f"servers, the two sides alternating get by get; {runs} runs"
    )
    p50 = {side: [percentiles(pair[side])[0] for pair in latencies] for side in (0, 1)}
    p99 = {side: [percentiles(pair[side])[1] for pair in latencies] for side in (0, 1)}
    names = ("moviedb Cluster.get (parallel, persistent connections)",
             "original (sequential, connection per request)")  # fmt: skip
    for side, name in enumerate(names):
        click.echo(
            f"{name}: p50 ms {summary(p50[side], ',.2f')}   p99 ms {summary(p99[side], ',.2f')}"
        )
    ratios = [m / o for m, o in zip(p50[0], p50[1], strict=True)]
    verdict = "met" if statistics.median(ratios) <= TARGET else "not met"
    click.echo(f"ratio of p50 (moviedb / original), per run: {summary(ratios, ',.2f')}; "
               f"target <= {TARGET} {verdict}")  # fmt: skip
    if rates:
        click.echo(
            f"one server, one get at a time, gets/s: "
            f"moviedb (persistent connection) {summary([r[0] for r in rates])}; "
            f"original (connection per request) {summary([r[1] for r in rates])}"
        )
