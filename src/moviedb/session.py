"""What one CLI invocation or one shell session holds: config, the cluster, the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from moviedb.client.address import Address
from moviedb.client.cluster import Cluster, CommandBudget
from moviedb.client.config import Config, config_path, load, state_dir
from moviedb.client.queue import ReplayReport, WriteQueue
from moviedb.commands import USAGE, CommandError, replay_pending

T = TypeVar("T")
MAX_KNOWN_TITLES = 20_000
REPLAY_HEAD_START = 0.1  # seconds a command waits for queued writes to be delivered first


async def _wait_for(task: asyncio.Task[Any], timeout: float) -> None:
    await asyncio.wait([task], timeout=timeout)


async def _replay_apart(cluster: Cluster, queue: WriteQueue) -> ReplayReport | None:
    """Replay on connections of its own: stopping it (a cancel closes the connection its
    request was on) must never cut off a request of the command running beside it. It shares
    the command's time budget, so a hung server is waited for once."""
    replayer = cluster.subset(cluster.servers)
    replayer.budget = cluster.budget
    try:
        return await replay_pending(replayer, queue)
    finally:
        await replayer.aclose()


def _new_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


class Session:
    """Keeps one Cluster (persistent connections) and one event loop across commands."""

    def __init__(
        self,
        *,
        config_file: str | None = None,
        servers: str | None = None,
        timeout: float | None = None,
        json_output: bool = False,
        console: Console | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path: Path = config_path(config_file)
        self.servers_override = servers
        self.timeout_override = timeout
        self.json_output = json_output
        self.console = console or Console(highlight=False)
        self.clock = clock  # stamps new versions; tests inject a skewed one
        self.known_titles: set[str] = set()
        self.interactive = False  # in the shell: ask before destructive writes
        self._config: Config | None = None
        self._cluster: Cluster | None = None
        self._queue: WriteQueue | None = None
        self._replay: asyncio.Task[ReplayReport | None] | None = None
        self._runner = _new_runner()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load(self.config_path)
        return self._config

    @property
    def timeout(self) -> float:
        return self.config.timeout_for(self.timeout_override)

    def server_list(self) -> list[Address]:
        return self.config.servers_for(self.servers_override)

    def cluster(self) -> Cluster:
        if self._cluster is None:
            servers = self.server_list()
            if not servers:
                raise CommandError(
                    f"no servers configured in {self.config_path}; add one with "
                    "`moviedb addserver HOST:PORT` or pass --servers HOST:PORT,...",
                    USAGE,
                )
            self._cluster = Cluster(
                servers, timeout=self.timeout, clock=self.clock, security=self.config.security
            )
        return self._cluster

    @property
    def queue(self) -> WriteQueue:
        """The durable queue of writes that servers did not acknowledge (opened on first use)."""
        if self._queue is None:
            self._queue = WriteQueue(state_dir())
        return self._queue

    def replay_pending(self) -> ReplayReport | None:
        """Before a command: deliver queued writes to servers that answer again.

        The command waits REPLAY_HEAD_START seconds for it (a server that is back takes
        milliseconds), then starts while the replay goes on beside it, so that a server that
        hangs never costs a command more than its own timeout. Versions make the overlap safe: a
        replayed write older than the command's own is refused as stale, and stays superseded.
        `settle_replay()` ends it when the command is done. The report, when it finished.
        """
        if not self.queue.path.exists():
            return None
        task = self._runner.get_loop().create_task(_replay_apart(self.cluster(), self.queue))
        self._replay = task
        self.run(_wait_for(task, REPLAY_HEAD_START))
        if task.done():
            self._replay = None
            return task.result()
        return None

    def begin_command(self) -> Cluster:
        """The cluster for one command, under one time budget (client.cluster.CommandBudget)."""
        cluster = self.cluster()
        cluster.budget = CommandBudget(cluster.timeout)
        return cluster

    def settle_replay(self) -> ReplayReport | None:
        """After a command: the replay's report if it has finished; else it is stopped (what it
        did not deliver stays queued, for the next command or `sync`)."""
        if self._cluster is not None:
            self._cluster.budget = None  # the command is over
        task, self._replay = self._replay, None
        if task is None:
            return None
        if not task.done():
            task.cancel()
        self.run(_wait_for(task, 1.0))
        if task.cancelled() or not task.done():
            return None
        return task.result()

    def servers_changed(self) -> None:
        """The server list was edited: the next command connects to the new list."""
        if self._cluster is not None:
            self.run(self._cluster.aclose())
            self._cluster = None

    def remember_titles(self, titles: list[str]) -> None:
        if len(self.known_titles) < MAX_KNOWN_TITLES:
            self.known_titles.update(titles)

    def close(self) -> None:
        self.settle_replay()
        if self._cluster is not None:
            self.run(self._cluster.aclose())
            self._cluster = None
        if self._queue is not None:
            self._queue.close()
            self._queue = None
        self._runner.close()
