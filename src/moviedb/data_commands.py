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

import msgspec

from moviedb import protocol
from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import Cluster, ReadResult, ReadStatus, WriteResult, WriteStatus
from moviedb.client.config import Config, save
from moviedb.client.reconcile import MovieView, reconcile
from moviedb.client.sync import Progress
from moviedb.commands import (
    EXPORT_FORMATS,
    NO_SERVER,
    OK,
    PARTIAL_WRITE,
    USAGE,
    CatalogScan,
    CommandError,
)
from moviedb.commands import merged_copies as merged
from moviedb.errors import ServerUnavailable
from moviedb.model import KNOWN_FIELDS, MAX_YEAR, MIN_YEAR, Movie, fold_title
from moviedb.protocol import MAX_PAGE, Search
from moviedb.versions import Copy, first_copy, newest

BATCH: Final = 500  # rows per put_batch request, at most
BATCH_BYTES: Final = 512 * 1024  # and at most this much JSON (the server's line limit is 1 MiB)
IN_FLIGHT: Final = 4  # batches awaiting their replies, per import

_encode: Final = msgspec.json.Encoder().encode


# --- import ---------------------------------------------------------------------------------------


@dataclass
class ServerImport:
    """What one server did with the imported rows."""

    server: Address
    stored: int = 0  # written: the server did not have this record
    unchanged: int = 0  # the server had it already (or a newer version of it)
    conflicts: int = 0  # the server holds a different record of that movie: kept, not replaced
    unknown: int = 0  # sent, no answer in time: maybe stored (`sync` settles it)
    failed: int = 0  # not stored: the server was down or refused it (`sync` copies it later)
    error: str | None = None  # the last failure, for the summary
    down: bool = False  # stopped answering: the rest of the rows were not sent to it

    def count(self, results: Sequence[WriteResult]) -> None:
        for result in results:
            status = result.status
            if status is WriteStatus.APPLIED:
                self.stored += 1
            elif status in (WriteStatus.UNCHANGED, WriteStatus.STALE):
                self.unchanged += 1
            elif status is WriteStatus.CONFLICT:
                self.conflicts += 1
            elif status is WriteStatus.UNKNOWN:
                self.unknown += 1
                self.error = result.error or status.value
            else:
                self.failed += 1
                self.error = result.error or status.value
            if status in (WriteStatus.UNKNOWN, WriteStatus.UNREACHABLE):
                self.down = True

    def skip(self, count: int) -> None:
        """Rows not sent: the server stopped answering earlier in this import."""
        self.failed += count

    @property
    def incomplete(self) -> bool:
        return bool(self.failed or self.unknown)


@dataclass
class ImportOutcome:
    source: str
    format: str
    rows: int = 0  # rows read (stored or rejected)
    rejected: int = 0
    duplicates: int = 0  # of the rejected: the same movie as an earlier row, with other data
    rejects_file: str | None = None
    rejections: list[tuple[int, str]] = field(default_factory=list)  # the first few, for display
    servers: dict[Address, ServerImport] = field(default_factory=dict)
    stopped: str | None = None  # the file could not be read past this point: why
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        results = list(self.servers.values())
        nothing = not any(r.stored or r.unchanged or r.unknown for r in results)
        if self.stopped is not None:
            return USAGE if nothing else PARTIAL_WRITE
        if results and all(r.incomplete for r in results) and nothing:
            return NO_SERVER
        if any(r.incomplete for r in results):
            return PARTIAL_WRITE
        return OK


SHOWN_REJECTIONS: Final = 20


class _Duplicates:
    """Rows naming a movie an earlier row of the same file named with other data.

    Keeps one small integer per movie (about 100 bytes a row in CPython), not the rows.
    """

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}

    def check(self, copy: Copy, row: int) -> int | None:
        """The earlier row's number if it named this movie with a different record."""
        key = hash(copy.key)
        revision = hash(copy.rev) & 0xFFFFFFFF
        earlier = self._seen.get(key)
        if earlier is None:
            self._seen[key] = row << 32 | revision
            return None
        if earlier & 0xFFFFFFFF == revision:
            return None  # the very same record again: harmless
        return earlier >> 32


