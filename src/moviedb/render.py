"""Data -> what people and scripts read: rich tables and JSON documents. Printing only."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO, cast

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from moviedb import getview
from moviedb.client.address import Address
from moviedb.client.cluster import ServerInfo, WriteResult
from moviedb.client.queue import ReplayReport
from moviedb.client.reconcile import FieldDiff, MovieView
from moviedb.client.security import PLAIN
from moviedb.client.sync import Progress
from moviedb.commands import (
    CatalogRow,
    CatalogScan,
    ConfigChange,
    ConflictsOutcome,
    GetOutcome,
    PendingOutcome,
    Proposal,
    ServerListOutcome,
    SyncOutcome,
    WriteOutcome,
)
from moviedb.getview import (
    STATUS_STYLE,
    copy_json,
    record_rows,
    servers_text,
    value_text,
    view_json,
)
from moviedb.getview import diff_json as _diff_json
from moviedb.getview import get_json as get_json
from moviedb.getview import print_json as print_json
from moviedb.getview import write_result_json as _write_result_json
from moviedb.versions import Copy

if TYPE_CHECKING:  # the data commands are imported only by the commands that run them
    from moviedb.data_commands import ExportOutcome, ImportOutcome, LegacyOutcome, SearchOutcome


def _styled(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _unreachable_json(unreachable: dict[Address, str]) -> list[dict[str, str]]:
    return [{"server": str(s), "error": e} for s, e in unreachable.items()]


def print_error(console: Console, message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}")


def _lines(console: Console) -> getview.Lines:
    """The console's stream, coloured when rich would colour it, for getview's plain lines."""
    color = console.color_system is not None and not console.no_color
    return getview.Lines(cast(TextIO, console.file), color)


def render_view(console: Console, view: MovieView) -> None:
    getview.render_view(_lines(console), view)


def render_get(console: Console, outcome: GetOutcome) -> None:
    getview.render_get(_lines(console), outcome)


def _print_write_result(console: Console, result: WriteResult) -> None:
    getview.write_result_line(_lines(console), result)


# --- JSON documents -------------------------------------------------------------------------------


def write_json(outcome: WriteOutcome) -> dict[str, Any]:
    return {
        "action": outcome.action,
        "movie": None if outcome.copy is None else copy_json(outcome.copy),
        "written": not outcome.refused and bool(outcome.results),
        "message": outcome.message,
        "differences": _diff_json(outcome.differences),
        "servers": [_write_result_json(r) for r in outcome.results],
        "exit_code": outcome.exit_code,
    }


def catalog_row_json(row: CatalogRow) -> dict[str, Any]:
    return {
        "title": row.title,
        "year": row.year,
        "servers": list(map(str, row.servers)),
        "agree": row.agree,
    }


def server_info_json(info: ServerInfo) -> dict[str, Any]:
    return {
        "server": str(info.server),
        "status": "up" if info.up else "down",
        "name": info.name,
        "server_id": info.server_id,
        "movies": info.movies,
        "latency_ms": None if info.latency is None else round(info.latency * 1000, 2),
        "digest": info.digest,
        "error": info.error,
        "access": info.access,
        "transport": info.transport,
    }


def serverlist_json(outcome: ServerListOutcome) -> dict[str, Any]:
    servers = []
    for info in outcome.servers:
        doc = server_info_json(info)
        summary = outcome.pending.get(info.server)
        doc["pending"] = summary.count if summary else 0
        servers.append(doc)
    return {"servers": servers, "in_sync": outcome.in_sync}


def _plan_json(outcome: SyncOutcome) -> list[dict[str, Any]]:
    return [
        {
            "server": str(server),
            "title": copy.movie.title,
            "year": copy.movie.year,
            "rev": copy.rev,
            "deleted": copy.deleted,
        }
        for server, copies in outcome.plan.writes.items()
        for copy in copies
    ]


def sync_json(outcome: SyncOutcome) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "dry_run": outcome.dry_run,
        "repaired": outcome.repaired,
        "unchanged": outcome.plan.unchanged,
        "failed": outcome.failed,
        "conflicts": [view_json(v) for v in outcome.plan.conflicts],
        "unreachable": _unreachable_json(outcome.unreachable),
        "purged": outcome.purged,
        "plan": _plan_json(outcome),
    }
    doc["writes"] = [
        _write_result_json(r) | {"rev": c.rev, "title": c.movie.title, "year": c.movie.year}
        for server, copies in outcome.plan.writes.items()
        for c, r in zip(copies, outcome.results.get(server, []), strict=False)
        if not r.stored
    ]
    if outcome.replayed is not None:
        doc["replayed"] = _replay_json(outcome.replayed)
    if outcome.difference is not None:
        d = outcome.difference
        doc["compared"] = {
            "buckets": d.buckets_compared,
            "buckets_differing": d.buckets_differing,
            "keys_listed": d.keys_listed,
            "copies_fetched": d.copies_fetched,
        }
    doc["exit_code"] = outcome.exit_code
    return doc


def _replay_json(report: ReplayReport) -> dict[str, Any]:
    return {
        "delivered": report.delivered,
        "superseded": report.superseded,
        "conflicts": report.conflicts,
        "still_queued": report.still_queued,
    }


def conflicts_json(outcome: ConflictsOutcome) -> dict[str, Any]:
    return {
        "conflicts": [view_json(v) for v in outcome.conflicts],
        "unreachable": _unreachable_json(outcome.unreachable),
        "exit_code": outcome.exit_code,
    }


def proposal_json(proposal: Proposal) -> dict[str, Any]:
    return {
        "action": proposal.action,
        "written": False,
        "movie": copy_json(proposal.copy),
        "current": view_json(proposal.view),
        "differences": _diff_json(proposal.differences),
        "message": f"nothing was written; run again with --yes to {proposal.action}",
        "exit_code": proposal.exit_code,
    }


def pending_json(outcome: PendingOutcome) -> dict[str, Any]:
    return {
        "servers": [
            {
                "server": str(server),
                "count": summary.count,
                "conflicts": summary.conflicts,
                "oldest_age_s": round(outcome.now - summary.oldest, 1),
            }
            for server, summary in outcome.summary.items()
        ],
        "writes": [
            {
                "server": str(e.server),
                "title": e.copy.movie.title,
                "year": e.copy.movie.year,
                "rev": e.rev,
                "deleted": e.copy.deleted,
                "reason": e.reason,
                "state": e.state,
                "queued_at": e.queued_at,
                "attempts": e.attempts,
                "last_error": e.last_error,
            }
            for e in outcome.entries
        ],
        "exit_code": outcome.exit_code,
    }


def config_change_json(change: ConfigChange) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "action": change.action,
        "server": str(change.server),
        "changed": change.changed,
        "updated": change.updated,
        "config": str(change.config.path),
        "servers": list(map(str, change.config.servers)),
    }
    if change.probe is not None:
        doc["probe"] = server_info_json(change.probe)
    return doc


# --- for people -----------------------------------------------------------------------------------


def _diff_table(diffs: list[FieldDiff], labels: tuple[str, str]) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 2), header_style="bold")
    table.add_column("field", style="cyan")
    table.add_column(labels[0])
    table.add_column(labels[1], style="bold yellow")
    for diff in diffs:
        before = next((v for v, s in diff.values if s), None)
        after = next((v for v, s in diff.values if not s), None)
        table.add_row(diff.field, value_text(before), value_text(after))
    return table


def render_write(console: Console, outcome: WriteOutcome) -> None:
    if outcome.action in ("resolve", "delete") and outcome.copy is not None:
        # Several versions were replaced at once: show what now stands, not a before/after.
        what = "deleted" if outcome.copy.deleted else "resolved to"
        console.print(f"{escape(_movie_name(outcome.copy))} {what}:")
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 2))
        table.add_column(style="cyan")
        table.add_column()
        for name, value in record_rows(outcome.copy):
            table.add_row(name, value)
        if not outcome.copy.deleted:
            console.print(table)
    elif outcome.differences:
        labels = ("stored", "requested") if outcome.refused else ("before", "after")
        console.print(_diff_table(outcome.differences, labels))
    if outcome.message:
        style = "bold red" if outcome.refused else ""
        console.print(Text(outcome.message, style=style))
    if outcome.copy is not None and outcome.results:
        movie = outcome.copy.movie
        year = f" ({movie.year})" if movie.year is not None else ""
        console.print(f"[bold]{escape(movie.title)}{year}[/] revision {outcome.copy.rev}")
    for result in outcome.results:
        _print_write_result(console, result)


def render_catalog_row(console: Console, row: CatalogRow) -> None:
    year = f" ({row.year})" if row.year is not None else ""
    line = Text(f"{row.title}{year}", style="bold")
    line.append("  ")
    line.append_text(_styled("agree") if row.agree else Text("differs", style="yellow"))
    line.append(f"  {servers_text(row.servers)}", style="dim")
    console.print(line, highlight=False)


def render_catalog_end(console: Console, scan: CatalogScan, limit: int | None) -> None:
    more = " (limit reached)" if limit is not None and scan.rows >= limit else ""
    console.print(f"[dim]{scan.rows} movie{'s' if scan.rows != 1 else ''}{more}[/]")
    for server, error in scan.unreachable.items():
        console.print(f"[red]{server} unreachable:[/] {escape(error)}")


def render_serverlist(console: Console, outcome: ServerListOutcome) -> None:
    if not outcome.servers:
        console.print("no servers configured; add one with: addserver HOST:PORT")
        return
    table = Table(header_style="bold", box=None, padding=(0, 2, 0, 0))
    right = ("latency", "movies", "pending")
    columns = ["server", "status", "latency", "name", "movies", "digest", "pending"]
    # Tokens and TLS are shown only where some server uses them.
    plain = PLAIN.describe()
    secured = any(i.transport != plain or i.access == "read-only" for i in outcome.servers)
    for column in columns + (["via", "access"] if secured else []):
        table.add_column(column, justify="right" if column in right else "left")
    for info in outcome.servers:
        summary = outcome.pending.get(info.server)
        extra = [info.transport, info.access or ""] if secured else []
        table.add_row(
            str(info.server),
            _styled("up" if info.up else "down"),
            "" if info.latency is None else f"{info.latency * 1000:.1f} ms",
            info.name or (getview.error_text(info.server, info.error) if info.error else ""),
            "" if info.movies is None else str(info.movies),
            info.digest or "",
            str(summary.count) if summary else "0",
            *extra,
        )
    console.print(table)
    if outcome.in_sync is True:
        console.print("in sync: every server holds the same versions", style="green")
    elif outcome.in_sync is False:
        console.print(
            "not in sync: the digests differ or a server is down (see `sync`)", style="yellow"
        )


def render_config_change(console: Console, change: ConfigChange) -> None:
    if change.action == "addserver":
        verb = "updated" if change.updated else "added" if change.changed else "already listed:"
        console.print(f"{verb} {change.server}")
        if change.probe is not None:
            probe = change.probe
            if probe.up:
                console.print(
                    f"  up: {probe.name}, {probe.movies} movies, over {probe.transport}, "
                    f"{probe.access}",
                    style="green",
                )
            else:
                error = getview.error_text(change.server, change.probe.error or "")
                console.print(f"  not answering now: {escape(error)}", style="yellow")
    else:
        console.print(f"removed {change.server}")
    console.print(f"[dim]{len(change.config.servers)} servers in {change.config.path}[/]")


# --- consistency: replay, sync, conflicts, resolve, delete, pending -------------------------------


def render_replay(console: Console, report: ReplayReport) -> None:
    if report.delivered or report.superseded or report.conflicts:
        console.print(
            f"delivered {report.delivered} queued write(s)"
            + (f", {report.superseded} superseded" if report.superseded else "")
            + (f", {report.conflicts} in conflict" if report.conflicts else "")
            + (f"; {report.still_queued} still queued" if report.still_queued else ""),
            style="dim",
        )


@contextlib.contextmanager
def progress(
    console: Console, *, enabled: bool = True, plain_lines: bool = False
) -> Iterator[Progress]:
    """A progress bar for long runs (on a terminal, after a second); yields the callback that
    commands report to. With `plain_lines`, off a terminal, a line on stderr every 2 seconds."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
    from rich.progress import Progress as Bar

    started = time.monotonic()
    bar: Bar | None = None
    tasks: dict[str, Any] = {}

    last_line = started

    def report(stage: str, done: int, total: int) -> None:
        nonlocal bar, last_line
        if not enabled:
            return
        now = time.monotonic()
        if not console.is_terminal:
            if plain_lines and now - last_line >= 2.0:
                last_line = now
                of = f" of {total:,}" if total else ""
                print(f"{stage}: {done:,}{of}", file=sys.stderr, flush=True)
            return
        if now - started < 1.0:
            return
        if bar is None:
            bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                transient=True,
            )
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total or None)
        bar.update(tasks[stage], completed=done, total=total or None)

    try:
        yield report
    finally:
        if bar is not None:
            bar.stop()


