"""Every command in one-shot form against real servers: output, `--json` shapes, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from moviedb.cli import COMMANDS, cli
from tests.conftest import Moviedb, ServerProcess, StartServers, statuses

ALIEN = (
    "add",
    "Alien",
    "--year",
    "1979",
    "--set",
    "director=Ridley Scott",
    "--set",
    "cast=Sigourney Weaver, Tom Skerritt",
    "--set",
    "rating=8.5",
    "--set",
    "country=UK",
)


def catalog(moviedb: Moviedb, server: ServerProcess) -> list[dict[str, Any]]:
    """One server's movies, each with its revision (through `get --json` of every title)."""
    code, listing = moviedb.json("all", servers=[server])
    assert code == 0
    return listing["movies"]  # type: ignore[no-any-return]


# --- get and add ----------------------------------------------------------------------------------


def test_add_writes_every_server_and_get_shows_one_agreeing_group(moviedb: Moviedb) -> None:
    code, added = moviedb.json(*ALIEN)
    assert code == 0
    assert statuses(added) == ["applied"] * 3
    assert added["written"] is True
    assert added["movie"]["rev"].startswith("1-")

    code, got = moviedb.json("get", "alien")
    assert code == 0
    assert statuses(got) == ["found"] * 3
    for server in got["servers"]:
        (movie,) = server["movies"]
        assert movie["title"] == "Alien"
        assert movie["year"] == 1979
        assert movie["director"] == "Ridley Scott"
        assert movie["cast"] == ["Sigourney Weaver", "Tom Skerritt"]
        assert movie["rating"] == 8.5
        assert movie["extra"] == {"country": "UK"}
    (view,) = got["movies"]
    assert view["state"] == "agree"
    assert view["agree"] is True
    assert len(view["versions"]) == 1
    assert view["versions"][0]["servers"] == moviedb.addresses().split(",")
    assert view["differences"] == []

    code, text = moviedb("get", "ALIEN")
    assert code == 0
    assert "Alien (1979)" in text
    assert "Ridley Scott" in text
    assert "agree on 3 servers" in text


def test_get_of_an_unknown_title_exits_1_and_says_so(moviedb: Moviedb) -> None:
    code, text = moviedb("get", "Nothing Like This")
    assert code == 1
    assert "not found" in text
    code, got = moviedb.json("get", "Nothing Like This")
    assert code == 1
    assert statuses(got) == ["missing"] * 3
    assert got["movies"] == []
    assert got["exit_code"] == 1


def test_lookup_ignores_case_accents_and_punctuation_and_keeps_the_title_as_typed(
    moviedb: Moviedb,
) -> None:
    assert moviedb("add", "Amélie", "--year", "2001")[0] == 0
    assert moviedb("add", "Charlie's Angels", "--year", "2000")[0] == 0
    _, got = moviedb.json("get", "AMELIE")
    assert [m["title"] for m in got["movies"]] == ["Amélie"]
    _, got = moviedb.json("get", "charlies angels")
    assert [m["title"] for m in got["movies"]] == ["Charlie's Angels"]


def test_remakes_are_two_movies_and_year_selects_one(moviedb: Moviedb) -> None:
    assert (
        moviedb("add", "King Kong", "--year", "1933", "--set", "director=Merian C. Cooper")[0] == 0
    )
    assert moviedb("add", "King Kong", "--year", "2005", "--set", "director=Peter Jackson")[0] == 0
    _, both = moviedb.json("get", "king kong")
    assert [(m["year"], m["versions"][0]["director"]) for m in both["movies"]] == [
        (1933, "Merian C. Cooper"),
        (2005, "Peter Jackson"),
    ]
    _, one = moviedb.json("get", "King Kong", "--year", "2005")
    assert [m["year"] for m in one["movies"]] == [2005]


def test_add_of_an_identical_record_is_unchanged_and_fills_servers_that_lack_it(
    moviedb: Moviedb,
) -> None:
    first, _second, _third = moviedb.servers
    assert moviedb(*ALIEN, servers=[first])[0] == 0
    code, added = moviedb.json(*ALIEN)
    assert code == 0
    assert statuses(added) == ["unchanged", "applied", "applied"]
    _, got = moviedb.json("get", "Alien")
    assert got["movies"][0]["state"] == "agree"


