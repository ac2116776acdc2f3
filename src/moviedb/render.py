"""Data -> what people and scripts read: rich tables and JSON documents. Printing only."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from moviedb.client.address import Address
from moviedb.client.cluster import ReadResult, ReadStatus, ServerInfo, WriteResult, WriteStatus
from moviedb.client.reconcile import FieldDiff, MovieView
from moviedb.commands import (
    CatalogRow,
    CatalogScan,
    ConfigChange,
    GetOutcome,
    ServerListOutcome,
    WriteOutcome,
)
from moviedb.model import KNOWN_FIELDS, field_values
from moviedb.versions import Copy

STATUS_STYLE = {
    "found": "green",
    "applied": "green",
    "unchanged": "green",
    "up": "green",
    "missing": "yellow",
    "stale": "yellow",
    "agree": "green",
    "conflict": "bold red",
    "unknown": "magenta",
    "timeout": "magenta",
    "unreachable": "red",
    "down": "red",
    "error": "red",
}


def _styled(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _servers(servers: list[Address]) -> str:
    return ", ".join(map(str, servers))


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def print_json(document: dict[str, Any]) -> None:
    """A JSON document on stdout, plain (no colour), for scripts."""
    print(json.dumps(document, ensure_ascii=False, indent=2))


def print_error(console: Console, message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}")


# --- JSON documents -------------------------------------------------------------------------------


def copy_json(copy: Copy) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(copy.movie)
    doc.setdefault("year", None)
    doc["rev"] = copy.rev
    doc["deleted"] = copy.deleted
    return doc


def _diff_json(diffs: list[FieldDiff]) -> list[dict[str, Any]]:
    return [
        {
            "field": d.field,
            "values": [{"value": v, "servers": list(map(str, s))} for v, s in d.values],
        }
        for d in diffs
    ]


def _read_json(result: ReadResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "server": str(result.server),
        "status": result.status.value,
        "movies": [copy_json(c) for c in result.copies if not c.deleted],
    }
    if result.error:
        doc["error"] = result.error
    return doc


def view_json(view: MovieView) -> dict[str, Any]:
    return {
        "title": view.title,
        "year": view.year,
        "state": view.state,
        "agree": view.agree,
        "versions": [
            {"servers": list(map(str, g.servers)), **copy_json(g.copy)} for g in view.groups
        ],
        "missing": list(map(str, view.missing)),
        "differences": _diff_json(view.differences),
    }


def get_json(outcome: GetOutcome) -> dict[str, Any]:
    return {
        "query": {"title": outcome.title, "year": outcome.year},
        "servers": [_read_json(r) for r in outcome.results],
        "movies": [view_json(v) for v in outcome.movies],
        "exit_code": outcome.exit_code,
    }


def _write_result_json(result: WriteResult) -> dict[str, Any]:
    doc: dict[str, Any] = {"server": str(result.server), "status": result.status.value}
    if result.current is not None:
        doc["current"] = copy_json(result.current)
    if result.error:
        doc["error"] = result.error
    return doc


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
        "error": info.error,
    }


def serverlist_json(outcome: ServerListOutcome) -> dict[str, Any]:
    return {"servers": [server_info_json(s) for s in outcome.servers]}


def config_change_json(change: ConfigChange) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "action": change.action,
        "server": str(change.server),
        "changed": change.changed,
        "config": str(change.config.path),
        "servers": list(map(str, change.config.servers)),
    }
    if change.probe is not None:
        doc["probe"] = server_info_json(change.probe)
    return doc


# --- for people -----------------------------------------------------------------------------------


def _status_line(results: list[ReadResult]) -> Text:
    line = Text("servers: ", style="dim")
    for i, result in enumerate(results):
        if i:
            line.append(", ")
        line.append(f"{result.server} ")
        line.append_text(_styled(result.status.value))
        if result.error and result.status is not ReadStatus.MISSING:
            line.append(f" ({result.error})", style="dim")
    return line


def _record_rows(copy: Copy) -> list[tuple[str, str]]:
    if copy.deleted:
        return [("deleted", "yes")]
    return [(name, _value(value)) for name, value in field_values(copy.movie).items()]


def render_view(console: Console, view: MovieView) -> None:
    year = f" ({view.year})" if view.year is not None else ""
    held = sum(len(g.servers) for g in view.groups)
    header = Text(f"{view.title}{year}", style="bold")
    header.append(" — ")
    header.append_text(_styled(view.state))
    header.append(f" on {held} server{'s' if held != 1 else ''}")
    if view.missing:
        header.append(f"; missing on {_servers(view.missing)}", style="yellow")
    console.print(header)
    if len(view.groups) == 1:
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 2))
        table.add_column(style="cyan")
        table.add_column()
        for name, value in _record_rows(view.groups[0].copy):
            if name not in ("title",):
                table.add_row(name, value)
        table.add_row("servers", _servers(view.groups[0].servers), style="dim")
        console.print(table)
        return
    table = Table(box=None, padding=(0, 2, 0, 2), header_style="bold")
    table.add_column("field", style="cyan")
    for group in view.groups:
        table.add_column(f"{_servers(group.servers)}\n{group.copy.rev[:10]}")
    differing = {d.field for d in view.differences}
    values = [
        {"deleted": "yes"} if g.copy.deleted else field_values(g.copy.movie) for g in view.groups
    ]
    names = [n for n in ("deleted", *KNOWN_FIELDS) if any(n in v for v in values)]
    names += sorted({n for v in values for n in v} - set(names))
    for name in names:
        style = "bold yellow" if name in differing else "dim"
        table.add_row(name, *(_value(v.get(name)) for v in values), style=style)
    console.print(table)


def render_get(console: Console, outcome: GetOutcome) -> None:
    if not outcome.movies:
        answered = any(r.answered for r in outcome.results)
        what = f"{outcome.title!r}" + (f" ({outcome.year})" if outcome.year else "")
        if answered:
            console.print(f"[yellow]not found:[/] {escape(what)} is on no reachable server")
        else:
            print_error(console, "no server answered")
    for view in outcome.movies:
        render_view(console, view)
        console.print()
    console.print(_status_line(outcome.results))


def _diff_table(diffs: list[FieldDiff], labels: tuple[str, str]) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 2), header_style="bold")
    table.add_column("field", style="cyan")
    table.add_column(labels[0])
    table.add_column(labels[1], style="bold yellow")
    for diff in diffs:
        before = next((v for v, s in diff.values if s), None)
        after = next((v for v, s in diff.values if not s), None)
        table.add_row(diff.field, _value(before), _value(after))
    return table


def render_write(console: Console, outcome: WriteOutcome) -> None:
    if outcome.differences:
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
        line = Text(f"  {result.server} ")
        line.append_text(_styled(result.status.value))
        if result.error:
            line.append(f" ({result.error})", style="dim")
        if result.status in (WriteStatus.STALE, WriteStatus.CONFLICT) and result.current:
            line.append(f" (holds {result.current.rev})", style="dim")
        console.print(line)


def render_catalog_row(console: Console, row: CatalogRow) -> None:
    year = f" ({row.year})" if row.year is not None else ""
    line = Text(f"{row.title}{year}", style="bold")
    line.append("  ")
    line.append_text(_styled("agree") if row.agree else Text("differs", style="yellow"))
    line.append(f"  {_servers(row.servers)}", style="dim")
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
    for column in ("server", "status", "latency", "name", "movies"):
        table.add_column(column, justify="right" if column in ("latency", "movies") else "left")
    for info in outcome.servers:
        table.add_row(
            str(info.server),
            _styled("up" if info.up else "down"),
            "" if info.latency is None else f"{info.latency * 1000:.1f} ms",
            info.name or (info.error or ""),
            "" if info.movies is None else str(info.movies),
        )
    console.print(table)


def render_config_change(console: Console, change: ConfigChange) -> None:
    if change.action == "addserver":
        verb = "added" if change.changed else "already listed:"
        console.print(f"{verb} {change.server}")
        if change.probe is not None:
            if change.probe.up:
                console.print(
                    f"  up: {change.probe.name}, {change.probe.movies} movies", style="green"
                )
            else:
                console.print(f"  not answering now: {change.probe.error}", style="yellow")
    else:
        console.print(f"removed {change.server}")
    console.print(f"[dim]{len(change.config.servers)} servers in {change.config.path}[/]")
