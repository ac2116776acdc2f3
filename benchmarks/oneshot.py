"""One-shot `moviedb get TITLE` against 3 servers, against the interpreter starting and
importing asyncio, json and sqlite3 (`python -c "import asyncio, json, sqlite3"`), timed in
turn in the same run (issue 6: at most 1.5 times)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from benchmarks.harness import server_command, start_servers, summary

BASELINE = [sys.executable, "-c", "import asyncio, json, sqlite3"]


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({done.returncode}): {done.stderr[-500:]!r}")
    return elapsed


def timed_pair(get: list[str], env: dict[str, str], *, moviedb_first: bool) -> tuple[float, float]:
    """(moviedb get, baseline) seconds, the two run in the order given (callers alternate it,
    so that neither side always runs on a machine the other just warmed or disturbed)."""
    if moviedb_first:
        got = timed(get, env)
        return got, timed(BASELINE, env)
    base = timed(BASELINE, env)
    return timed(get, env), base


@click.command(name="oneshot")
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option(
    "--repeats", default=10, show_default=True, type=click.IntRange(1, 200), help="Per run."
)
def oneshot(runs: int, repeats: int) -> None:
    """Wall time of `moviedb get TITLE` (3 servers) vs the interpreter's own start."""
    with tempfile.TemporaryDirectory(prefix="moviedb-bench-") as tmp:
        root = Path(tmp)
        servers = start_servers([server_command(root / f"s{i}.sqlite3") for i in range(3)])
        try:
            env = dict(os.environ, MOVIEDB_STATE_DIR=str(root / "state"))
            env["MOVIEDB_CONFIG"] = str(root / "config.toml")
            # Both sides run from bytecode, as an installed package does (pip compiles it; the
            # standard library comes compiled): a PYTHONDONTWRITEBYTECODE inherited from the
            # shell would make every run of moviedb compile its modules again. One untimed
            # run of each command below writes what is missing.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            script = Path(sys.executable).with_name("moviedb")  # what `pip install` made
            moviedb = [str(script)] if script.exists() else [sys.executable, "-m", "moviedb"]
            addresses = ",".join(s.address for s in servers)
            get = [*moviedb, "--servers", addresses, "get", "Alien"]
            subprocess.run(
                [*moviedb, "--servers", addresses, "add", "Alien", "--year", "1979"],
                env=env,
                capture_output=True,
                timeout=60,
                check=True,
            )
            timed(get, env)
            timed(BASELINE, env)
            ratios, gets, bases = [], [], []
            for run in range(1, runs + 1):
                pairs = [timed_pair(get, env, moviedb_first=i % 2 == 0) for i in range(repeats)]
                get_ms = statistics.median(g for g, _ in pairs) * 1000
                base_ms = statistics.median(b for _, b in pairs) * 1000
                gets.append(get_ms)
                bases.append(base_ms)
                ratios.append(get_ms / base_ms)
                click.echo(
                    f"run {run}: moviedb get {get_ms:.0f} ms, python -c import {base_ms:.0f} ms "
                    f"(medians of {repeats}), ratio {get_ms / base_ms:.2f}"
                )
        finally:
            for server in servers:
                server.stop()
    click.echo(f"moviedb get, ms: {summary(gets, '.0f')}")
    click.echo(f"python -c 'import asyncio, json, sqlite3', ms: {summary(bases, '.0f')}")
    verdict = "met" if statistics.median(ratios) <= 1.5 else "missed"
    click.echo(f"ratio per run: {summary(ratios, '.2f')}   target <= 1.5: {verdict}")
