"""Movie files (JSON, NDJSON, CSV, TSV) -> validated Movie records, row by row, with reasons.

Reading streams: a file of any size is read in constant memory, and a row that cannot become a
movie is returned as a `Rejected` with a reason a person can act on, never dropped.

Recognised columns (names compared ignoring case, spaces, `_`, `-` and other punctuation, and
camelCase is split, so "IMDb Rating", "imdb_rating" and "imdbRating" are one name):

    title        title, name, movie, film, movie title, title name, film title, movie name,
                 film name, primary title
    year         year, release year, start year; or a release date column: release date,
                 released, release, date (1979-05-25, 25/05/1979, May 25 1979, 1979)
    director     director, directors, directed by (a JSON list is joined with ", ")
    genres       genre, genres, major genre (text is split on , | / ;)
    runtime_min  runtime, running time, run time, runtime min, runtime minutes, duration, length
                 (117, "117 min", "1h 57m", "1:57", "PT1H57M")
    rating       rating, imdb rating, imdb score, score, vote average, average rating, avg vote
                 (0 to 10; "8.1/10" accepted)
    cast         cast, actors, actor, stars, starring (text is split on , | ;)
    plot         plot, overview, summary, description, synopsis, storyline

In CSV and TSV, a genres or cast cell holding a JSON array of text (`["Downey Jr., Robert"]`,
as moviedb's own CSV export writes lists) is that list exactly, without splitting.

When a file has several columns for one field, the earlier name in the list wins (a "year"
column before a "release date" one) and the others are kept as extra fields. A `mapping`
(`--map SOURCE=FIELD`) decides before recognition; a FIELD that is not a movie field names an
extra field. Every other non-empty column is kept as an extra field named after its header;
a header that is a standard field or a reserved name ("rev", "extra", "deleted") becomes
"source NAME", a header longer than 100 characters is shortened, and repeated names get
" (2)", " (3)"... so nothing is dropped. A key "extra" holding an object, or a CSV column
"extra" holding the JSON text of one (moviedb's own exports), gives its entries as extra fields.
Empty text means "absent".
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from moviedb.errors import InvalidMovie, MoviedbError
from moviedb.model import (
    KNOWN_FIELDS,
    LIST_FIELDS,
    RESERVED_NAMES,
    ExtraValue,
    Movie,
    validate,
)

FORMATS: Final = ("json", "ndjson", "csv", "tsv")

_EXTENSIONS: Final = {
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
}
_ALIASES: Final = {"jsonl": "ndjson", "tab": "tsv"}
_ACCEPTED_FORMATS: Final = (
    "accepted: json (an array of objects), ndjson (one object per line), csv, tsv"
)
_SNIFF_BYTES: Final = 1 << 20  # how much of a file decides between UTF-8 and cp1252
_CHUNK_CHARS: Final = 1 << 16
_MAX_RECORD_CHARS: Final = 16 << 20  # far beyond the largest valid movie
_MAX_EXTRA_NAME: Final = 100


class ImportFormatError(MoviedbError):
    """The file as a whole cannot be read; the message names the file and what is accepted."""


class InvalidMapping(ImportFormatError, ValueError):
    """A `--map SOURCE=FIELD` item is malformed; the message names the item."""


@dataclass(frozen=True)
class Row:
    """A source row that became a valid movie. `number`: see `read_rows`."""

    number: int
    movie: Movie


@dataclass(frozen=True)
class Rejected:
    """A source row that could not become a movie, with why and the row as it was read."""

    number: int
    reason: str
    data: dict[str, Any] | str


# --- column recognition ---------------------------------------------------------------------

SYNONYMS: Final[dict[str, tuple[str, ...]]] = {
    "title": (
        "title",
        "name",
        "movie",
        "film",
        "movie title",
        "title name",
        "film title",
        "movie name",
        "film name",
        "primary title",
    ),
    "year": ("year", "release year", "start year", "release date", "released", "release", "date"),
    "director": ("director", "directors", "directed by"),
    "genres": ("genres", "genre", "major genre"),
    "runtime_min": (
        "runtime min",
        "runtime",
        "running time",
        "run time",
        "runtime minutes",
        "duration",
        "length",
    ),
    "rating": (
        "rating",
        "imdb rating",
        "imdb score",
        "score",
        "vote average",
        "average rating",
        "avg vote",
    ),
    "cast": ("cast", "actors", "actor", "stars", "starring"),
    "plot": ("plot", "overview", "summary", "description", "synopsis", "storyline"),
}
_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS: Final = re.compile(r"[\W_]+")


def normalise_name(name: str) -> str:
    """The form in which column names are compared: "IMDb_Rating" -> "imdb rating"."""
    words = _SEPARATORS.split(_CAMEL.sub(" ", name).casefold())
    return " ".join(word for word in words if word)


_RECOGNISED: Final = {
    synonym: (field, rank)
    for field, names in SYNONYMS.items()
    for rank, synonym in enumerate(names)
}
_FIELD_BY_NAME: Final = {normalise_name(field): field for field in KNOWN_FIELDS}


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """`["Film Name=title", "Released=year"]` -> `{"Film Name": "title", "Released": "year"}`.

    FIELD is a movie field (case and `_`/space ignored: "Runtime Min" is runtime_min) or else
    the name of an extra field. Raises InvalidMapping naming the item.
    """
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    for item in items:
        source, sep, target = item.rpartition("=")
        source, target = source.strip(), target.strip()
        where = f"--map {item!r}"
        if not sep or not source or not target:
            raise InvalidMapping(
                f"{where}: expected SOURCE=FIELD, a column name, '=' and a field name "
                "(for example 'Film Name=title')"
            )
        field = _FIELD_BY_NAME.get(normalise_name(target), target)
        if field not in KNOWN_FIELDS and (field in RESERVED_NAMES or len(field) > _MAX_EXTRA_NAME):
            raise InvalidMapping(
                f"{where}: {field!r} cannot be a field name; accepted: "
                + ", ".join(KNOWN_FIELDS)
                + f", or an extra field name of 1-{_MAX_EXTRA_NAME} characters other than "
                + ", ".join(sorted(RESERVED_NAMES))
            )
        key = normalise_name(source) or source
        if key in seen:
            raise InvalidMapping(f"{where}: column {source!r} is already mapped by {seen[key]!r}")
        seen[key] = item
        mapping[source] = field
    return mapping


def _extra_name(name: str, position: int) -> str:
    name = name.strip() or f"column {position}"
    if name in KNOWN_FIELDS or name in RESERVED_NAMES:
        name = f"source {name}"
    if len(name) > _MAX_EXTRA_NAME:
        name = name[: _MAX_EXTRA_NAME - 1] + "…"
    return name


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate in used:
        n += 1
        suffix = f" ({n})"
        candidate = name[: _MAX_EXTRA_NAME - len(suffix)] + suffix
    used.add(candidate)
    return candidate


@dataclass(frozen=True)
class _Plan:
    """Where each source key goes: standard fields, extra fields, and nested "extra" objects."""

    fields: tuple[tuple[str, str], ...]  # (field, source key), in KNOWN_FIELDS order
    extras: tuple[tuple[str, str], ...]  # (source key, extra name), in source order
    nested: tuple[str, ...]  # keys named "extra": an object there holds extra fields


def _make_plan(keys: Sequence[str], mapping: Mapping[str, str]) -> _Plan:
    mapped = {normalise_name(source) or source: target for source, target in mapping.items()}
    chosen: dict[str, tuple[tuple[int, int], str]] = {}  # field -> (priority, key)
    named: dict[str, str] = {}  # key -> extra name chosen by the mapping
    for position, key in enumerate(keys):
        norm = normalise_name(key) or key
        target = mapped.get(norm)
        if target is not None:
            field = _FIELD_BY_NAME.get(normalise_name(target), target)
            if field not in KNOWN_FIELDS:
                named[key] = field
            elif field not in chosen or chosen[field][0][0] > 0:
                chosen[field] = ((0, position), key)
            continue
        recognised = _RECOGNISED.get(norm)
        if recognised is not None:
            field, rank = recognised
            priority = (1 + rank, position)
            if field not in chosen or chosen[field][0] > priority:
                chosen[field] = (priority, key)
    taken = {key for _, key in chosen.values()}
    used: set[str] = set()
    extras: dict[str, str] = {key: _unique(name, used) for key, name in named.items()}
    nested: list[str] = []
    for position, key in enumerate(keys, start=1):
        if key in taken or key in extras:
            continue
        if key.strip() == "extra":
            nested.append(key)
        extras[key] = _unique(_extra_name(repair_mojibake(key), position), used)
    fields = tuple((f, chosen[f][1]) for f in KNOWN_FIELDS if f in chosen)
    ordered = tuple((key, extras[key]) for key in keys if key in extras)
    return _Plan(fields, ordered, tuple(nested))


# --- values ----------------------------------------------------------------------------------

_MOJIBAKE_MARKERS: Final = ("Ã", "Â", "â€", "Å", "Ä")


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 read as cp1252 or Latin-1 ("AmÃ©lie" -> "Amélie"); other text is unchanged.

    Only text containing a typical sequence is touched, and only when re-encoding it gives
    valid UTF-8, which ordinary accented text (e.g. "Ärger", "Âge") does not.
    """
    if not any(marker in text for marker in _MOJIBAKE_MARKERS):
        return text
    try:
        raw = text.encode("cp1252")
    except UnicodeEncodeError:
        pieces = bytearray()
        for ch in text:
            try:
                pieces += ch.encode("cp1252")
            except UnicodeEncodeError:
                if ord(ch) > 0xFF:
                    return text
                pieces.append(ord(ch))  # Latin-1 read: C1 controls cp1252 lacks
        raw = bytes(pieces)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return text


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    return type(value).__name__


