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
from moviedb.client.cluster import Cluster, ReadResult, ServerInfo, WriteResult, WriteStatus
from moviedb.client.config import Config, save
from moviedb.client.queue import (
    PendingSummary,
    QueuedWrite,
    ReplayReport,
    WriteQueue,
    needs_queueing,
    replay,
)
from moviedb.client.reconcile import FieldDiff, Group, MovieView, field_differences, reconcile
from moviedb.client.security import ServerSecurity
from moviedb.client.sync import Difference, Plan, Progress, diff, plan
from moviedb.errors import ServerUnavailable

# Exit codes (README, "Exit codes"), CommandError and get live apart (see exits.py, reads.py)
# and are re-exported here, where the CLI and the shell find every command.
from moviedb.exits import NO_SERVER as NO_SERVER
from moviedb.exits import NOT_FOUND as NOT_FOUND
from moviedb.exits import OK as OK
from moviedb.exits import PARTIAL_WRITE as PARTIAL_WRITE
from moviedb.exits import REFUSED as REFUSED
from moviedb.exits import USAGE as USAGE
from moviedb.exits import CommandError as CommandError
from moviedb.model import (
    KNOWN_FIELDS,
    ExtraValue,
    Movie,
    field_values,
    key_of,
    validate,
    with_changes,
)
from moviedb.reads import GetOutcome as GetOutcome
from moviedb.reads import Repair as Repair
from moviedb.reads import get as get
from moviedb.reads import require_title
from moviedb.versions import Copy, child, first_copy

EXPORT_FORMATS = ("json", "ndjson", "csv")  # data_commands.export; here so the CLI need not
# import the data commands to list them


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
        if stored:
            return PARTIAL_WRITE
        refused = (WriteStatus.STALE, WriteStatus.CONFLICT)
        if all(r.status in refused for r in self.results):
            return REFUSED  # every server answered, and each holds a version this does not beat
        return NO_SERVER


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


async def queue_unacknowledged(
    queue: WriteQueue | None,
    copies: dict[Address, Copy],
    results: Sequence[WriteResult],
    *,
    now: float,
) -> None:
    """Keep every write a server did not acknowledge (and may accept later) in the durable
    queue, for replay. The queue's commit waits for an fsync: it runs off the event loop."""
    if queue is None:
        return
    pending = [
        (r.server, copies[r.server], r.status.value, r.error) for r in results if needs_queueing(r)
    ]
    if pending:
        await asyncio.to_thread(queue.add_many, pending, now=now)


async def _write_everywhere(
    cluster: Cluster, copy: Copy, queue: WriteQueue | None = None
) -> list[WriteResult]:
    copies = {address: copy for address in cluster.servers}
    results = await cluster.put(copies)
    await queue_unacknowledged(queue, copies, results, now=cluster.clock())
    return results


async def add(
    cluster: Cluster, movie: Movie, *, yes: bool = False, queue: WriteQueue | None = None
) -> WriteOutcome:
    """Add to every server that lacks it; a different existing record is kept unless `yes`."""
    movie = validate(movie)
    _, view = await _read_key(cluster, movie)
    now = cluster.clock()
    current = view.newest if view is not None else None
    if view is None or not view.live or (current is not None and current.deleted):
        # Nowhere, or deleted: a fresh copy. After a delete it is a child of the tombstone, so
        # it supersedes the delete on purpose, where an old copy coming back could not.
        # Deletes made independently conflict with each other: the re-add supersedes them all.
        parents = (
            []
            if view is None
            else [current]
            if current is not None
            else [g.copy for g in view.groups]
        )
        copy = child(parents, movie, now=now) if parents else first_copy(movie, now=now)
        return WriteOutcome("add", copy, await _write_everywhere(cluster, copy, queue))
    if current is None:
        return WriteOutcome("add", None, [], _conflict_message(view), refused=True)
    if current.movie == movie and not current.deleted:
        # Already known with this information: bring the servers that lack it up to date.
        return WriteOutcome("add", current, await _write_everywhere(cluster, current, queue))
    proposed = Group(child([current], movie, now=now), [])
    differences = field_differences([Group(current, _holders(view, current)), proposed])
    if not yes:
        message = (
            f"{movie.title} ({movie.year or 'no year'}) exists with different information; "
            "nothing was written (confirm with --yes to overwrite)"
        )
        return WriteOutcome("add", None, [], message, differences, refused=True)
    written = await _write_everywhere(cluster, proposed.copy, queue)
    return WriteOutcome("add", proposed.copy, written, "", differences)


