"""Search latency: one server holding a large catalog of generated titles (and one holding
1,000 movies, in the same run), asked a fixed mixed list of queries — exact titles, word
prefixes, typos, filters only — one at a time on one connection; p50 and p99 per run."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from benchmarks.harness import Server, percentiles, run, start_server, summary
from benchmarks.records import GENRES, distinct_titles, names, vocabulary, write_all
from moviedb.client.address import parse_address
from moviedb.client.connection import Connection
from moviedb.model import Movie
from moviedb.protocol import Search
from moviedb.versions import Copy, first_copy

SMALL = 1_000
QUERIES = 200
MAX_SECONDS = 600.0  # a bound on each measured pass


def catalog(count: int, seed: int = 7) -> list[Copy]:
    """`count` movies, no two sharing a title and year (records.distinct_titles), each with a
    director, genres and (mostly) a rating."""
    rng = random.Random(seed)
    words = vocabulary()
    people = names(words)
    return [
        first_copy(
            Movie(
                title=title,
                year=year,
                director=f"{rng.choice(people)} {rng.choice(people)}",
                genres=rng.sample(GENRES, rng.randint(1, 3)),
                rating=None if rng.random() < 0.1 else round(rng.uniform(1, 10), 1),
            )
        )
        for title, year in distinct_titles(rng, words, count)
    ]


def typo(word: str, rng: random.Random) -> str:
    """The word with one edit: two neighbours swapped, a letter dropped or changed."""
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("swap", "drop", "change"))
    if kind == "swap":
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + ("x" if word[i] != "x" else "q") + word[i + 1 :]


def queries(sample: list[Copy], count: int = QUERIES, seed: int = 3) -> list[Search]:
    """A fixed mix drawn from movies present at every size: a quarter each of exact titles,
    prefixes (the last word cut short), typos (one edit in a word of 5+ letters) and
    filter-only searches (year, genre, director, minimum rating)."""
    rng = random.Random(seed)
    mixed: list[Search] = []
    for i in range(count):
        movie = rng.choice(sample).movie
        words = movie.title.split()
        kind = i % 4
        if kind == 0:
            mixed.append(Search(query=movie.title))
        elif kind == 1:
            cut = max(1, len(words[-1]) // 2)
            mixed.append(Search(query=" ".join([*words[:-1], words[-1][:cut]])))
        elif kind == 2:
            long = [j for j, w in enumerate(words) if len(w) >= 5]
            if long:
                j = rng.choice(long)
                words[j] = typo(words[j].lower(), rng)
            mixed.append(Search(query=" ".join(words)))
        else:
            arguments: list[dict[str, Any]] = [
                {"year": movie.year},
                {"genre": rng.choice(GENRES)},
                {"director": movie.director},
                {"min_rating": 9.5},
            ]
            mixed.append(Search(**rng.choice(arguments)))
    return mixed


async def latencies(address: str, mixed: list[Search], deadline: float) -> list[float]:
    """Seconds per search, one request at a time on one connection."""
    connection = Connection(parse_address(address))
    await connection.connect()
    seconds: list[float] = []
    try:
        for request in mixed:
            started = time.perf_counter()
            reply = await connection.request(request)
            seconds.append(time.perf_counter() - started)
            if not reply.ok:
                raise RuntimeError(f"search refused: {reply.error}")
            if time.perf_counter() > deadline:
                break
    finally:
        await connection.aclose()
    return seconds


@click.command()
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--movies", default=1_000_000, show_default=True, help="Movies in the large catalog.")
def search(runs: int, movies: int) -> None:
    """Search latency (p50, p99) at --movies and at 1,000 movies, in the same run."""
    copies = catalog(max(movies, SMALL))
    mixed = queries(copies[:SMALL])
    sizes = sorted({movies, SMALL}, reverse=True)
    figures: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        servers: dict[int, Server] = {}
        try:
            for size in sizes:
                db = Path(tmp, f"{size}.sqlite3")
                write_all(db, copies[:size])
                servers[size] = start_server(db)
            for size in sizes:  # warm-up: vocabulary loaded, pages cached
                run(latencies(servers[size].address, mixed, time.perf_counter() + MAX_SECONDS))
            for _ in range(runs):
                for size in sizes:  # interleaved, so that machine noise hits both alike
                    deadline = time.perf_counter() + MAX_SECONDS
                    seconds = run(latencies(servers[size].address, mixed, deadline))
                    figures[size].append(percentiles(seconds))
        finally:
            for server in servers.values():
                server.stop()
    click.echo(
        f"{len(mixed)} searches per run, one at a time on one connection "
        f"(exact titles, prefixes, typos, filters only), {runs} runs"
    )
    for size in sizes:
        p50 = [f[0] for f in figures[size]]
        p99 = [f[1] for f in figures[size]]
        click.echo(
            f"{size:>9,} movies  p50 ms {summary(p50, '.2f')}   p99 ms {summary(p99, '.2f')}"
        )
