"""The `moviedb` command's entry point: a plain one-shot `get` runs here, everything else in
cli.py.

`moviedb get TITLE` is what scripts run most, each time in a new process, so its cost is
mostly imports: click, rich and every other command's modules (commands.py, the queue, sync)
take about twice as long as Python and asyncio themselves. A `get` whose arguments are all
plain (the global --servers, --config, --timeout and --json; get's --year and --json) runs here
instead on the same client library and reads.get, and prints through getview, exactly as
cli.py would. Anything else goes to cli.py unchanged, and so does a `get` that needs what only
it has: a parse error to explain (click says it), a config or address to refuse, writes
queued for these servers to replay first, `--repair`.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from pathlib import Path

    from moviedb.client.address import Address
    from moviedb.client.cluster import Cluster


class PlainGet(msgspec.Struct):
    """A `get` command line that launcher.py can run itself."""

    title: str
    year: int | None = None
    servers: str | None = None
    config_file: str | None = None
    timeout: float | None = None
    json_output: bool = False


_GLOBAL = {"--servers", "--config", "--timeout"}  # options taking a value, before `get`
_GET = {"--year"}


def parse(argv: list[str]) -> PlainGet | None:
    """The plain `get` that `argv` asks for; None for anything else (cli.py then takes it,
    with click's parsing, help and error messages)."""
    values: dict[str, str] = {}
    json_output = False
    rest = list(argv)
    while rest and rest[0] != "get":
        if not _take_option(rest, _GLOBAL, values):
            if rest[0] != "--json":
                return None
            json_output = True
            rest.pop(0)
    if not rest:
        return None
    rest.pop(0)  # get
    titles: list[str] = []
    while rest:
        if rest[0].startswith("-"):
            if _take_option(rest, _GET, values):
                continue
            if rest[0] != "--json":
                return None
            json_output = True
            rest.pop(0)
        else:
            titles.append(rest.pop(0))
    if len(titles) != 1 or not titles[0].strip():
        return None
    plain = PlainGet(titles[0], servers=values.get("--servers"), json_output=json_output)
    plain.config_file = values.get("--config")
    try:
        if "--year" in values:
            plain.year = int(values["--year"])
        if "--timeout" in values:
            plain.timeout = float(values["--timeout"])
    except ValueError:
        return None
    if plain.timeout is not None and not plain.timeout >= 0.01:
        return None  # click's FloatRange(min=0.01) says what is accepted
    return plain


def _take_option(rest: list[str], names: set[str], values: dict[str, str]) -> bool:
    """Take `--name VALUE` or `--name=VALUE` off the front of `rest` (the last one given wins,
    as with click)."""
    name, equals, value = rest[0].partition("=")
    if name not in names:
        return False
    if equals:
        rest.pop(0)
    elif len(rest) >= 2:
        value = rest[1]
        del rest[:2]
    else:
        return False
    values[name] = value
    return True


def run(plain: PlainGet) -> int | None:
    """Run the `get`; its exit code, or None (nothing printed) when cli.py must take it."""
    import asyncio

    from moviedb.client.cluster import Cluster, CommandBudget
    from moviedb.client.config import config_path, load, queue_path
    from moviedb.errors import ConfigError, InvalidAddress

    try:
        config = load(config_path(plain.config_file))
        servers = config.servers_for(plain.servers)  # as Session.server_list
        if not servers or _writes_queued_for(servers, queue_path()):
            return None
        timeout = config.timeout_for(plain.timeout)
        cluster = Cluster(servers, timeout=timeout, security=config.security)
    except (ConfigError, InvalidAddress):
        return None  # cli.py says what is wrong
    cluster.budget = CommandBudget(timeout)  # as Session.begin_command sets it
    return asyncio.run(_get(cluster, plain))


async def _get(cluster: Cluster, plain: PlainGet) -> int:
    from moviedb import getview
    from moviedb.reads import get

    try:
        outcome = await get(cluster, plain.title, plain.year, suggest=True)
    finally:
        await cluster.aclose()
    if plain.json_output:
        getview.print_json(getview.get_json(outcome))
    else:
        getview.render_get(getview.Lines(sys.stdout, getview.use_color(sys.stdout)), outcome)
    return outcome.exit_code


def _writes_queued_for(servers: list[Address], path: Path) -> bool:
    """Whether the client's queue (at `path`) holds writes for any of `servers`: cli.py
    replays those before the command."""
    if not path.exists():
        return False
    from moviedb.client.queue import WriteQueue

    with WriteQueue(path) as queue:
        return any(server in servers for server in queue.summary())


def main() -> None:
    plain = parse(sys.argv[1:])
    if plain is not None:
        # As click ends a command: Ctrl-C says "Aborted!", a closed pipe ends it quietly;
        # both exit 1.
        try:
            code = run(plain)
            if code is not None:
                sys.stdout.flush()
        except KeyboardInterrupt:
            print("\nAborted!", file=sys.stderr)
            sys.exit(1)
        except BrokenPipeError:
            # Python flushes stdout once more at exit: point it at nothing first.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - open until the process ends
            sys.exit(1)
        if code is not None:
            sys.exit(code)
    from moviedb.cli import main as cli_main

    cli_main()
