"""A load generator: many connections, each keeping `depth` requests in flight (a new request
for every reply), speaking moviedb's NDJSON or Redis's RESP through raw asyncio Protocols on
uvloop — no client library, no parsing beyond counting — so that it costs little next to the
server it loads. Its own CPU use is measured beside the rate, to show when it is the limit."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.processes import cpu_seconds, machine_busy_seconds

DRAIN_SECONDS = 30.0  # replies still in flight when the window closes must come within this
_ERROR = b'{"ok":false'  # how a moviedb error reply starts (`ok` is its first member)
_RESP_ERROR = b"\r\n-"  # a RESP error line: `-` at the start of a reply


@dataclass
class _Shared:
    """What the connections of one measurement share."""

    stopping: bool = False
    replies: int = 0


class _Driver(asyncio.Protocol):
    """One connection: sends its requests in a fixed cyclic order, `depth` in flight."""

    def __init__(self, requests: Sequence[bytes], depth: int, shared: _Shared) -> None:
        if not 1 <= depth <= len(requests):
            raise ValueError(f"depth {depth} needs 1 to {len(requests)} requests to cycle through")
        self._requests = requests
        self._count = len(requests)
        self._depth = depth
        self._shared = shared
        self._next = 0
        self._in_flight = 0
        self._transport: asyncio.Transport | None = None
        self.drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.answered = 0
        self.received = 0  # bytes
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.drained.done():
            self.drained.set_exception(RuntimeError(f"the server closed a connection: {exc}"))

    def start(self) -> None:
        self._send(self._depth)

    def stop_if_idle(self) -> None:
        if self._in_flight == 0 and not self.drained.done():
            self.drained.set_result(None)

    def close(self) -> None:
        if not self.drained.done():
            self.drained.cancel()
        if self._transport is not None:
            self._transport.close()

    def check(self) -> None:
        """Raise if a reply was an error (subclasses check more)."""
        if self.errors:
            raise RuntimeError(f"{self.errors} error replies")

    def _send(self, count: int) -> None:
        start, end, requests = self._next, self._next + count, self._requests
        if end <= self._count:
            data = requests[start] if count == 1 else b"".join(requests[start:end])
        else:
            data = b"".join(requests[start:]) + b"".join(requests[: end - self._count])
        self._next = end % self._count
        self._in_flight += count
        assert self._transport is not None
        self._transport.write(data)

    def _answered(self, count: int) -> None:
        self._in_flight -= count
        self.answered += count
        shared = self._shared
        shared.replies += count
        if not shared.stopping:
            self._send(count)
        elif self._in_flight == 0 and not self.drained.done():
            self.drained.set_result(None)


class NdjsonDriver(_Driver):
    """moviedb: one reply per line; an error reply is spotted by how it starts."""

    def __init__(self, requests: Sequence[bytes], depth: int, shared: _Shared) -> None:
        super().__init__(requests, depth, shared)
        self._tail = b""

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        # A marker cut between two reads is found in the last bytes before and first after.
        edge = len(_ERROR) - 1
        self.errors += data.count(_ERROR) + (self._tail + data[:edge]).count(_ERROR)
        self._tail = data[-edge:] if len(data) >= edge else (self._tail + data)[-edge:]
        replies = data.count(b"\n")
        if replies:
            self._answered(replies)


class RespDriver(_Driver):
    """Redis: every reply's length is known in advance (the hashes are ours), so replies are
    counted by bytes; each one's `*` header is counted too, and `-` error lines are looked for."""

    def __init__(
        self, requests: Sequence[bytes], lengths: Sequence[int], depth: int, shared: _Shared
    ) -> None:
        super().__init__(requests, depth, shared)
        self._lengths = lengths
        self._acknowledged = 0  # index of the request whose reply comes next
        self._buffered = 0  # bytes of that reply received so far
        self._tail = b"\r\n"  # the stream starts where a reply starts
        self.headers = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.headers += data.count(b"*")
        self.errors += data.count(_RESP_ERROR) + (self._tail + data[:2]).count(_RESP_ERROR)
        self._tail = data[-2:] if len(data) >= 2 else (self._tail + data)[-2:]
        buffered, index, lengths = self._buffered + len(data), self._acknowledged, self._lengths
        replies = 0
        while replies < self._in_flight and buffered >= lengths[index]:
            buffered -= lengths[index]
            index = index + 1 if index + 1 < self._count else 0
            replies += 1
        self._buffered, self._acknowledged = buffered, index
        if replies:
            self._answered(replies)

    def check(self) -> None:
        super().check()
        if self._buffered or self.headers != self.answered:
            raise RuntimeError(
                f"replies not as expected: {self.headers} `*` headers for {self.answered} "
                f"replies, {self._buffered} bytes left over"
            )


