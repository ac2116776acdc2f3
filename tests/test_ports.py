"""The permitted port list: parsing `--ports`, reading `--ports-file`, describing a list."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from moviedb.server.__main__ import main
from moviedb.server.ports import (
    DEFAULT_PORTS,
    PortSpecError,
    describe,
    parse_ports,
    read_ports_file,
)

# --- parse_ports ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("7001-7010,7020", [*range(7001, 7011), 7020]),
        ("7001", [7001]),
        ("0", [0]),
        ("7005,7001,7003", [7005, 7001, 7003]),  # the given order is the order tried
        ("7001-7003,7002,7001", [7001, 7002, 7003]),  # repeats dropped, first place kept
        (" 7001 - 7003 ,  7020 ", [7001, 7002, 7003, 7020]),
        ("7001,,7002,", [7001, 7002]),  # empty parts are ignored
        ("7001\n7002-7003", [7001, 7002, 7003]),  # newlines separate like commas
        ("7001-7001", [7001]),
        ("65535", [65535]),
        ("0-2", [0, 1, 2]),
    ],
)
def test_parse_ports_accepts(spec: str, expected: list[int]) -> None:
    assert parse_ports(spec) == expected


def test_default_ports_parse() -> None:
    assert parse_ports(DEFAULT_PORTS) == list(range(7001, 7011))


def test_whole_range_is_accepted() -> None:
    ports = parse_ports("0-65535")
    assert len(ports) == 65536
    assert ports[0] == 0
    assert ports[-1] == 65535


@pytest.mark.parametrize(
    ("spec", "named", "accepted"),
    [
        ("abc", "'abc'", "PORT or LOW-HIGH"),
        ("7001-x", "'7001-x'", "PORT or LOW-HIGH"),
        ("7001-", "'7001-'", "PORT or LOW-HIGH"),
        ("-7001", "'-7001'", "PORT or LOW-HIGH"),
        ("1-2-3", "'1-2-3'", "PORT or LOW-HIGH"),
        ("7001;7002", "'7001;7002'", "PORT or LOW-HIGH"),
        ("70.01", "'70.01'", "PORT or LOW-HIGH"),
        ("7001,oops", "'oops'", "PORT or LOW-HIGH"),
        ("7010-7001", "'7010-7001'", "LOW <= HIGH"),
        ("65536", "'65536'", "0-65535"),
        ("7001-70000", "'7001-70000'", "0-65535"),
        ("", "''", "example: 7001-7010,7020"),
        (" , ,", "' , ,'", "example: 7001-7010,7020"),
    ],
)
def test_parse_ports_refuses_with_a_clear_message(spec: str, named: str, accepted: str) -> None:
    with pytest.raises(PortSpecError) as info:
        parse_ports(spec)
    message = str(info.value)
    assert named in message  # names the part that is wrong
    assert accepted in message  # and says what is accepted


def test_port_spec_error_is_a_value_error() -> None:
    assert issubclass(PortSpecError, ValueError)


# --- read_ports_file ------------------------------------------------------------------------------


def test_ports_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "ports.txt"
    path.write_text(
        "# permitted ports for the test cluster\n"
        "\n"
        "7001-7003   # the usual ones\n"
        "   \n"
        "# 7004 is reserved for something else\n"
        "7020\n"
        "7002\n"  # a repeat: tried once, in its first place
        "\t7030 - 7031\n",
        encoding="utf-8",
    )
    assert read_ports_file(path) == [7001, 7002, 7003, 7020, 7030, 7031]


def test_ports_file_accepts_a_str_path_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "ports.txt"
    path.write_text("7005", encoding="utf-8")
    assert read_ports_file(str(path)) == [7005]


def test_ports_file_with_only_comments_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ports.txt"
    path.write_text("# nothing here\n\n# 7001\n", encoding="utf-8")
    with pytest.raises(PortSpecError, match="no port given"):
        read_ports_file(path)


def test_ports_file_with_garbage_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "ports.txt"
    path.write_text("7001\nseven thousand\n", encoding="utf-8")
    with pytest.raises(PortSpecError, match="'seven thousand' is not a port or range"):
        read_ports_file(path)


def test_missing_ports_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "ports.txt"
    with pytest.raises(PortSpecError) as info:
        read_ports_file(path)
    assert str(path) in str(info.value)
    assert "cannot read the ports file" in str(info.value)


# --- describe -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "text"),
    [
        ([7001, 7002, 7003, 7020], "7001-7003,7020"),
        ([7001], "7001"),
        ([0], "0"),
        ([7001, 7003, 7005], "7001,7003,7005"),
        ([7001, 7002], "7001-7002"),
        ([7020, 7001, 7002], "7020,7001-7002"),  # order kept: it is the order tried
        ([7003, 7002, 7001], "7003,7002,7001"),  # only ascending runs are joined
        ([*range(7001, 7011), 7020, 7021], "7001-7010,7020-7021"),
    ],
)
def test_describe(ports: list[int], text: str) -> None:
    assert describe(ports) == text


@given(st.lists(st.integers(0, 65535), min_size=1, max_size=50, unique=True))
def test_describe_round_trips_through_parse(ports: list[int]) -> None:
    assert parse_ports(describe(ports)) == ports


@given(st.lists(st.integers(0, 65535), min_size=1, max_size=50, unique=True))
def test_describe_is_never_longer_than_the_plain_list(ports: list[int]) -> None:
    assert len(describe(ports)) <= len(",".join(map(str, ports)))


# --- the command line -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--ports", "abc"],
        ["--ports", "7010-7001"],
        ["--ports", ""],
    ],
)
def test_server_refuses_a_bad_port_list_before_starting(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "never.sqlite3"
    result = CliRunner().invoke(main, [*args, "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert "--ports/--ports-file" in result.output
    assert not db.exists()  # refused before anything was opened


def test_server_refuses_a_bad_ports_file(tmp_path: Path) -> None:
    ports_file = tmp_path / "ports.txt"
    ports_file.write_text("7001\n70000\n", encoding="utf-8")
    db = tmp_path / "never.sqlite3"
    result = CliRunner().invoke(main, ["--ports-file", str(ports_file), "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert "'70000' is out of range" in result.output
    assert not db.exists()


def test_server_refuses_a_missing_ports_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    result = CliRunner().invoke(
        main, ["--ports-file", str(missing), "--db", str(tmp_path / "x.sqlite3")]
    )
    assert result.exit_code == 2, result.output
    assert "cannot read the ports file" in result.output