def _holders(view: MovieView, copy: Copy) -> list[Address]:
    return [s for g in view.groups if g.copy.rev == copy.rev for s in g.servers]


async def edit(
    cluster: Cluster,
    title: str,
    year: int | None,
    changes: dict[str, ExtraValue | list[str] | None],
    unset: Sequence[str] = (),
    *,
    queue: WriteQueue | None = None,
) -> WriteOutcome:
    """Apply changes to the newest copy and write it everywhere: updated where present,
    added where missing."""
    require_title(title)
    if not changes and not unset:
        raise CommandError("edit needs at least one --set FIELD=VALUE or --unset FIELD")
    results = await cluster.get(title, year)
    if not any(r.answered for r in results):
        raise CommandError("no server answered; nothing was written", NO_SERVER)
    view = _one_movie(results, title)
    current = view.newest
    if current is None:
        return WriteOutcome("edit", None, [], _conflict_message(view), refused=True)
    changed = with_changes(current.movie, changes, list(unset))
    if key_of(changed) != current.key:
        raise CommandError(
            "title and year identify a movie and edit keeps them (a change of case or "
            "punctuation is fine); to rename, add the new movie and delete the old one"
        )
    copy = current if changed == current.movie else child([current], changed, now=cluster.clock())
    differences = field_differences([Group(current, _holders(view, current)), Group(copy, [])])
    written = await _write_everywhere(cluster, copy, queue)
    return WriteOutcome("edit", copy, written, "", differences)


def _one_movie(results: list[ReadResult], title: str) -> MovieView:
    """The one live movie the results hold, or a CommandError saying why there is not one."""
    return _only(title, [v for v in reconcile(results) if v.live and not v.deleted])


def _only(title: str, views: list[MovieView]) -> MovieView:
    """The one movie of `views`, or a CommandError: none found, or several years to pick from."""
    if not views:
        raise CommandError(f"no movie titled {title!r} on any reachable server", NOT_FOUND)
    if len(views) > 1:
        years = ", ".join(str(v.year or "no year") for v in views)
        raise CommandError(f"{len(views)} movies are titled {title!r} ({years}); add --year")
    return views[0]


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
    listed: list[Address] = field(default_factory=list)  # servers still being listed


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


async def merged_copies(
    cluster: Cluster, scan: CatalogScan, *, page_size: int = 500
) -> AsyncIterator[tuple[str, dict[Address, Copy]]]:
    """Every key any server stores (tombstones too) with each server's copy, in key order,
    merged as the servers' catalogs stream (memory is one page per server)."""
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
    while heap:
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
        scan.listed = [c.server for c in active]
        yield key, copies


async def catalog(
    cluster: Cluster, scan: CatalogScan, *, limit: int | None = None, page_size: int = 500
) -> AsyncIterator[CatalogRow]:
    """The union of every server's catalog in key order (live movies only)."""
    async for key, copies in merged_copies(cluster, scan, page_size=page_size):
        if limit is not None and scan.rows >= limit:
            return
        live = [s for s, c in copies.items() if not c.deleted]
        if not live:
            continue
        revs = {c.rev for c in copies.values()}
        agree = len(revs) == 1 and all(s in copies for s in scan.listed)
        movie = copies[live[0]].movie
        scan.rows += 1
        yield CatalogRow(key, movie.title, movie.year, live, agree)


# --- servers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerListOutcome:
    servers: list[ServerInfo]
    pending: dict[Address, PendingSummary] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.servers and not any(s.up for s in self.servers):
            return NO_SERVER
        return OK

    @property
    def in_sync(self) -> bool | None:
        """Every server answered with the same catalog digest (None: fewer than two answered)."""
        digests = {s.digest for s in self.servers if s.up}
        if sum(s.up for s in self.servers) < 2:
            return None
        return len(digests) == 1 and all(s.up for s in self.servers)


async def serverlist(cluster: Cluster, queue: WriteQueue | None = None) -> ServerListOutcome:
    pending = await asyncio.to_thread(queue.summary) if queue is not None else {}
    return ServerListOutcome(await cluster.hello(), pending)


@dataclass(frozen=True)
class ConfigChange:
    action: str  # "addserver" or "deleteserver"
    server: Address
    changed: bool
    config: Config
    probe: ServerInfo | None = None  # addserver asks the new server who it is
    exit_code: int = OK
    updated: bool = False  # a listed server's token or TLS settings changed


