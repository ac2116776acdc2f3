"""The original design's pickle files (moviedb.p, serverdb.p, portdb.p), read without running code.

A pickle can name any function and make the loader call it. These files are read in two
guarded steps: the opcodes are checked first against the short list that only builds plain
values (no global, no call, no object state, no persistent id, no bytes), then loaded by an
unpickler that refuses every global and persistent id anyway. The loaded value is walked and
refused unless it is made of dict, list, tuple, set, frozenset, str, int, float, bool and None.

A pickle can also refer to one value many times (its memo), so a file of a few hundred bytes
can describe a value that is astronomically large written out in full, or a set member that
takes years to hash. Sizes are therefore counted as written out, each shared part counted every
time it appears: while the opcodes are checked (for what loading would hash) and again over the
loaded value (for what reading it would walk), and a file over the limits is refused.
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
from moviedb.importers import TOO_LONG, Rejected, Row, jsonable, record_from_mapping, shown

MAX_FILE_BYTES: Final = 256 << 20
MAX_DEPTH: Final = 100
# Values in a file written out in full (shared parts counted where they appear): at most this
# many or the file's size in bytes, whichever is larger; their text at most MAX_FILE_BYTES.
MAX_EXPANDED_VALUES: Final = 1_000_000
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
    _check_plain(path, value, _value_limit(data))
    return value


def _value_limit(data: bytes) -> int:
    return max(MAX_EXPANDED_VALUES, len(data))


_SHARED_NOTE: Final = (
    "counting each shared part every time it appears; the file refers to the same values over "
    "and over, as no moviedb file does, and reading it would take too long or too much memory"
)


def _too_large(path: Path, what: str) -> str:
    return f"{path}: refused: {what}, {_SHARED_NOTE}"


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
    """Refuse any opcode that does more than build a plain value, and any file whose loading
    would hash a value too large or nested too deeply (see `_Machine`), before anything is built.

    A damaged file is reported as such even when it also holds a refused opcode.
    """
    refusal: str | None = None
    recent: list[str] = []  # the last strings pushed: the names a STACK_GLOBAL would use
    machine = _Machine(_value_limit(data))
    try:
        for name, arg, pos in _opcodes(data):
            if refusal is not None:
                continue
            if name in _SAFE_OPCODES:
                if name in _TEXT_OPCODES:
                    recent = [*recent[-1:], arg if isinstance(arg, str) else repr(arg)]
                try:
                    problem = machine.step(name, arg)
                except (IndexError, KeyError):
                    refusal = (
                        f"{path}: cannot be loaded (opcode {name} at byte {pos} finds no value to "
                        "work on); the file may be truncated or damaged"
                    )
                else:
                    if problem is not None:
                        refusal = f"{path}: refused at byte {pos} (opcode {name}): {problem}"
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


_Cost = tuple[int, int]  # (values written out in full, nesting height); values -1: mutable
_MUTABLE: Final[_Cost] = (-1, 0)
_LEAF: Final[_Cost] = (1, 0)
_LEAF_OPCODES: Final = _TEXT_OPCODES | {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "NONE", "NEWTRUE", "NEWFALSE", "FLOAT", "BINFLOAT", "STRING",
}  # fmt: skip
_MEMO_PUT: Final = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GET: Final = frozenset({"GET", "BINGET", "LONG_BINGET"})
_TUPLE_SIZES: Final = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


class _Machine:
    """The pickle machine run on costs instead of values, to refuse before loading a file whose
    loading would hash a huge or deeply nested value (a dict key, a set member).

    Python hashes a tuple by hashing its items every time, so a tuple built from one shared
    tuple twice, 100 times over, takes 2**100 steps to hash, and a tuple nested a million deep
    overflows the C stack. Only tuples and frozensets can be hashed, and they never change once
    built, so each one's size written out in full and its nesting height are known when it is
    built; lists, dicts and sets are only marked mutable. The stack and memo follow the
    unpickler's rules exactly: a fault here (IndexError, KeyError) is a fault in loading.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.stack: list[_Cost] = []
        self.frames: list[list[_Cost]] = []  # the stacks below each MARK
        self.memo: dict[object, _Cost] = {}
        self.hashed = 0  # values hashed so far, written out in full

    def _pop_mark(self) -> list[_Cost]:
        items = self.stack
        self.stack = self.frames.pop()
        return items

    def _top(self) -> _Cost:
        return self.stack[-1]

    def _pop(self, count: int) -> list[_Cost]:
        if len(self.stack) < count:
            raise IndexError("stack underflow")
        items = self.stack[len(self.stack) - count :]
        del self.stack[len(self.stack) - count :]
        return items

    def _combine(self, items: list[_Cost]) -> _Cost:
        if any(size < 0 for size, _ in items):
            return _MUTABLE  # a tuple holding a list cannot be hashed (loading fails)
        size = min(1 + sum(size for size, _ in items), self.limit + 1)
        return size, 1 + max((height for _, height in items), default=0)

    def _hash(self, items: list[_Cost]) -> str | None:
        for size, height in items:
            if size < 0:
                continue  # unhashable: loading fails with a TypeError
            if height > MAX_DEPTH:
                return f"a dict key or set member nests containers more than {MAX_DEPTH} deep"
            self.hashed += size
            if self.hashed > self.limit:
                return (
                    f"its dict keys and set members hold more than {self.limit} values, "
                    f"{_SHARED_NOTE}"
                )
        return None

    def step(self, name: str, arg: object) -> str | None:
        """Follow one (safe) opcode; the reason to refuse the file, or None."""
        stack = self.stack
        if name in _LEAF_OPCODES:
            stack.append(_LEAF)
        elif name in _MEMO_PUT:
            self.memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1]
        elif name in _MEMO_GET:
            stack.append(self.memo[arg])
        elif name == "MARK":
            self.frames.append(stack)
            self.stack = []
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                self._pop_mark()
        elif name == "POP_MARK":
            self._pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            stack.append(_MUTABLE)
        elif name == "APPEND":
            self._pop(1)
            self._top()  # the list appended to
        elif name == "APPENDS":
            self._pop_mark()
            self._top()
        elif name == "LIST":
            self._pop_mark()
            self.stack.append(_MUTABLE)
        elif name == "DICT":
            problem = self._hash(self._pop_mark()[0::2])
            self.stack.append(_MUTABLE)
            return problem
        elif name == "SETITEM":
            key, _ = self._pop(2)
            self._top()
            return self._hash([key])
        elif name in ("SETITEMS", "ADDITEMS"):
            items = self._pop_mark()
            self._top()
            return self._hash(items[0::2] if name == "SETITEMS" else items)
        elif name == "FROZENSET":
            items = self._pop_mark()
            self.stack.append(self._combine(items))
            return self._hash(items)
        elif name == "TUPLE":
            items = self._pop_mark()  # before self.stack is read: it changes
            self.stack.append(self._combine(items))
        elif name in _TUPLE_SIZES:
            stack.append(self._combine(self._pop(_TUPLE_SIZES[name])))
        # PROTO, FRAME, STOP: nothing to follow
        return None


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


