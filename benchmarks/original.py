"""The original design (a networks-course project), re-created as the baseline that moviedb's
fan-out is measured against. A baseline, not product code: it lives only under benchmarks/.

What it re-creates, as the original did it:
- a server with one thread per client connection, taking the first free port of a permitted
  list, holding the movie database as a dict (title -> information) that is loaded from a pickle
  file at start and pickled back to that file in full on every change;
- a client that asks the servers one after another, opening a new TCP connection for every
  request (connect, send the request, read the reply, close), with the commands get, edit, add,
  all, addserver, deleteserver and serverlist (the original kept the server list in its own
  pickle file; here it is held in memory, as nothing here needs it kept).

What it changes, for safety only: the server unpickles nothing but its own database file
(written by itself, or by the benchmark before starting it); requests and replies travel as
JSON lines, never pickles; the server listens, and the client connects, on loopback only; a
request line, a connection's silence and its number of requests are bounded.

Run one server: `python benchmarks/original.py --db moviedb.p --ports 7001-7010` (0 = any free
port); it prints `listening on 127.0.0.1:PORT` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import pickle
import signal
import socket
import socketserver
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

HOST = "127.0.0.1"
MAX_LINE = 64 * 1024
IDLE_SECONDS = 10.0  # a connection silent this long is closed
MAX_REQUESTS_PER_CONNECTION = 1000

Reply = dict[str, Any]
ServerAddress = tuple[str, int]


# --- server ---------------------------------------------------------------------------------


class MovieServer(socketserver.ThreadingTCPServer):
    """One thread per connection; the whole dict is pickled to `db` after every change."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, db: Path) -> None:
        self.db = db
        self.movies: dict[str, Any] = {}
        if db.exists():
            with db.open("rb") as file:  # our own file: the server never unpickles network data
                loaded = pickle.load(file)
            if not isinstance(loaded, dict):
                raise SystemExit(f"{db}: expected a pickled dict, found {type(loaded).__name__}")
            self.movies = loaded
        self.lock = threading.Lock()
        super().__init__((HOST, port), Handler)

    def save(self) -> None:
        with self.db.open("wb") as file:
            pickle.dump(self.movies, file)

    def answer(self, request: Any) -> Reply:
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        command, title, info = request.get("command"), request.get("title"), request.get("info")
        if command == "all":
            with self.lock:
                return {"ok": True, "titles": sorted(self.movies)}
        if not isinstance(title, str):
            return {"ok": False, "error": f"{command!r} needs a title (text)"}
        with self.lock:
            if command == "get":
                if title not in self.movies:
                    return {"ok": False, "error": "not found"}
                return {"ok": True, "title": title, "info": self.movies[title]}
            if command in ("add", "edit"):
                if not isinstance(info, str | dict):
                    return {"ok": False, "error": "info is text or a JSON object"}
                if command == "add" and title in self.movies:
                    return {"ok": False, "error": "already present"}
                if command == "edit" and title not in self.movies:
                    return {"ok": False, "error": "not found"}
                self.movies[title] = info
                self.save()
                return {"ok": True}
        return {"ok": False, "error": f"unknown command {command!r}"}


class Handler(socketserver.StreamRequestHandler):
    timeout = IDLE_SECONDS

    def handle(self) -> None:
        server = self.server
        assert isinstance(server, MovieServer)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                line = self.rfile.readline(MAX_LINE + 1)
                if not line:
                    return
                if not line.endswith(b"\n"):
                    self._send({"ok": False, "error": f"line longer than {MAX_LINE} bytes"})
                    return
                try:
                    request = json.loads(line)
                except ValueError:
                    reply: Reply = {"ok": False, "error": "not JSON"}
                else:
                    reply = server.answer(request)
                self._send(reply)
        except OSError:  # the client went away, or was silent for IDLE_SECONDS
            return

    def _send(self, reply: Reply) -> None:
        self.wfile.write(json.dumps(reply).encode() + b"\n")


