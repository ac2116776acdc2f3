"""The original design's pickle files: read what they hold, and never run what they could run.

Malicious pickles are built here as bytes (with pickle.dumps of objects whose __reduce__ names a
function, or by hand) and only ever given to moviedb.legacy, never to pickle.loads.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moviedb import legacy
from moviedb.importers import Rejected, RejectsWriter, Row
from moviedb.legacy import (
    LegacyError,
    find_files,
    load_restricted,
    read_movies,
    read_ports,
    read_servers,
)
from moviedb.model import Movie, canonical_bytes, validate

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


def dump(path: Path, value: object, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    return path


class Touch:
    """Unpickling this the ordinary way would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


class System:
    """Unpickling this the ordinary way would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


class Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


def hand_made(marker: Path) -> dict[str, bytes]:
    """Pickles written opcode by opcode: every way a pickle can reach a callable."""
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return {
        "GLOBAL builtins.eval": f"cbuiltins\neval\n(V{code}\ntR.".encode(),
        "INST os.system": f"(Vtouch '{marker}'\nios\nsystem\n.".encode(),
        "OBJ": f"(cbuiltins\neval\nV{code}\no.".encode(),
        "PERSID": b"Pmarker\n.",
        "EXT1": b"\x80\x02\x82\x01)R.",
    }


# --- the original shapes round-trip -------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_movies_title_to_plot_and_title_to_fields(tmp_path: Path, protocol: int) -> None:
    catalog = {
        "Alien": "The crew of a spacecraft meets a deadly lifeform.",
        "Blade Runner": {
            "year": 1982,
            "director": "Ridley Scott",
            "actors": ["Harrison Ford", "Rutger Hauer"],
            "rating": 8.1,
            "cut": "Final Cut",
        },
        300: {"year": 2006},
        "Amélie": None,
        "Heat": "",
    }
    result = list(read_movies(dump(tmp_path / "moviedb.p", catalog, protocol)))
    assert result == [
        Row(1, Movie("Alien", plot="The crew of a spacecraft meets a deadly lifeform.")),
        Row(
            2,
            Movie(
                "Blade Runner",
                1982,
                director="Ridley Scott",
                cast=["Harrison Ford", "Rutger Hauer"],
                rating=8.1,
                extra={"cut": "Final Cut"},
            ),
        ),
        Row(3, Movie("300", 2006)),
        Row(4, Movie("Amélie")),
        Row(5, Movie("Heat")),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_servers_and_ports(tmp_path: Path, protocol: int) -> None:
    servers = [("127.0.0.1", 7001), ["localhost", "7002"], "[::1]:7003", "example.org:7004"]
    assert read_servers(dump(tmp_path / "serverdb.p", servers, protocol)) == [
        ("127.0.0.1", 7001),
        ("localhost", 7002),
        ("::1", 7003),
        ("example.org", 7004),
    ]
    assert read_servers(dump(tmp_path / "t.p", (("a", 1),), protocol)) == [("a", 1)]
    assert read_servers(dump(tmp_path / "e.p", [], protocol)) == []
    assert read_ports(dump(tmp_path / "portdb.p", [7001, "7002", 7001, 65535], protocol)) == [
        7001,
        7002,
        65535,
    ]
    assert read_ports(dump(tmp_path / "tuple.p", (7003, 7001), protocol)) == [7003, 7001]


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_set_of_ports_from_protocol_4(tmp_path: Path, protocol: int) -> None:
    assert read_ports(dump(tmp_path / "portdb.p", {7002, 7001}, protocol)) == [7001, 7002]
    assert read_ports(dump(tmp_path / "f.p", frozenset({7003}), protocol)) == [7003]


def test_a_set_from_old_protocols_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(LegacyError, match=r"builtin_*s?\.set \(a set as pickle protocols 0-3"):
        read_ports(dump(tmp_path / "portdb.p", {7001}, 2))


def test_python2_strings(tmp_path: Path) -> None:
    # What Python 2 wrote for {'Alien': 'In space'}: str values are bytes in the file.
    (tmp_path / "p0.p").write_bytes(b"(dp0\nS'Alien'\np1\nS'In space'\np2\ns.")
    (tmp_path / "p2.p").write_bytes(b"\x80\x02}q\x00U\x05Alienq\x01U\x08In spaceq\x02s.")
    (tmp_path / "utf8.p").write_bytes(b"(dp0\nS'Am\\xc3\\xa9lie'\np1\nS''\np2\ns.")
    (tmp_path / "latin1.p").write_bytes(b"(dp0\nS'Am\\xe9lie'\np1\nS''\np2\ns.")
    assert load_restricted(tmp_path / "p0.p") == {"Alien": "In space"}
    assert load_restricted(tmp_path / "p2.p") == {"Alien": "In space"}
    assert list(read_movies(tmp_path / "utf8.p")) == [Row(1, Movie("Amélie"))]
    assert list(read_movies(tmp_path / "latin1.p")) == [Row(1, Movie("Amélie"))]


def test_shared_references_are_fine(tmp_path: Path) -> None:
    genres = ["Sci-Fi"]
    catalog = {"Alien": {"genres": genres}, "Aliens": {"genres": genres}}
    result = list(read_movies(dump(tmp_path / "moviedb.p", catalog)))
    assert [r.movie.genres for r in result if isinstance(r, Row)] == [["Sci-Fi"], ["Sci-Fi"]]


# --- one bad entry is one Rejected --------------------------------------------------------------


def test_bad_movie_entries_are_rejected_with_reasons(tmp_path: Path) -> None:
    catalog: dict[Any, Any] = {
        "Alien": {"year": 1979},
        True: "a bool key",
        ("Heat", 1995): "a tuple key",
        "Ran": ["a", "list"],
        "Solaris": {"rating": 11},
        "Stalker": {"title": "Сталкер", "year": "1979"},
        "Ikiru": {"title": "Ikiru", "year": 1952},
        "  ": "no title",
    }
    path = dump(tmp_path / "moviedb.p", catalog)
    result = list(read_movies(path))
    assert [(type(r).__name__, r.number) for r in result] == [
        ("Row", 1),
        ("Rejected", 2),
        ("Rejected", 3),
        ("Rejected", 4),
        ("Rejected", 5),
        ("Row", 6),
        ("Row", 7),
        ("Rejected", 8),
    ]
    reasons = [r.reason for r in result if isinstance(r, Rejected)]
    assert reasons == [
        "title: True is not text; accepted: text titles",
        "title: ('Heat', 1995) is not text; accepted: text titles",
        "the information for 'Ran' is a list; accepted: text (the plot) or a dict of fields",
        "rating: 11.0 is out of range; accepted: 0 to 10",
        "title: the title is empty; every movie needs one",
    ]
    assert result[5] == Row(6, Movie("Stalker", 1979, extra={"source title": "Сталкер"}))
    assert result[6] == Row(7, Movie("Ikiru", 1952))
    out = tmp_path / "rejects.ndjson"
    with RejectsWriter(out) as rejects:
        for r in result:
            if isinstance(r, Rejected):
                rejects.write(r)
    assert rejects.count == 5
    assert '"data": {"title": ["Heat", 1995], "information": "a tuple key"}' in out.read_text()


# --- unsafe files -------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", [Touch, System, Eval])
def test_malicious_pickles_never_run(tmp_path: Path, protocol: int, kind: type) -> None:
    marker = tmp_path / "MARKER"
    path = dump(tmp_path / "moviedb.p", {"Alien": kind(marker)}, protocol)
    for read in (load_restricted, read_movies, read_servers, read_ports):
        with pytest.raises(LegacyError, match=r"moviedb\.p: refused: the pickle refers to "):
            read(path)
    assert not marker.exists()


def test_the_refusal_names_the_global(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    for protocol, name in [(2, "__builtin__.eval"), (3, "builtins.eval"), (4, "builtins.eval")]:
        path = dump(tmp_path / "m.p", [Eval(marker)], protocol)
        with pytest.raises(LegacyError, match=f"refers to {name}, which loading would") as e:
            load_restricted(path)
        assert "dicts, lists, tuples, sets, text, numbers, True, False and None" in str(e.value)
    path = dump(tmp_path / "m.p", Touch(marker), 4)
    with pytest.raises(LegacyError, match=r"refers to pathlib\.Path\.touch"):
        load_restricted(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", list(hand_made(Path("x"))))
def test_hand_made_pickles_are_refused(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "moviedb.p"
    path.write_bytes(hand_made(marker)[name])
    with pytest.raises(LegacyError, match=r"moviedb\.p: refused"):
        load_restricted(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", list(hand_made(Path("x"))))
def test_the_unpickler_alone_refuses_every_global(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Defence in depth: with the opcode check switched off, loading still runs nothing."""
    monkeypatch.setattr(legacy, "_check_opcodes", lambda path, data: None)
    marker = tmp_path / "MARKER"
    path = tmp_path / "moviedb.p"
    path.write_bytes(hand_made(marker)[name])
    with pytest.raises(LegacyError):
        load_restricted(path)
    for protocol in PROTOCOLS:
        dump(path, {"x": Touch(marker)}, protocol)
        with pytest.raises(LegacyError, match="refused: the pickle refers to"):
            load_restricted(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_are_refused(tmp_path: Path, protocol: int) -> None:
    path = dump(tmp_path / "moviedb.p", {"Alien": b"plot"}, protocol)
    message = "holds a bytes value" if protocol >= 3 else r"_codecs\.encode \(a bytes value"
    with pytest.raises(LegacyError, match=message):
        load_restricted(path)


def test_bytearray_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LegacyError, match=r"holds a bytes value \(opcode BYTEARRAY8"):
        load_restricted(dump(tmp_path / "m.p", [bytearray(b"x")], 5))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_files(tmp_path: Path, protocol: int, cut: int) -> None:
    data = pickle.dumps({"Alien": "plot", "Heat": {"year": 1995}}, protocol=protocol)
    path = tmp_path / "moviedb.p"
    path.write_bytes(data[:-cut])
    with pytest.raises(LegacyError, match=r"moviedb\.p: is not a complete pickle .*truncated"):
        load_restricted(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty; accepted: a pickle file"),
        (b'{"Alien": "plot"}', r"is not a complete pickle"),
        (b"hello world\n", r"is not a complete pickle"),
    ],
)
def test_files_that_are_not_pickles(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "moviedb.p"
    path.write_bytes(content)
    with pytest.raises(LegacyError, match=message):
        load_restricted(path)


def test_stack_faults_are_legacy_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.p"
    path.write_bytes(b"\x80\x02s.")  # SETITEM on an empty stack
    with pytest.raises(LegacyError, match=r"m\.p: (cannot be loaded|is not a complete pickle)"):
        load_restricted(path)
    path.write_bytes(b"\x80\x02h\x05.")  # BINGET of a memo entry never stored
    with pytest.raises(LegacyError, match=r"m\.p: cannot be loaded"):
        load_restricted(path)


def test_large_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(legacy, "MAX_FILE_BYTES", 100)
    path = dump(tmp_path / "moviedb.p", {"x" * 200: "y"})
    with pytest.raises(LegacyError, match=r"is \d+ bytes; legacy files of at most 100 bytes"):
        load_restricted(path)


def test_a_container_holding_itself_is_refused(tmp_path: Path) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(LegacyError, match="contains itself"):
        load_restricted(dump(tmp_path / "m.p", {"Alien": loop}))


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    deep: list[Any] = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(LegacyError, match="nests containers more than 100 deep"):
        load_restricted(dump(tmp_path / "m.p", deep))


# --- wrong shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["Alien"], r"holds a list; a moviedb\.p file holds a dict mapping each title"),
        ("Alien", r"holds text; a moviedb\.p file holds a dict"),
        (None, r"holds None; a moviedb\.p file holds a dict"),
    ],
)
def test_movies_of_the_wrong_shape(tmp_path: Path, value: object, message: str) -> None:
    with pytest.raises(LegacyError, match=message):
        read_movies(dump(tmp_path / "moviedb.p", value))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": 1}, r"holds a dict; accepted: a list of \(host, port\) pairs"),
        ([("a", 1, 2)], r"entry 1 \(\('a', 1, 2\)\) is not a server"),
        ([("a", 0)], r"entry 1 .*: not a port; accepted: a whole number from 1 to 65535"),
        ([("a", 70000)], "not a port"),
        ([("a", True)], "not a port"),
        ([("a", "http")], "not a port"),
        ([("", 7001)], "the host must be a name or an address"),
        ([(7001, "a")], "the host must be a name or an address"),
        (["a:b"], r"entry 1 \('a:b'\): 'a:b' has no valid port"),
        ([7001], "is not a server"),
    ],
)
def test_servers_of_the_wrong_shape(tmp_path: Path, value: object, message: str) -> None:
    with pytest.raises(LegacyError, match=message):
        read_servers(dump(tmp_path / "serverdb.p", value))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"port": 7001}, r"holds a dict; accepted: a list of ports \(1-65535\)"),
        (7001, "holds a int; accepted: a list of ports"),
        ([7001, 0], r"entry 2 \(0\): not a port"),
        (["70000"], "not a port"),
        ([7001.0], "not a port"),
        ([None], "not a port"),
    ],
)
def test_ports_of_the_wrong_shape(tmp_path: Path, value: object, message: str) -> None:
    with pytest.raises(LegacyError, match=message):
        read_ports(dump(tmp_path / "portdb.p", value))


