"""`make run`: three servers from one port list, a divergent sample catalog, the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect

PROMPT = "moviedb>"


def test_make_run_starts_three_servers_shows_the_divergence_and_stops_them(
    tmp_path: Path,
) -> None:
    data = tmp_path / "demo"
    env = {**os.environ, "TERM": "xterm", "NO_COLOR": "1", "PROMPT_TOOLKIT_NO_CPR": "1"}
    env.pop("MOVIEDB_STATE_DIR", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "moviedb.devcluster", "--data", str(data)],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(60, 200),
    )
    try:
        child.expect(r"servers: (\S+), (\S+), (\S+) \(data")
        addresses = [child.match.group(i) for i in (1, 2, 3)]
        ports = [int(a.rsplit(":", 1)[1]) for a in addresses]
        assert all(7101 <= p <= 7120 for p in ports), ports
        assert len(set(ports)) == 3
        child.expect_exact("sample catalog loaded")
        child.expect_exact(PROMPT)

        def run(line: str) -> str:
            child.sendline(line)
            child.expect_exact("\r\n")
            child.expect_exact(PROMPT)
            return str(child.before)

        heat = run("get heat")
        assert f"missing on {addresses[1]}" in heat
        blade = run("get 'blade runner'")
        assert "stale" in blade
        assert "Final Cut" in blade
        solaris = run("get solaris")
        assert f"missing on {addresses[1]}, {addresses[2]}" in solaris
        kong = run("get 'king kong'")
        assert kong.count("King Kong (") >= 2
        child.sendline("quit")
        child.expect_exact("servers stopped")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert (data / "state" / "shell-history").exists()

    # Every server it started has stopped: their ports are free again, and a second run
    # reloads the same data without complaint.
    again = subprocess.run(
        [sys.executable, "-m", "moviedb.devcluster", "--data", str(data), "--no-shell"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "servers stopped" in again.stdout
