"""All SQL of a server: one SQLite file in WAL mode, named migrations, versioned movie copies.

A plain synchronous class. The server keeps one instance for reads on the event loop and one
for the writer thread; both may be open on the same file at once (WAL lets readers run while a
write commits).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from moviedb import digests
from moviedb.model import fold_title
from moviedb.versions import Copy, Decision, decide


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
)

# Keys are `folded title + "\x1f" + year`; every key of one title lies in [folded\x1f, folded\x20).
_SEPARATOR: Final = "\x1f"
_AFTER_SEPARATOR: Final = "\x20"

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


class Store:
    """One SQLite database of versioned movie copies."""

    def __init__(self, path: str | Path, *, for_writing: bool = True) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit reaches the disk before the write is acknowledged (see docs/storage.md).
        self._db.execute("PRAGMA synchronous=FULL")
        if for_writing:
            self._migrate()
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
        return int(self._db.execute("SELECT count(*) FROM movies WHERE deleted = 0").fetchone()[0])

    def count_entries(self) -> int:
        """Stored copies, tombstones included."""
        return int(self._db.execute("SELECT count(*) FROM movies").fetchone()[0])

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

    # --- writes ---------------------------------------------------------------------------------

    def apply(self, writes: Sequence[Write]) -> tuple[list[Outcome], Change]:
        """Apply each write that supersedes the stored copy, all in one transaction.

        Returns the outcome of every write, in order, and what the transaction changed (live
        movies, bucket digests). Raises StorageError, with nothing written, if the commit fails.
        """
        db = self._db
        outcomes: list[Outcome] = []
        change = Change()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for write in writes:
                    if isinstance(write, PurgeTombstone):
                        outcomes.append(self._purge(write, change))
                    else:
                        outcomes.append(self._put(write, change))
                for bucket, xor in change.bucket_xor.items():
                    if xor:
                        value = digests.to_signed(xor)
                        db.execute(
                            "UPDATE buckets SET digest = (digest | ?) & ~(digest & ?) "
                            "WHERE bucket = ?",
                            (value, value, bucket),
                        )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"the database refused the write: {exc}") from exc
        return outcomes, change

    def _stored(self, key: str) -> Copy | None:
        row = self._db.execute("SELECT doc FROM movies WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decode_copy(row[0])

    def _put(self, copy: Copy, change: Change) -> Applied:
        stored = self._stored(copy.key)
        decision = decide(stored, copy)
        if decision is Decision.APPLY:
            self._db.execute(
                "INSERT INTO movies (key, rev, deleted, doc, bucket, stored_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET rev = excluded.rev, "
                "deleted = excluded.deleted, doc = excluded.doc, stored_at = excluded.stored_at",
                (
                    copy.key,
                    copy.rev,
                    int(copy.deleted),
                    _encode(copy),
                    digests.bucket_of(copy.key),
                    time.time(),
                ),
            )
            change.live_delta += _live(copy) - (stored is not None and _live(stored))
            change.entries_delta += stored is None
            if stored is not None:
                change.toggle(stored.key, stored.rev)
            change.toggle(copy.key, copy.rev)
        refused = decision in (Decision.STALE, Decision.CONFLICT)
        return Applied(decision, stored if refused else None)

    def _purge(self, purge: PurgeTombstone, change: Change) -> Purged:
        row = self._db.execute(
            "SELECT doc, stored_at FROM movies WHERE key = ?", (purge.key,)
        ).fetchone()
        stored = None if row is None else _decode_copy(row[0])
        if stored is None or not stored.deleted or stored.rev != purge.rev:
            return Purged(False, stored)
        if time.time() - row[1] < purge.min_age:
            return Purged(False, stored)  # too recent here: another copy may still be on its way
        self._db.execute("DELETE FROM movies WHERE key = ?", (purge.key,))
        change.toggle(stored.key, stored.rev)
        change.entries_delta -= 1
        return Purged(True, None)

    def close(self) -> None:
        self._db.close()


def _live(copy: Copy) -> int:
    return 0 if copy.deleted else 1