async def import_rows(
    cluster: Cluster,
    rows: Iterable[Any],
    outcome: ImportOutcome,
    *,
    rejects: Any | None = None,
    progress: Progress | None = None,
) -> ImportOutcome:
    """Write every row (importers.Row) to the cluster's servers in batches; count rejections.

    A server that stops answering gets no more batches (its remaining rows count as failed), so
    a hung server costs one timeout, not one per batch. A file that cannot be read past some row
    stops the import there: what was read before is stored, and `stopped` says why.
    """
    from moviedb.importers import ImportFormatError, Rejected

    servers = list(cluster.servers)
    for server in servers:
        outcome.servers.setdefault(server, ServerImport(server))
    started = time.perf_counter()
    pending: list[asyncio.Task[None]] = []
    duplicates = _Duplicates()

    async def send(batch: list[msgspec.Raw]) -> None:
        live = [s for s in servers if not outcome.servers[s].down]
        for server in servers:
            if outcome.servers[server].down:
                outcome.servers[server].skip(len(batch))
        replies = await asyncio.gather(*(cluster.put_batch(s, batch) for s in live))
        for server, results in zip(live, replies, strict=True):
            outcome.servers[server].count(results)

    async def flush(batch: list[msgspec.Raw]) -> None:
        pending.append(asyncio.create_task(send(batch)))
        if len(pending) >= IN_FLIGHT:
            await pending.pop(0)

    def reject(number: int, reason: str, data: Any) -> None:
        outcome.rejected += 1
        if len(outcome.rejections) < SHOWN_REJECTIONS:
            outcome.rejections.append((number, reason))
        if rejects is not None:
            rejects.write(Rejected(number, reason, data))

    batch: list[msgspec.Raw] = []  # each copy encoded once, for every server
    size = 0
    try:
        for item in rows:
            outcome.rows += 1
            if isinstance(item, Rejected):
                reject(item.number, item.reason, item.data)
            else:
                copy = first_copy(item.movie)
                earlier = duplicates.check(copy, item.number)
                if earlier is not None:
                    outcome.duplicates += 1
                    reject(
                        item.number,
                        f"the same movie as row {earlier} ({copy.movie.title}, "
                        f"{copy.movie.year or 'no year'}) with different data; one row per movie",
                        export_record(copy.movie),
                    )
                else:
                    encoded = _encode(copy)
                    if batch and (len(batch) >= BATCH or size + len(encoded) > BATCH_BYTES):
                        await flush(batch)
                        batch, size = [], 0
                    batch.append(msgspec.Raw(encoded))
                    size += len(encoded)
            if progress and outcome.rows % 1000 == 0:
                progress("import", outcome.rows, 0)
                await asyncio.sleep(0)  # let replies be read while the file is parsed
    except ImportFormatError as exc:
        outcome.stopped = str(exc)
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
    if rejects_file is not None and rejects_file.resolve() == path.resolve():
        raise CommandError(f"--rejects {rejects_file} is the file being imported; name another")
    try:
        fmt = detect_format(path, format)
        columns = parse_mapping(mapping)
    except (ImportFormatError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    addresses = list(dict.fromkeys(parse_address(t) for t in targets))
    return ImportPlan(path, fmt, columns, addresses, rejects_file)


async def import_file(
    cluster: Cluster, plan: ImportPlan, *, progress: Progress | None = None
) -> ImportOutcome:
    """Stream the file into the servers (all listed, or the plan's targets), rejecting what
    cannot be stored (each rejection with its row number and reason, in the rejects file)."""
    from moviedb.importers import ImportFormatError, RejectsWriter, read_rows

    rejects_name = str(plan.rejects_file) if plan.rejects_file else None
    outcome = ImportOutcome(str(plan.path), plan.format, rejects_file=rejects_name)
    rows = read_rows(plan.path, format=plan.format, mapping=plan.mapping)
    # --to: exactly those servers, listed or not.
    own = cluster.subset(plan.targets) if plan.targets else None
    try:
        if plan.rejects_file is None:
            return await import_rows(own or cluster, rows, outcome, progress=progress)
        with RejectsWriter(plan.rejects_file) as rejects:
            return await import_rows(
                own or cluster, rows, outcome, rejects=rejects, progress=progress
            )
    except ImportFormatError as exc:
        raise CommandError(str(exc)) from None  # before the first row: nothing was sent
    finally:
        if own is not None:
            await own.aclose()


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
    # moviedb.p as legacy_setup read and checked it, for import_legacy_movies (read once).
    rows: Iterable[Any] | None = field(default=None, repr=False)  # importers.Row, Rejected

    @property
    def exit_code(self) -> int:
        return self.movies.exit_code if self.movies is not None else OK


def legacy_ports_text(ports: Sequence[int]) -> str:
    return "# permitted ports, from the original design's portdb.p\n" + "".join(
        f"{p}\n" for p in ports
    )


def legacy_setup(
    config: Config, directory: Path, *, ports_file: Path, servers_given: bool = False
) -> LegacyOutcome:
    """The original design's files, first part: servers to the server list, ports to a ports
    file (never overwriting one). Every file is read and checked before anything is written.
    The movies follow with `import_legacy_movies`."""
    from moviedb.legacy import LegacyError, find_files, read_movies, read_ports, read_servers

    try:
        found = find_files(directory)
        outcome = LegacyOutcome(str(directory), {k: str(v) for k, v in found.items()})
        if "moviedb.p" in found:
            # Loaded and its shape checked here, before any other file is written.
            outcome.rows = read_movies(found["moviedb.p"])
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
        if "moviedb.p" in found and not config.servers and not servers_given:
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
    path, rows = outcome.found.get("moviedb.p"), outcome.rows
    if path is None or rows is None:
        return outcome
    outcome.rows = None  # the rows are read once
    outcome.movies = await import_rows(
        cluster, rows, ImportOutcome(path, "pickle"), progress=progress
    )
    return outcome


# --- export ---------------------------------------------------------------------------------------

CSV_COLUMNS: Final = (*KNOWN_FIELDS, "extra")


@dataclass
class ExportOutcome:
    format: str
    target: str
    movies: int = 0
    conflicts: int = 0  # movies whose servers hold concurrent versions: the newest generation
    unreachable: dict[Address, str] = field(default_factory=dict)
    written: bool = True  # False: an incomplete export was not put in place of the file

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
    """Lists and extra fields as JSON text (a name may hold a comma or a semicolon), numbers
    at full precision: `import` reads every cell back to the same value."""
    doc = export_record(movie)
    row: list[str] = []
    for name in CSV_COLUMNS:
        value = doc.get(name)
        if value is None:
            row.append("")
        elif name == "extra":
            row.append(json.dumps(value, ensure_ascii=False, sort_keys=True))
        elif isinstance(value, list):
            row.append(json.dumps(value, ensure_ascii=False))
        elif isinstance(value, float):
            row.append(repr(value))
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
        cluster = cluster.subset([address])
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
    no_filter = director is None and genre is None and year is None and min_rating is None
    if not query.strip() and no_filter:
        raise CommandError(
            "search needs words, or a filter: --year, --director, --genre, --min-rating"
        )
    if not 1 <= limit <= MAX_PAGE:
        raise CommandError(f"--limit must be 1 to {MAX_PAGE}")
    if year is not None and not MIN_YEAR <= year <= MAX_YEAR:
        raise CommandError(f"--year {year} is not a year; accepted: {MIN_YEAR} to {MAX_YEAR}")
    for name, value in (("--director", director), ("--genre", genre)):
        if value is not None and not value.strip():
            raise CommandError(f"{name} must not be blank")
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
    unreachable: dict[Address, str] = {}
    own: dict[Address, dict[str, Copy]] = {}  # each answering server's copies of its hits
    more = False
    for server, reply in replies.items():
        if isinstance(reply, str):
            if reply.startswith(protocol.BAD_REQUEST):
                raise CommandError(f"{server} refused the search: {reply}")
            unreachable[server] = reply
            continue
        own[server] = {hit.copy.key: hit.copy for hit in reply.hits}
        more = more or reply.more
        for hit in reply.hits:
            scores[hit.copy.key] = max(scores.get(hit.copy.key, 0.0), hit.score)
    # A server's hits are its own copies: another server may hold a newer version (an edit
    # that no longer matches the filters, a delete). Each answering server's copy of every
    # hit is read (those it did not return itself), and the newest version decides.
    keys = sorted(scores)
    others = {s: [k for k in keys if k not in hits] for s, hits in own.items()}
    fetched = await asyncio.gather(*(_fetch_or_none(cluster, s, others[s]) for s in own))
    results = []
    for (server, hits), copies in zip(own.items(), fetched, strict=True):
        if copies is None:
            unreachable[server] = "no answer while reading the matches"
            continue
        copies = [*hits.values(), *copies]
        status = ReadStatus.FOUND if copies else ReadStatus.MISSING
        results.append(ReadResult(server, status, copies))
    wanted = _Filters(year, director, genre, min_rating)
    views = [v for v in reconcile(results) if v.live and not v.deleted and wanted.accept(v)]
    ranked = sorted(views, key=lambda v: (-scores[v.key], *_order(v)))
    matches = [SearchMatch(scores[v.key], v) for v in ranked[:limit]]
    more = more or len(ranked) > limit
    return SearchOutcome(query, matches, unreachable, len(results), more)


async def _fetch_or_none(cluster: Cluster, server: Address, keys: list[str]) -> list[Copy] | None:
    if not keys:
        return []
    try:
        return await cluster.fetch(server, keys)
    except ServerUnavailable:
        return None


def _order(view: MovieView) -> tuple[float, float, str]:
    """Ties between equal scores, as the servers break them: best rated (unrated last), then
    newest year (no year last), then key."""
    movie = (view.newest or view.groups[0].copy).movie
    rating = -movie.rating if movie.rating is not None else 1.0
    year = -movie.year if movie.year is not None else 1.0
    return (rating, year, view.key)


@dataclass(frozen=True)
class _Filters:
    """The search filters, applied again to the newest version of each match."""

    year: int | None
    director: str | None
    genre: str | None
    min_rating: float | None

    def accept(self, view: MovieView) -> bool:
        copy = view.newest
        if copy is None:
            return True  # in conflict: shown, with its state, for a person to see
        movie = copy.movie
        if self.year is not None and movie.year != self.year:
            return False
        if self.min_rating is not None and (movie.rating is None or movie.rating < self.min_rating):
            return False
        if self.director is not None:
            name = f" {fold_title(movie.director or '')} "
            if f" {fold_title(self.director)} " not in name:
                return False
        if self.genre is not None:
            wanted = fold_title(self.genre)
            if not any(fold_title(g) == wanted for g in movie.genres):
                return False
        return True


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