def _movie_name(copy: Copy) -> str:
    year = f" ({copy.movie.year})" if copy.movie.year is not None else ""
    return f"{copy.movie.title}{year}"


def render_sync(console: Console, outcome: SyncOutcome) -> None:
    if outcome.replayed is not None:
        render_replay(console, outcome.replayed)
    if outcome.dry_run:
        if not outcome.plan.writes:
            console.print("nothing to write: every reachable server is up to date")
        for server, copies in outcome.plan.writes.items():
            console.print(f"[bold]{server}[/] would get {len(copies)} write(s):")
            for copy in copies:
                what = "delete" if copy.deleted else "update to"
                console.print(f"  {escape(_movie_name(copy))}: {what} {copy.rev}")
    else:
        for server, results in outcome.results.items():
            copies = outcome.plan.writes[server]
            for copy, result in zip(copies, results, strict=False):
                if not result.stored:
                    line = Text(f"  {server} {_movie_name(copy)} ")
                    line.append_text(_styled(result.status.value))
                    if result.error:
                        line.append(f" ({getview.error_text(server, result.error)})", style="dim")
                    console.print(line)
    for view in outcome.plan.conflicts:
        render_view(console, view)
    summary = Text()
    verb = "would repair" if outcome.dry_run else "repaired"
    count = outcome.plan.total_writes if outcome.dry_run else outcome.repaired
    summary.append(f"{verb} {count} cop{'y' if count == 1 else 'ies'}, ")
    summary.append(f"{outcome.plan.unchanged} unchanged, ")
    summary.append(
        f"{len(outcome.plan.conflicts)} conflict{'s' if len(outcome.plan.conflicts) != 1 else ''}",
        style="bold red" if outcome.plan.conflicts else "",
    )
    if outcome.failed:
        summary.append(f", {outcome.failed} not acknowledged (queued)", style="magenta")
    if outcome.purged:
        summary.append(f", {outcome.purged} tombstone{'s' if outcome.purged != 1 else ''} purged")
    console.print(summary)
    if outcome.plan.conflicts:
        console.print("conflicts are never decided by sync: see `resolve`", style="dim")
    for server, error in outcome.unreachable.items():
        console.print(f"[red]{server} unreachable:[/] {escape(error)}")


