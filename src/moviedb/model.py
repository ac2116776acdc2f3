"""The movie record, its validation, and title identity (pure: no I/O)."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Final

import msgspec

from moviedb.errors import InvalidMovie

MAX_TITLE_CHARS: Final = 500
MAX_TEXT_CHARS: Final = 20_000
MAX_LIST_ITEMS: Final = 500
MAX_EXTRA_FIELDS: Final = 100
# The whole record, as the JSON that stores and carries it (UTF-8 bytes). A server may be set
# to accept less (`moviedb-server --max-record`), never more.
MAX_RECORD_BYTES: Final = 256 * 1024
MIN_YEAR: Final = 1870
MAX_YEAR: Final = 2200

ExtraValue = str | int | float | bool


class Movie(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One movie. `title` plus `year` identify it; everything else is information about it."""

    title: str
    year: int | None = None
    director: str | None = None
    cast: list[str] = msgspec.field(default_factory=list)
    genres: list[str] = msgspec.field(default_factory=list)
    runtime_min: int | None = None
    rating: float | None = None
    plot: str | None = None
    extra: dict[str, ExtraValue] = msgspec.field(default_factory=dict)


KNOWN_FIELDS: Final = (
    "title",
    "year",
    "director",
    "cast",
    "genres",
    "runtime_min",
    "rating",
    "plot",
)
LIST_FIELDS: Final = frozenset({"cast", "genres"})
# Names an extra field cannot take: they label a copy's version and state wherever records are
# shown field by field ("deleted" marks a tombstone in a comparison).
RESERVED_NAMES: Final = frozenset({"extra", "deleted", "rev"})

# Apostrophes and full stops vanish inside words ("Charlie's" -> "charlies", "L.A." -> "la");
# every other punctuation mark separates words ("Spider-Man" -> "spider man").
_JOINING_PUNCTUATION: Final = frozenset("'’‘`´.·")
# Dropped before normalising: NFKD would turn "´" into a space and a combining accent, and "`"
# and "´" are symbols (Sk), not punctuation, so the loop below would otherwise keep "`".
_DROP_JOINING: Final = str.maketrans(dict.fromkeys(_JOINING_PUNCTUATION))


def fold_title(title: str) -> str:
    """The form used to look a title up: accents, case and punctuation do not matter.

    NFKD, casefold, NFKD again (casefolding can produce decomposable characters), combining
    marks dropped, punctuation dropped, whitespace collapsed. A title that is nothing but
    punctuation folds to its casefolded, whitespace-collapsed self so that it stays findable.
    """
    if title.isascii():
        # The same steps, for ASCII (NFKD changes nothing there), as one table lookup per
        # character: most titles take this path, once for every write the server checks.
        folded = " ".join(title.translate(_ASCII_FOLD).split())
        return folded if folded else " ".join(title.casefold().split())
    return _fold_unicode(title)


def _fold_unicode(title: str) -> str:
    """fold_title for any text, step by step."""
    joined = title.translate(_DROP_JOINING)
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", joined).casefold())
    out: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Mn" or ch in _JOINING_PUNCTUATION:
            continue
        if category[0] == "P" or category in ("Zs", "Cc", "Zl", "Zp"):
            out.append(" ")
        else:
            out.append(ch)
    folded = " ".join("".join(out).split())
    if folded:
        return folded
    return " ".join(title.casefold().split())


def _ascii_fold_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for code in range(128):
        ch = chr(code)
        category = unicodedata.category(ch)
        if ch in _JOINING_PUNCTUATION:
            table[code] = None
        elif category[0] == "P" or category in ("Zs", "Cc"):
            table[code] = " "
        else:
            table[code] = ch.casefold()
    return table


_ASCII_FOLD: Final = _ascii_fold_table()


def movie_key(title: str, year: int | None) -> str:
    """The identity of a movie: folded title and year. Remakes differ by year."""
    return f"{fold_title(title)}\x1f{'' if year is None else year}"


def key_of(movie: Movie) -> str:
    return movie_key(movie.title, movie.year)


