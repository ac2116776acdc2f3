"""One function per command: talks to the client library and returns data (never prints).

The one-shot CLI and the interactive shell both call these, so every command has exactly one
implementation. Each outcome carries the process exit code documented in the README.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import Cluster, ReadResult, ServerInfo, WriteResult
from moviedb.client.config import Config, save
from moviedb.client.reconcile import FieldDiff, Group, MovieView, field_differences, reconcile
from moviedb.errors import ServerUnavailable
from moviedb.model import ExtraValue, Movie, key_of, validate, with_changes
from moviedb.versions import Copy, child, first_copy

# Exit codes (README, "Exit codes").
OK = 0
NOT_FOUND = 1
USAGE = 2
NO_SERVER = 3
PARTIAL_WRITE = 4
REFUSED = 5  # a conflict, or a change that needs --yes: nothing was written


class CommandError(Exception):
    """A command cannot run as asked; the message says why and what is accepted."""

    def __init__(self, message: str, exit_code: int = USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- get ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GetOutcome:
    title: str
    year: int | None
    results: list[ReadResult]
    movies: list[MovieView]  # the movies some server holds undeleted

    @property
    def exit_code(self) -> int:
        if not any(r.answered for r in self.results):
            return NO_SERVER
        return OK if self.movies else NOT_FOUND


async def get(cluster: Cluster, title: str, year: int | None = None) -> GetOutcome:
    _require_title(title)
    results = await cluster.get(title, year)
    views = [v for v in reconcile(results) if v.live]
    return GetOutcome(title, year, results, views)


def _require_title(title: str) -> None:
    if not title.strip():
        raise CommandError("title: must not be empty")


# --- writes: add and edit -------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteOutcome:
    action: str  # "add" or "edit"
    copy: Copy | None  # what was written (None when nothing was)
    results: list[WriteResult]
    message: str = ""
    differences: list[FieldDiff] = field(default_factory=list)
    refused: bool = False  # nothing written: a conflict, or a change that needs --yes

    @property
    def exit_code(self) -> int:
        if self.refused:
            return REFUSED
        if not self.results:
            return OK
        stored = sum(r.stored for r in self.results)
        if stored == len(self.results):
            return OK
        return PARTIAL_WRITE if stored else NO_SERVER


async def _read_key(cluster: Cluster, movie: Movie) -> tuple[list[ReadResult], MovieView | None]:
    results = await cluster.get(movie.title, movie.year)
    if not any(r.answered for r in results):
        raise CommandError("no server answered; nothing was written", NO_SERVER)
    key = key_of(movie)
    exact = [
        ReadResult(r.server, r.status, [c for c in r.copies if c.key == key], r.error, r.latency)
        for r in results
    ]
    views = reconcile(exact)
    return exact, views[0] if views else None


def _conflict_message(view: MovieView) -> str:
    holders = "; ".join(f"{', '.join(map(str, g.servers))} hold {g.copy.rev}" for g in view.groups)
    return (
        f"{view.title} ({view.year or 'no year'}) has concurrent versions ({holders}); "
        "nothing was written"
    )


async def _write_everywhere(cluster: Cluster, copy: Copy) -> list[WriteResult]:
    return await cluster.put({address: copy for address in cluster.servers})


async def add(cluster: Cluster, movie: Movie, *, yes: bool = False) -> WriteOutcome:
    """Add to every server that lacks it; a different existing record is kept unless `yes`."""
    movie = validate(movie)
    _, view = await _read_key(cluster, movie)
    now = time.time()
    if view is None or not view.live:
        # Nowhere, or deleted: a fresh copy (a child of the tombstone, so it supersedes it).
        base = view.newest if view is not None else None
        copy = child([base], movie, now=now) if base is not None else first_copy(movie, now=now)
        return WriteOutcome("add", copy, await _write_everywhere(cluster, copy))
    current = view.newest
    if current is None:
        return WriteOutcome("add", None, [], _conflict_message(view), refused=True)
    if current.movie == movie and not current.deleted:
        # Already known with this information: bring the servers that lack it up to date.
        return WriteOutcome("add", current, await _write_everywhere(cluster, current))
    proposed = Group(child([current], movie, now=now), [])
    differences = field_differences([Group(current, _holders(view, current)), proposed])
    if not yes:
        message = (
            f"{movie.title} ({movie.year or 'no year'}) exists with different information; "
            "nothing was written (confirm with --yes to overwrite)"
        )
        return WriteOutcome("add", None, [], message, differences, refused=True)
    return WriteOutcome(
        "add", proposed.copy, await _write_everywhere(cluster, proposed.copy), "", differences
    )


def _holders(view: MovieView, copy: Copy) -> list[Address]:
    return [s for g in view.groups if g.copy.rev == copy.rev for s in g.servers]


async def edit(
    cluster: Cluster,
    title: str,
    year: int | None,
    changes: dict[str, ExtraValue | list[str] | None],
    unset: Sequence[str] = (),
) -> WriteOutcome:
    """Apply changes to the newest copy and write it everywhere: updated where present,
    added where missing."""
    _require_title(title)
    if not changes and not unset:
        raise CommandError("edit needs at least one --set FIELD=VALUE or --unset FIELD")
    results = await cluster.get(title, year)
    if not any(r.answered for r in results):
        raise CommandError("no server answered; nothing was written", NO_SERVER)
    views = [v for v in reconcile(results) if v.live]
    if not views:
        raise CommandError(f"no movie titled {title!r} on any reachable server", NOT_FOUND)
    if len(views) > 1:
        years = ", ".join(str(v.year or "no year") for v in views)
        raise CommandError(f"{len(views)} movies are titled {title!r} ({years}); add --year")
    view = views[0]
    current = view.newest
    if current is None:
        return WriteOutcome("edit", None, [], _conflict_message(view), refused=True)
    changed = with_changes(current.movie, changes, list(unset))
    if key_of(changed) != current.key:
        raise CommandError(
            "title and year identify a movie and edit keeps them (a change of case or "
            "punctuation is fine); to rename, add the new movie and delete the old one"
        )
    copy = current if changed == current.movie else child([current], changed, now=time.time())
    differences = field_differences([Group(current, _holders(view, current)), Group(copy, [])])
    return WriteOutcome("edit", copy, await _write_everywhere(cluster, copy), "", differences)


# --- all ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogRow:
    key: str
    title: str
    year: int | None
    servers: list[Address]  # servers holding it undeleted
    agree: bool  # every server that listed its catalog holds the very same revision


@dataclass
class CatalogScan:
    """Filled in while `all` streams: servers that could not be listed, rows produced."""

    unreachable: dict[Address, str] = field(default_factory=dict)
    rows: int = 0


class _Cursor:
    """One server's catalog, read page by page in key order."""

    def __init__(self, cluster: Cluster, server: Address, page_size: int) -> None:
        self.cluster, self.server, self.page_size = cluster, server, page_size
        self.buffer: list[Copy] = []
        self.after: str | None = None
        self.done = False

    async def refill(self) -> None:
        page = await self.cluster.list_page(self.server, self.after, self.page_size)
        self.buffer = list(reversed(page.copies))  # pop() from the end = smallest key first
        self.after = page.next
        self.done = page.next is None


