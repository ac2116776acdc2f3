"""The documents stay true: the protocol example session is replayed against a real server."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess

DOCS = Path(__file__).parent.parent / "docs"
VARYING = {"server_id", "software"}  # differ from one server and version to another


def example_session() -> list[tuple[str, str]]:
    text = (DOCS / "protocol.md").read_text()
    block = text.split("## An example session", 1)[1].split("```console", 1)[1].split("```", 1)[0]
    lines = block.split("$ nc ", 1)[1].splitlines()[1:]
    lines = [line for line in lines if line.strip()]
    assert len(lines) % 2 == 0, "requests and replies alternate"
    return list(zip(lines[::2], lines[1::2], strict=True))


def without_varying(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_varying(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [without_varying(v) for v in value]
    return value


def test_the_protocol_example_session_is_what_a_server_answers(tmp_path: Path) -> None:
    session = example_session()
    assert len(session) >= 5
    name = re.search(r"--name (\S+)", (DOCS / "protocol.md").read_text())
    assert name is not None
    server = ServerProcess(tmp_path / "demo.sqlite3", name.group(1)).wait_listening()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            stream = sock.makefile("rwb")
            for request, documented in session:
                stream.write(request.encode() + b"\n")
                stream.flush()
                reply = json.loads(stream.readline())
                assert without_varying(reply) == without_varying(json.loads(documented)), request
    finally:
        server.cleanup()


def test_every_documented_error_code_exists_and_every_code_is_documented() -> None:
    from moviedb import protocol

    text = (DOCS / "protocol.md").read_text()
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(protocol.ERROR_CODES)
