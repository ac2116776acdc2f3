"""How `get` shows a movie, as plain lines (ANSI colours on a terminal) and as JSON documents.

Without rich: the one-shot `get` (launcher.py) must start in about the time Python itself
takes, and rich alone costs a quarter of that. render.py shows every other outcome with rich,
and uses the movie view and the JSON documents from here, so that both paths print the same.
Lines are not wrapped: a terminal wraps them itself, and a pipe gets each row on one line.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from moviedb import protocol
from moviedb.client.address import Address
from moviedb.client.cluster import ReadResult, ReadStatus, WriteResult, WriteStatus
from moviedb.client.reconcile import FieldDiff, MovieView
from moviedb.model import KNOWN_FIELDS, field_values
from moviedb.versions import Copy

if TYPE_CHECKING:
    from moviedb.reads import GetOutcome

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
_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "magenta": "35",
        "cyan": "36"}  # fmt: skip


def use_color(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to style the output, decided as rich decides it for the rest of the CLI (see
    render._lines): never with NO_COLOR; on a terminal, which TTY_COMPATIBLE or FORCE_COLOR
    may assert or deny; never on a dumb one."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR", "") != "":
        return False
    compatible = env.get("TTY_COMPATIBLE", "")
    force = env.get("FORCE_COLOR")
    if compatible in ("0", "1"):
        terminal = compatible == "1"
    elif force is not None:
        terminal = force != ""
    else:
        isatty = getattr(stream, "isatty", None)
        terminal = bool(isatty and isatty())
    return terminal and env.get("TERM", "").lower() not in ("dumb", "unknown")


class Lines:
    """Writes lines to a stream; `paint` styles a piece of one when colour is on."""

    def __init__(self, stream: TextIO, color: bool) -> None:
        self.stream = stream
        self.color = color

    def paint(self, text: str, *styles: str) -> str:
        codes = [_SGR[word] for style in styles for word in style.split()]
        if not self.color or not codes or not text:
            return text
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"

    def status(self, status: str, *styles: str) -> str:
        return self.paint(status, *styles, STATUS_STYLE.get(status, ""))

    def line(self, *pieces: str) -> None:
        self.stream.write("".join(pieces) + "\n")


def cells(text: str) -> int:
    """Columns the text takes on a terminal: wide (CJK) characters two, combining marks none."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _table(
    out: Lines,
    header: Sequence[str] | None,
    rows: Iterable[tuple[Sequence[str], str]],
) -> None:
    """Columns two cells apart and indented two, the first in cyan; a header of several lines
    sits on its last ones; each row has a style of its own (last column not padded)."""
    body = [(list(row), style) for row, style in rows]
    head = [cell.split("\n") for cell in header] if header is not None else []
    columns = len(head) if head else (len(body[0][0]) if body else 0)
    widths = [0] * columns
    for index, lines in enumerate(head):
        widths[index] = max(cells(line) for line in lines)
    for row, _ in body:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], cells(cell))

    def render(row: Sequence[str], style: str, first: str) -> None:
        pieces = []
        for index, cell in enumerate(row):
            last = index == len(row) - 1
            text = cell if last else cell + " " * (widths[index] - cells(cell))
            styles = (first, style) if index == 0 else (style,)
            pieces.append(out.paint(text, *styles))
        out.line("  ", "    ".join(pieces).rstrip())

    if head:
        height = max(len(lines) for lines in head)
        for level in range(height):
            row = [
                lines[level - (height - len(lines))] if level >= height - len(lines) else ""
                for lines in head
            ]
            render(row, "bold", "")
    for row, style in body:
        render(row, style, "cyan")


# --- text -----------------------------------------------------------------------------------------


def value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def servers_text(servers: Iterable[Address]) -> str:
    return ", ".join(map(str, servers))


def error_text(server: Address, error: str) -> str:
    """A server's error as people read it: a missing or refused token says how to give one."""
    if error.startswith(f"{protocol.UNAUTHORIZED}:"):
        return f"{error}; give this client its token: moviedb addserver {server} --token-file FILE"
    return error


def read_status(result: ReadResult) -> str:
    """A server holding only tombstones of what was asked for does not have it: `missing`."""
    if result.status is ReadStatus.FOUND and all(c.deleted for c in result.copies):
        return ReadStatus.MISSING.value
    return result.status.value


def record_rows(copy: Copy) -> list[tuple[str, str]]:
    if copy.deleted:
        return [("deleted", "yes")]
    return [(name, value_text(value)) for name, value in field_values(copy.movie).items()]


