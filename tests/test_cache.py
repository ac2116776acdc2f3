"""The server's cache of encoded `get` results: bounded, and never older than an acknowledged
write (checked against a real server over TCP)."""

from __future__ import annotations

import asyncio
import json
import random

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from moviedb import protocol
from moviedb.client.address import Address
from moviedb.client.cluster import Cluster, WriteStatus
from moviedb.model import Movie, fold_title, validate
from moviedb.server.app import MoviedbServer
from moviedb.server.cache import GetCache
from moviedb.versions import Copy, child, first_copy
from tests.test_server import connect


def test_entries_are_dropped_by_folded_title() -> None:
    cache = GetCache()
    cache.put("Alien", None, b"1")
    cache.put("ALIEN", 1979, b"2")
    cache.put("Heat", None, b"3")
    assert cache.get("Alien", None) == b"1"
    assert cache.get("alien", None) is None  # another spelling is another entry
    cache.invalidate([fold_title("alien")])
    assert cache.get("Alien", None) is None
    assert cache.get("ALIEN", 1979) is None
    assert cache.get("Heat", None) == b"3"
    assert (len(cache), cache.bytes) == (1, 1)


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 400)), max_size=200))
@settings(max_examples=100)
def test_the_cache_stays_within_its_bytes(puts: list[tuple[str, int]]) -> None:
    cache = GetCache(max_bytes=64 * 100)
    for title, size in puts:
        cache.put(title * 3, size % 3 or None, b"x" * size)
        assert cache.bytes <= cache.max_bytes
        assert cache.bytes == sum(len(v) for _, v in cache._entries.values())
    for title in "abcdef":
        cache.invalidate([fold_title(title * 3)])
    assert (len(cache), cache.bytes, cache._by_title) == (0, 0, {})


async def test_a_cached_get_never_outlives_an_acknowledged_write(
    inproc_server: MoviedbServer,
) -> None:
    """Readers on their own connections get a title over and over while a writer edits it: once
    an edit is acknowledged, no later read returns an older revision."""
    server = inproc_server
    address = Address("127.0.0.1", server.port)
    writer = Cluster([address], timeout=10)
    readers = [Cluster([address], timeout=10) for _ in range(4)]
    try:
        current: Copy = first_copy(validate(Movie("Alien", 1979, rating=0.0)))
        (result,) = await writer.put({address: current})
        assert result.status is WriteStatus.APPLIED
        acknowledged = 1
        stop = asyncio.Event()
        stale: list[tuple[int, int]] = []

        async def read(cluster: Cluster, year: int | None) -> None:
            while not stop.is_set():
                floor = acknowledged  # acknowledged before this read was sent
                (got,) = await cluster.get(random.choice(["Alien", "alien", "ALIEN"]), year)
                generation = int(got.copies[0].rev.split("-")[0])
                if generation < floor:
                    stale.append((generation, floor))

        tasks = [
            asyncio.create_task(read(c, y)) for c, y in zip(readers, [None, 1979] * 2, strict=True)
        ]
        for step in range(1, 150):
            edited = validate(msgspec.structs.replace(current.movie, rating=step % 10))
            current = child([current], edited)
            (result,) = await writer.put({address: current})
            assert result.status is WriteStatus.APPLIED
            acknowledged = step + 1
            await asyncio.sleep(0)  # let the readers interleave with the writes
        stop.set()
        await asyncio.gather(*tasks)
        assert stale == []
        cache = server.state.get_cache
        assert cache.hits > 0  # the cache was in use, or this test proves nothing
    finally:
        for cluster in (writer, *readers):
            await cluster.aclose()


async def test_the_get_shortcut_answers_what_the_general_path_answers(
    inproc_server: MoviedbServer,
) -> None:
    """A cached `get` alone on a read is answered before framing and dispatch, and one in a
    pipeline before dispatch: the same bytes as a miss, counted alike."""
    server = inproc_server
    async with connect(server.port) as client:
        alien = first_copy(validate(Movie("Alien", 1979, director="Ridley Scott")))
        client.send(protocol.encode_request(protocol.Put(copy=alien, id=1)))
        assert (await client.reply())["ok"]
        get = protocol.encode_request(protocol.Get(title="ALIEN", year=1979, id="g"))
        answers = []
        for pipeline in (1, 1, 2):  # a miss, a hit alone, two hits in one write
            client.send(get * pipeline)
            answers += [await client.reader.readline() for _ in range(pipeline)]
        assert len(set(answers)) == 1
        (copy,) = json.loads(answers[0])["result"]["copies"]
        assert copy["rev"] == alien.rev
    cache = server.state.get_cache
    assert (cache.misses, cache.hits, server.state.counters["get"]) == (1, 3, 4)


async def test_a_get_right_behind_a_write_of_its_connection_sees_it(
    inproc_server: MoviedbServer,
) -> None:
    """The write is still on its way to the disk when the get arrives (in a read of its own,
    where the shortcut looks first) and the cache still holds the title as the get before the
    write left it: the get waits for the write instead of taking the cached copy."""
    server = inproc_server
    async with connect(server.port) as client:
        current = first_copy(validate(Movie("Alien", 1979, rating=0.0)))
        get = protocol.encode_request(protocol.Get(title="Alien", year=1979))
        for step in range(30):
            if step:
                edited = validate(msgspec.structs.replace(current.movie, rating=step % 10))
                current = child([current], edited)
            client.send(protocol.encode_request(protocol.Put(copy=current)))
            await client.writer.drain()
            client.send(get)
            put_reply, get_reply = await client.replies(2)
            assert put_reply["result"]["status"] == "applied"
            assert [c["rev"] for c in get_reply["result"]["copies"]] == [current.rev]
    assert len(server.state.get_cache) == 1  # the title was cached all along
