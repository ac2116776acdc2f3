"""The original design's pickle files (moviedb.p, serverdb.p, portdb.p), read without running code.

A pickle can name any function and make the loader call it. These files are read in two
guarded steps: the opcodes are checked first against the short list that only builds plain
values (no global, no call, no object state, no persistent id, no bytes), then loaded by an
unpickler that refuses every global and persistent id anyway. The loaded value is walked and
refused unless it is made of dict, list, tuple, set, frozenset, str, int, float, bool and None.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NoReturn

from moviedb.client.address import parse_address
from moviedb.errors import InvalidAddress, InvalidMovie, MoviedbError
from moviedb.importers import Rejected, Row, jsonable, record_from_mapping

MAX_FILE_BYTES: Final = 256 << 20
MAX_DEPTH: Final = 100
FILE_NAMES: Final = ("moviedb.p", "serverdb.p", "portdb.p")

_PLAIN: Final = "only dicts, lists, tuples, sets, text, numbers, True, False and None"

# Opcodes that build plain values and nothing else (pickletools names, protocols 0 to 5).
_SAFE_OPCODES: Final = frozenset(
    {
        "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
        "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
        "NONE", "NEWTRUE", "NEWFALSE", "FLOAT", "BINFLOAT",
        "STRING", "BINSTRING", "SHORT_BINSTRING",  # Python 2 str: read as text
        "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
        "EMPTY_LIST", "APPEND", "APPENDS", "LIST",
        "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
        "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
        "EMPTY_SET", "ADDITEMS", "FROZENSET",
    }
)  # fmt: skip
_BYTES_OPCODES: Final = frozenset(
    {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER"}
)
_TEXT_OPCODES: Final = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)
_PLAIN_TYPES: Final = (str, int, float, bool, type(None))
_CONTAINERS: Final = (dict, list, tuple, set, frozenset)


class LegacyError(MoviedbError):
    """A legacy file cannot be read safely; the message names the file, what was found and
    what is accepted."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, path: Path, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self.path = path

    def find_class(self, module: str, name: str) -> NoReturn:
        raise LegacyError(_refusal(self.path, f"{module}.{name}"))

    def persistent_load(self, pid: Any) -> NoReturn:
        raise LegacyError(
            f"{self.path}: refers to an outside object (persistent id {pid!r}); {_PLAIN} "
            "are accepted"
        )


# Globals that old pickle protocols use for plain values, and what to tell the user about them.
_OLD_PROTOCOL_HINTS: Final = {
    "set": "a set as pickle protocols 0-3 write it, through a call; save it as a list",
    "frozenset": "a set as pickle protocols 0-3 write it, through a call; save it as a list",
    "_codecs.encode": "a bytes value as pickle protocols 0-2 write it; save text instead",
    "bytes": "a bytes value; save text instead",
    "bytearray": "a bytes value; save text instead",
}


def _refusal(path: Path, what: str) -> str:
    short = what.removeprefix("builtins.").removeprefix("__builtin__.")
    hint = _OLD_PROTOCOL_HINTS.get(short)
    found = f" ({hint})" if hint else ""
    return (
        f"{path}: refused: the pickle refers to {what}{found}, which loading would import or "
        f"call; a legacy file may hold {_PLAIN}, so that reading it can never run code"
    )