def serve(ports: list[int], db: Path) -> MovieServer:
    """A server on the first free port of `ports`, in order."""
    for port in ports:
        try:
            return MovieServer(port, db)
        except OSError:
            continue
    raise SystemExit(f"no free port in {ports}")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The original design's server (a baseline).")
    parser.add_argument("--db", type=Path, default=Path("moviedb.p"))
    parser.add_argument("--ports", default="7001-7010", help="e.g. 7001-7010,7020; 0 = any")
    args = parser.parse_args(argv)
    ports: list[int] = []
    for part in args.ports.split(","):
        low, _, high = part.partition("-")
        ports.extend(range(int(low), int(high or low) + 1))
    server = serve(ports, args.db)
    signal.signal(signal.SIGTERM, _stop)
    print(f"listening on {HOST}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- client ---------------------------------------------------------------------------------


class OriginalClient:
    """Asks each server in turn, opening a new TCP connection for every request."""

    def __init__(self, servers: list[ServerAddress], *, timeout: float = 2.0) -> None:
        for host, _ in servers:
            _require_loopback(host)
        self.servers = list(servers)
        self.timeout = timeout

    def request(self, server: ServerAddress, message: dict[str, Any]) -> Reply:
        try:
            with socket.create_connection(server, timeout=self.timeout) as sock:
                sock.sendall(json.dumps(message).encode() + b"\n")
                line = _read_line(sock)
        except OSError as exc:
            return {"ok": False, "error": f"unreachable: {exc}"}
        return dict(json.loads(line)) if line else {"ok": False, "error": "no reply"}

    def ask_all(self, message: dict[str, Any]) -> list[tuple[ServerAddress, Reply]]:
        return [(server, self.request(server, message)) for server in self.servers]

    def get(self, title: str) -> list[tuple[ServerAddress, Reply]]:
        return self.ask_all({"command": "get", "title": title})

    def all(self) -> list[tuple[ServerAddress, Reply]]:
        return self.ask_all({"command": "all"})

    def add(self, title: str, info: str | dict[str, Any]) -> list[tuple[ServerAddress, Reply]]:
        return self.ask_all({"command": "add", "title": title, "info": info})

    def edit(self, title: str, info: str | dict[str, Any]) -> list[tuple[ServerAddress, Reply]]:
        """Update where present, add where missing (the original rule)."""
        replies = []
        for server in self.servers:
            reply = self.request(server, {"command": "edit", "title": title, "info": info})
            if reply.get("error") == "not found":
                reply = self.request(server, {"command": "add", "title": title, "info": info})
            replies.append((server, reply))
        return replies

    def addserver(self, host: str, port: int) -> None:
        _require_loopback(host)
        if (host, port) not in self.servers:
            self.servers.append((host, port))

    def deleteserver(self, host: str, port: int) -> None:
        if (host, port) in self.servers:
            self.servers.remove((host, port))

    def serverlist(self) -> list[ServerAddress]:
        return list(self.servers)


def _require_loopback(host: str) -> None:
    """Benchmarks talk only to this machine: a server elsewhere is refused before any
    connection is made."""
    from moviedb.protocol import is_loopback  # here: the baseline server never imports moviedb

    if not is_loopback(host):
        raise ValueError(f"{host!r} is not a loopback address (127.0.0.0/8, ::1, localhost)")


def _read_line(sock: socket.socket) -> bytes:
    """Bytes up to the first newline (or the end of the stream), at most MAX_LINE."""
    buffer = b""
    for _ in range(MAX_LINE):  # bounded: each pass receives at least one byte or ends
        chunk = sock.recv(65536)
        buffer += chunk
        if not chunk or b"\n" in buffer or len(buffer) > MAX_LINE:
            break
    return buffer.partition(b"\n")[0]


if __name__ == "__main__":
    main(sys.argv[1:])