def _check_plain(path: Path, value: object, limit: int) -> None:
    """Refuse anything but plain values, containers nested too deeply, cycles, and values that
    written out in full (each shared part counted every time it appears) hold more than `limit`
    values or MAX_FILE_BYTES characters of text.

    Sizes are added up once per container (shared ones are looked up), so this costs time in
    proportion to the file, whatever the size written out.
    """
    if type(value) in _PLAIN_TYPES:
        return
    on_path: set[int] = set()
    done: dict[int, tuple[int, int, int]] = {}  # container -> (values, characters, height)
    # (container, depth, its children once entered: None before)
    stack: list[tuple[object, int, list[object] | None]] = [(value, 0, None)]
    while stack:
        item, depth, children = stack.pop()
        if children is not None:  # leaving: its containers are done
            on_path.discard(id(item))
            values, chars, height = 1, 0, 0
            for child in children:
                values += 1
                if isinstance(child, str):
                    chars += len(child)
                elif type(child) in _CONTAINERS:
                    inner, text, inner_height = done[id(child)]
                    values += inner - 1
                    chars += text
                    height = max(height, inner_height)
                elif isinstance(child, int):
                    chars += child.bit_length() // 3 + 1  # about its digits
                else:
                    chars += 1
            if height >= MAX_DEPTH:
                raise LegacyError(f"{path}: nests containers more than {MAX_DEPTH} deep")
            if values > limit:
                raise LegacyError(_too_large(path, f"it holds more than {limit} values"))
            if chars > MAX_FILE_BYTES:
                raise LegacyError(
                    _too_large(path, f"its text comes to more than {MAX_FILE_BYTES} characters")
                )
            done[id(item)] = (values, chars, height + 1)
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
        children = _children(item)
        stack.append((item, depth, children))
        for child in children:
            if type(child) not in _PLAIN_TYPES:
                stack.append((child, depth + 1, None))  # a container, or refused when popped


