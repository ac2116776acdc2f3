"""import, export, import-legacy and search through the CLI, against real servers."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from moviedb.cli import cli
from tests.conftest import Moviedb, ServerProcess, StartServers

MESSY_CSV = (
    "\ufeffFilm Name,Release Date,Directors,Major Genre,Running Time,IMDB Rating,Country\r\n"
    "300,2006-12-09,Zack Snyder,Action,117 min,7.6,US\r\n"
    '"King Kong",1933-03-02,"Merian C. Cooper, Ernest B. Schoedsack",Adventure,100,7.9,US\r\n'
    '"King Kong",2005-12-14,Peter Jackson,Adventure,187,7.2,NZ\r\n'
    "\r\n"
    ",1999-01-01,Nobody,Drama,90,5,US\r\n"
    '"Amélie",2001-04-25,Jean-Pierre Jeunet,"Comedy, Romance",122,8.3,FR\r\n'
    '"The Matrix",1999-03-31,"Lana Wachowski, Lilly Wachowski",Sci-Fi,136,8.7,US\r\n'
    '"Bad Rating",2000-01-01,Someone,Drama,90,11,US\r\n'
    '"Multi\nLine, Title",2010-01-01,Someone,Drama,90,6,US\r\n'
)


def test_import_keeps_every_row_stores_or_rejects_it_and_is_idempotent(
    moviedb: Moviedb, tmp_path: Path
) -> None:
    source = tmp_path / "movies.csv"
    source.write_text(MESSY_CSV, encoding="utf-8", newline="")
    rejects = tmp_path / "rejects.ndjson"
    code, summary = moviedb.json("import", str(source), "--rejects", str(rejects))
    assert code == 0, summary
    assert (summary["format"], summary["rows"], summary["rejected"]) == ("csv", 8, 2)
    assert [s["stored"] for s in summary["servers"]] == [6, 6, 6]
    lines = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [r["row"] for r in lines] == [4, 7]  # the empty line is not a row
    assert any("title" in r["reason"] for r in lines)
    assert any("rating" in r["reason"] for r in lines)
    assert all(isinstance(r["row"], int) for r in lines)

    code, kong = moviedb.json("get", "king kong")
    assert [(m["title"], m["year"], m["agree"]) for m in kong["movies"]] == [
        ("King Kong", 1933, True),
        ("King Kong", 2005, True),
    ]
    code, three_hundred = moviedb.json("get", "300")
    (movie,) = three_hundred["movies"]
    assert movie["title"] == "300"
    assert movie["versions"][0]["runtime_min"] == 117
    assert movie["versions"][0]["extra"] == {"Country": "US"}

    code, again = moviedb.json("import", str(source))
    assert code == 0
    assert [(s["stored"], s["unchanged"]) for s in again["servers"]] == [(0, 6)] * 3


def test_import_to_one_server_with_a_column_map(moviedb: Moviedb, tmp_path: Path) -> None:
    first = moviedb.servers[0]
    source = tmp_path / "odd.tsv"
    source.write_text("Nom\tAnnée\tRéalisateur\nLa Haine\t1995\tMathieu Kassovitz\n", "utf-8")
    code, summary = moviedb.json(
        "import",
        str(source),
        "--to",
        first.address,
        "--map",
        "Nom=title",
        "--map",
        "Année=year",
        "--map",
        "Réalisateur=director",
    )
    assert code == 0, summary
    assert [s["server"] for s in summary["servers"]] == [first.address]
    code, got = moviedb.json("get", "la haine")
    (movie,) = got["movies"]
    assert movie["versions"][0]["director"] == "Mathieu Kassovitz"
    assert movie["versions"][0]["servers"] == [first.address]


def test_import_of_a_missing_file_or_unknown_format_is_refused(
    moviedb: Moviedb, tmp_path: Path
) -> None:
    code, out = moviedb.json("import", str(tmp_path / "nope.csv"))
    assert code == 2
    assert "no such file" in out["error"]["message"]


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_export_then_import_gives_the_same_catalog(
    moviedb: Moviedb, start_servers: StartServers, tmp_path: Path, fmt: str
) -> None:
    source = tmp_path / "movies.csv"
    source.write_text(MESSY_CSV, encoding="utf-8", newline="")
    assert moviedb("import", str(source))[0] == 0
    assert (
        moviedb(
            "add",
            "Heat",
            "--year",
            "1995",
            "--set",
            "cast=Al Pacino, Robert De Niro",
            "--set",
            "rating=8.3",
            "--set",
            "name=odd extra",
            "--set",
            "awards=0",
        )[0]
        == 0
    )
    assert moviedb("add", "Gone", "--year", "2001")[0] == 0
    assert moviedb("delete", "Gone", "--yes")[0] == 0
    exported = tmp_path / f"export.{fmt}"
    code, summary = moviedb.json("export", "--format", fmt, "-o", str(exported))
    assert code == 0, summary
    assert summary["movies"] == 7  # deleted movies are left out

    fresh = start_servers(1, prefix="fresh")
    code, summary = moviedb.json("import", str(exported), servers=fresh)
    assert (code, summary["rejected"]) == (0, 0), summary
    again = tmp_path / f"again.{fmt}"
    assert moviedb("export", "--format", fmt, "-o", str(again), servers=fresh)[0] == 0
    assert again.read_text(encoding="utf-8") == exported.read_text(encoding="utf-8")


def test_export_to_stdout_streams_the_records(moviedb: Moviedb) -> None:
    assert moviedb("add", "Alien", "--year", "1979")[0] == 0
    assert moviedb("add", "Ran", "--year", "1985", servers=moviedb.servers[:1])[0] == 0
    code, out = moviedb("export", "--format", "ndjson")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(r["title"], r["year"]) for r in records] == [("Alien", 1979), ("Ran", 1985)]
    code, one = moviedb("export", "--format", "ndjson", "--from", moviedb.servers[1].address)
    assert [json.loads(x)["title"] for x in one.splitlines() if x.startswith("{")] == ["Alien"]


def legacy_dir(tmp_path: Path, servers: list[ServerProcess]) -> Path:
    directory = tmp_path / "legacy"
    directory.mkdir()
    movies = {
        "Alien": "A crew meets a creature.",
        "Heat": {"year": 1995, "director": "Michael Mann"},
        300: {"year": 2006},
    }
    (directory / "moviedb.p").write_bytes(pickle.dumps(movies))
    pairs = [("127.0.0.1", s.port) for s in servers]
    (directory / "serverdb.p").write_bytes(pickle.dumps(pairs))
    (directory / "portdb.p").write_bytes(pickle.dumps([7001, 7002, 7003]))
    return directory


def test_import_legacy_fills_the_server_list_ports_file_and_servers(
    three_servers: list[ServerProcess], client_env: Path, tmp_path: Path
) -> None:
    directory = legacy_dir(tmp_path, three_servers)
    ports = tmp_path / "ports.txt"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["--json", "import-legacy", str(directory), "--ports-file", str(ports)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["servers_added"] == [s.address for s in three_servers]
    assert summary["ports"] == [7001, 7002, 7003]
    assert summary["movies"]["rows"] == 3
    assert [s["stored"] for s in summary["movies"]["servers"]] == [3, 3, 3]
    assert "7002" in ports.read_text(encoding="utf-8")
    got = json.loads(runner.invoke(cli, ["--json", "get", "300"]).output)
    assert got["movies"][0]["title"] == "300"
    listed = json.loads(runner.invoke(cli, ["--json", "serverlist"]).output)
    assert [s["server"] for s in listed["servers"]] == [s.address for s in three_servers]

    again = runner.invoke(
        cli, ["--json", "import-legacy", str(directory), "--ports-file", str(ports)]
    )
    assert again.exit_code == 2  # the ports file exists: nothing is overwritten
    assert "exists" in json.loads(again.output)["error"]["message"]


def test_a_malicious_legacy_file_is_refused_and_runs_nothing(
    three_servers: list[ServerProcess], client_env: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "evil"
    directory.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        """Loaded naively, this would create `marker` (any callable could run instead)."""

        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    evil = pickle.dumps({"Alien": Evil()})  # dumping runs nothing; loading would
    (directory / "moviedb.p").write_bytes(evil)
    result = CliRunner().invoke(cli, ["--json", "import-legacy", str(directory)])
    assert result.exit_code == 2, result.output
    assert "moviedb.p" in json.loads(result.output)["error"]["message"]
    assert not marker.exists()


def test_a_moviedb_p_of_the_wrong_shape_is_refused_before_anything_is_written(
    three_servers: list[ServerProcess], client_env: Path, tmp_path: Path
) -> None:
    directory = legacy_dir(tmp_path, three_servers)
    (directory / "moviedb.p").write_bytes(pickle.dumps(["Alien", "Heat"]))  # a list, not a dict
    ports = tmp_path / "ports.txt"
    result = CliRunner().invoke(
        cli, ["--json", "import-legacy", str(directory), "--ports-file", str(ports)]
    )
    assert result.exit_code == 2, result.output
    assert "holds a list" in json.loads(result.output)["error"]["message"]
    assert not ports.exists()
    assert not client_env.exists()  # the server list was not written either


def test_search_merges_the_servers_and_get_suggests(moviedb: Moviedb, tmp_path: Path) -> None:
    first = moviedb.servers[0]
    source = tmp_path / "movies.csv"
    source.write_text(MESSY_CSV, encoding="utf-8", newline="")
    assert moviedb("import", str(source))[0] == 0
    assert moviedb("add", "Charlie's Angels", "--year", "2000", servers=[first])[0] == 0
    code, found = moviedb.json("search", "the matirx")
    assert code == 0
    assert found["results"][0]["title"] == "The Matrix"
    assert len(found["results"][0]["versions"][0]["servers"]) == 3
    code, found = moviedb.json("search", "charlies angels")
    assert found["results"][0]["title"] == "Charlie's Angels"
    assert found["results"][0]["versions"][0]["servers"] == [first.address]
    code, found = moviedb.json("search", "amelie")
    assert found["results"][0]["title"] == "Amélie"
    code, found = moviedb.json("search", "", "--year", "1933")
    assert [r["title"] for r in found["results"]] == ["King Kong"]
    code, found = moviedb.json("search", "kong", "--min-rating", "7.5")
    assert [(r["title"], r["year"]) for r in found["results"]] == [("King Kong", 1933)]

    code, got = moviedb.json("get", "the matrx")
    assert code == 1
    assert got["suggestions"][0] == "The Matrix (1999)"
    code, text = moviedb("get", "amelei")
    assert "did you mean: Amélie (2001)" in text


# --- what a review found --------------------------------------------------------------------------


def test_search_shows_the_newest_version_not_a_servers_stale_hit(moviedb: Moviedb) -> None:
    _, second, third = moviedb.servers
    assert moviedb("add", "Zardoz", "--year", "1974", "--set", "rating=8.5")[0] == 0
    assert moviedb("edit", "Zardoz", "--set", "rating=5", servers=[second])[0] == 0
    code, found = moviedb.json("search", "zardoz", "--min-rating", "8")
    assert (code, found["results"]) == (1, [])  # the newest version is rated 5
    code, found = moviedb.json("search", "zardoz")
    (hit,) = found["results"]
    assert (hit["state"], hit["versions"][0]["rating"]) == ("stale", 5.0)
    assert moviedb("delete", "Zardoz", "--yes", servers=[second, third])[0] == 0
    code, found = moviedb.json("search", "zardoz")
    assert (code, found["results"]) == (1, [])  # deleted, though the first still matches


def test_search_arguments_are_checked_with_a_clear_message(moviedb: Moviedb) -> None:
    assert moviedb("add", "Alien", "--year", "1979", "--set", "rating=8.5")[0] == 0
    code, out = moviedb.json("search", "alien", "--year", "79")
    assert code == 2
    assert "not a year" in out["error"]["message"]
    code, out = moviedb.json("search", " ".join(["word"] * 40))
    assert code == 2
    code, found = moviedb.json("search", "--min-rating", "8")
    assert [r["title"] for r in found["results"]] == ["Alien"]


def test_a_failed_export_leaves_the_previous_file_alone(moviedb: Moviedb, tmp_path: Path) -> None:
    first = moviedb.servers[0]
    assert moviedb("add", "Alien", "--year", "1979", servers=[first])[0] == 0
    output = tmp_path / "catalog.json"
    assert moviedb("export", "-o", str(output), servers=[first])[0] == 0
    before = output.read_text(encoding="utf-8")
    first.kill()
    code, summary = moviedb.json("export", "-o", str(output), servers=[first])
    assert code == 3
    assert summary["written"] is False
    assert output.read_text(encoding="utf-8") == before
    assert not output.with_name("catalog.json.part").exists()


def test_import_rejects_a_second_row_for_the_same_movie_with_other_data(
    moviedb: Moviedb, tmp_path: Path
) -> None:
    source = tmp_path / "dups.csv"
    source.write_text("title,year,rating\nAlien,1979,8.5\nALIEN,1979,9.0\nAlien,1979,8.5\n")
    _, summary = moviedb.json("import", str(source))
    assert (summary["rows"], summary["rejected"], summary["duplicates"]) == (3, 1, 1)
    assert "row 1" in summary["rejections"][0]["reason"]
    assert summary["rejections"][0]["row"] == 2
    assert [s["conflicts"] for s in summary["servers"]] == [0, 0, 0]


def test_import_refuses_to_write_rejects_over_its_input(moviedb: Moviedb, tmp_path: Path) -> None:
    source = tmp_path / "movies.csv"
    source.write_text("title,year\nAlien,1979\n")
    code, out = moviedb.json("import", str(source), "--rejects", str(source))
    assert code == 2
    assert "being imported" in out["error"]["message"]
    assert source.read_text() == "title,year\nAlien,1979\n"


def test_import_to_a_server_outside_the_list(
    moviedb: Moviedb, start_servers: StartServers, tmp_path: Path
) -> None:
    (other,) = start_servers(1, prefix="other")
    source = tmp_path / "movies.csv"
    source.write_text("title,year\nAlien,1979\nHeat,1995\n")
    code, summary = moviedb.json(
        "import", str(source), "--to", other.address, "--to", other.address
    )
    assert code == 0, summary
    assert [(s["server"], s["stored"]) for s in summary["servers"]] == [(other.address, 2)]


def test_a_file_broken_in_the_middle_keeps_what_came_before(
    moviedb: Moviedb, tmp_path: Path
) -> None:
    source = tmp_path / "movies.json"
    good = ",".join(json.dumps({"title": f"Film {i}", "year": 2000}) for i in range(1200))
    source.write_text(f'[{good}, {{"title": "Broken", "year": ')
    code, summary = moviedb.json("import", str(source))
    assert code == 4, summary
    assert summary["stopped"]
    assert [s["stored"] for s in summary["servers"]] == [1200] * 3


def test_large_records_are_batched_under_the_line_limit(moviedb: Moviedb, tmp_path: Path) -> None:
    source = tmp_path / "big.ndjson"
    rows = [{"title": f"Epic {i}", "year": 2000, "plot": "x" * 2500} for i in range(600)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, summary = moviedb.json("import", str(source))
    assert code == 0, summary
    assert [s["stored"] for s in summary["servers"]] == [600] * 3
    code, out = moviedb("export", "--format", "ndjson")
    assert code == 0
    assert len([line for line in out.splitlines() if line.startswith("{")]) == 600


def test_a_hung_server_costs_one_timeout_not_one_per_batch(
    moviedb: Moviedb, tmp_path: Path
) -> None:
    import signal

    first, second, _ = moviedb.servers
    source = tmp_path / "movies.ndjson"
    source.write_text(
        "".join(json.dumps({"title": f"Film {i}", "year": 2000}) + "\n" for i in range(5000))
    )
    second.signal(signal.SIGSTOP)
    try:
        addresses = f"{first.address},{second.address}"
        result = CliRunner().invoke(
            cli, ["--servers", addresses, "--timeout", "0.5", "--json", "import", str(source)]
        )
    finally:
        second.signal(signal.SIGCONT)
    summary = json.loads(result.output)
    assert result.exit_code == 4, summary
    by_server = {s["server"]: s for s in summary["servers"]}
    assert by_server[first.address]["stored"] == 5000
    hung = by_server[second.address]
    assert hung["unknown"] + hung["failed"] == 5000
    assert hung["unknown"] <= 4 * 500  # only the batches in flight when it stopped answering


def test_the_servers_decide_how_many_words_a_search_may_have(moviedb: Moviedb) -> None:
    """The client does not count words itself (it counted them differently): punctuation is
    no word to the server, and a query of too many words is refused with its reason."""
    assert moviedb("add", "The Matrix", "--year", "1999")[0] == 0
    code, found = moviedb.json("search", " ".join(["matrix"] + ["-"] * 40))
    assert code == 0
    assert [m["title"] for m in found["results"]] == ["The Matrix"]
    code, refused = moviedb.json("search", " ".join(f"w{i}" for i in range(40)))
    assert code == 2
    assert "at most 32" in refused["error"]["message"]
