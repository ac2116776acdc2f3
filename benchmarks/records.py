"""Generated catalogs: the words their titles and names are made of, titles drawn with
Zipf-like word frequencies, full records — all eight fields filled — streamed in batches so that
a million movies can be written without holding them all, and the direct write of a catalog into
a database file. The same seed gives the same movies."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from moviedb.model import Movie
from moviedb.server.storage import Store
from moviedb.versions import Copy, first_copy

T = TypeVar("T")

BATCH = 10_000  # copies per transaction when a database file is written directly

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


def names(words: list[str]) -> list[str]:
    """Capitalised invented words, for the people of a catalog (directors, cast)."""
    return [w.capitalize() for w in words[len(COMMON) :]]


def distinct_titles(rng: random.Random, words: list[str], count: int) -> Iterator[tuple[str, int]]:
    """`count` titles of one to four words (Zipf-like word frequencies) with a year, no two
    alike. Drawn from `rng` lazily, so that the caller may draw each movie's other fields from
    the same `rng` between two titles (each catalog's sequence stays what its seed made)."""
    cumulative = list(itertools.accumulate(1 / (rank + 8) for rank in range(len(words))))
    seen: set[tuple[str, int]] = set()
    for _ in range(count * 3):  # bounded: a title and year drawn twice is drawn again
        if len(seen) >= count:
            return
        length = rng.choice((1, 2, 2, 3, 3, 4))
        title = " ".join(rng.choices(words, cum_weights=cumulative, k=length)).title()
        year = rng.randint(1920, 2024)
        if (title, year) in seen:  # titles of generated words fold alike only when equal
            continue
        seen.add((title, year))
        yield title, year
    raise RuntimeError(f"could not draw {count} distinct titles")


@dataclass(frozen=True)
class Title:
    """What a `get` of one movie sends: its title as entered, and its year."""

    title: str
    year: int

    @classmethod
    def of(cls, movie: Movie) -> Title:
        return cls(movie.title, movie.year or 0)


def movies(count: int, seed: int = 11) -> Iterator[Movie]:
    """`count` movies with all eight fields set and no two sharing a title and year: titles of
    distinct_titles, three cast names, one to three genres, a plot of ten to sixteen words.
    Letters, spaces, commas and hyphens only."""
    rng = random.Random(seed)
    words = vocabulary()
    people = names(words)
    for title, year in distinct_titles(rng, words, count):
        yield Movie(
            title=title,
            year=year,
            director=f"{rng.choice(people)} {rng.choice(people)}",
            cast=[f"{rng.choice(people)} {rng.choice(people)}" for _ in range(3)],
            genres=rng.sample(GENRES, rng.randint(1, 3)),
            runtime_min=rng.randint(70, 200),
            rating=round(rng.uniform(1, 10), 1),
            plot=" ".join(rng.choices(words, k=rng.randint(10, 16))).capitalize() + ".",
        )


def batches(count: int, size: int = BATCH, seed: int = 11) -> Iterator[list[Copy]]:
    """The catalog as first copies, `size` at a time."""
    stream = movies(count, seed)
    for _ in range(count // size + 1):  # bounded: one more than the full batches
        batch = [first_copy(m) for m in itertools.islice(stream, size)]
        if not batch:
            return
        yield batch


def write(db: Path, chunks: Iterable[Sequence[Copy]]) -> None:
    """Write straight into a server's database file, a transaction per chunk: far quicker than
    writing through a server, for catalogs that are the setting, not the measurement."""
    store = Store(db)
    try:
        for chunk in chunks:
            store.apply(chunk)
    finally:
        store.close()


def write_all(db: Path, copies: Sequence[Copy]) -> None:
    """`copies`, BATCH to a transaction."""
    write(db, (copies[start : start + BATCH] for start in range(0, len(copies), BATCH)))


def build(db: Path, count: int, keep: Callable[[Movie], T], seed: int = 11) -> list[T]:
    """Write the catalog of `movies` into `db`; return `keep(movie)` of every movie, in catalog
    order: what the caller needs of each, so that the catalog is drawn once and never held
    whole."""
    kept: list[T] = []

    def noted() -> Iterator[list[Copy]]:
        for batch in batches(count, seed=seed):
            kept.extend(keep(c.movie) for c in batch)
            yield batch

    write(db, noted())
    return kept