# --- finding the files --------------------------------------------------------------------------


def test_find_files(tmp_path: Path) -> None:
    dump(tmp_path / "moviedb.p", {})
    dump(tmp_path / "portdb.p", [7001])
    (tmp_path / "serverdb.p").mkdir()  # a directory is not the file
    assert find_files(tmp_path) == {
        "moviedb.p": tmp_path / "moviedb.p",
        "portdb.p": tmp_path / "portdb.p",
    }


def test_find_files_is_case_sensitive_and_says_what_it_looked_for(tmp_path: Path) -> None:
    dump(tmp_path / "MovieDB.p", {})
    with pytest.raises(LegacyError, match=r"moviedb\.p, serverdb\.p, portdb\.p"):
        find_files(tmp_path)
    with pytest.raises(LegacyError, match="cannot be listed"):
        find_files(tmp_path / "missing")


# --- files that refer to the same values over and over ------------------------------------------


def shared_lists(depth: int, leaf: object = "ab") -> list[Any]:
    """A list that is 2**depth leaves written out in full, and depth + 1 lists in the pickle."""
    value: list[Any] = [leaf]
    for _ in range(depth):
        value = [value, value]
    return value


def shared_tuples(depth: int, leaf: object = "ab") -> tuple[Any, ...]:
    value: tuple[Any, ...] = (leaf,)
    for _ in range(depth):
        value = (value, value)
    return value