def _children(item: object) -> list[object]:
    if isinstance(item, dict):
        return [part for pair in item.items() for part in pair]
    if isinstance(item, list | tuple | set | frozenset):
        return list(item)
    return []


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
        try:
            yield _movie(number, key, information)
        except (ValueError, OverflowError) as exc:  # a value Python cannot convert; not expected
            yield Rejected(number, f"cannot be read: {exc}", _entry_data(key, information))


def _entry_data(key: object, information: object) -> dict[str, Any]:
    """A rejected entry as the rejects file shows it (built only for an entry that failed)."""
    return {"title": jsonable(key), "information": jsonable(information)}


def _movie(number: int, key: object, information: object) -> Row | Rejected:
    def rejected(reason: str) -> Rejected:
        return Rejected(number, reason, _entry_data(key, information))

    if isinstance(key, bool) or not isinstance(key, str | int):
        return rejected(f"title: {shown(key)} is not text; accepted: text titles")
    title = _text_of(key)
    if title is None:
        return rejected(f"title: {TOO_LONG}; accepted: text titles")
    if not title.strip():
        return rejected("title: the title is empty; every movie needs one")
    record: dict[str, Any] = {"title": title}
    if isinstance(information, str):
        record["plot"] = information
    elif isinstance(information, dict):
        for name, value in information.items():
            name_text = _text_of(name)
            if name_text is None:
                return rejected(f"field name {shown(name)}: {TOO_LONG}; accepted: text")
            if name_text.strip() == "title":
                if value is not None and (_text_of(value) or "").strip() != title.strip():
                    record["source title"] = value
                continue
            record[name_text] = value
    elif information is not None:
        return rejected(
            f"the information for {shown(title)} is {_shape(information)}; accepted: text (the "
            "plot) or a dict of fields"
        )
    try:
        return Row(number, record_from_mapping(record))
    except InvalidMovie as exc:
        return rejected(str(exc))


def _text_of(value: object) -> str | None:
    """str(value), or None when Python refuses (a number of more than 4300 digits)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:
        return None


def _sort_text(value: object) -> str:
    text = _text_of(value)
    return shown(value) if text is None else text


def _entry(path: Path, position: int, item: object) -> str:
    """How a message names an entry that failed: its position and a short repr."""
    return f"{path}: entry {position} ({shown(item)})"


def read_servers(path: Path) -> list[tuple[str, int]]:
    """serverdb.p: a list of (host, port) pairs or "host:port" strings, validated."""
    value = load_restricted(path)
    accepted = 'accepted: a list of (host, port) pairs or of "host:port" strings'
    if not isinstance(value, list | tuple):
        raise LegacyError(f"{path}: holds {_shape(value)}; {accepted}")
    servers: list[tuple[str, int]] = []
    for position, item in enumerate(value, start=1):
        if isinstance(item, str):
            try:
                address = parse_address(item)
            except InvalidAddress as exc:
                raise LegacyError(f"{_entry(path, position, item)}: {exc}") from None
            servers.append((address.host, address.port))
            continue
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise LegacyError(f"{_entry(path, position, item)} is not a server; {accepted}")
        host, port = item
        if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host.strip()):
            raise LegacyError(
                f"{_entry(path, position, item)}: the host must be a name or an address; {accepted}"
            )
        number = _port(port)
        if number is None:
            raise LegacyError(f"{_entry(path, position, item)}: {_NOT_A_PORT}")
        servers.append((host.strip().strip("[]"), number))
    return servers


def read_ports(path: Path) -> list[int]:
    """portdb.p: a list, tuple or set of ports (numbers or numeric text), each 1-65535.

    Order is kept (a set is sorted); a port listed twice is listed once.
    """
    value = load_restricted(path)
    if isinstance(value, set | frozenset):
        value = sorted(value, key=_sort_text)
    if not isinstance(value, list | tuple):
        raise LegacyError(f"{path}: holds {_shape(value)}; accepted: a list of ports (1-65535)")
    ports: list[int] = []
    seen: set[int] = set()
    for position, item in enumerate(value, start=1):
        port = _port(item)
        if port is None:
            raise LegacyError(f"{_entry(path, position, item)}: {_NOT_A_PORT}")
        if port not in seen:
            seen.add(port)
            ports.append(port)
    return ports


_NOT_A_PORT: Final = "not a port; accepted: a whole number from 1 to 65535"


def _port(value: object) -> int | None:
    """`value` as a port (a number or numeric text, 1-65535), or None."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text.lstrip("0")) <= 5):
            return None
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return None
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
