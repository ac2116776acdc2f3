"""Title search: SQLite FTS5 finds candidates, rapidfuzz ranks them (the `search` op).

A query is folded like titles and split into words. Candidates are read from the index
shortest title first, at most a bounded number per query, at these levels:

1. every word is a whole word of the title;
2. every word is a whole word or a prefix of one ("matr" -> "matrix");
3. as 2, or a word of the index within a small edit distance (typos; words of 4+ letters);
4. some of the words match: those longer than three letters that are not common (only for
   queries of several words, and only while fewer hits than the page needs were found).

The widest of levels 1-3 is read first; only when it has more matches than are read are the
narrower ones read too, so that the better tiers are never crowded out by shorter titles that
match worse. Each level adds only hits of a lower tier than the levels before it, so a page
further on never reorders the pages before it. A level whose matches the filters thin out reads
at most SCAN_LIMIT of them (a filter-only search, FILTER_SCAN_LIMIT movies); when such a cap cuts
a read short, the hits may be incomplete and the result says `more`.

The score (0-100) depends only on the query and the title, so servers agree on it:

    100          the folded title is the folded query
    80 - 99.9    every query word is a word of the title
    60 - 79.9    every query word is a word or a prefix of one
    40 - 59.9    every query word matches, some only with a typo
     0 - 39.9    some query words match

Within a tier, the closer the whole title is to the query (rapidfuzz), the higher; equal scores
are ordered by rating (unrated last), then year (no year last), both descending, then by key
(storage.search_order; clients merging the hits of several servers order them the same way).
"""

from __future__ import annotations

import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import msgspec
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from moviedb import protocol
from moviedb.model import MAX_YEAR, MIN_YEAR, fold_title
from moviedb.protocol import RequestError, Search, SearchHit, SearchResult
from moviedb.server.storage import Matches, MovieFilter, Store, folded_title, search_order
from moviedb.versions import Copy

MAX_QUERY_CHARS: Final = 1000
MAX_WORDS: Final = 32
MAX_HITS: Final = 10_000  # offset + limit
CANDIDATES: Final = 500  # read per level, at least (more when a page reaches further)
SCAN_LIMIT: Final = 20_000  # index matches a level looks at when filters drop some
FILTER_SCAN_LIMIT: Final = 100_000  # movies a filter-only search looks at
DIRECTOR_LIMIT: Final = 5_000  # a director's movies sorted by rating; more: scanned instead
MAX_TYPO_TERMS: Final = 20  # index words tried for one query word's typos
COMMON_SHARE: Final = 0.05  # level 4 leaves out words in more than this share of movies
SHORT_WORD: Final = 3  # letters: no typo allowed, and not enough alone for level 4
MAX_NEW_TITLES: Final = 10_000  # titles added to the vocabulary one by one, or it is reloaded
RELOAD_SECONDS: Final = 1.0  # at least, between reloads of the vocabulary after removals

# Words as unicode61 splits them: letters and digits; everything else separates.
_WORD: Final = re.compile(r"[^\W_]+")
_decode: Final = msgspec.json.Decoder(Copy).decode


def words_of(text: str) -> list[str]:
    """The folded words of a title or query."""
    return _WORD.findall(fold_title(text))


def max_typos(word: str) -> int:
    """Edits (insert, delete, substitute, swap neighbours) a word may carry and still match."""
    return 0 if len(word) <= SHORT_WORD else 1 if len(word) <= 7 else 2


# --- validation -----------------------------------------------------------------------------------


def check(request: Search) -> None:
    """Refuse arguments out of range, naming the argument and what is accepted."""

    def refuse(message: str) -> RequestError:
        return RequestError(protocol.BAD_REQUEST, message, request.id)

    if len(request.query) > MAX_QUERY_CHARS:
        raise refuse(f"query is {len(request.query)} characters; at most {MAX_QUERY_CHARS}")
    if len(words_of(request.query)) > MAX_WORDS:
        raise refuse(f"query has more than {MAX_WORDS} words; at most {MAX_WORDS} are accepted")
    if not 1 <= request.limit <= protocol.MAX_PAGE:
        raise refuse(f"limit must be 1 to {protocol.MAX_PAGE}")
    if request.offset < 0:
        raise refuse("offset must be 0 or more")
    if request.offset + request.limit > MAX_HITS:
        raise refuse(
            f"offset + limit must be at most {MAX_HITS:,}; narrow the search (add words or "
            "filters) instead of paging further"
        )
    if request.year is not None and not MIN_YEAR <= request.year <= MAX_YEAR:
        raise refuse(f"year must be {MIN_YEAR} to {MAX_YEAR}, or null")
    rating = request.min_rating
    if rating is not None and not (math.isfinite(rating) and 0 <= rating <= 10):
        raise refuse("min_rating must be a number from 0 to 10, or null")
    for name, value in (("director", request.director), ("genre", request.genre)):
        if value is not None and not value.strip():
            raise refuse(f"{name} must not be blank; leave it out (or null) to accept any")
        if value is not None and len(value) > MAX_QUERY_CHARS:
            raise refuse(f"{name} is {len(value)} characters; at most {MAX_QUERY_CHARS}")
    if not request.query.strip() and _filter_of(request) == MovieFilter():
        raise refuse("give a query, or at least one of year, director, genre and min_rating")


