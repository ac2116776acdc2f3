"""The one-shot `get` that launcher.py runs without click and rich: which command lines it takes,
and that it prints and exits exactly as cli.py does (run as the real `moviedb` process)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from moviedb import getview, render
from moviedb.launcher import PlainGet, parse
from tests.conftest import Moviedb, ServerProcess, statuses


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["get", "Alien"], PlainGet("Alien")),
        (["--json", "get", "Alien"], PlainGet("Alien", json_output=True)),
        (["get", "Alien", "--json"], PlainGet("Alien", json_output=True)),
        (["get", "--year", "1979", "Alien"], PlainGet("Alien", year=1979)),
        (["get", "Alien", "--year=1979"], PlainGet("Alien", year=1979)),
        (
            ["--servers", "a:1,b:2", "--timeout=0.5", "--config", "c.toml", "get", "The Thing"],
            PlainGet("The Thing", servers="a:1,b:2", config_file="c.toml", timeout=0.5),
        ),
        (["--servers", "a:1", "--servers", "b:2", "get", "x"], PlainGet("x", servers="b:2")),
    ],
)
def test_plain_gets_are_taken(argv: list[str], expected: PlainGet) -> None:
    assert parse(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],  # the shell
        ["all"],
        ["get"],  # click says the title is missing
        ["get", "Alien", "Aliens"],
        ["get", "   "],  # the command refuses an empty title
        ["get", "Alien", "--repair"],
        ["get", "--help"],
        ["-h", "get", "Alien"],
        ["get", "Alien", "--year"],
        ["get", "Alien", "--year", "last"],
        ["--timeout", "0", "get", "Alien"],
        ["--timeout", "soon", "get", "Alien"],
        ["--unknown", "get", "Alien"],
        ["get", "--", "-Alien"],
        ["search", "get"],
        ["add", "get"],
    ],
)
def test_everything_else_goes_to_the_cli(argv: list[str]) -> None:
    assert parse(argv) is None


def run_moviedb(moviedb: Moviedb, *args: str) -> tuple[int, str]:
    """The real `moviedb` process (python -m moviedb: the launcher), with the in-process
    runner's server list, timeout and environment."""
    argv = ["--servers", moviedb.addresses(), "--timeout", str(moviedb.timeout), *args]
    env = dict(os.environ, **(moviedb.env or {}))
    done = subprocess.run(
        [sys.executable, "-m", "moviedb", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == ""
    return done.returncode, done.stdout


def without_addresses(text: str, servers: list[ServerProcess]) -> str:
    for index, server in enumerate(servers):
        text = text.replace(server.address, f"<server {index}>")
    return text


def test_the_launcher_prints_what_the_cli_prints(moviedb: Moviedb) -> None:
    servers = moviedb.servers
    assert moviedb("add", "Heat", "--year", "1995", "--set", "director=Michael Mann")[0] == 0
    assert moviedb("edit", "Heat", "--set", "rating=8.3", servers=servers[:1])[0] == 0
    assert moviedb("add", "Amélie", "--year", "2001", servers=servers[1:])[0] == 0
    assert moviedb("add", "七人の侍", "--year", "1954", "--set", "director=黒澤明")[0] == 0
    assert moviedb("add", "Brazil", "--year", "1985")[0] == 0
    assert moviedb("delete", "Brazil", "--yes", servers=servers[:2])[0] == 0
    cases = [
        ("get", "heat"),  # versions that differ, field by field
        ("get", "AMELIE"),  # missing on one server
        ("get", "七人の侍"),
        ("get", "Brazil"),  # deleted, with a stale copy left
        ("get", "Heat", "--year", "1995"),
        ("get", "Heat", "--year", "1996"),  # not found
        ("get", "Haet"),  # not found, with a suggestion
        ("--json", "get", "Heat"),
        ("get", "Amélie", "--json"),
        ("--json", "get", "Nothing Like It"),
    ]
    for args in cases:
        expected = moviedb(*args)
        assert run_moviedb(moviedb, *args) == expected, args
    assert "did you mean: Heat (1995)" in moviedb("get", "Haet")[1]


def test_an_unreachable_server_is_reported_alike(moviedb: Moviedb) -> None:
    moviedb.servers[2].kill()
    assert moviedb("add", "Alien", "--year", "1979", servers=moviedb.servers[:2])[0] == 0
    for args in (("get", "Alien"), ("--json", "get", "Alien")):
        code, text = run_moviedb(moviedb, *args)
        assert (code, text) == moviedb(*args)
        assert "unreachable" in text
        assert "Connection refused" in text


@pytest.mark.parametrize("state", ["a directory", "a file name"])
def test_writes_queued_for_these_servers_send_the_get_to_the_cli(
    moviedb: Moviedb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    """The CLI replays them before the command (the launcher does not): the get sees the
    queued write delivered to the server that was down. MOVIEDB_STATE_DIR may name the queue
    file itself (a name with a suffix): the launcher looks where the CLI queues."""
    if state == "a file name":
        monkeypatch.setenv("MOVIEDB_STATE_DIR", str(tmp_path / "queue.d"))
    down = moviedb.servers[2]
    down.stop()
    code, _ = moviedb("add", "Alien", "--year", "1979")
    assert code != 0  # one server did not acknowledge: the write is queued for it
    down.restart()
    code, text = run_moviedb(moviedb, "--json", "get", "Alien")
    assert code == 0
    assert statuses(json.loads(text)) == ["found"] * 3  # replayed first: every server has it


def test_a_config_the_cli_refuses_is_refused_alike(moviedb: Moviedb, tmp_path: Path) -> None:
    """A CA file that cannot be read: the launcher hands the command to the CLI, which says so
    (exit 2), instead of failing with a traceback."""
    config = tmp_path / "ca-missing.toml"
    server = moviedb.servers[0].address
    config.write_text(f'[[servers]]\naddress = "{server}"\nca = "{tmp_path / "none.pem"}"\n')
    for args in (("get", "Alien"), ("--json", "get", "Alien")):
        done = subprocess.run(
            [sys.executable, "-m", "moviedb", "--config", str(config), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert "Traceback" not in done.stderr
        assert done.returncode == 2, done.stdout
        assert "none.pem" in done.stdout


def test_a_closed_pipe_ends_the_get_quietly(moviedb: Moviedb) -> None:
    """As click does for every other command: exit 1, no traceback."""
    assert moviedb("add", "Alien", "--year", "1979")[0] == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # whatever the command prints meets a closed pipe
    try:
        done = subprocess.run(
            [sys.executable, "-m", "moviedb", "--servers", moviedb.addresses(), "get", "Alien"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""


@pytest.mark.parametrize("tty", [True, False])
@pytest.mark.parametrize("no_color", [None, "", "1"])
@pytest.mark.parametrize("force_color", [None, "", "1"])
@pytest.mark.parametrize("tty_compatible", [None, "0", "1"])
@pytest.mark.parametrize("term", ["xterm-256color", "dumb"])
def test_get_is_coloured_when_rich_would_colour_the_cli(
    tty: bool,
    no_color: str | None,
    force_color: str | None,
    tty_compatible: str | None,
    term: str,
) -> None:
    """The launcher decides colour itself (getview.use_color); the CLI asks its rich console
    (render._lines). Both must agree, or the same command would look different by path."""
    environ = {"TERM": term}
    for name, value in (
        ("NO_COLOR", no_color),
        ("FORCE_COLOR", force_color),
        ("TTY_COMPATIBLE", tty_compatible),
    ):
        if value is not None:
            environ[name] = value

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    stream = Stream()
    console = Console(file=stream, _environ=environ)
    assert render._lines(console).color == getview.use_color(stream, environ)
