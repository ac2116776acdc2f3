"""Importing movie files: formats, columns, values, rejections with reasons, streaming."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import time
import tracemalloc
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moviedb import importers
from moviedb.errors import InvalidMovie
from moviedb.importers import (
    FORMATS,
    ImportFormatError,
    InvalidMapping,
    Rejected,
    RejectsWriter,
    Row,
    detect_encoding,
    detect_format,
    parse_mapping,
    read_rows,
    record_from_mapping,
    repair_mojibake,
)
from moviedb.model import KNOWN_FIELDS, RESERVED_NAMES, Movie, validate


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def rows(path: Path, **kwargs: Any) -> list[Row | Rejected]:
    return list(read_rows(path, **kwargs))


def movies(path: Path, **kwargs: Any) -> list[Movie]:
    result = rows(path, **kwargs)
    assert all(isinstance(r, Row) for r in result), result
    return [r.movie for r in result if isinstance(r, Row)]


def only_rejected(result: list[Row | Rejected]) -> list[Rejected]:
    return [r for r in result if isinstance(r, Rejected)]


# --- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.json", "json"),
        ("a.JSON", "json"),
        ("a.ndjson", "ndjson"),
        ("a.jsonl", "ndjson"),
        ("a.csv", "csv"),
        ("a.tsv", "tsv"),
        ("a.tab", "tsv"),
    ],
)
def test_format_from_extension(tmp_path: Path, name: str, expected: str) -> None:
    assert detect_format(write(tmp_path / name, "whatever")) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('  \n[{"title": "Alien"}]', "json"),
        ('{"title": "Alien"}\n{"title": "Heat"}\n', "ndjson"),
        ("title\tyear\nAlien\t1979\n", "tsv"),
        ("title,year\nAlien,1979\n", "csv"),
        ("\ufefftitle,year\nAlien,1979\n", "csv"),
    ],
)
def test_format_from_content(tmp_path: Path, content: str, expected: str) -> None:
    assert detect_format(write(tmp_path / "movies.txt", content)) == expected
    assert detect_format(write(tmp_path / "movies", content)) == expected


def test_explicit_format_wins_and_is_checked(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", "title\tyear\nAlien\t1979\n")
    assert detect_format(path, "TSV") == "tsv"
    assert detect_format(path, "jsonl") == "ndjson"
    assert movies(path, format="tsv") == [Movie("Alien", 1979)]
    with pytest.raises(ImportFormatError, match=r"a\.json: unknown format 'xml'; accepted: json"):
        detect_format(path, "xml")
    assert set(FORMATS) == {"json", "ndjson", "csv", "tsv"}


def test_one_pretty_printed_object_is_neither_json_nor_ndjson(tmp_path: Path) -> None:
    path = write(tmp_path / "one.txt", '{\n  "title": "Alien"\n}\n')
    with pytest.raises(ImportFormatError, match=r"one\.txt: starts with '\{'.*neither NDJSON"):
        detect_format(path)
    with pytest.raises(ImportFormatError, match=r"one JSON object, not an array.*ndjson"):
        next(read_rows(write(tmp_path / "one.json", '{"title": "Alien"}')))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ('"Alien"', "starts with '\"', not '\\['"),
    ],
)
def test_json_that_is_not_an_array(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ImportFormatError, match=message):
        next(read_rows(write(tmp_path / "a.json", content)))


def test_missing_file_is_reported_when_reading_starts(tmp_path: Path) -> None:
    pending = read_rows(tmp_path / "nope.csv")  # a generator: nothing happens yet
    with pytest.raises(ImportFormatError, match=r"nope\.csv: cannot be read"):
        next(pending)


# --- csv / tsv ----------------------------------------------------------------------------------


def test_csv_numeric_titles_remakes_and_accents(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv",
        "title,year\n300,2006\n1917,2019\nKing Kong,1933\nKing Kong,2005\nAmélie,2001\n",
    )
    assert movies(path) == [
        Movie("300", 2006),
        Movie("1917", 2019),
        Movie("King Kong", 1933),
        Movie("King Kong", 2005),
        Movie("Amélie", 2001),
    ]


def test_csv_quoting_bom_blank_lines_and_crlf(tmp_path: Path) -> None:
    text = (
        "\ufefftitle,plot,cast\r\n"
        "\r\n"
        '"Crouching Tiger, Hidden Dragon","Two warriors,\r\none sword",'
        '"Chow Yun-fat, Michelle Yeoh"\r\n'
        "\r\n"
        ",,\r\n"
        'Alien,"He said ""run""",\r\n'
    )
    result = rows(write(tmp_path / "m.csv", text))
    assert [r.number for r in result] == [1, 2]
    assert [r.movie for r in result if isinstance(r, Row)] == [
        Movie(
            "Crouching Tiger, Hidden Dragon",
            plot="Two warriors,\r\none sword",
            cast=["Chow Yun-fat", "Michelle Yeoh"],
        ),
        Movie("Alien", plot='He said "run"'),
    ]


def test_csv_line_numbers_in_reasons_count_physical_lines(tmp_path: Path) -> None:
    text = 'title,plot,rating\n\nA,"one\ntwo\nthree",5\n\nB,,11\n'
    (rejected,) = only_rejected(rows(write(tmp_path / "m.csv", text)))
    assert rejected.number == 2
    assert rejected.reason.startswith("line 7: rating: 11.0 is out of range; accepted: 0 to 10")


