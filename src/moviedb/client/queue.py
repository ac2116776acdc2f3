"""The client's durable queue of writes a server did not acknowledge, and their replay.

One SQLite file (`queue.sqlite3` in the client's state directory) holds, per server and movie,
the newest write (two only when they are concurrent versions: neither is dropped). Replaying is
safe any number of times: a server stores a revision once and answers "same" to it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import msgspec

from moviedb.client.address import Address
from moviedb.client.cluster import Cluster, WriteResult, WriteStatus
from moviedb.client.config import QUEUE_FILE, queue_path
from moviedb.versions import Copy, Relation, compare

FILE_NAME: Final = QUEUE_FILE
BUSY_TIMEOUT: Final = 30.0  # seconds another client process may hold the write lock

State = Literal["queued", "conflict"]

_MIGRATIONS: Final = (
    (
        "0001_writes",
        """
        CREATE TABLE writes (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- enqueue order
            host            TEXT NOT NULL,
            port            INTEGER NOT NULL,
            key             TEXT NOT NULL,
            rev             TEXT NOT NULL,
            doc             BLOB NOT NULL,      -- the whole Copy as msgspec JSON
            reason          TEXT NOT NULL,      -- unreachable, unknown, error
            state           TEXT NOT NULL,      -- queued, conflict
            queued_at       REAL NOT NULL,      -- first enqueue for this server and movie
            attempts        INTEGER NOT NULL DEFAULT 0,
            last_error      TEXT,
            last_attempt_at REAL,
            current_rev     TEXT,               -- the server's revision, when in conflict
            UNIQUE (host, port, key, rev)
        );
        CREATE INDEX writes_by_age ON writes (host, port, queued_at, id);
        """,
    ),
)

_encode: Final = msgspec.json.Encoder().encode
_decode_copy: Final = msgspec.json.Decoder(Copy).decode

_COLUMNS: Final = (
    "host, port, doc, reason, queued_at, attempts, last_error, state, current_rev, last_attempt_at"
)


@dataclass(frozen=True)
class QueuedWrite:
    """One write waiting for one server."""

    server: Address
    copy: Copy
    reason: str
    queued_at: float
    attempts: int
    last_error: str | None
    state: State
    current_rev: str | None = None  # the server's concurrent revision, when in conflict
    last_attempt_at: float | None = None

    @property
    def key(self) -> str:
        return self.copy.key

    @property
    def rev(self) -> str:
        return self.copy.rev


@dataclass(frozen=True)
class PendingSummary:
    count: int  # every entry, conflicts included
    conflicts: int
    oldest: float  # queued_at of the oldest entry

    @property
    def queued(self) -> int:
        """Entries that replay will still send."""
        return self.count - self.conflicts


class WriteQueue:
    """Writes waiting for servers, one per (server, movie key), oldest first.

    Safe to share between threads and between client processes: every change is one short
    transaction, read-modify-write ones under `BEGIN IMMEDIATE`, with a busy timeout.
    The file is created on first use.
    """

    def __init__(self, location: str | Path | None = None) -> None:
        self.path = queue_path(location)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used from replay's worker threads too

    def __repr__(self) -> str:
        return f"<WriteQueue {self.path}>"

    def __enter__(self) -> WriteQueue:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- schema ---------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
            )
            try:
                _use_wal(db)
                # FULL: a queued write is on disk before the caller reports it as queued.
                db.execute("PRAGMA synchronous=FULL")
                _migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT`: no other process writes between our read and write."""
        with self._lock:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """One statement in its own (implicit) transaction."""
        with self._lock:
            return self._open().execute(sql, params)

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._open().execute(sql, params).fetchall()

    def migrations(self) -> list[str]:
        rows = self._query("SELECT name FROM schema_migrations ORDER BY name")
        return [str(row[0]) for row in rows]

    # --- adding ---------------------------------------------------------------------------------

    def add(
        self, server: Address, copy: Copy, reason: str, *, now: float, error: str | None = None
    ) -> None:
        """Queue `copy` for `server` (see add_many)."""
        self.add_many([(server, copy, reason, error)], now=now)

    def add_many(
        self, writes: Iterable[tuple[Address, Copy, str, str | None]], *, now: float
    ) -> None:
        """Queue each (server, copy, reason, error), all in one transaction.

        A copy newer than a queued one of the same movie for the same server replaces it,
        keeping the first `queued_at` and the attempt count. An older or the same copy changes
        nothing. A concurrent copy is queued beside the other: when no server acknowledged
        either, the queue holds the only record of each, and dropping one would lose it.
        """
        with self._transaction() as db:
            for server, copy, reason, error in writes:
                self._add_one(db, server, copy, reason, error, now)

    def _add_one(
        self,
        db: sqlite3.Connection,
        server: Address,
        copy: Copy,
        reason: str,
        error: str | None,
        now: float,
    ) -> None:
        rows = db.execute(
            "SELECT id, doc, queued_at, attempts FROM writes "
            "WHERE host = ? AND port = ? AND key = ?",
            (server.host, server.port, copy.key),
        ).fetchall()
        replaced = []
        for row_id, doc, queued_at, attempts in rows:
            relation = compare(copy, _decode_copy(doc))
            if relation in (Relation.SAME, Relation.OLDER):
                return  # this write, or a newer one, is queued already
            if relation is Relation.NEWER:
                replaced.append((row_id, queued_at, attempts))
        first_queued = min([now, *(q for _, q, _ in replaced)])
        attempts = max([0, *(a for _, _, a in replaced)])
        db.executemany("DELETE FROM writes WHERE id = ?", [(r[0],) for r in replaced])
        db.execute(
            "INSERT INTO writes (host, port, key, rev, doc, reason, state, queued_at, attempts, "
            "last_error) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            (
                server.host,
                server.port,
                copy.key,
                copy.rev,
                _encode(copy),
                reason,
                first_queued,
                attempts,
                error,
            ),
        )

    # --- reading --------------------------------------------------------------------------------

    def entries(
        self, server: Address | None = None, *, limit: int | None = None
    ) -> list[QueuedWrite]:
        """Queued writes (conflicts included), oldest first."""
        where, params = _server_filter(server)
        rows = self._query(
            f"SELECT {_COLUMNS} FROM writes{where} ORDER BY queued_at, id LIMIT ?",
            (*params, -1 if limit is None else limit),
        )
        return [_entry(row) for row in rows]

    def summary(self) -> dict[Address, PendingSummary]:
        """Per server: how many writes wait, how many of them conflict, the oldest's age."""
        rows = self._query(
            "SELECT host, port, count(*), sum(state = 'conflict'), min(queued_at) "
            "FROM writes GROUP BY host, port ORDER BY host, port"
        )
        return {
            Address(str(host), int(port)): PendingSummary(int(n), int(c), float(oldest))
            for host, port, n, c, oldest in rows
        }

    def count(self, server: Address | None = None, *, state: State | None = None) -> int:
        """Entries for one server (or all), optionally only those in one state."""
        where, params = _server_filter(server)
        if state is not None:
            where = f"{where} AND state = ?" if where else " WHERE state = ?"
            params = (*params, state)
        rows = self._query(f"SELECT count(*) FROM writes{where}", params)
        return int(rows[0][0])

    # --- outcomes -------------------------------------------------------------------------------

    def remove(self, server: Address, key: str, rev: str) -> bool:
        """Delivered or superseded: remove it, unless a newer write was queued meanwhile."""
        cursor = self._execute(
            "DELETE FROM writes WHERE host = ? AND port = ? AND key = ? AND rev = ?",
            (server.host, server.port, key, rev),
        )
        return cursor.rowcount > 0

    def mark_attempt(
        self, server: Address, key: str, rev: str, error: str, *, now: float | None = None
    ) -> bool:
        """A replay of this very revision failed; it stays queued."""
        cursor = self._execute(
            "UPDATE writes SET attempts = attempts + 1, last_error = ?, "
            "last_attempt_at = coalesce(?, last_attempt_at) "
            "WHERE host = ? AND port = ? AND key = ? AND rev = ?",
            (error, now, server.host, server.port, key, rev),
        )
        return cursor.rowcount > 0

    def mark_conflict(
        self,
        server: Address,
        key: str,
        rev: str,
        current_rev: str | None,
        *,
        now: float | None = None,
    ) -> bool:
        """The server holds a concurrent revision: keep the write, shown as a conflict until a
        resolution supersedes it (replay keeps trying it: the server decides)."""
        cursor = self._execute(
            "UPDATE writes SET state = 'conflict', current_rev = ?, attempts = attempts + 1, "
            "last_error = 'conflict', last_attempt_at = coalesce(?, last_attempt_at) "
            "WHERE host = ? AND port = ? AND key = ? AND rev = ?",
            (current_rev, now, server.host, server.port, key, rev),
        )
        return cursor.rowcount > 0

    def drop_superseded(self, key: str, copy: Copy) -> int:
        """Remove, for every server, the queued write of `key` that `copy` supersedes or equals."""
        with self._transaction() as db:
            rows = db.execute("SELECT id, doc FROM writes WHERE key = ?", (key,)).fetchall()
            doomed = [
                (row_id,)
                for row_id, doc in rows
                if compare(copy, _decode_copy(doc)) in (Relation.SAME, Relation.NEWER)
            ]
            db.executemany("DELETE FROM writes WHERE id = ?", doomed)
        return len(doomed)

    def drop_server(self, server: Address) -> int:
        """Forget every write for a server taken off the list; returns how many."""
        cursor = self._execute(
            "DELETE FROM writes WHERE host = ? AND port = ?", (server.host, server.port)
        )
        return cursor.rowcount