def _absent(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | set | frozenset | dict):
        return not value
    return False


_MAX_SHOWN_BITS: Final = 14_000  # below the 4300 digits Python refuses to print


def shown(value: object, limit: int = 60) -> str:
    """`value` as a message shows it: its repr, cut to `limit` characters.

    The cost is bounded by `limit`, not by the size of `value`: containers are written only as
    far as shown, so a value that is huge when written out in full (a list whose parts are
    shared many times over) costs no more than a short one. A number too long for Python to
    print is described instead.
    """
    out: list[str] = []
    length = 0

    def put(text: str) -> None:
        nonlocal length
        out.append(text)
        length += len(text)

    def walk(item: object, depth: int) -> None:
        if length > limit:
            return
        if isinstance(item, str):
            put(repr(item[: limit + 1]))
        elif isinstance(item, int) and not isinstance(item, bool):
            put(
                repr(item)
                if item.bit_length() <= _MAX_SHOWN_BITS
                else "<a number too long to show>"
            )
        elif isinstance(item, float | bool) or item is None:
            put(repr(item))
        elif depth > 100:
            put("…")
        elif isinstance(item, dict):
            put("{")
            for i, (key, inner) in enumerate(item.items()):
                if length > limit:
                    return
                put(", " if i else "")
                walk(key, depth + 1)
                put(": ")
                walk(inner, depth + 1)
            put("}")
        elif isinstance(item, list | tuple | set | frozenset):
            opening, closing = {
                list: ("[", "]"),
                tuple: ("(", ",)" if len(item) == 1 else ")"),
                frozenset: ("frozenset({", "})") if item else ("frozenset(", ")"),
            }.get(type(item), ("{", "}") if item else ("set(", ")"))
            put(opening)
            for i, inner in enumerate(item):
                if length > limit:
                    return
                put(", " if i else "")
                walk(inner, depth + 1)
            put(closing)
        else:
            text = repr(item)
            put(text[: limit + 1])

    walk(value, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


TOO_LONG: Final = "a number of more than 4300 digits is not accepted"


def _int_text(field: str, value: int) -> str:
    try:
        return str(value)
    except ValueError:  # Python refuses to print ints of more than 4300 digits
        raise InvalidMovie(field, TOO_LONG) from None


def _check_printable(field: str, value: int) -> int:
    """`value`, or InvalidMovie when it is too long for Python to print (and so to store)."""
    if value.bit_length() > _MAX_SHOWN_BITS:
        _int_text(field, value)
    return value


def _text(field: str, value: object) -> str:
    if isinstance(value, str):
        return repair_mojibake(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(field, value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    raise InvalidMovie(field, f"must be text, got {_describe(value)}")


def _json_list(text: str) -> list[str] | None:
    """The list a CSV cell such as `["Downey Jr., Robert", "Paltrow; Gwyneth"]` holds, or None
    when the cell is not a JSON array of text."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _items(field: str, value: object, splitter: re.Pattern[str]) -> list[str]:
    if isinstance(value, str):
        return [part for part in splitter.split(repair_mojibake(value)) if part.strip()]
    if isinstance(value, list | tuple | set | frozenset):
        return [_text(f"{field} entry {i}", item) for i, item in enumerate(value, start=1)]
    return [_text(field, value)]


_GENRE_SPLIT: Final = re.compile(r"[,|/;]")
_CAST_SPLIT: Final = re.compile(r"[,|;]")
_DIGITS_YEAR: Final = re.compile(r"([0-9]{1,6})(?:\.0+)?")
_ISO_DATE: Final = re.compile(r"([0-9]{4})[-/.][0-9]{1,2}(?:[-/.][0-9]{1,2})?(?:[T ].*)?")
_DAY_FIRST_DATE: Final = re.compile(r"[0-9]{1,2}[-/.][0-9]{1,2}[-/.]([0-9]{4})(?:[T ].*)?")
_DATE_WORDS: Final = re.compile(r"[\s,./-]+")
_MONTH: Final = re.compile(
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t|tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_WEEKDAY: Final = re.compile(
    r"mon(?:day)?|tue(?:s|sday)?|wed(?:nesday)?|thu(?:r|rs|rsday)?|fri(?:day)?"
    r"|sat(?:urday)?|sun(?:day)?"
)
_DAY: Final = re.compile(r"[0-9]{1,2}(?:st|nd|rd|th)?")
_YEAR_ACCEPTED: Final = (
    "accepted: a year such as 1979, or a release date such as 1979-05-25, 25/05/1979 "
    "or May 25, 1979"
)


def _year(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 64:
            raise InvalidMovie("year", f"{shown(value)} is not a year; {_YEAR_ACCEPTED}")
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        year = _year_from_text(value.strip())
        if year is not None:
            return year
    raise InvalidMovie("year", f"{shown(value)} is not a year; {_YEAR_ACCEPTED}")


def _year_from_text(text: str) -> int | None:
    for pattern in (_DIGITS_YEAR, _ISO_DATE, _DAY_FIRST_DATE):
        match = pattern.fullmatch(text)
        if match:
            return int(match.group(1))
    # "May 25, 1979", "25 May 1979", "Fri 25 May 1979 (USA)": one 4-digit year among names/days.
    words = [w for w in _DATE_WORDS.split(re.sub(r"\s*\(.*\)$", "", text.casefold())) if w]
    years = [w for w in words if len(w) == 4 and w.isascii() and w.isdigit()]
    if len(years) != 1 or not any(_MONTH.fullmatch(w) for w in words):
        return None
    others = [w for w in words if w not in years]
    if all(_MONTH.fullmatch(w) or _WEEKDAY.fullmatch(w) or _DAY.fullmatch(w) for w in others):
        return int(years[0])
    return None


_MINUTES: Final = re.compile(r"([0-9]{1,9})(?:\.0+)?\s*(?:m|min|mins|minute|minutes)?\.?")
_CLOCK: Final = re.compile(r"([0-9]{1,9}):([0-5][0-9])(?::([0-5][0-9]))?")
_HOURS_MINUTES: Final = re.compile(
    r"(?:([0-9]{1,9})\s*(?:h|hr|hrs|hour|hours)\.?)\s*,?\s*"
    r"(?:([0-9]{1,9})\s*(?:m|min|mins|minute|minutes)\.?)?"
)
_ISO_DURATION: Final = re.compile(r"pt(?:([0-9]{1,9})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,9})s)?")


def _runtime(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 64:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().casefold()
        if match := _MINUTES.fullmatch(text):
            return int(match.group(1))
        if match := _CLOCK.fullmatch(text):
            return int(match.group(1)) * 60 + int(match.group(2)) + (int(match.group(3) or 0) >= 30)
        if (match := _HOURS_MINUTES.fullmatch(text)) or (
            text != "pt" and (match := _ISO_DURATION.fullmatch(text))
        ):
            hours, minutes = int(match.group(1) or 0), int(match.group(2) or 0)
            seconds = int(match.group(3) or 0) if match.re is _ISO_DURATION else 0
            return hours * 60 + minutes + (seconds >= 30)
    raise InvalidMovie(
        "runtime_min",
        f"{shown(value)} is not a running time; accepted: minutes such as 117 or '117 min', "
        "or hours and minutes such as '1h 57m' or '1:57'",
    )


_RATING: Final = re.compile(
    r"([0-9]+(?:[.,][0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?\s*(?:/\s*10(?:\.0*)?)?", re.IGNORECASE
)


def _rating(value: object) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise InvalidMovie(
                "rating", f"{shown(value)} is out of range; accepted: 0 to 10"
            ) from None
    if isinstance(value, str):
        text = value.strip()
        match = _RATING.fullmatch(text)
        if match:
            number = text.partition("/")[0].strip().replace(",", ".")
            return float(number)
    raise InvalidMovie(
        "rating",
        f"{shown(value)} is not a rating; accepted: a number from 0 to 10 such as 8.1 or 8.1/10",
    )


def _extra_value(name: str, value: object) -> ExtraValue:
    if isinstance(value, str):
        return repair_mojibake(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _check_printable(name, value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(item, str | int | float) for item in value
    ):
        return ", ".join(_extra_text(name, item) for item in value)
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False)


def _extra_text(name: str, value: str | int | float) -> str:
    if isinstance(value, str):
        return repair_mojibake(value)
    return _int_text(name, value) if isinstance(value, int) else str(value)


def jsonable(value: object, depth: int = 0) -> Any:
    """`value` made of JSON types only: sets become lists, NaN text, unknown types their repr,
    numbers too long to print a short description."""
    if depth > 100:
        return "<nested too deeply>"
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _MAX_SHOWN_BITS else shown(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {_key_text(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item, depth + 1) for item in value]
    return repr(value)


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    try:
        return str(key)
    except ValueError:  # a number too long to print, maybe inside a tuple
        return shown(key, 1000)


# --- a source record -> a movie ----------------------------------------------------------------

_PARSERS: Final = {"year": _year, "runtime_min": _runtime, "rating": _rating}


class _Converter:
    """Turns source records into movies, remembering the plan for each set of keys."""

    def __init__(self, mapping: Mapping[str, str] | None, *, json_lists: bool = False) -> None:
        self.mapping: Mapping[str, str] = mapping or {}
        self.plans: dict[tuple[str, ...], _Plan] = {}
        self.json_lists = json_lists  # CSV/TSV: a list cell may be a JSON array of text

    def plan(self, keys: tuple[str, ...]) -> _Plan:
        plan = self.plans.get(keys)
        if plan is None:
            if len(self.plans) > 1000:
                self.plans.clear()
            plan = self.plans[keys] = _make_plan(keys, self.mapping)
        return plan

    def record(self, data: Mapping[str, Any]) -> Movie:
        keyed = {_key_text(k): v for k, v in data.items()}
        plan = self.plan(tuple(keyed))
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for field, key in plan.fields:
            raw = keyed[key]
            if _absent(raw):
                continue
            sources[field] = key
            try:
                values[field] = _field_value(field, raw, self.json_lists)
            except InvalidMovie as exc:
                raise _with_column(exc, key) from None
        if "title" not in values:
            column = dict(plan.fields).get("title")
            if column is not None:
                raise InvalidMovie(
                    "title",
                    f"no title in this row (column {column!r} is empty); every movie needs one",
                )
            raise InvalidMovie(
                "title",
                "no title in this row; accepted: a value under "
                + ", ".join(SYNONYMS["title"][:6])
                + ", or a key chosen with --map 'KEY=title'",
            )
        extra: dict[str, ExtraValue] = {}
        used = {name for _, name in plan.extras}
        for key, name in plan.extras:
            raw = keyed[key]
            nested = _nested_extra(raw) if key in plan.nested else None
            if nested is not None:
                for position, (inner, value) in enumerate(nested.items(), start=1):
                    if not _absent(value):
                        if isinstance(inner, int) and not isinstance(inner, bool):
                            _check_printable("extra field name", inner)
                        inner_name = _unique(_extra_name(_key_text(inner), position), used)
                        extra[inner_name] = _extra_value(inner_name, value)
                        sources[inner_name] = f"{key}.{_key_text(inner)}"
            elif not _absent(raw):
                extra[name] = _extra_value(name, raw)
                sources[name] = key
        try:
            return validate(Movie(**values, extra=extra))
        except InvalidMovie as exc:
            source = sources.get(exc.field) or sources.get(_extra_field(exc.field))
            raise _with_column(exc, source) from None


def _nested_extra(value: object) -> Mapping[Any, Any] | None:
    """The extra fields an "extra" key holds: an object, or (from CSV) the JSON text of one."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _extra_field(error_field: str) -> str:
    match = re.fullmatch(r"extra field '(.*)'", error_field)
    return match.group(1) if match else error_field


def _field_value(field: str, raw: object, json_lists: bool = False) -> Any:
    parser = _PARSERS.get(field)
    if parser is not None:
        return parser(raw)
    if field in LIST_FIELDS:
        listed = _json_list(raw) if json_lists and isinstance(raw, str) else None
        if listed is not None:
            raw = listed
        return _items(field, raw, _GENRE_SPLIT if field == "genres" else _CAST_SPLIT)
    if field == "director" and isinstance(raw, list | tuple):
        return ", ".join(_text("director", item) for item in raw)
    return _text(field, raw)


def _with_column(exc: InvalidMovie, column: str | None) -> InvalidMovie:
    if column is None or column == exc.field:
        return exc
    return InvalidMovie(exc.field, f"{exc.reason} (column {column!r})")


def record_from_mapping(data: Mapping[str, Any], mapping: Mapping[str, str] | None = None) -> Movie:
    """One source record (column or key -> value) as a validated movie, or InvalidMovie.

    Columns are recognised as described in the module docstring; `mapping` (SOURCE -> FIELD, as
    from `parse_mapping`) decides first. The message names the field, the column, and what is
    accepted.
    """
    return _Converter(mapping).record(data)


# --- files: encoding and format ----------------------------------------------------------------


def _fallback(error: UnicodeError) -> tuple[str, int]:
    # Bytes that are not valid in the chosen encoding are read as cp1252 (Latin-1 for the five
    # bytes cp1252 leaves undefined): every byte becomes a character, so nothing is lost.
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in bad), error.end


_FALLBACK: Final = "moviedb-importers-cp1252"
codecs.register_error(_FALLBACK, _fallback)


# A character decoded from a valid multi-byte UTF-8 sequence: not ASCII, and not one of the
# lone surrogates U+DC80-U+DCFF that "surrogateescape" makes of invalid bytes.
_MULTI_BYTE: Final = re.compile("[\u0080-\udc7f\udd00-\U0010ffff]")


def detect_encoding(path: Path) -> str:
    """The encoding to read a file in, from its first MiB: utf-8-sig, utf-16, utf-8 or cp1252.

    Files are read with a per-byte fallback: a byte that is not valid in the chosen encoding is
    read as cp1252, so nothing is lost. A file is read as UTF-8 when its first MiB holds at
    least one valid multi-byte UTF-8 sequence or no invalid byte at all, so a stray cp1252 byte
    in a UTF-8 file costs only that byte ("Брат" stays "Брат"). Only a start with invalid bytes
    and not a single multi-byte UTF-8 character is read as cp1252 as a whole.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    invalid = False
    with _open_binary(path) as stream:
        head = stream.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        size = len(head)
        final = False
        while True:
            text = decoder.decode(head, final)  # in pieces: the sniff itself stays small
            if not text.isascii():
                if _MULTI_BYTE.search(text):
                    return "utf-8"
                invalid = True
            if final or size >= _SNIFF_BYTES:
                break
            head = stream.read(_CHUNK_CHARS)
            size += len(head)
            final = not head
    return "cp1252" if invalid else "utf-8"


def _open_binary(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def _open_text(path: Path, encoding: str, newline: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        _open_binary(path), encoding=encoding, errors=_FALLBACK, newline=newline
    )


def detect_format(path: Path, explicit: str | None = None) -> str:
    """One of FORMATS: `explicit` if given, else the extension, else a look at the content."""
    if explicit is not None:
        name = _ALIASES.get(explicit.strip().lower(), explicit.strip().lower())
        if name not in FORMATS:
            raise ImportFormatError(f"{path}: unknown format {explicit!r}; {_ACCEPTED_FORMATS}")
        return name
    by_extension = _EXTENSIONS.get(path.suffix.lower())
    if by_extension is not None:
        return by_extension
    with _open_text(path, detect_encoding(path), "") as stream:
        head = stream.read(_CHUNK_CHARS)
    text = head.lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "json"
    if text.startswith("{"):
        first_line = text.split("\n", 1)[0]
        try:
            json.JSONDecoder().raw_decode(first_line)
        except ValueError:
            raise ImportFormatError(
                f"{path}: starts with '{{' but its first line is not a whole JSON object, so it "
                f"is neither NDJSON nor a JSON array; {_ACCEPTED_FORMATS}"
            ) from None
        return "ndjson"
    return "tsv" if "\t" in text.split("\n", 1)[0] else "csv"


# --- reading -----------------------------------------------------------------------------------


def read_rows(
    path: Path, *, format: str | None = None, mapping: Mapping[str, str] | None = None
) -> Iterator[Row | Rejected]:
    """Each record of the file, in order, as a Row (a valid movie) or a Rejected (why not).

    Streams in constant memory. Numbers: csv/tsv count data rows from 1 after the header (blank
    lines not counted; reasons also give the line), ndjson the line, json the array element
    (from 1). A generator: nothing is read until the first row is asked for. ImportFormatError
    comes before any row when the file cannot be read at all (missing, unknown format, no title
    column, a `mapping` column the file lacks, not a JSON array), and part-way when the
    structure breaks (invalid JSON between array elements; rows before it were yielded).
    """
    name = detect_format(path, format)
    encoding = detect_encoding(path)
    converter = _Converter(mapping, json_lists=name in ("csv", "tsv"))
    if name in ("csv", "tsv"):
        delimiter = "," if name == "csv" else "\t"
        header = _csv_header(path, encoding, delimiter)
        _check_header(path, header, converter)
        yield from _csv_rows(path, encoding, delimiter, header, converter)
    elif name == "ndjson":
        yield from _ndjson_rows(path, encoding, converter)
    else:
        _check_json_start(path, encoding)
        yield from _json_rows(path, encoding, converter)


def _convert(
    number: int, data: dict[str, Any], converter: _Converter, where: str
) -> Row | Rejected:
    try:
        return Row(number, converter.record(data))
    except InvalidMovie as exc:
        return Rejected(number, f"{where}{exc}", data)


# csv / tsv


def _csv_reader(stream: io.TextIOWrapper, delimiter: str, lines: list[str]) -> Any:
    def source() -> Iterator[str]:
        for line in stream:
            lines.append(line)
            yield line

    return csv.reader(source(), delimiter=delimiter, strict=True)


def _csv_header(path: Path, encoding: str, delimiter: str) -> list[str]:
    lines: list[str] = []
    with _open_text(path, encoding, "") as stream:
        reader = _csv_reader(stream, delimiter, lines)
        try:
            for cells in reader:
                if any(cell.strip() for cell in cells):
                    return _header_names(cells)
        except csv.Error as exc:
            raise ImportFormatError(
                f"{path}: the header (line {reader.line_num}) cannot be read: {exc}"
            ) from None
    return []


def _header_names(cells: list[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for position, cell in enumerate(cells, start=1):
        base = repair_mojibake(cell.strip().lstrip("\ufeff").strip()) or f"column {position}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base} ({n})"
        seen.add(name)
        names.append(name)
    return names


def _check_header(path: Path, header: list[str], converter: _Converter) -> None:
    if not header:
        return  # an empty file: no rows
    present = {normalise_name(h) or h for h in header}
    for source in converter.mapping:
        if (normalise_name(source) or source) not in present:
            raise ImportFormatError(
                f"{path}: --map {source!r}: the file has no such column; its columns: "
                + ", ".join(repr(h) for h in header)
            )
    if not any(field == "title" for field, _ in converter.plan(tuple(header)).fields):
        raise ImportFormatError(
            f"{path}: no title column among "
            + ", ".join(repr(h) for h in header)
            + "; accepted: a column named "
            + ", ".join(SYNONYMS["title"])
            + ", or choose one with --map 'COLUMN=title'"
        )


def _csv_rows(
    path: Path, encoding: str, delimiter: str, header: list[str], converter: _Converter
) -> Iterator[Row | Rejected]:
    lines: list[str] = []
    number = 0
    width = len(header)
    with _open_text(path, encoding, "") as stream:
        reader = _csv_reader(stream, delimiter, lines)
        seen_header = False
        while True:
            lines.clear()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = reader.line_num - len(lines) + 1
                text = "".join(lines)
                if "field limit" in str(exc):
                    raise ImportFormatError(
                        f"{path}: line {reader.line_num}: a value is longer than "
                        f"{csv.field_size_limit()} characters; probably the quote opened on "
                        f"line {line} is never closed"
                    ) from None
                number += 1
                yield Rejected(number, f"line {line}: {_quoting_reason(exc, delimiter)}", text)
                continue
            if not any(cell.strip() for cell in cells):
                continue
            if not seen_header:
                seen_header = True
                continue
            number += 1
            line = reader.line_num - len(lines) + 1
            where = f"line {line}: "
            if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                data = dict(zip(header, cells, strict=False))
                for position in range(width, len(cells)):
                    data[f"column {position + 1}"] = cells[position]
                yield Rejected(
                    number,
                    f"{where}has {len(cells)} values but the header has {width} columns; a value "
                    f"containing {_delimiter_name(delimiter)} must be in double quotes",
                    data,
                )
                continue
            data = dict(zip(header, cells, strict=False))
            for key in header[len(cells) :]:
                data[key] = ""
            yield _convert(number, data, converter, where)


def _delimiter_name(delimiter: str) -> str:
    return "a comma" if delimiter == "," else "a tab"


def _quoting_reason(exc: csv.Error, delimiter: str) -> str:
    message = str(exc)
    if "end of data" in message:
        return 'a quote (") opened here is never closed before the end of the file'
    return (
        f"bad quoting ({message}); a value containing {_delimiter_name(delimiter)}, a quote or "
        'a line break must be wrapped in double quotes, with each quote inside doubled ("")'
    )


# ndjson


def _ndjson_rows(path: Path, encoding: str, converter: _Converter) -> Iterator[Row | Rejected]:
    with _open_text(path, encoding, "\n") as stream:
        number = 0
        while True:
            line = stream.readline(_MAX_RECORD_CHARS + 1)
            if not line:
                return
            number += 1
            if len(line) > _MAX_RECORD_CHARS and not line.endswith("\n"):
                while (rest := stream.readline(_CHUNK_CHARS)) and not rest.endswith("\n"):
                    pass
                yield Rejected(
                    number,
                    f"the line is longer than {_MAX_RECORD_CHARS} characters; no movie is so large",
                    line[:200] + "…",
                )
                continue
            text = line.strip().lstrip("\ufeff")
            if not text:
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Rejected(
                    number,
                    f"not valid JSON ({exc.msg} at column {exc.colno}); "
                    "accepted: one JSON object per line",
                    text,
                )
                continue
            except (ValueError, RecursionError) as exc:
                yield Rejected(
                    number, f"not readable JSON ({exc}); accepted: one JSON object per line", text
                )
                continue
            if not isinstance(value, dict):
                yield Rejected(
                    number,
                    f"the line holds {_describe(value)}, not a JSON object; accepted: one object "
                    'per line such as {"title": "Alien", "year": 1979}',
                    text,
                )
                continue
            yield _convert(number, value, converter, "")


# json


def _check_json_start(path: Path, encoding: str) -> None:
    with _open_text(path, encoding, "") as stream:
        start = _JsonArray(stream, path).first_char()
    if start == "[":
        return
    if start == "":
        found = "is empty"
    elif start == "{":
        found = (
            "holds one JSON object, not an array of them (for one object per line use "
            "--format ndjson)"
        )
    else:
        found = f"starts with {start!r}, not '['"
    raise ImportFormatError(
        f"{path}: {found}; accepted: a JSON array of movie objects [{{...}}, ...]"
    )


def _json_rows(path: Path, encoding: str, converter: _Converter) -> Iterator[Row | Rejected]:
    with _open_text(path, encoding, "") as stream:
        for number, value in _JsonArray(stream, path).elements():
            if isinstance(value, dict):
                yield _convert(number, value, converter, "")
            else:
                yield Rejected(
                    number,
                    f"element {number} is {_describe(value)}, not a JSON object; accepted: "
                    'objects such as {"title": "Alien", "year": 1979}',
                    json.dumps(jsonable(value), ensure_ascii=False),
                )


_NON_SPACE: Final = re.compile(r"[^ \t\r\n\ufeff]")


class _JsonArray:
    """Peels the elements off a JSON array one at a time, holding one chunk and one element."""

    def __init__(self, stream: IO[str], path: Path) -> None:
        self.stream = stream
        self.path = path
        self.decoder = json.JSONDecoder(strict=False)  # lenient: raw tabs inside strings
        self.buffer = ""
        self.pos = 0
        self.lines_before = 0  # line breaks in text already dropped from the buffer
        self.eof = False

    def _read(self, size: int = _CHUNK_CHARS) -> bool:
        data = self.stream.read(size)
        if not data:
            self.eof = True
            return False
        self.lines_before += self.buffer.count("\n", 0, self.pos)
        self.buffer = self.buffer[self.pos :] + data
        self.pos = 0
        return True

    def first_char(self) -> str:
        """The next character that is not white space ("" at the end), left unconsumed."""
        while True:
            match = _NON_SPACE.search(self.buffer, self.pos)
            if match:
                self.pos = match.start()
                return self.buffer[self.pos]
            self.pos = len(self.buffer)
            if not self._read():
                return ""

    def _where(self, pos: int) -> str:
        line = self.lines_before + self.buffer.count("\n", 0, pos) + 1
        column = pos - (self.buffer.rfind("\n", 0, pos) + 1) + 1
        return f"line {line}, column {column}"

    def _fail(self, message: str) -> ImportFormatError:
        return ImportFormatError(
            f"{self.path}: {message}; the elements before it were read, the rest cannot be; "
            "accepted: a JSON array of movie objects"
        )

    def elements(self) -> Iterator[tuple[int, Any]]:
        self.first_char()
        self.pos += 1  # the "[" checked by _check_json_start
        number = 0
        if self.first_char() == "]":
            self.pos += 1
        else:
            while True:
                number += 1
                yield number, self._decode(number)
                char = self.first_char()
                if char == ",":
                    self.pos += 1
                    if self.first_char() != "]":
                        continue
                    char = "]"
                if char == "]":
                    self.pos += 1
                    break
                if char == "":
                    raise self._fail(f"the file ends after element {number} without a closing ']'")
                raise self._fail(
                    f"expected ',' or ']' after element {number} at {self._where(self.pos)}, "
                    f"found {char!r}"
                )
        trailing = self.first_char()
        if trailing:
            raise self._fail(f"unexpected {trailing!r} after the array at {self._where(self.pos)}")

    def _decode(self, number: int) -> Any:
        size = _CHUNK_CHARS
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof or len(self.buffer) - self.pos > _MAX_RECORD_CHARS:
                    raise self._fail(
                        f"element {number} is not valid JSON ({exc.msg} at {self._where(exc.pos)})"
                    ) from None
                size = max(size, len(self.buffer) - self.pos)  # grow: few retries per element
                self._read(size)
                continue
            except (ValueError, RecursionError) as exc:
                raise self._fail(f"element {number} cannot be read ({exc})") from None
            if end == len(self.buffer) and not self.eof and self._read():
                continue  # a number may go on in the next chunk: decode again with more text
            self.pos = end
            return value


# --- rejects -----------------------------------------------------------------------------------


class RejectsWriter:
    """`with RejectsWriter(path) as rejects: rejects.write(rejected)` -> one NDJSON line each.

    Each line is `{"row": N, "reason": "...", "data": ...}` with the row as it was read. The file
    is created (or emptied) on entry, so it always describes one run; `count` says how many.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._stream: IO[str] | None = None

    def __enter__(self) -> RejectsWriter:
        try:
            # A lone surrogate (from JSON "\ud800" or a pickle) can only be inside a JSON string,
            # where backslashreplace writes it as the JSON escape it came from.
            self._stream = self.path.open(
                "w", encoding="utf-8", errors="backslashreplace", newline="\n"
            )
        except OSError as exc:
            raise ImportFormatError(
                f"{self.path}: cannot write the rejected rows there: {exc.strerror or exc}"
            ) from None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def write(self, rejected: Rejected) -> None:
        if self._stream is None:
            raise RuntimeError("RejectsWriter.write() outside its `with` block")
        record = {"row": rejected.number, "reason": rejected.reason, "data": rejected.data}
        try:
            line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            line = json.dumps(jsonable(record), ensure_ascii=False)
        self._stream.write(line + "\n")
        self.count += 1
