"""Store on real SQLite files, and the group committer that funnels writes through one thread."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from moviedb.model import Movie, validate
from moviedb.server import writer
from moviedb.server.storage import Applied, Outcome, PurgeTombstone, StorageError, Store, Write
from moviedb.server.writer import GroupCommitter
from moviedb.versions import Copy, Decision, child, first_copy
from tests.test_server import wait_until


def apply(store: Store, writes: Sequence[Write]) -> tuple[list[Outcome], int]:
    """The outcomes and the change in live movies."""
    outcomes, change = store.apply(writes)
    return outcomes, change.live_delta


def make(title: str, year: int | None = None, **fields: Any) -> Copy:
    return first_copy(validate(Movie(title=title, year=year, **fields)))


def edit(parent: Copy, **fields: Any) -> Copy:
    movie = msgspec.structs.replace(parent.movie, **fields)
    return child([parent], validate(movie))


def tombstone(parent: Copy) -> Copy:
    return child([parent], parent.movie, deleted=True)


def decode(docs: Sequence[bytes]) -> list[Copy]:
    return [msgspec.json.decode(doc, type=Copy) for doc in docs]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "movies.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    store = Store(db_path)
    yield store
    store.close()


# --- schema and pragmas ---------------------------------------------------------------------------


def test_new_file_is_created_in_wal_mode(store: Store, db_path: Path) -> None:
    assert db_path.exists()
    # WAL is a property of the file: a separate connection sees it.
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_connections_commit_with_synchronous_full(db_path: Path) -> None:
    writer = Store(db_path)
    reader = Store(db_path, for_writing=False)
    try:
        for s in (writer, reader):
            # synchronous is per connection: 2 = FULL (an acknowledged write is on the disk).
            assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2
            assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        writer.close()
        reader.close()


def test_migrations_are_recorded_once(db_path: Path) -> None:
    first = Store(db_path)
    assert first.migrations() == [
        "0001_movies",
        "0002_buckets",
        "0003_stored_at",
        "0004_search",
        "0005_counts",
    ]
    first.close()
    again = Store(db_path)
    try:
        assert again.migrations() == [
            "0001_movies",
            "0002_buckets",
            "0003_stored_at",
            "0004_search",
            "0005_counts",
        ]
        rows = again._db.execute("SELECT name, applied_at FROM schema_migrations").fetchall()
        assert len(rows) == 5
        assert isinstance(rows[0][1], float)
        tables = {
            r[0] for r in again._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert {"movies", "meta", "schema_migrations"} <= tables
    finally:
        again.close()


def test_reading_store_is_query_only(store: Store, db_path: Path) -> None:
    apply(store, [make("Alien", 1979)])
    reader = Store(db_path, for_writing=False)
    try:
        assert reader.count_live() == 1
        with pytest.raises(StorageError, match="the database refused the write"):
            reader.apply([make("Heat", 1995)])
        assert not reader._db.in_transaction  # rolled back, nothing left open
    finally:
        reader.close()
    assert store.count_live() == 1
    assert store.get_raw("Heat") == []


def test_server_id_is_stable_across_reopen(db_path: Path, tmp_path: Path) -> None:
    first = Store(db_path)
    server_id = first.server_id
    first.close()
    assert len(server_id) == 32
    int(server_id, 16)  # hex
    again = Store(db_path)
    reader = Store(db_path, for_writing=False)
    other = Store(tmp_path / "other.sqlite3")
    try:
        assert again.server_id == server_id
        assert reader.server_id == server_id
        assert other.server_id != server_id  # every database is its own server
    finally:
        for s in (again, reader, other):
            s.close()


# --- writes ---------------------------------------------------------------------------------------


def test_apply_a_new_copy(store: Store) -> None:
    alien = make("Alien", 1979, director="Ridley Scott")
    outcomes, delta = apply(store, [alien])
    assert outcomes == [Applied(Decision.APPLY, None)]
    assert delta == 1
    assert store.get_copy(alien.key) == alien
    assert decode(store.get_raw("Alien", 1979)) == [alien]
    assert store.count_live() == 1


def test_same_revision_is_an_idempotent_success(store: Store) -> None:
    alien = make("Alien", 1979)
    apply(store, [alien])
    outcomes, delta = apply(store, [alien])
    assert outcomes == [Applied(Decision.SAME, None)]
    assert delta == 0
    # An identical record added independently has the same revision: it agrees.
    outcomes, _ = apply(store, [make("Alien", 1979)])
    assert outcomes == [Applied(Decision.SAME, None)]
    assert store.count_live() == 1


def test_child_supersedes_and_stale_is_refused_with_the_stored_copy(store: Store) -> None:
    v1 = make("Alien", 1979)
    v2 = edit(v1, director="Ridley Scott")
    assert apply(store, [v1])[0] == [Applied(Decision.APPLY, None)]
    outcomes, delta = apply(store, [v2])
    assert outcomes == [Applied(Decision.APPLY, None)]
    assert delta == 0  # an edit neither adds nor removes a live movie
    outcomes, delta = apply(store, [v1])
    assert outcomes == [Applied(Decision.STALE, v2)]
    assert delta == 0
    assert store.get_copy(v1.key) == v2


def test_conflict_is_refused_and_never_merged(store: Store) -> None:
    base = make("Alien", 1979)
    left = edit(base, director="Ridley Scott")
    right = edit(base, rating=8.5)
    apply(store, [base, left])
    outcomes, delta = apply(store, [right])
    assert outcomes == [Applied(Decision.CONFLICT, left)]
    assert delta == 0
    assert store.get_copy(base.key) == left
    # A resolution holds both branches in its history and supersedes both.
    resolved = child([left, right], validate(msgspec.structs.replace(left.movie, rating=8.5)))
    assert apply(store, [resolved])[0] == [Applied(Decision.APPLY, None)]
    assert store.get_copy(base.key) == resolved


def test_writes_to_a_new_movie_on_top_of_nothing(store: Store) -> None:
    # A server that never saw the first copy takes a child of it: "add where missing".
    v2 = edit(make("Heat", 1995), director="Michael Mann")
    assert apply(store, [v2]) == ([Applied(Decision.APPLY, None)], 1)


def test_tombstone_hides_the_movie_and_blocks_its_return(store: Store) -> None:
    alien = make("Alien", 1979)
    heat = make("Heat", 1995)
    apply(store, [alien, heat])
    assert store.count_live() == 2
    gone = tombstone(alien)
    outcomes, delta = apply(store, [gone])
    assert outcomes == [Applied(Decision.APPLY, None)]
    assert delta == -1
    assert store.count_live() == 1
    # The tombstone is stored and served (sync and clients need it)...
    stored = decode(store.get_raw("alien", 1979))
    assert stored == [gone]
    assert stored[0].deleted
    # ...and neither the old copy nor the same record added again brings the movie back.
    outcomes, delta = apply(store, [alien, make("Alien", 1979)])
    assert outcomes == [Applied(Decision.STALE, gone), Applied(Decision.STALE, gone)]
    assert delta == 0
    assert store.count_live() == 1
    # Writing the same tombstone again is idempotent.
    assert apply(store, [gone]) == ([Applied(Decision.SAME, None)], 0)


def test_a_movie_can_come_back_as_a_child_of_its_tombstone(store: Store) -> None:
    alien = make("Alien", 1979)
    gone = tombstone(alien)
    apply(store, [alien, gone])
    back = child([gone], alien.movie)
    assert apply(store, [back]) == ([Applied(Decision.APPLY, None)], 1)
    assert store.count_live() == 1


def test_tombstone_for_a_movie_never_seen_counts_nothing(store: Store) -> None:
    gone = tombstone(make("Alien", 1979))
    assert apply(store, [gone]) == ([Applied(Decision.APPLY, None)], 0)
    assert store.count_live() == 0
    assert decode(store.get_raw("Alien")) == [gone]


def test_several_writes_in_one_transaction_see_each_other(store: Store) -> None:
    v1 = make("Alien", 1979)
    v2 = edit(v1, director="Ridley Scott")
    outcomes, delta = apply(store, [v1, v2, v1, v2])
    assert [o.decision for o in outcomes] == [
        Decision.APPLY,
        Decision.APPLY,
        Decision.STALE,
        Decision.SAME,
    ]
    assert outcomes[2].current == v2
    assert delta == 1
    assert store.get_copy(v1.key) == v2


def test_empty_batch_is_a_no_op(store: Store) -> None:
    assert apply(store, []) == ([], 0)
    assert store.count_live() == 0


# --- reads ----------------------------------------------------------------------------------------


def test_get_raw_by_folded_title_returns_every_year(store: Store) -> None:
    kong_1933 = make("King Kong", 1933)
    kong_2005 = make("King Kong", 2005, director="Peter Jackson")
    kong_undated = make("King-Kong")  # folds like "King Kong"; no year
    others = [
        make("King Kong Lives", 1986),
        make("King Kong vs. Godzilla", 1962),
        make("King", 1978),
        make("Kingkong", 2000),
    ]
    apply(store, [kong_2005, *others, kong_1933, kong_undated])

    # Case, accents and punctuation do not matter; only exact folded titles match.
    for query in ("King Kong", "king kong", "KING-KONG", "  Kíng   Kong!  "):
        copies = decode(store.get_raw(query))
        assert sorted(c.key for c in copies) == sorted(
            c.key for c in (kong_1933, kong_2005, kong_undated)
        ), query
    assert decode(store.get_raw("King Kong", 2005)) == [kong_2005]
    assert decode(store.get_raw("king kong", 1933)) == [kong_1933]
    assert store.get_raw("King Kong", 1976) == []
    assert store.get_raw("Queen Kong") == []
    assert decode(store.get_raw("King")) == [others[2]]


def test_get_raw_returns_the_stored_json_as_it_is(store: Store) -> None:
    alien = make("Alien", 1979, cast=["Sigourney Weaver"], extra={"country": "UK"})
    apply(store, [alien])
    (doc,) = store.get_raw("Alien", 1979)
    assert doc == msgspec.json.encode(alien)


def test_get_copy_of_a_missing_key(store: Store) -> None:
    assert store.get_copy("alien\x1f1979") is None


def test_get_raw_with_odd_titles(store: Store) -> None:
    punct = make("...", 2001)
    apply(store, [punct])
    assert decode(store.get_raw("...")) == [punct]
    assert store.get_raw("a\x00b") == []
    assert store.get_raw("%") == []  # no LIKE wildcards anywhere
    assert store.get_raw("_") == []


def page_through(store: Store, limit: int) -> tuple[list[str], int]:
    keys: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        docs, after = store.list_raw(after, limit)
        pages += 1
        assert len(docs) <= limit
        keys.extend(c.key for c in decode(docs))
        if after is None:
            return keys, pages
        assert after == keys[-1]  # the page ends where the next one starts


@pytest.mark.parametrize(("count", "limit"), [(57, 10), (50, 10), (7, 1), (3, 1000), (0, 5)])
def test_list_raw_pages_by_key_without_duplicates_or_gaps(
    store: Store, count: int, limit: int
) -> None:
    titles = [f"Movie {i}" for i in range(count)]
    # Keys that share prefixes, sort around the separator, or need Unicode folding.
    titles[: min(count, 6)] = ["Kong", "King Kong", "King Kong Lives", "Ça", "Zz", "Éclair"][
        : min(count, 6)
    ]
    copies = [make(t, 1990 + i % 3) for i, t in enumerate(titles)]
    if copies:
        copies.append(tombstone(copies[0]))  # deleted movies are listed too (sync needs them)
    apply(store, copies)
    expected = sorted({c.key for c in copies})

    keys, pages = page_through(store, limit)

    assert keys == expected
    assert len(keys) == len(set(keys))
    assert pages <= count // limit + 1


def test_list_raw_after_a_key_that_is_not_stored(store: Store) -> None:
    apply(store, [make(t, 2000) for t in ("apple", "banana", "cherry")])
    docs, next_key = store.list_raw("b", 10)
    assert [c.movie.title for c in decode(docs)] == ["banana", "cherry"]
    assert next_key is None
    assert store.list_raw("zzz", 10) == ([], None)


def test_list_raw_sees_writes_between_pages(store: Store) -> None:
    apply(store, [make(t, 2000) for t in ("a", "c", "e")])
    first, after = store.list_raw(None, 2)
    assert [c.movie.title for c in decode(first)] == ["a", "c"]
    apply(store, [make("b", 2000), make("d", 2000)])  # one before the cursor, one after
    rest, after = store.list_raw(after, 2)
    assert [c.movie.title for c in decode(rest)] == ["d", "e"]


def test_count_live(store: Store) -> None:
    copies = [make(f"Movie {i}", 2000) for i in range(10)]
    _, delta = apply(store, copies)
    assert delta == 10
    _, delta = apply(store, [tombstone(c) for c in copies[:4]])
    assert delta == -4
    assert store.count_live() == 6


# --- durability across reopen ---------------------------------------------------------------------


def test_data_survives_closing_and_reopening(db_path: Path) -> None:
    first = Store(db_path)
    copies = [make(f"Movie {i}", 2000 + i % 5) for i in range(25)]
    gone = tombstone(copies[0])
    first.apply(copies)
    first.apply([gone])
    first.close()

    again = Store(db_path)
    try:
        assert again.count_live() == 24
        assert again.get_copy(gone.key) == gone
        for c in copies[1:]:
            assert again.get_copy(c.key) == c
        keys, _ = page_through(again, 7)
        assert keys == sorted(c.key for c in copies)
    finally:
        again.close()


def test_a_reader_sees_what_the_writer_committed(db_path: Path) -> None:
    writer = Store(db_path)
    reader = Store(db_path, for_writing=False)
    try:
        alien = make("Alien", 1979)
        writer.apply([alien])
        assert decode(reader.get_raw("alien")) == [alien]
        assert reader.count_live() == 1
    finally:
        writer.close()
        reader.close()


# --- the group committer --------------------------------------------------------------------------


class GatedStore(Store):
    """A Store whose first apply() waits until the test lets it go."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[int] = []

    def apply(self, copies: Sequence[Copy]) -> tuple[list[Applied], int]:
        self.batches.append(len(copies))
        self.entered.set()
        assert self.release.wait(10), "the test never released the writer"
        return super().apply(copies)


