"""The `get` command: every server's copies of a title, reconciled. Apart from commands.py so
that the one-shot `get` (launcher.py) imports only what reading needs; commands.py re-exports
it, and the CLI and the shell call it from there like every other command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from moviedb.client.cluster import Cluster, ReadResult, WriteResult
from moviedb.client.reconcile import MovieView, reconcile
from moviedb.exits import NO_SERVER, NOT_FOUND, OK, CommandError
from moviedb.versions import Copy

if TYPE_CHECKING:
    from moviedb.client.queue import WriteQueue


class Repair(msgspec.Struct, frozen=True):
    """One stale movie brought up to date by `get --repair`."""

    view: MovieView
    copy: Copy
    results: list[WriteResult]


class GetOutcome(msgspec.Struct, frozen=True):
    title: str
    year: int | None
    results: list[ReadResult]
    movies: list[MovieView]  # movies some server holds undeleted (deleted ones with stale copies)
    repairs: list[Repair] = msgspec.field(default_factory=list)
    suggestions: list[str] = msgspec.field(
        default_factory=list
    )  # closest titles, when none matched

    @property
    def exit_code(self) -> int:
        if not any(r.answered for r in self.results):
            return NO_SERVER
        return OK if any(not v.deleted for v in self.movies) else NOT_FOUND


async def get(
    cluster: Cluster,
    title: str,
    year: int | None = None,
    *,
    repair: bool = False,
    queue: WriteQueue | None = None,
    suggest: bool = False,
) -> GetOutcome:
    """Every server's copies of TITLE; with `repair`, stale and missing copies are replaced by
    the newest version (a conflict is never decided); with `suggest`, a title found nowhere
    gets the closest titles the servers hold ("did you mean")."""
    require_title(title)
    results = await cluster.get(title, year)
    views = [v for v in reconcile(results) if v.live]
    repairs: list[Repair] = []
    if repair:
        from moviedb.commands import queue_unacknowledged  # the write side, only for --repair

        for view in views:
            newest = view.newest
            if newest is None or view.agree:
                continue
            targets = [s for g in view.groups if g.copy.rev != newest.rev for s in g.servers]
            targets += view.missing
            written = await cluster.put({server: newest for server in targets})
            await queue_unacknowledged(
                queue, {r.server: newest for r in written}, written, now=cluster.clock()
            )
            repairs.append(Repair(view, newest, written))
    outcome = GetOutcome(title, year, results, views, repairs)
    if suggest and outcome.exit_code == NOT_FOUND:
        from moviedb.data_commands import suggestions  # search: only for a title not found

        outcome = msgspec.structs.replace(outcome, suggestions=await suggestions(cluster, title))
    return outcome


def require_title(title: str) -> None:
    if not title.strip():
        raise CommandError("title: must not be empty")