async def addserver(
    config: Config, text: str, *, timeout: float, security: ServerSecurity | None = None
) -> ConfigChange:
    """Add a server (or change its token and TLS settings) and ask it who it is."""
    address = parse_address(text)
    listed = address in config.servers
    changed = config.add_server(address, security)
    if changed:
        save(config)
    async with Cluster([address], timeout=timeout, security=config.security) as probe_cluster:
        (probe,) = await probe_cluster.hello()
    return ConfigChange("addserver", address, changed, config, probe, updated=listed and changed)


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


# --- the durable queue of unacknowledged writes ---------------------------------------------------

REPLAY_BUDGET = 0.5  # seconds one replay of queued writes may take (beside a command: session.py)


async def replay_pending(
    cluster: Cluster, queue: WriteQueue, *, budget: float = REPLAY_BUDGET
) -> ReplayReport | None:
    """Deliver queued writes to the servers that answer again, within `budget` seconds.

    A write cut off by the budget stays queued (its outcome is unknown; replay is idempotent).
    """
    servers = [s for s in await asyncio.to_thread(queue.summary) if s in cluster.servers]
    if not servers:
        return None
    try:
        return await asyncio.wait_for(
            replay(queue, cluster, servers=servers, budget=budget, now=cluster.clock()),
            timeout=budget + 0.2,
        )
    except TimeoutError:
        return None


@dataclass(frozen=True)
class PendingOutcome:
    summary: dict[Address, PendingSummary]
    entries: list[QueuedWrite]
    now: float
    exit_code: int = OK


def pending(queue: WriteQueue, *, limit: int = 50) -> PendingOutcome:
    return PendingOutcome(queue.summary(), queue.entries(limit=limit), time.time())


# --- sync and conflicts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncOutcome:
    dry_run: bool
    plan: Plan
    results: dict[Address, list[WriteResult]]  # per server, in the plan's order (empty: dry run)
    unreachable: dict[Address, str]
    difference: Difference | None  # how much was compared (None for `sync TITLE`)
    replayed: ReplayReport | None = None
    purged: int = 0  # tombstones removed because every listed server held them

    @property
    def repaired(self) -> int:
        return sum(r.stored for results in self.results.values() for r in results)

    @property
    def failed(self) -> int:
        return sum(not r.stored for results in self.results.values() for r in results)

    @property
    def exit_code(self) -> int:
        if self.difference is not None and not self.difference.results:
            return NO_SERVER
        if self.unreachable or self.failed:
            return PARTIAL_WRITE
        if self.plan.conflicts:
            return REFUSED
        return OK


TOMBSTONE_GRACE_DAYS = 7.0


async def sync(
    cluster: Cluster,
    title: str | None = None,
    year: int | None = None,
    *,
    dry_run: bool = False,
    queue: WriteQueue | None = None,
    progress: Progress | None = None,
    purge_after_days: float | None = TOMBSTONE_GRACE_DAYS,
) -> SyncOutcome:
    """Bring every reachable server up to date: the newest version of each movie (tombstones
    too) to every server holding an older one or none. Conflicts are listed, never decided."""
    replayed = None
    if queue is not None and not dry_run:
        servers = [s for s in await asyncio.to_thread(queue.summary) if s in cluster.servers]
        if servers:
            replayed = await replay(
                queue, cluster, servers=servers, budget=60.0, now=cluster.clock()
            )
    difference: Difference | None = None
    if title is not None:
        require_title(title)
        results = await cluster.get(title, year)
        answered = [r for r in results if r.answered]
        if not answered:
            raise CommandError("no server answered; nothing was synced", NO_SERVER)
        unreachable = {r.server: r.error or r.status.value for r in results if not r.answered}
        the_plan = plan(reconcile(answered))
    else:
        difference = await diff(cluster, progress=progress)
        unreachable = dict(difference.unreachable)
        the_plan = plan(reconcile(difference.results), unchanged=difference.agreeing_entries)
    if dry_run:
        return SyncOutcome(True, the_plan, {}, unreachable, difference, replayed)
    results_by_server: dict[Address, list[WriteResult]] = {}
    total = the_plan.total_writes
    done = 0

    async def write_to(server: Address, copies: list[Copy]) -> None:
        nonlocal done
        results = await cluster.put_many(server, copies)
        results_by_server[server] = results
        if queue is not None:
            pending = [
                (server, copy, result.status.value, result.error)
                for copy, result in zip(copies, results, strict=True)
                if needs_queueing(result)
            ]
            if pending:
                await asyncio.to_thread(queue.add_many, pending, now=cluster.clock())
        done += len(copies)
        if progress:
            progress("write", done, total)

    await asyncio.gather(*(write_to(s, c) for s, c in the_plan.writes.items()))
    ordered = {s: results_by_server[s] for s in the_plan.writes}
    outcome = SyncOutcome(False, the_plan, ordered, unreachable, difference, replayed)
    purged = 0
    if difference is not None and purge_after_days is not None and not outcome.exit_code:
        purged = await _purge_tombstones(
            cluster, purge_after_days * 86400, difference, wrote=bool(the_plan.writes)
        )
    return SyncOutcome(False, the_plan, ordered, unreachable, difference, replayed, purged)


