"""Finding what differs between servers, at a cost that grows with the difference, and planning
the writes that make them agree.

`diff` compares catalog digests first (one small reply per server), then bucket digests, then the
keys of the buckets that differ, and fetches only the copies whose revisions differ. `plan` is
pure: per movie, the newest copy goes to every server holding an older one or none; concurrent
copies are reported as conflicts and never decided.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from moviedb import digests
from moviedb.client.address import Address
from moviedb.client.cluster import Cluster, ReadResult, ReadStatus
from moviedb.client.reconcile import MovieView
from moviedb.errors import ServerUnavailable
from moviedb.protocol import DigestResult
from moviedb.versions import Copy

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class Difference:
    """What `diff` found: each differing movie's copies, and how much was compared."""

    results: list[ReadResult]  # one per answering server: its copies of the differing keys
    unreachable: dict[Address, str] = field(default_factory=dict)
    entries: dict[Address, int] = field(default_factory=dict)  # copies each server stores
    catalog_digests: dict[Address, str] = field(default_factory=dict)  # each server's digest
    buckets_compared: int = 0
    buckets_differing: int = 0
    keys_listed: int = 0
    copies_fetched: int = 0
    agreeing_entries: int = 0  # copies whose revision is the same everywhere (per server)
    uncompared: int = 0  # differing keys left out: a copy changed or failed while being read
    tombstones: dict[Address, int] = field(default_factory=dict)  # each server's deleted movies


@dataclass(frozen=True)
class Plan:
    writes: dict[Address, list[Copy]]  # what each server is sent, in key order
    conflicts: list[MovieView]
    unchanged: int  # movies that need nothing

    @property
    def total_writes(self) -> int:
        return sum(len(w) for w in self.writes.values())


def plan(views: Iterable[MovieView], *, unchanged: int = 0) -> Plan:
    """The newest copy of each movie to every server that holds an older copy or none."""
    writes: dict[Address, list[Copy]] = {}
    conflicts: list[MovieView] = []
    for view in views:
        newest = view.newest
        if newest is None:
            conflicts.append(view)
            continue
        targets = [s for g in view.groups if g.copy.rev != newest.rev for s in g.servers]
        targets += view.missing
        if not targets:
            unchanged += 1
        for server in targets:
            writes.setdefault(server, []).append(newest)
    return Plan(writes, conflicts, unchanged)


async def diff(
    cluster: Cluster, servers: Sequence[Address] | None = None, progress: Progress | None = None
) -> Difference:
    """The copies of every movie whose revision differs between the reachable servers."""
    servers = list(servers or cluster.servers)
    digested = await cluster.digest()
    found: dict[Address, DigestResult] = {}
    unreachable: dict[Address, str] = {}
    for server in servers:
        reply = digested[server]
        if isinstance(reply, str):
            unreachable[server] = reply
        else:
            found[server] = reply
    result = Difference(
        [],
        unreachable,
        {s: d.entries for s, d in found.items()},
        catalog_digests={s: d.digest for s, d in found.items()},
        tombstones={s: d.tombstones for s, d in found.items()},
    )
    if not found:
        return result
    if len({d.digest for d in found.values()}) == 1:
        result.results = [ReadResult(s, ReadStatus.MISSING) for s in found]
        result.agreeing_entries = next(iter(found.values())).entries
        return result
    bucket_lists = [[digests.from_hex(b) for b in d.buckets] for d in found.values()]
    differing = [
        b for b, values in enumerate(zip(*bucket_lists, strict=True)) if len(set(values)) > 1
    ]
    result.buckets_compared = digests.BUCKETS
    result.buckets_differing = len(differing)

    # Keys and revisions of the differing buckets, from every server (pipelined).
    listed: dict[Address, dict[str, str]] = {s: {} for s in found}
    tasks = [(s, b) for s in found for b in differing]
    done = 0

    async def list_one(server: Address, bucket: int) -> None:
        nonlocal done
        try:
            keys = await cluster.bucket_keys(server, bucket)
        except ServerUnavailable as exc:
            unreachable.setdefault(server, str(exc))
            return
        listed[server].update(keys)
        done += 1
        if progress:
            progress("compare", done, len(tasks))

    await _bounded(list_one(s, b) for s, b in tasks)
    answering = [s for s in found if s not in unreachable]
    result.keys_listed = sum(len(listed[s]) for s in answering)

    # Keys whose revisions differ (or that some server lacks); each distinct revision is
    # fetched from one server that listed it, and from the next holder if that fetch fails.
    all_keys = sorted({k for s in answering for k in listed[s]})
    holders: dict[tuple[str, str], list[Address]] = {}
    differing_keys: list[str] = []
    for key in all_keys:
        revs = {s: listed[s].get(key) for s in answering}
        if len(set(revs.values())) == 1:
            continue
        differing_keys.append(key)
        for server, rev in revs.items():
            if rev is not None:
                holders.setdefault((key, rev), []).append(server)
    fetched: dict[tuple[str, str], Copy] = {}
    failed: set[Address] = set()
    tried: dict[tuple[str, str], int] = {}
    while True:
        wanted: dict[Address, list[str]] = {}
        for (key, rev), servers in holders.items():
            if (key, rev) in fetched:
                continue
            candidates = [s for s in servers if s not in failed]
            index = tried.get((key, rev), 0)
            if index >= len(candidates):
                continue
            tried[(key, rev)] = index + 1
            wanted.setdefault(candidates[index], []).append(key)
        if not wanted:
            break

        async def fetch_one(server: Address, keys: list[str]) -> None:
            try:
                copies = await cluster.fetch(server, keys)
            except ServerUnavailable as exc:
                unreachable.setdefault(server, str(exc))
                failed.add(server)
                return
            for copy in copies:
                fetched[(copy.key, copy.rev)] = copy

        await asyncio.gather(*(fetch_one(s, keys) for s, keys in wanted.items()))
    result.copies_fetched = len(fetched)
    answering = [s for s in answering if s not in unreachable]
    if answering:
        # Copies that agree everywhere: those outside the differing buckets and those inside
        # them whose revision is the same on every server.
        first = listed[answering[0]]
        held = sum(key in first for key in differing_keys)
        result.agreeing_entries = found[answering[0]].entries - held
    # A key is compared only if every listed revision was fetched: a server whose copy could
    # not be read (it failed, or the key changed between listing and fetching) is never taken
    # to lack the movie. Such keys are left for the next sync.
    compared = [
        key
        for key in differing_keys
        if all(listed[s].get(key) is None or (key, listed[s][key]) in fetched for s in answering)
    ]
    result.uncompared = len(differing_keys) - len(compared)
    for server in answering:
        copies = []
        for key in compared:
            rev = listed[server].get(key)
            if rev is not None:
                copies.append(fetched[(key, rev)])
        status = ReadStatus.FOUND if copies else ReadStatus.MISSING
        result.results.append(ReadResult(server, status, copies))
    return result


async def _bounded(coroutines: Iterable[Coroutine[Any, Any, None]], limit: int = 256) -> None:
    gate = asyncio.Semaphore(limit)

    async def run(coroutine: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await coroutine

    await asyncio.gather(*(run(c) for c in coroutines))
