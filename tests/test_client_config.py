"""Server addresses and the client's server list: parsing, where the file is, load and save."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import platformdirs
import pytest

from moviedb.client.address import Address, parse_address
from moviedb.client.config import Config, config_path, load, save, state_dir
from moviedb.errors import ConfigError, InvalidAddress

ACCEPTED = "accepted: HOST:PORT such as 127.0.0.1:7001, localhost:7001 or [::1]:7001"


# --- parse_address --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("127.0.0.1:7001", Address("127.0.0.1", 7001), "127.0.0.1:7001"),
        ("localhost:7001", Address("localhost", 7001), "localhost:7001"),
        ("db-1.example.org:65535", Address("db-1.example.org", 65535), "db-1.example.org:65535"),
        ("[::1]:7001", Address("::1", 7001), "[::1]:7001"),
        ("[fe80::1%eth0]:1", Address("fe80::1%eth0", 1), "[fe80::1%eth0]:1"),
        ("  127.0.0.1:7001\n", Address("127.0.0.1", 7001), "127.0.0.1:7001"),
        ("[127.0.0.1]:7001", Address("127.0.0.1", 7001), "127.0.0.1:7001"),
    ],
)
def test_parse_address_accepts(text: str, expected: Address, shown: str) -> None:
    address = parse_address(text)
    assert address == expected
    assert str(address) == shown
    assert parse_address(str(address)) == address  # what is shown parses back


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("127.0.0.1", "is not a server address"),  # no port
        ("localhost", "is not a server address"),
        ("[::1]", "is not a server address"),
        ("[::1]7001", "is not a server address"),
        ("::1", "is not a server address"),  # bare IPv6, no brackets
        ("::1:7001", "is not a server address"),
        ("fe80::1:7001", "is not a server address"),
        ("", "is not a server address"),
        (":7001", "has no host"),
        ("[]:7001", "has no host"),
        ("127.0.0.1 :7001", "has no host"),  # spaces inside
        ("local host:7001", "has no host"),
        ("127.0.0.1:", "has no valid port (1-65535)"),
        ("127.0.0.1:0", "has no valid port (1-65535)"),
        ("127.0.0.1:65536", "has no valid port (1-65535)"),
        ("127.0.0.1:-1", "has no valid port (1-65535)"),
        ("127.0.0.1:+7001", "has no valid port (1-65535)"),
        ("127.0.0.1: 7001", "has no valid port (1-65535)"),
        ("127.0.0.1:70 01", "has no valid port (1-65535)"),
        ("127.0.0.1:http", "has no valid port (1-65535)"),
        ("[::1]:", "has no valid port (1-65535)"),
    ],
)
def test_parse_address_rejects_and_says_what_is_accepted(text: str, problem: str) -> None:
    with pytest.raises(InvalidAddress) as raised:
        parse_address(text)
    message = str(raised.value)
    assert message.startswith(f"{text!r} {problem}")
    assert message.endswith(ACCEPTED)


def test_a_non_ascii_digit_port_is_an_invalid_address() -> None:
    with pytest.raises(InvalidAddress):
        parse_address("127.0.0.1:²")


def test_a_port_of_thousands_of_digits_is_an_invalid_address() -> None:
    # int() refuses more than 4,300 digits with a ValueError: it must not escape as one.
    with pytest.raises(InvalidAddress, match=r"^'h:7{58}…' has no valid port"):
        parse_address("h:" + "7" * 5000)
    assert parse_address("h:" + "0" * 5000 + "7001") == Address("h", 7001)


# --- where the config file is -----------------------------------------------------------------


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config, else $MOVIEDB_CONFIG, else the platform's user config directory."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MOVIEDB_CONFIG", raising=False)
    default = platformdirs.user_config_path("moviedb") / "config.toml"
    assert config_path() == default
    if sys.platform.startswith("linux"):
        assert default == tmp_path / "xdg" / "moviedb" / "config.toml"

    monkeypatch.setenv("MOVIEDB_CONFIG", "")  # empty counts as unset
    assert config_path() == default

    monkeypatch.setenv("MOVIEDB_CONFIG", str(tmp_path / "env.toml"))
    assert config_path() == tmp_path / "env.toml"
    assert config_path(None) == tmp_path / "env.toml"

    assert config_path(tmp_path / "explicit.toml") == tmp_path / "explicit.toml"
    assert config_path(str(tmp_path / "explicit.toml")) == tmp_path / "explicit.toml"


def test_state_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVIEDB_STATE_DIR", str(tmp_path / "state"))
    assert state_dir() == tmp_path / "state"
    monkeypatch.delenv("MOVIEDB_STATE_DIR")
    assert state_dir() == platformdirs.user_state_path("moviedb")


# --- load -----------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_missing_file_is_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "config.toml"
    assert load(path) == Config(path, [], None)
    assert not path.parent.exists()  # loading creates nothing


def test_load_reads_servers_and_timeout(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        'timeout = 2\n[[servers]]\naddress = "127.0.0.1:7001"\n'
        '[[servers]]\naddress = "[::1]:7002"\n[[servers]]\naddress = "db.example.org:7003"\n',
    )
    config = load(path)
    assert config.path == path
    assert config.servers == [
        Address("127.0.0.1", 7001),
        Address("::1", 7002),
        Address("db.example.org", 7003),
    ]
    assert config.timeout == 2.0
    assert isinstance(config.timeout, float)


def test_an_empty_file_is_an_empty_list(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "")
    assert load(path) == Config(path, [], None)


def test_load_drops_duplicate_servers_keeping_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        "".join(
            f'[[servers]]\naddress = "{a}"\n'
            for a in (
                "127.0.0.1:7002",
                "127.0.0.1:7001",
                " 127.0.0.1:7002 ",
                "[127.0.0.1]:7001",
                "[::1]:7001",
                "127.0.0.1:7002",
            )
        ),
    )
    assert load(path).servers == [
        Address("127.0.0.1", 7002),
        Address("127.0.0.1", 7001),
        Address("::1", 7001),
    ]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[[servers]\naddress = 1", "is not valid TOML"),
        ("timeout = ", "is not valid TOML"),
        ('[[servers]]\naddress = "127.0.0.1"\n', "servers[0]: '127.0.0.1' is not a server"),
        (
            '[[servers]]\naddress = "127.0.0.1:7001"\n[[servers]]\naddress = "h:0"\n',
            "servers[1]: 'h:0' has no valid port (1-65535); accepted: HOST:PORT",
        ),
        ('[[servers]]\naddress = "::1:7001"\n', "servers[0]: '::1:7001' is not a server address"),
        ("[[servers]]\naddress = 7001\n", 'servers[0] needs address = "HOST:PORT"'),
        ("[[servers]]\nhost = 'x'\n", 'servers[0] needs address = "HOST:PORT"'),
        ('servers = ["127.0.0.1:7001"]\n', 'servers[0] needs address = "HOST:PORT"'),
        ("timeout = 0\n", "timeout must be a positive number of seconds"),
        ("timeout = -1.5\n", "timeout must be a positive number of seconds"),
        ('timeout = "2"\n', "timeout must be a positive number of seconds"),
        ("timeout = -inf\n", "timeout must be a positive number of seconds"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_file_and_field(
    tmp_path: Path, text: str, named: str
) -> None:
    path = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as raised:
        load(path)
    message = str(raised.value)
    assert str(path) in message
    assert named in message


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    not_utf8 = tmp_path / "latin1.toml"
    not_utf8.write_bytes(b'[[servers]]\naddress = "caf\xe9:7001"\n')
    with pytest.raises(ConfigError, match=re.escape(f"cannot read {not_utf8}")):
        load(not_utf8)
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    with pytest.raises(ConfigError, match=re.escape(f"cannot read {directory}")):
        load(directory)


@pytest.mark.parametrize("value", ["true", "nan"])
def test_a_boolean_or_nan_timeout_is_a_config_error(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "config.toml", f"timeout = {value}\n")
    with pytest.raises(ConfigError, match="timeout"):
        load(path)


def test_servers_that_is_not_a_list_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "servers = 5\n")
    with pytest.raises(ConfigError, match="servers"):
        load(path)


# --- save -----------------------------------------------------------------------------------------


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "config.toml"  # parents are created
    config = Config(
        path,
        [Address("127.0.0.1", 7001), Address("::1", 7002), Address("db.example.org", 7003)],
        1.5,
    )
    save(config)
    assert load(path) == config
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# moviedb client configuration\n")
    assert 'address = "[::1]:7002"' in text

    without_timeout = Config(path, [Address("127.0.0.1", 7001)], None)
    save(without_timeout)
    assert load(path) == without_timeout
    assert "timeout" not in path.read_text(encoding="utf-8")

    empty = Config(path)
    save(empty)
    assert load(path) == empty


def test_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save(Config(path, [Address("127.0.0.1", 7001)]))
    save(Config(path, [Address("127.0.0.1", 7002)]))  # over an existing file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]
    assert load(path).servers == [Address("127.0.0.1", 7002)]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes into a read-only directory anyway",
)
def test_save_into_an_unwritable_directory_keeps_the_old_file(tmp_path: Path) -> None:
    directory = tmp_path / "conf"
    path = directory / "config.toml"
    save(Config(path, [Address("127.0.0.1", 7001)]))
    before = path.read_bytes()
    directory.chmod(0o500)
    try:
        with pytest.raises((OSError, ConfigError)):
            save(Config(path, [Address("127.0.0.1", 7002)]))
        assert sorted(p.name for p in directory.iterdir()) == ["config.toml"]
    finally:
        directory.chmod(0o700)
    assert path.read_bytes() == before


def test_a_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    """The temporary file cannot be created (its name is taken by a directory): the old list
    stays as it was. Unlike a read-only directory, this fails for root too."""
    path = tmp_path / "config.toml"
    save(Config(path, [Address("127.0.0.1", 7001)], 3.0))
    before = path.read_bytes()
    (tmp_path / "config.toml.tmp").mkdir()
    with pytest.raises((OSError, ConfigError)):
        save(Config(path, [Address("127.0.0.1", 7002)]))
    assert path.read_bytes() == before
    assert load(path) == Config(path, [Address("127.0.0.1", 7001)], 3.0)


# --- editing the list -----------------------------------------------------------------------------


def test_add_and_remove_server_report_whether_the_list_changed(tmp_path: Path) -> None:
    config = Config(tmp_path / "config.toml")
    first, second = Address("127.0.0.1", 7001), Address("::1", 7002)
    assert config.add_server(first) is True
    assert config.add_server(second) is True
    assert config.add_server(parse_address("[127.0.0.1]:7001")) is False  # already there
    assert config.servers == [first, second]
    assert config.remove_server(Address("127.0.0.1", 7003)) is False
    assert config.remove_server(first) is True
    assert config.remove_server(first) is False
    assert config.servers == [second]
    save(config)
    assert load(config.path).servers == [second]