def render_view(out: Lines, view: MovieView) -> None:
    year = f" ({view.year})" if view.year is not None else ""
    held = sum(len(g.servers) for g in view.groups)
    missing = f"; missing on {servers_text(view.missing)}" if view.missing else ""
    out.line(
        out.paint(f"{view.title}{year}", "bold"),
        " — ",
        out.status(view.state),
        f" on {held} server{'s' if held != 1 else ''}",
        out.paint(missing, "yellow"),
    )
    if len(view.groups) == 1:
        group = view.groups[0]
        rows = [((name, value), "") for name, value in record_rows(group.copy) if name != "title"]
        rows.append((("servers", servers_text(group.servers)), "dim"))
        _table(out, None, rows)
        return
    header = ["field", *(f"{servers_text(g.servers)}\n{g.copy.rev[:10]}" for g in view.groups)]
    differing = {d.field for d in view.differences}
    values = [
        {"deleted": "yes", **field_values(g.copy.movie)}
        if g.copy.deleted
        else field_values(g.copy.movie)
        for g in view.groups
    ]
    names = [n for n in ("deleted", *KNOWN_FIELDS) if any(n in v for v in values)]
    names += sorted({n for v in values for n in v} - set(names))
    _table(
        out,
        header,
        (
            ([name, *(value_text(v.get(name)) for v in values)],
             "bold yellow" if name in differing else "dim")
            for name in names
        ),
    )  # fmt: skip


def write_result_line(out: Lines, result: WriteResult) -> None:
    pieces = [f"  {result.server} ", out.status(result.status.value)]
    if result.error:
        pieces.append(out.paint(f" ({error_text(result.server, result.error)})", "dim"))
    if result.status in (WriteStatus.STALE, WriteStatus.CONFLICT) and result.current:
        pieces.append(out.paint(f" (holds {result.current.rev})", "dim"))
    if result.status in (WriteStatus.UNREACHABLE, WriteStatus.UNKNOWN, WriteStatus.ERROR):
        pieces.append(
            out.paint(" — queued; delivered when the server answers (see `pending`)", "dim")
        )
    out.line(*pieces)


def error_line(out: Lines, message: str) -> None:
    out.line(out.paint("error:", "bold red"), " ", message)


def render_get(out: Lines, outcome: GetOutcome) -> None:
    if not outcome.movies:
        answered = any(r.answered for r in outcome.results)
        what = f"{outcome.title!r}" + (f" ({outcome.year})" if outcome.year else "")
        if answered:
            out.line(out.paint("not found:", "yellow"), f" {what} is on no reachable server")
            if outcome.suggestions:
                out.line("did you mean: " + "; ".join(outcome.suggestions))
        else:
            error_line(out, "no server answered")
    for view in outcome.movies:
        render_view(out, view)
        if view.deleted:
            out.line(
                out.paint(
                    "  deleted; the servers above that still hold it have an older copy "
                    "(`get --repair` or `sync` spreads the delete)",
                    "yellow",
                )
            )
        out.line()
    for repair in outcome.repairs:
        movie = repair.copy.movie
        year = f" ({movie.year})" if movie.year is not None else ""
        out.line("repaired ", out.paint(f"{movie.title}{year}", "bold"), f" to {repair.copy.rev}:")
        for result in repair.results:
            write_result_line(out, result)
    pieces = [out.paint("servers: ", "dim")]
    for i, read in enumerate(outcome.results):
        if i:
            pieces.append(out.paint(", ", "dim"))
        pieces.append(out.paint(f"{read.server} ", "dim"))
        pieces.append(out.status(read_status(read), "dim"))
        if read.error and read.status is not ReadStatus.MISSING:
            pieces.append(out.paint(f" ({error_text(read.server, read.error)})", "dim"))
    out.line(*pieces)


# --- JSON documents -------------------------------------------------------------------------------


def print_json(document: dict[str, Any], stream: TextIO | None = None) -> None:
    """A JSON document on stdout, plain (no colour), for scripts."""
    print(json.dumps(document, ensure_ascii=False, indent=2), file=stream)


def copy_json(copy: Copy) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(copy.movie)
    doc.setdefault("year", None)
    doc["rev"] = copy.rev
    doc["deleted"] = copy.deleted
    return doc


def diff_json(diffs: list[FieldDiff]) -> list[dict[str, Any]]:
    return [
        {
            "field": d.field,
            "values": [{"value": v, "servers": list(map(str, s))} for v, s in d.values],
        }
        for d in diffs
    ]


def read_json(result: ReadResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "server": str(result.server),
        "status": read_status(result),
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
        "deleted": view.deleted,
        "versions": [
            {"servers": list(map(str, g.servers)), **copy_json(g.copy)} for g in view.groups
        ],
        "missing": list(map(str, view.missing)),
        "differences": diff_json(view.differences),
    }


def write_result_json(result: WriteResult) -> dict[str, Any]:
    doc: dict[str, Any] = {"server": str(result.server), "status": result.status.value}
    if result.current is not None:
        doc["current"] = copy_json(result.current)
    if result.error:
        doc["error"] = result.error
    return doc


def get_json(outcome: GetOutcome) -> dict[str, Any]:
    return {
        "query": {"title": outcome.title, "year": outcome.year},
        "servers": [read_json(r) for r in outcome.results],
        "movies": [view_json(v) for v in outcome.movies],
        "suggestions": outcome.suggestions,
        "repairs": [
            {
                "title": r.copy.movie.title,
                "year": r.copy.movie.year,
                "rev": r.copy.rev,
                "servers": [write_result_json(w) for w in r.results],
            }
            for r in outcome.repairs
        ],
        "exit_code": outcome.exit_code,
    }
