"""Commands that move catalogs in and out, and find movies: import, import-legacy, export, search.

Like commands.py, each function talks to the client library and returns data; only the CLI and
the renderers print.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import Cluster, ReadResult, ReadStatus, WriteResult, WriteStatus
from moviedb.client.config import Config, save
from moviedb.client.reconcile import MovieView, reconcile
from moviedb.client.sync import Progress
from moviedb.commands import NO_SERVER, OK, PARTIAL_WRITE, USAGE, CatalogScan, CommandError
from moviedb.commands import merged_copies as merged
from moviedb.model import KNOWN_FIELDS, Movie
from moviedb.protocol import MAX_PAGE, Search
from moviedb.versions import Copy, first_copy, newest

BATCH: Final = 500  # rows per put_batch request
IN_FLIGHT: Final = 4  # batches awaiting their replies, per import


# --- import ---------------------------------------------------------------------------------------


@dataclass
class ServerImport:
    """What one server did with the imported rows."""

    server: Address
    stored: int = 0  # written: the server did not have this record
    unchanged: int = 0  # the server had it already (or a newer version of it)
    conflicts: int = 0  # the server holds a different record of that movie: kept, not replaced
    failed: int = 0  # not acknowledged (down, timeout) or refused: `sync` later copies them
    error: str | None = None  # the last failure, for the summary

    def count(self, results: Sequence[WriteResult]) -> None:
        for result in results:
            if result.status is WriteStatus.APPLIED:
                self.stored += 1
            elif result.status in (WriteStatus.UNCHANGED, WriteStatus.STALE):
                self.unchanged += 1
            elif result.status is WriteStatus.CONFLICT:
                self.conflicts += 1
            else:
                self.failed += 1
                self.error = result.error or result.status.value


@dataclass
class ImportOutcome:
    source: str
    format: str
    rows: int = 0  # rows read (stored or rejected)
    rejected: int = 0
    rejects_file: str | None = None
    rejections: list[tuple[int, str]] = field(default_factory=list)  # the first few, for display
    servers: dict[Address, ServerImport] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        results = list(self.servers.values())
        if results and all(r.failed and not (r.stored or r.unchanged) for r in results):
            return NO_SERVER
        if any(r.failed for r in results):
            return PARTIAL_WRITE
        return OK


SHOWN_REJECTIONS: Final = 20


async def import_rows(
    cluster: Cluster,
    rows: Iterable[Any],
    outcome: ImportOutcome,
    *,
    targets: Sequence[Address] | None = None,
    rejects: Any | None = None,
    progress: Progress | None = None,
) -> ImportOutcome:
    """Write every row (importers.Row) to the target servers in batches; count rejections."""
    from moviedb.importers import Rejected

    servers = list(targets or cluster.servers)
    for server in servers:
        outcome.servers.setdefault(server, ServerImport(server))
    started = time.perf_counter()
    pending: list[asyncio.Task[None]] = []

    async def send(batch: list[Copy]) -> None:
        replies = await asyncio.gather(*(cluster.put_batch(s, batch) for s in servers))
        for server, results in zip(servers, replies, strict=True):
            outcome.servers[server].count(results)

    async def flush(batch: list[Copy]) -> None:
        pending.append(asyncio.create_task(send(batch)))
        if len(pending) >= IN_FLIGHT:
            await pending.pop(0)

    batch: list[Copy] = []
    for item in rows:
        outcome.rows += 1
        if isinstance(item, Rejected):
            outcome.rejected += 1
            if len(outcome.rejections) < SHOWN_REJECTIONS:
                outcome.rejections.append((item.number, item.reason))
            if rejects is not None:
                rejects.write(item)
        else:
            batch.append(first_copy(item.movie))
            if len(batch) >= BATCH:
                await flush(batch)
                batch = []
        if progress and outcome.rows % 1000 == 0:
            progress("import", outcome.rows, 0)
            await asyncio.sleep(0)  # let replies be read while the file is parsed
    if batch:
        await flush(batch)
    for task in pending:
        await task
    outcome.seconds = time.perf_counter() - started
    if progress:
        progress("import", outcome.rows, outcome.rows)
    return outcome


@dataclass(frozen=True)
class ImportPlan:
    """An import checked before anything is sent: the file, its format, the column mapping."""

    path: Path
    format: str
    mapping: dict[str, str]
    targets: list[Address]
    rejects_file: Path | None


def plan_import(
    path: Path,
    *,
    format: str | None = None,
    mapping: Sequence[str] = (),
    targets: Sequence[str] = (),
    rejects_file: Path | None = None,
) -> ImportPlan:
    """Check the arguments (the file exists, the format is known, --map is well formed)."""
    from moviedb.importers import ImportFormatError, detect_format, parse_mapping

    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    try:
        fmt = detect_format(path, format)
        columns = parse_mapping(mapping)
    except (ImportFormatError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    return ImportPlan(path, fmt, columns, [parse_address(t) for t in targets], rejects_file)


async def import_file(
    cluster: Cluster, plan: ImportPlan, *, progress: Progress | None = None
) -> ImportOutcome:
    """Stream the file into the servers (all listed, or the plan's targets), rejecting what
    cannot be stored (each rejection with its row number and reason, in the rejects file)."""
    from moviedb.importers import ImportFormatError, RejectsWriter, read_rows

    rejects_name = str(plan.rejects_file) if plan.rejects_file else None
    outcome = ImportOutcome(str(plan.path), plan.format, rejects_file=rejects_name)
    rows = read_rows(plan.path, format=plan.format, mapping=plan.mapping)
    try:
        if plan.rejects_file is None:
            return await import_rows(
                cluster, rows, outcome, targets=plan.targets, progress=progress
            )
        with RejectsWriter(plan.rejects_file) as rejects:
            return await import_rows(
                cluster, rows, outcome, targets=plan.targets, rejects=rejects, progress=progress
            )
    except ImportFormatError as exc:
        raise CommandError(str(exc)) from None


# --- import-legacy --------------------------------------------------------------------------------


@dataclass
class LegacyOutcome:
    directory: str
    found: dict[str, str]  # file name -> path
    servers_added: list[Address] = field(default_factory=list)
    servers_known: list[Address] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    ports_file: str | None = None
    movies: ImportOutcome | None = None

    @property
    def exit_code(self) -> int:
        return self.movies.exit_code if self.movies is not None else OK


def legacy_ports_text(ports: Sequence[int]) -> str:
    return "# permitted ports, from the original design's portdb.p\n" + "".join(
        f"{p}\n" for p in ports
    )


def legacy_setup(config: Config, directory: Path, *, ports_file: Path) -> LegacyOutcome:
    """The original design's files, first part: servers to the server list, ports to a ports
    file (never overwriting one). The movies follow with `import_legacy_movies`."""
    from moviedb.legacy import LegacyError, find_files, read_ports, read_servers

    try:
        found = find_files(directory)
        outcome = LegacyOutcome(str(directory), {k: str(v) for k, v in found.items()})
        if "portdb.p" in found:
            outcome.ports = read_ports(found["portdb.p"])
            if ports_file.exists():
                raise CommandError(
                    f"{ports_file} exists; choose another with --ports-file (nothing was written)"
                )
        if "serverdb.p" in found:
            for host, port in read_servers(found["serverdb.p"]):
                address = Address(host, port)
                if config.add_server(address):
                    outcome.servers_added.append(address)
                else:
                    outcome.servers_known.append(address)
        if "moviedb.p" in found and not config.servers:
            raise CommandError(
                "no servers to import the movies into: add one with `moviedb addserver` or "
                "put serverdb.p next to moviedb.p"
            )
    except LegacyError as exc:
        raise CommandError(str(exc)) from None
    if outcome.servers_added:
        save(config)
    if outcome.ports:
        ports_file.write_text(legacy_ports_text(outcome.ports), encoding="utf-8")
        outcome.ports_file = str(ports_file)
    return outcome


async def import_legacy_movies(
    cluster: Cluster, outcome: LegacyOutcome, *, progress: Progress | None = None
) -> LegacyOutcome:
    """The original design's files, second part: moviedb.p to every listed server."""
    from moviedb.legacy import LegacyError, read_movies

    path = outcome.found.get("moviedb.p")
    if path is None:
        return outcome
    try:
        movies = ImportOutcome(path, "pickle")
        outcome.movies = await import_rows(
            cluster, read_movies(Path(path)), movies, progress=progress
        )
    except LegacyError as exc:
        raise CommandError(str(exc)) from None
    return outcome


# --- export ---------------------------------------------------------------------------------------

EXPORT_FORMATS: Final = ("json", "ndjson", "csv")
CSV_COLUMNS: Final = (*KNOWN_FIELDS, "extra")


@dataclass
class ExportOutcome:
    format: str
    target: str
    movies: int = 0
    conflicts: int = 0  # movies whose servers hold concurrent versions: the newest generation
    unreachable: dict[Address, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.unreachable and not self.movies:
            return NO_SERVER
        return PARTIAL_WRITE if self.unreachable else OK


def export_record(movie: Movie) -> dict[str, Any]:
    """A movie as exported: the standard fields, and `extra` as one object (never flattened,
    so that an extra field named like a column synonym cannot be misread on import)."""
    doc: dict[str, Any] = {"title": movie.title, "year": movie.year}
    for name in KNOWN_FIELDS[2:]:
        value = getattr(movie, name)
        if value is not None and value != []:
            doc[name] = value
    if movie.extra:
        doc["extra"] = dict(movie.extra)
    return doc


def _csv_row(movie: Movie) -> list[str]:
    doc = export_record(movie)
    row: list[str] = []
    for name in CSV_COLUMNS:
        value = doc.get(name)
        if value is None:
            row.append("")
        elif name == "extra":
            row.append(json.dumps(value, ensure_ascii=False, sort_keys=True))
        elif isinstance(value, list):
            row.append("; ".join(value))
        elif isinstance(value, float):
            row.append(f"{value:g}")
        else:
            row.append(str(value))
    return row


class _Writer:
    """Streams records in one of the export formats to a text file."""

    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out, self.fmt, self.count = out, fmt, 0
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)
        elif fmt == "json":
            out.write("[")

    def write(self, movie: Movie) -> None:
        if self._csv is not None:
            self._csv.writerow(_csv_row(movie))
        else:
            text = json.dumps(export_record(movie), ensure_ascii=False)
            if self.fmt == "json":
                text = ("\n  " if self.count == 0 else ",\n  ") + text
            else:
                text += "\n"
            self.out.write(text)
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


def _chosen(copies: dict[Address, Copy]) -> tuple[Copy | None, bool]:
    """The version to export and whether the servers hold concurrent versions."""
    best = newest(list(copies.values()))
    if best is not None:
        return (None if best.deleted else best), False
    live = sorted((c for c in copies.values() if not c.deleted), key=lambda c: (-_gen(c), c.rev))
    return (live[0] if live else None), True


def _gen(copy: Copy) -> int:
    return int(copy.rev.partition("-")[0])


async def export(
    cluster: Cluster,
    out: IO[str],
    *,
    fmt: str = "json",
    source: str | None = None,
    target: str = "-",
    progress: Progress | None = None,
) -> ExportOutcome:
    """The merged view of every server (or of `source` alone), streamed: one page per server
    in memory. A movie is exported as its newest version; deleted movies are left out."""
    if fmt not in EXPORT_FORMATS:
        raise CommandError(f"--format {fmt!r}: accepted: {', '.join(EXPORT_FORMATS)}", USAGE)
    if source is not None:
        address = parse_address(source)
        cluster = Cluster([address], timeout=cluster.timeout)
    outcome = ExportOutcome(fmt, target)
    writer = _Writer(out, fmt)
    scan = CatalogScan()
    try:
        async for _, copies in merged(cluster, scan):
            chosen, conflicting = _chosen(copies)
            if chosen is None:
                continue
            outcome.conflicts += conflicting
            writer.write(chosen.movie)
            if progress and writer.count % 1000 == 0:
                progress("export", writer.count, 0)
    finally:
        writer.close()
        if source is not None:
            await cluster.aclose()
    outcome.movies = writer.count
    outcome.unreachable = dict(scan.unreachable)
    return outcome


# --- search ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchMatch:
    score: float
    view: MovieView  # the servers holding the movie, their versions and state


@dataclass(frozen=True)
class SearchOutcome:
    query: str
    matches: list[SearchMatch]
    unreachable: dict[Address, str]
    answered: int
    more: bool

    @property
    def exit_code(self) -> int:
        if not self.answered:
            return NO_SERVER
        return OK if self.matches else 1


async def search(
    cluster: Cluster,
    query: str,
    *,
    year: int | None = None,
    director: str | None = None,
    genre: str | None = None,
    min_rating: float | None = None,
    limit: int = 20,
) -> SearchOutcome:
    """Every server searched at once; the hits merged by movie with the servers that hold it,
    best first (a movie's score is its best score on any server)."""
    if not query.strip() and director is None and genre is None and year is None:
        raise CommandError("search needs words, or a filter: --year, --director, --genre")
    if not 1 <= limit <= MAX_PAGE:
        raise CommandError(f"--limit must be 1 to {MAX_PAGE}")
    request = Search(
        query=query,
        year=year,
        director=director,
        genre=genre,
        min_rating=min_rating,
        limit=limit,
    )
    replies = await cluster.search(request)
    scores: dict[str, float] = {}
    results: list[ReadResult] = []
    unreachable: dict[Address, str] = {}
    more = False
    for server, reply in replies.items():
        if isinstance(reply, str):
            unreachable[server] = reply
            continue
        more = more or reply.more
        for hit in reply.hits:
            scores[hit.copy.key] = max(scores.get(hit.copy.key, 0.0), hit.score)
        copies = [h.copy for h in reply.hits]
        results.append(
            ReadResult(server, ReadStatus.FOUND if copies else ReadStatus.MISSING, copies)
        )
    views = {v.key: v for v in reconcile(results)}
    ranked = sorted(
        views.values(),
        key=lambda v: (-scores[v.key], -(v.groups[0].copy.movie.rating or 0), v.key),
    )
    matches = [SearchMatch(scores[v.key], v) for v in ranked[:limit]]
    more = more or len(ranked) > limit
    return SearchOutcome(query, matches, unreachable, len(results), more)


async def suggestions(cluster: Cluster, title: str, limit: int = 5) -> list[str]:
    """The closest titles to one that matched nothing ("did you mean"), best first."""
    try:
        found = await search(cluster, title, limit=limit)
    except CommandError:
        return []
    names: list[str] = []
    for match in found.matches:
        movie = match.view.groups[0].copy.movie
        name = f"{movie.title} ({movie.year})" if movie.year is not None else movie.title
        if name not in names:
            names.append(name)
    return names


__all__ = [
    "EXPORT_FORMATS",
    "ExportOutcome",
    "ImportOutcome",
    "LegacyOutcome",
    "SearchOutcome",
    "export",
    "import_file",
    "import_legacy_movies",
    "legacy_setup",
    "plan_import",
    "search",
    "suggestions",
]