async def test_concurrent_submissions_share_commits(db_path: Path) -> None:
    store = Store(db_path)
    committer = GroupCommitter(store, asyncio.get_running_loop(), store.count_live())
    try:
        copies = [make(f"Movie {i}", 2000) for i in range(300)]
        futures = [committer.submit(c) for c in copies]
        async with asyncio.timeout(20):
            outcomes = await asyncio.gather(*futures)
        assert [o.decision for o in outcomes] == [Decision.APPLY] * 300
        assert committer.writes == 300
        assert 1 <= committer.commits < committer.writes
        assert committer.live_count == 300
    finally:
        await asyncio.to_thread(committer.close)
        store.close()
    reopened = Store(db_path)
    try:
        assert reopened.count_live() == 300
    finally:
        reopened.close()


async def test_writes_queued_during_a_commit_go_into_one_transaction(db_path: Path) -> None:
    store = GatedStore(db_path)
    committer = GroupCommitter(store, asyncio.get_running_loop(), 0)
    try:
        first = committer.submit(make("First", 2000))
        assert await asyncio.to_thread(store.entered.wait, 10)
        # While the writer is busy with the first commit, 99 more writes arrive.
        later = [committer.submit(make(f"Movie {i}", 2000)) for i in range(99)]
        store.release.set()
        async with asyncio.timeout(20):
            outcomes = await asyncio.gather(first, *later)
        assert [o.decision for o in outcomes] == [Decision.APPLY] * 100
        assert store.batches == [1, 99]
        assert (committer.commits, committer.writes, committer.live_count) == (2, 100, 100)
    finally:
        store.release.set()
        await asyncio.to_thread(committer.close)
        store.close()