def _filter_of(request: Search) -> MovieFilter:
    return MovieFilter(
        year=request.year,
        director=None if request.director is None else fold_title(request.director),
        genre=None if request.genre is None else fold_title(request.genre),
        min_rating=request.min_rating,
    )


# --- the vocabulary, for typos --------------------------------------------------------------------


class Vocabulary:
    """The words of the title index and how many movies hold each (shared by the worker
    threads of one server). Loaded on first use; the titles newly indexed since (new movies,
    and live copies written over tombstones) are then added from the store's TitleLog, whatever
    their rowids. Words of removed titles stay until the whole is reloaded, which happens when
    titles were removed and the last load is old enough (its cost decides how old: `clock` is
    time.monotonic but for tests), or when too many titles were added to follow one by one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._by_length: dict[int, list[str]] = {}
        self._position: tuple[int, int] | None = None  # of the store's TitleLog: (added, removed)
        self._loaded_at = -math.inf
        self._load_seconds = 0.0

    def expand(self, store: Store, words: list[str]) -> tuple[list[list[str]], list[int]]:
        """For each query word: the index words it matches only with a typo (closest and most
        common first), and the number of movies whose title holds the word itself."""
        with self._lock:
            self._refresh(store)
            typos = [self._typos(word) for word in words]
            counts = [self._counts.get(word, 0) for word in words]
        return typos, counts

    def _typos(self, word: str) -> list[str]:
        limit = max_typos(word)
        if not limit:
            return []
        found: list[tuple[int, int, str]] = []
        for length in range(len(word) - limit, len(word) + limit + 1):
            terms = self._by_length.get(length)
            if not terms:
                continue
            for term, distance, _ in process.extract(
                word, terms, scorer=OSA.distance, score_cutoff=limit, limit=None
            ):
                if term != word and not term.startswith(word):  # those match as they are
                    found.append((int(distance), -self._counts.get(term, 0), term))
        return [term for _, _, term in sorted(found)[:MAX_TYPO_TERMS]]

    def _refresh(self, store: Store) -> None:
        log = store.title_log
        if self._position is None:
            self._load(store)
            return
        added, removed = self._position
        logged_added, logged_removed = log.position()
        if logged_added != added:
            new = log.added_since(added)
            if new is None or len(new[0]) > MAX_NEW_TITLES:
                self._load(store)
                return
            titles, added = new
            for title in titles:
                self._add(set(_WORD.findall(title)))
            self._position = added, removed
        if logged_removed != removed:
            age = self._clock() - self._loaded_at
            if age >= max(RELOAD_SECONDS, 20 * self._load_seconds):
                self._load(store)

    def _load(self, store: Store) -> None:
        started = self._clock()
        # The position first: a title logged after it is added again later, never missed.
        position = store.title_log.position()
        with store.snapshot():
            terms = store.title_terms()
        self._counts = dict(terms)
        self._by_length = {}
        for term, _ in terms:
            self._by_length.setdefault(len(term), []).append(term)
        self._position = position
        self._loaded_at = self._clock()
        self._load_seconds = self._loaded_at - started

    def _add(self, terms: Iterable[str]) -> None:
        for term in terms:
            if term not in self._counts:
                self._by_length.setdefault(len(term), []).append(term)
            self._counts[term] = self._counts.get(term, 0) + 1


_vocabularies: Final[weakref.WeakKeyDictionary[Store, Vocabulary]] = weakref.WeakKeyDictionary()
_vocabularies_lock: Final = threading.Lock()


def vocabulary_of(store: Store) -> Vocabulary:
    """The one vocabulary of the server whose read Store this is."""
    with _vocabularies_lock:
        vocabulary = _vocabularies.get(store)
        if vocabulary is None:
            vocabulary = _vocabularies[store] = Vocabulary()
        return vocabulary


# --- scoring --------------------------------------------------------------------------------------

EXACT: Final = 3  # how well one query word matches a title word
PREFIX: Final = 2
TYPO: Final = 1


def word_match(word: str, title_words: list[str]) -> int:
    """How the best of the title's words matches one query word (0: none does)."""
    best = 0
    limit = max_typos(word)
    for term in title_words:
        if term == word:
            return EXACT
        if term.startswith(word):
            best = PREFIX
        elif best < TYPO and limit and OSA.distance(word, term, score_cutoff=limit) <= limit:
            best = TYPO
    return best


def score(query_words: list[str], title_words: list[str]) -> float:
    """0-100 (see the module's docstring); 0 when no query word matches."""
    query = " ".join(query_words)
    title = " ".join(title_words)
    if query == title:
        return 100.0
    matches = [word_match(word, title_words) for word in query_words]
    if not any(matches):
        return 0.0
    closeness = max(fuzz.ratio(query, title), fuzz.token_sort_ratio(query, title)) / 100
    worst = min(matches)
    if worst:
        base = {EXACT: 80.0, PREFIX: 60.0, TYPO: 40.0}[worst]
        return round(base + 19.9 * closeness, 1)
    matched = sum(1 for m in matches if m) / len(matches)
    return round(39.9 * (matched + closeness) / 2, 1)