def test_tsv(tmp_path: Path) -> None:
    text = "Title\tYear\tGenre\tNotes\nAlien\t1979\tHorror, Sci-Fi\tsaid, with commas\n"
    assert movies(write(tmp_path / "m.tsv", text)) == [
        Movie("Alien", 1979, genres=["Horror", "Sci-Fi"], extra={"Notes": "said, with commas"})
    ]


def test_utf16_tsv_as_excel_saves_it(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_bytes("Title\tYear\r\nAmélie\t2001\r\n".encode("utf-16"))
    assert detect_encoding(path) == "utf-16"
    assert movies(path) == [Movie("Amélie", 2001)]


def test_cp1252_file_is_read_whole(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv", "title,director\nAmélie,Jean-Pierre Jeunet – “JPJ”\n", "cp1252"
    )
    assert detect_encoding(path) == "cp1252"
    assert movies(path) == [Movie("Amélie", director="Jean-Pierre Jeunet – “JPJ”")]


def test_stray_bad_byte_after_the_first_mib_loses_nothing(tmp_path: Path) -> None:
    filler = "".join(f"Movie {i},2000\n" for i in range(80_000))
    path = tmp_path / "m.csv"
    path.write_bytes(b"title,year\n" + filler.encode() + "Amélie,2001\n".encode("cp1252"))
    assert detect_encoding(path) == "utf-8"
    assert movies(path)[-1] == Movie("Amélie", 2001)


def test_a_stray_cp1252_byte_in_a_utf8_file_costs_only_that_byte(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(
        "title,year\nБрат,1997\n千と千尋の神隠し,2001\nAmélie,2001\n".encode()
        + "Café Society,2016\n".encode("cp1252")
    )
    assert detect_encoding(path) == "utf-8"
    assert movies(path) == [
        Movie("Брат", 1997),
        Movie("千と千尋の神隠し", 2001),
        Movie("Amélie", 2001),
        Movie("Café Society", 2016),
    ]


def test_the_stray_byte_may_come_first(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_bytes(
        b"title\tdirector\n"
        + "Café Society\tWoody Allen\n".encode("cp1252")
        + "Брат\tАлексей Балабанов\n".encode()
    )
    assert detect_encoding(path) == "utf-8"
    assert movies(path) == [
        Movie("Café Society", director="Woody Allen"),
        Movie("Брат", director="Алексей Балабанов"),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"title\nAlien\n", "utf-8"),
        ("title\nAm\u00e9lie\n".encode(), "utf-8"),
        ("title\nAm\u00e9lie\n".encode("cp1252"), "cp1252"),
        ("title\nDéjà vu – “Fin”\n".encode("cp1252"), "cp1252"),
        (b"title\nA\xc3", "cp1252"),  # a multi-byte sequence cut off by the end of the file
        ("title\nБрат".encode()[:-1], "utf-8"),  # cut off, after whole ones
        (b"", "utf-8"),
    ],
)
def test_detect_encoding(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    assert detect_encoding(path) == expected


def test_mojibake_is_repaired(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "title,director\nAmÃ©lie,FranÃ§ois â€œFrankâ€\x9d\n")
    assert movies(path) == [Movie("Amélie", director="François “Frank”")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AmÃ©lie", "Amélie"),
        ("Ã\x81lvaro", "Álvaro"),  # read as Latin-1: a C1 control that cp1252 lacks
        ("Itâ€™s", "It’s"),
        ("CafÃ© Ã\xa0Paris", "Café àParis"),
        ("Amélie", "Amélie"),
        ("Ärger im Paradies", "Ärger im Paradies"),
        ("Âge tendre", "Âge tendre"),
        ("São Paulo Ã", "São Paulo Ã"),
        ("Ã漢字", "Ã漢字"),
        ("plain", "plain"),
    ],
)
def test_repair_mojibake(text: str, expected: str) -> None:
    assert repair_mojibake(text) == expected


def test_csv_bad_quoting_and_too_many_values_are_rejected(tmp_path: Path) -> None:
    text = 'title,year\nGood,1979\nBad,"1979"x\nToo,many,values\nTrailing,1980,,\nEnd,"1981\n'
    result = rows(write(tmp_path / "m.csv", text))
    assert [type(r).__name__ for r in result] == ["Row", "Rejected", "Rejected", "Row", "Rejected"]
    bad, many, end = only_rejected(result)
    assert bad.reason.startswith("line 3: bad quoting")
    assert 'must be wrapped in double quotes, with each quote inside doubled ("")' in bad.reason
    assert bad.data == 'Bad,"1979"x\n'
    assert many.reason == (
        "line 4: has 3 values but the header has 2 columns; "
        "a value containing a comma must be in double quotes"
    )
    assert many.data == {"title": "Too", "year": "many", "column 3": "values"}
    assert (
        end.reason == 'line 6: a quote (") opened here is never closed before the end of the file'
    )


def test_unclosed_quote_running_past_the_field_limit_stops_the_file(tmp_path: Path) -> None:
    text = 'title,plot\nA,"never closed\n' + "more text\n" * 20_000
    result = read_rows(write(tmp_path / "m.csv", text))
    with pytest.raises(ImportFormatError, match="the quote opened on line 2 is never closed"):
        list(result)


def test_csv_without_a_title_column(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "Nom,Année\nAlien,1979\n")
    with pytest.raises(
        ImportFormatError, match=r"m\.csv: no title column among 'Nom', 'Année'"
    ) as e:
        next(read_rows(path))
    assert "--map 'COLUMN=title'" in str(e.value)
    assert movies(path, mapping=parse_mapping(["Nom=title", "Année=year"])) == [
        Movie("Alien", 1979)
    ]


def test_empty_csv_has_no_rows(tmp_path: Path) -> None:
    assert rows(write(tmp_path / "m.csv", "")) == []
    assert rows(write(tmp_path / "h.csv", "title,year\n\n")) == []


def test_missing_titles_are_rejected(tmp_path: Path) -> None:
    result = rows(write(tmp_path / "m.csv", "Film,year\n,1979\n   ,1980\nAlien,1979\n"))
    first, second = only_rejected(result)
    assert (first.number, second.number) == (1, 2)
    assert "title: no title in this row (column 'Film' is empty)" in first.reason
    assert first.data == {"Film": "", "year": "1979"}


# --- columns ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "field", "expected"),
    [
        ("Title", "Alien", "title", "Alien"),
        ("NAME", "Alien", "title", "Alien"),
        ("movie", "Alien", "title", "Alien"),
        (" Film ", "Alien", "title", "Alien"),
        ("Movie Title", "Alien", "title", "Alien"),
        ("movie_title", "Alien", "title", "Alien"),
        ("title-name", "Alien", "title", "Alien"),
        ("primaryTitle", "Alien", "title", "Alien"),
        ("YEAR", "1979", "year", 1979),
        ("Release Date", "1979-05-25", "year", 1979),
        ("released", "25/05/1979", "year", 1979),
        ("release", "May 25 1979", "year", 1979),
        ("date", "1979", "year", 1979),
        ("startYear", "1979", "year", 1979),
        ("Director", "Ridley Scott", "director", "Ridley Scott"),
        ("directors", "Ridley Scott", "director", "Ridley Scott"),
        ("genre", "Horror|Sci-Fi", "genres", ["Horror", "Sci-Fi"]),
        ("Genres", "Horror/Sci-Fi", "genres", ["Horror", "Sci-Fi"]),
        ("Major Genre", "Horror; Sci-Fi", "genres", ["Horror", "Sci-Fi"]),
        ("runtime", "117", "runtime_min", 117),
        ("Running Time", "117 min", "runtime_min", 117),
        ("Runtime (min)", "117", "runtime_min", 117),
        ("runtime_min", "117", "runtime_min", 117),
        ("duration", "1h 57m", "runtime_min", 117),
        ("Length", "1:57", "runtime_min", 117),
        ("rating", "8.5", "rating", 8.5),
        ("IMDb Rating", "8.5", "rating", 8.5),
        ("imdb_rating", "8.5/10", "rating", 8.5),
        ("score", "8.5", "rating", 8.5),
        ("Vote Average", "8.5", "rating", 8.5),
        ("cast", "Sigourney Weaver, John Hurt", "cast", ["Sigourney Weaver", "John Hurt"]),
        ("Actors", "Sigourney Weaver|John Hurt", "cast", ["Sigourney Weaver", "John Hurt"]),
        ("stars", "Sigourney Weaver; John Hurt", "cast", ["Sigourney Weaver", "John Hurt"]),
        ("Starring", "Sigourney Weaver", "cast", ["Sigourney Weaver"]),
        ("plot", "In space.", "plot", "In space."),
        ("Overview", "In space.", "plot", "In space."),
        ("summary", "In space.", "plot", "In space."),
        ("Description", "In space.", "plot", "In space."),
        ("synopsis", "In space.", "plot", "In space."),
    ],
)
def test_column_synonyms(header: str, value: str, field: str, expected: object) -> None:
    data = {"title": "Alien", header: value} if field != "title" else {header: value}
    movie = record_from_mapping(data)
    assert getattr(movie, field) == expected
    assert movie.extra == {}