def _server_filter(server: Address | None) -> tuple[str, tuple[object, ...]]:
    if server is None:
        return "", ()
    return " WHERE host = ? AND port = ?", (server.host, server.port)


def _entry(row: tuple[Any, ...]) -> QueuedWrite:
    host, port, doc, reason, queued_at, attempts, last_error, state, current_rev, tried_at = row
    return QueuedWrite(
        Address(host, port),
        _decode_copy(doc),
        reason,
        queued_at,
        attempts,
        last_error,
        state,
        current_rev,
        tried_at,
    )


def _use_wal(db: sqlite3.Connection) -> None:
    # Switching a new file to WAL needs an exclusive lock and SQLite does not wait for it with
    # the busy timeout: two processes creating the queue at once would see "database is locked".
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _migrate(db: sqlite3.Connection) -> None:
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
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# --- replay ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerReplay:
    """What one replay did for one server."""

    server: Address
    delivered: int  # the server now holds the write (applied, or it had it already)
    superseded: int  # the server holds a newer revision: nothing left to deliver
    conflicts: int  # newly found in conflict; kept for a person to resolve
    still_queued: int  # writes for this server that a later replay will send
    reachable: bool | None  # None: nothing was sent (the time budget was spent first)
    out_of_time: bool = False  # the budget stopped this server's replay
    error: str | None = None  # why the server's replay stopped early, if it did