@dataclass(frozen=True)
class Load:
    """One measurement window."""

    rate: float  # replies per second
    generator_cpu: float  # this process's CPU seconds per wall second (1.0 = a full core)
    server_cpu: float  # the server process's, likewise
    other_cpu: float  # other processes' on the machine (noise), likewise
    reply_bytes: float  # mean bytes of a reply


def orders(keys: int, connections: int, seed: int = 5) -> list[list[int]]:
    """For each connection, every key index once in its own random order."""
    rng = random.Random(seed)
    return [rng.sample(range(keys), keys) for _ in range(connections)]


async def measure(
    port: int,
    traffic: Traffic,
    depth: int,
    connections: int,
    warmup: float,
    seconds: float,
    server_pid: int,
) -> Load:
    """Open `connections` (at most as many as `traffic` has orders), keep `depth` requests in
    flight on each: `warmup` seconds, then `seconds` measured; then let the replies in flight
    come."""
    loop = asyncio.get_running_loop()
    shared = _Shared()
    drivers: list[_Driver] = []
    try:
        for i in range(connections):
            _, driver = await loop.create_connection(
                functools.partial(traffic.driver, i, depth, shared), "127.0.0.1", port
            )
            drivers.append(driver)
        for driver in drivers:
            driver.start()
        await asyncio.sleep(warmup)
        replies, wall, cpu = shared.replies, time.perf_counter(), time.process_time()
        server, machine = cpu_seconds(server_pid), machine_busy_seconds()
        await asyncio.sleep(seconds)
        replies = shared.replies - replies
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        server = cpu_seconds(server_pid) - server
        machine = machine_busy_seconds() - machine
        shared.stopping = True
        for driver in drivers:
            driver.stop_if_idle()
        await asyncio.wait_for(asyncio.gather(*(d.drained for d in drivers)), DRAIN_SECONDS)
        for driver in drivers:
            driver.check()
    finally:
        for driver in drivers:
            driver.close()
    answered = sum(d.answered for d in drivers)
    return Load(
        rate=replies / wall,
        generator_cpu=cpu / wall,
        server_cpu=server / wall,
        other_cpu=max(0.0, machine - cpu - server) / wall,
        reply_bytes=sum(d.received for d in drivers) / max(1, answered),
    )


@dataclass(frozen=True)
class Traffic:
    """The requests of one side, in each connection's order; with RESP, each reply's length."""

    cycles: list[list[bytes]]
    lengths: list[list[int]] | None = None  # None: NDJSON

    @classmethod
    def ndjson(cls, requests: Sequence[bytes], order: list[list[int]]) -> Traffic:
        return cls([[requests[k] for k in keys] for keys in order])

    @classmethod
    def resp(
        cls, requests: Sequence[bytes], lengths: Sequence[int], order: list[list[int]]
    ) -> Traffic:
        return cls(
            [[requests[k] for k in keys] for keys in order],
            [[lengths[k] for k in keys] for keys in order],
        )

    def driver(self, i: int, depth: int, shared: _Shared) -> _Driver:
        if self.lengths is None:
            return NdjsonDriver(self.cycles[i], depth, shared)
        return RespDriver(self.cycles[i], self.lengths[i], depth, shared)
