"""Tokens and TLS: the server's gate, the client's token and certificate checks, the config.

Real servers (in-process on the test's loop, or `moviedb-server` subprocesses) on loopback;
the TLS tests make their own CA and certificates with trustme, trusted only by these tests.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner

from moviedb import commands, getview, protocol
from moviedb.cli import cli
from moviedb.client.address import Address
from moviedb.client.cluster import Cluster, ReadStatus, WriteStatus
from moviedb.client.config import Config, load, save
from moviedb.client.queue import WriteQueue, needs_queueing
from moviedb.client.security import ServerSecurity
from moviedb.errors import ConfigError
from moviedb.model import Movie
from moviedb.reads import GetOutcome
from moviedb.server.app import Limits, MoviedbServer
from moviedb.server.auth import Access, TokenFileError, is_loopback, parse_tokens
from moviedb.versions import first_copy
from tests.conftest import StartServers

HOST = "127.0.0.1"
TIMEOUT = 15.0
WRITER_TOKEN = "w-0123456789abcdef-writer"
READER_TOKEN = "r-0123456789abcdef-reader"
TOKENS_TEXT = f"# who may use this server\n{WRITER_TOKEN}\n{READER_TOKEN} read-only\n"


# --- the token file ----------------------------------------------------------------------------


def test_tokens_grant_read_write_or_read_only() -> None:
    tokens = parse_tokens(TOKENS_TEXT)
    assert tokens.check(WRITER_TOKEN) is Access.READ_WRITE
    assert tokens.check(READER_TOKEN) is Access.READ_ONLY
    assert tokens.check(WRITER_TOKEN[:-1]) is None
    assert tokens.check(WRITER_TOKEN + "x") is None
    assert tokens.check("") is None
    assert tokens.check("\udc80 not even encodable") is None
    # Only digests are kept, never the tokens themselves.
    assert all(WRITER_TOKEN.encode() not in digest for digest, _ in tokens.digests)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no token"),
        ("# only a comment\n\n", "holds no token"),
        ("short\n", "line 1: the token is too short"),
        (f"{WRITER_TOKEN} admin\n", "line 1: unexpected 'admin'"),
        (f"\n{WRITER_TOKEN} read-only extra\n", "line 2: unexpected 'read-only extra'"),
        (f"{WRITER_TOKEN}\n{WRITER_TOKEN} ro\n", "line 2: the same token is listed read-only"),
        ("tökentökentökentöken\n", "printable ASCII"),
    ],
)
def test_a_bad_token_file_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message):
        parse_tokens(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("db.example.com", False),
        ("", False),
    ],
)
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# --- the server's gate, in raw protocol ---------------------------------------------------------


@pytest.fixture
async def token_server(tmp_path: Path) -> AsyncIterator[MoviedbServer]:
    server = MoviedbServer(tmp_path / "db.sqlite3", name="gated", tokens=parse_tokens(TOKENS_TEXT))
    await server.start(HOST, [0])
    yield server
    await server.stop()


async def exchange(port: int, *lines: dict[str, Any]) -> list[dict[str, Any]]:
    """Send the lines in one write; every reply until the server closes or 5 s of silence."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    replies = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while len(replies) < len(lines):
                line = await reader.readline()
                if not line:
                    break
                replies.append(json.loads(line))
    finally:
        writer.close()
    return replies


def put_request(title: str, request_id: int) -> dict[str, Any]:
    copy = first_copy(Movie(title, 1999))
    return {
        "id": request_id,
        "op": "put",
        "copy": {"key": copy.key, "movie": {"title": title, "year": 1999}, "rev": copy.rev},
    }


async def test_requests_before_a_token_are_refused_and_the_connection_closed(
    token_server: MoviedbServer,
) -> None:
    replies = await exchange(token_server.port, {"id": 1, "op": "get", "title": "Alien"})
    assert replies[0]["error"]["code"] == "unauthorized"
    assert "requires a token" in replies[0]["error"]["message"]
    # A hello without a token is no better.
    replies = await exchange(token_server.port, {"id": 1, "op": "hello"}, {"id": 2, "op": "stats"})
    assert [r["error"]["code"] for r in replies] == ["unauthorized"]  # then closed


