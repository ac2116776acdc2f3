"""A million movies: point-get latency on a server holding --movies compared with one holding
the first 1,000 of the same catalog, both up at once and asked in turn, request by request; the
server's resident memory after start and after a get load; and its start time, to the
`listening` line and to the first `hello` answered. Both databases are written once (straight
through Store.apply) into a temporary directory this benchmark owns, reused by every run and
deleted at the end; each run starts fresh servers."""

from __future__ import annotations

import random
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click

from benchmarks import records
from benchmarks.harness import Server, percentiles, run, start_server, summary
from benchmarks.loadgen import Traffic, measure, orders
from benchmarks.processes import (
    GENERATOR_CORE,
    SERVER_CORE,
    can_pin,
    cpu_seconds,
    machine_busy_seconds,
    memory_kib,
    on_generator_core,
    pin,
)
from moviedb.protocol import Get, Hello, encode_request

SMALL = 1_000
WARMUP = 100  # gets before the measured ones, of titles not measured after
LATENCY_TARGET = 1.2  # p50 at --movies over p50 at 1,000 (issue 6)
RSS_TARGET_MB = 200
START_TARGET_S = 0.2
MAX_SECONDS = 300.0  # a bound on each measured pass


class LineClient:
    """One blocking connection that sends a request and reads its one reply line."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def ask(self, request: bytes) -> bytes:
        self._sock.sendall(request)
        for _ in range(1 << 16):  # bounded: every recv brings at least one byte
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                return line
            data = self._sock.recv(1 << 16)
            if not data:
                break
            self._buffer += data
        raise RuntimeError("the server closed the connection")

    def close(self) -> None:
        self._sock.close()


@dataclass
class Figures:
    """One run at one size."""

    listening: float  # seconds from spawn to the `listening` line
    hello: float  # seconds from spawn to the first `hello` answered
    first_p50: float  # ms: each title asked for the first time since the server started
    repeat_p50: float  # ms: the same titles asked again
    first_p99: float
    rss_start: float  # MB, after the first hello
    rss_load: float  # MB, after the gets and the concurrent get load
    rss_peak: float  # MB, VmHWM at the end


def ask(client: LineClient, request: bytes) -> float:
    """Seconds for one get; its reply checked to hold one copy."""
    started = time.perf_counter()
    reply = client.ask(request)
    elapsed = time.perf_counter() - started
    if not reply.startswith(b'{"ok":true') or reply.count(b'"key":') != 1:
        raise RuntimeError(f"get answered {reply[:300]!r}")
    return elapsed


def interleaved_gets(
    clients: dict[int, LineClient], requests: dict[int, list[bytes]], deadline: float
) -> dict[int, list[float]]:
    """Seconds per get, one at a time, alternating between the servers request by request
    (which goes first alternating too), so that machine noise hits every size alike."""
    seconds: dict[int, list[float]] = {size: [] for size in clients}
    sizes = list(clients)
    for i in range(min(len(r) for r in requests.values())):
        for size in sizes if i % 2 == 0 else reversed(sizes):
            seconds[size].append(ask(clients[size], requests[size][i]))
        if time.perf_counter() > deadline:
            break
    return seconds


@dataclass
class Started:
    server: Server
    client: LineClient
    listening: float
    hello: float
    rss_start: float


def start(db: Path, pinned: bool) -> Started:
    """Spawn a server and time it to its `listening` line and to its first `hello` answered."""
    spawned = time.perf_counter()
    server = start_server(db)
    listening = time.perf_counter() - spawned
    try:
        client = LineClient(server.port)
        reply = client.ask(encode_request(Hello(id=1, client="scale benchmark")))
        hello = time.perf_counter() - spawned
        if not reply.startswith(b'{"ok":true'):
            raise RuntimeError(f"hello answered {reply[:300]!r}")
        if pinned:
            pin(server.proc.pid, SERVER_CORE)
        return Started(server, client, listening, hello, memory_kib(server.proc.pid) / 1024)
    except BaseException:
        server.stop()
        raise


def one_run(
    dbs: dict[int, Path],
    titles: dict[int, list[records.Title]],
    seed: int,
    gets: int,
    pinned: bool,
    burst: float,
    connections: int,
    depth: int,
) -> tuple[dict[int, Figures], float]:
    """Start a fresh server on each database (in the order given), time its start, measure
    gets (interleaved between the servers) and memory, stop them. Also returns other
    processes' CPU use during the timed gets (1.0 = a full core): the run's noise."""
    rng = random.Random(seed)
    requests: dict[int, list[bytes]] = {}
    for size in dbs:
        chosen = rng.sample(titles[size], WARMUP + gets)
        requests[size] = [encode_request(Get(title=t.title, year=t.year)) for t in chosen]
    started: dict[int, Started] = {}
    try:
        try:
            for size, db in dbs.items():
                started[size] = start(db, pinned)
            first, again, others = timed_gets(started, requests, rng)
        finally:
            for s in started.values():
                s.client.close()  # the gets one at a time are done: the load has its own
        figures: dict[int, Figures] = {}
        for size, s in started.items():
            pid = s.server.proc.pid
            if burst > 0:
                # The get load: many connections with requests in flight, over random titles.
                keys = rng.sample(titles[size], min(len(titles[size]), 10_000))
                lines = [encode_request(Get(title=t.title, year=t.year)) for t in keys]
                traffic = Traffic.ndjson(lines, orders(len(lines), connections, seed))
                run(measure(s.server.port, traffic, depth, connections, 0.0, burst, pid))
            first_p50, first_p99 = percentiles(first[size])
            figures[size] = Figures(
                listening=s.listening,
                hello=s.hello,
                first_p50=first_p50,
                repeat_p50=percentiles(again[size])[0],
                first_p99=first_p99,
                rss_start=s.rss_start,
                rss_load=memory_kib(pid) / 1024,
                rss_peak=memory_kib(pid, "VmHWM") / 1024,
            )
        return figures, others
    finally:
        for s in started.values():
            s.server.stop()


Seconds = dict[int, list[float]]


def timed_gets(
    started: dict[int, Started], requests: dict[int, list[bytes]], rng: random.Random
) -> tuple[Seconds, Seconds, float]:
    """WARMUP gets, then the timed gets, then the same titles again in another order; with
    other processes' CPU use meanwhile (what the machine did beyond these processes)."""
    clients = {size: s.client for size, s in started.items()}
    deadline = time.perf_counter() + MAX_SECONDS
    wall, ours = time.perf_counter(), time.process_time() + _servers_cpu(started)
    machine = machine_busy_seconds()
    interleaved_gets(clients, {z: r[:WARMUP] for z, r in requests.items()}, deadline)
    measured = {size: r[WARMUP:] for size, r in requests.items()}
    first = interleaved_gets(clients, measured, deadline)
    shuffled = {size: rng.sample(r, len(r)) for size, r in measured.items()}
    again = interleaved_gets(clients, shuffled, deadline)
    ours = time.process_time() + _servers_cpu(started) - ours
    others = max(0.0, machine_busy_seconds() - machine - ours) / (time.perf_counter() - wall)
    return first, again, others