async def catalog(
    cluster: Cluster, scan: CatalogScan, *, limit: int | None = None, page_size: int = 500
) -> AsyncIterator[CatalogRow]:
    """The union of every server's catalog in key order, merged as it streams (memory is one
    page per server)."""
    cursors = [_Cursor(cluster, s, page_size) for s in cluster.servers]
    active = list(cursors)
    heap: list[tuple[str, int]] = []

    async def refill(batch: list[_Cursor]) -> None:
        async def one(cursor: _Cursor) -> None:
            try:
                await cursor.refill()
            except ServerUnavailable as exc:
                scan.unreachable[cursor.server] = str(exc)
                active.remove(cursor)
                return
            if cursor.buffer:
                heapq.heappush(heap, (cursor.buffer[-1].key, cursors.index(cursor)))

        await asyncio.gather(*(one(c) for c in batch))

    await refill(active)
    while heap and (limit is None or scan.rows < limit):
        key = heap[0][0]
        copies: dict[Address, Copy] = {}
        empty: list[_Cursor] = []
        while heap and heap[0][0] == key:
            _, index = heapq.heappop(heap)
            cursor = cursors[index]
            copies[cursor.server] = cursor.buffer.pop()
            if cursor.buffer:
                heapq.heappush(heap, (cursor.buffer[-1].key, index))
            elif not cursor.done:
                empty.append(cursor)
        if empty:
            await refill([c for c in empty if c in active])
        live = [s for s, c in copies.items() if not c.deleted]
        if not live:
            continue
        revs = {c.rev for c in copies.values()}
        agree = len(revs) == 1 and all(c.server in copies for c in active)
        movie = copies[live[0]].movie
        scan.rows += 1
        yield CatalogRow(key, movie.title, movie.year, live, agree)


# --- servers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerListOutcome:
    servers: list[ServerInfo]

    @property
    def exit_code(self) -> int:
        if self.servers and not any(s.up for s in self.servers):
            return NO_SERVER
        return OK


async def serverlist(cluster: Cluster) -> ServerListOutcome:
    return ServerListOutcome(await cluster.hello())


@dataclass(frozen=True)
class ConfigChange:
    action: str  # "addserver" or "deleteserver"
    server: Address
    changed: bool
    config: Config
    probe: ServerInfo | None = None  # addserver asks the new server who it is
    exit_code: int = OK


async def addserver(config: Config, text: str, *, timeout: float) -> ConfigChange:
    address = parse_address(text)
    changed = config.add_server(address)
    if changed:
        save(config)
    async with Cluster([address], timeout=timeout) as probe_cluster:
        (probe,) = await probe_cluster.hello()
    return ConfigChange("addserver", address, changed, config, probe)


def deleteserver(config: Config, text: str) -> ConfigChange:
    address = parse_address(text)
    if not config.remove_server(address):
        known = ", ".join(map(str, config.servers)) or "none"
        raise CommandError(f"{address} is not in the server list (listed: {known})")
    save(config)
    return ConfigChange("deleteserver", address, True, config)


def movie_from_args(
    title: str, year: int | None, changes: dict[str, ExtraValue | list[str] | None]
) -> Movie:
    """The record `add TITLE --year Y --set F=V ...` describes, validated."""
    if "title" in changes or "year" in changes:
        raise CommandError("give title and year as TITLE and --year, not with --set")
    base = Movie(title=title, year=year)
    return with_changes(base, changes, [])
