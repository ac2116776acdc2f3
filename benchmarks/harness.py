"""What every benchmark shares: server processes on loopback and run statistics."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

LISTENING = re.compile(r"listening on \S+:(\d+)")


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> str:
        """SIGTERM, wait, and return what the server printed after its first line."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        assert self.proc.stdout is not None
        said = self.proc.stdout.read()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        return said


def start_server(db: Path, *extra: str) -> Server:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moviedb.server", "--ports", "0", "--db", str(db), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = LISTENING.search(line)
    if not match:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return Server(proc, int(match.group(1)))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop, as the server does, so that it is not the bottleneck."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def summary(values: Sequence[float]) -> str:
    return (
        f"min {min(values):,.0f}  median {statistics.median(values):,.0f}  max {max(values):,.0f}"
    )
