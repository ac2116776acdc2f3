"""`moviedb-server`: flags, signals, and the event loop (uvloop where installed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sqlite3
import ssl
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click

from moviedb.model import MAX_RECORD_BYTES
from moviedb.server.app import Limits, MoviedbServer, NoFreePort
from moviedb.server.auth import TokenFileError, Tokens, is_loopback, load_tokens, readable_by_others
from moviedb.server.ports import DEFAULT_PORTS, PortSpecError, parse_ports, read_ports_file

log = logging.getLogger("moviedb.server")

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}


class Size(click.ParamType[int]):
    """A size in bytes: `1048576`, `500MB`, `2GiB`."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
        unit = match.group(2).upper() if match else ""
        if match is None or unit not in _UNITS or int(match.group(1)) == 0:
            self.fail(
                f"{value!r} is not a size; accepted: a positive number of bytes, optionally "
                "followed by KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (of 1024)",
                param,
                ctx,
            )
        return int(match.group(1)) * _UNITS[unit]


SIZE = Size()
# A put's line beside its record: the key (a 500-character title can fold to 16.5 KB: U+FDFA
# alone decomposes to 18 characters), revision, a full history, JSON framing.
REQUEST_OVERHEAD = 32 * 1024


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
    "--max-record",
    type=click.IntRange(256, MAX_RECORD_BYTES),
    help=f"Largest record accepted, in bytes of its JSON. [default: {MAX_RECORD_BYTES}, or "
    "less to fit in --max-line]",
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
@click.option(
    "--line-timeout",
    default=Limits.line_timeout,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds from a request line's first byte to its newline (slow senders are closed).",
)
@click.option(
    "--max-in-flight",
    default=Limits.max_in_flight,
    show_default=True,
    type=click.IntRange(1),
    help="Requests of one connection awaiting replies before the server stops reading it.",
)
@click.option(
    "--max-batch",
    default=Limits.max_batch,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Writes one commit may hold (group commit); 1 commits every write on its own.",
)
@click.option(
    "--max-db-size",
    type=SIZE,
    help="Refuse writes once the database would grow past this size (e.g. 500MB, 2GiB).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="Require a token from this file (one a line, `read-only` after it for readers).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow listening on a non-loopback address without --token-file.",
)
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate chain: serve TLS."
)
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM private key of --tls-cert.")
@click.option("-v", "--verbose", is_flag=True, help="Log every connection event.")
def main(
    port_spec: str,
    ports_file: str | None,
    db: str,
    host: str,
    name: str,
    max_line: int,
    max_record: int | None,
    max_connections: int,
    idle_timeout: float,
    line_timeout: float,
    max_in_flight: int,
    max_batch: int,
    max_db_size: int | None,
    token_file: str | None,
    insecure: bool,
    tls_cert: str | None,
    tls_key: str | None,
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
    if max_record is None:
        max_record = min(MAX_RECORD_BYTES, max(256, max_line - REQUEST_OVERHEAD))
    elif max_record > max_line - REQUEST_OVERHEAD:
        largest = max_line - REQUEST_OVERHEAD
        accepted = (
            f"at most {largest} with this --max-line"
            if largest >= 256
            else f"a --max-line of at least {256 + REQUEST_OVERHEAD} for any record"
        )
        raise click.BadParameter(
            f"{max_record} does not fit in a request line of --max-line {max_line} bytes "
            f"(with {REQUEST_OVERHEAD} bytes for the rest of the request); accepted: {accepted}",
            param_hint="--max-record",
        )
    tokens = _tokens(token_file, host, insecure)
    tls = _tls_context(tls_cert, tls_key)
    if tokens is not None and tls is None and not is_loopback(host):
        log.warning(
            "tokens will cross the network unencrypted to %s: give --tls-cert and --tls-key", host
        )
    limits = Limits(
        max_line=max_line,
        max_record=max_record,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        line_timeout=line_timeout,
        max_in_flight=max_in_flight,
        max_db_size=max_db_size,
        max_batch=max_batch,
    )
    server = MoviedbServer(db, name=name, limits=limits, tokens=tokens, tls=tls)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(run_loop(lambda: serve(server, host, ports)))


def _tokens(token_file: str | None, host: str, insecure: bool) -> Tokens | None:
    if token_file is None:
        if not is_loopback(host) and not insecure:
            raise click.UsageError(
                f"refusing to listen on {host}, which other machines can reach, without "
                "--token-file; give a token file, listen on 127.0.0.1, or pass --insecure"
            )
        return None
    try:
        tokens = load_tokens(token_file)
    except TokenFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--token-file") from None
    if readable_by_others(token_file):
        log.warning("the token file %s is readable by other users (chmod 600 it)", token_file)
    return tokens


def _tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise click.UsageError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise click.BadParameter(
            f"cannot load the certificate {cert} with the key {key}: {exc}",
            param_hint="--tls-cert/--tls-key",
        ) from None
    return context


if __name__ == "__main__":
    main()