def render_conflicts(console: Console, outcome: ConflictsOutcome) -> None:
    for view in outcome.conflicts:
        render_view(console, view)
        console.print()
    count = len(outcome.conflicts)
    if count:
        console.print(f"{count} movie{'s' if count != 1 else ''} in conflict; see `resolve`")
    elif outcome.answered:
        console.print("no conflicts on the reachable servers", style="green")
    else:
        print_error(console, "no server answered")
    for server, error in outcome.unreachable.items():
        console.print(f"[red]{server} unreachable:[/] {escape(error)}")


def render_proposal(console: Console, proposal: Proposal) -> None:
    render_view(console, proposal.view)
    console.print()
    copy = proposal.copy
    if proposal.action == "delete":
        console.print(f"delete [bold]{escape(_movie_name(copy))}[/] on every server ({copy.rev})")
        return
    console.print(f"resolution of [bold]{escape(_movie_name(copy))}[/] ({copy.rev}):")
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 2))
    table.add_column(style="cyan")
    table.add_column()
    for name, value in record_rows(copy):
        table.add_row(name, value)
    console.print(table)


def choose_fields(console: Console, view: MovieView) -> tuple[str, ...]:
    """Walk through the differing fields and ask which server's value to keep (the shell)."""
    import click

    render_view(console, view)
    chosen: list[str] = []
    for diff in view.differences:
        console.print(f"[cyan]{diff.field}[/]:")
        for i, (value, servers) in enumerate(diff.values, start=1):
            console.print(f"  {i}) {escape(value_text(value))}  [dim]{servers_text(servers)}[/]")
        choice = click.prompt(
            f"keep which {diff.field}?", type=click.IntRange(1, len(diff.values)), default=1
        )
        holders = diff.values[choice - 1][1]
        chosen.append(f"{diff.field}={holders[0]}")
    return tuple(chosen)