@dataclass(frozen=True, slots=True)
class _Ranked:
    score: float
    copy: Copy

    def order(self) -> tuple[float, float, int, str]:
        return (-self.score, *search_order(self.copy.movie.rating, self.copy.key))


# --- the search -----------------------------------------------------------------------------------


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class _Passes:
    """The FTS5 queries of a search: `levels` from the narrowest (whole words) to the widest
    (typos), each matching a superset of the one before; `partial` for some words only."""

    levels: list[str]
    partial: str | None


def _passes(words: list[str], typos: list[list[str]], counts: list[int], live: int) -> _Passes:
    levels = [
        " AND ".join(_quote(w) for w in words),
        " AND ".join(_quote(w) + "*" for w in words),
    ]
    if any(typos):
        levels.append(
            " AND ".join(
                "(" + " OR ".join([_quote(w) + "*", *(_quote(t) for t in extra)]) + ")"
                for w, extra in zip(words, typos, strict=True)
            )
        )
    # Some words only: short and common words ("the", "of") alone would match anything, and
    # prefixes would read long lists for hits that rank last anyway.
    common = max(20, COMMON_SHARE * live)
    telling = [
        " OR ".join([_quote(w), *(_quote(t) for t in extra)])
        for w, extra, count in zip(words, typos, counts, strict=True)
        if len(w) > SHORT_WORD and count <= common
    ]
    return _Passes(levels, " OR ".join(telling) if len(words) > 1 and telling else None)


def search(store: Store, vocabulary: Vocabulary, live: int, request: Search) -> SearchResult:
    """One page of hits; `live` is the number of live movies."""
    where = _filter_of(request)
    wanted = request.offset + request.limit + 1  # one more tells whether there are more
    words = words_of(request.query)
    capped = False
    if not request.query.strip():
        matches = _best_rated(store, where, wanted)
        ranked = sorted((_Ranked(100.0, _decode(doc)) for doc in matches.docs), key=_Ranked.order)
        capped = matches.capped
    elif not words:
        ranked = []
    else:
        typos, counts = vocabulary.expand(store, words)
        passes = _passes(words, typos, counts, live)
        ranked, capped = _ranked_hits(store, words, passes, where, wanted)
    end = request.offset + request.limit
    hits = [SearchHit(r.score, r.copy) for r in ranked[request.offset : end]]
    # A capped read may have missed hits: never claim there are no more then.
    return SearchResult(hits, more=len(ranked) > end or capped)


def _best_rated(store: Store, where: MovieFilter, wanted: int) -> Matches:
    """A filter-only search: the director's movies when the name is rare enough, otherwise
    the catalog (or the year) in rating order, filtered."""
    director = _WORD.findall(where.director or "")
    with store.snapshot():
        if director:
            query = " AND ".join(_quote(word) for word in director)
            docs = store.best_rated_by_director(query, where, wanted, DIRECTOR_LIMIT)
            if docs is not None:
                return Matches(docs)
        return store.best_rated(where, wanted, FILTER_SCAN_LIMIT)


def _ranked_hits(
    store: Store, words: list[str], passes: _Passes, where: MovieFilter, wanted: int
) -> tuple[list[_Ranked], bool]:
    """The hits in order, and whether a capped read may have missed some."""
    candidates = max(CANDIDATES, wanted)
    found: dict[str, _Ranked] = {}
    capped = False

    def read(fts_query: str) -> bool:
        """Score the query's first candidates; True when there may be more than those."""
        nonlocal capped
        matches = store.match_titles(fts_query, where, candidates, SCAN_LIMIT)
        for doc in matches.docs:
            copy = _decode(doc)
            if copy.key not in found:
                value = score(words, _WORD.findall(folded_title(copy.key)))
                if value > 0:
                    found[copy.key] = _Ranked(value, copy)
        capped = capped or matches.capped
        return len(matches.docs) == candidates or matches.capped

    with store.snapshot():
        # The widest level first: when it has no more than `candidates` matches, they are
        # every hit of every level. Otherwise the narrower levels, in order, make sure that
        # the better tiers are there first (a level cut short fills the page by itself;
        # a capped one would not fill it any better).
        *narrower, widest = passes.levels
        if read(widest):
            for fts_query in narrower:
                if read(fts_query):
                    break
        if len(found) < wanted and passes.partial is not None:
            read(passes.partial)
    return sorted(found.values(), key=_Ranked.order), capped


def answer(store: Store, live: int, request: Search) -> bytes:
    """The encoded reply; runs in a worker thread, on that thread's own connection."""
    reader = store.reader_for_this_thread()
    result = search(reader, vocabulary_of(store), live, request)
    return protocol.encode_ok(request.id, result)
