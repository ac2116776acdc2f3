"""Search latency: one server holding a large catalog of generated titles (and one holding
1,000 movies, in the same run), asked a fixed mixed list of queries — exact titles, word
prefixes, typos, filters only — one at a time on one connection; p50 and p99 per run."""

from __future__ import annotations

import itertools
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from benchmarks.harness import Server, run, start_server
from moviedb.client.address import parse_address
from moviedb.client.connection import Connection
from moviedb.model import Movie
from moviedb.protocol import Search
from moviedb.server.storage import Store
from moviedb.versions import Copy, first_copy

BATCH = 10_000
SMALL = 1_000
QUERIES = 200
MAX_SECONDS = 600.0  # a bound on each measured pass

# Words common in real titles come first (picked most often: word frequencies fall off as in
# real titles); invented words fill the list to ~2,000 so that typos have near neighbours.
COMMON = """
the of a and in to love man night day last star war wars king dead life world girl city house
story black time dark return blood lost home american big little part secret great money death
heart dream summer christmas game white red blue road river moon sun fire ice dragon matrix
godfather back new good bad one two three first lady boy men women kid family friends school
street town island lake sea ocean mountain valley forest garden wild west east north south
dog cat horse bird wolf lion tiger bear shark monster ghost angel devil god hell heaven paradise
hunter killer soldier doctor queen prince princess knight hero captain agent spy thief
detective lawyer teacher stranger brother sister mother father son daughter wife husband
children baby young old long short high deep cold hot silent loud fast slow lucky happy sad
crazy beautiful perfect true final hidden broken golden silver iron steel stone glass paper
shadow light storm rain snow wind thunder flower rose blade gun bullet sword crown ring key
door window room bed train car ship plane bridge tower castle palace prison hotel bar club
party wedding funeral birthday holiday weekend midnight morning evening tomorrow yesterday
forever never always again alone together inside outside beyond under over after before
between against without within across around through rising falling running flying dancing
singing burning fighting hunting living dying lovers strangers rebels heroes legends ghosts
kings queens warriors journey adventure escape revenge rescue mission battle attack invasion
empire kingdom republic nation planet galaxy universe space earth mars future past present
memory truth lies promise wish hope fear rage fury glory honor justice freedom power
""".split()  # noqa: SIM905 - a list of 300 words reads better as text
_ONSETS = "b br c ch cl d dr f fl fr g gl gr h j k l m n p pl pr r s sh sl st t th tr v w z"
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "ia"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "ck", "rk", "m"]
GENRES = ["drama", "comedy", "action", "thriller", "horror", "romance", "sci-fi", "crime", "war"]


def vocabulary(size: int = 2000) -> list[str]:
    """COMMON, then invented words of one to three syllables (the same list on every run)."""
    rng = random.Random(1)
    onsets = _ONSETS.split()
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    for _ in range(size * 100):  # bounded: far more draws than the list needs
        if len(words) >= size:
            break
        word = "".join(
            rng.choice(onsets) + rng.choice(_VOWELS) + rng.choice(_CODAS)
            for _ in range(rng.choice((1, 2, 2, 3)))
        )
        if 3 <= len(word) <= 12 and word not in seen:
            seen.add(word)
            words.append(word)
    return words


def catalog(count: int, seed: int = 7) -> list[Copy]:
    """`count` movies with titles of one to four words (Zipf-like word frequencies), a year,
    a director, genres and (mostly) a rating; no two share a title and year."""
    rng = random.Random(seed)
    words = vocabulary()
    cumulative = list(itertools.accumulate(1 / (rank + 8) for rank in range(len(words))))
    names = [w.capitalize() for w in words[len(COMMON) :]]
    copies: list[Copy] = []
    keys: set[tuple[str, int]] = set()
    for _ in range(count * 3):  # bounded: duplicates of title and year are drawn again
        if len(copies) >= count:
            break
        chosen = rng.choices(words, cum_weights=cumulative, k=rng.choice((1, 2, 2, 3, 3, 4)))
        title = " ".join(chosen).title()
        year = rng.randint(1920, 2024)
        key = (title, year)  # titles of generated words fold alike only when equal
        if key in keys:
            continue
        keys.add(key)
        movie = Movie(
            title=title,
            year=year,
            director=f"{rng.choice(names)} {rng.choice(names)}",
            genres=rng.sample(GENRES, rng.randint(1, 3)),
            rating=None if rng.random() < 0.1 else round(rng.uniform(1, 10), 1),
        )
        copies.append(first_copy(movie))
    return copies


def build(db: Path, copies: list[Copy]) -> None:
    """Write the catalog straight into a server's database file (large transactions)."""
    store = Store(db)
    for start in range(0, len(copies), BATCH):
        store.apply(copies[start : start + BATCH])
    store.close()


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


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


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
                build(db, copies[:size])
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
        click.echo(f"{size:>9,} movies  p50 ms {_spread(p50)}   p99 ms {_spread(p99)}")


def _spread(values: list[float]) -> str:
    return f"min {min(values):.2f}  median {statistics.median(values):.2f}  max {max(values):.2f}"