READERS = [load_restricted, read_movies, read_servers, read_ports]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_tiny_file_that_is_huge_written_out_is_refused(tmp_path: Path, protocol: int) -> None:
    catalog = {"Alien": {"year": 1979, "notes": shared_lists(30)}}
    path = dump(tmp_path / "moviedb.p", catalog, protocol)
    assert path.stat().st_size < 1000
    for read in READERS:
        with pytest.raises(
            LegacyError,
            match=r"moviedb\.p: refused: it holds more than 1000000 values, counting each shared "
            "part every time it appears",
        ):
            read(path)


def test_the_limit_on_values_grows_with_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(legacy, "MAX_EXPANDED_VALUES", 50)
    catalog = {f"Movie {i}": {"year": 1900 + i} for i in range(100)}  # 401 values, no sharing
    assert len(list(read_movies(dump(tmp_path / "moviedb.p", catalog)))) == 100
    bomb = dump(tmp_path / "bomb.p", {"Alien": shared_lists(8)})  # 768 values written out
    with pytest.raises(LegacyError, match=f"holds more than {bomb.stat().st_size} values"):
        load_restricted(bomb)


def test_shared_text_written_out_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(legacy, "MAX_FILE_BYTES", 1000)
    plot = "x" * 300
    assert load_restricted(dump(tmp_path / "ok.p", {"Alien": plot, "Aliens": plot}))
    with pytest.raises(LegacyError, match="its text comes to more than 1000 characters"):
        load_restricted(dump(tmp_path / "m.p", {f"Alien {i}": plot for i in range(10)}))