def test_a_preferred_column_wins_and_the_other_is_kept() -> None:
    movie = record_from_mapping(
        {"Name": "Alien (orig)", "Title": "Alien", "Release Date": "1979-05-25", "Year": "1979"}
    )
    assert movie.title == "Alien"
    assert movie.year == 1979
    assert movie.extra == {"Name": "Alien (orig)", "Release Date": "1979-05-25"}


def test_other_columns_become_extras_and_nothing_is_dropped() -> None:
    movie = record_from_mapping(
        {
            "title": "Alien",
            "Budget": "11000000",
            "rev": "7",
            "extra": "x",
            "deleted": "no",
            "Studio ": "Fox",
            "B" * 150: "long",
            "empty": "",
        }
    )
    assert movie.extra == {
        "B" * 99 + "…": "long",
        "Budget": "11000000",
        "Studio": "Fox",
        "source deleted": "no",
        "source extra": "x",
        "source rev": "7",
    }


def test_a_known_field_name_repeated_is_kept_as_source_field(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "title,year,Year,title\nAlien,1979,1980,Alien 2\n")
    (movie,) = movies(path)
    assert movie.year == 1979
    assert movie.extra == {"Year": "1980", "title (2)": "Alien 2"}


def test_mapping_overrides_recognition(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv",
        "Film Name,Released,Score,title\nAlien,25 May 1979,89,working title\n",
    )
    mapping = parse_mapping(["Film Name=title", "released=Year", "Score=metascore"])
    (movie,) = movies(path, mapping=mapping)
    assert movie == Movie("Alien", 1979, extra={"metascore": "89", "source title": "working title"})
    with pytest.raises(ImportFormatError, match=r"--map 'Nope': the file has no such column"):
        next(read_rows(path, mapping={"Nope": "title"}))