@dataclass(frozen=True)
class ReplayReport:
    servers: dict[Address, ServerReplay]

    @property
    def delivered(self) -> int:
        return sum(s.delivered for s in self.servers.values())

    @property
    def superseded(self) -> int:
        return sum(s.superseded for s in self.servers.values())

    @property
    def conflicts(self) -> int:
        return sum(s.conflicts for s in self.servers.values())

    @property
    def still_queued(self) -> int:
        return sum(s.still_queued for s in self.servers.values())


_DOWN: Final = frozenset({WriteStatus.UNREACHABLE, WriteStatus.UNKNOWN})
REPLAY_BATCH: Final = 2000  # writes per server read from the queue by one replay
# Server errors that may pass (the write can succeed later); any other error code is a refusal
# of this very write (bad request, invalid movie, line too long) that no replay would change.
# Errors that a later attempt may not get: a full disk, a stopping or full server, a bug; and a
# refusal of this client's token or certificate (or a read-only token), which the user fixes in
# the config — the write must still be there then.
TRANSIENT_ERRORS: Final = (
    "storage_error",
    "shutting_down",
    "internal",
    "too_many_connections",
    "unauthorized",
    "forbidden",
    "refused",
)


def needs_queueing(result: WriteResult) -> bool:
    """A write the server did not acknowledge and that a later replay may deliver."""
    if result.status in _DOWN:
        return True
    return result.status is WriteStatus.ERROR and is_transient(result.error)