async def test_a_wrong_token_closes_the_connection_and_nothing_behind_it_runs(
    token_server: MoviedbServer,
) -> None:
    replies = await exchange(
        token_server.port,
        {"id": 1, "op": "hello", "token": WRITER_TOKEN + "?"},
        put_request("Smuggled", 2),
    )
    assert len(replies) == 1
    assert replies[0]["id"] == 1
    assert replies[0]["error"]["code"] == "unauthorized"
    assert token_server.state.committer.writes == 0


async def test_a_read_write_token_reads_and_writes(token_server: MoviedbServer) -> None:
    replies = await exchange(
        token_server.port,
        {"id": 1, "op": "hello", "token": WRITER_TOKEN},
        put_request("Alien", 2),
        {"id": 3, "op": "get", "title": "alien"},
    )
    assert replies[0]["result"]["access"] == "read-write"
    assert replies[1]["result"]["status"] == "applied"
    assert len(replies[2]["result"]["copies"]) == 1


async def test_a_read_only_token_reads_and_every_write_is_forbidden(
    token_server: MoviedbServer,
) -> None:
    copy = put_request("Alien", 0)["copy"]
    replies = await exchange(
        token_server.port,
        {"id": 1, "op": "hello", "token": READER_TOKEN},
        put_request("Alien", 2),
        {"id": 3, "op": "put_batch", "copies": [copy]},
        {"id": 4, "op": "purge", "key": copy["key"], "rev": copy["rev"]},
        {"id": 5, "op": "get", "title": "alien"},
        {"id": 6, "op": "digest"},
    )
    assert replies[0]["result"]["access"] == "read-only"
    assert [r["error"]["code"] for r in replies[1:4]] == ["forbidden"] * 3
    assert "read-only" in replies[1]["error"]["message"]
    assert replies[4]["result"]["copies"] == []
    assert replies[5]["ok"]
    assert token_server.state.committer.writes == 0


async def test_a_server_without_tokens_ignores_a_token(tmp_path: Path) -> None:
    server = MoviedbServer(tmp_path / "open.sqlite3")
    await server.start(HOST, [0])
    try:
        replies = await exchange(
            server.port, {"id": 1, "op": "hello", "token": "anything at all"}, put_request("A", 2)
        )
    finally:
        await server.stop()
    assert replies[0]["result"]["access"] == "read-write"
    assert replies[1]["result"]["status"] == "applied"


# --- the client library --------------------------------------------------------------------------


def address_of(server: MoviedbServer) -> Address:
    return Address(HOST, server.port)


async def test_the_client_sends_its_token_first_on_every_connection(
    token_server: MoviedbServer,
) -> None:
    address = address_of(token_server)
    security = {address: ServerSecurity(token=WRITER_TOKEN)}
    async with Cluster([address], timeout=TIMEOUT, security=security) as cluster:
        # Many requests racing on the first connection: none may overtake the token.
        results = await asyncio.gather(*(cluster.get(f"Movie {i}") for i in range(20)))
        assert all(r.status is ReadStatus.MISSING for (r,) in results)
        (written,) = await cluster.put({address: first_copy(Movie("Alien", 1979))})
        assert written.status is WriteStatus.APPLIED
        (info,) = await cluster.hello()
        assert (info.access, info.transport) == ("read-write", "token")
        # A new connection (the server closed the old one) authenticates again.
        assert token_server.connections  # the one this client authenticated
        for connection in list(token_server.connections):
            connection.close()
        (found,) = await cluster.get("Alien")
        assert found.status is ReadStatus.FOUND