def test_an_entry_that_fails_is_shown_briefly(tmp_path: Path) -> None:
    big = shared_lists(15)  # 98,303 values written out: within the limit
    with pytest.raises(LegacyError, match=r"entry 1 \(\[\[\[\[.*…\) is not a server") as e:
        read_servers(dump(tmp_path / "serverdb.p", [[big, big, big]]))
    assert len(str(e.value)) < 300
    with pytest.raises(LegacyError, match=r"entry 2 \(\[\[\[\[.*…\): not a port") as e:
        read_ports(dump(tmp_path / "portdb.p", [7001, big]))
    assert len(str(e.value)) < 300
    (rejected,) = read_movies(dump(tmp_path / "moviedb.p", {shared_tuples(15): "plot"}, 4))
    assert isinstance(rejected, Rejected)
    assert re.fullmatch(r"title: \(\(\(\(.*… is not text; accepted: text titles", rejected.reason)


# (('ab',), ('ab',)) and so on, 40 deep, by hand: building it in Python is cheap, but putting it
# in a dict or set here would hash it, which takes 2**40 steps.
SMALL_TUPLE = shared_tuples(10)  # 3,070 values written out
TUPLE_BOMB = b"\x8c\x02ab\x85" + b"2\x86" * 40  # SHORT_BINUNICODE, TUPLE1, (DUP, TUPLE2) * 40


