"""`put_batch`: many conditional writes in one request and one commit; each checked on its own."""

from __future__ import annotations

from typing import Any

import msgspec

from moviedb.client import Cluster, WriteStatus
from moviedb.client.address import Address
from moviedb.model import Movie, validate
from moviedb.server.app import MoviedbServer
from moviedb.versions import Copy, child, first_copy
from tests.test_server import connect


def make(title: str, year: int | None = 2000, **fields: Any) -> Copy:
    return first_copy(validate(Movie(title=title, year=year, **fields)))


async def test_each_copy_gets_its_own_status(inproc_server: MoviedbServer) -> None:
    alien = make("Alien", 1979)
    newer = child([alien], validate(Movie(title="Alien", year=1979, rating=8.5)))
    rival = child([alien], validate(Movie(title="Alien", year=1979, rating=7.0)))
    address = Address("127.0.0.1", inproc_server.port)
    async with Cluster([address]) as cluster:
        await cluster.put({address: newer})
        movies = [make(f"Film {i}") for i in range(50)]
        results = await cluster.put_batch(address, [*movies, alien, newer, rival])
        statuses = [r.status for r in results]
        assert statuses == [WriteStatus.APPLIED] * 50 + [
            WriteStatus.STALE,
            WriteStatus.UNCHANGED,
            WriteStatus.CONFLICT,
        ]
        again = await cluster.put_batch(address, movies)
        assert {r.status for r in again} == {WriteStatus.UNCHANGED}
        (info,) = await cluster.hello()
        assert info.movies == 51
    assert inproc_server.state.committer.commits <= 3  # the 50 went in one transaction or two


async def test_an_invalid_copy_is_refused_alone(inproc_server: MoviedbServer) -> None:
    good = make("Heat", 1995)
    bad = msgspec.to_builtins(make("Ran", 1985))
    bad["movie"]["rating"] = 11
    wrong_key = msgspec.to_builtins(make("Solaris", 1972))
    wrong_key["key"] = "nope"
    async with connect(inproc_server.port) as client:
        reply = await client.request(
            {
                "op": "put_batch",
                "id": 1,
                "copies": [msgspec.to_builtins(good), bad, wrong_key, {"key": 1}],
            }
        )
        assert reply["ok"], reply
        items = reply["result"]["results"]
        assert [i["status"] for i in items] == ["applied", "invalid", "invalid", "invalid"]
        assert "rating" in items[1]["error"]
        assert "key" in items[2]["error"]
        too_many = await client.request({"op": "put_batch", "copies": [{}] * 1001})
        assert too_many["error"]["code"] == "bad_request"
        got = await client.request({"op": "get", "title": "ran"})
        assert got["result"]["copies"] == []
