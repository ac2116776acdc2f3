"""Group commit: one writer thread commits every pending write in one transaction.

The event loop never waits on an fsync; each write is acknowledged only after the commit that
holds it has returned.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

from moviedb import digests
from moviedb.server.storage import Change, Outcome, Store, Write

MAX_BATCH: Final = 1000
log = logging.getLogger("moviedb.server")

# Told a write's outcome (or the exception that failed its commit) on the event loop.
Done = Callable[[Outcome | Exception], None]
_Pending = tuple[Write, Done]


# Past this many frames in the WAL (about 40 MB of 4 KiB pages) the writer checkpoints itself
# after its commit, so that the WAL cannot outgrow a checkpointer that falls behind.
WAL_LIMIT: Final = 10_000
CHECKPOINT_PAUSE: Final = 0.05  # seconds between background checkpoints


class Checkpointer:
    """Copies committed WAL frames into the database file on a thread of its own, so that no
    commit waits for that copy and its fsync (the commit itself still fsyncs the WAL)."""

    def __init__(self, path: Path) -> None:
        self._store = Store(path, for_writing=False)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.wal_frames = 0  # as of the last checkpoint
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name="moviedb-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.wal_frames, _ = self._store.checkpoint()
                self.checkpoints += 1
            except sqlite3.Error as exc:  # busy or I/O: the next commit pokes it again
                log.warning("background checkpoint failed: %s", exc)
            self._stopping.wait(CHECKPOINT_PAUSE)

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self._store.close()


class GroupCommitter:
    """Owns the write side of the store, and what the event loop knows of the committed state:
    the number of live movies and every bucket's digest (updated when a commit is delivered)."""

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        live_count: int,
        bucket_digests: list[int] | None = None,
        entries: int | None = None,
        checkpointer: Checkpointer | None = None,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be 1 or more, not {max_batch}")
        self.max_batch = max_batch
        self._store = store
        self._checkpointer = checkpointer
        self.loop = loop  # where outcomes are delivered
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="moviedb-writer", daemon=True)
        self.live_count = live_count
        self.entries = live_count if entries is None else entries  # tombstones included
        self.buckets = bucket_digests if bucket_digests is not None else [0] * digests.BUCKETS
        self.digest = digests.combine(self.buckets)
        self.commits = 0
        self.writes = 0
        # Told the keys of every delivered commit, before its writes are acknowledged (the
        # server drops cached replies of those titles here).
        self.on_commit: Callable[[list[str]], None] | None = None
        self._thread.start()

    def submit(self, write: Write) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = self.loop.create_future()
        self._queue.put((write, partial(_settle, future)))
        return future

    def submit_then(self, write: Write, done: Done) -> None:
        """Queue a write and call `done` on the event loop with its outcome, once committed
        (or with the exception that failed the commit). No future, no task: the server
        answers a put from here, with no turn of the loop in between."""
        self._queue.put((write, done))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            outcomes, change = self._store.apply([write for write, _ in batch])
        except Exception as exc:  # every waiting write must hear about it
            self.loop.call_soon_threadsafe(_fail_all, batch, exc)
            return
        self.loop.call_soon_threadsafe(self._deliver, batch, outcomes, change)
        checkpointer = self._checkpointer
        if checkpointer is not None:
            if checkpointer.wal_frames > WAL_LIMIT:
                try:
                    checkpointer.wal_frames, _ = self._store.checkpoint()
                except sqlite3.Error as exc:
                    log.warning("checkpoint after a commit failed: %s", exc)
            checkpointer.poke()

    def _deliver(self, batch: list[_Pending], outcomes: list[Outcome], change: Change) -> None:
        self.live_count += change.live_delta
        self.entries += change.entries_delta
        for bucket, xor in change.bucket_xor.items():
            self.buckets[bucket] ^= xor
            self.digest ^= xor
        self.commits += 1
        self.writes += len(batch)
        if self.on_commit is not None:
            self.on_commit([write.key for write, _ in batch])
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            _tell(done, outcome)

    def close(self) -> None:
        """Commit what is queued, then stop the thread (blocking: call from a worker thread)."""
        self._queue.put(None)
        self._thread.join()
        if self._checkpointer is not None:
            self._checkpointer.close()


def _fail_all(batch: list[_Pending], exc: Exception) -> None:
    for _, done in batch:
        _tell(done, exc)


def _tell(done: Done, result: Outcome | Exception) -> None:
    try:
        done(result)
    except Exception:  # one broken callback must not keep the others from their answers
        log.exception("delivering a write's outcome failed")


def _settle(future: asyncio.Future[Outcome], result: Outcome | Exception) -> None:
    if future.done():
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
