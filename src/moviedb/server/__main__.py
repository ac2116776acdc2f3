"""`moviedb-server`: flags, signals, and the event loop (uvloop where installed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click

from moviedb.server.app import Limits, MoviedbServer, NoFreePort
from moviedb.server.ports import DEFAULT_PORTS, PortSpecError, parse_ports, read_ports_file

log = logging.getLogger("moviedb.server")


def run_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a coroutine on uvloop when it is installed, else on the standard loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def serve(server: MoviedbServer, host: str, ports: list[int]) -> int:
    try:
        port = await server.start(host, ports)
    except NoFreePort as exc:
        click.echo(f"moviedb-server: {exc}", err=True)
        return 2
    except sqlite3.Error as exc:
        click.echo(f"moviedb-server: cannot open the database {server.db_path}: {exc}", err=True)
        return 1
    except OSError as exc:
        click.echo(f"moviedb-server: cannot listen on {host}: {exc.strerror or exc}", err=True)
        return 1
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(
        f"moviedb-server {server.state.name} listening on {shown_host}:{port} "
        f"(db {server.db_path}, {server.state.committer.live_count} movies)"
    )
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    click.echo(f"moviedb-server {server.state.name}: stopping")
    await server.stop()
    committer = server.state.committer
    click.echo(
        f"moviedb-server {server.state.name}: stopped after {committer.writes} writes "
        f"in {committer.commits} transactions"
    )
    return 0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--ports",
    "port_spec",
    default=DEFAULT_PORTS,
    show_default=True,
    help="Permitted ports, tried in order; the first free one is used. 0 = any free port.",
)
@click.option(
    "--ports-file",
    type=click.Path(dir_okay=False),
    help="Read the permitted ports from a file: one port or LOW-HIGH range a line, # comments.",
)
@click.option(
    "--db",
    default="moviedb.sqlite3",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The SQLite database file (created if missing).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--name", default="", help="A name shown to clients (default: from the server id).")
@click.option(
    "--max-line",
    default=Limits.max_line,
    show_default=True,
    type=click.IntRange(1024),
    help="Longest request line in bytes.",
)
@click.option(
    "--max-connections", default=Limits.max_connections, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--idle-timeout",
    default=Limits.idle_timeout,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a connection may stay silent before it is closed.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every connection event.")
def main(
    port_spec: str,
    ports_file: str | None,
    db: str,
    host: str,
    name: str,
    max_line: int,
    max_connections: int,
    idle_timeout: float,
    verbose: bool,
) -> None:
    """Serve one moviedb database over TCP (newline-delimited JSON, see docs/protocol.md)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        ports = read_ports_file(ports_file) if ports_file else parse_ports(port_spec)
    except PortSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--ports/--ports-file") from None
    limits = Limits(max_line=max_line, max_connections=max_connections, idle_timeout=idle_timeout)
    server = MoviedbServer(db, name=name, limits=limits)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(run_loop(lambda: serve(server, host, ports)))


if __name__ == "__main__":
    main()
