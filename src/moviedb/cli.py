"""`moviedb`: argument parsing and rendering only; every command's work is in commands.py."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeVar

import click
from rich.console import Console

from moviedb import commands, render
from moviedb.client.address import parse_address
from moviedb.client.cluster import Cluster
from moviedb.client.security import ServerSecurity
from moviedb.commands import CommandError
from moviedb.errors import ConfigError, InvalidAddress, InvalidMovie
from moviedb.model import ExtraValue, parse_field_value
from moviedb.session import Session

if TYPE_CHECKING:
    from moviedb.data_commands import ExportOutcome

F = TypeVar("F", bound=Callable[..., Any])


class _HasExitCode(Protocol):
    @property
    def exit_code(self) -> int: ...


Outcome = TypeVar("Outcome", bound=_HasExitCode)

# The command list shown by `help` and at the start of the shell, in this order.
COMMANDS: dict[str, str] = {
    "get": "show every server's copy of a movie, grouped where they agree",
    "add": "add a movie to every server that lacks it",
    "edit": "change fields of a movie and write it to every server",
    "delete": "delete a movie on every server (a tombstone that stays deleted)",
    "all": "list the union of every server's movies and whether they agree",
    "sync": "bring every server up to date; conflicts are listed, not decided",
    "conflicts": "list every movie whose servers hold concurrent versions",
    "resolve": "resolve a conflict: take one server's copy, or choose field by field",
    "pending": "list writes queued for servers that did not acknowledge them",
    "search": "find movies by title words, prefixes or typos, with filters",
    "import": "import a JSON, NDJSON, CSV or TSV file into the servers",
    "import-legacy": "read the original design's moviedb.p, serverdb.p and portdb.p safely",
    "export": "export the merged catalog as JSON, NDJSON or CSV",
    "serverlist": "list the servers: up/down, latency, movies, digest, pending writes",
    "addserver": "add a server (HOST:PORT) to the server list",
    "deleteserver": "remove a server (HOST:PORT) from the server list",
    "help": "list the commands, or show one command's options",
}


def _session() -> Session:
    session = click.get_current_context().find_object(Session)
    assert session is not None
    return session


def _cluster(session: Session) -> Cluster:
    """The cluster for a command, after a brief replay of writes queued for its servers."""
    cluster = session.begin_command()
    report = session.replay_pending()
    if report is not None and not session.json_output:
        render.render_replay(session.console, report)
    return cluster


def _show(
    session: Session,
    outcome: Outcome,
    as_json: Callable[[Outcome], dict[str, Any]],
    as_text: Callable[[Console, Outcome], None],
) -> None:
    """Print a command's outcome (one JSON document with --json) and exit with its code."""
    if session.json_output:
        render.print_json(as_json(outcome))
    else:
        as_text(session.console, outcome)
    _finish(outcome.exit_code)


def _finish(code: int) -> None:
    if code:
        click.get_current_context().exit(code)


