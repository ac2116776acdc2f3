"""Catalog digests: the pure functions, the stored bucket digests, and the sync ops on the wire."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from moviedb import digests
from moviedb.model import Movie, validate
from moviedb.server.app import MoviedbServer
from moviedb.server.storage import Purged, PurgeTombstone, Store
from moviedb.versions import Copy, child, first_copy
from tests.conftest import write_old_database
from tests.test_server import connect

keys = st.text(min_size=1, max_size=20)
revs = st.from_regex(r"[1-9]-[0-9a-f]{16}", fullmatch=True)


def make(title: str, year: int | None = 2000, **fields: Any) -> Copy:
    return first_copy(validate(Movie(title=title, year=year, **fields)))


def edit(parent: Copy, **fields: Any) -> Copy:
    return child([parent], validate(msgspec.structs.replace(parent.movie, **fields)))


def recomputed(store: Store) -> list[int]:
    """The bucket digests computed from scratch from the stored rows."""
    sums = [0] * digests.BUCKETS
    for key, rev in store._db.execute("SELECT key, rev FROM movies"):
        sums[digests.bucket_of(key)] ^= digests.entry_hash(key, rev)
    return sums


# --- pure ----------------------------------------------------------------------------------------


@given(st.lists(st.tuples(keys, revs), unique_by=lambda e: e[0], max_size=30), st.randoms())
def test_a_digest_does_not_depend_on_the_order_of_writes(
    entries: list[tuple[str, str]], rng: random.Random
) -> None:
    def digest_of(order: list[tuple[str, str]]) -> int:
        return digests.combine(digests.entry_hash(k, r) for k, r in order)

    shuffled = list(entries)
    rng.shuffle(shuffled)
    assert digest_of(entries) == digest_of(shuffled)


@given(keys, revs, revs)
def test_changing_a_revision_changes_the_digest(key: str, a: str, b: str) -> None:
    if a != b:
        assert digests.entry_hash(key, a) != digests.entry_hash(key, b)


@given(keys)
def test_buckets_are_in_range_and_stable(key: str) -> None:
    assert 0 <= digests.bucket_of(key) < digests.BUCKETS
    assert digests.bucket_of(key) == digests.bucket_of(key)


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_hex_and_signed_round_trip(value: int) -> None:
    assert digests.from_hex(digests.to_hex(value)) == value
    assert len(digests.to_hex(value)) == 16
    assert -(1 << 63) <= digests.to_signed(value) < 1 << 63
    assert digests.from_signed(digests.to_signed(value)) == value


def test_differing_buckets() -> None:
    assert digests.differing_buckets([1, 2, 3], [1, 5, 3]) == [1]


# --- storage -------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from("put edit delete purge"))))
def test_stored_bucket_digests_match_the_rows_after_any_writes(
    tmp_path_factory: Any, steps: list[tuple[str, str]]
) -> None:
    store = Store(tmp_path_factory.mktemp("db") / "db.sqlite3")
    live: dict[str, Copy] = {}
    memory = store.bucket_digests()
    try:
        for title, action in steps:
            current = live.get(title)
            write: Copy | PurgeTombstone
            if action == "put" or current is None:
                write = make(title)
            elif action == "edit":
                write = edit(current, plot=f"{current.rev} edited")
            elif action == "delete":
                write = child([current], current.movie, deleted=True)
            else:
                write = PurgeTombstone(current.key, current.rev)
            (outcome,), change = store.apply([write])
            for bucket, xor in change.bucket_xor.items():
                memory[bucket] ^= xor
            if isinstance(write, Copy) and store.get_copy(write.key) == write:
                live[title] = write
            elif isinstance(outcome, Purged) and outcome.purged:
                live.pop(title)
        assert store.bucket_digests() == recomputed(store) == memory
    finally:
        store.close()


def test_purge_removes_only_that_tombstone(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    alien = make("Alien", 1979)
    gone = child([alien], alien.movie, deleted=True)
    store.apply([alien])
    (kept,), _ = store.apply([PurgeTombstone(alien.key, alien.rev)])
    assert kept == Purged(False, alien)  # live: never purged
    store.apply([gone])
    (kept,), _ = store.apply([PurgeTombstone(alien.key, alien.rev)])
    assert kept == Purged(False, gone)  # not that revision
    (young,), _ = store.apply([PurgeTombstone(gone.key, gone.rev, min_age=3600)])
    assert young == Purged(False, gone)  # stored here less than an hour ago, by this clock
    (purged,), change = store.apply([PurgeTombstone(gone.key, gone.rev)])
    assert purged == Purged(True, None)
    assert store.get_copy(alien.key) is None
    assert store.bucket_digests() == [0] * digests.BUCKETS
    assert (change.live_delta, change.entries_delta) == (0, -1)
    store.close()


def test_an_old_database_gets_its_buckets_on_open(tmp_path: Path) -> None:
    """A file written before bucket digests existed (migration 0001 only) is brought up to date."""
    path = tmp_path / "old.sqlite3"
    copies = [make(f"Movie {i}", 1990 + i % 30) for i in range(300)]
    write_old_database(path, copies)
    store = Store(path)
    try:
        assert store.migrations() == [
            "0001_movies",
            "0002_buckets",
            "0003_stored_at",
            "0004_search",
            "0005_counts",
        ]
        assert store.count_entries() == len(copies)
        assert store.bucket_digests() == recomputed(store)
        assert digests.combine(store.bucket_digests()) == digests.combine(
            digests.entry_hash(c.key, c.rev) for c in copies
        )
        entries, _ = store.bucket_keys(digests.bucket_of(copies[0].key), None, 1000)
        assert (copies[0].key, copies[0].rev) in entries
    finally:
        store.close()


# --- on the wire ---------------------------------------------------------------------------------


async def test_servers_with_the_same_versions_have_the_same_digest(tmp_path: Path) -> None:
    movies = [make(f"Film {i}", 2000 + i % 20) for i in range(200)]
    a = MoviedbServer(tmp_path / "a.sqlite3")
    b = MoviedbServer(tmp_path / "b.sqlite3")
    ports = [await a.start("127.0.0.1", [0]), await b.start("127.0.0.1", [0])]
    try:
        for port, order in zip(ports, (movies, list(reversed(movies))), strict=True):
            async with connect(port) as client:
                client.send(*({"op": "put", "copy": msgspec.to_builtins(c)} for c in order))
                assert all(r["ok"] for r in await client.replies(len(order)))
        hellos = []
        for port in ports:
            async with connect(port) as client:
                hellos.append(await client.hello())
                digest = (await client.request({"op": "digest"}))["result"]
        assert hellos[0]["digest"] == hellos[1]["digest"] == digest["digest"] != "0" * 16
        assert digest["entries"] == 200
        assert len(digest["buckets"]) == digests.BUCKETS
        assert (
            digests.to_hex(digests.combine(digests.from_hex(d) for d in digest["buckets"]))
            == digest["digest"]
        )

        # One edit on one server: one bucket differs, and its keys name the edited movie.
        changed = edit(movies[7], rating=7.5)
        async with connect(ports[1]) as client:
            assert (await client.request({"op": "put", "copy": msgspec.to_builtins(changed)}))["ok"]
            other = (await client.request({"op": "digest"}))["result"]
        bucket = digests.bucket_of(changed.key)
        differing = [
            i for i in range(digests.BUCKETS) if digest["buckets"][i] != other["buckets"][i]
        ]
        assert differing == [bucket]
        async with connect(ports[1]) as client:
            page = (await client.request({"op": "keys", "bucket": bucket, "limit": 1000}))["result"]
            fetched = await client.request({"op": "fetch", "keys": [changed.key, "nope\x1f"]})
        assert [changed.key, changed.rev] in page["entries"]
        assert page["next"] is None
        assert msgspec.convert(fetched["result"]["copies"], list[Copy]) == [changed]
    finally:
        await a.stop()
        await b.stop()


async def test_keys_pages_and_bad_arguments(inproc_server: MoviedbServer) -> None:
    movies = [make(f"Film {i}") for i in range(3000)]
    async with connect(inproc_server.port) as client:
        client.send(*({"op": "put", "copy": msgspec.to_builtins(c)} for c in movies))
        assert all(r["ok"] for r in await client.replies(len(movies)))
        bucket = digests.bucket_of(movies[0].key)
        expected = sorted((c.key, c.rev) for c in movies if digests.bucket_of(c.key) == bucket)
        seen: list[tuple[str, str]] = []
        after = None
        while True:
            reply = await client.request(
                {"op": "keys", "bucket": bucket, "after": after, "limit": 1}
            )
            seen.extend((k, r) for k, r in reply["result"]["entries"])
            after = reply["result"]["next"]
            if after is None:
                break
        assert seen == expected
        for bad in (
            {"op": "keys", "bucket": digests.BUCKETS},
            {"op": "keys", "bucket": -1},
            {"op": "keys", "bucket": 0, "limit": 0},
            {"op": "fetch", "keys": ["k"] * 1001},
            {"op": "purge", "key": "k", "rev": "nonsense"},
            {"op": "digest", "extra": 1},
        ):
            reply = await client.request(bad)
            assert not reply["ok"]
            assert reply["error"]["code"] == "bad_request", bad


async def test_purge_over_the_wire_and_stats(inproc_server: MoviedbServer) -> None:
    alien = make("Alien", 1979)
    gone = child([alien], alien.movie, deleted=True)
    async with connect(inproc_server.port) as client:
        client.send(
            {"op": "put", "copy": msgspec.to_builtins(alien)},
            {"op": "purge", "key": alien.key, "rev": alien.rev},
            {"op": "put", "copy": msgspec.to_builtins(gone)},
            {"op": "purge", "key": gone.key, "rev": gone.rev},
            {"op": "get", "title": "alien"},
            {"op": "stats"},
        )
        _, kept, _, purged, got, stats = await client.replies(6)
    assert kept["result"]["status"] == "kept"
    assert msgspec.convert(kept["result"]["current"], Copy) == alien
    assert purged["result"] == {"status": "purged"}
    assert got["result"]["copies"] == []  # read after the purge on the same connection
    result = stats["result"]
    assert result["requests"]["put"] == 2
    assert result["requests"]["purge"] == 2
    assert result["writes"] == 4
    assert result["bytes_in"] > 0
    assert result["bytes_out"] > 0
    assert result["connections"] == 1
