"""What a benchmark reads and sets on the processes it started (Linux /proc): CPU pinning,
CPU time, resident memory; and a free loopback port for servers that cannot bind port 0."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

SERVER_CORE = 0
GENERATOR_CORE = 1
_TICKS = os.sysconf("SC_CLK_TCK")


def can_pin() -> bool:
    """Two distinct cores for the server and the load generator are available to us."""
    wanted = {SERVER_CORE, GENERATOR_CORE}
    return hasattr(os, "sched_setaffinity") and wanted <= os.sched_getaffinity(0)


def pin(pid: int, core: int) -> bool:
    """Every thread of process `pid` to one core (threads it starts later inherit it)."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), {core})
    except OSError:
        return False
    return True


@contextlib.contextmanager
def on_generator_core(pinned: bool) -> Iterator[None]:
    """This process (the load generator or client) on GENERATOR_CORE; as it was afterwards."""
    if not pinned:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {GENERATOR_CORE})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid`, all its threads, so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14 and 15


def machine_busy_seconds() -> float:
    """CPU time the whole machine, every core, spent in processes so far (/proc/stat: user,
    nice, system and steal; not interrupts, whose time, loopback traffic's included, no
    process is charged with)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(
            int, stat.readline().split()[1:9]
        )
    return (user + nice + system + steal) / _TICKS


def memory_kib(pid: int, name: str = "VmRSS") -> int:
    """A memory figure of /proc/PID/status in KiB: VmRSS (resident now) or VmHWM (its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


def free_port() -> int:
    """A loopback port free at the moment of asking (the server may lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
