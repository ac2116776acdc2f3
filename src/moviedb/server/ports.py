"""The permitted port list (the successor of the original design's portdb.p)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

DEFAULT_PORTS: Final = "7001-7010"
MAX_PORTS: Final = 65536


class PortSpecError(ValueError):
    """A port list that cannot be read; the message says what is accepted."""


def parse_ports(spec: str) -> list[int]:
    """`7001-7010,7020` -> [7001, ..., 7010, 7020], in order, without repeats.

    Port 0 asks the system for any free port (useful for tests).
    """
    ports: list[int] = []
    for part in spec.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        low_text, dash, high_text = part.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if dash else low
        except ValueError:
            raise PortSpecError(
                f"{part!r} is not a port or range; accepted: PORT or LOW-HIGH, comma-separated"
            ) from None
        if not (0 <= low <= 65535 and 0 <= high <= 65535) or low > high:
            raise PortSpecError(f"{part!r} is out of range; ports are 0-65535 and LOW <= HIGH")
        ports.extend(range(low, high + 1))
    unique = list(dict.fromkeys(ports))
    if not unique:
        raise PortSpecError(f"no port given in {spec!r}; example: 7001-7010,7020")
    if len(unique) > MAX_PORTS:
        raise PortSpecError("too many ports")
    return unique


def read_ports_file(path: str | Path) -> list[int]:
    """One port or range per line; `#` starts a comment."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PortSpecError(f"cannot read the ports file {path}: {exc.strerror}") from None
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return parse_ports(",".join(lines))


def describe(ports: list[int]) -> str:
    """Compact text for a port list: [7001, 7002, 7003, 7020] -> '7001-7003,7020'."""
    runs: list[str] = []
    start = prev = ports[0]
    for port in [*ports[1:], None]:
        if port is not None and port == prev + 1:
            prev = port
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if port is not None:
            start = prev = port
    return ",".join(runs)