async def test_a_wrong_or_missing_token_is_that_servers_error(token_server: MoviedbServer) -> None:
    address = address_of(token_server)
    wrong = {address: ServerSecurity(token="not-the-token-at-all")}
    async with Cluster([address], timeout=TIMEOUT, security=wrong) as cluster:
        (result,) = await cluster.get("Alien")
        assert result.status is ReadStatus.ERROR
        assert "refused this client's token" in (result.error or "")
        (write,) = await cluster.put({address: first_copy(Movie("Alien", 1979))})
        # Refused, so certainly not applied; kept for when the config has the right token.
        assert write.status is WriteStatus.ERROR
        assert needs_queueing(write)
    async with Cluster([address], timeout=TIMEOUT) as cluster:
        (result,) = await cluster.get("Alien")
        assert result.status is ReadStatus.ERROR
        assert "unauthorized" in (result.error or "")
        # What people see of it says how to give the token (the CLI's words, not the library's).
        shown = io.StringIO()
        getview.render_get(getview.Lines(shown, False), GetOutcome("Alien", None, [result], []))
        assert f"moviedb addserver {address} --token-file" in shown.getvalue()
    assert token_server.state.committer.writes == 0


async def test_a_read_only_token_reads_and_a_refused_write_waits_in_the_queue(
    token_server: MoviedbServer, tmp_path: Path
) -> None:
    address = address_of(token_server)
    security = {address: ServerSecurity(token=READER_TOKEN)}
    queue = WriteQueue(tmp_path / "queue")
    try:
        async with Cluster([address], timeout=TIMEOUT, security=security) as cluster:
            outcome = await commands.add(cluster, Movie("Alien", 1979), queue=queue)
            (result,) = outcome.results
            assert result.status is WriteStatus.ERROR
            assert "forbidden" in (result.error or "")
            assert queue.summary()[address].count == 1  # delivered once the token may write
            (info,) = await cluster.hello()
            assert info.access == "read-only"
    finally:
        queue.close()


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    """The test CA's certificate, and a server certificate for 127.0.0.1 and localhost."""
    cert = ca.issue_cert(HOST, "localhost")
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    cert.private_key_pem.write_to_path(str(files["key"]))
    cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(files["cert"]), append=True)
    return files


@pytest.fixture
async def tls_server(tmp_path: Path, tls_files: dict[str, Path]) -> AsyncIterator[MoviedbServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files["cert"], tls_files["key"])
    server = MoviedbServer(tmp_path / "tls.sqlite3", name="tls", tls=context)
    await server.start(HOST, [0])
    yield server
    await server.stop()


async def test_tls_with_the_servers_ca(
    tls_server: MoviedbServer, tls_files: dict[str, Path]
) -> None:
    address = address_of(tls_server)
    security = {address: ServerSecurity(ca=tls_files["ca"])}
    async with Cluster([address], timeout=TIMEOUT, security=security) as cluster:
        (written,) = await cluster.put({address: first_copy(Movie("Alien", 1979))})
        assert written.status is WriteStatus.APPLIED
        (found,) = await cluster.get("alien")
        assert found.status is ReadStatus.FOUND
        (info,) = await cluster.hello()
        assert info.transport == f"TLS (CA {tls_files['ca']})"


async def test_a_certificate_the_client_does_not_trust_is_refused(
    tls_server: MoviedbServer,
) -> None:
    address = address_of(tls_server)
    # The system's store does not know the test CA.
    security = {address: ServerSecurity(tls=True)}
    async with Cluster([address], timeout=TIMEOUT, security=security) as cluster:
        (result,) = await cluster.get("alien")
        assert result.status is ReadStatus.ERROR
        assert "certificate is not trusted" in (result.error or "")
        (write,) = await cluster.put({address: first_copy(Movie("Alien", 1979))})
        assert write.status is WriteStatus.ERROR
    assert tls_server.state.committer.writes == 0