def _text(field: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidMovie(field, f"must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidMovie(field, f"is {len(value)} characters long; at most {limit} are accepted")
    if "\x00" in value:
        raise InvalidMovie(field, "must not contain a NUL character")
    return value


def validate(movie: Movie) -> Movie:
    """Check every field and return a normalised copy, or raise InvalidMovie naming the field."""
    title = _text("title", movie.title, MAX_TITLE_CHARS).strip()
    if not title:
        raise InvalidMovie("title", "must not be empty")
    # A Movie built in Python (not decoded) carries whatever types it was given: check them, so
    # that a wrong type is an InvalidMovie naming the field rather than a TypeError.
    year = movie.year
    if year is not None and (not _is_whole(year) or not MIN_YEAR <= year <= MAX_YEAR):
        raise InvalidMovie("year", f"{year!r} is not a year; accepted: {MIN_YEAR} to {MAX_YEAR}")
    runtime = movie.runtime_min
    if runtime is not None and (not _is_whole(runtime) or not 1 <= runtime <= 100_000):
        raise InvalidMovie("runtime_min", f"{runtime!r} is not accepted; a whole number of minutes")
    rating = movie.rating
    if rating is not None:
        if not isinstance(rating, int | float) or isinstance(rating, bool):
            raise InvalidMovie("rating", f"{rating!r} is not a number; accepted: 0 to 10")
        if not math.isfinite(rating) or not 0 <= rating <= 10:
            raise InvalidMovie("rating", f"{rating!r} is out of range; accepted: 0 to 10")
        rating = float(rating)
    director = None if movie.director is None else _text("director", movie.director, 1000).strip()
    plot = None if movie.plot is None else _text("plot", movie.plot, MAX_TEXT_CHARS)
    lists: dict[str, list[str]] = {}
    for field in LIST_FIELDS:
        items = getattr(movie, field)
        if not isinstance(items, list):
            raise InvalidMovie(field, f"must be a list of text, got {type(items).__name__}")
        if len(items) > MAX_LIST_ITEMS:
            raise InvalidMovie(field, f"has {len(items)} entries; at most {MAX_LIST_ITEMS}")
        cleaned = [_text(field, item, 1000).strip() for item in items]
        lists[field] = [item for item in cleaned if item]
    if not isinstance(movie.extra, dict):
        raise InvalidMovie(
            "extra", f"must map field names to values, got {type(movie.extra).__name__}"
        )
    if len(movie.extra) > MAX_EXTRA_FIELDS:
        raise InvalidMovie("extra", f"has {len(movie.extra)} fields; at most {MAX_EXTRA_FIELDS}")
    for name, value in movie.extra.items():
        _check_extra(name, value)
    normal = Movie(
        title=title,
        year=year,
        director=director or None,
        cast=lists["cast"],
        genres=lists["genres"],
        runtime_min=runtime,
        rating=rating,
        plot=plot or None,
        extra=dict(sorted(movie.extra.items())),
    )
    check_size(normal)
    return normal


def record_size(movie: Movie) -> int:
    """The record's size as stored and sent: the bytes of its JSON."""
    return len(_encode(movie))


def check_size(movie: Movie, limit: int = MAX_RECORD_BYTES) -> None:
    try:
        size = record_size(movie)
    except UnicodeEncodeError:
        _reject_surrogates(movie)
        raise
    if size > limit:
        raise InvalidMovie(
            "record", f"is {size:,} bytes as JSON; at most {limit:,} bytes are accepted"
        )


_encode: Final = msgspec.json.Encoder().encode
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _reject_surrogates(movie: Movie) -> None:
    """InvalidMovie naming the text that holds a lone surrogate (JSON "\\ud800", or a pickle),
    which is not a character: it could not be stored or sent."""
    texts: list[tuple[str, str]] = [("title", movie.title)]
    texts += [(field, text) for field in ("director", "plot") if (text := getattr(movie, field))]
    texts += [(field, item) for field in ("cast", "genres") for item in getattr(movie, field)]
    for name, value in movie.extra.items():
        texts.append((f"extra field {name!r}", name))
        if isinstance(value, str):
            texts.append((name, value))
    for field, text in texts:
        match = _SURROGATE.search(text)
        if match:
            raise InvalidMovie(
                field,
                f"holds {match.group()!a}, half of a surrogate pair without its other half, which "
                "is not a character; accepted: text (a JSON escape such as \\ud83c\\udfac must "
                "come in pairs)",
            )


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_extra(name: object, value: object) -> None:
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 100
        or name in KNOWN_FIELDS
        or name in RESERVED_NAMES
    ):
        raise InvalidMovie(
            f"extra field {name!r}",
            "names must be 1-100 characters, not a standard field and not one of "
            + ", ".join(sorted(RESERVED_NAMES)),
        )
    if isinstance(value, str):
        _text(name, value, MAX_TEXT_CHARS)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidMovie(name, "must be a finite number")
    elif not isinstance(value, int | float):  # bool is an int
        raise InvalidMovie(
            name, f"must be text, a number, true or false; got {type(value).__name__}"
        )


def canonical_bytes(movie: Movie) -> bytes:
    """A byte string that is equal for equal records (sorted keys, defaults omitted)."""
    return msgspec.json.encode(movie, order="sorted")


def field_values(movie: Movie) -> dict[str, Any]:
    """Every field with a value, standard fields first, extras flattened after them."""
    values: dict[str, Any] = {}
    for field in KNOWN_FIELDS:
        value = getattr(movie, field)
        if value is not None and value != []:
            values[field] = value
    values.update(movie.extra)
    return values


# --- changing a record from FIELD=VALUE text (what `add --set` and `edit --set` accept) ----------

_INT_FIELDS: Final = {"year", "runtime_min"}


def parse_field_value(field: str, text: str) -> tuple[str, ExtraValue | list[str] | None]:
    """Turn the text of `--set FIELD=VALUE` into a typed value, or raise InvalidMovie."""
    name = field.strip()
    if not name:
        raise InvalidMovie("--set", "needs FIELD=VALUE with a field name before '='")
    if name in _INT_FIELDS:
        try:
            return name, int(text.strip())
        except ValueError:
            raise InvalidMovie(name, f"{text!r} is not a whole number") from None
    if name == "rating":
        try:
            return name, float(text.strip())
        except ValueError:
            raise InvalidMovie(name, f"{text!r} is not a number; accepted: 0 to 10") from None
    if name in LIST_FIELDS:
        return name, [item.strip() for item in text.split(",") if item.strip()]
    return name, text


def with_changes(
    movie: Movie, changes: dict[str, ExtraValue | list[str] | None], unset: list[str]
) -> Movie:
    """A validated copy of `movie` with fields set and unset (unknown names become extras)."""
    values = msgspec.structs.asdict(movie)
    extra = dict(movie.extra)
    for name in unset:
        if name == "title":
            raise InvalidMovie("title", "cannot be unset; every movie has a title")
        if name in KNOWN_FIELDS:
            values[name] = [] if name in LIST_FIELDS else None
        elif name in extra:
            del extra[name]
        else:
            raise InvalidMovie(name, "is not set on this movie, so it cannot be unset")
    for name, value in changes.items():
        if name in KNOWN_FIELDS:
            values[name] = value
        else:
            if isinstance(value, list):
                value = ", ".join(value)
            if value is None:
                extra.pop(name, None)
            else:
                extra[name] = value
    values["extra"] = extra
    return validate(Movie(**values))