def test_parse_mapping() -> None:
    assert parse_mapping(["Film Name=title", " Released = year ", "Runtime Min=runtime min"]) == {
        "Film Name": "title",
        "Released": "year",
        "Runtime Min": "runtime_min",
    }
    assert parse_mapping(["a=b=Custom Field"]) == {"a=b": "Custom Field"}
    assert parse_mapping([]) == {}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("title", "expected SOURCE=FIELD"),
        ("=title", "expected SOURCE=FIELD"),
        ("Film=", "expected SOURCE=FIELD"),
        ("Film=rev", "'rev' cannot be a field name; accepted: title, year"),
        ("Film=extra", "'extra' cannot be a field name"),
        ("Film=" + "x" * 101, "cannot be a field name"),
    ],
)
def test_parse_mapping_errors(item: str, message: str) -> None:
    with pytest.raises(InvalidMapping, match=re.escape(f"--map {item!r}: ") + ".*" + message):
        parse_mapping([item])


def test_parse_mapping_refuses_a_column_twice() -> None:
    with pytest.raises(
        ValueError, match="column 'film_name' is already mapped by 'Film Name=title'"
    ):
        parse_mapping(["Film Name=title", "film_name=plot"])
    assert issubclass(InvalidMapping, ImportFormatError)


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("1979", 1979),
        (" 1979 ", 1979),
        ("1979.0", 1979),
        ("1979-05-25", 1979),
        ("1979-05", 1979),
        ("1979/05/25", 1979),
        ("1979-05-25T00:00:00Z", 1979),
        ("25/05/1979", 1979),
        ("05/25/1979", 1979),
        ("25.05.1979", 1979),
        ("May 25 1979", 1979),
        ("May 25, 1979", 1979),
        ("25 May 1979", 1979),
        ("25 May 1979 (USA)", 1979),
        ("Fri, 25th May 1979", 1979),
        ("September 1979", 1979),
        ("25-May-1979", 1979),
    ],
)
def test_release_dates_give_the_year(text: str, year: int) -> None:
    assert record_from_mapping({"title": "Alien", "release date": text}).year == year


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "year: 'abc' is not a year; accepted: a year such as 1979, or a release date"),
        ("79", "year: 79 is not a year; accepted: 1870 to 2200"),
        ("3000", "year: 3000 is not a year; accepted: 1870 to 2200"),
        ("25/05/79", "year: '25/05/79' is not a year"),
        ("Mayday 1979", "year: 'Mayday 1979' is not a year"),
        ("١٩٧٩", "year: '١٩٧٩' is not a year"),  # Arabic-Indic digits are not read as a year
        (True, "year: True is not a year"),
    ],
)
def test_years_that_are_not_years(value: object, message: str) -> None:
    with pytest.raises(InvalidMovie, match="^" + re.escape(message)):
        record_from_mapping({"title": "Alien", "year": value})


def test_year_errors_name_the_column(tmp_path: Path) -> None:
    (rejected,) = rows(write(tmp_path / "m.csv", "title,Released\nAlien,79\n"))
    assert isinstance(rejected, Rejected)
    assert rejected.reason == (
        "line 2: year: 79 is not a year; accepted: 1870 to 2200 (column 'Released')"
    )


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        ("117", 117),
        ("117 min", 117),
        ("117min", 117),
        ("117 mins.", 117),
        ("117 minutes", 117),
        ("117.0", 117),
        ("1h 57m", 117),
        ("1h57m", 117),
        ("1 hr 57 min", 117),
        ("1 hour 57 minutes", 117),
        ("2h", 120),
        ("1:57", 117),
        ("1:57:30", 118),
        ("PT1H57M", 117),
        ("PT117M", 117),
        (117, 117),
        (117.0, 117),
    ],
)
def test_runtime_formats(value: object, minutes: int) -> None:
    assert record_from_mapping({"title": "Alien", "runtime": value}).runtime_min == minutes


@pytest.mark.parametrize("value", ["long", "117.5", "1:75", "-5", "PT", 117.5, False])
def test_runtimes_refused(value: object) -> None:
    with pytest.raises(InvalidMovie, match=r"^runtime_min: .*is not a running time; accepted:"):
        record_from_mapping({"title": "Alien", "runtime_min": value})


def test_zero_runtime_gets_the_model_message() -> None:
    with pytest.raises(InvalidMovie, match=r"runtime_min: 0 is not accepted.*\(column 'Length'\)"):
        record_from_mapping({"title": "Alien", "Length": "0"})


@pytest.mark.parametrize(
    ("value", "rating"),
    [("8.1", 8.1), ("8.1/10", 8.1), ("8.1 / 10", 8.1), ("8,1", 8.1), ("10", 10.0), (7, 7.0)],
)
def test_ratings(value: object, rating: float) -> None:
    assert record_from_mapping({"title": "Alien", "rating": value}).rating == rating