async def test_a_certificate_for_another_name_is_refused(
    ca: trustme.CA, tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    other = ca.issue_cert("db.example.com")
    cert, key = tmp_path / "other.pem", tmp_path / "other.key"
    other.cert_chain_pems[0].write_to_path(str(cert))
    other.private_key_pem.write_to_path(str(key))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = MoviedbServer(tmp_path / "other.sqlite3", tls=context)
    await server.start(HOST, [0])
    try:
        address = address_of(server)
        security = {address: ServerSecurity(ca=tls_files["ca"])}
        async with Cluster([address], timeout=TIMEOUT, security=security) as cluster:
            (result,) = await cluster.get("alien")
    finally:
        await server.stop()
    assert result.status is ReadStatus.ERROR
    assert "not trusted" in (result.error or "")
    assert "127.0.0.1" in (result.error or "")


async def test_plain_tcp_to_a_tls_server_fails_within_the_timeout(
    tls_server: MoviedbServer,
) -> None:
    address = address_of(tls_server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Cluster([address], timeout=1.0) as cluster:
        (result,) = await cluster.get("alien")
    assert not result.answered
    assert loop.time() - started < 1.0 + 0.5


# --- the whole path: moviedb-server flags, the CLI's addserver, the config ------------------------


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def cli_json(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["--json", *args], catch_exceptions=False)
    return json.loads(result.output), result.exit_code


def test_tls_and_tokens_end_to_end_through_the_cli(
    start_servers: StartServers, tmp_path: Path, tls_files: dict[str, Path], client_env: Path
) -> None:
    server_tokens = write_secret(tmp_path / "tokens", TOKENS_TEXT)
    (server,) = start_servers(
        1,
        "--token-file",
        str(server_tokens),
        "--tls-cert",
        str(tls_files["cert"]),
        "--tls-key",
        str(tls_files["key"]),
    )
    mine = write_secret(tmp_path / "my-token", f"{WRITER_TOKEN}\n")
    doc, code = cli_json("addserver", server.address, "--ca", str(tls_files["ca"]))
    assert doc["probe"]["status"] == "down"  # TLS but no token yet
    assert "unauthorized" in doc["probe"]["error"]
    doc, code = cli_json(
        "addserver", server.address, "--ca", str(tls_files["ca"]), "--token-file", str(mine)
    )
    assert doc["changed"] is True
    assert doc["probe"]["status"] == "up", doc
    assert doc["probe"]["access"] == "read-write"
    assert doc["probe"]["transport"] == f"TLS (CA {tls_files['ca']}), token"
    # The config names the token file; the token itself is not copied into it.
    text = client_env.read_text()
    assert WRITER_TOKEN not in text
    assert str(mine) in text
    assert client_env.stat().st_mode & 0o077 == 0
    doc, code = cli_json("add", "Alien", "--year", "1979", "--set", "director=Ridley Scott")
    assert code == 0, doc
    doc, code = cli_json("get", "Alien")
    assert code == 0, doc
    assert doc["movies"][0]["versions"][0]["director"] == "Ridley Scott", doc
    # Plain again: TCP without TLS to a TLS server gets nowhere.
    cli_json("addserver", server.address, "--plain")
    doc, code = cli_json("get", "Alien")
    assert code != 0
    assert doc["servers"][0]["status"] in ("error", "unreachable", "timeout"), doc


def run_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moviedb.server", "--ports", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_server_refuses_a_reachable_address_without_a_token(tmp_path: Path) -> None:
    # Refused before binding: nothing listens on 0.0.0.0 during the test.
    result = run_server("--host", "0.0.0.0", "--db", str(tmp_path / "db.sqlite3"))
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "--insecure" in result.stderr
    assert not (tmp_path / "db.sqlite3").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token-file", "missing-file"], "cannot read the token file missing-file"),
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
        (["--max-db-size", "12 parsecs"], "'12 parsecs' is not a size"),
        (["--max-record", "999999999"], "--max-record"),
        (["--max-batch", "0"], "0 is not in the range"),
    ],
)
def test_bad_server_flags_are_refused_naming_the_flag(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_server("--db", str(tmp_path / "db.sqlite3"), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_bad_token_file_stops_the_server_naming_the_line(tmp_path: Path) -> None:
    tokens = write_secret(tmp_path / "tokens", f"{WRITER_TOKEN}\nshort\n")
    result = run_server("--db", str(tmp_path / "db.sqlite3"), "--token-file", str(tokens))
    assert result.returncode == 2
    assert "line 2: the token is too short" in result.stderr


def test_a_certificate_that_does_not_load_stops_the_server(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    result = run_server(
        "--db", str(tmp_path / "db.sqlite3"), "--tls-cert", str(bogus), "--tls-key", str(bogus)
    )
    assert result.returncode == 2
    assert "cannot load the certificate" in result.stderr


def test_the_server_warns_about_a_token_file_others_can_read(
    start_servers: StartServers, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS_TEXT)
    tokens.chmod(0o644)
    (server,) = start_servers(1, "--token-file", str(tokens))
    assert "readable by other users" in server.log.read_text()


# --- the client's config -------------------------------------------------------------------------


def test_security_settings_round_trip_through_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    token_file = write_secret(tmp_path / "token", f"# mine\n{WRITER_TOKEN} read-only\n")
    a, b, c = Address(HOST, 7001), Address(HOST, 7002), Address("::1", 7003)
    config = Config(path)
    config.add_server(a, ServerSecurity(token=WRITER_TOKEN, tls=True))
    config.add_server(b, ServerSecurity(token=WRITER_TOKEN, token_file=token_file))
    config.add_server(c)
    save(config)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load(path)
    assert loaded.servers == [a, b, c]
    assert loaded.security[a] == ServerSecurity(token=WRITER_TOKEN, tls=True)
    assert loaded.security[b] == ServerSecurity(token=WRITER_TOKEN, token_file=token_file)
    assert c not in loaded.security
    # Changing only the security of a listed server is a change; the same settings are not.
    assert not loaded.add_server(a, ServerSecurity(token=WRITER_TOKEN, tls=True))
    assert loaded.add_server(a, ServerSecurity())
    assert a not in loaded.security


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('token = "x"\ntoken_file = "t"', "give token or token_file, not both"),
        ("tls = 1", "tls must be true or false"),
        ('tokn = "x"', "unknown tokn; accepted: address, token, token_file, tls, ca"),
        ('token = ""', "token must be a non-empty string"),
        ('token_file = "absent"', "cannot read the token file"),
    ],
)
def test_bad_security_entries_are_config_errors(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[[servers]]\naddress = "127.0.0.1:7001"\n{entry}\n')
    with pytest.raises(ConfigError, match=message):
        load(path)


def test_a_relative_token_file_is_found_beside_the_config(tmp_path: Path) -> None:
    write_secret(tmp_path / "token", f"{WRITER_TOKEN}\n")
    path = tmp_path / "config.toml"
    path.write_text('[[servers]]\naddress = "127.0.0.1:7001"\ntoken_file = "token"\n')
    assert load(path).security[Address(HOST, 7001)].token == WRITER_TOKEN


def test_the_config_is_private_even_when_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    os.chmod(path, 0o644)
    save(Config(path, [Address(HOST, 7001)], None, {Address(HOST, 7001): ServerSecurity("t" * 20)}))
    assert path.stat().st_mode & 0o777 == 0o600


async def test_garbage_before_the_token_is_refused_and_closed(token_server: MoviedbServer) -> None:
    for line in (b"not json\n", b'{"op": "nosuch"}\n', b'{"op": "get"}\n'):
        reader, writer = await asyncio.open_connection(HOST, token_server.port)
        writer.write(line + b'{"op": "hello", "token": "' + WRITER_TOKEN.encode() + b'"}\n')
        async with asyncio.timeout(TIMEOUT):
            reply = json.loads(await reader.readline())
            assert await reader.read() == b""  # closed, the token behind it never read
        writer.close()
        assert reply["error"]["code"] == "unauthorized"
        assert "requires a token" in reply["error"]["message"]


async def test_a_connection_without_a_token_is_closed_after_the_line_timeout(
    tmp_path: Path,
) -> None:
    server = MoviedbServer(
        tmp_path / "db.sqlite3",
        tokens=parse_tokens(TOKENS_TEXT),
        limits=Limits(line_timeout=0.5, idle_timeout=60),
    )
    await server.start(HOST, [0])
    try:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(TIMEOUT):
            reply = json.loads(await reader.readline())
            assert await reader.read() == b""
        writer.close()
    finally:
        await server.stop()
    assert reply["error"]["code"] == "unauthorized"
    assert "no token within 0.5 s" in reply["error"]["message"]
    assert 0.5 <= loop.time() - started < 5


async def test_a_full_server_is_not_mistaken_for_a_refused_token(tmp_path: Path) -> None:
    server = MoviedbServer(
        tmp_path / "db.sqlite3",
        tokens=parse_tokens(TOKENS_TEXT),
        limits=Limits(max_connections=1),
    )
    await server.start(HOST, [0])
    address = address_of(server)
    security = {address: ServerSecurity(token=WRITER_TOKEN)}
    try:
        _, holder = await asyncio.open_connection(HOST, server.port)  # the one slot
        async with Cluster([address], timeout=TIMEOUT, security=security) as cluster:
            (write,) = await cluster.put({address: first_copy(Movie("Alien", 1979))})
        holder.close()
    finally:
        await server.stop()
    assert write.status is WriteStatus.UNREACHABLE  # never sent; queued for later
    assert "too_many_connections" in (write.error or "")
    assert "token" not in (write.error or "")


def test_a_token_never_crosses_a_network_in_clear_text(tmp_path: Path) -> None:
    remote = Address("db.example.com", 7001)
    config = Config(tmp_path / "config.toml")
    with pytest.raises(ConfigError, match="unencrypted; use TLS"):
        config.add_server(remote, ServerSecurity(token=WRITER_TOKEN))
    assert config.add_server(remote, ServerSecurity(token=WRITER_TOKEN, tls=True))
    assert config.add_server(Address(HOST, 7002), ServerSecurity(token=WRITER_TOKEN))
    other = Address("10.0.0.9", 7003)
    assert config.add_server(other, ServerSecurity(token=WRITER_TOKEN, insecure=True))
    save(config)
    assert load(config.path).security[other].insecure
    path = tmp_path / "hand.toml"
    path.write_text('[[servers]]\naddress = "10.0.0.9:7001"\ntoken = "abcdefghijklmnopq"\n')
    with pytest.raises(ConfigError, match=r"servers\[0\]: 10.0.0.9:7001: a token would cross"):
        load(path)


def test_tokens_stay_out_of_reprs() -> None:
    assert WRITER_TOKEN not in repr(ServerSecurity(token=WRITER_TOKEN))


def test_a_leftover_temporary_config_does_not_keep_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    leftover = tmp_path / "config.toml.tmp"
    leftover.write_text("")
    leftover.chmod(0o644)
    save(Config(path, [Address(HOST, 7001)], None, {Address(HOST, 7001): ServerSecurity("t" * 20)}))
    assert path.stat().st_mode & 0o777 == 0o600


def test_addserver_keeps_the_token_when_only_tls_changes(client_env: Path, tmp_path: Path) -> None:
    mine = write_secret(tmp_path / "my-token", f"{WRITER_TOKEN}\n")
    cli_json("addserver", "127.0.0.1:1", "--token-file", str(mine))
    doc, _ = cli_json("addserver", "127.0.0.1:1", "--tls")
    assert (doc["changed"], doc["updated"]) == (True, True)
    kept = load(client_env).security[Address(HOST, 1)]
    assert (kept.token, kept.tls) == (WRITER_TOKEN, True)
    doc, _ = cli_json("addserver", "127.0.0.1:1", "--plain")
    assert Address(HOST, 1) not in load(client_env).security


async def test_a_cached_get_is_not_answered_before_the_token(token_server: MoviedbServer) -> None:
    """The server's shortcut for cached gets checks the connection's token like every request."""
    get = protocol.encode_request(protocol.Get(title="Alien", id=2))
    reader, writer = await asyncio.open_connection(HOST, token_server.port)
    try:
        hello = protocol.encode_request(protocol.Hello(token=WRITER_TOKEN, id=1))
        writer.write(hello + get)
        await reader.readline()
        await reader.readline()
        writer.write(get)  # cached now (a miss above), and alone on its read: the shortcut
        await reader.readline()
        assert token_server.state.get_cache.hits == 1
    finally:
        writer.close()
    reader, writer = await asyncio.open_connection(HOST, token_server.port)
    try:
        writer.write(get)
        reply = json.loads(await reader.readline())
        assert reply["error"]["code"] == "unauthorized"
        assert await reader.read() == b""  # and closed
        assert token_server.state.get_cache.hits == 1
    finally:
        writer.close()
