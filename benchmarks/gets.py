"""Point gets: one moviedb server answering `get` (title and year) from many connections,
without pipelining and with requests in flight, compared in the same run, interleaved, with
Redis answering HGETALL of the same records as eight-field hashes, under the same load
generator (loadgen.py). Each server is pinned to core 0 and the generator to core 1."""

from __future__ import annotations

import socket
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
import msgspec

from benchmarks import records
from benchmarks.harness import Server, run, start_server, summary
from benchmarks.loadgen import Load, Traffic, measure, orders
from benchmarks.processes import GENERATOR_CORE, SERVER_CORE, can_pin, on_generator_core, pin
from benchmarks.redis_side import (
    RedisServer,
    hash_fields,
    hgetall_reply_length,
    key_of,
    redis_benchmark,
    resp_command,
    start_redis,
)
from moviedb.model import Movie
from moviedb.protocol import Get, encode_request

TARGETS = {1: 0.7, 16: 0.5}  # moviedb gets/s over Redis HGETALL/s, by depth (issue 6)
SIDES = ("moviedb", "redis")


@dataclass
class Side:
    port: int
    pid: int
    traffic: Traffic


def check_moviedb(port: int, request: bytes, title: str) -> None:
    """One `get` answered with the one copy asked for, before anything is measured."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        with sock.makefile("rb") as replies:
            reply = replies.readline()
    copies = msgspec.json.decode(reply)["result"]["copies"]
    if [c["movie"]["title"] for c in copies] != [title]:
        raise RuntimeError(f"get answered {reply[:300]!r}")


def check_redis(port: int, request: bytes, expected: int) -> None:
    """One HGETALL answered with the whole hash (its reply length known in advance)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        for _ in range(expected + 1):  # bounded: every recv brings at least one byte
            if len(reply) >= expected:
                break
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    if len(reply) != expected or not reply.startswith(b"*16\r\n"):
        raise RuntimeError(f"HGETALL answered {reply[:300]!r}, expected {expected} bytes")


@click.command()
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--connections", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option(
    "--depth",
    "depths",
    multiple=True,
    default=[1, 16],
    show_default=True,
    type=click.IntRange(1, 128),
    help="Requests in flight per connection (repeat the option for several).",
)
@click.option("--seconds", default=5.0, show_default=True, type=click.FloatRange(0.1, 300))
@click.option("--warmup", default=1.0, show_default=True, type=click.FloatRange(0, 60))
@click.option("--movies", default=10_000, show_default=True, type=click.IntRange(200, 1_000_000))
@click.option(
    "--compiled/--no-compiled",
    default=True,
    show_default=True,
    help="Also run redis-benchmark once per depth, to check the load generator.",
)
def gets(
    runs: int,
    connections: int,
    depths: tuple[int, ...],
    seconds: float,
    warmup: float,
    movies: int,
    compiled: bool,
) -> None:
    """Point get throughput of one server vs Redis HGETALL (50 connections, depth 1 and 16)."""
    pinned = can_pin()
    click.echo(
        f"{movies:,} movies (8 fields); {connections} connections; depths "
        f"{', '.join(map(str, depths))}; {runs} runs of {seconds:g} s each after {warmup:g} s "
        "of warm-up; sides interleaved"
    )
    click.echo(
        f"servers pinned to core {SERVER_CORE}, load generator to core {GENERATOR_CORE}"
        if pinned
        else "not pinned: fewer than two cores available to this process"
    )
    with tempfile.TemporaryDirectory() as tmp:
        kept = records.build(Path(tmp, "gets.sqlite3"), movies, _title_and_hash)
        titles = [t for t, _ in kept]
        fields = [f for _, f in kept]
        order = orders(movies, connections)
        requests = [encode_request(Get(title=t.title, year=t.year)) for t in titles]
        server: Server | None = None
        redis: RedisServer | None = None
        try:
            server = start_server(Path(tmp, "gets.sqlite3"))
            check_moviedb(server.port, requests[0], titles[0].title)
            sides = {"moviedb": Side(server.port, server.proc.pid, Traffic.ndjson(requests, order))}
            redis = start_redis(Path(tmp))
            if redis is None:
                click.echo("redis-server not found: the Redis column is skipped")
            else:
                redis.load(fields)
                hgetall = [resp_command("HGETALL", key_of(i)) for i in range(movies)]
                lengths = [hgetall_reply_length(f) for f in fields]
                check_redis(redis.port, hgetall[0], lengths[0])
                traffic = Traffic.resp(hgetall, lengths, order)
                sides["redis"] = Side(redis.port, redis.proc.pid, traffic)
            if pinned:
                for side in sides.values():
                    pin(side.pid, SERVER_CORE)
            with on_generator_core(pinned):
                figures = _measure_all(sides, runs, depths, connections, warmup, seconds)
                _report(figures, depths)
                if compiled and redis is not None:
                    _compare_compiled(redis, figures, depths, connections, movies, seconds)
        finally:
            if redis is not None:
                redis.stop()
            if server is not None:
                server.stop()


