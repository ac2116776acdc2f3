"""The interactive shell, driven through a real pseudo-terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from moviedb.cli import COMMANDS
from tests.conftest import ServerProcess

PROMPT = "moviedb>"


class Shell:
    def __init__(self, servers: list[ServerProcess], state: Path, config: Path) -> None:
        env = {
            **os.environ,
            "TERM": "xterm",
            "NO_COLOR": "1",
            "PROMPT_TOOLKIT_NO_CPR": "1",  # no cursor-position queries in the output
            "MOVIEDB_STATE_DIR": str(state),
            "MOVIEDB_CONFIG": str(config),
        }
        addresses = ",".join(s.address for s in servers)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "moviedb", "--servers", addresses, "--timeout", "1"],
            env=env,
            encoding="utf-8",
            timeout=20,
            dimensions=(50, 200),
        )

    def expect(self, pattern: str) -> str:
        self.child.expect_exact(pattern)
        return str(self.child.before)

    def run(self, line: str) -> str:
        """Type a line; return what it printed up to the next prompt."""
        self.child.sendline(line)
        self.expect("\r\n")  # the line was accepted; prompt_toolkit redraws the prompt before
        return self.expect(PROMPT)

    def close(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus or 0)


@pytest.fixture
def shell(three_servers: list[ServerProcess], tmp_path: Path, client_env: Path) -> Iterator[Shell]:
    started = Shell(three_servers, tmp_path / "state", client_env)
    yield started
    if started.child.isalive():
        started.child.terminate(force=True)


def test_starts_with_the_command_list_and_quits_with_status_0(shell: Shell) -> None:
    banner = shell.expect(PROMPT)
    for name, description in COMMANDS.items():
        assert name in banner
        assert description in banner
    assert "quit" in banner
    shell.child.sendline("quit")
    assert shell.close() == 0


def test_runs_the_same_commands_as_the_cli(shell: Shell) -> None:
    shell.expect(PROMPT)
    out = shell.run('add "Blade Runner" --year 1982 --set "director=Ridley Scott" --set rating=8.1')
    assert out.count("applied") == 3
    out = shell.run("get 'blade runner'")
    assert "Blade Runner (1982)" in out
    assert "Ridley Scott" in out
    out = shell.run("get --json 'Blade Runner'")
    assert '"status": "found"' in out
    # Bad input is reported and the shell carries on.
    out = shell.run("add Alien --set rating=11")
    assert "rating" in out
    out = shell.run("frobnicate")
    assert "frobnicate" in out
    out = shell.run('get "unclosed')
    assert "close the quote" in out
    out = shell.run("shell")
    assert "already in the shell" in out
    out = shell.run("all")
    assert "Blade Runner (1982)" in out
    assert "Alien" not in out  # the invalid add stored nothing
    shell.child.sendeof()
    assert shell.close() == 0


def test_completes_commands_and_titles(shell: Shell) -> None:
    shell.expect(PROMPT)
    shell.run('add "Blade Runner" --year 1982')
    shell.child.send("serverl\t")
    shell.child.expect_exact("serverlist")
    out = shell.run("")
    assert "s0" in out
    assert "up" in out
    shell.child.send("get Blad\t")
    shell.child.expect_exact("'Blade Runner'")
    out = shell.run("")
    assert "Blade Runner (1982)" in out
    shell.child.send("add X --ye\t")
    shell.child.expect_exact("--year")
    shell.child.sendcontrol("c")  # abandon the line; the shell stays
    shell.expect(PROMPT)
    shell.child.sendline("quit")
    assert shell.close() == 0


def test_knows_titles_that_are_already_on_the_servers(
    three_servers: list[ServerProcess], tmp_path: Path, client_env: Path
) -> None:
    first = Shell(three_servers, tmp_path / "state", client_env)
    first.expect(PROMPT)
    first.run("add Solaris --year 1972")
    first.child.sendline("quit")
    assert first.close() == 0

    second = Shell(three_servers, tmp_path / "state", client_env)
    second.expect(PROMPT)
    second.child.send("get Sol\t")
    second.child.expect_exact("Solaris")
    second.run("")
    second.child.sendline("quit")
    assert second.close() == 0


def test_keeps_history_across_sessions(
    three_servers: list[ServerProcess], tmp_path: Path, client_env: Path
) -> None:
    state = tmp_path / "state"
    first = Shell(three_servers, state, client_env)
    first.expect(PROMPT)
    first.run("serverlist")
    first.child.sendline("quit")
    assert first.close() == 0
    history = (state / "shell-history").read_text()
    assert "serverlist" in history

    second = Shell(three_servers, state, client_env)
    second.expect(PROMPT)
    second.child.send("\x1b[A")  # up arrow: the previous session's last line
    second.child.expect_exact("quit")
    second.child.sendline("")
    assert second.close() == 0


def put_on(server: ServerProcess, *args: str) -> None:
    """Add a movie through one server only (so that servers differ)."""
    from click.testing import CliRunner

    from moviedb.cli import cli

    result = CliRunner().invoke(cli, ["--servers", server.address, "add", *args])
    assert result.exit_code == 0, result.output


def test_delete_asks_first_and_writes_only_on_yes(
    shell: Shell, three_servers: list[ServerProcess]
) -> None:
    shell.expect(PROMPT)
    shell.run("add Heat --year 1995 --set director='Michael Mann'")
    shell.child.sendline("delete heat")
    shell.expect("write it to every server?")
    shell.child.sendline("n")
    assert "nothing was written" in shell.expect(PROMPT)
    assert "Michael Mann" in shell.run("get heat")
    shell.child.sendline("delete heat")
    shell.expect("write it to every server?")
    shell.child.sendline("y")
    assert shell.expect(PROMPT).count("applied") == 3
    assert "not found" in shell.run("get heat")


def test_resolve_alone_walks_through_the_differing_fields(
    shell: Shell, three_servers: list[ServerProcess]
) -> None:
    a, b, _ = three_servers
    put_on(
        a, "Solaris", "--year", "1972", "--set", "director=Andrei Tarkovsky", "--set", "rating=8"
    )
    put_on(
        b, "Solaris", "--year", "1972", "--set", "director=Andrei Tarkovskiy", "--set", "rating=7"
    )
    shell.expect(PROMPT)
    assert "conflict" in shell.run("get solaris")
    shell.child.sendline("resolve solaris")
    shell.expect("keep which director?")
    shell.child.sendline("1")  # Tarkovsky, from the first server
    shell.expect("keep which rating?")
    shell.child.sendline("2")  # 7, from the second
    shell.expect("write it to every server?")
    shell.child.sendline("y")
    written = shell.expect(PROMPT)
    assert written.count("applied") == 3, written
    out = shell.run("get --json solaris")
    assert '"state": "agree"' in out
    assert '"director": "Andrei Tarkovsky"' in out
    assert '"rating": 7.0' in out