async def _purge_tombstones(
    cluster: Cluster, min_age: float, compared: Difference, *, wrote: bool
) -> int:
    """Remove tombstones once every listed server holds them and each has held them for
    `min_age` seconds by its own clock (a client's clock never decides).

    Only when every listed server reports the same catalog digest: then each holds the very
    same tombstones. A server where a tombstone is younger keeps it, and the next sync spreads
    it back to the others: a partial purge never lets the movie return.
    """
    first = cluster.servers[0]
    if wrote:  # the comparison's digests are out of date: ask again (cheaply)
        infos = await cluster.hello()
        if not all(i.up for i in infos) or len({i.digest for i in infos}) != 1:
            return 0
        tombstones = infos[0].tombstones
    else:
        held = compared.catalog_digests
        if len(held) != len(cluster.servers) or len(set(held.values())) != 1:
            return 0
        tombstones = compared.tombstones.get(first, 0)
    if not tombstones:
        return 0
    purged = 0
    try:
        async for copy in cluster.scan(first, tombstones=True):
            outcomes = await asyncio.gather(
                *(cluster.purge(s, copy.key, copy.rev, min_age=min_age) for s in cluster.servers),
                return_exceptions=True,
            )
            purged += all(o is True for o in outcomes)
    except ServerUnavailable:
        pass  # the rest waits for the next sync
    return purged


@dataclass(frozen=True)
class ConflictsOutcome:
    conflicts: list[MovieView]
    unreachable: dict[Address, str]
    answered: int

    @property
    def exit_code(self) -> int:
        if not self.answered:
            return NO_SERVER
        return REFUSED if self.conflicts else OK


async def conflicts(cluster: Cluster, progress: Progress | None = None) -> ConflictsOutcome:
    """Every movie whose reachable copies are concurrent versions (found the way sync finds
    differences: digests, then differing buckets, then differing keys)."""
    difference = await diff(cluster, progress=progress)
    found = [v for v in reconcile(difference.results) if v.state == "conflict"]
    return ConflictsOutcome(found, dict(difference.unreachable), len(difference.results))


# --- resolve and delete: a plan first, written once confirmed -------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A write that needs confirmation: what it replaces, what it writes, how they differ."""

    action: str  # "resolve" or "delete"
    view: MovieView
    copy: Copy  # the resolution or the tombstone; supersedes every copy the servers hold
    differences: list[FieldDiff]  # per field: each current value with its holders, then the new
    exit_code: int = USAGE  # shown without --yes: nothing written


async def _read_one(cluster: Cluster, title: str, year: int | None) -> MovieView:
    require_title(title)
    results = await cluster.get(title, year)
    if not any(r.answered for r in results):
        raise CommandError("no server answered; nothing was written", NO_SERVER)
    return _only(title, [v for v in reconcile(results) if v.live or v.state == "conflict"])


async def conflict_view(cluster: Cluster, title: str, year: int | None) -> MovieView:
    """The movie in conflict, or a CommandError saying it is not."""
    view = await _read_one(cluster, title, year)
    if view.state != "conflict":
        raise CommandError(
            f"{view.title} ({view.year or 'no year'}) is not in conflict (state: {view.state}); "
            + ("`sync` repairs stale copies" if view.state == "stale" else "nothing to resolve"),
            NOT_FOUND,
        )
    return view