def test_add_of_different_information_is_refused_until_confirmed(moviedb: Moviedb) -> None:
    assert moviedb(*ALIEN)[0] == 0
    code, refused = moviedb.json("add", "Alien", "--year", "1979", "--set", "director=Someone Else")
    assert code == 5
    assert refused["written"] is False
    assert refused["servers"] == []
    assert "--yes" in refused["message"]
    fields = {d["field"] for d in refused["differences"]}
    assert {"director", "cast", "rating", "country"} <= fields
    _, got = moviedb.json("get", "Alien")
    assert got["movies"][0]["versions"][0]["director"] == "Ridley Scott"

    code, text = moviedb("add", "Alien", "--year", "1979", "--set", "director=Someone Else")
    assert code == 5
    assert "Ridley Scott" in text
    assert "Someone Else" in text

    code, forced = moviedb.json(
        "add", "Alien", "--year", "1979", "--set", "director=Someone Else", "--yes"
    )
    assert code == 0
    assert statuses(forced) == ["applied"] * 3
    assert forced["movie"]["rev"].startswith("2-")
    _, got = moviedb.json("get", "Alien")
    assert got["movies"][0]["versions"][0]["director"] == "Someone Else"


# --- divergence and edit --------------------------------------------------------------------------


def test_divergence_is_shown_field_by_field_and_edit_converges_every_server(
    moviedb: Moviedb,
) -> None:
    first, second, third = moviedb.servers
    assert moviedb(*ALIEN, servers=[first, second])[0] == 0
    # An edit that only the first server sees: the second is now stale, the third lacks it.
    assert moviedb("edit", "Alien", "--set", "rating=9", servers=[first])[0] == 0

    code, got = moviedb.json("get", "Alien")
    assert code == 0
    assert statuses(got) == ["found", "found", "missing"]
    (view,) = got["movies"]
    assert view["state"] == "stale"
    assert view["missing"] == [third.address]
    (rating,) = [d for d in view["differences"] if d["field"] == "rating"]
    assert sorted((v["value"], v["servers"]) for v in rating["values"]) == [
        (8.5, [second.address]),
        (9.0, [first.address]),
    ]
    code, text = moviedb("get", "Alien")
    assert "stale" in text
    assert f"missing on {third.address}" in text
    assert "8.5" in text
    assert "9" in text

    code, edited = moviedb.json("edit", "alien", "--set", "plot=In space...", "--unset", "country")
    assert code == 0
    assert statuses(edited) == ["applied"] * 3
    assert edited["movie"]["rating"] == 9.0  # the change was applied to the newest copy
    assert "country" not in edited["movie"].get("extra", {})

    _, got = moviedb.json("get", "Alien")
    (view,) = got["movies"]
    assert view["state"] == "agree"
    assert len(view["versions"]) == 1
    assert view["versions"][0]["plot"] == "In space..."
    assert view["versions"][0]["rev"].startswith("3-")
    _, listing = moviedb.json("all")
    assert listing["movies"] == [
        {"title": "Alien", "year": 1979, "servers": moviedb.addresses().split(","), "agree": True}
    ]


def test_edit_refuses_to_guess_between_remakes_and_needs_a_change(moviedb: Moviedb) -> None:
    assert moviedb("add", "King Kong", "--year", "1933")[0] == 0
    assert moviedb("add", "King Kong", "--year", "2005")[0] == 0
    code, text = moviedb("edit", "King Kong", "--set", "rating=7")
    assert code == 2
    assert "--year" in text
    code, text = moviedb("edit", "King Kong", "--year", "2005")
    assert code == 2
    assert "--set" in text
    code, text = moviedb("edit", "Nope", "--set", "rating=7")
    assert code == 1
    code, text = moviedb("edit", "King Kong", "--year", "2005", "--set", "rating=7.2")
    assert code == 0
    _, got = moviedb.json("get", "King Kong", "--year", "2005")
    assert got["movies"][0]["versions"][0]["rating"] == 7.2


def test_concurrent_versions_are_a_conflict_and_edit_refuses_them(moviedb: Moviedb) -> None:
    first, second, _ = moviedb.servers
    assert moviedb(*ALIEN)[0] == 0
    assert moviedb("edit", "Alien", "--set", "rating=9", servers=[first])[0] == 0
    assert moviedb("edit", "Alien", "--set", "rating=7", servers=[second])[0] == 0
    _, got = moviedb.json("get", "Alien")
    assert got["movies"][0]["state"] == "conflict"
    assert len(got["movies"][0]["versions"]) == 3
    code, edited = moviedb.json("edit", "Alien", "--set", "plot=x")
    assert code == 5
    assert edited["written"] is False
    assert "concurrent" in edited["message"]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("add", "", "--year", "1979"), "title"),
        (("add", "   "), "title"),
        (("add", "Alien", "--year", "1979", "--set", "rating=11"), "rating"),
        (("add", "Alien", "--year", "1979", "--set", "rating=great"), "rating"),
        (("add", "Alien", "--year", "1979", "--set", "runtime_min=-5"), "runtime_min"),
        (("add", "Alien", "--year", "12345"), "year"),
        (("add", "Alien", "--year", "nineteen"), "year"),
        (("add", "Alien", "--set", "director"), "FIELD=VALUE"),
        (("add", "Alien", "--set", "year=1979"), "--year"),
        (("get", ""), "title"),
    ],
)
def test_invalid_input_names_the_field_exits_2_and_stores_nothing(
    moviedb: Moviedb, args: tuple[str, ...], named: str
) -> None:
    code, text = moviedb(*args)
    assert code == 2, text
    assert named in text
    assert catalog(moviedb, moviedb.servers[0]) == []