async def test_outcomes_reach_each_writer_in_order(db_path: Path) -> None:
    store = Store(db_path)
    committer = GroupCommitter(store, asyncio.get_running_loop(), 0)
    try:
        v1 = make("Alien", 1979)
        v2 = edit(v1, director="Ridley Scott")
        other = edit(v1, rating=8.0)
        futures = [committer.submit(c) for c in (v1, v2, v1, v2, other)]
        async with asyncio.timeout(20):
            outcomes = await asyncio.gather(*futures)
        assert outcomes == [
            Applied(Decision.APPLY, None),
            Applied(Decision.APPLY, None),
            Applied(Decision.STALE, v2),
            Applied(Decision.SAME, None),
            Applied(Decision.CONFLICT, v2),
        ]
        assert committer.live_count == 1
    finally:
        await asyncio.to_thread(committer.close)
        store.close()


async def test_a_failed_commit_fails_every_write_in_it(db_path: Path) -> None:
    Store(db_path).close()  # create the schema
    read_only = Store(db_path, for_writing=False)
    committer = GroupCommitter(read_only, asyncio.get_running_loop(), 0)
    try:
        futures = [committer.submit(make(f"Movie {i}", 2000)) for i in range(5)]
        async with asyncio.timeout(20):
            results = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(r, StorageError) for r in results), results
        assert (committer.commits, committer.writes, committer.live_count) == (0, 0, 0)
        # The writer thread survives a failed commit.
        again = committer.submit(make("Another", 2000))
        async with asyncio.timeout(20):
            with pytest.raises(StorageError):
                await again
    finally:
        await asyncio.to_thread(committer.close)
        read_only.close()