def test_rating_out_of_range_is_rejected_with_its_column(tmp_path: Path) -> None:
    text = "title,IMDb Rating\nAlien,11\nHeat,-1\nRan,PG-13\nOk,8.3\n"
    result = rows(write(tmp_path / "m.csv", text))
    assert [r.reason for r in only_rejected(result)] == [
        "line 2: rating: 11.0 is out of range; accepted: 0 to 10 (column 'IMDb Rating')",
        "line 3: rating: '-1' is not a rating; accepted: a number from 0 to 10 such as 8.1 "
        "or 8.1/10 (column 'IMDb Rating')",
        "line 4: rating: 'PG-13' is not a rating; accepted: a number from 0 to 10 such as 8.1 "
        "or 8.1/10 (column 'IMDb Rating')",
    ]
    assert isinstance(result[-1], Row)
    assert result[-1].movie.rating == 8.3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"title": 10**5000}, r"^title: a number of more than 4300 digits is not accepted"),
        ({"title": "A", "year": 10**5000}, r"^year: <a number too long to show> is not a year"),
        ({"title": "A", "year": 2**70}, r"^year: 1180591620717411303424 is not a year"),
        ({"title": "A", "runtime": 10**5000}, r"^runtime_min: <a number too long to show> is not"),
        (
            {"title": "A", "rating": 10**5000},
            r"^rating: <a number too long to show> is out of range",
        ),
        (
            {"title": "A", "rating": 10**400},
            r"^rating: 1000000.*… is out of range; accepted: 0 to 10",
        ),
        ({"title": "A", "note": 10**5000}, r"^note: a number of more than 4300 digits"),
        ({"title": "A", "note": [10**5000]}, r"^note: a number of more than 4300 digits"),
        ({"title": "A", "cast": [10**5000]}, r"^cast entry 1: a number of more than 4300"),
        ({"title": "A", "extra": {10**5000: "x"}}, r"^extra field name: a number of more than"),
    ],
    ids=[
        "title",
        "year",
        "year 2**70",
        "runtime",
        "rating",
        "rating 10**400",
        "extra",
        "extra list",
        "cast",
        "nested extra name",
    ],
)
def test_numbers_too_long_to_print_are_rejected_with_a_reason(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidMovie, match=message):
        record_from_mapping(data)


def test_numbers_too_long_to_print_deep_in_an_extra_value() -> None:
    movie = record_from_mapping({"title": "A", "note": [[10**5000]]})
    assert movie.extra == {"note": '[["<a number too long to show>"]]'}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"title": "a\ud800"}, "title"),
        ({"title": "A", "plot": "\udfff"}, "plot"),
        ({"title": "A", "cast": "x, \udc00"}, "cast"),
        ({"title": "A", "note": "\ud800"}, "note"),
        ({"title": "A", "note\ud800": "x"}, r"extra field 'note\\ud800'"),
    ],
)
def test_lone_surrogates_are_rejected(data: dict[str, Any], field: str) -> None:
    with pytest.raises(
        InvalidMovie, match=f"^{field}: holds '\\\\ud[0-9a-f]{{3}}', half of a surrogate"
    ):
        record_from_mapping(data)


def test_a_character_beyond_the_bmp_is_not_taken_for_a_surrogate() -> None:
    # U+1F3AC is a surrogate pair in UTF-16 (and in JSON escapes), one code point here.
    assert record_from_mapping({"title": "\U0001f3ac"}).title == "\U0001f3ac"


def test_lone_surrogates_from_a_json_file(tmp_path: Path) -> None:
    path = write(tmp_path / "m.ndjson", '{"title": "\\ud83c\\udfac"}\n{"title": "\\ud83c"}\n')
    result = rows(path)
    assert result[0] == Row(1, Movie("\U0001f3ac"))
    assert isinstance(result[1], Rejected)
    assert "half of a surrogate pair" in result[1].reason


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("Alien", "'Alien'"),
        (("Heat", 1995), "('Heat', 1995)"),
        ((1,), "(1,)"),
        ([1, [2, None]], "[1, [2, None]]"),
        ({"a": {True}}, "{'a': {True}}"),
        (frozenset(), "frozenset()"),
        (set(), "set()"),
        (frozenset({1}), "frozenset({1})"),
        ("x" * 100, "'" + "x" * 58 + "…"),
        (10**5000, "<a number too long to show>"),
        ("\ud800", "'\\ud800'"),
    ],
    ids=lambda value: None if not isinstance(value, int) else "int",
)
def test_shown(value: object, text: str) -> None:
    assert importers.shown(value) == text


def test_shown_costs_what_it_shows_not_the_size_of_the_value() -> None:
    shared: list[Any] = ["ab"]
    for _ in range(200):
        shared = [shared, shared]  # 2**200 values written out in full
    assert importers.shown(shared) == "[" * 59 + "…"
    assert len(importers.shown(shared, 1000)) == 1000


def test_invalid_records_get_the_model_message() -> None:
    with pytest.raises(InvalidMovie, match=r"^title: is 501 characters long; at most 500"):
        record_from_mapping({"title": "x" * 501})
    with pytest.raises(InvalidMovie, match=r"^plot: must not contain a NUL character"):
        record_from_mapping({"title": "x", "plot": "a\x00b"})
    with pytest.raises(InvalidMovie, match=r"^extra: has 101 fields; at most 100"):
        record_from_mapping({"title": "x", **{f"c{i}": "v" for i in range(101)}})


# --- json and ndjson ----------------------------------------------------------------------------