def test_an_unknown_server_address_is_a_usage_error(client_env: Path) -> None:
    result = CliRunner().invoke(cli, ["--servers", "localhost", "get", "Alien"])
    assert result.exit_code == 2
    assert "localhost" in result.output
    assert "HOST:PORT" in result.output
    result = CliRunner().invoke(cli, ["--servers", "127.0.0.1:99999", "get", "Alien"])
    assert result.exit_code == 2
    assert "99999" in result.output


def test_invalid_input_in_json_mode_is_a_json_error(moviedb: Moviedb) -> None:
    code, document = moviedb.json("add", "Alien", "--set", "rating=11")
    assert code == 2
    assert document["exit_code"] == 2
    assert "rating" in document["error"]["message"]


# --- all ------------------------------------------------------------------------------------------


def test_all_is_the_union_with_holders_and_agreement(moviedb: Moviedb) -> None:
    first, second, third = moviedb.servers
    assert moviedb("add", "Zulu", "--year", "1964")[0] == 0
    assert moviedb("add", "Heat", "--year", "1995", servers=[first, third])[0] == 0
    assert moviedb("add", "Solaris", "--year", "1972", servers=[second])[0] == 0
    for year in ("1933", "1976", "2005"):
        assert moviedb("add", "King Kong", "--year", year)[0] == 0

    code, listing = moviedb.json("all")
    assert code == 0
    rows = [(m["title"], m["year"], len(m["servers"]), m["agree"]) for m in listing["movies"]]
    assert rows == [
        ("Heat", 1995, 2, False),
        ("King Kong", 1933, 3, True),
        ("King Kong", 1976, 3, True),
        ("King Kong", 2005, 3, True),
        ("Solaris", 1972, 1, False),
        ("Zulu", 1964, 3, True),
    ]
    assert listing["count"] == 6
    assert listing["unreachable"] == []

    code, limited = moviedb.json("all", "--limit", "2")
    assert [m["title"] for m in limited["movies"]] == ["Heat", "King Kong"]
    code, text = moviedb("all")
    assert "Solaris (1972)" in text
    assert "differs" in text
    assert "6 movies" in text


def test_all_streams_across_many_pages(moviedb: Moviedb, tmp_path: Path) -> None:
    """More movies than one page (500) on each server: every one listed exactly once."""
    import asyncio

    from moviedb.client import Cluster
    from moviedb.client.address import parse_address
    from moviedb.model import Movie
    from moviedb.versions import first_copy

    async def load() -> None:
        servers = [parse_address(s.address) for s in moviedb.servers]
        async with Cluster(servers) as cluster:
            copies = [
                first_copy(Movie(title=f"Movie {i:04d}", year=2000), now=0) for i in range(1200)
            ]
            await asyncio.gather(*(cluster.put({a: c for a in servers}) for c in copies))

    asyncio.run(load())
    code, listing = moviedb.json("all")
    assert code == 0
    titles = [m["title"] for m in listing["movies"]]
    assert titles == [f"Movie {i:04d}" for i in range(1200)]
    assert all(m["agree"] for m in listing["movies"])


# --- servers --------------------------------------------------------------------------------------


def test_serverlist_shows_each_server_up_with_its_name_and_count(moviedb: Moviedb) -> None:
    assert moviedb(*ALIEN, servers=moviedb.servers[:1])[0] == 0
    code, listing = moviedb.json("serverlist")
    assert code == 0
    assert [(s["server"], s["status"], s["name"], s["movies"]) for s in listing["servers"]] == [
        (moviedb.servers[0].address, "up", "s0", 1),
        (moviedb.servers[1].address, "up", "s1", 0),
        (moviedb.servers[2].address, "up", "s2", 0),
    ]
    assert all(s["latency_ms"] >= 0 for s in listing["servers"])
    assert len({s["server_id"] for s in listing["servers"]}) == 3
    code, text = moviedb("serverlist")
    assert "s0" in text
    assert "up" in text