async def test_close_commits_what_is_queued(db_path: Path) -> None:
    store = Store(db_path)
    committer = GroupCommitter(store, asyncio.get_running_loop(), 0)
    futures = [committer.submit(make(f"Movie {i}", 2000)) for i in range(50)]
    await asyncio.to_thread(committer.close)
    try:
        assert all(f.done() for f in futures)
        assert [f.result().decision for f in futures] == [Decision.APPLY] * 50
        assert committer.writes == 50
        assert store.count_live() == 50
    finally:
        store.close()


def test_the_kept_counts_equal_the_rows_after_writes_deletes_and_purges(db_path: Path) -> None:
    """Start reads the live and stored counts from `counts` (no scan): every kind of write must
    keep them equal to what a count of the rows says."""
    store = Store(db_path)
    try:
        copies = [make(f"Movie {i}", 1990 + i % 20) for i in range(30)]
        store.apply(copies)
        deleted = [tombstone(c) for c in copies[:10]]
        store.apply(deleted)
        store.apply(
            [child([c], msgspec.structs.replace(c.movie, rating=5.0)) for c in copies[10:15]]
        )
        store.apply([PurgeTombstone(t.key, t.rev, 0.0) for t in deleted[:4]])
        revived = child([deleted[4]], copies[4].movie)
        store.apply([revived, copies[5]])  # a revival, and a stale write that changes nothing
        with pytest.raises(AttributeError):  # a transaction that fails half-way is rolled back
            store.apply([make("Doomed", 2001), "not a write"])  # type: ignore[list-item]
        db = store._db
        live = db.execute("SELECT count(*) FROM movies WHERE deleted = 0").fetchone()[0]
        entries = db.execute("SELECT count(*) FROM movies").fetchone()[0]
        assert (store.count_live(), store.count_entries()) == (live, entries) == (21, 26)
    finally:
        store.close()