def test_json_array(tmp_path: Path) -> None:
    data = [
        {"title": 1917, "year": 2019},
        {"title": "300", "year": "2006"},
        {"title": 2001.0, "year": 1968},
        {"name": "Amélie", "directors": ["Jean-Pierre Jeunet"], "genres": ["Comedy", "Romance"]},
        {
            "title": "Alien",
            "budget": 11_000_000,
            "ratio": 1.85,
            "color": True,
            "tags": ["space", "horror"],
            "ids": {"imdb": "tt0078748"},
            "missing": None,
        },
        "not an object",
        {"year": 1999},
        {"title": "King Kong", "year": 1933},
        {"title": "King Kong", "year": 2005},
    ]
    path = write(tmp_path / "m.json", json.dumps(data, ensure_ascii=False, indent=1))
    result = rows(path)
    assert [r.number for r in result] == list(range(1, 10))
    found = [r.movie for r in result if isinstance(r, Row)]
    assert found[:3] == [Movie("1917", 2019), Movie("300", 2006), Movie("2001", 1968)]
    assert found[3] == Movie("Amélie", director="Jean-Pierre Jeunet", genres=["Comedy", "Romance"])
    assert found[4].extra == {
        "budget": 11_000_000,
        "color": True,
        "ids": '{"imdb": "tt0078748"}',
        "ratio": 1.85,
        "tags": "space, horror",
    }
    assert found[5:] == [Movie("King Kong", 1933), Movie("King Kong", 2005)]
    text, untitled = only_rejected(result)
    assert (text.number, untitled.number) == (6, 7)
    assert text.reason.startswith("element 6 is str, not a JSON object; accepted: objects")
    assert text.data == '"not an object"'
    assert untitled.reason.startswith("title: no title in this row; accepted: a value under title")
    assert untitled.data == {"year": 1999}


def test_json_export_with_nested_extra_round_trips(tmp_path: Path) -> None:
    movie = validate(
        Movie("Blade Runner", 1982, rating=8.1, extra={"cut": "Final Cut", "name": "x", "n": 3})
    )
    path = tmp_path / "export.json"
    path.write_bytes(b"[" + importers_encode(movie) + b"]")
    assert movies(path) == [movie]


def test_csv_extra_column_with_json_text_round_trips(tmp_path: Path) -> None:
    text = (
        'title,genres,extra\nAlien,Horror; Sci-Fi,"{""Country"": ""US"", ""n"": 3}"\n'
        'Heat,,"{not json"\n'
    )
    assert movies(write(tmp_path / "m.csv", text)) == [
        Movie("Alien", genres=["Horror", "Sci-Fi"], extra={"Country": "US", "n": 3}),
        Movie("Heat", extra={"source extra": "{not json"}),
    ]


