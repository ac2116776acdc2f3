"""Fault soak: the faults of tests/test_faults.py, for longer, with figures instead of asserts
(the workloads are tests/faultkit.py's, the very code the tests run).

Each round runs three phases, each bounded in count and in time:

1. kill -9: concurrent writers (new movies and new revisions of them) against one server that
   is SIGKILLed at random moments and restarted on the same database and port; after each
   restart every acknowledged write is read back before writing resumes, and the database file
   is checked with `PRAGMA integrity_check` after each kill;
2. hung and slow: three servers, one SIGSTOPped or behind tests/faultproxy.py (delayed beyond
   the timeout, or black-holed), in turn; get, serverlist, add, edit and sync are timed, each
   under its own time budget as the interfaces run them, writes the faulty server did not answer
   are queued, and after healing one sync delivers them;
3. contention: many clients editing one movie with conditional puts, each refusal (stale,
   conflict) made again on the server's newest copy; the applied edits must form one chain.

A lost acknowledged write, a broken chain or a failed integrity check makes the exit status 1.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import click

from benchmarks.harness import end, run, server_command, spawn, wait_listening
from moviedb import commands
from moviedb.client.address import Address
from moviedb.versions import generation
from tests.faultkit import (
    EditFigures,
    FaultFigures,
    KillFigures,
    contended_edits,
    hung_and_slow,
    kill_nine,
)


class Process:
    """A `moviedb-server` this benchmark started; signalled only through its own PID."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = 0
        self.proc = self._spawn("0")

    def _spawn(self, ports: str) -> subprocess.Popen[str]:
        proc = spawn(server_command(self.db, ports=ports), stderr=subprocess.DEVNULL)
        self.port = wait_listening(proc)  # killed, and an error, if it does not say so in time
        return proc

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.port)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone (its pipe closed)."""
        end(self.proc, signal.SIGKILL)

    def restart(self) -> None:
        """The same database and, if it is free, the same port (it was killed and reaped)."""
        self.proc = self._spawn(f"{self.port},0")

    def close(self) -> None:
        """Killed and reaped whatever state a fault left it in (SIGSTOPped included)."""
        self.signal(signal.SIGCONT)
        end(self.proc, signal.SIGKILL)


def seconds(values: list[float]) -> str:
    if not values:
        return "none"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"


# --- the three phases: tests/faultkit.py's workloads, on servers this benchmark starts -----------


async def kill_phase(
    tmp: Path, writes: int, kills: int, clients: int, lanes: int, deadline: float, seed: int
) -> KillFigures:
    server = Process(tmp / "kill.sqlite3")
    try:
        return await kill_nine(
            server,
            tmp,
            writes=writes,
            kills=kills,
            clients=clients,
            lanes=lanes,
            seed=seed,
            lane_seed=lambda i, j: seed * 1000 + i * lanes + j,
            deadline=deadline,
        )
    finally:
        server.close()


async def fault_phase(tmp: Path, cycles: int, timeout: float, deadline: float) -> FaultFigures:
    servers: list[Process] = []
    try:
        for i in range(3):  # each added as soon as started, for the finally to close
            servers.append(Process(tmp / f"fault{i}.sqlite3"))
        return await hung_and_slow(
            list(servers),
            tmp / "client",
            timeout=timeout,
            cycles=cycles,
            # no server answered in time (a loaded machine): counted, not fatal
            tolerate=(commands.CommandError,),
            deadline=deadline,
        )
    finally:
        for process in servers:
            process.close()


async def edit_phase(tmp: Path, editors: int, edits: int, deadline: float) -> EditFigures:
    server = Process(tmp / "edits.sqlite3")
    try:
        return await contended_edits(
            server.address, editors=editors, edits=edits, deadline=deadline
        )
    finally:
        server.close()


def chain_ok(e: EditFigures, editors: int) -> bool:
    """The applied edits form one chain back to the base, and the counters account for each."""
    if e.final is None:
        return False
    length, root = e.chain()
    return (
        root == e.base.rev
        and length == e.applied == e.counted(editors)
        and generation(e.final.rev) == e.applied + 1
    )


# --- the command ----------------------------------------------------------------------------------


@click.command()
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--writes", default=20_000, show_default=True, help="Acknowledged writes per round.")
@click.option("--kills", default=20, show_default=True, help="SIGKILLs per round.")
@click.option("--cycles", default=9, show_default=True, help="Hung/slow faults per round.")
@click.option("--timeout", default=0.5, show_default=True, help="Per-server timeout, seconds.")
@click.option("--editors", default=10, show_default=True)
@click.option("--edits", default=1_000, show_default=True, help="Edits per editor per round.")
@click.option("--max-seconds", default=900.0, show_default=True, help="Stop starting new work.")
@click.option("--seed", default=1, show_default=True)
def soak(
    rounds: int, writes: int, kills: int, cycles: int, timeout: float, editors: int, edits: int,
    max_seconds: float, seed: int,
) -> None:  # fmt: skip
    """Faults for longer: kill -9 during writes, hung and slow servers, contended edits."""
    deadline = time.monotonic() + max_seconds
    began = time.perf_counter()
    killed: list[KillFigures] = []
    faulted: list[FaultFigures] = []
    edited: list[EditFigures] = []
    broken = 0
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(rounds):
            if time.monotonic() >= deadline:
                click.echo(f"stopped by --max-seconds before round {index + 1}")
                break
            where = Path(tmp) / f"round{index}"
            where.mkdir()
            k = run(kill_phase(where, writes, kills, 6, 8, deadline, seed + index))
            click.echo(
                f"round {index + 1} kill -9: {k.kills} SIGKILLs during writes and one after, "
                f"{k.ledger.count:,} acknowledged "
                f"writes, {k.lost} lost; integrity_check ok {k.integrity.count('ok')} of "
                f"{len(k.integrity)}; restart to hello {seconds(k.restarts)}"
            )
            f = run(fault_phase(where, cycles, timeout, deadline))
            timed = f.run.timed
            click.echo(
                f"round {index + 1} hung/slow: {f.faults} faults (SIGSTOP, delay, blackhole) at "
                f"timeout {timeout:g} s; beyond it at most: "
                + ", ".join(f"{n} {timed.worst(n) * 1000:+.0f} ms" for n in timed.overshoot)
                + f"; {len(f.run.unknown)} unknown writes, "
                f"{f.run.delivered} delivered after healing; {timed.failed} commands without an "
                f"answer; {f.lost} of {len(f.run.acknowledged)} acknowledged writes lost"
            )
            e = run(edit_phase(where, editors, edits, deadline))
            unbroken = chain_ok(e, editors)
            click.echo(
                f"round {index + 1} edits: {editors} clients, {e.applied:,} applied, "
                f"{e.refused:,} refused and made again, {e.unknown} unknown; chain "
                f"{'unbroken' if unbroken else 'BROKEN'} ({e.chain()[0] if e.final else 0:,}); "
                f"{e.applied / max(e.seconds, 1e-9):,.0f} applied edits/s"
            )
            killed.append(k)
            faulted.append(f)
            edited.append(e)
            broken += not unbroken
    lost = sum(k.lost for k in killed) + sum(f.lost for f in faulted)
    overshoots = [f.run.timed for f in faulted]
    damaged = sum(c != "ok" for k in killed for c in k.integrity)
    click.echo(
        f"total: {len(killed)} round{'' if len(killed) == 1 else 's'} in "
        f"{time.perf_counter() - began:.0f} s; "
        f"{sum(k.kills for k in killed)} SIGKILLs, "
        f"{sum(k.ledger.count for k in killed) + sum(len(f.run.acknowledged) for f in faulted):,} "
        f"acknowledged writes, {lost} lost; {damaged} failed integrity checks; restart to hello "
        f"{seconds([r for k in killed for r in k.restarts])}; commands beyond the timeout at "
        f"most {max((t.worst(*t.overshoot) for t in overshoots), default=0.0) * 1000:+.0f} ms; "
        f"{sum(e.applied for e in edited):,} contended edits, {broken} broken chains"
    )
    if lost or broken or damaged:
        raise SystemExit(1)
