"""Consistency scenarios on real servers: stale copies repaired, conflicts resolved, deletes that
stay deleted, unacknowledged writes queued and replayed, sync in proportion to the difference,
tombstones purged only when every server holds them.

Everything is asserted on what can be observed: `--json` documents, exit codes, what the servers
store (read through the client library) and their `stats` counters. Never on time.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from moviedb.client import Cluster, WriteResult, WriteStatus
from moviedb.client.address import Address, parse_address
from moviedb.commands import WriteOutcome
from moviedb.model import Movie
from moviedb.protocol import StatsResult
from moviedb.versions import Copy, first_copy
from tests.conftest import Moviedb, ServerProcess, statuses

T = TypeVar("T")


# --- the raw view: what each server stores and has served, through the client library -------------


def on(servers: list[ServerProcess], work: Callable[[Cluster], Awaitable[T]]) -> T:
    """Run `work` with a Cluster of these servers (its own connections, closed afterwards)."""

    async def run() -> T:
        async with Cluster([s.address for s in servers], timeout=5.0) as cluster:
            return await work(cluster)

    return asyncio.run(run())


def address(server: ServerProcess) -> Address:
    return parse_address(server.address)


def stored(server: ServerProcess, title: str) -> list[Copy]:
    """The copies (tombstones included) one server stores of the movies titled `title`."""
    (result,) = on([server], lambda c: c.get(title))
    assert result.answered, result
    return result.copies


def tombstones(server: ServerProcess) -> list[Copy]:
    """The raw op `{"op": "list", "tombstones": true}`: every tombstone one server stores."""

    async def listing(cluster: Cluster) -> list[Copy]:
        return [c async for c in cluster.scan(address(server), tombstones=True)]

    return on([server], listing)


def entries(server: ServerProcess) -> int:
    """Stored copies, tombstones included (the `digest` op's count)."""
    reply = on([server], lambda c: c.digest())[address(server)]
    assert not isinstance(reply, str), reply
    return reply.entries


def stats(servers: list[ServerProcess]) -> list[StatsResult]:
    async def collect(cluster: Cluster) -> list[StatsResult]:
        return [await cluster.stats(a) for a in cluster.servers]

    return on(servers, collect)


def new_requests(before: StatsResult, after: StatsResult) -> dict[str, int]:
    """Requests per op served between two `stats` calls, not counting those `stats` calls."""
    delta = {
        op: count - before.requests.get(op, 0)
        for op, count in after.requests.items()
        if count != before.requests.get(op, 0)
    }
    delta["stats"] -= 1  # the second `stats` counts itself
    return {op: n for op, n in delta.items() if n}


def put(server: ServerProcess, copy: Copy) -> WriteStatus:
    (result,) = on([server], lambda c: c.put({address(server): copy}))
    return result.status


def state_of(moviedb: Moviedb, title: str) -> str:
    code, got = moviedb.json("get", title)
    assert code == 0, got
    (view,) = got["movies"]
    return str(view["state"])


def digests_of(moviedb: Moviedb) -> list[str]:
    code, listing = moviedb.json("serverlist")
    assert code == 0, listing
    return [s["digest"] for s in listing["servers"]]


ALIEN = ("add", "Alien", "--year", "1979", "--set", "director=Ridley Scott", "--set", "rating=8.5")


# --- 1. stale copies are repaired, missing ones copied, deletes spread ----------------------------


def test_a_server_that_missed_an_edit_is_stale_and_get_repair_brings_it_up_to_date(
    moviedb: Moviedb,
) -> None:
    first, second, third = moviedb.servers
    assert moviedb(*ALIEN)[0] == 0
    assert moviedb("edit", "Alien", "--set", "rating=9", servers=[first, second])[0] == 0

    code, got = moviedb.json("get", "Alien")
    assert code == 0
    (view,) = got["movies"]
    assert view["state"] == "stale"
    assert [v["servers"] for v in view["versions"]] == [
        [first.address, second.address],
        [third.address],
    ]
    assert got["repairs"] == []
    newest = view["versions"][0]["rev"]

    code, repaired = moviedb.json("get", "Alien", "--repair")
    assert code == 0
    (repair,) = repaired["repairs"]
    assert repair["rev"] == newest
    assert repair["servers"] == [{"server": third.address, "status": "applied"}]
    assert [c.rev for c in stored(third, "Alien")] == [newest]
    assert state_of(moviedb, "Alien") == "agree"
    code, again = moviedb.json("get", "Alien", "--repair")
    assert again["repairs"] == []


def test_sync_repairs_stale_copies_copies_missing_movies_and_spreads_deletes(
    moviedb: Moviedb,
) -> None:
    first, second, third = moviedb.servers
    assert moviedb(*ALIEN)[0] == 0
    assert moviedb("add", "Heat", "--year", "1995")[0] == 0
    assert moviedb("edit", "Alien", "--set", "rating=9", servers=[first])[0] == 0  # 2 stale
    assert moviedb("add", "Zulu", "--year", "1964", servers=[second])[0] == 0  # 2 missing
    assert moviedb("delete", "Heat", "--yes", servers=[third])[0] == 0  # 2 live, stale
    assert state_of(moviedb, "Alien") == "stale"
    code, heat = moviedb.json("get", "Heat")
    assert code == 1  # deleted: not found, shown with the stale live copies left behind
    (view,) = heat["movies"]
    assert (view["state"], view["deleted"]) == ("stale", True)

    code, synced = moviedb.json("sync")
    assert code == 0, synced
    assert synced["repaired"] == 6
    assert synced["failed"] == 0
    assert synced["conflicts"] == []
    assert sorted((w["server"], w["title"], w["deleted"]) for w in synced["plan"]) == sorted(
        [
            (second.address, "Alien", False),
            (third.address, "Alien", False),
            (first.address, "Zulu", False),
            (third.address, "Zulu", False),
            (first.address, "Heat", True),
            (second.address, "Heat", True),
        ]
    )
    assert state_of(moviedb, "Alien") == "agree"
    assert state_of(moviedb, "Zulu") == "agree"
    code, heat = moviedb.json("get", "Heat")
    assert code == 1
    assert heat["movies"] == []
    assert all(c.deleted for s in moviedb.servers for c in stored(s, "Heat"))

    code, second_sync = moviedb.json("sync")
    assert code == 0
    assert second_sync["repaired"] == 0
    assert second_sync["unchanged"] == 3
    assert second_sync["plan"] == []
    assert second_sync["compared"]["buckets_differing"] == 0


# --- 2. concurrent additions are conflicts; only resolve decides them -----------------------------


def test_independent_additions_are_a_conflict_that_sync_reports_and_never_decides(
    moviedb: Moviedb,
) -> None:
    first, second, third = moviedb.servers
    for server, director in ((first, "Tarkovsky"), (second, "Tarkovskiy")):
        add = ("add", "Solaris", "--year", "1972", "--set", f"director={director}")
        assert moviedb(*add, servers=[server])[0] == 0
    revs = {first.address: stored(first, "Solaris")[0].rev}
    revs[second.address] = stored(second, "Solaris")[0].rev

    code, got = moviedb.json("get", "Solaris")
    assert code == 0
    (view,) = got["movies"]
    assert view["state"] == "conflict"
    assert view["missing"] == [third.address]
    (director,) = [d for d in view["differences"] if d["field"] == "director"]
    assert sorted((v["value"], v["servers"]) for v in director["values"]) == [
        ("Tarkovskiy", [second.address]),
        ("Tarkovsky", [first.address]),
    ]

    code, repaired = moviedb.json("get", "Solaris", "--repair")
    assert code == 0
    assert repaired["repairs"] == []  # a conflict is never repaired

    code, found = moviedb.json("conflicts")
    assert code == 5
    assert [(c["title"], c["state"]) for c in found["conflicts"]] == [("Solaris", "conflict")]

    code, synced = moviedb.json("sync")
    assert code == 5
    assert synced["repaired"] == 0
    assert synced["plan"] == []  # not even the server that lacks it gets a branch
    assert [c["title"] for c in synced["conflicts"]] == ["Solaris"]
    code, text = moviedb("sync")
    assert code == 5
    assert "never decided" in text
    assert {s.address: [c.rev for c in stored(s, "Solaris")] for s in moviedb.servers} == {
        first.address: [revs[first.address]],
        second.address: [revs[second.address]],
        third.address: [],
    }


def conflict(moviedb: Moviedb, title: str, **fields: tuple[str, str]) -> None:
    """Add TITLE (1999) on the first server with one value of each field, on the second with
    the other."""
    first, second, _ = moviedb.servers
    for server, index in ((first, 0), (second, 1)):
        sets = [f"--set={name}={values[index]}" for name, values in fields.items()]
        code, output = moviedb("add", title, "--year", "1999", *sets, servers=[server])
        assert code == 0, output
    assert state_of(moviedb, title) == "conflict"


def assert_resolved(moviedb: Moviedb, title: str, document: dict[str, Any]) -> dict[str, Any]:
    """The resolution was stored everywhere and every server now agrees; returns the movie."""
    assert statuses(document) == ["applied"] * 3
    code, got = moviedb.json("get", title)
    assert code == 0
    (view,) = got["movies"]
    assert view["state"] == "agree"
    assert view["agree"] is True
    assert view["versions"][0]["rev"] == document["movie"]["rev"]
    return view["versions"][0]  # type: ignore[no-any-return]


def test_resolve_take_field_and_set_each_supersede_every_branch(moviedb: Moviedb) -> None:
    first, second, _ = moviedb.servers
    conflict(moviedb, "Take", director=("A", "B"), rating=("7", "8"))
    conflict(moviedb, "Field", director=("A", "B"), rating=("7", "8"))
    conflict(moviedb, "Set", director=("A", "B"))
    branches = {s.address: stored(s, "Take")[0].rev for s in (first, second)}

    code, taken = moviedb.json("resolve", "Take", "--take", second.address, "--yes")
    assert code == 0, taken
    movie = assert_resolved(moviedb, "Take", taken)
    assert (movie["director"], movie["rating"]) == ("B", 8.0)
    # It is a child of both branches: every branch is in its history.
    (copy,) = stored(first, "Take")
    assert set(branches.values()) <= set(copy.history)

    code, chosen = moviedb.json(
        "resolve",
        "Field",
        "--field",
        f"director={first.address}",
        "--field",
        f"rating={second.address}",
        "--yes",
    )
    assert code == 0, chosen
    movie = assert_resolved(moviedb, "Field", chosen)
    assert (movie["director"], movie["rating"]) == ("A", 8.0)

    code, typed = moviedb.json("resolve", "Set", "--set", "director=C", "--yes")
    assert code == 0, typed
    assert assert_resolved(moviedb, "Set", typed)["director"] == "C"

    code, found = moviedb.json("conflicts")
    assert (code, found["conflicts"]) == (0, [])
    code, synced = moviedb.json("sync")
    assert (code, synced["repaired"]) == (0, 0)


def test_resolve_refuses_undecided_fields_unconfirmed_plans_and_movies_not_in_conflict(
    moviedb: Moviedb,
) -> None:
    first, second, _ = moviedb.servers
    conflict(moviedb, "Solaris", director=("A", "B"), rating=("7", "8"))
    before = digests_of(moviedb)

    code, refused = moviedb.json("resolve", "Solaris", "--field", f"director={first.address}")
    assert code == 2
    message = refused["error"]["message"]
    assert "rating" in message
    assert "director:" not in message  # decided
    code, text = moviedb("resolve", "Solaris", "--set", "plot=x")
    assert code == 2
    assert "director" in text
    assert "rating" in text

    code, plan = moviedb.json("resolve", "Solaris", "--take", first.address)
    assert code == 2
    assert plan["written"] is False
    assert plan["movie"]["director"] == "A"
    assert plan["current"]["state"] == "conflict"
    assert "--yes" in plan["message"]
    code, text = moviedb("resolve", "Solaris", "--take", first.address)
    assert code == 2
    assert "nothing was written" in text
    assert digests_of(moviedb) == before

    assert moviedb(*ALIEN)[0] == 0
    agreed = digests_of(moviedb)
    code, refused = moviedb.json("resolve", "Alien", "--take", first.address, "--yes")
    assert code != 0
    assert "not in conflict" in refused["error"]["message"]
    assert digests_of(moviedb) == agreed
    code, refused = moviedb.json("resolve", "Nothing Like This", "--take", second.address, "--yes")
    assert code == 1


# --- 3. a delete during downtime is never undone --------------------------------------------------


@pytest.mark.fault
def test_a_delete_missed_by_a_down_server_is_spread_by_sync_and_never_resurrected(
    three_servers: list[ServerProcess], client_env: Path, tmp_path: Path
) -> None:
    third = three_servers[2]
    moviedb = Moviedb(three_servers)
    assert moviedb(*ALIEN)[0] == 0
    (old,) = stored(third, "Alien")
    assert not old.deleted

    code, plan = moviedb.json("delete", "Alien")
    assert code == 2
    assert plan["written"] is False
    assert plan["movie"]["deleted"] is True
    assert all(not c.deleted for s in three_servers for c in stored(s, "Alien"))

    third.kill()
    code, deleted = moviedb.json("delete", "Alien", "--yes")
    assert code == 4
    assert statuses(deleted) == ["applied", "applied", "unreachable"]
    code, queued = moviedb.json("pending")
    assert [(w["server"], w["title"], w["deleted"]) for w in queued["writes"]] == [
        (third.address, "Alien", True)
    ]

    # Back up, but this client's queue is not replayed: another client (another state
    # directory) sees the third server with its old, live copy.
    port = third.port
    third.restart()
    assert third.port == port
    other = Moviedb(three_servers, state=tmp_path / "other-client")
    assert [c.rev for c in stored(third, "Alien")] == [old.rev]
    code, got = other.json("get", "Alien")
    assert code == 1
    (view,) = got["movies"]
    assert (view["state"], view["deleted"]) == ("stale", True)
    assert view["versions"][1]["servers"] == [third.address]

    code, synced = other.json("sync")
    assert code == 0, synced
    assert [(w["server"], w["deleted"]) for w in synced["plan"]] == [(third.address, True)]
    assert synced["repaired"] == 1
    code, got = other.json("get", "Alien")
    assert code == 1
    assert got["movies"] == []
    assert statuses(got) == ["missing"] * 3  # tombstones only: nobody has the movie

    # The old live copy, sent again by anybody, is refused everywhere: it is stale.
    for server in three_servers:
        assert put(server, old) is WriteStatus.STALE
    assert other.json("get", "Alien")[0] == 1
    code, synced = other.json("sync")
    assert (code, synced["repaired"]) == (0, 0)

    # Added again on purpose: a child of the tombstone, accepted everywhere.
    code, added = other.json(*ALIEN)
    assert code == 0, added
    assert statuses(added) == ["applied"] * 3
    assert state_of(other, "Alien") == "agree"
    (readded,) = stored(third, "Alien")
    assert not readded.deleted
    assert old.rev in readded.history

    # The first client's queued tombstone is now superseded: replaying it deletes nothing.
    code, got = moviedb.json("get", "Alien")
    assert code == 0
    assert got["movies"][0]["state"] == "agree"
    assert moviedb.json("pending")[1]["writes"] == []


# --- 4 and 5. writes a server did not acknowledge are queued and replayed -------------------------


@pytest.mark.fault
def test_a_write_while_a_server_is_down_is_queued_and_replayed_by_the_next_command(
    three_servers: list[ServerProcess], client_env: Path
) -> None:
    second = three_servers[1]
    moviedb = Moviedb(three_servers, timeout=1.0)
    assert moviedb(*ALIEN)[0] == 0
    second.kill()

    code, edited = moviedb.json("edit", "Alien", "--set", "rating=9")
    assert code == 4
    assert statuses(edited) == ["applied", "unreachable", "applied"]
    rev = edited["movie"]["rev"]
    code, queued = moviedb.json("pending")
    assert code == 0
    assert [(s["server"], s["count"]) for s in queued["servers"]] == [(second.address, 1)]
    assert [(w["rev"], w["reason"], w["state"]) for w in queued["writes"]] == [
        (rev, "unreachable", "queued")
    ]
    code, listing = moviedb.json("serverlist")
    assert [(s["status"], s["pending"]) for s in listing["servers"]] == [
        ("up", 0),
        ("down", 1),
        ("up", 0),
    ]

    port = second.port
    second.restart()
    assert second.port == port
    code, got = moviedb.json("get", "Alien")  # any command that talks to the servers replays
    assert code == 0
    assert [c.rev for c in stored(second, "Alien")] == [rev]
    assert moviedb.json("pending")[1] == {"servers": [], "writes": [], "exit_code": 0}
    assert got["movies"][0]["state"] == "agree"


@pytest.mark.fault
def test_a_write_to_a_hung_server_is_unknown_queued_and_delivered_by_sync(
    three_servers: list[ServerProcess], client_env: Path
) -> None:
    third = three_servers[2]
    moviedb = Moviedb(three_servers, timeout=0.5)
    assert moviedb(*ALIEN)[0] == 0
    third.signal(signal.SIGSTOP)
    try:
        code, edited = moviedb.json("edit", "Alien", "--set", "rating=9")
        assert code == 4
        assert statuses(edited) == ["applied", "applied", "unknown"]
        rev = edited["movie"]["rev"]
        code, queued = moviedb.json("pending")
        assert [(w["server"], w["rev"], w["reason"]) for w in queued["writes"]] == [
            (third.address, rev, "unknown")
        ]
    finally:
        third.signal(signal.SIGCONT)

    code, synced = moviedb.json("sync")
    assert code == 0, synced
    assert synced["replayed"]["delivered"] == 1
    assert synced["replayed"]["still_queued"] == 0
    assert [c.rev for c in stored(third, "Alien")] == [rev]
    assert moviedb.json("pending")[1]["writes"] == []
    assert state_of(moviedb, "Alien") == "agree"


@pytest.mark.fault
def test_queued_writes_for_a_hung_server_never_hold_a_command_past_its_timeout(
    three_servers: list[ServerProcess], client_env: Path, figure: Callable[[str], None]
) -> None:
    """Every command first replays queued writes; for a hung server that replay goes on beside
    the command instead of before it, so the command still returns within timeout + 200 ms."""
    third = three_servers[2]
    moviedb = Moviedb(three_servers, timeout=1.0)
    assert moviedb(*ALIEN)[0] == 0
    third.signal(signal.SIGSTOP)
    try:
        took = []
        for rating in range(3, 9):  # every edit queues one more write for the hung server
            started = time.monotonic()
            code, edited = moviedb.json("edit", "Alien", "--set", f"rating={rating}")
            took.append(time.monotonic() - started)
            assert code == 4
            assert statuses(edited) == ["applied", "applied", "unknown"]
            started = time.monotonic()
            code, got = moviedb.json("get", "Alien")
            took.append(time.monotonic() - started)
            assert code == 0
            assert got["servers"][2]["status"] == "timeout"
        assert len(moviedb.json("pending")[1]["writes"]) == 1  # the newest supersedes
    finally:
        third.signal(signal.SIGCONT)
    figure(
        f"{len(took)} CLI commands with writes queued for a hung server: longest "
        f"{max(took) * 1000:.0f} ms for a 1,000 ms timeout"
    )
    assert max(took) < 1.0 + 0.2, took
    code, synced = moviedb.json("sync")
    assert code == 0, synced
    assert moviedb.json("pending")[1]["writes"] == []
    assert state_of(moviedb, "Alien") == "agree"


# --- 6 and 7. sync costs what differs; --dry-run writes nothing -----------------------------------


def requests_of_a_second_sync(moviedb: Moviedb) -> list[dict[str, int]]:
    """Requests each server served for a `sync` right after a `sync` that repaired two copies."""
    first, _, _ = moviedb.servers
    assert moviedb(*ALIEN)[0] == 0
    assert moviedb("add", "Heat", "--year", "1995", servers=[first])[0] == 0
    code, synced = moviedb.json("sync")
    assert (code, synced["repaired"]) == (0, 2)

    before = stats(moviedb.servers)
    code, synced = moviedb.json("sync")
    after = stats(moviedb.servers)
    assert (code, synced["repaired"], synced["plan"]) == (0, 0, [])
    assert synced["compared"]["buckets_differing"] == 0
    return [new_requests(b, a) for b, a in zip(before, after, strict=True)]


def test_sync_of_identical_catalogs_asks_each_server_for_its_digest_only(
    moviedb: Moviedb,
) -> None:
    """Equal digests are all that crosses the network: no listing, no fetch, no write (and no
    tombstone listing: the digest says each server holds none)."""
    assert requests_of_a_second_sync(moviedb) == [{"digest": 1}] * 3


def load_catalog(servers: list[ServerProcess], count: int) -> list[Copy]:
    """The same `count` movies on every server, written through the client library."""
    copies = [first_copy(Movie(title=f"Film {i:04d}", year=2000), now=0) for i in range(count)]

    async def write(cluster: Cluster) -> None:
        for server in cluster.servers:
            results = await cluster.put_many(server, copies)
            assert all(r.stored for r in results)

    on(servers, write)
    return copies


def test_sync_lists_only_the_differing_bucket_and_repairs_the_one_edited_copy(
    moviedb: Moviedb,
) -> None:
    first, second, third = moviedb.servers
    load_catalog(moviedb.servers, 2000)
    assert len(set(digests_of(moviedb))) == 1
    code, edited = moviedb.json("edit", "Film 1234", "--set", "rating=7", servers=[first, second])
    assert code == 0

    before = stats(moviedb.servers)
    code, synced = moviedb.json("sync")
    after = stats(moviedb.servers)
    assert code == 0, synced
    assert synced["repaired"] == 1
    assert [(w["server"], w["title"], w["rev"]) for w in synced["plan"]] == [
        (third.address, "Film 1234", edited["movie"]["rev"])
    ]
    assert synced["unchanged"] == 1999  # every other movie, those in the same bucket too
    assert synced["compared"]["buckets_differing"] == 1
    assert synced["compared"]["copies_fetched"] == 2  # the new revision and the old one
    served = [new_requests(b, a) for b, a in zip(before, after, strict=True)]
    for requests in served:
        assert requests["digest"] == 1
        assert requests["keys"] == 1, requests  # one bucket, of about two keys: one page
        assert requests.get("fetch", 0) <= 1
        assert not {"get", "list", "purge"} & requests.keys(), requests
    assert sum(r.get("fetch", 0) for r in served) == 2
    assert [r.get("put", 0) for r in served] == [0, 0, 1]
    assert len(set(digests_of(moviedb))) == 1


def test_sync_dry_run_lists_the_plan_and_writes_nothing(moviedb: Moviedb) -> None:
    first, second, third = moviedb.servers
    assert moviedb(*ALIEN)[0] == 0
    assert moviedb("edit", "Alien", "--set", "rating=9", servers=[first])[0] == 0
    assert moviedb("add", "Heat", "--year", "1995", servers=[third])[0] == 0
    before = digests_of(moviedb)
    rev = stored(first, "Alien")[0].rev

    counters = stats(moviedb.servers)
    code, planned = moviedb.json("sync", "--dry-run")
    for b, a in zip(counters, stats(moviedb.servers), strict=True):
        assert not {"put", "purge"} & new_requests(b, a).keys()
    assert code == 0
    assert planned["dry_run"] is True
    assert planned["repaired"] == 0
    assert sorted((w["server"], w["title"], w["rev"]) for w in planned["plan"]) == sorted(
        [
            (second.address, "Alien", rev),
            (third.address, "Alien", rev),
            (first.address, "Heat", stored(third, "Heat")[0].rev),
            (second.address, "Heat", stored(third, "Heat")[0].rev),
        ]
    )
    code, text = moviedb("sync", "--dry-run")
    assert "would repair 4 copies" in text
    assert digests_of(moviedb) == before
    assert [len(stored(s, "Heat")) for s in moviedb.servers] == [0, 0, 1]


# --- 8. tombstones are purged only once every server holds them -----------------------------------


@pytest.mark.fault
def test_tombstones_are_purged_only_when_every_listed_server_holds_them(
    three_servers: list[ServerProcess], client_env: Path, tmp_path: Path
) -> None:
    first, second, third = three_servers
    moviedb = Moviedb(three_servers, timeout=1.0)
    assert moviedb(*ALIEN)[0] == 0
    assert moviedb("add", "Heat", "--year", "1995")[0] == 0
    assert moviedb("delete", "Heat", "--yes")[0] == 0
    code, synced = moviedb.json("sync")  # the grace period keeps a fresh tombstone
    assert (code, synced["purged"]) == (0, 0)
    assert [len(tombstones(s)) for s in three_servers] == [1, 1, 1]

    second.kill()
    assert moviedb("delete", "Alien", "--yes")[0] == 4
    # --servers names a subset of some list: a purge needs the configured list.
    code, synced = moviedb.json("sync", "--purge-after", "0")
    assert (code, synced["purged"]) == (4, 0)
    code, synced = moviedb.configured("sync", "--purge-after", "0")
    assert code == 4
    assert synced["purged"] == 0
    assert [u["server"] for u in synced["unreachable"]] == [second.address]
    assert [len(tombstones(s)) for s in (first, third)] == [2, 2]

    # Back, without this client's queue: sync itself spreads the tombstone, then purges.
    second.restart()
    other = Moviedb(three_servers, state=tmp_path / "other-client")
    assert [c.deleted for c in stored(second, "Alien")] == [False]
    code, synced = other.configured("sync", "--purge-after", "0")
    assert code == 0, synced
    assert [(w["server"], w["title"], w["deleted"]) for w in synced["plan"]] == [
        (second.address, "Alien", True)
    ]
    assert synced["purged"] == 2
    for server in three_servers:
        assert tombstones(server) == []
        assert entries(server) == 0
    assert other.json("get", "Alien")[0] == 1
    assert other.json("get", "Heat")[0] == 1
    assert len(set(digests_of(other))) == 1


# --- 9. serverlist shows the digests --------------------------------------------------------------


def test_serverlist_shows_each_digest_and_they_are_equal_after_sync(moviedb: Moviedb) -> None:
    first, _, _ = moviedb.servers
    assert moviedb(*ALIEN, servers=[first])[0] == 0
    code, listing = moviedb.json("serverlist")
    assert code == 0
    digests = [s["digest"] for s in listing["servers"]]
    assert all(len(d) == 16 for d in digests)
    assert digests[1] == digests[2] != digests[0]
    assert listing["in_sync"] is False

    assert moviedb("sync")[0] == 0
    code, listing = moviedb.json("serverlist")
    assert len({s["digest"] for s in listing["servers"]}) == 1
    assert listing["servers"][0]["digest"] == digests[0]
    assert listing["in_sync"] is True
    code, text = moviedb("serverlist")
    assert "in sync" in text


# --- deletes that conflict ------------------------------------------------------------------------


def test_a_conflict_between_an_edit_and_a_delete_shows_and_resolves_the_fields(
    moviedb: Moviedb,
) -> None:
    first, second, _ = moviedb.servers
    assert moviedb(*ALIEN)[0] == 0
    assert moviedb("edit", "Alien", "--set", "rating=9", servers=[first])[0] == 0
    assert moviedb("delete", "Alien", "--yes", servers=[second])[0] == 0
    code, got = moviedb.json("get", "Alien")
    (view,) = got["movies"]
    assert view["state"] == "conflict"
    # Only what really differs: the delete, and the rating (the tombstone keeps its last record).
    assert [d["field"] for d in view["differences"]] == ["deleted", "rating"]

    # Undecided: both fields are named, and nothing else.
    code, refused = moviedb.json("resolve", "Alien", "--set", "rating=9", "--yes")
    assert code == 2
    assert "deleted" in refused["error"]["message"]
    code, written = moviedb.json(
        "resolve", "Alien", "--set", "rating=9", "--set", "deleted=false", "--yes"
    )
    assert code == 0, written
    code, got = moviedb.json("get", "Alien")
    (view,) = got["movies"]
    assert (view["state"], view["agree"], view["versions"][0]["rating"]) == ("agree", True, 9.0)
    assert not view["deleted"]


def test_add_after_two_independent_deletes_supersedes_both(moviedb: Moviedb) -> None:
    first, second, _ = moviedb.servers
    assert moviedb(*ALIEN, servers=[first, second])[0] == 0
    assert moviedb("edit", "Alien", "--set", "rating=9", servers=[first])[0] == 0
    assert moviedb("delete", "Alien", "--yes", servers=[first])[0] == 0
    assert moviedb("delete", "Alien", "--yes", servers=[second])[0] == 0
    code, _ = moviedb.json("get", "Alien")
    assert code == 1  # deleted everywhere it is held, in two concurrent tombstones
    code, added = moviedb.json(*ALIEN)
    assert code == 0, added
    assert [s["status"] for s in added["servers"]] == ["applied"] * 3
    code, got = moviedb.json("get", "Alien")
    assert (code, got["movies"][0]["agree"]) == (0, True)


def test_a_write_every_server_refuses_exits_5_not_3() -> None:
    """Refusals are answers (each server holds a version this one does not beat): exit 5, not
    3 (no server reachable)."""
    servers = [Address("127.0.0.1", 7001), Address("127.0.0.1", 7002)]
    old = first_copy(Movie(title="Alien", year=1979))
    refused = [WriteResult(s, WriteStatus.STALE) for s in servers]
    assert WriteOutcome("add", old, refused).exit_code == 5
    down = [WriteResult(s, WriteStatus.UNREACHABLE) for s in servers]
    assert WriteOutcome("add", old, down).exit_code == 3
    mixed = [WriteResult(servers[0], WriteStatus.APPLIED), refused[1]]
    assert WriteOutcome("add", old, mixed).exit_code == 4
