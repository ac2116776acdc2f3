"""Generated catalogs of full records — all eight fields filled — streamed in batches, so that
a million movies can be written without holding them all; the same seed gives the same movies."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.search import COMMON, GENRES, vocabulary
from moviedb.model import Movie
from moviedb.server.storage import Store
from moviedb.versions import Copy, first_copy

BATCH = 10_000  # copies per transaction when a database file is written directly
FIELDS = ("title", "year", "director", "cast", "genres", "runtime_min", "rating", "plot")


@dataclass(frozen=True)
class Title:
    """What a `get` of one movie sends: its title as entered, and its year."""

    title: str
    year: int


def movies(count: int, seed: int = 11) -> Iterator[Movie]:
    """`count` movies with every field of FIELDS set and no two sharing a title and year:
    titles of one to four words (Zipf-like word frequencies), three cast names, one to three
    genres, a plot of ten to sixteen words. Letters, spaces, commas and hyphens only."""
    rng = random.Random(seed)
    words = vocabulary()
    cumulative = list(itertools.accumulate(1 / (rank + 8) for rank in range(len(words))))
    names = [w.capitalize() for w in words[len(COMMON) :]]
    seen: set[tuple[str, int]] = set()
    made = 0
    for _ in range(count * 3):  # bounded: a title and year drawn twice is drawn again
        if made >= count:
            return
        length = rng.choice((1, 2, 2, 3, 3, 4))
        title = " ".join(rng.choices(words, cum_weights=cumulative, k=length))
        year = rng.randint(1920, 2024)
        if (title, year) in seen:
            continue
        seen.add((title, year))
        made += 1
        yield Movie(
            title=title.title(),
            year=year,
            director=f"{rng.choice(names)} {rng.choice(names)}",
            cast=[f"{rng.choice(names)} {rng.choice(names)}" for _ in range(3)],
            genres=rng.sample(GENRES, rng.randint(1, 3)),
            runtime_min=rng.randint(70, 200),
            rating=round(rng.uniform(1, 10), 1),
            plot=" ".join(rng.choices(words, k=rng.randint(10, 16))).capitalize() + ".",
        )
    raise RuntimeError(f"could not draw {count} distinct titles")


def batches(count: int, size: int = BATCH, seed: int = 11) -> Iterator[list[Copy]]:
    """The catalog as first copies, `size` at a time."""
    stream = movies(count, seed)
    for _ in range(count // size + 1):  # bounded: one more than the full batches
        batch = [first_copy(m) for m in itertools.islice(stream, size)]
        if not batch:
            return
        yield batch


def build(db: Path, count: int, seed: int = 11) -> list[Title]:
    """Write the catalog straight into a server's database file (large transactions); return
    every movie's title and year, in catalog order."""
    store = Store(db)
    titles: list[Title] = []
    try:
        for batch in batches(count, seed=seed):
            store.apply(batch)
            titles.extend(Title(c.movie.title, c.movie.year or 0) for c in batch)
    finally:
        store.close()
    return titles
