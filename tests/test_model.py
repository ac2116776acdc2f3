"""The movie record: title folding and identity, validation, `--set` parsing, canonical bytes."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moviedb import model
from moviedb.errors import InvalidMovie, MoviedbError
from moviedb.model import (
    KNOWN_FIELDS,
    MAX_EXTRA_FIELDS,
    MAX_LIST_ITEMS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    MAX_YEAR,
    MIN_YEAR,
    Movie,
    canonical_bytes,
    field_values,
    fold_title,
    key_of,
    movie_key,
    parse_field_value,
    validate,
    with_changes,
)


def invalid(field: str) -> Any:
    """`pytest.raises(InvalidMovie)` that also checks the error names `field`."""
    return pytest.raises(InvalidMovie, match=f"^{re.escape(field)}: ")


# --- title folding: table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "folded"),
    [
        ("Alien", "alien"),
        ("ALIEN", "alien"),
        ("Amélie", "amelie"),
        ("AMÉLIE", "amelie"),
        ("Ame\u0301lie", "amelie"),  # decomposed accent
        ("Charlie's Angels", "charlies angels"),
        ("Charlie’s Angels", "charlies angels"),  # typographic apostrophe
        ("Charlie`s Angels", "charlies angels"),
        ("Charlie´s Angels", "charlies angels"),  # acute accent typed as an apostrophe
        ("Charlie＇s Angels", "charlies angels"),  # fullwidth apostrophe
        ("L.A. Confidential", "la confidential"),
        ("E.T. the Extra-Terrestrial", "et the extra terrestrial"),
        ("WALL·E", "walle"),
        ("Spider-Man", "spider man"),
        ("Spider—Man", "spider man"),  # em dash
        ("Léon: The Professional", "leon the professional"),
        ("(500) Days of Summer", "500 days of summer"),
        ("M*A*S*H", "m a s h"),
        ("Face/Off", "face off"),
        ("¿Qué?", "que"),
        ('"Quoted"', "quoted"),
        ("  The   Matrix\t", "the matrix"),
        ("The\u00a0Matrix", "the matrix"),  # no-break space
        ("The\u3000Matrix\u2028", "the matrix"),  # ideographic space, line separator
        ("The\nMatrix", "the matrix"),
        ("a\x1fb", "a b"),  # the key separator can never appear inside a folded title
        ("ＡＬＩＥＮ", "alien"),  # fullwidth (NFKD compatibility)
        ("Oﬃce Space", "office space"),  # ligature
        ("Rocky Ⅱ", "rocky ii"),  # roman numeral
        ("Straße", "strasse"),  # casefold, not lower()
        ("İstanbul", "istanbul"),  # dotted capital I: the dot is a combining mark
        ("Ἀγάπη", "αγαπη"),
        ("ΣΊΣΥΦΟΣ", "σισυφοσ"),  # final sigma folds like any sigma
        ("Łódź", "łodz"),
        ("Se7en", "se7en"),
        ("C++", "c++"),  # symbols (Sm) are not punctuation
    ],
)
def test_fold_title(title: str, folded: str) -> None:
    assert fold_title(title) == folded


@pytest.mark.parametrize(
    "variants",
    [
        ["Amélie", "amelie", "AMELIE", "Ame\u0301lie", "  amélie  "],
        ["Charlie's Angels", "charlies angels", "CHARLIE’S ANGELS", "Charlies  Angels"],
        ["Spider-Man", "spider man", "SPIDER MAN", "Spider - Man", "spider–man"],
        ["WALL·E", "WallE", "walle", "Wall.E"],
        ["Straße", "STRASSE", "strasse"],
    ],
)
def test_variants_fold_alike(variants: list[str]) -> None:
    assert len({fold_title(v) for v in variants}) == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Spider-Man", "Spiderman"),  # a hyphen separates words, it does not join them
        ("Charlie's Angels", "Charlie s Angels"),  # an apostrophe joins
        ("Alien", "Aliens"),
        ("Se7en", "Seven"),
    ],
)
def test_different_titles_fold_differently(a: str, b: str) -> None:
    assert fold_title(a) != fold_title(b)


@pytest.mark.parametrize(
    ("title", "folded"),
    [
        ("?!", "?!"),
        ("...", "..."),
        ("  !  ?  ", "! ?"),
        ("！", "！"),  # fullwidth: kept as entered, only case and spaces change
        ("", ""),
        ("   ", ""),
    ],
)
def test_a_title_of_only_punctuation_stays_findable(title: str, folded: str) -> None:
    assert fold_title(title) == folded


def test_folding_does_not_change_the_displayed_title() -> None:
    movie = validate(Movie(title="  Amélie ", year=2001))
    assert movie.title == "Amélie"
    assert key_of(movie) == movie_key("amelie", 2001)


# --- title folding: properties ------------------------------------------------------------------

any_text = st.text(max_size=40)
# Letters, digits, punctuation and spaces from every script; what titles are made of.
title_chars = st.characters(categories=("L", "N", "P", "Zs", "Mn"))
titles = st.text(title_chars, max_size=40)
ascii_titles = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(any_text)
@settings(max_examples=400)
def test_fold_is_idempotent(title: str) -> None:
    once = fold_title(title)
    assert fold_title(once) == once


@given(any_text)
@settings(max_examples=300)
def test_fold_collapses_whitespace(title: str) -> None:
    folded = fold_title(title)
    assert folded == " ".join(folded.split())


@given(ascii_titles)
def test_fold_ignores_ascii_case(title: str) -> None:
    assert fold_title(title.upper()) == fold_title(title.lower()) == fold_title(title)


@given(titles)
@settings(max_examples=300)
def test_fold_ignores_case(title: str) -> None:
    # upper() and lower() are not inverse in Unicode ("ß".upper() is "SS", "ǅ" has three
    # forms); casefold is what folding promises to ignore, and the folded forms must agree.
    assert fold_title(title.casefold()) == fold_title(title)
    assert fold_title(title.upper()) == fold_title(title.upper().casefold())
    assert fold_title(title.lower()) == fold_title(title.lower().casefold())


@given(titles, st.sampled_from(["NFC", "NFD", "NFKC", "NFKD"]))
@settings(max_examples=300)
def test_fold_ignores_unicode_normal_form(title: str, form: str) -> None:
    normalized = unicodedata.normalize(form, title)
    if any(unicodedata.category(c)[0] in "LN" for c in title):
        assert fold_title(normalized) == fold_title(title)


@given(titles)
@settings(max_examples=300)
def test_a_folded_title_with_a_letter_has_no_marks_and_no_punctuation(title: str) -> None:
    folded = fold_title(title)
    if any(unicodedata.category(c)[0] in "LN" for c in folded):
        assert not any(unicodedata.category(c) == "Mn" for c in folded)
        assert not any(unicodedata.category(c)[0] == "P" for c in folded)


@given(st.text(st.characters(categories=("L", "N")), min_size=1, max_size=20))
def test_accents_do_not_matter(base: str) -> None:
    accented = "".join(c + "\u0301" for c in base)  # acute accent on every character
    assert fold_title(accented) == fold_title(base)


# --- movie_key ----------------------------------------------------------------------------------


def test_remakes_have_different_keys() -> None:
    assert movie_key("King Kong", 1933) != movie_key("King Kong", 2005)
    assert movie_key("King Kong", 1933) != movie_key("King Kong", None)


def test_key_is_folded_title_and_year() -> None:
    assert movie_key("King Kong", 1933) == "king kong\x1f1933"
    assert movie_key("King Kong", None) == "king kong\x1f"
    assert movie_key("KING KONG", 1933) == movie_key("King-Kong", 1933)
    assert movie_key("Amélie", 2001) == movie_key("AMELIE", 2001)


def test_key_of_uses_title_and_year() -> None:
    movie = Movie(title="Spider-Man", year=2002, director="Sam Raimi")
    assert key_of(movie) == movie_key("spider man", 2002)


@given(titles, titles, st.none() | st.integers(), st.none() | st.integers())
@settings(max_examples=300)
def test_keys_are_equal_exactly_when_folded_title_and_year_are(
    t1: str, t2: str, y1: int | None, y2: int | None
) -> None:
    same = fold_title(t1) == fold_title(t2) and y1 == y2
    assert (movie_key(t1, y1) == movie_key(t2, y2)) is same


@given(st.lists(st.tuples(titles, st.none() | st.integers(MIN_YEAR, MAX_YEAR)), max_size=20))
def test_keys_sort_by_folded_title_then_year(pairs: list[tuple[str, int | None]]) -> None:
    by_key = sorted(pairs, key=lambda p: (movie_key(*p), p))
    by_parts = sorted(pairs, key=lambda p: (fold_title(p[0]), -1 if p[1] is None else p[1], p))
    assert by_key == by_parts


@given(any_text, st.none() | st.integers())
def test_key_depends_only_on_the_folded_title(title: str, year: int | None) -> None:
    assert movie_key(fold_title(title), year) == movie_key(title, year)


# --- validate -----------------------------------------------------------------------------------


def test_invalid_movie_names_the_field() -> None:
    with pytest.raises(InvalidMovie) as info:
        validate(Movie(title="Alien", year=1492))
    assert isinstance(info.value, MoviedbError)
    assert info.value.field == "year"
    assert "1870" in info.value.reason
    assert "2200" in info.value.reason
    assert str(info.value).startswith("year: ")


def test_validate_normalises() -> None:
    movie = validate(
        Movie(
            title="  Alien ",
            year=1979,
            director="  Ridley Scott ",
            cast=["  Sigourney Weaver ", "", "   ", "Tom Skerritt"],
            genres=["horror", " sci-fi "],
            runtime_min=117,
            rating=8,
            plot="",
            extra={"zeta": 1, "alpha": "x", "mid": True},
        )
    )
    assert movie.title == "Alien"
    assert movie.director == "Ridley Scott"
    assert movie.cast == ["Sigourney Weaver", "Tom Skerritt"]
    assert movie.genres == ["horror", "sci-fi"]
    assert movie.rating == 8.0
    assert type(movie.rating) is float
    assert movie.plot is None
    assert list(movie.extra) == ["alpha", "mid", "zeta"]


def test_blank_director_becomes_absent() -> None:
    assert validate(Movie(title="x", director="   ")).director is None


def test_validate_does_not_change_its_argument() -> None:
    cast = [" a "]
    extra: dict[str, str | int | float | bool] = {"b": 1, "a": 2}
    original = Movie(title=" x ", cast=cast, extra=extra)
    validate(original)
    assert original.title == " x "
    assert original.cast == [" a "]
    assert list(original.extra) == ["b", "a"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "\t\n"}, "title"),
        ({"title": "x" * (MAX_TITLE_CHARS + 1)}, "title"),
        ({"title": "Al\x00ien"}, "title"),
        ({"title": 42}, "title"),
        ({"title": None}, "title"),
        ({"year": MIN_YEAR - 1}, "year"),
        ({"year": MAX_YEAR + 1}, "year"),
        ({"year": -1979}, "year"),
        ({"year": True}, "year"),
        ({"year": "1979"}, "year"),
        ({"year": 1979.0}, "year"),
        ({"year": 1979.5}, "year"),
        ({"runtime_min": 0}, "runtime_min"),
        ({"runtime_min": -90}, "runtime_min"),
        ({"runtime_min": 100_001}, "runtime_min"),
        ({"runtime_min": True}, "runtime_min"),
        ({"runtime_min": "90"}, "runtime_min"),
        ({"runtime_min": 90.5}, "runtime_min"),
        ({"rating": -0.1}, "rating"),
        ({"rating": 10.01}, "rating"),
        ({"rating": 11}, "rating"),
        ({"rating": math.nan}, "rating"),
        ({"rating": math.inf}, "rating"),
        ({"rating": -math.inf}, "rating"),
        ({"rating": True}, "rating"),
        ({"rating": "8"}, "rating"),
        ({"director": 5}, "director"),
        ({"director": "x" * 1001}, "director"),
        ({"director": "a\x00b"}, "director"),
        ({"plot": ["a"]}, "plot"),
        ({"plot": "x" * (MAX_TEXT_CHARS + 1)}, "plot"),
        ({"cast": "Sigourney Weaver"}, "cast"),
        ({"cast": None}, "cast"),
        ({"cast": [1]}, "cast"),
        ({"cast": ["x" * 1001]}, "cast"),
        ({"cast": ["a"] * (MAX_LIST_ITEMS + 1)}, "cast"),
        ({"genres": ("horror",)}, "genres"),
        ({"genres": [None]}, "genres"),
        ({"genres": ["a\x00"]}, "genres"),
        ({"extra": [("a", 1)]}, "extra"),
        ({"extra": {f"f{i}": i for i in range(MAX_EXTRA_FIELDS + 1)}}, "extra"),
        ({"extra": {"title": "x"}}, "extra field 'title'"),
        ({"extra": {"year": 1}}, "extra field 'year'"),
        ({"extra": {"extra": 1}}, "extra field 'extra'"),
        ({"extra": {"": 1}}, "extra field ''"),
        ({"extra": {"n" * 101: 1}}, f"extra field {'n' * 101!r}"),
        ({"extra": {5: "x"}}, "extra field 5"),
        ({"extra": {"country": math.nan}}, "country"),
        ({"extra": {"country": math.inf}}, "country"),
        ({"extra": {"country": "U\x00K"}}, "country"),
        ({"extra": {"country": "x" * (MAX_TEXT_CHARS + 1)}}, "country"),
        ({"extra": {"country": ["UK"]}}, "country"),
        ({"extra": {"country": None}}, "country"),
        ({"extra": {"country": {"name": "UK"}}}, "country"),
    ],
)
def test_validate_refuses(fields: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"title": "Alien", **fields}
    with invalid(field):
        validate(Movie(**values))


@pytest.mark.parametrize(
    "fields",
    [
        {"year": MIN_YEAR},
        {"year": MAX_YEAR},
        {"year": None},
        {"title": "x" * MAX_TITLE_CHARS},
        {"title": "  " + "x" * (MAX_TITLE_CHARS - 2)},
        {"runtime_min": 1},
        {"runtime_min": 100_000},
        {"rating": 0},
        {"rating": 0.0},
        {"rating": 10},
        {"rating": 10.0},
        {"rating": 7.25},
        {"cast": ["a"] * MAX_LIST_ITEMS},
        {"plot": "x" * MAX_TEXT_CHARS},
        {"extra": {f"f{i}": i for i in range(MAX_EXTRA_FIELDS)}},
        {"extra": {"n" * 100: "x", "flag": False, "count": 3, "score": 1.5, "big": 10**30}},
        {"extra": {"Title": "a standard field differs by case"}},
    ],
)
def test_validate_accepts_boundaries(fields: dict[str, Any]) -> None:
    values: dict[str, Any] = {"title": "Alien", **fields}
    validate(Movie(**values))


# --- parse_field_value ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("year", "1979", ("year", 1979)),
        ("year", " 1979 ", ("year", 1979)),
        (" year ", "1979", ("year", 1979)),
        ("runtime_min", "117", ("runtime_min", 117)),
        ("rating", "8.5", ("rating", 8.5)),
        ("rating", " 8 ", ("rating", 8.0)),
        ("cast", "Sigourney Weaver, Tom Skerritt", ("cast", ["Sigourney Weaver", "Tom Skerritt"])),
        ("cast", " a ,, b , ", ("cast", ["a", "b"])),
        ("cast", "", ("cast", [])),
        ("genres", "horror", ("genres", ["horror"])),
        ("title", "Alien", ("title", "Alien")),
        ("director", "Ridley Scott, Jr.", ("director", "Ridley Scott, Jr.")),
        ("plot", " in space ", ("plot", " in space ")),
        ("country", "UK", ("country", "UK")),
        ("country", "", ("country", "")),
    ],
)
def test_parse_field_value(field: str, text: str, expected: tuple[str, Any]) -> None:
    name, value = parse_field_value(field, text)
    assert (name, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize(
    ("field", "text", "named"),
    [
        ("year", "nineteen", "year"),
        ("year", "1979.5", "year"),
        ("year", "", "year"),
        ("runtime_min", "2h", "runtime_min"),
        ("rating", "good", "rating"),
        ("rating", "", "rating"),
        ("", "x", "--set"),
        ("   ", "x", "--set"),
    ],
)
def test_parse_field_value_refuses(field: str, text: str, named: str) -> None:
    with invalid(named):
        parse_field_value(field, text)


@given(st.lists(st.text(st.characters(exclude_characters=","), max_size=10), max_size=8))
def test_parse_list_field_splits_on_commas(items: list[str]) -> None:
    _, value = parse_field_value("cast", ",".join(items))
    assert value == [item.strip() for item in items if item.strip()]


@given(st.integers(-(10**12), 10**12))
def test_parse_whole_numbers(number: int) -> None:
    assert parse_field_value("year", str(number)) == ("year", number)
    assert parse_field_value("runtime_min", f" {number} ") == ("runtime_min", number)


# --- with_changes -------------------------------------------------------------------------------

ALIEN = validate(
    Movie(
        title="Alien",
        year=1979,
        director="Ridley Scott",
        cast=["Sigourney Weaver"],
        genres=["horror"],
        rating=8.5,
        extra={"country": "UK"},
    )
)


def test_with_changes_sets_fields() -> None:
    changed = with_changes(ALIEN, {"director": "R. Scott", "runtime_min": 117}, [])
    assert changed.director == "R. Scott"
    assert changed.runtime_min == 117
    assert changed.title == "Alien"
    assert changed.cast == ["Sigourney Weaver"]


def test_with_changes_from_parsed_text() -> None:
    changes = dict(
        parse_field_value(f, t)
        for f, t in [("cast", "Sigourney Weaver, John Hurt"), ("rating", "8.4"), ("lang", "en")]
    )
    changed = with_changes(ALIEN, changes, [])
    assert changed.cast == ["Sigourney Weaver", "John Hurt"]
    assert changed.rating == 8.4
    assert changed.extra == {"country": "UK", "lang": "en"}


def test_with_changes_unknown_names_become_sorted_extras() -> None:
    changed = with_changes(ALIEN, {"budget": 11_000_000, "awards": "Oscar"}, [])
    assert changed.extra == {"awards": "Oscar", "budget": 11_000_000, "country": "UK"}
    assert list(changed.extra) == ["awards", "budget", "country"]


def test_with_changes_joins_a_list_for_an_extra() -> None:
    assert with_changes(ALIEN, {"studios": ["Fox", "Brandywine"]}, []).extra["studios"] == (
        "Fox, Brandywine"
    )


def test_with_changes_none_removes_an_extra() -> None:
    assert with_changes(ALIEN, {"country": None}, []).extra == {}
    assert with_changes(ALIEN, {"absent": None}, []).extra == {"country": "UK"}


def test_with_changes_none_clears_a_standard_field() -> None:
    assert with_changes(ALIEN, {"director": None}, []).director is None


def test_with_changes_unsets() -> None:
    changed = with_changes(ALIEN, {}, ["director", "cast", "rating", "country"])
    assert changed.director is None
    assert changed.cast == []
    assert changed.rating is None
    assert changed.extra == {}
    assert changed.genres == ["horror"]


def test_with_changes_unset_then_set_keeps_the_new_value() -> None:
    assert with_changes(ALIEN, {"director": "X"}, ["director"]).director == "X"


def test_with_changes_cannot_unset_the_title() -> None:
    with invalid("title"):
        with_changes(ALIEN, {}, ["title"])


def test_with_changes_cannot_unset_what_is_not_there() -> None:
    with invalid("budget"):
        with_changes(ALIEN, {}, ["budget"])


def test_with_changes_validates() -> None:
    with invalid("rating"):
        with_changes(ALIEN, {"rating": 11.0}, [])
    with invalid("year"):
        with_changes(ALIEN, {"year": "1979"}, [])
    with invalid("title"):
        with_changes(ALIEN, {"title": "  "}, [])
    with invalid("extra field 'extra'"):
        with_changes(ALIEN, dict([parse_field_value("extra", "x")]), [])


def test_with_changes_normalises() -> None:
    changed = with_changes(ALIEN, {"cast": [" a ", "", "b "], "title": " Alien "}, [])
    assert changed.cast == ["a", "b"]
    assert changed.title == "Alien"


def test_with_changes_leaves_the_original_alone() -> None:
    before = canonical_bytes(ALIEN)
    with_changes(ALIEN, {"cast": ["x"], "country": None, "new": "y"}, ["genres"])
    assert canonical_bytes(ALIEN) == before
    assert ALIEN.extra == {"country": "UK"}
    assert ALIEN.genres == ["horror"]


def test_with_no_changes_is_equal() -> None:
    assert with_changes(ALIEN, {}, []) == ALIEN


# --- field_values -------------------------------------------------------------------------------


def test_field_values_lists_set_fields_then_extras() -> None:
    values = field_values(ALIEN)
    assert list(values) == [
        "title",
        "year",
        "director",
        "cast",
        "genres",
        "rating",
        "country",
    ]
    assert values["country"] == "UK"


# --- canonical bytes ----------------------------------------------------------------------------


def test_canonical_bytes_sorts_keys_and_omits_defaults() -> None:
    assert canonical_bytes(Movie(title="x")) == b'{"title":"x"}'
    movie = Movie(title="Alien", year=1979, director="Ridley Scott", extra={"b": 1, "a": 2})
    assert canonical_bytes(movie) == (
        b'{"director":"Ridley Scott","extra":{"a":2,"b":1},"title":"Alien","year":1979}'
    )


def test_canonical_bytes_ignore_extra_insertion_order() -> None:
    a = Movie(title="x", extra={"b": 1, "a": "2", "c": True})
    b = Movie(title="x", extra={"c": True, "a": "2", "b": 1})
    assert canonical_bytes(a) == canonical_bytes(b)


def test_canonical_bytes_differ_for_different_records() -> None:
    records = [
        Movie(title="Alien"),
        Movie(title="alien"),
        Movie(title="Alien", year=1979),
        Movie(title="Alien", rating=8.0),
        Movie(title="Alien", cast=["a", "b"]),
        Movie(title="Alien", cast=["b", "a"]),
        Movie(title="Alien", extra={"x": "1"}),
        Movie(title="Alien", extra={"x": 1}),
        Movie(title="Alien", extra={"x": True}),
    ]
    assert len({canonical_bytes(m) for m in records}) == len(records)


names = st.text(min_size=1, max_size=12).filter(lambda n: n not in KNOWN_FIELDS and n != "extra")
texts = st.text(max_size=30).filter(lambda t: "\x00" not in t)
extra_values = (
    texts | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.booleans()
)
movies = st.builds(
    Movie,
    title=st.text(min_size=1, max_size=40).filter(lambda t: t.strip() and "\x00" not in t),
    year=st.none() | st.integers(MIN_YEAR, MAX_YEAR),
    director=st.none() | texts,
    cast=st.lists(texts, max_size=4),
    genres=st.lists(texts, max_size=4),
    runtime_min=st.none() | st.integers(1, 100_000),
    rating=st.none() | st.floats(0, 10) | st.integers(0, 10),
    plot=st.none() | texts,
    extra=st.dictionaries(names, extra_values, max_size=5),
).map(validate)


@given(movies)
def test_validate_is_idempotent(movie: Movie) -> None:
    assert validate(movie) == movie
    assert canonical_bytes(validate(movie)) == canonical_bytes(movie)


@given(movies)
def test_canonical_bytes_round_trip(movie: Movie) -> None:
    data = canonical_bytes(movie)
    decoded = msgspec.json.decode(data, type=Movie)
    assert decoded == movie
    assert canonical_bytes(decoded) == data


@given(movies, st.randoms(use_true_random=False))
def test_canonical_bytes_are_deterministic(movie: Movie, random: Any) -> None:
    items = list(movie.extra.items())
    random.shuffle(items)
    rebuilt = Movie(**{**msgspec.structs.asdict(movie), "extra": dict(items)})
    assert canonical_bytes(rebuilt) == canonical_bytes(movie)
    assert canonical_bytes(msgspec.structs.replace(movie)) == canonical_bytes(movie)


@given(movies)
def test_validated_movie_keeps_its_key(movie: Movie) -> None:
    assert key_of(movie) == movie_key(movie.title, movie.year)
    assert key_of(validate(Movie(title=f"  {movie.title}  ", year=movie.year))) == key_of(movie)


@given(st.text(st.characters(max_codepoint=0x7F), max_size=60))
@settings(max_examples=1000)
def test_ascii_fold_takes_the_same_steps(title: str) -> None:
    # fold_title's table for ASCII must give what the step-by-step path gives.
    assert fold_title(title) == model._fold_unicode(title)


def test_ascii_fold_table_covers_every_ascii_character() -> None:
    every = "".join(chr(c) for c in range(128))
    assert fold_title(every) == model._fold_unicode(every)
    for c in range(128):
        assert fold_title(f"a{chr(c)}b") == model._fold_unicode(f"a{chr(c)}b"), c