def movies_in_the_database_file(db: Path) -> int:
    """The movies the database file itself holds, the WAL left unread (immutable=1): what
    checkpoints have copied into it so far. Read only while nothing checkpoints."""
    uri = f"file:{db}?immutable=1"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as file_only:
        if not file_only.execute("SELECT 1 FROM sqlite_master WHERE name = 'movies'").fetchone():
            return 0  # not even the schema has been copied yet
        return int(file_only.execute("SELECT count(*) FROM movies").fetchone()[0])


def size_of(path: Path) -> int:
    return path.stat().st_size


WAL_HEADER, WAL_FRAME_HEADER = 32, 24  # bytes (sqlite.org/fileformat.html#walformat)


class HeldCheckpointer(writer.Checkpointer):
    """A Checkpointer whose background thread is never woken: only the writer checkpoints. It
    counts the writer's pokes, the last thing the writer does after each commit."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.pokes = 0

    def poke(self) -> None:
        self.pokes += 1


async def submit_movies(committer: GroupCommitter, numbers: range) -> None:
    for start in range(numbers.start, numbers.stop, 100):
        batch = [make(f"Movie {i}", 2000) for i in range(start, min(start + 100, numbers.stop))]
        for outcome in await asyncio.gather(*(committer.submit(c) for c in batch)):
            assert isinstance(outcome, Applied), outcome
            assert outcome.decision is Decision.APPLY, outcome


async def test_checkpoints_run_beside_the_commits(db_path: Path) -> None:
    """The writer's store never checkpoints inside a commit; the Checkpointer thread copies the
    WAL into the database file after commits."""
    store = Store(db_path, autocheckpoint=False)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    checkpointer = writer.Checkpointer(db_path)
    committer = GroupCommitter(store, asyncio.get_running_loop(), 0, checkpointer=checkpointer)
    try:
        await submit_movies(committer, range(600))  # far below WAL_LIMIT: the writer never
        # checkpoints. Every commit is in the WAL now; a checkpoint in progress may have
        # started before the last one, but the second to end from here started after it.
        after_the_commits = checkpointer.checkpoints

        def caught_up() -> bool:
            checkpointer.poke()
            return checkpointer.checkpoints >= after_the_commits + 2

        await wait_until(caught_up)
    finally:
        await asyncio.to_thread(committer.close)  # stops the Checkpointer too
    try:
        # Read before the test's own checkpoint: the background one did the copying.
        assert movies_in_the_database_file(db_path) == 600
        db_size = size_of(db_path)
        assert checkpointer.wal_frames > 0
        # Nothing committed was left for another checkpoint to copy.
        everything = (checkpointer.wal_frames, checkpointer.wal_frames)
        assert store.checkpoint() == everything
        assert size_of(db_path) == db_size
    finally:
        store.close()
    reopened = Store(db_path)
    try:
        assert reopened.count_live() == 600
    finally:
        reopened.close()


async def test_past_wal_limit_the_writer_checkpoints_itself(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Checkpointer that falls behind cannot let the WAL grow without bound: once the WAL
    holds more than WAL_LIMIT frames, the writer checkpoints after its own commits."""
    monkeypatch.setattr(writer, "WAL_LIMIT", 0)  # any commit leaves the WAL past it
    store = Store(db_path, autocheckpoint=False)
    checkpointer = HeldCheckpointer(db_path)
    committer = GroupCommitter(store, asyncio.get_running_loop(), 0, checkpointer=checkpointer)
    try:
        # At or under the limit (as the last background checkpoint found it): no checkpoint.
        checkpointer.wal_frames = writer.WAL_LIMIT
        await submit_movies(committer, range(300))
        await wait_until(lambda: checkpointer.pokes == committer.commits)
        assert movies_in_the_database_file(db_path) == 0
        assert checkpointer.wal_frames == writer.WAL_LIMIT
        # Never checkpointed, the WAL holds every frame written so far, one after the other.
        page_size = store._db.execute("PRAGMA page_size").fetchone()[0]
        wal = db_path.with_name(db_path.name + "-wal")
        unchecked = (size_of(wal) - WAL_HEADER) // (WAL_FRAME_HEADER + page_size)

        # Past it: the writer checkpoints after each commit (which leaves the WAL past the limit
        # again), though the background thread never runs.
        checkpointer.wal_frames = writer.WAL_LIMIT + 1
        await submit_movies(committer, range(300, 600))
        await wait_until(lambda: checkpointer.pokes == committer.commits)
        assert checkpointer.checkpoints == 0
        assert movies_in_the_database_file(db_path) == 600
        # The writer's last checkpoint, after its last commit, copied every frame.
        last = checkpointer.wal_frames
        # The WAL restarted after a complete checkpoint: it holds the last commit's frames,
        # fewer than the first 300 movies took.
        assert writer.WAL_LIMIT < last < unchecked
        assert store.checkpoint() == (last, last)
    finally:
        await asyncio.to_thread(committer.close)
        store.close()