def csv_with_json_lists(catalog: list[Movie], delimiter: str = ",") -> str:
    """The catalog as moviedb's CSV export writes it: lists as JSON arrays, ratings in full."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(KNOWN_FIELDS)
    for movie in catalog:
        row: list[object] = []
        for field in KNOWN_FIELDS:
            value = getattr(movie, field)
            if isinstance(value, list):
                row.append(json.dumps(value, ensure_ascii=False))
            elif isinstance(value, float):
                row.append(repr(value))
            else:
                row.append("" if value is None else value)
        writer.writerow(row)
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "delimiter"), [("m.csv", ","), ("m.tsv", "\t")])
def test_csv_list_cells_holding_json_arrays_are_those_lists(
    tmp_path: Path, name: str, delimiter: str
) -> None:
    iron_man = Movie(
        "Iron Man",
        2008,
        cast=["Downey Jr., Robert", "Paltrow; Gwyneth"],
        genres=["Sci-Fi/Fantasy"],
        rating=7.912345678,
    )
    catalog = [iron_man, Movie("Tiny", 2001, rating=0.00001, cast=['Say "hi" | [x]'])]
    path = tmp_path / name
    path.write_text(csv_with_json_lists(catalog, delimiter), encoding="utf-8", newline="")
    assert movies(path) == catalog


@pytest.mark.parametrize(
    ("cell", "cast"),
    [
        ('["Sigourney Weaver", "Tom Skerritt"]', ["Sigourney Weaver", "Tom Skerritt"]),
        (' ["Weaver, Sigourney"] ', ["Weaver, Sigourney"]),
        ("[]", []),
        ('["a", 1]', ['["a"', "1]"]),  # not all text: split as before
        ("[Weaver, Skerritt]", ["[Weaver", "Skerritt]"]),  # not JSON
        ('["Weaver"', ['["Weaver"']),
        ('"Weaver", "Skerritt"', ['"Weaver"', '"Skerritt"']),
    ],
)
def test_only_a_json_array_of_text_is_taken_as_a_list(cell: str, cast: list[str]) -> None:
    converter = importers._Converter(None, json_lists=True)
    assert converter.record({"title": "Alien", "cast": cell}).cast == cast


def test_json_files_keep_splitting_text_lists(tmp_path: Path) -> None:
    path = write(tmp_path / "m.json", '[{"title": "Alien", "genres": "[\\"Horror\\"]"}]')
    assert movies(path) == [Movie("Alien", genres=['["Horror"]'])]


def importers_encode(movie: Movie) -> bytes:
    import msgspec

    return msgspec.json.encode(movie)


def test_json_titles_that_are_not_text() -> None:
    with pytest.raises(InvalidMovie, match=r"^title: must be text, got true"):
        record_from_mapping({"title": True})
    with pytest.raises(InvalidMovie, match=r"^title: must be text, got an object"):
        record_from_mapping({"title": {"en": "Alien"}})


def test_json_broken_part_way_keeps_what_was_read(tmp_path: Path) -> None:
    path = write(tmp_path / "m.json", '[{"title": "A"},\n {"title": "B"}\n {"title": "C"}]')
    result = read_rows(path)
    assert isinstance(next(result), Row)
    assert isinstance(next(result), Row)
    with pytest.raises(ImportFormatError, match=r"expected ',' or '\]' after element 2 at line 3"):
        next(result)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"title": "A"}, {"title": ', "element 2 is not valid JSON"),
        ('[{"title": "A"}', r"ends after element 1 without a closing '\]'"),
        ('[{"title": "A"}] x', r"unexpected 'x' after the array"),
    ],
)
def test_json_structure_errors(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ImportFormatError, match=message):
        list(read_rows(write(tmp_path / "m.json", content)))


def test_json_edge_shapes(tmp_path: Path) -> None:
    assert rows(write(tmp_path / "a.json", "[ ]")) == []
    assert movies(write(tmp_path / "b.json", '[{"title": "A"},]')) == [Movie("A")]
    assert movies(write(tmp_path / "c.json", '\ufeff[{"title":"A"}]')) == [Movie("A")]
    numbers = rows(write(tmp_path / "d.json", "[12345, 1e5]"))
    assert [r.data for r in only_rejected(numbers)] == ["12345", "100000.0"]


def test_json_element_spanning_many_chunks(tmp_path: Path) -> None:
    plot = "x" * 19_000
    data = [{"title": f"T{i}", "plot": plot, "pad": "y" * 19_000} for i in range(20)]
    assert len(movies(write(tmp_path / "m.json", json.dumps(data)))) == 20


def test_ndjson(tmp_path: Path) -> None:
    text = (
        '{"title": "Alien", "year": 1979}\n'
        "\n"
        '{"title": "Heat", "year": 1995\n'
        "[1, 2]\n"
        '{"title": 300}\r\n'
        '   {"title": "Solaris", "rating": 11}\n'
    )
    result = rows(write(tmp_path / "m.ndjson", text))
    assert [(type(r).__name__, r.number) for r in result] == [
        ("Row", 1),
        ("Rejected", 3),
        ("Rejected", 4),
        ("Row", 5),
        ("Rejected", 6),
    ]
    bad_json, a_list, out_of_range = only_rejected(result)
    assert bad_json.reason.startswith("not valid JSON (Expecting ',' delimiter at column 31)")
    assert bad_json.data == '{"title": "Heat", "year": 1995'
    assert a_list.reason.startswith("the line holds a list, not a JSON object")
    assert out_of_range.reason == "rating: 11.0 is out of range; accepted: 0 to 10"
    assert result[3] == Row(5, Movie("300"))


# --- rejects file -------------------------------------------------------------------------------


def test_rejects_writer(tmp_path: Path) -> None:
    out = tmp_path / "rejects.ndjson"
    out.write_text("old run\n")
    source = write(tmp_path / "m.csv", "title,rating\nAlien,11\nOk,5\n,3\nNaN,\n")
    with RejectsWriter(out) as rejects:
        for result in read_rows(source):
            if isinstance(result, Rejected):
                rejects.write(result)
        rejects.write(Rejected(9, "odd values", {"n": float("nan"), "s": {1, 2}, "t": (1, "a")}))
    assert rejects.count == 3
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {
            "row": 1,
            "reason": "line 2: rating: 11.0 is out of range; accepted: 0 to 10",
            "data": {"title": "Alien", "rating": "11"},
        },
        {
            "row": 3,
            "reason": "line 4: title: no title in this row (column 'title' is empty); every "
            "movie needs one",
            "data": {"title": "", "rating": "3"},
        },
        {"row": 9, "reason": "odd values", "data": {"n": "nan", "s": [1, 2], "t": [1, "a"]}},
    ]
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        rejects.write(Rejected(1, "x", "y"))


def test_rejects_writer_with_numbers_too_long_to_print_and_lone_surrogates(
    tmp_path: Path,
) -> None:
    out = tmp_path / "rejects.ndjson"
    with RejectsWriter(out) as rejects:
        rejects.write(Rejected(1, "big", {"n": 10**5000, "t": (10**5000, "a"), 10**5000: 1}))
        rejects.write(Rejected(2, "half a pair", {"title": "a\ud800b"}))
    first, second = (json.loads(line) for line in out.read_text(encoding="utf-8").splitlines())
    too_long = "<a number too long to show>"
    assert first["data"] == {"n": too_long, "t": [too_long, "a"], too_long: 1}
    assert second["data"] == {"title": "a\ud800b"}


def test_rejects_writer_to_an_unwritable_place(tmp_path: Path) -> None:
    with (
        pytest.raises(ImportFormatError, match="cannot write the rejected rows there"),
        RejectsWriter(tmp_path / "no" / "such" / "dir.ndjson"),
    ):
        pass  # pragma: no cover


# --- large files: streaming ---------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
PLOT = "A crew member finds something in the dark and the rest follow it down the corridor. " * 2


def big_json(path: Path, target: int, *, close: bool = True) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("[\n")
        size = 2
        while size < target:
            element = json.dumps(
                {"title": f"Movie {count}", "year": 1900 + count % 300, "plot": PLOT}
            )
            out.write(("," if count else "") + element + "\n")
            size += len(element) + 2
            count += 1
        out.write("]\n" if close else ',{"title": "broken", "yea\n')
    return count


def big_csv(path: Path, target: int, *, tail: str = "") -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["title", "year", "plot", "cast"])
        while out.tell() < target:
            writer.writerow([f"Movie, part {count}", 1900 + count % 300, PLOT, "A, B"])
            count += 1
        out.write(tail)
    return count


def test_ten_megabyte_json_array(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    expected = big_json(path, TEN_MB)
    started = time.perf_counter()
    count = sum(1 for r in read_rows(path) if isinstance(r, Row))
    assert count == expected > 40_000
    assert time.perf_counter() - started < 10  # about 1 s; generous for slow machines


def test_ten_megabyte_csv(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    expected = big_csv(path, TEN_MB)
    count = sum(1 for r in read_rows(path) if isinstance(r, Row))
    assert count == expected > 40_000


class Spy:
    """Records every binary file the importer opens, to ask how far it has read."""

    def __init__(self) -> None:
        self.opened: list[IO[bytes]] = []
        self.real = importers._open_binary

    def __call__(self, path: Path) -> IO[bytes]:
        stream = self.real(path)
        self.opened.append(stream)
        return stream


@pytest.mark.parametrize("kind", ["json", "csv", "ndjson"])
def test_first_row_of_a_large_file_reads_only_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = tmp_path / f"big.{kind}"
    if kind == "json":
        big_json(path, TEN_MB, close=False)  # broken at the end: reading it all would fail
    elif kind == "csv":
        big_csv(path, TEN_MB, tail='Broken,"never closed\n' + "x\n" * 100_000)
    else:
        big_json(tmp_path / "tmp.json", TEN_MB)
        lines = (tmp_path / "tmp.json").read_text().splitlines()[1:-1]
        path.write_text("\n".join(line.lstrip(",") for line in lines) + "\n")
    spy = Spy()
    monkeypatch.setattr(importers, "_open_binary", spy)
    result = read_rows(path)
    first = list(itertools.islice(result, 3))
    assert [r.number for r in first] == [1, 2, 3]
    assert all(isinstance(r, Row) for r in first)
    reader = spy.opened[-1]
    assert not reader.closed
    assert reader.tell() < 256 * 1024 < path.stat().st_size
    result.close()  # stopping early closes the file
    assert reader.closed
    if kind != "ndjson":
        with pytest.raises(ImportFormatError):
            list(read_rows(path))


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_memory_stays_small_while_reading(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"m.{kind}"
    (big_json if kind == "json" else big_csv)(path, 3 * 1024 * 1024)
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_rows(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 10_000
    assert peak < 1024 * 1024  # the file is 3 MiB; measured: under 400 KB


# --- properties ---------------------------------------------------------------------------------

names = st.one_of(
    st.sampled_from(
        ["title", "Title", "year", "release date", "runtime", "rating", "cast", "genre", "rev"]
    ),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, st.text(max_size=30), max_size=8))
def test_record_from_any_text_fails_only_with_a_reason(data: dict[str, str]) -> None:
    try:
        movie = record_from_mapping(data)
    except (InvalidMovie, ValueError) as exc:
        message = str(exc)
    else:
        message = "valid" if validate(movie) == movie else ""
    assert message


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        names,
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
        max_size=6,
    )
)
def test_record_from_any_json_values_fails_only_with_a_reason(data: dict[str, Any]) -> None:
    try:
        record_from_mapping(data)
    except (InvalidMovie, ValueError) as exc:
        message = str(exc)
    else:
        message = "valid"
    assert message


# Text that a person could type: no mojibake markers (those are repaired on purpose), no NUL.
plain_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="ÃÂâÅÄ"), max_size=40
)
item = plain_text.map(lambda s: re.sub(r"[,|/;]", " ", s).strip()).filter(bool)
extra_names = st.text(st.characters(whitelist_categories=("Ll",)), min_size=3, max_size=10).map(
    lambda s: f"x {s}"
)


@st.composite
def simple_movies(draw: st.DrawFn) -> Movie:
    return validate(
        Movie(
            title=draw(plain_text.filter(str.strip)),
            year=draw(st.none() | st.integers(1870, 2200)),
            director=draw(st.none() | plain_text),
            cast=draw(st.lists(item, max_size=4)),
            genres=draw(st.lists(item, max_size=3)),
            runtime_min=draw(st.none() | st.integers(1, 100_000)),
            rating=draw(st.none() | st.floats(0, 10)),
            plot=draw(st.none() | plain_text.filter(str.strip) | st.just('two\r\nlines, "q"')),
            extra=draw(st.dictionaries(extra_names, plain_text.filter(str.strip), max_size=3)),
        )
    )


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(simple_movies(), min_size=1, max_size=5))
def test_movies_written_with_csv_writer_read_back_the_same(
    tmp_path: Path, catalog: list[Movie]
) -> None:
    extras = sorted({name for movie in catalog for name in movie.extra})
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow([*KNOWN_FIELDS, *extras])
    for movie in catalog:
        row = []
        for field in KNOWN_FIELDS:
            value = getattr(movie, field)
            row.append(
                ", ".join(value) if isinstance(value, list) else "" if value is None else value
            )
        writer.writerow([*row, *(movie.extra.get(name, "") for name in extras)])
    path = tmp_path / "round.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    assert movies(path) == catalog


list_item = plain_text.map(str.strip).filter(bool)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.builds(
            lambda title, cast, genres, rating: validate(
                Movie(title, cast=cast, genres=genres, rating=rating)
            ),
            plain_text.filter(str.strip),
            st.lists(list_item, max_size=4),
            st.lists(list_item, max_size=3),
            st.none() | st.floats(0, 10),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_lists_with_any_separators_round_trip_as_json_arrays(
    tmp_path: Path, catalog: list[Movie]
) -> None:
    path = tmp_path / "round.csv"
    path.write_text(csv_with_json_lists(catalog), encoding="utf-8", newline="")
    assert movies(path) == catalog


def test_reserved_names_are_never_extra_names() -> None:
    data = {name: "v" for name in RESERVED_NAMES} | {"title": "A"}
    movie = record_from_mapping(data)
    assert not set(movie.extra) & (RESERVED_NAMES | set(KNOWN_FIELDS))


def test_the_documented_column_table_matches_the_code() -> None:
    doc = " ".join((importers.__doc__ or "").split())
    for field, names in importers.SYNONYMS.items():
        assert field in doc
        for name in names:
            assert name in doc, name