def _holder_copy(view: MovieView, server: Address) -> Copy:
    for group in view.groups:
        if server in group.servers:
            return group.copy
    holders = ", ".join(str(s) for g in view.groups for s in g.servers)
    raise CommandError(f"{server} holds no copy of {view.title}; copies are on {holders}")


def _yes_or_no(value: object) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise CommandError(f"--set deleted={value}: accepted: true or false")


def _movie_from_values(values: dict[str, object]) -> Movie:
    known = {k: v for k, v in values.items() if k in KNOWN_FIELDS}
    extra = {k: v for k, v in values.items() if k not in KNOWN_FIELDS}
    return validate(Movie(**known, extra=extra))  # type: ignore[arg-type]


async def resolve_plan(
    cluster: Cluster,
    title: str,
    year: int | None,
    *,
    take: str | None = None,
    fields: Sequence[str] = (),
    changes: dict[str, ExtraValue | list[str] | None] | None = None,
) -> Proposal:
    """The resolution of a conflict: one server's copy (`take`), values chosen field by field
    (`fields`: FIELD=HOST:PORT), and/or values set (`changes`). Every field that differs must
    be decided one way or another. The result is a child of every branch."""
    changes = changes or {}
    if not take and not fields and not changes:
        raise CommandError(
            "resolve needs --take HOST:PORT, --field FIELD=HOST:PORT or --set FIELD=VALUE"
        )
    view = await conflict_view(cluster, title, year)
    branches = [g.copy for g in view.groups]
    base = _holder_copy(view, parse_address(take)) if take else branches[0]
    values: dict[str, object] = field_values(base.movie)
    deleted = base.deleted if take else False
    decided = {d.field for d in view.differences} if take else set()
    for item in fields:
        name, sep, where = item.partition("=")
        if not sep or not name:
            raise CommandError(f"--field {item!r}: expected FIELD=HOST:PORT")
        source = _holder_copy(view, parse_address(where))
        if name == "deleted":
            deleted = source.deleted
        else:
            value = field_values(source.movie).get(name)
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        decided.add(name)
    for name, value in changes.items():
        if name == "deleted":
            deleted = _yes_or_no(value)
        elif value is None:
            values.pop(name, None)
        else:
            values[name] = value
        decided.add(name)
    undecided = [d for d in view.differences if d.field not in decided]
    if undecided:
        listing = "; ".join(
            f"{d.field}: " + ", ".join(f"{v!r} on {', '.join(map(str, s))}" for v, s in d.values)
            for d in undecided
        )
        raise CommandError(
            f"these fields differ and were not decided: {listing}. Choose with --field "
            "FIELD=HOST:PORT or --set FIELD=VALUE, or take a whole copy with --take HOST:PORT"
        )
    movie = _movie_from_values(values)
    if key_of(movie) != view.key:
        raise CommandError("a resolution keeps the movie's title and year")
    copy = child(branches, movie, deleted=deleted, now=cluster.clock())
    new = Group(copy, [])
    return Proposal("resolve", view, copy, field_differences([*view.groups, new]))


async def delete_plan(cluster: Cluster, title: str, year: int | None) -> Proposal:
    """A tombstone that supersedes every copy of the movie, conflicting ones included."""
    view = await _read_one(cluster, title, year)
    if view.deleted and not view.live:
        raise CommandError(f"{view.title} ({view.year or 'no year'}) is already deleted", NOT_FOUND)
    newest = view.newest
    if newest is not None and newest.deleted:
        # Deleted already, with older copies left behind: spread that very tombstone.
        return Proposal("delete", view, newest, field_differences(view.groups))
    parents = [newest] if newest is not None else [g.copy for g in view.groups]
    record = next((c.movie for c in parents if not c.deleted), parents[0].movie)
    tombstone = child(parents, record, deleted=True, now=cluster.clock())
    new = Group(tombstone, [])
    return Proposal("delete", view, tombstone, field_differences([*view.groups, new]))


async def write_proposal(
    cluster: Cluster, proposal: Proposal, queue: WriteQueue | None = None
) -> WriteOutcome:
    """Write a confirmed resolution or tombstone to every server."""
    if queue is not None:
        # Queued writes this one supersedes (conflicting branches among them) are moot; drop
        # them first, so that a failure below queues the new write in their place.
        await asyncio.to_thread(queue.drop_superseded, proposal.copy.key, proposal.copy)
    results = await _write_everywhere(cluster, proposal.copy, queue)
    return WriteOutcome(proposal.action, proposal.copy, results, "", proposal.differences)
