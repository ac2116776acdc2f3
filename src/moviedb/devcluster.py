"""`make run`: three local servers on one permitted port list, a sample catalog that differs on
purpose between them, and the interactive shell; leaving the shell stops the servers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import click
import msgspec

from moviedb.client.address import Address, parse_address
from moviedb.client.cluster import Cluster, WriteStatus
from moviedb.client.config import Config, save
from moviedb.model import Movie, key_of, movie_key, validate
from moviedb.versions import Copy, child, first_copy

PORTS = "# the permitted ports of the demo cluster, tried in order\n7101-7120\n"
LISTENING = re.compile(r"listening on (\S+)")
KEEP = (WriteStatus.APPLIED, WriteStatus.UNCHANGED)


def sample_movies() -> list[Movie]:
    text = files("moviedb").joinpath("data/sample_movies.json").read_text(encoding="utf-8")
    return [validate(m) for m in msgspec.json.decode(text, type=list[Movie])]


def start_server(data: Path, index: int) -> tuple[subprocess.Popen[str], Address]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "moviedb.server",
            "--ports-file", str(data / "ports.txt"),
            "--db", str(data / f"server{index}.sqlite3"),
            "--name", f"demo-{index}",
        ],
        stdout=subprocess.PIPE,
        stderr=(data / f"server{index}.log").open("a"),
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = LISTENING.search(line)
    if not match:
        proc.wait(timeout=5)
        raise click.ClickException(
            f"server {index} did not start (see {data}/server{index}.log): {line.strip()}"
        )
    return proc, parse_address(match.group(1))


def divergent_catalog(movies: list[Movie], servers: list[Address]) -> dict[Address, list[Copy]]:
    """Every movie on every server, except: Heat is missing on the second server, the third
    holds a newer Blade Runner, and only the first has Solaris."""
    first, second, third = servers
    copies = {key_of(m): first_copy(m) for m in movies}
    by_server = {s: [c for c in copies.values() if not (s == second and c.movie.title == "Heat")]
                 for s in servers}  # fmt: skip
    blade = copies[movie_key("Blade Runner", 1982)]
    final_cut = Movie(**{**msgspec.structs.asdict(blade.movie), "rating": 8.2,
                         "extra": {"cut": "The Final Cut (2007)"}})  # fmt: skip
    by_server[third] = [c for c in by_server[third] if c is not blade]
    by_server[third].append(child([blade], validate(final_cut)))
    solaris = Movie(title="Solaris", year=1972, director="Andrei Tarkovsky",
                    genres=["Drama", "Sci-Fi"], runtime_min=167, rating=8.0)  # fmt: skip
    by_server[first].append(first_copy(validate(solaris)))
    return by_server


async def load(servers: list[Address], by_server: dict[Address, list[Copy]]) -> int:
    written = 0
    async with Cluster(servers, timeout=10) as cluster:
        for server, copies in by_server.items():
            for copy in copies:
                (result,) = await cluster.put({server: copy})
                # stale/conflict: the server holds a later change made in an earlier session.
                if result.status not in (*KEEP, WriteStatus.STALE, WriteStatus.CONFLICT):
                    raise click.ClickException(f"loading {server}: {result.status.value}")
                written += 1
    return written


@click.command()
@click.option("--data", default="demo-data", show_default=True, type=click.Path(file_okay=False))
@click.option("--no-shell", is_flag=True, help="Start and load, print the config, then stop.")
def main(data: str, no_shell: bool) -> None:
    """Start a local three-server cluster with a sample catalog and open the shell."""
    from moviedb.cli import cli
    from moviedb.session import Session

    directory = Path(data).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ports_file = directory / "ports.txt"
    if not ports_file.exists():
        ports_file.write_text(PORTS)
    procs: list[subprocess.Popen[str]] = []
    try:
        servers = []
        for index in (1, 2, 3):
            proc, address = start_server(directory, index)
            procs.append(proc)
            servers.append(address)
        click.echo(f"servers: {', '.join(map(str, servers))} (data in {directory})")
        config = Config(directory / "config.toml", servers)
        save(config)
        session = Session(config_file=str(config.path))
        count = session.run(load(servers, divergent_catalog(sample_movies(), servers)))
        click.echo(f"sample catalog loaded ({count} copies; the servers differ on purpose)")
        os.environ.setdefault("MOVIEDB_STATE_DIR", str(directory / "state"))
        if no_shell:
            click.echo(json.dumps({"config": str(config.path)}))
            session.close()
            return
        from moviedb.shell import run_shell

        try:
            run_shell(session, cli)
        finally:
            session.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        click.echo("servers stopped")


if __name__ == "__main__":
    main()
