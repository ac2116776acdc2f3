"""All SQL of a server: one SQLite file in WAL mode, named migrations, versioned movie copies.

A plain synchronous class. The server keeps one instance for reads on the event loop and one
for the writer thread; both may be open on the same file at once (WAL lets readers run while a
write commits).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from moviedb import digests
from moviedb.model import fold_title
from moviedb.versions import Copy, Decision, decide

# Keys are `folded title + "\x1f" + year`; every key of one title lies in [folded\x1f, folded\x20).
_SEPARATOR: Final = "\x1f"
_AFTER_SEPARATOR: Final = "\x20"


def _add_buckets(db: sqlite3.Connection) -> None:
    """Every copy's bucket, and each bucket's XOR digest, for sync (see digests.py)."""
    db.execute("ALTER TABLE movies ADD COLUMN bucket INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "CREATE TABLE buckets (bucket INTEGER PRIMARY KEY, digest INTEGER NOT NULL) WITHOUT ROWID"
    )
    sums = [0] * digests.BUCKETS
    rows = db.execute("SELECT key, rev FROM movies").fetchall()
    updates = []
    for key, rev in rows:
        bucket = digests.bucket_of(key)
        sums[bucket] ^= digests.entry_hash(key, rev)
        updates.append((bucket, key))
    db.executemany("UPDATE movies SET bucket = ? WHERE key = ?", updates)
    db.executemany(
        "INSERT INTO buckets VALUES (?, ?)",
        [(i, digests.to_signed(d)) for i, d in enumerate(sums)],
    )
    db.execute("CREATE INDEX movies_by_bucket ON movies (bucket, key)")
    db.execute("CREATE INDEX tombstones ON movies (key) WHERE deleted = 1")


# A movie's rating, as SQL: the expression of the index that filter-only searches page through.
# (CAST: `doc` is a BLOB of JSON text, which newer SQLite would take for its binary JSONB.)
_RATING: Final = "json_extract(CAST(doc AS TEXT), '$.movie.rating')"
_YEAR: Final = "json_extract(CAST(doc AS TEXT), '$.movie.year')"
_DIRECTOR: Final = "json_extract(CAST(doc AS TEXT), '$.movie.director')"

# The search index holds the folded title of every live movie (the title part of its key, which
# is model.fold_title of its title and never changes for a row). Its rowid is the movies rowid
# with the title's length above bit 40, so FTS5's natural rowid order is shortest title first:
# a search reads matches in that order and stops early instead of ranking every match.
# (`movies` has no INTEGER PRIMARY KEY, so a VACUUM may renumber its rowids: the server never
# runs one; after one run by hand, Store.rebuild_search_index() puts the indexes right.)
_ROWID_BITS: Final = 40
_ROWID_MASK: Final = (1 << _ROWID_BITS) - 1
_MAX_LENGTH_RANK: Final = 4095

# No bm25 ranking is asked of FTS5 (rapidfuzz ranks), so no column sizes are kept.
_FTS_OPTIONS: Final = "tokenize = 'unicode61 remove_diacritics 2', detail = none, columnsize = 0"

_SEARCH_SCHEMA: Final = (
    f"CREATE VIRTUAL TABLE title_words USING fts5(words, {_FTS_OPTIONS}, prefix = '1 2 3')",
    # Every indexed term and the number of movies holding it (the typo-tolerance vocabulary).
    "CREATE VIRTUAL TABLE title_terms USING fts5vocab(title_words, 'row')",
    # The folded director of every live movie that has one, keyed by the movies rowid: a search
    # by director alone reads its few movies instead of scanning the catalog.
    f"CREATE VIRTUAL TABLE director_words USING fts5(words, {_FTS_OPTIONS})",
    # Filter-only searches page through live movies best rated first (NULL ratings last): all
    # of them, or those of one year.
    f"CREATE INDEX movies_by_rating ON movies ({_RATING} DESC, key) WHERE deleted = 0",
    f"CREATE INDEX movies_by_year ON movies ({_YEAR}, {_RATING} DESC, key) WHERE deleted = 0",
)


def folded_title(key: str) -> str:
    """The folded title of a movie key (see model.movie_key)."""
    return key.partition(_SEPARATOR)[0]


def search_order(rating: float | None, key: str) -> tuple[float, int, str]:
    """How search orders movies of equal score: best rated first (unrated last), then newest
    year first (no year last), then by key."""
    year = key.rpartition(_SEPARATOR)[2]
    return (1.0 if rating is None else -rating, -int(year) if year else 0, key)


def _index_entry(rowid: int, key: str) -> tuple[int, str]:
    """The search index's rowid and text for the movies row `rowid` holding `key`."""
    if not 0 < rowid <= _ROWID_MASK:
        raise StorageError(f"movies rowid {rowid} is beyond what the search index can key")
    title = folded_title(key)
    return min(len(title), _MAX_LENGTH_RANK) << _ROWID_BITS | rowid, title