@pytest.mark.parametrize(
    "content",
    [
        b"\x80\x04}" + TUPLE_BOMB + b"\x8c\x04plots.",  # {bomb: "plot"}
        b"\x80\x04\x8f(" + TUPLE_BOMB + b"\x90.",  # {bomb}
        b"\x80\x04(" + TUPLE_BOMB + b"\x91.",  # frozenset({bomb})
        b"\x80\x04]}" + TUPLE_BOMB + b"K\x01sa.",  # [{bomb: 1}]
        b"\x80\x04(" + TUPLE_BOMB + b"K\x01d.",  # {bomb: 1}, with DICT
        pickle.dumps({(SMALL_TUPLE, i): i for i in range(500)}, 4),  # each key small enough
    ],
    ids=["dict key", "set member", "frozenset member", "nested dict key", "DICT", "many keys"],
)
def test_keys_and_set_members_too_large_to_hash_are_refused_before_loading(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "moviedb.p"
    path.write_bytes(content)
    assert len(content) < 10_000
    with pytest.raises(
        LegacyError,
        match=r"moviedb\.p: refused at byte \d+ \(opcode \w+\): its dict keys and set members "
        "hold more than 1000000 values, counting each shared part",
    ):
        load_restricted(path)


@pytest.mark.parametrize(
    "content",
    [
        b"\x80\x04\x8f(N" + b"\x85" * 100_000 + b"\x90.",  # {((((None,),),)...)}
        b"\x80\x04}N" + b"\x85" * 100_000 + b"Ns.",  # {((((None,),),)...): None}
    ],
    ids=["set member", "dict key"],
)
def test_deeply_nested_keys_are_refused_before_loading(tmp_path: Path, content: bytes) -> None:
    # Hashing a tuple nested 100,000 deep would overflow the C stack and crash the process.
    path = tmp_path / "moviedb.p"
    path.write_bytes(content)
    with pytest.raises(LegacyError, match=r"refused at byte 100005 .*more than 100 deep"):
        load_restricted(path)


def test_sharing_does_not_hide_deep_nesting(tmp_path: Path) -> None:
    chain: list[Any] = [[]]
    for _ in range(300):
        chain.append([chain[-1]])  # each one holds the one before: 300 deep
    path = dump(tmp_path / "m.p", chain[::-1], 4)  # the deepest one first in the file
    with pytest.raises(LegacyError, match="nests containers more than 100 deep"):
        load_restricted(path)


def test_stack_faults_found_by_the_cost_check(tmp_path: Path) -> None:
    path = tmp_path / "m.p"
    for content in (b"\x80\x02a.", b"\x80\x02N(\x85.", b"\x80\x020.", b"\x80\x02\x86."):
        path.write_bytes(content)
        with pytest.raises(LegacyError, match=r"m\.p: (cannot be loaded|is not a complete)"):
            load_restricted(path)


# --- numbers too long to print ------------------------------------------------------------------

TOO_LONG = "a number of more than 4300 digits is not accepted"
SHOWN = "<a number too long to show>"


@pytest.mark.parametrize(
    ("catalog", "reason"),
    [
        ({10**5000: "a plot"}, f"title: {TOO_LONG}; accepted: text titles"),
        ({"Alien": {10**5000: "x"}}, f"field name {SHOWN}: {TOO_LONG}; accepted: text"),
        ({"Alien": {"title": 10**5000}}, f"source title: {TOO_LONG}"),
        ({"Alien": {"year": 10**5000}}, f"year: {SHOWN} is not a year; accepted: a year such"),
        ({"Alien": {"rating": -(10**5000)}}, f"rating: {SHOWN} is out of range; accepted: 0 to 10"),
        ({"Alien": {"runtime": 10**5000}}, f"runtime_min: {SHOWN} is not a running time"),
        ({"Alien": {"cast": ["a", 10**5000]}}, f"cast entry 2: {TOO_LONG}"),
        ({"Alien": {"notes": {10**5000}}}, f"notes: {TOO_LONG}"),
        ({("Heat", 10**5000): "x"}, f"title: ('Heat', {SHOWN}) is not text; accepted: text"),
        ({"Alien": "a\ud800"}, "plot: holds '\\ud800', half of a surrogate pair"),
    ],
    ids=[
        "title",
        "field name",
        "inner title",
        "year",
        "rating",
        "runtime",
        "cast",
        "extra",
        "tuple title",
        "surrogate",
    ],
)
def test_bad_values_reject_one_movie(tmp_path: Path, catalog: dict[Any, Any], reason: str) -> None:
    catalog["Heat"] = {"year": 1995}
    result = list(read_movies(dump(tmp_path / "moviedb.p", catalog, 4)))
    assert result[1] == Row(2, Movie("Heat", 1995))
    assert isinstance(result[0], Rejected)
    assert result[0].reason.startswith(reason), result[0].reason
    with RejectsWriter(tmp_path / "rejects.ndjson") as rejects:
        rejects.write(result[0])
    assert json.loads((tmp_path / "rejects.ndjson").read_text(encoding="utf-8"))["row"] == 1


def test_a_number_too_long_to_print_deep_in_a_field_is_kept_as_a_description(
    tmp_path: Path,
) -> None:
    (row,) = read_movies(dump(tmp_path / "moviedb.p", {"Alien": {"notes": [[10**5000]]}}, 4))
    assert row == Row(1, Movie("Alien", extra={"notes": f'[["{SHOWN}"]]'}))


@pytest.mark.parametrize(
    ("read", "value", "message"),
    [
        (read_servers, ["h:" + "7" * 5000], r"entry 1 \('h:7+…\): 'h:7+…' has no valid port"),
        (read_servers, [("h", 10**5000)], rf"entry 1 \(\('h', {SHOWN}\)\): not a port"),
        (read_servers, [10**5000], rf"entry 1 \({SHOWN}\) is not a server"),
        (read_ports, [10**5000], rf"entry 1 \({SHOWN}\): not a port"),
        (read_ports, ["7" * 5000], r"entry 1 \('777.*…\): not a port"),
        (read_ports, {7001, 10**5000}, rf"entry \d \({SHOWN}\): not a port"),
    ],
    ids=["server text", "server pair", "server number", "port", "port text", "set of ports"],
)
def test_numbers_too_long_to_print_in_servers_and_ports(
    tmp_path: Path, read: Any, value: object, message: str
) -> None:
    with pytest.raises(LegacyError, match=message):
        read(dump(tmp_path / "m.p", value, 4))


def test_leading_zeros_in_a_port_are_fine(tmp_path: Path) -> None:
    assert read_ports(dump(tmp_path / "portdb.p", ["007001", 7001])) == [7001]


# --- any plain value: rows, rejections or LegacyError, nothing else ------------------------------


def too_long(name: str) -> object:
    """Values too long to print (or to show in a strategy's description)."""
    return {"big": 10**5000, "-big": -(10**5000), "digits": "7" * 5000}[name]


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["big", "-big", "digits"]).map(too_long),
    st.sampled_from(
        [
            *(2**64, 7001, 0),
            *("", " ", "title", "year", "rating", "runtime", "extra", "cast", "genres"),
            *("h:7001", "[::1]:7001", "7001", "a\ud800"),
        ]
    ),
)
hashables = st.recursive(
    leaves, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6
)
values = st.recursive(
    hashables,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(hashables, inner, max_size=3)
        | st.sets(hashables, max_size=3)
        | st.tuples(inner)
    ),
    max_leaves=12,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=values,
    catalog=st.dictionaries(hashables, values, max_size=4),
    protocol=st.sampled_from(PROTOCOLS),
)
def test_any_plain_value_gives_rows_rejections_or_a_legacy_error(
    tmp_path: Path, value: object, catalog: dict[Any, Any], protocol: int
) -> None:
    path = tmp_path / "any.p"
    for content in (value, catalog, [value], {"Alien": value}):
        try:
            data = pickle.dumps(content, protocol=protocol)
        except ValueError:  # protocols 0 and 1 write numbers as text: too long to print
            continue
        path.write_bytes(data)
        if protocol >= 4:  # sets written without a call: every plain value loads
            load_restricted(path)
        else:
            try:
                load_restricted(path)
            except LegacyError as exc:
                message = str(exc)
                assert message.startswith(str(path))
        for read in (read_servers, read_ports):
            try:
                read(path)
            except LegacyError as exc:
                message = str(exc)
                assert message.startswith(str(path))
        try:
            result = list(read_movies(path))
        except LegacyError as exc:
            message = str(exc)
            assert message.startswith(str(path))
            continue
        with RejectsWriter(tmp_path / "rejects.ndjson") as rejects:
            for item in result:
                if isinstance(item, Row):
                    assert validate(item.movie) == item.movie
                    canonical_bytes(item.movie)  # can be stored and sent
                else:
                    assert item.reason
                    rejects.write(item)