def load_restricted(path: Path) -> object:
    """The plain value a pickle file holds, or LegacyError; nothing in the file can run."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LegacyError(
                f"{path}: is {size} bytes; legacy files of at most {MAX_FILE_BYTES} bytes "
                "(256 MiB) are read"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise LegacyError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if not data:
        raise LegacyError(
            f"{path}: is empty; accepted: a pickle file written by the original moviedb"
        )
    _check_opcodes(path, data)
    value = _unpickle(path, data)
    _check_plain(path, value)
    return value


_OPCODES: Final = {op.code.encode("latin-1"): op for op in pickletools.opcodes}


def _opcodes(data: bytes) -> Iterator[tuple[str, Any, int]]:
    """(name, argument, position) of each opcode up to STOP, as pickletools.genops gives them,
    except that Python 2 STRING arguments stay bytes (genops insists they are ASCII)."""
    stream = io.BytesIO(data)
    while True:
        pos = stream.tell()
        code = stream.read(1)
        if not code:
            raise ValueError("the data ends before the pickle's STOP opcode")
        opcode = _OPCODES.get(code)
        if opcode is None:
            raise ValueError(f"unknown opcode {code!r} at byte {pos}")
        if opcode.arg is None:
            arg = None
        elif opcode.name == "STRING":
            arg = pickletools.read_stringnl(stream, decode=False)
        else:
            arg = opcode.arg.reader(stream)
        yield opcode.name, arg, pos
        if opcode.name == "STOP":
            return


def _check_opcodes(path: Path, data: bytes) -> None:
    """Refuse any opcode that does more than build a plain value, before anything is built.

    A damaged file is reported as such even when it also holds a refused opcode.
    """
    refusal: str | None = None
    recent: list[str] = []  # the last strings pushed: the names a STACK_GLOBAL would use
    try:
        for name, arg, pos in _opcodes(data):
            if refusal is not None or name in _SAFE_OPCODES:
                if name in _TEXT_OPCODES:
                    recent = [*recent[-1:], arg if isinstance(arg, str) else repr(arg)]
                continue
            if name in _BYTES_OPCODES:
                refusal = (
                    f"{path}: holds a bytes value (opcode {name} at byte {pos}); {_PLAIN} "
                    "are accepted"
                )
            elif name in ("GLOBAL", "INST") and isinstance(arg, str):
                refusal = _refusal(path, ".".join(arg.split(" ", 1)))
            elif name == "STACK_GLOBAL" and len(recent) == 2:
                refusal = _refusal(path, f"{recent[0]}.{recent[1]}")
            else:
                refusal = _refusal(path, f"code or an object (opcode {name} at byte {pos})")
    except Exception as exc:
        raise LegacyError(
            f"{path}: is not a complete pickle ({exc}); the file may be truncated or not a "
            "pickle at all; accepted: a pickle file written by the original moviedb"
        ) from None
    if refusal is not None:
        raise LegacyError(refusal)


def _unpickle(path: Path, data: bytes) -> object:
    # Python 2 `str` values are bytes in the file: UTF-8 if they decode, else Latin-1 (lossless).
    for encoding in ("utf-8", "latin-1"):
        try:
            return _RestrictedUnpickler(io.BytesIO(data), path, encoding).load()
        except LegacyError:
            raise
        except UnicodeDecodeError:
            continue
        except Exception as exc:
            raise LegacyError(
                f"{path}: cannot be loaded ({type(exc).__name__}: {exc}); the file may be "
                "truncated or damaged"
            ) from None
    raise LegacyError(f"{path}: holds text in no known encoding")  # pragma: no cover


def _check_plain(path: Path, value: object) -> None:
    """Refuse anything but plain values, containers nested too deeply, and cycles."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[object, int, bool]] = [(value, 0, False)]
    while stack:
        item, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(item))
            done.add(id(item))
            continue
        if type(item) in _PLAIN_TYPES:
            continue
        if type(item) not in _CONTAINERS:
            raise LegacyError(f"{path}: holds a {type(item).__name__} value; {_PLAIN} are accepted")
        if id(item) in on_path:
            raise LegacyError(
                f"{path}: holds a container that contains itself; {_PLAIN} are accepted"
            )
        if id(item) in done:
            continue  # shared, already checked
        if depth >= MAX_DEPTH:
            raise LegacyError(f"{path}: nests containers more than {MAX_DEPTH} deep")
        on_path.add(id(item))
        stack.append((item, depth, True))
        children: list[object] = []
        if isinstance(item, dict):
            for key, child in item.items():
                children += [key, child]
        elif isinstance(item, list | tuple | set | frozenset):
            children = list(item)
        stack.extend((child, depth + 1, False) for child in children)


# --- the three files --------------------------------------------------------------------------


def read_movies(path: Path) -> Iterator[Row | Rejected]:
    """moviedb.p: a dict mapping each title to its information, as Rows and Rejecteds.

    Information that is text becomes the plot; a dict is read as a record (columns recognised
    as in `moviedb.importers`) with the title added (a differing "title" inside it is kept as
    the extra field "source title"); None gives the title alone. Integer titles become text.
    Numbers are positions from 1. Raises LegacyError at once when the file is unsafe or is not
    a dict.
    """
    catalog = load_restricted(path)
    if not isinstance(catalog, dict):
        raise LegacyError(
            f"{path}: holds {_shape(catalog)}; a moviedb.p file holds a dict mapping each title "
            "to its information (text, or a dict of fields)"
        )
    return _movies(catalog)


