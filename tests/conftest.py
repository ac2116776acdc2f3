"""Fixtures that run real servers: subprocesses on free loopback ports, or in-process ones."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from moviedb.cli import cli
from moviedb.server.app import MoviedbServer
from moviedb.versions import Copy

LISTENING = re.compile(rb"listening on (\S+):(\d+)")


class ServerProcess:
    """A `moviedb-server` subprocess; stopped only through its own PID."""

    def __init__(self, db: Path, name: str, ports: str = "0", *extra: str) -> None:
        self.db = db
        self.name = name
        self.extra = extra
        self.log = db.with_suffix(".log")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._spawn(ports)

    def _spawn(self, ports: str) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "moviedb.server",
                    "--ports",
                    ports,
                    "--db",
                    str(self.db),
                    "--name",
                    self.name,
                    *self.extra,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
            )

    def wait_listening(self) -> ServerProcess:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the server's readiness signal
        match = LISTENING.search(line)
        assert match, f"server {self.name} did not start: {line!r}; log: {self.log.read_text()}"
        self.port = int(match.group(2))
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self._close_pipe()
        return code

    def restart(self) -> ServerProcess:
        """Start again on the same database and, if it is free, the same port."""
        self.kill()
        self._close_pipe()
        self._spawn(f"{self.port},0")
        return self.wait_listening()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGCONT)  # a stopped process cannot act on SIGKILL's exit
            self.kill()
        self._close_pipe()


StartServers = Callable[..., list[ServerProcess]]


@pytest.fixture
def start_servers(tmp_path: Path) -> Iterator[StartServers]:
    """`start_servers(3)` -> three servers on their own databases, started in parallel."""
    started: list[ServerProcess] = []

    def start(count: int = 1, *extra: str, prefix: str = "s") -> list[ServerProcess]:
        batch = [
            ServerProcess(
                tmp_path / f"{prefix}{len(started) + i}.sqlite3",
                f"{prefix}{len(started) + i}",
                "0",
                *extra,
            )
            for i in range(count)
        ]
        started.extend(batch)
        return [server.wait_listening() for server in batch]

    yield start
    for server in started:
        server.cleanup()


@pytest.fixture
def three_servers(start_servers: StartServers) -> list[ServerProcess]:
    return start_servers(3)


@pytest.fixture(autouse=True)
def private_client_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the user's own client state (queued writes, shell history)."""
    monkeypatch.setenv("MOVIEDB_STATE_DIR", str(tmp_path / "client" / "state"))


@pytest.fixture
def client_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private client config and state directory; returns the config path."""
    config = tmp_path / "client" / "config.toml"
    monkeypatch.setenv("MOVIEDB_CONFIG", str(config))
    monkeypatch.setenv("MOVIEDB_STATE_DIR", str(tmp_path / "client" / "state"))
    return config


@pytest.fixture
async def inproc_server(tmp_path: Path) -> AsyncIterator[MoviedbServer]:
    """A server running on the test's own event loop, on a free port."""
    server = MoviedbServer(tmp_path / "inproc.sqlite3", name="inproc")
    await server.start("127.0.0.1", [0])
    yield server
    await server.stop()


# --- figures the fault-injection tests measure, printed at the end of the run ---------------------

_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """`figure("0 of 10,412 acknowledged writes lost")`: shown in the run's summary."""

    def record(text: str) -> None:
        _FIGURES.append((request.node.nodeid, text))
        print(f"FIGURE {text}")

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("figures measured by the fault-injection tests")
    for nodeid, text in _FIGURES:
        terminalreporter.write_line(f"{nodeid.rpartition('::')[2]}: {text}")


def write_old_database(path: Path, copies: list[Copy]) -> None:
    """A database file as the first schema wrote it (migration 0001 only): for migration tests."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL);"
        "CREATE TABLE movies (key TEXT PRIMARY KEY, rev TEXT NOT NULL, deleted INTEGER NOT NULL,"
        " doc BLOB NOT NULL);"
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO schema_migrations VALUES ('0001_movies', 0);"
    )
    db.executemany(
        "INSERT INTO movies VALUES (?, ?, ?, ?)",
        [(c.key, c.rev, int(c.deleted), msgspec.json.encode(c)) for c in copies],
    )
    db.commit()
    db.close()


# --- the CLI, run in-process ---------------------------------------------------------------------


class Moviedb:
    """Runs `moviedb --servers ... --timeout T ARGS` in-process, as the console script would.

    `state` is the client's state directory (its queue of unacknowledged writes); two Moviedb
    objects with different ones act as two clients on two machines.
    """

    def __init__(
        self, servers: list[ServerProcess], *, timeout: float = 2.0, state: Path | None = None
    ) -> None:
        self.servers = servers
        self.timeout = timeout
        self.env = {"MOVIEDB_STATE_DIR": str(state)} if state is not None else None

    def addresses(self, servers: list[ServerProcess] | None = None) -> str:
        return ",".join(s.address for s in (self.servers if servers is None else servers))

    def __call__(self, *args: str, servers: list[ServerProcess] | None = None) -> tuple[int, str]:
        argv = ["--servers", self.addresses(servers), "--timeout", str(self.timeout), *args]
        result = CliRunner().invoke(
            cli, argv, prog_name="moviedb", env=self.env, catch_exceptions=False
        )
        return result.exit_code, result.output

    def json(self, *args: str, servers: list[ServerProcess] | None = None) -> tuple[int, Any]:
        code, output = self("--json", *args, servers=servers)
        return code, json.loads(output)

    def configured(self, *args: str) -> tuple[int, Any]:
        """`moviedb --json ARGS` on the configured server list (no --servers), as JSON."""
        for server in self.servers:
            CliRunner().invoke(cli, ["addserver", server.address], env=self.env)
        argv = ["--json", "--timeout", str(self.timeout), *args]
        result = CliRunner().invoke(cli, argv, env=self.env, catch_exceptions=False)
        return result.exit_code, json.loads(result.output)


def statuses(document: dict[str, Any]) -> list[str]:
    """The status of each server in a `--json` document (get, serverlist, ...), in order."""
    return [s["status"] for s in document["servers"]]


@pytest.fixture
def moviedb(three_servers: list[ServerProcess], client_env: Path) -> Moviedb:
    return Moviedb(three_servers)
