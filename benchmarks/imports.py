"""Import throughput: a generated CSV file of N movies imported into one server and into three
(`moviedb import`'s own code path: parse, validate, batch, put_batch, group commit), compared in
the same run with the physical limit on this machine — a raw SQLite `executemany` of the same
rows into a table keyed by title, in one transaction (WAL, synchronous=FULL)."""

from __future__ import annotations

import csv
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import click

from benchmarks.harness import Server, run, server_command, start_servers, summary
from moviedb import data_commands
from moviedb.client.address import parse_address
from moviedb.client.cluster import Cluster

WORDS = [
    "night",
    "day",
    "star",
    "war",
    "love",
    "city",
    "dark",
    "light",
    "road",
    "king",
    "queen",
    "river",
    "storm",
    "iron",
    "silver",
    "blue",
    "red",
    "last",
    "first",
    "lost",
    "final",
    "secret",
    "hidden",
    "golden",
    "broken",
    "wild",
    "quiet",
    "long",
    "short",
    "deep",
    "high",
    "cold",
    "fire",
    "ice",
    "stone",
    "glass",
    "dream",
    "ghost",
    "shadow",
    "heart",
    "world",
    "house",
    "garden",
    "ocean",
    "desert",
    "winter",
    "summer",
]


def generate(path: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Title", "Year", "Director", "Genre", "Runtime", "IMDB Rating", "Country"])
        for i in range(count):
            title = " ".join(rng.choice(WORDS).title() for _ in range(rng.randint(1, 4)))
            out.writerow(
                [
                    f"{title} {i}",
                    1920 + i % 100,
                    f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}",
                    rng.choice(["Drama", "Comedy", "Sci-Fi", "Horror", "Noir"]),
                    f"{rng.randint(70, 200)} min",
                    f"{rng.uniform(1, 10):.1f}",
                    rng.choice(["US", "FR", "JP", "IN", "BR"]),
                ]
            )


def raw_executemany(source: Path, db: Path) -> float:
    """Rows per second for the same rows (read with csv, as text) in one executemany."""
    started = time.perf_counter()
    with source.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows)
        connection = sqlite3.connect(db, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE movies (key TEXT PRIMARY KEY, doc TEXT NOT NULL)")
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO movies VALUES (?, ?)",
            ((f"{r[0].lower()}\x1f{r[1]}", ",".join(r)) for r in rows),
        )
        connection.execute("COMMIT")
        count = connection.execute("SELECT count(*) FROM movies").fetchone()[0]
        connection.close()
    return int(count) / (time.perf_counter() - started)


async def imported(source: Path, servers: list[Server]) -> tuple[float, int]:
    """Rows per second through `moviedb import` into these servers, and rows stored on each."""
    addresses = [parse_address(s.address) for s in servers]
    async with Cluster(addresses, timeout=120.0) as cluster:
        plan = data_commands.plan_import(source)
        started = time.perf_counter()
        outcome = await data_commands.import_file(cluster, plan)
        elapsed = time.perf_counter() - started
    stored = min(s.stored for s in outcome.servers.values())
    if outcome.rejected or stored != outcome.rows:
        raise RuntimeError(f"import incomplete: {outcome}")
    return outcome.rows / elapsed, stored


@click.command(name="import")
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--movies", default=1_000_000, show_default=True)
def import_benchmark(runs: int, movies: int) -> None:
    """Import into 1 and 3 servers vs a raw SQLite executemany of the same rows."""
    figures: dict[str, list[float]] = {"raw executemany": [], "import, 1 server": []}
    figures["import, 3 servers"] = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "movies.csv")
        generate(source, movies)
        size = source.stat().st_size
        for index in range(runs):
            # Interleaved, each side on fresh databases, so machine noise hits all alike.
            figures["raw executemany"].append(raw_executemany(source, Path(tmp, f"raw{index}.db")))
            for count in (1, 3):
                servers = start_servers(
                    [server_command(Path(tmp, f"s{index}-{count}-{i}.db")) for i in range(count)]
                )
                try:
                    rate, _ = run(imported(source, servers))
                finally:
                    for server in servers:
                        server.stop()
                name = "import, 1 server" if count == 1 else "import, 3 servers"
                figures[name].append(rate)
    click.echo(f"{movies:,} movies, CSV of {size / 1e6:.0f} MB; rows/s over {runs} runs")
    for name, values in figures.items():
        click.echo(f"{name:<20} {summary(values)}")
    raw = statistics.median(figures["raw executemany"])
    for name in ("import, 1 server", "import, 3 servers"):
        click.echo(f"ratio ({name} / raw, median): {statistics.median(figures[name]) / raw:.3f}")