def _add_search(db: sqlite3.Connection) -> None:
    """The search indexes, filled with every live movie."""
    for statement in _SEARCH_SCHEMA:
        db.execute(statement)
    _fill_search(db)


def _fill_search(db: sqlite3.Connection) -> None:
    # In index rowid order (see _IndexChanges), which SQLite sorts for us on disk if need be.
    db.create_function("search_rowid", 2, lambda r, k: _index_entry(r, k)[0], deterministic=True)
    db.create_function("folded_title", 1, folded_title, deterministic=True)
    db.execute(
        "INSERT INTO title_words (rowid, words) SELECT search_rowid(rowid, key) AS entry, "
        "folded_title(key) FROM movies WHERE deleted = 0 ORDER BY entry"
    )
    db.execute(
        f"INSERT INTO director_words (rowid, words) SELECT rowid, fold_title({_DIRECTOR}) "
        f"FROM movies WHERE deleted = 0 AND {_DIRECTOR} IS NOT NULL ORDER BY rowid"
    )


def folded_director(copy: Copy | None) -> str | None:
    """What the director index holds for a copy: its folded director (None: no entry)."""
    if copy is None or copy.deleted or copy.movie.director is None:
        return None
    return fold_title(copy.movie.director)


_MIGRATIONS: Final[tuple[tuple[str, str | Callable[[sqlite3.Connection], None]], ...]] = (
    (
        "0001_movies",
        """
        CREATE TABLE movies (
            key     TEXT PRIMARY KEY,     -- folded title, U+001F, year (see model.movie_key)
            rev     TEXT NOT NULL,
            deleted INTEGER NOT NULL,
            doc     BLOB NOT NULL         -- the whole Copy as JSON, sent to clients as it is
        );
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    ("0002_buckets", _add_buckets),
    (
        "0003_stored_at",
        # When this server stored the copy, by its own clock: a tombstone is purged only once
        # it is old enough here (0 for rows stored before this column existed).
        "ALTER TABLE movies ADD COLUMN stored_at REAL NOT NULL DEFAULT 0",
    ),
    ("0004_search", _add_search),
    (
        "0005_counts",
        # Kept in every write transaction, so that a server starts without counting a million
        # rows (a full scan: `deleted` is in no index but the tombstones').
        """
        CREATE TABLE counts (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO counts SELECT 'entries', count(*) FROM movies;
        INSERT INTO counts SELECT 'live', count(*) FROM movies WHERE deleted = 0
        """,
    ),
)


_decode_copy: Final = msgspec.json.Decoder(Copy).decode
_encode: Final = msgspec.json.Encoder().encode


class StorageError(Exception):
    """The database refused a write (disk full, read-only file, corrupt page)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one write: what was decided, and the stored copy on a refusal."""

    decision: Decision
    current: Copy | None


@dataclass(frozen=True, slots=True)
class PurgeTombstone:
    """Remove the tombstone `key` if it is still stored with revision `rev` and this server
    stored it at least `min_age` seconds ago (by its own clock)."""

    key: str
    rev: str
    min_age: float = 0.0


@dataclass(frozen=True, slots=True)
class Purged:
    purged: bool
    current: Copy | None  # the stored copy when it was kept


Write = Copy | PurgeTombstone


@dataclass(frozen=True, slots=True)
class _Row:
    """A stored row, as a write transaction reads it before its writes."""

    rowid: int
    copy: Copy
    stored_at: float


Outcome = Applied | Purged


@dataclass(slots=True)
class Change:
    """What one committed transaction changed: live movies, and each touched bucket's XOR."""

    live_delta: int = 0
    entries_delta: int = 0  # stored copies, tombstones included
    bucket_xor: dict[int, int] = field(default_factory=dict)

    def toggle(self, key: str, rev: str) -> None:
        bucket = digests.bucket_of(key)
        self.bucket_xor[bucket] = self.bucket_xor.get(bucket, 0) ^ digests.entry_hash(key, rev)


@dataclass(frozen=True, slots=True)
class MovieFilter:
    """What a search keeps besides its title match: every given condition must hold."""

    year: int | None = None
    director: str | None = None  # folded: a run of whole words of the folded director
    genre: str | None = None  # folded: equal to one of the movie's folded genres
    min_rating: float | None = None

    def sql(self) -> tuple[str, list[object]]:
        """The conditions on a `movies` row as SQL (`AND ...` each), and their parameters."""
        where: list[str] = []
        params: list[object] = []
        if self.year is not None:
            suffix = f"{_SEPARATOR}{self.year}"
            where.append("substr(key, ?) = ?")
            params += [-len(suffix), suffix]
        if self.min_rating is not None:
            where.append(f"{_RATING} >= ?")
            params.append(self.min_rating)
        if self.director is not None:
            where.append(f"instr(' ' || fold_title({_DIRECTOR}) || ' ', ?) > 0")
            params.append(f" {self.director} ")
        if self.genre is not None:
            where.append(
                "EXISTS (SELECT 1 FROM json_each(CAST(doc AS TEXT), '$.movie.genres') "
                "WHERE fold_title(value) = ?)"
            )
            params.append(self.genre)
        return "".join(f" AND {w}" for w in where), params


def _fold_text(text: object) -> str | None:
    return fold_title(text) if isinstance(text, str) else None


@dataclass(frozen=True, slots=True)
class Matches:
    """What a capped search read found, and whether the cap cut it short: `capped` is true
    when fewer were found than asked for and the scan stopped at its limit before the end,
    so that more may exist."""

    docs: list[bytes]
    capped: bool = False


TITLE_LOG_LENGTH: Final = 10_000  # newly indexed titles a TitleLog keeps
TIE_SCAN: Final = 1_000  # equally rated rows best_rated reads on in rating order, at most


class TitleLog:
    """The titles this process newly put into the title index of one database file (a new
    movie, or a live copy over a tombstone), the last TITLE_LOG_LENGTH of them, and how many
    titles it took out: what an in-memory vocabulary of the index needs to follow it without
    reading it all again, whatever the rowids (a revived movie keeps its old row; a purged
    row's rowid may be given again). Every Store of this process on the file shares it."""

    def __init__(self, length: int = TITLE_LOG_LENGTH) -> None:
        self._lock = threading.Lock()
        self._titles: deque[str] = deque(maxlen=length)
        self._added = 0  # titles ever logged: the position after the last one
        self._removed = 0

    def record(self, added: Sequence[str], removed: int) -> None:
        """After a commit: the folded titles it added to the index, and how many it removed."""
        if added or removed:
            with self._lock:
                self._titles.extend(added)
                self._added += len(added)
                self._removed += removed

    def position(self) -> tuple[int, int]:
        """(titles added, titles removed) so far."""
        with self._lock:
            return self._added, self._removed

    def added_since(self, added: int) -> tuple[list[str], int] | None:
        """The titles added after position `added` (oldest first) and the position after
        them; None when some of them are no longer kept (then read the index instead)."""
        with self._lock:
            new = self._added - added
            if not 0 <= new <= len(self._titles):
                return None
            titles = list(self._titles)[len(self._titles) - new :] if new else []
            return titles, self._added


_title_logs: Final[weakref.WeakValueDictionary[str, TitleLog]] = weakref.WeakValueDictionary()
_title_logs_lock: Final = threading.Lock()


def _title_log_of(path: Path) -> TitleLog:
    name = os.path.realpath(path)
    with _title_logs_lock:
        log = _title_logs.get(name)
        if log is None:
            log = _title_logs[name] = TitleLog()
        return log


@dataclass(slots=True)
class _IndexChanges:
    """Search index rows to delete and insert at the end of a transaction, in rowid order:
    FTS5 writes its pending changes out whenever a rowid comes lower than the one before it,
    which would make a large batch of writes in key order several times slower. Also the
    titles added to and removed from the title index, for the TitleLog once committed."""

    changes: list[tuple[str, int, str | None]] = field(default_factory=list)
    titles_added: list[str] = field(default_factory=list)
    titles_removed: int = 0

    def add(self, table: str, rowid: int, words: str | None) -> None:
        """Insert `words` at `rowid`, or delete the row when `words` is None."""
        self.changes.append((table, rowid, words))
        if table == "title_words":
            if words is None:
                self.titles_removed += 1
            else:
                self.titles_added.append(words)

    def write(self, db: sqlite3.Connection) -> None:
        """Put the net change of every touched row into the indexes: two statements per index
        for the whole transaction, not one per row (see Store.apply)."""
        existed: dict[tuple[str, int], bool] = {}
        final: dict[tuple[str, int], str | None] = {}
        for table, rowid, words in self.changes:
            # The index holds exactly the live rows, so a row's first change tells whether it
            # was there: a delete (it was) or an insert (it was not).
            existed.setdefault((table, rowid), words is None)
            final[(table, rowid)] = words
        for table in ("title_words", "director_words"):
            deletes = sorted(r for (t, r), was in existed.items() if t == table and was)
            inserts = sorted(
                (r, words) for (t, r), words in final.items() if t == table and words is not None
            )
            if len(deletes) + len(inserts) <= FEW_ROWS:
                for rowid in deletes:
                    db.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
                db.executemany(f"INSERT INTO {table} (rowid, words) VALUES (?, ?)", inserts)
                continue
            if deletes:
                db.execute(
                    f"DELETE FROM {table} WHERE rowid IN (SELECT value FROM json_each(?))",
                    (_encode(deletes),),
                )
            if inserts:
                db.execute(
                    f"INSERT INTO {table} (rowid, words) SELECT json_extract(value, '$[0]'), "
                    "json_extract(value, '$[1]') FROM json_each(?) ORDER BY key",
                    (_encode(inserts),),
                )


# Every touched bucket's digest XORed with its change, given as a JSON array of [xor, bucket],
# in one statement (one step of SQLite instead of one per bucket: see Store.apply).
_XOR_BUCKETS: Final = (
    "UPDATE buckets SET digest = (digest | d.x) & ~(digest & d.x) FROM (SELECT "
    "json_extract(value, '$[0]') AS x, json_extract(value, '$[1]') AS b FROM json_each(?)) AS d "
    "WHERE buckets.bucket = d.b"
)
# Up to this many rows, a statement per row costs less than one statement reading a JSON array
# (a single write, as a command line makes, takes about 15 µs less CPU so); past it, one
# statement lets the writer give up the GIL once instead of once per row (see Store.apply).
# Each statement decides for itself: the keys read, each index's rows, the buckets touched.
FEW_ROWS: Final = 4


class Store:
    """One SQLite database of versioned movie copies."""

    def __init__(
        self,
        path: str | Path,
        *,
        for_writing: bool = True,
        max_size: int | None = None,
        autocheckpoint: bool = True,
    ) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.create_function("fold_title", 1, _fold_text, deterministic=True)
        self._local = threading.local()
        self.title_log = _title_log_of(self.path)
        self._readers: list[Store] = []
        self._readers_lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit reaches the disk before the write is acknowledged (see docs/storage.md).
        self._db.execute("PRAGMA synchronous=FULL")
        if not autocheckpoint:
            # The caller checkpoints (writer.Checkpointer, off the commit path): SQLite's own
            # would run inside a commit every 1,000 pages, and the commit would wait for it.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        if for_writing:
            self._migrate()
            if max_size is not None:
                # A quota: a commit that would grow the database past it fails with SQLITE_FULL,
                # exactly as on a full disk (and never below the pages already in use).
                page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
                self._db.execute(f"PRAGMA max_page_count = {max(1, max_size // page_size)}")
        else:
            self._db.execute("PRAGMA query_only=1")

    # --- schema ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
            for name, sql in _MIGRATIONS:
                if name in done:
                    continue
                if callable(sql):
                    sql(db)
                else:
                    for statement in sql.split(";"):
                        if statement.strip():
                            db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('server_id', ?)", (uuid.uuid4().hex,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def checkpoint(self) -> tuple[int, int]:
        """Copy committed WAL frames into the database file without blocking anyone (PASSIVE);
        returns (frames in the WAL, frames copied)."""
        _, log, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log), int(copied)

    def migrations(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM schema_migrations ORDER BY name")]

    @property
    def server_id(self) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'server_id'").fetchone()
        return str(row[0])

    # --- reads ----------------------------------------------------------------------------------

    def get_raw(self, title: str, year: int | None = None) -> list[bytes]:
        """The stored copies (as JSON) of every movie whose title folds like `title`."""
        folded = fold_title(title)
        if year is not None:
            row = self._db.execute(
                "SELECT doc FROM movies WHERE key = ?", (f"{folded}{_SEPARATOR}{year}",)
            ).fetchone()
            return [] if row is None else [row[0]]
        rows = self._db.execute(
            "SELECT doc FROM movies WHERE key >= ? AND key < ? ORDER BY key",
            (folded + _SEPARATOR, folded + _AFTER_SEPARATOR),
        )
        return [row[0] for row in rows]

    def get_copy(self, key: str) -> Copy | None:
        row = self._db.execute("SELECT doc FROM movies WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decode_copy(row[0])

    def list_raw(
        self, after: str | None, limit: int, *, tombstones: bool = False
    ) -> tuple[list[bytes], str | None]:
        """One page of copies in key order, and the key to continue after (None at the end)."""
        where = "deleted = 1 AND key > ?" if tombstones else "key > ?"
        rows = self._db.execute(
            f"SELECT key, doc FROM movies WHERE {where} ORDER BY key LIMIT ?", (after or "", limit)
        ).fetchall()
        next_key = rows[-1][0] if len(rows) == limit else None
        return [row[1] for row in rows], next_key

    def count_live(self) -> int:
        return self._count("live")

    def count_entries(self) -> int:
        """Stored copies, tombstones included."""
        return self._count("entries")

    def _count(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counts WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    def bucket_digests(self) -> list[int]:
        """Every bucket's digest, in bucket order (read once at start; kept in memory after)."""
        sums = [0] * digests.BUCKETS
        for bucket, value in self._db.execute("SELECT bucket, digest FROM buckets"):
            sums[bucket] = digests.from_signed(value)
        return sums

    def bucket_keys(
        self, bucket: int, after: str | None, limit: int
    ) -> tuple[list[tuple[str, str]], str | None]:
        """One page of (key, rev) of one bucket in key order, and the key to continue after."""
        rows = self._db.execute(
            "SELECT key, rev FROM movies WHERE bucket = ? AND key > ? ORDER BY key LIMIT ?",
            (bucket, after or "", limit),
        ).fetchall()
        next_key = rows[-1][0] if len(rows) == limit else None
        return [(key, rev) for key, rev in rows], next_key

    def fetch_raw(self, keys: Sequence[str]) -> list[bytes]:
        """The stored copies (as JSON) of the keys that exist, in the order asked."""
        docs: list[bytes] = []
        for key in dict.fromkeys(keys):
            row = self._db.execute("SELECT doc FROM movies WHERE key = ?", (key,)).fetchone()
            if row is not None:
                docs.append(row[0])
        return docs

    # --- search -------------------------------------------------------------------------------

    def reader_for_this_thread(self) -> Store:
        """A read-only Store on the same file for the calling thread: made on its first call
        there, closed with this Store (sqlite3 connections are not shared between threads)."""
        reader: Store | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = Store(self.path, for_writing=False)
            self._local.reader = reader
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees the same committed state (one read transaction)."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def title_terms(self) -> list[tuple[str, int]]:
        """Every term of the title index, in order, with the number of movies holding it."""
        return self._db.execute("SELECT term, doc FROM title_terms").fetchall()

    def match_titles(self, query: str, where: MovieFilter, limit: int, scan_limit: int) -> Matches:
        """The copies (JSON) of live movies whose title matches the FTS5 `query` and that pass
        `where`: the first `limit`, shortest title first, among the first `scan_limit` matches
        (capped: there were more matches than those and fewer than `limit` passed)."""
        conditions, params = where.sql()
        rows = self._db.execute(
            "SELECT doc FROM (SELECT rowid AS id FROM title_words WHERE title_words MATCH ? "
            f"LIMIT ?) JOIN movies ON movies.rowid = id & {_ROWID_MASK} "
            f"WHERE deleted = 0{conditions} LIMIT ?",
            (query, scan_limit, *params, limit),
        )
        docs = [row[0] for row in rows]
        if len(docs) == limit or (not conditions and len(docs) < scan_limit):
            return Matches(docs)  # (no conditions: every match is a live movie that passes)
        (matches,) = self._db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM title_words WHERE title_words MATCH ? LIMIT ?)",
            (query, scan_limit + 1),
        ).fetchone()
        return Matches(docs, capped=matches > scan_limit)

    def best_rated(self, where: MovieFilter, count: int, scan_limit: int) -> Matches:
        """The first `count` live movies that pass `where` in search order (search_order: best
        rated first, then newest, then by key), reading at most `scan_limit` rows (capped:
        more rows were left that could have changed the answer)."""
        conditions, params = where.sql()
        ranges = ""  # conditions that the index itself narrows down
        range_params: list[object] = []
        if where.year is not None:
            ranges += f"AND {_YEAR} = ? "
            range_params.append(where.year)
        if where.min_rating is not None:
            ranges += f"AND {_RATING} >= ? "
            range_params.append(where.min_rating)
        # The index gives rating, then key order. Within one year that is the search order;
        # otherwise the movies rated like the `count`-th hit must be ordered by year: read on
        # in the index while they are few, else year by year, newest first.
        rows = self._db.execute(
            f"SELECT {_RATING}, key, CASE WHEN 1{conditions} THEN doc END FROM movies "
            f"WHERE deleted = 0 {ranges}ORDER BY {_RATING} DESC, key LIMIT ?",
            (*params, *range_params, scan_limit + 1),
        )
        found: list[tuple[tuple[float, int, str], bytes]] = []
        last: float | None = None  # the rating of the last hit
        scanned = tied = 0
        for rating, key, doc in rows:
            if len(found) >= count:
                if where.year is not None or rating != last:
                    return _first(found, count, capped=False)
                tied += 1
                if tied > TIE_SCAN:
                    break
            scanned += 1
            if scanned > scan_limit:
                return _first(found, count, capped=True)
            if doc is not None:
                found.append((search_order(rating, key), doc))
                last = rating
        else:
            return _first(found, count, capped=False)
        # Many movies are rated `last`: the hits better rated are all found; read those
        # rated `last` year by year.
        tie = search_order(last, "")[0]
        found = [item for item in found if item[0][0] != tie]
        ties = (
            f"SELECT key, CASE WHEN 1{conditions} THEN doc END FROM movies "
            f"WHERE deleted = 0 AND {_YEAR} IS ? AND {_RATING} IS ? ORDER BY key"
        )
        for year in self._years_newest_first():
            for key, doc in self._db.execute(ties, (*params, year, last)):
                scanned += 1
                if scanned > scan_limit:
                    return _first(found, count, capped=True)
                if doc is not None:
                    found.append((search_order(last, key), doc))
                    if len(found) == count:
                        return _first(found, count, capped=False)
        return _first(found, count, capped=False)

    def _years_newest_first(self) -> Iterator[int | None]:
        """The years of the live movies, newest first, then None (movies without a year)."""
        year = self._db.execute(f"SELECT max({_YEAR}) FROM movies WHERE deleted = 0").fetchone()[0]
        while year is not None:
            yield year
            year = self._db.execute(
                f"SELECT max({_YEAR}) FROM movies WHERE deleted = 0 AND {_YEAR} < ?", (year,)
            ).fetchone()[0]
        yield None

    def best_rated_by_director(
        self, query: str, where: MovieFilter, count: int, limit: int
    ) -> list[bytes] | None:
        """As best_rated, among the movies whose director matches the FTS5 `query`; None when
        more than `limit` match it (then scanning in rating order finds hits sooner)."""
        (matches,) = self._db.execute(
            "SELECT count(*) FROM (SELECT 1 FROM director_words WHERE director_words MATCH ? "
            "LIMIT ?)",
            (query, limit + 1),
        ).fetchone()
        if matches > limit:
            return None
        conditions, params = where.sql()
        rows = self._db.execute(
            "SELECT doc FROM movies WHERE rowid IN (SELECT rowid FROM director_words "
            f"WHERE director_words MATCH ?) AND deleted = 0{conditions} "
            f"ORDER BY {_RATING} DESC, {_YEAR} DESC, key LIMIT ?",
            (query, *params, count),
        )
        return [row[0] for row in rows]

    def rebuild_search_index(self) -> None:
        """Index every live movie anew (after a VACUUM, which may renumber rowids)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM title_words")
            db.execute("DELETE FROM director_words")
            _fill_search(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- writes ---------------------------------------------------------------------------------

    def apply(self, writes: Sequence[Write]) -> tuple[list[Outcome], Change]:
        """Apply each write that supersedes the stored copy, all in one transaction.

        Returns the outcome of every write, in order, and what the transaction changed (live
        movies, bucket digests). Raises StorageError, with nothing written, if the commit fails.

        The stored rows, the search index entries and the bucket digests of a batch are read
        and written by one statement each (their rows travel as one JSON array), however many
        writes it holds: the sqlite3 module gives up the GIL for every step of a statement and
        the event loop takes it each time, so that per-row statements made the writer of a
        busy server wait for the GIL longer than it worked. The upsert of each row stays a
        statement of its own (one statement for them all, parsing its JSON, was slower).
        """
        db = self._db
        outcomes: list[Outcome] = []
        change = Change()
        index = _IndexChanges()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._rows({write.key for write in writes})
                for write in writes:
                    if isinstance(write, PurgeTombstone):
                        outcomes.append(self._purge(write, rows, change))
                    else:
                        outcomes.append(self._put(write, rows, change, index))
                index.write(db)
                xors = [(digests.to_signed(x), b) for b, x in change.bucket_xor.items() if x]
                if len(xors) <= FEW_ROWS:
                    for value, bucket in xors:
                        db.execute(
                            "UPDATE buckets SET digest = (digest | ?) & ~(digest & ?) "
                            "WHERE bucket = ?",
                            (value, value, bucket),
                        )
                else:
                    db.execute(_XOR_BUCKETS, (_encode(xors),))
                for name, delta in (("live", change.live_delta), ("entries", change.entries_delta)):
                    if delta:
                        db.execute(
                            "UPDATE counts SET value = value + ? WHERE name = ?", (delta, name)
                        )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise StorageError(
                    "the disk is full (or the database reached the server's --max-db-size); "
                    "nothing was written, reads still work, and writes resume once there is room"
                ) from exc
            raise StorageError(f"the database refused the write: {exc}") from exc
        self.title_log.record(index.titles_added, index.titles_removed)
        return outcomes, change

    def _rows(self, keys: set[str]) -> dict[str, _Row | None]:
        """The stored row of each of `keys` that is stored."""
        found: dict[str, _Row | None] = {}
        db = self._db
        if len(keys) <= FEW_ROWS:
            for key in keys:
                row = db.execute(
                    "SELECT rowid, doc, stored_at FROM movies WHERE key = ?", (key,)
                ).fetchone()
                if row is not None:
                    found[key] = _Row(row[0], _decode_copy(row[1]), row[2])
            return found
        for key, rowid, doc, stored_at in db.execute(
            "SELECT key, rowid, doc, stored_at FROM movies WHERE key IN "
            "(SELECT value FROM json_each(?))",
            (_encode(list(keys)),),
        ):
            found[key] = _Row(rowid, _decode_copy(doc), stored_at)
        return found

    def _put(
        self, copy: Copy, rows: dict[str, _Row | None], change: Change, index: _IndexChanges
    ) -> Applied:
        row = rows.get(copy.key)
        stored = None if row is None else row.copy
        decision = decide(stored, copy)
        if decision is Decision.APPLY:
            now = time.time()
            cursor = self._db.execute(
                "INSERT INTO movies (key, rev, deleted, doc, bucket, stored_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET rev = excluded.rev, "
                "deleted = excluded.deleted, doc = excluded.doc, stored_at = excluded.stored_at",
                (
                    copy.key,
                    copy.rev,
                    int(copy.deleted),
                    _encode(copy),
                    digests.bucket_of(copy.key),
                    now,
                ),
            )
            # An upsert keeps the row (and its rowid) of a stored key.
            rowid = cursor.lastrowid if row is None else row.rowid
            assert rowid is not None
            rows[copy.key] = _Row(rowid, copy, now)
            self._index_for_search(rowid, stored, copy, index)
            change.live_delta += _live(copy) - (stored is not None and _live(stored))
            change.entries_delta += stored is None
            if stored is not None:
                change.toggle(stored.key, stored.rev)
            change.toggle(copy.key, copy.rev)
        refused = decision in (Decision.STALE, Decision.CONFLICT)
        return Applied(decision, stored if refused else None)

    def _index_for_search(
        self, rowid: int, stored: Copy | None, copy: Copy, index: _IndexChanges
    ) -> None:
        """Keep the search indexes equal to the live rows, in the same transaction as the row.

        The title comes from the key, which an upsert keeps: an edit of a live movie leaves
        its title entry as it is; a tombstone removes it; a live copy over a tombstone (or a
        new movie) adds it. A director entry is replaced whenever the folded director changes.
        """
        was_live = stored is not None and not stored.deleted
        if was_live != (not copy.deleted):
            entry_rowid, words = _index_entry(rowid, copy.key)
            index.add("title_words", entry_rowid, None if was_live else words)
        before, after = folded_director(stored), folded_director(copy)
        if before != after:
            if before is not None:
                index.add("director_words", rowid, None)
            if after is not None:
                index.add("director_words", rowid, after)

    def _purge(self, purge: PurgeTombstone, rows: dict[str, _Row | None], change: Change) -> Purged:
        row = rows.get(purge.key)
        stored = None if row is None else row.copy
        if row is None or stored is None or not stored.deleted or stored.rev != purge.rev:
            return Purged(False, stored)
        if time.time() - row.stored_at < purge.min_age:
            return Purged(False, stored)  # too recent here: another copy may still be on its way
        self._db.execute("DELETE FROM movies WHERE key = ?", (purge.key,))
        rows[purge.key] = None
        change.toggle(stored.key, stored.rev)
        change.entries_delta -= 1
        return Purged(True, None)

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()
        self._db.close()


def _first(
    found: list[tuple[tuple[float, int, str], bytes]], count: int, *, capped: bool
) -> Matches:
    """The first `count` of (search order, doc) pairs, in that order."""
    found.sort(key=lambda item: item[0])
    return Matches([doc for _, doc in found[:count]], capped)


def _live(copy: Copy) -> int:
    return 0 if copy.deleted else 1
