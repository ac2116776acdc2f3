"""What every benchmark shares: server processes on loopback and run statistics."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, AnyStr, TypeVar

T = TypeVar("T")

LISTENING = re.compile(r"listening on \S+:(\d+)")
LISTEN_SECONDS = 30.0  # a server that has not said where it listens by then is killed
STOP_SECONDS = 30.0  # a server still running this long after its signal is SIGKILLed
MAX_FIRST_LINE = 4096  # bytes read, at most, looking for the `listening on` line


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> str:
        """SIGTERM, and return what the server printed after its first line (SIGKILL if it
        ignores the SIGTERM, so that a stuck server cannot hang the benchmark)."""
        return end(self.proc) or ""


def end(proc: subprocess.Popen[AnyStr], signum: int = signal.SIGTERM) -> AnyStr | None:
    """Signal a process this benchmark started (by its PID, unless already reaped), wait up to
    STOP_SECONDS for it to exit, SIGKILL it if it has not, and return what it printed on its
    stdout pipe since last read (None without a pipe). The pipe is read while waiting, so that
    a server with much to say cannot block on a full pipe; it is closed afterwards."""
    if proc.poll() is None:
        os.kill(proc.pid, signum)
    try:
        said, _ = proc.communicate(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        said, _ = proc.communicate(timeout=STOP_SECONDS)
    return said


def server_command(db: Path, *extra: str, ports: str = "0") -> list[str]:
    """The command line of a moviedb server on `db`, listening on the first free one of
    `ports` (0: any free port) on 127.0.0.1."""
    return [sys.executable, "-m", "moviedb.server", "--ports", ports, "--db", str(db), *extra]


def spawn(command: list[str], stderr: int | IO[Any] | None = None) -> subprocess.Popen[str]:
    """Start a server process whose stdout is a pipe, for wait_listening to read."""
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)


def wait_listening(proc: subprocess.Popen[str], seconds: float = LISTEN_SECONDS) -> int:
    """The port of the process's first line, `listening on HOST:PORT` (its readiness signal),
    read within `seconds`: a server that hangs before it listens cannot hang the benchmark.
    The line is read byte by byte straight from the pipe, so that nothing after it is taken
    from what `end` reads. If no such line comes, the process is killed and the error says
    what came instead."""
    assert proc.stdout is not None
    pipe = proc.stdout.fileno()
    deadline = time.monotonic() + seconds
    line = bytearray()
    timed_out = False
    for _ in range(MAX_FIRST_LINE):  # bounded: each pass reads one byte, or stops
        ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            timed_out = True
            break
        byte = os.read(pipe, 1)
        if byte in (b"", b"\n"):
            break
        line += byte
    said = line.decode(errors="replace")
    match = LISTENING.search(said)
    if match is None:
        end(proc, signal.SIGKILL)
        why = f"no `listening on` line within {seconds:g} s" if timed_out else "did not start"
        raise RuntimeError(f"server {why} ({proc.args!r}); it printed {said!r}")
    return int(match.group(1))


def start_servers(commands: list[list[str]]) -> list[Server]:
    """Start every command at once, then wait for each one's `listening on` line. All or
    nothing: if any fails to start, those already started are killed before the error is
    raised, so that the caller has only to stop what it was given."""
    procs: list[subprocess.Popen[str]] = []
    servers: list[Server] = []
    try:
        for command in commands:
            procs.append(spawn(command))
        for proc in procs:
            servers.append(Server(proc, wait_listening(proc)))
    except BaseException:
        for proc in procs:
            end(proc, signal.SIGKILL)
        raise
    return servers


def start_server(db: Path, *extra: str) -> Server:
    """A moviedb server on `db` and any free loopback port, ready once this returns."""
    return start_servers([server_command(db, *extra)])[0]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop, as the server does, so that it is not the bottleneck."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def summary(values: Sequence[float], form: str = ",.0f", unit: str = "") -> str:
    """min, median and max, each formatted with `form` and followed by `unit`: the shape every
    benchmark reports its runs in."""
    low, middle, high = min(values), statistics.median(values), max(values)
    return f"min {low:{form}}{unit}  median {middle:{form}}{unit}  max {high:{form}}{unit}"


def percentiles(seconds: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds. A time bound may cut a pass short: fewer than two samples
    have no percentiles, and the error says so rather than statistics' own."""
    if len(seconds) < 2:
        raise RuntimeError(
            f"{len(seconds)} timed request(s) before the time bound: p50 and p99 need at "
            "least 2 (raise the bound, or lower the load on this machine)"
        )
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000