def test_addserver_and_deleteserver_edit_the_config_file(
    three_servers: list[ServerProcess], client_env: Path
) -> None:
    runner = CliRunner()

    def run(*args: str) -> tuple[int, Any]:
        result = runner.invoke(cli, ["--json", *args])
        return result.exit_code, json.loads(result.output)

    code, empty = run("serverlist")
    assert (code, empty) == (0, {"servers": [], "in_sync": None})
    result = runner.invoke(cli, ["get", "Alien"])
    assert result.exit_code == 2
    assert "no servers configured" in result.output

    for server in three_servers:
        code, change = run("addserver", server.address)
        assert code == 0
        assert change["changed"] is True
        assert change["probe"]["status"] == "up"
        assert change["probe"]["name"] == server.name
    code, again = run("addserver", three_servers[0].address)
    assert again["changed"] is False
    text = client_env.read_text()
    assert all(s.address in text for s in three_servers)

    code, listing = run("serverlist")
    assert [s["server"] for s in listing["servers"]] == [s.address for s in three_servers]

    code, removed = run("deleteserver", three_servers[1].address)
    assert code == 0
    assert removed["servers"] == [three_servers[0].address, three_servers[2].address]
    result = runner.invoke(cli, ["deleteserver", three_servers[1].address])
    assert result.exit_code == 2
    assert "not in the server list" in result.output

    result = runner.invoke(cli, ["addserver", "not-an-address"])
    assert result.exit_code == 2
    assert "HOST:PORT" in result.output
    code, listing = run("serverlist")
    assert len(listing["servers"]) == 2


# --- faults ---------------------------------------------------------------------------------------


@pytest.mark.fault
def test_a_killed_server_is_named_and_the_others_still_answer(
    three_servers: list[ServerProcess], client_env: Path
) -> None:
    moviedb = Moviedb(three_servers, timeout=0.5)
    assert moviedb(*ALIEN)[0] == 0
    three_servers[1].kill()

    code, got = moviedb.json("get", "Alien")
    assert code == 0
    assert statuses(got) == ["found", "unreachable", "found"]
    assert got["movies"][0]["state"] == "agree"
    code, text = moviedb("get", "Alien")
    assert f"{three_servers[1].address} unreachable" in text

    code, listing = moviedb.json("serverlist")
    assert code == 0
    assert [s["status"] for s in listing["servers"]] == ["up", "down", "up"]

    # A write that reached two of three servers: exit 4, and the missing server is named.
    code, added = moviedb.json("add", "Heat", "--year", "1995")
    assert code == 4
    assert statuses(added) == ["applied", "unreachable", "applied"]

    code, listing = moviedb.json("all")
    assert code == 0
    assert [u["server"] for u in listing["unreachable"]] == [three_servers[1].address]

    three_servers[1].restart()
    code, got = moviedb.json("get", "Alien")
    assert statuses(got) == ["found"] * 3  # its data survived the SIGKILL


@pytest.mark.fault
def test_no_reachable_server_exits_3_and_writes_nothing(
    three_servers: list[ServerProcess], client_env: Path
) -> None:
    moviedb = Moviedb(three_servers, timeout=0.5)
    for server in three_servers:
        server.kill()
    code, got = moviedb.json("get", "Alien")
    assert code == 3
    assert statuses(got) == ["unreachable"] * 3
    code, text = moviedb(*ALIEN)
    assert code == 3
    assert "nothing was written" in text
    code, _ = moviedb.json("serverlist")
    assert code == 3
    code, _listing = moviedb.json("all")
    assert code == 3


# --- help and the installed entry point -----------------------------------------------------------


def test_help_lists_every_command_and_each_command_has_help(client_env: Path) -> None:
    result = CliRunner().invoke(cli, ["help"])
    assert result.exit_code == 0
    for name, description in COMMANDS.items():
        assert name in result.output
        assert description in result.output
    for name in COMMANDS:
        result = CliRunner().invoke(cli, ["help", name])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output
    result = CliRunner().invoke(cli, ["help", "frobnicate"])
    assert result.exit_code == 2
    assert "frobnicate" in result.output


def test_the_installed_command_runs_one_shot(
    three_servers: list[ServerProcess], client_env: Path
) -> None:
    """The real process: `python -m moviedb` (the same entry point as `moviedb`)."""
    addresses = ",".join(s.address for s in three_servers)
    env = {**os.environ}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "moviedb", "--servers", addresses, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    added = run("add", "Alien", "--year", "1979", "--set", "director=Ridley Scott")
    assert added.returncode == 0, added.stderr
    got = run("--json", "get", "Alien")
    assert got.returncode == 0, got.stderr
    assert statuses(json.loads(got.stdout)) == ["found"] * 3
    missing = run("get", "Nothing")
    assert missing.returncode == 1


def test_the_servers_own_database_keeps_what_the_client_wrote(
    start_servers: StartServers, client_env: Path
) -> None:
    (server,) = start_servers(1)
    moviedb = Moviedb([server])
    assert moviedb(*ALIEN)[0] == 0
    assert server.stop() == 0
    server.restart()
    _, got = moviedb.json("get", "Alien")
    assert got["movies"][0]["versions"][0]["director"] == "Ridley Scott"