def _movies(catalog: dict[Any, Any]) -> Iterator[Row | Rejected]:
    for number, (key, information) in enumerate(catalog.items(), start=1):
        data: dict[str, Any] = {"title": key, "information": jsonable(information)}
        if isinstance(key, bool) or not isinstance(key, str | int):
            yield Rejected(number, f"title: {key!r} is not text; accepted: text titles", data)
            continue
        title = str(key)
        if not title.strip():
            yield Rejected(number, "title: the title is empty; every movie needs one", data)
            continue
        record: dict[str, Any] = {"title": title}
        if isinstance(information, str):
            record["plot"] = information
        elif isinstance(information, dict):
            for name, value in information.items():
                name_text = str(name)
                if name_text.strip() == "title":
                    if value is not None and str(value).strip() != title.strip():
                        record["source title"] = value
                    continue
                record[name_text] = value
        elif information is not None:
            yield Rejected(
                number,
                f"the information for {title!r} is {_shape(information)}; accepted: text (the "
                "plot) or a dict of fields",
                data,
            )
            continue
        try:
            yield Row(number, record_from_mapping(record))
        except InvalidMovie as exc:
            yield Rejected(number, str(exc), data)


def read_servers(path: Path) -> list[tuple[str, int]]:
    """serverdb.p: a list of (host, port) pairs or "host:port" strings, validated."""
    value = load_restricted(path)
    accepted = 'accepted: a list of (host, port) pairs or of "host:port" strings'
    if not isinstance(value, list | tuple):
        raise LegacyError(f"{path}: holds {_shape(value)}; {accepted}")
    servers: list[tuple[str, int]] = []
    for position, item in enumerate(value, start=1):
        where = f"{path}: entry {position} ({item!r})"
        if isinstance(item, str):
            try:
                address = parse_address(item)
            except InvalidAddress as exc:
                raise LegacyError(f"{where}: {exc}") from None
            servers.append((address.host, address.port))
            continue
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise LegacyError(f"{where} is not a server; {accepted}")
        host, port = item
        if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host.strip()):
            raise LegacyError(f"{where}: the host must be a name or an address; {accepted}")
        servers.append((host.strip().strip("[]"), _port(where, port)))
    return servers


def read_ports(path: Path) -> list[int]:
    """portdb.p: a list, tuple or set of ports (numbers or numeric text), each 1-65535.

    Order is kept (a set is sorted); a port listed twice is listed once.
    """
    value = load_restricted(path)
    if isinstance(value, set | frozenset):
        value = sorted(value, key=str)
    if not isinstance(value, list | tuple):
        raise LegacyError(f"{path}: holds {_shape(value)}; accepted: a list of ports (1-65535)")
    ports: list[int] = []
    for position, item in enumerate(value, start=1):
        port = _port(f"{path}: entry {position} ({item!r})", item)
        if port not in ports:
            ports.append(port)
    return ports


def _port(where: str, value: object) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise LegacyError(f"{where}: not a port; accepted: a whole number from 1 to 65535")
    return value


def find_files(directory: Path) -> dict[str, Path]:
    """Which of moviedb.p, serverdb.p and portdb.p are in `directory` (names exactly so)."""
    try:
        present = set(os.listdir(directory))
    except OSError as exc:
        raise LegacyError(f"{directory}: cannot be listed: {exc.strerror or exc}") from None
    found: dict[str, Path] = {
        name: directory / name
        for name in FILE_NAMES
        if name in present and (directory / name).is_file()
    }
    if not found:
        raise LegacyError(
            f"{directory}: holds none of the original moviedb's files; looked for "
            + ", ".join(FILE_NAMES)
        )
    return found


_SHAPES: Final[dict[type, str]] = {
    dict: "a dict",
    list: "a list",
    tuple: "a tuple",
    set: "a set",
    frozenset: "a set",
    str: "text",
    type(None): "None",
}


def _shape(value: object) -> str:
    return _SHAPES.get(type(value), f"a {type(value).__name__}")
