"""Server addresses: `HOST:PORT`, with IPv6 hosts in brackets (`[::1]:7001`)."""

from __future__ import annotations

from typing import NamedTuple

from moviedb.errors import InvalidAddress


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse HOST:PORT or raise InvalidAddress naming what is accepted."""
    raw = text.strip()
    if len(text) > 80:  # name it, not print it: a config or a pickle may hold anything
        text = text[:60] + "…"
    accepted = "accepted: HOST:PORT such as 127.0.0.1:7001, localhost:7001 or [::1]:7001"
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise InvalidAddress(f"{text!r} is not a server address; {accepted}")
        port_text = rest[1:]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep or ":" in host:
            raise InvalidAddress(f"{text!r} is not a server address; {accepted}")
    if not host or any(c.isspace() for c in host):
        raise InvalidAddress(f"{text!r} has no host; {accepted}")
    # At most 5 digits past leading zeros before int(), which refuses 4,300 digits and more.
    digits = port_text.lstrip("0")
    if not (port_text.isascii() and port_text.isdigit() and len(digits) <= 5):
        raise InvalidAddress(f"{text!r} has no valid port (1-65535); {accepted}")
    port = int(digits or "0")
    if not 1 <= port <= 65535:
        raise InvalidAddress(f"{text!r} has no valid port (1-65535); {accepted}")
    return Address(host, port)