def command_body(func: F) -> F:
    """Turn the errors a user can cause into a message and an exit code (never a traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = _session()
        if kwargs.pop("json_flag", False):
            session.json_output = True
        try:
            return func(*args, **kwargs)
        except CommandError as exc:
            _fail(session, str(exc), exc.exit_code)
        except (InvalidMovie, InvalidAddress, ConfigError) as exc:
            _fail(session, str(exc), commands.USAGE)
        finally:
            # Queued writes still being delivered beside the command (see Session.replay_pending).
            report = session.settle_replay()
            if report is not None and not session.json_output:
                render.render_replay(session.console, report)
        return None

    return json_option(wrapper)  # type: ignore[return-value]


def json_option(func: F) -> F:
    return click.option(
        "--json", "json_flag", is_flag=True, help="Print one JSON document for scripts."
    )(func)


def _fail(session: Session, message: str, code: int) -> None:
    if session.json_output:
        render.print_json({"error": {"message": message}, "exit_code": code})
    else:
        render.print_error(session.console, message)
    click.get_current_context().exit(code)


def _parse_sets(values: tuple[str, ...]) -> dict[str, ExtraValue | list[str] | None]:
    changes: dict[str, ExtraValue | list[str] | None] = {}
    for item in values:
        name, sep, text = item.partition("=")
        if not sep:
            raise CommandError(
                f"--set {item!r}: expected FIELD=VALUE, e.g. --set director='Ridley Scott'"
            )
        field, value = parse_field_value(name, text)
        changes[field] = value
    return changes


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Server list file (TOML). Default: $MOVIEDB_CONFIG, else the user config dir.",
)
@click.option("--servers", help="Use these servers for this command: HOST:PORT,HOST:PORT,...")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.01),
    help="Seconds to wait for each server (default 2, or `timeout` in the config).",
)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON document for scripts.")
@click.pass_context
def cli(
    ctx: click.Context,
    config_file: str | None,
    servers: str | None,
    timeout: float | None,
    json_output: bool,
) -> None:
    """moviedb: ask every movie server at once, see where they agree, write to all of them.

    Without a command, opens the interactive shell.
    """
    if ctx.find_object(Session) is None:
        session = Session(
            config_file=config_file, servers=servers, timeout=timeout, json_output=json_output
        )
        ctx.obj = session
        ctx.call_on_close(session.close)
    elif json_output:  # `--json get ...` typed in the shell
        _session().json_output = True
    if ctx.invoked_subcommand is None:
        from moviedb.shell import run_shell

        ctx.exit(run_shell(_session(), cli))


@cli.command()
@click.argument("title")
@click.option("--year", type=int, help="Only the movie of this year (remakes share a title).")
@click.option(
    "--repair", is_flag=True, help="Replace stale and missing copies with the newest version."
)
@command_body
def get(title: str, year: int | None, repair: bool) -> None:
    """Show every server's copy of TITLE: grouped where they agree, field by field where not.

    Each movie is labelled agree, stale (older copies of the newest version: safe to repair)
    or conflict (versions changed independently: see `resolve`).
    """
    session = _session()
    cluster = _cluster(session)
    outcome = session.run(
        commands.get(cluster, title, year, repair=repair, queue=session.queue, suggest=True)
    )
    session.remember_titles([v.title for v in outcome.movies])
    _show(session, outcome, render.get_json, render.render_get)


@cli.command()
@click.argument("title")
@click.option("--year", type=int, help="Release year (part of the movie's identity).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="A field to set.")
@click.option("--yes", is_flag=True, help="Overwrite a different existing record.")
@command_body
def add(title: str, year: int | None, sets: tuple[str, ...], yes: bool) -> None:
    """Add TITLE to every server that lacks it.

    Fields: director, cast (comma-separated), genres (comma-separated), runtime_min, rating
    (0-10), plot; any other FIELD is kept as an extra field. Where a server already has the
    movie with different information, the difference is shown and nothing is overwritten
    unless --yes is given.
    """
    session = _session()
    movie = commands.movie_from_args(title, year, _parse_sets(sets))
    outcome = session.run(commands.add(_cluster(session), movie, yes=yes, queue=session.queue))
    _show_write(session, outcome)


@cli.command()
@click.argument("title")
@click.option("--year", type=int, help="Which movie, when several share the title.")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="A field to set.")
@click.option("--unset", multiple=True, metavar="FIELD", help="A field to remove.")
@command_body
def edit(title: str, year: int | None, sets: tuple[str, ...], unset: tuple[str, ...]) -> None:
    """Change fields of TITLE on its newest copy and write it to every server.

    Servers that hold the movie are updated, servers that lack it get it, so the reachable
    servers end up identical.
    """
    session = _session()
    outcome = session.run(
        commands.edit(
            _cluster(session), title, year, _parse_sets(sets), list(unset), queue=session.queue
        )
    )
    _show_write(session, outcome)


def _show_write(session: Session, outcome: commands.WriteOutcome) -> None:
    if outcome.copy is not None:
        session.remember_titles([outcome.copy.movie.title])
    _show(session, outcome, render.write_json, render.render_write)


@cli.command(name="all")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after N movies.")
@command_body
def all_movies(limit: int | None) -> None:
    """List the union of every server's movies, with the servers holding each and whether
    they agree. Streams page by page: memory stays constant however large the catalogs."""
    session = _session()
    cluster = _cluster(session)
    scan = commands.CatalogScan()

    async def stream() -> None:
        first = True
        if session.json_output:
            sys.stdout.write('{"movies": [')
        async for row in commands.catalog(cluster, scan, limit=limit):
            session.remember_titles([row.title])
            if session.json_output:
                sys.stdout.write(
                    ("\n  " if first else ",\n  ")
                    + json.dumps(render.catalog_row_json(row), ensure_ascii=False)
                )
                first = False
            else:
                render.render_catalog_row(session.console, row)

    session.run(stream())
    answered = len(cluster.servers) - len(scan.unreachable)
    code = commands.NO_SERVER if answered == 0 else commands.OK
    if session.json_output:
        tail = {
            "count": scan.rows,
            "unreachable": [{"server": str(s), "error": e} for s, e in scan.unreachable.items()],
            "exit_code": code,
        }
        sys.stdout.write("\n], " + json.dumps(tail, ensure_ascii=False)[1:] + "\n")
        sys.stdout.flush()
    else:
        render.render_catalog_end(session.console, scan, limit)
    _finish(code)


@cli.command()
@command_body
def serverlist() -> None:
    """List every server: up/down, latency, name, movie count, catalog digest (equal digests:
    the servers hold the same versions of every movie) and writes queued for it."""
    session = _session()
    if session.server_list():
        outcome = session.run(commands.serverlist(_cluster(session), session.queue))
    else:  # an empty list is an answer, not an error: the text output says how to add one
        outcome = commands.ServerListOutcome([])
    _show(session, outcome, render.serverlist_json, render.render_serverlist)


@cli.command()
@click.argument("title", required=False)
@click.option("--year", type=int, help="With TITLE: only the movie of this year.")
@click.option("--dry-run", is_flag=True, help="Print the plan (which server gets which write).")
@click.option(
    "--purge-after",
    type=click.FloatRange(min=0),
    default=commands.TOMBSTONE_GRACE_DAYS,
    show_default=True,
    metavar="DAYS",
    help="Purge tombstones this old once every listed server holds them.",
)
@command_body
def sync(title: str | None, year: int | None, dry_run: bool, purge_after: float) -> None:
    """Bring every reachable server up to date (all movies, or TITLE).

    Stale copies are replaced by the newest version, missing movies are copied, deletes are
    spread; conflicts are listed, never decided. Servers compare digests first, so the cost
    grows with the difference, not with the catalog. Writes queued for servers that were down
    are delivered first.
    """
    session = _session()
    cluster = session.cluster()
    with render.progress(session.console, enabled=not session.json_output) as progress:
        outcome = session.run(
            commands.sync(
                cluster,
                title,
                year,
                dry_run=dry_run,
                queue=session.queue,
                progress=progress,
                # Purging needs every server of the list: not with a --servers subset.
                purge_after_days=None if session.servers_override else purge_after,
            )
        )
    _show(session, outcome, render.sync_json, render.render_sync)


@cli.command()
@command_body
def conflicts() -> None:
    """List every movie whose reachable servers hold concurrent versions (see `resolve`)."""
    session = _session()
    cluster = _cluster(session)
    with render.progress(session.console, enabled=not session.json_output) as progress:
        outcome = session.run(commands.conflicts(cluster, progress))
    _show(session, outcome, render.conflicts_json, render.render_conflicts)


@cli.command()
@click.argument("title")
@click.option("--year", type=int, help="Which movie, when several share the title.")
@click.option("--take", metavar="HOST:PORT", help="Take this server's copy as it is.")
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="FIELD=HOST:PORT",
    help="Take FIELD from this server's copy (repeat for each field).",
)
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="Set FIELD to VALUE.")
@click.option("--yes", is_flag=True, help="Write without asking.")
@command_body
def resolve(
    title: str,
    year: int | None,
    take: str | None,
    fields: tuple[str, ...],
    sets: tuple[str, ...],
    yes: bool,
) -> None:
    """Resolve a conflict on TITLE with a version that supersedes every copy.

    Take one server's copy (--take), choose field by field (--field), or set values (--set);
    every field that differs must be decided. Shows the plan first: the shell asks before
    writing, the one-shot form writes only with --yes. In the shell, `resolve TITLE` alone
    walks through the differing fields.
    """
    session = _session()
    cluster = _cluster(session)
    changes = _parse_sets(sets)
    if not take and not fields and not changes and session.interactive:
        view = session.run(commands.conflict_view(cluster, title, year))
        fields = render.choose_fields(session.console, view)
    proposal = session.run(
        commands.resolve_plan(cluster, title, year, take=take, fields=fields, changes=changes)
    )
    _confirm_and_write(session, cluster, proposal, yes)


@cli.command()
@click.argument("title")
@click.option("--year", type=int, help="Which movie, when several share the title.")
@click.option("--yes", is_flag=True, help="Delete without asking.")
@command_body
def delete(title: str, year: int | None, yes: bool) -> None:
    """Delete TITLE on every server with a tombstone, so that a server that missed the delete
    cannot bring it back. Re-adding it afterwards with `add` works. The shell asks first;
    the one-shot form needs --yes (without it, prints what would be deleted and exits 2)."""
    session = _session()
    cluster = _cluster(session)
    proposal = session.run(commands.delete_plan(cluster, title, year))
    _confirm_and_write(session, cluster, proposal, yes)


def _confirm_and_write(
    session: Session, cluster: Cluster, proposal: commands.Proposal, yes: bool
) -> None:
    if not yes and session.interactive and not session.json_output:
        render.render_proposal(session.console, proposal)
        yes = click.confirm("write it to every server?", default=False)
        if not yes:
            session.console.print("nothing was written")
            return
    if not yes:
        if session.json_output:
            render.print_json(render.proposal_json(proposal))
        else:
            render.render_proposal(session.console, proposal)
            session.console.print(
                f"nothing was written; run again with --yes to {proposal.action}", style="yellow"
            )
        _finish(proposal.exit_code)
        return
    outcome = session.run(commands.write_proposal(cluster, proposal, session.queue))
    _show_write(session, outcome)


@cli.command()
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Entries shown."
)
@command_body
def pending(limit: int) -> None:
    """List writes queued for servers that did not acknowledge them (down, timed out, outcome
    unknown): per server the count and the oldest's age. Replayed at the start of later
    commands and by `sync`."""
    session = _session()
    outcome = commands.pending(session.queue, limit=limit)
    _show(session, outcome, render.pending_json, render.render_pending)


@cli.command()
@click.argument("query", required=False, default="")
@click.option("--year", type=int, help="Only movies of this year.")
@click.option("--director", help="Only movies by this director (any part of the name).")
@click.option("--genre", help="Only movies of this genre.")
@click.option("--min-rating", type=click.FloatRange(0, 10), help="Only movies rated this or more.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@command_body
def search(
    query: str,
    year: int | None,
    director: str | None,
    genre: str | None,
    min_rating: float | None,
    limit: int,
) -> None:
    """Find movies by title on every server at once, best match first.

    Case, accents and punctuation do not matter ("amelie" finds "Amélie"), words match by
    prefix ("star w"), and typos are forgiven ("the matirx"). Each result shows the servers
    holding it and whether they agree.
    """
    session = _session()
    cluster = _cluster(session)
    from moviedb import data_commands  # only for the commands that use it

    outcome = session.run(
        data_commands.search(
            cluster,
            query,
            year=year,
            director=director,
            genre=genre,
            min_rating=min_rating,
            limit=limit,
        )
    )
    session.remember_titles([m.view.title for m in outcome.matches])
    _show(session, outcome, render.search_json, render.render_search)


@cli.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "ndjson", "csv", "tsv"]),
    help="The file's format (default: from the extension, else the content).",
)
@click.option("--to", "targets", multiple=True, metavar="HOST:PORT", help="Only these servers.")
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="SOURCE=FIELD",
    help="Read column SOURCE as FIELD (e.g. --map 'Film Name=title').",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the rejected rows (row number, reason, data) to this NDJSON file.",
)
@command_body
def import_command(
    file: Path,
    fmt: str | None,
    targets: tuple[str, ...],
    mapping: tuple[str, ...],
    rejects: Path | None,
) -> None:
    """Import FILE (JSON, NDJSON, CSV or TSV) into every listed server, in batches.

    Common column names are recognised (title/name/movie, year or a release date,
    director(s), genre(s), runtime, rating, cast/actors, plot/overview); other columns are kept
    as extra fields. Rows that cannot be stored are rejected with their row number and reason,
    never dropped silently. Importing the same file again changes nothing.
    """
    session = _session()
    cluster = _cluster(session)
    from moviedb import data_commands  # only for the commands that use it

    plan = data_commands.plan_import(
        file, format=fmt, mapping=mapping, targets=targets, rejects_file=rejects
    )
    with render.progress(
        session.console, enabled=not session.json_output, plain_lines=True
    ) as progress:
        outcome = session.run(data_commands.import_file(cluster, plan, progress=progress))
    _show(session, outcome, render.import_json, render.render_import)


@cli.command(name="import-legacy")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--ports-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("ports.txt"),
    show_default=True,
    help="Where to write the permitted ports read from portdb.p.",
)
@command_body
def import_legacy(directory: Path, ports_file: Path) -> None:
    """Read the original design's moviedb.p, serverdb.p and portdb.p from DIRECTORY.

    The files are read with a restricted unpickler that refuses every class and function, so a
    malicious file cannot run code. Servers go to the server list, ports to a ports file, and
    movies to every listed server.
    """
    session = _session()
    from moviedb import data_commands  # only for the commands that use it

    outcome = data_commands.legacy_setup(
        session.config,
        directory,
        ports_file=ports_file,
        servers_given=bool(session.servers_override),
    )
    if outcome.servers_added:
        session.servers_changed()
    if outcome.found.get("moviedb.p"):
        cluster = _cluster(session)
        outcome = session.run(data_commands.import_legacy_movies(cluster, outcome))
    _show(session, outcome, render.legacy_json, render.render_legacy)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(commands.EXPORT_FORMATS)),
    default="json",
    show_default=True,
)
@click.option("--from", "source", metavar="HOST:PORT", help="One server's catalog only.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=Path("-"),
    help="The file to write (default: standard output).",
)
@command_body
def export(fmt: str, source: str | None, output: Path) -> None:
    """Export the merged catalog of every server (or of --from) as JSON, NDJSON or CSV.

    Streams: memory stays constant however large the catalogs. Each movie is written once, as
    its newest version; deleted movies are left out. Re-importing the file gives the same
    catalog.
    """
    session = _session()
    cluster = _cluster(session)
    to_stdout = str(output) == "-"
    target = "-" if to_stdout else str(output)

    def run(out: TextIO) -> ExportOutcome:
        from moviedb import data_commands  # only for the commands that use it

        return session.run(
            data_commands.export(cluster, out, fmt=fmt, source=source, target=target)
        )

    if to_stdout:
        outcome = run(sys.stdout)
    else:
        tmp = output.with_name(output.name + ".part")
        with tmp.open("w", encoding="utf-8", newline="") as out:
            outcome = run(out)
        if outcome.exit_code == commands.OK:
            tmp.replace(output)  # a finished file, or none: never half an export under the name
        else:
            tmp.unlink()
            outcome = dataclasses.replace(outcome, written=False)
    # With the records on stdout, the summary goes to stderr.
    console = Console(stderr=True, highlight=False) if to_stdout else session.console
    if session.json_output and not to_stdout:
        render.print_json(render.export_json(outcome))
    else:
        render.render_export(console, outcome)
    _finish(outcome.exit_code)


@cli.command()
@click.argument("address", metavar="HOST:PORT")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The server's token is in this file (kept as a path in the config, never copied).",
)
@click.option("--tls", is_flag=True, help="Speak TLS, verifying against the system's CAs.")
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Speak TLS, trusting this CA certificate file (PEM) for this server.",
)
@click.option(
    "--insecure", is_flag=True, help="Allow sending the token to another machine without TLS."
)
@click.option("--plain", is_flag=True, help="Forget this server's token and TLS settings.")
@command_body
def addserver(
    address: str,
    token_file: Path | None,
    tls: bool,
    ca: Path | None,
    insecure: bool,
    plain: bool,
) -> None:
    """Add the server at HOST:PORT to the server list (and say whether it answers).

    Run it again with --token-file, --tls, --ca or --insecure to change how a listed server is
    reached (what is not given is kept), or with --plain alone to forget all of it.
    """
    session = _session()
    security = None
    if plain and (token_file or tls or ca or insecure):
        raise CommandError("--plain forgets the token and TLS: give it alone", commands.USAGE)
    if plain:
        security = ServerSecurity()
    elif token_file or tls or ca or insecure:
        old = session.config.security.get(parse_address(address), ServerSecurity())
        security = old.updated(token_file=token_file, tls=tls, ca=ca, insecure=insecure)
    change = session.run(
        commands.addserver(session.config, address, timeout=session.timeout, security=security)
    )
    session.servers_changed()
    _show_config_change(session, change)


@cli.command()
@click.argument("address", metavar="HOST:PORT")
@command_body
def deleteserver(address: str) -> None:
    """Remove the server at HOST:PORT from the server list."""
    session = _session()
    change = commands.deleteserver(session.config, address)
    session.queue.drop_server(change.server)
    session.servers_changed()
    _show_config_change(session, change)


def _show_config_change(session: Session, change: commands.ConfigChange) -> None:
    if session.json_output:
        render.print_json(render.config_change_json(change))
    else:
        render.render_config_change(session.console, change)


@cli.command(name="help")
@click.argument("command", required=False)
@click.pass_context
def help_command(ctx: click.Context, command: str | None) -> None:
    """List the commands, or show the options of COMMAND."""
    if command is None:
        click.echo(command_list())
        return
    sub = cli.get_command(ctx, command)
    if sub is None:
        raise click.UsageError(f"no command {command!r}; commands: {', '.join(COMMANDS)}")
    with click.Context(sub, info_name=command, parent=ctx.parent) as sub_ctx:
        click.echo(sub.get_help(sub_ctx))


@cli.command()
def shell() -> None:
    """Open the interactive shell (the same commands, with completion and history)."""
    from moviedb.shell import run_shell

    click.get_current_context().exit(run_shell(_session(), cli))


def command_list(extra: dict[str, str] | None = None) -> str:
    entries = {**COMMANDS, **(extra or {})}
    width = max(map(len, entries))
    lines = [f"  {name.ljust(width)}  {text}" for name, text in entries.items()]
    return "Commands:\n" + "\n".join(lines)


def main() -> None:
    cli(prog_name="moviedb")


__all__ = ["COMMANDS", "cli", "command_list", "main"]


if __name__ == "__main__":
    main()
