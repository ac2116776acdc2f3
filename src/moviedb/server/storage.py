"""All SQL of a server: one SQLite file in WAL mode, named migrations, versioned movie copies.

A plain synchronous class. The server keeps one instance for reads on the event loop and one
for the writer thread; both may be open on the same file at once (WAL lets readers run while a
write commits).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from moviedb.model import fold_title
from moviedb.versions import Copy, Decision, decide

_MIGRATIONS: Final = (
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

    def list_raw(self, after: str | None, limit: int) -> tuple[list[bytes], str | None]:
        """One page of copies in key order, and the key to continue after (None at the end)."""
        rows = self._db.execute(
            "SELECT key, doc FROM movies WHERE key > ? ORDER BY key LIMIT ?", (after or "", limit)
        ).fetchall()
        next_key = rows[-1][0] if len(rows) == limit else None
        return [row[1] for row in rows], next_key

    def count_live(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM movies WHERE deleted = 0").fetchone()[0])

    # --- writes ---------------------------------------------------------------------------------

    def apply(self, copies: Sequence[Copy]) -> tuple[list[Applied], int]:
        """Apply each write that supersedes the stored copy, all in one transaction.

        Returns the outcome of every write, in order, and the change in the number of live
        (not deleted) movies. Raises StorageError, with nothing written, if the commit fails.
        """
        db = self._db
        outcomes: list[Applied] = []
        live_delta = 0
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for copy in copies:
                    row = db.execute("SELECT doc FROM movies WHERE key = ?", (copy.key,)).fetchone()
                    stored = None if row is None else _decode_copy(row[0])
                    decision = decide(stored, copy)
                    if decision is Decision.APPLY:
                        db.execute(
                            "INSERT INTO movies (key, rev, deleted, doc) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET "
                            "rev = excluded.rev, deleted = excluded.deleted, doc = excluded.doc",
                            (copy.key, copy.rev, int(copy.deleted), _encode(copy)),
                        )
                        live_delta += _live(copy) - (stored is not None and _live(stored))
                    refused = decision in (Decision.STALE, Decision.CONFLICT)
                    outcomes.append(Applied(decision, stored if refused else None))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"the database refused the write: {exc}") from exc
        return outcomes, live_delta

    def close(self) -> None:
        self._db.close()


def _live(copy: Copy) -> int:
    return 0 if copy.deleted else 1
