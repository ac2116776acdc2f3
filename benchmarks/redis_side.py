"""The Redis side of a comparison: a redis-server this benchmark starts on a free loopback port
(no persistence), the catalog loaded as hashes, RESP encoding, and redis-benchmark (a compiled
load generator) run once to check that ours is not what limits the rate."""

from __future__ import annotations

import csv
import resource
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import end
from benchmarks.processes import free_port
from moviedb.model import Movie

KEY_PREFIX = "movie:"
READY_SECONDS = 10.0


def key_of(index: int) -> str:
    # redis-benchmark's __rand_int__ is a 12-digit number, so that it names these same keys.
    return f"{KEY_PREFIX}{index:012d}"


def resp_command(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def hash_fields(movie: Movie) -> list[tuple[str, str]]:
    """The record's eight fields as a Redis hash holds them (lists joined by commas)."""
    fields = [
        ("title", movie.title),
        ("year", str(movie.year)),
        ("director", movie.director or ""),
        ("cast", ", ".join(movie.cast)),
        ("genres", ", ".join(movie.genres)),
        ("runtime_min", str(movie.runtime_min)),
        ("rating", str(movie.rating)),
        ("plot", movie.plot or ""),
    ]
    for name, value in fields:
        # The load generator counts replies by length and checks them by their `*` headers and
        # `-` error lines: a value must not contain either inside a line break.
        if "*" in value or "\r" in value or "\n" in value:
            raise ValueError(f"{name} {value!r} would confuse the reply counting")
    return fields


def hgetall_reply_length(fields: list[tuple[str, str]]) -> int:
    """Bytes of the HGETALL reply for a hash of these fields (the same in any field order)."""
    length = len(f"*{2 * len(fields)}\r\n")
    for name, value in fields:
        for text in (name, value):
            size = len(text.encode())
            length += len(f"${size}\r\n") + size + 2
    return length


@dataclass
class RedisServer:
    proc: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        """SIGTERM; SIGKILL if it has not exited within harness.STOP_SECONDS."""
        end(self.proc)

    def load(self, hashes: list[list[tuple[str, str]]], batch: int = 1000) -> None:
        """HSET every hash (key_of(i) for the i-th), pipelined `batch` at a time."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            for start in range(0, len(hashes), batch):
                chunk = hashes[start : start + batch]
                sock.sendall(
                    b"".join(
                        resp_command("HSET", key_of(start + i), *(t for f in fields for t in f))
                        for i, fields in enumerate(chunk)
                    )
                )
                reply = _read_lines(sock, len(chunk))
                if reply.count(b":") != len(chunk):  # each reply `:N` (fields added)
                    raise RuntimeError(f"redis refused an HSET: {reply[:200]!r}")


def _read_lines(sock: socket.socket, count: int) -> bytes:
    """Read until `count` CRLF-terminated lines have come (replies of one line each)."""
    received = bytearray()
    for _ in range(count * 64 + 64):  # bounded: every recv brings at least one byte
        if received.count(b"\r\n") >= count:
            return bytes(received)
        data = sock.recv(65536)
        if not data:
            break
        received += data
    raise RuntimeError(f"redis closed the connection: {bytes(received[-200:])!r}")


def start_redis(workdir: Path) -> RedisServer | None:
    """A redis-server on a free loopback port, without persistence; None if none is installed.
    Redis cannot listen on port 0: a port is picked, and another if a stranger took it first."""
    executable = shutil.which("redis-server")
    if executable is None:
        return None
    for _ in range(5):  # bounded: a lost race for the port is tried again with another
        port = free_port()
        log = (workdir / f"redis-{port}.log").open("wb")
        proc = subprocess.Popen(
            [
                executable,
                *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"),
                *("--logfile", ""),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        server = RedisServer(proc, port)
        if _wait_ready(server):
            return server
        server.stop()
    raise RuntimeError(f"redis-server did not start; see {workdir}/redis-*.log")


def _wait_ready(server: RedisServer) -> bool:
    """True once our redis-server answers on its port: INFO names its process id, so that
    a stranger that took the port is not mistaken for it."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
                sock.sendall(resp_command("INFO", "server"))
                info = _read_bulk(sock)
        except OSError:
            time.sleep(0.01)
            continue
        return f"process_id:{server.proc.pid}\r\n".encode() in info
    return False


def _read_bulk(sock: socket.socket) -> bytes:
    """One bulk-string reply (`$N` CRLF, N bytes, CRLF); an error line as it came."""
    received = b""
    for _ in range(1024):  # bounded: every recv brings at least one byte
        head, crlf, _ = received.partition(b"\r\n")
        if crlf and not head.startswith(b"$"):
            return received
        if crlf and len(received) >= len(head) + 2 + int(head[1:]) + 2:
            return received
        data = sock.recv(65536)
        if not data:
            break
        received += data
    return received


@dataclass(frozen=True)
class CompiledRun:
    rate: float  # requests per second, as redis-benchmark reports it
    cpu: float  # redis-benchmark's CPU time over its wall time (1.0 = one core)


def redis_benchmark(
    port: int, connections: int, depth: int, keys: int, requests: int, timeout: float
) -> CompiledRun | None:
    """`redis-benchmark -c C -P D -n N -r KEYS HGETALL movie:__rand_int__` (random keys of the
    loaded catalog); runs on this process's cores. None when it is not installed."""
    executable = shutil.which("redis-benchmark")
    if executable is None:
        return None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            executable,
            *("-h", "127.0.0.1", "-p", str(port), "-c", str(connections)),
            *("-n", str(requests), "-P", str(depth), "-r", str(keys), "--csv"),
            *("HGETALL", f"{KEY_PREFIX}__rand_int__"),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = [row for row in csv.reader(done.stdout.splitlines()) if row and row[0] != "test"]
    if not rows:
        raise RuntimeError(f"no figure from redis-benchmark: {done.stdout!r} {done.stderr!r}")
    return CompiledRun(rate=float(rows[-1][1]), cpu=cpu / wall)