def is_transient(error: str | None) -> bool:
    return error is None or error.startswith(TRANSIENT_ERRORS)


async def replay(
    queue: WriteQueue,
    cluster: Cluster,
    *,
    servers: Iterable[Address] | None = None,
    budget: float,
    now: float,
) -> ReplayReport:
    """Send queued writes to the servers of `cluster` that have some, oldest first.

    Servers are replayed concurrently, each one's writes in order. A server that does not
    answer (unreachable, unknown, error) is left alone until the next replay. No new write
    starts once `budget` seconds have passed; one already sent is waited for.
    """
    deadline = time.monotonic() + budget
    wanted = set(cluster.servers) if servers is None else set(servers) & set(cluster.servers)
    summary = await asyncio.to_thread(queue.summary)
    by_server: dict[Address, list[QueuedWrite]] = {}
    for server in summary:
        if server in wanted:
            # A bounded batch per call: a huge queue is delivered over several replays
            # instead of being read whole before anything is sent.
            by_server[server] = await asyncio.to_thread(queue.entries, server, limit=REPLAY_BATCH)
    results = await asyncio.gather(
        *(
            _replay_server(queue, cluster, server, writes, deadline, now)
            for server, writes in by_server.items()
        )
    )
    return ReplayReport({r.server: r for r in results})


async def _replay_server(
    queue: WriteQueue,
    cluster: Cluster,
    server: Address,
    writes: list[QueuedWrite],
    deadline: float,
    now: float,
) -> ServerReplay:
    # The queue's SQLite calls run in a worker thread: each commit waits for an fsync.
    delivered = superseded = conflicts = 0
    reachable: bool | None = None
    out_of_time = False
    error: str | None = None
    for write in writes:
        if time.monotonic() >= deadline:
            out_of_time = True
            break
        (result,) = await cluster.put({server: write.copy})
        status = result.status
        reachable = status not in _DOWN
        if result.stored or status is WriteStatus.STALE:
            await asyncio.to_thread(queue.remove, server, write.key, write.rev)
            if result.stored:
                delivered += 1
            else:
                superseded += 1
        elif status is WriteStatus.CONFLICT:
            current = result.current.rev if result.current is not None else None
            await asyncio.to_thread(
                queue.mark_conflict, server, write.key, write.rev, current, now=now
            )
            conflicts += 1
        elif status is WriteStatus.ERROR and not is_transient(result.error):
            # Refused for what it is (too large, invalid): no replay can deliver it.
            error = result.error
            await asyncio.to_thread(queue.remove, server, write.key, write.rev)
        else:
            error = result.error or status.value
            await asyncio.to_thread(
                queue.mark_attempt, server, write.key, write.rev, error, now=now
            )
            if status in _DOWN:
                break  # still down: do not hammer it; a storage error may pass, so go on
    still_queued = await asyncio.to_thread(queue.count, server, state="queued")
    return ServerReplay(
        server, delivered, superseded, conflicts, still_queued, reachable, out_of_time, error
    )