def render_pending(console: Console, outcome: PendingOutcome) -> None:
    if not outcome.summary:
        console.print("no queued writes: every write was acknowledged", style="green")
        return
    table = Table(header_style="bold", box=None, padding=(0, 2, 0, 0))
    for column in ("server", "queued", "conflicts", "oldest"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for server, summary in outcome.summary.items():
        table.add_row(
            str(server),
            str(summary.queued),
            str(summary.conflicts),
            _age(outcome.now - summary.oldest),
        )
    console.print(table)
    for entry in outcome.entries:
        line = Text(f"  {entry.server} {_movie_name(entry.copy)} {entry.rev} ")
        line.append_text(_styled("conflict" if entry.state == "conflict" else entry.reason))
        if entry.attempts:
            line.append(f" ({entry.attempts} attempts)", style="dim")
        console.print(line)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


# --- data: import, export, search ---------------------------------------------------------------


def import_json(outcome: ImportOutcome) -> dict[str, Any]:
    stored = sum(s.stored for s in outcome.servers.values())
    return {
        "file": outcome.source,
        "format": outcome.format,
        "rows": outcome.rows,
        "rejected": outcome.rejected,
        "duplicates": outcome.duplicates,
        "stopped": outcome.stopped,
        "rejects_file": outcome.rejects_file,
        "rejections": [{"row": n, "reason": r} for n, r in outcome.rejections],
        "stored": stored,
        "servers": [
            {
                "server": str(s.server),
                "stored": s.stored,
                "unchanged": s.unchanged,
                "conflicts": s.conflicts,
                "unknown": s.unknown,
                "failed": s.failed,
                "error": s.error,
            }
            for s in outcome.servers.values()
        ],
        "seconds": round(outcome.seconds, 3),
        "exit_code": outcome.exit_code,
    }


def render_import(console: Console, outcome: ImportOutcome) -> None:
    rate = outcome.rows / outcome.seconds if outcome.seconds else 0.0
    console.print(
        f"{outcome.rows:,} rows read from {escape(outcome.source)} ({outcome.format}) in "
        f"{outcome.seconds:.1f} s ({rate:,.0f} rows/s); {outcome.rejected:,} rejected"
    )
    table = Table(header_style="bold", box=None, padding=(0, 2, 0, 0))
    for column in ("server", "stored", "unchanged", "conflicts", "unknown", "failed"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for s in outcome.servers.values():
        table.add_row(
            str(s.server),
            f"{s.stored:,}",
            f"{s.unchanged:,}",
            f"{s.conflicts:,}",
            f"{s.unknown:,}",
            f"{s.failed:,}",
        )
    console.print(table)
    if outcome.stopped:
        console.print(
            f"[red]stopped:[/] {escape(outcome.stopped)}; the rows before it were imported"
        )
    if any(s.conflicts for s in outcome.servers.values()):
        console.print(
            "conflicts: the server holds a different record of that movie; it was kept "
            "(see `get` and `resolve`)",
            style="yellow",
        )
    for s in outcome.servers.values():
        if s.failed or s.unknown:
            console.print(
                f"[red]{s.server}:[/] {s.failed:,} rows not stored, {s.unknown:,} unknown "
                f"({escape(s.error or '')}); run `sync` when it answers again to copy them "
                "from the other servers"
            )
    for number, reason in outcome.rejections[:5]:
        console.print(f"  row {number}: {escape(reason)}", style="yellow")
    if outcome.rejected > 5:
        more = outcome.rejected - 5
        where = f" (all in {outcome.rejects_file})" if outcome.rejects_file else ""
        console.print(f"  ... {more:,} more rejected{where}", style="yellow")
    elif outcome.rejected and outcome.rejects_file:
        console.print(f"  rejected rows are in {outcome.rejects_file}", style="dim")


def legacy_json(outcome: LegacyOutcome) -> dict[str, Any]:
    return {
        "directory": outcome.directory,
        "found": outcome.found,
        "servers_added": list(map(str, outcome.servers_added)),
        "servers_known": list(map(str, outcome.servers_known)),
        "ports": outcome.ports,
        "ports_file": outcome.ports_file,
        "movies": None if outcome.movies is None else import_json(outcome.movies),
        "exit_code": outcome.exit_code,
    }


def render_legacy(console: Console, outcome: LegacyOutcome) -> None:
    console.print(f"found in {escape(outcome.directory)}: {', '.join(outcome.found)}")
    if outcome.servers_added or outcome.servers_known:
        console.print(
            f"servers: {len(outcome.servers_added)} added to the server list"
            + (f", {len(outcome.servers_known)} already listed" if outcome.servers_known else "")
        )
    if outcome.ports_file:
        console.print(
            f"ports: {len(outcome.ports)} written to {escape(outcome.ports_file)} "
            f"(use it with moviedb-server --ports-file {escape(outcome.ports_file)})"
        )
    if outcome.movies is not None:
        render_import(console, outcome.movies)


def export_json(outcome: ExportOutcome) -> dict[str, Any]:
    return {
        "format": outcome.format,
        "output": outcome.target,
        "movies": outcome.movies,
        "conflicts": outcome.conflicts,
        "unreachable": _unreachable_json(outcome.unreachable),
        "written": outcome.written,
        "exit_code": outcome.exit_code,
    }


def render_export(console: Console, outcome: ExportOutcome) -> None:
    where = "stdout" if outcome.target == "-" else outcome.target
    if not outcome.written:
        console.print(
            f"[red]export incomplete:[/] {escape(where)} was not written (left as it was)"
        )
    else:
        console.print(f"exported {outcome.movies:,} movies to {escape(where)} ({outcome.format})")
    if outcome.conflicts:
        console.print(
            f"{outcome.conflicts:,} movies are in conflict: exported the newest-generation copy "
            "of each (see `conflicts`)",
            style="yellow",
        )
    for server, error in outcome.unreachable.items():
        console.print(f"[red]{server} unreachable:[/] {escape(error)}")


def search_json(outcome: SearchOutcome) -> dict[str, Any]:
    return {
        "query": outcome.query,
        "results": [{"score": round(m.score, 1), **view_json(m.view)} for m in outcome.matches],
        "more": outcome.more,
        "unreachable": _unreachable_json(outcome.unreachable),
        "exit_code": outcome.exit_code,
    }


def render_search(console: Console, outcome: SearchOutcome) -> None:
    if not outcome.matches:
        if outcome.answered:
            console.print(f"[yellow]no match[/] for {escape(repr(outcome.query))}")
        else:
            print_error(console, "no server answered")
    table = Table(header_style="bold", box=None, padding=(0, 2, 0, 0))
    for column in ("score", "title", "director", "rating", "servers", "state"):
        table.add_column(column, justify="right" if column in ("score", "rating") else "left")
    for match in outcome.matches:
        view = match.view
        movie = view.groups[0].copy.movie
        year = f" ({movie.year})" if movie.year is not None else ""
        held = sum(len(g.servers) for g in view.groups)
        table.add_row(
            f"{match.score:.0f}",
            f"{movie.title}{year}",
            movie.director or "",
            "" if movie.rating is None else f"{movie.rating:g}",
            str(held),
            _styled(view.state),
        )
    if outcome.matches:
        console.print(table)
    if outcome.more:
        console.print("more matches exist: narrow the search or raise --limit", style="dim")
    for server, error in outcome.unreachable.items():
        console.print(f"[red]{server} unreachable:[/] {escape(error)}")