def _title_and_hash(movie: Movie) -> tuple[records.Title, list[tuple[str, str]]]:
    """What each side is asked for a movie: moviedb its title and year, Redis its hash."""
    return records.Title.of(movie), hash_fields(movie)


Figures = dict[tuple[str, int], list[Load]]


def _measure_all(
    sides: dict[str, Side],
    runs: int,
    depths: tuple[int, ...],
    connections: int,
    warmup: float,
    seconds: float,
) -> Figures:
    figures: Figures = {(name, depth): [] for name in sides for depth in depths}
    for index in range(runs):
        for depth in depths:
            # Interleaved, the side that goes first alternating, so that noise hits both alike.
            names = list(sides) if index % 2 == 0 else list(reversed(sides))
            said = []
            for name in names:
                side = sides[name]
                load = run(
                    measure(side.port, side.traffic, depth, connections, warmup, seconds, side.pid)
                )
                figures[name, depth].append(load)
                said.append(
                    f"{name} {load.rate:,.0f}/s (server CPU {load.server_cpu:.0%}, "
                    f"generator CPU {load.generator_cpu:.0%}, other processes "
                    f"{load.other_cpu:.0%})"
                )
            click.echo(f"run {index + 1} depth {depth:>2}: " + "; ".join(said))
    return figures


def _report(figures: Figures, depths: tuple[int, ...]) -> None:
    names = [name for name in SIDES if (name, depths[0]) in figures]
    for depth in depths:
        for name in names:
            loads = figures[name, depth]
            what = "get" if name == "moviedb" else "HGETALL"
            click.echo(
                f"depth {depth:>2}  {name:<8} {what}/s  {summary([x.rate for x in loads])}   "
                f"CPU median: server {statistics.median(x.server_cpu for x in loads):.0%}, "
                f"generator {statistics.median(x.generator_cpu for x in loads):.0%}, "
                f"others {statistics.median(x.other_cpu for x in loads):.0%}; "
                f"{statistics.median(x.reply_bytes for x in loads):,.0f} bytes a reply"
            )
            if statistics.median(x.generator_cpu for x in loads) >= 0.9:
                click.echo(
                    f"depth {depth:>2}  {name}: the load generator used 90% or more of its core; "
                    "this rate is a lower bound"
                )
        if "redis" in names:
            ratios = [
                m.rate / r.rate
                for m, r in zip(figures["moviedb", depth], figures["redis", depth], strict=True)
            ]
            verdict = ""
            if depth in TARGETS:
                target = TARGETS[depth]
                met = statistics.median(ratios) >= target
                verdict = f"   target >= {target}: {'met' if met else 'missed'}"
            click.echo(
                f"depth {depth:>2}  ratio moviedb / redis, per run: {summary(ratios, '.3f')}"
                + verdict
            )


def _compare_compiled(
    redis: RedisServer,
    figures: Figures,
    depths: tuple[int, ...],
    connections: int,
    keys: int,
    seconds: float,
) -> None:
    """redis-benchmark once per depth, with about as many requests as ours answered in
    `seconds`, against the same Redis, keys and connections; on the load generator's core."""
    for depth in depths:
        ours = statistics.median(x.rate for x in figures["redis", depth])
        requests = int(min(max(ours * seconds, 10_000), 50_000_000))
        outcome = redis_benchmark(
            redis.port, connections, depth, keys, requests, timeout=seconds * 20 + 60
        )
        if outcome is None:
            click.echo("redis-benchmark not found: no comparison with a compiled load generator")
            return
        click.echo(
            f"depth {depth:>2}  redis-benchmark HGETALL/s {outcome.rate:,.0f} "
            f"(once, {requests:,} requests, its CPU {outcome.cpu:.0%}) vs this load generator's "
            f"median {ours:,.0f} (ratio {ours / outcome.rate:.2f})"
        )