def _servers_cpu(started: dict[int, Started]) -> float:
    return sum(cpu_seconds(s.server.proc.pid) for s in started.values())


@click.command()
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--movies", default=1_000_000, show_default=True, type=click.IntRange(2_000))
@click.option(
    "--gets",
    default=800,
    show_default=True,
    type=click.IntRange(10, SMALL - WARMUP),
    help="Timed gets per run and size, of distinct titles (then the same again).",
)
@click.option(
    "--burst",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0, 60),
    help="Seconds of concurrent gets (--connections, --depth) before the memory is read.",
)
@click.option("--connections", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--depth", default=16, show_default=True, type=click.IntRange(1, 128))
def scale(runs: int, movies: int, gets: int, burst: float, connections: int, depth: int) -> None:
    """Get latency, memory and start time of one server holding --movies (vs 1,000)."""
    pinned = can_pin()
    sizes = [movies, SMALL]
    figures: dict[int, list[Figures]] = {size: [] for size in sizes}
    others: list[float] = []
    with tempfile.TemporaryDirectory(prefix="moviedb-scale-") as tmp:
        titles: dict[int, list[records.Title]] = {}
        for size in sizes:
            db = Path(tmp, f"{size}.sqlite3")
            started = time.perf_counter()
            titles[size] = records.build(db, size, records.Title.of)
            click.echo(
                f"built {size:,} movies in {time.perf_counter() - started:,.1f} s "
                f"({db.stat().st_size / 1e6:,.0f} MB); reused by every run"
            )
        click.echo(
            f"{runs} runs; each: a fresh server per size (the larger started first in odd "
            f"runs), {WARMUP} warm-up gets, {gets} timed gets of distinct random titles one at "
            "a time on one connection per server, alternating between the servers request by "
            f"request; the same titles again; then {burst:g} s of {connections} connections "
            f"x {depth} gets in flight on each; "
            + (
                f"server on core {SERVER_CORE}, client on core {GENERATOR_CORE}"
                if pinned
                else "not pinned"
            )
        )
        with on_generator_core(pinned):
            for index in range(runs):
                order = sizes if index % 2 == 0 else list(reversed(sizes))
                dbs = {size: Path(tmp, f"{size}.sqlite3") for size in order}
                measured, noise = one_run(
                    dbs, titles, index, gets, pinned, burst, connections, depth
                )
                others.append(noise)
                for size in order:
                    f = measured[size]
                    figures[size].append(f)
                    click.echo(
                        f"run {index + 1} {size:>9,}: start to listening {f.listening:.3f} s, "
                        f"to hello {f.hello:.3f} s; get p50 first {f.first_p50:.3f} ms, "
                        f"again {f.repeat_p50:.3f} ms (first p99 {f.first_p99:.3f} ms); RSS "
                        f"{f.rss_start:.1f} MB after start, {f.rss_load:.1f} MB after load, "
                        f"peak {f.rss_peak:.1f} MB; other processes' CPU {noise:.0%}"
                    )
    _report(figures, others, movies)


def _verdict(median: float, target: float) -> str:
    return f"target <= {target:g}: {'met' if median <= target else 'missed'}"


def _report(figures: dict[int, list[Figures]], others: list[float], movies: int) -> None:
    big, small = figures[movies], figures[SMALL]
    for label, attribute in (
        ("get p50 ms, first ask of each title", "first_p50"),
        ("get p50 ms, the same titles again", "repeat_p50"),
    ):
        for size, values in ((movies, big), (SMALL, small)):
            click.echo(
                f"{label}, {size:>9,}: {summary([getattr(f, attribute) for f in values], '.3f')}"
            )
        ratios = [
            getattr(b, attribute) / getattr(s, attribute) for b, s in zip(big, small, strict=True)
        ]
        click.echo(
            f"{label}, ratio {movies:,} / {SMALL:,} per run: {summary(ratios, '.2f')}   "
            + _verdict(statistics.median(ratios), LATENCY_TARGET)
        )
    click.echo(
        "other processes' CPU during the timed gets (noise), median: "
        f"{statistics.median(others):.0%}"
    )
    for label, attribute in (
        ("after start", "rss_start"),
        ("after load", "rss_load"),
        ("peak", "rss_peak"),
    ):
        megabytes = [getattr(f, attribute) for f in big]
        click.echo(
            f"server RSS MB at {movies:,}, {label}: {summary(megabytes, '.1f')}   "
            + _verdict(statistics.median(megabytes), RSS_TARGET_MB)
        )
    for size, values in ((movies, big), (SMALL, small)):
        for label, attribute in (("listening", "listening"), ("first hello", "hello")):
            seconds = [getattr(f, attribute) for f in values]
            click.echo(
                f"start to {label} s at {size:,}: {summary(seconds, '.3f')}"
                + (
                    "   " + _verdict(statistics.median(seconds), START_TARGET_S)
                    if size == movies
                    else ""
                )
            )
