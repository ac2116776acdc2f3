"""The wire protocol without sockets: requests and replies as byte strings, and line framing."""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moviedb import protocol
from moviedb.model import MAX_YEAR, MIN_YEAR, Movie, validate
from moviedb.protocol import (
    DEFAULT_MAX_LINE,
    ERROR_CODES,
    OPS,
    Get,
    GetResult,
    Hello,
    HelloResult,
    LineFramer,
    LineTooLong,
    ListPage,
    ListResult,
    Put,
    PutResult,
    RequestError,
    decode_reply,
    decode_request,
    decode_result,
    encode_error,
    encode_ok,
    encode_request,
)
from moviedb.versions import Copy, child, first_copy

ALIEN = first_copy(validate(Movie(title="Alien", year=1979, director="Ridley Scott")))


def line(value: Any) -> bytes:
    return json.dumps(value).encode()


def decode_or_error(raw: bytes) -> protocol.AnyRequest | RequestError:
    """The request, or the RequestError; any other exception fails the test."""
    try:
        return decode_request(raw)
    except RequestError as exc:
        return exc


# --- decoding requests --------------------------------------------------------------------------


def test_ops() -> None:
    assert OPS == (
        "digest",
        "fetch",
        "get",
        "hello",
        "keys",
        "list",
        "purge",
        "put",
        "put_batch",
        "search",
        "stats",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"op":"hello"}', Hello()),
        (b'{"op": "hello", "id": 1, "client": "cli"}', Hello(id=1, client="cli")),
        (b'  {"id": "a", "op": "hello"}  ', Hello(id="a")),
        (b'{"op":"get","title":"Alien"}', Get(title="Alien")),
        (b'{"op":"get","title":"Alien","year":1979,"id":7}', Get(id=7, title="Alien", year=1979)),
        (b'{"op":"get","title":"Alien","year":null}', Get(title="Alien")),
        (b'{"op":"get","title":"Am\\u00e9lie"}', Get(title="Amélie")),
        ('{"op":"get","title":"Amélie"}'.encode(), Get(title="Amélie")),
        (b'{"op":"get","title":""}', Get(title="")),  # blank titles are the handler's business
        (b'{"op":"list"}', ListPage()),
        (
            b'{"op":"list","after":"alien\\u001f1979","limit":2,"id":-3}',
            ListPage(id=-3, after="alien\x1f1979", limit=2),
        ),
        (b'{"op":"list","id":0,"limit":5000}', ListPage(id=0, limit=5000)),  # range: handler
    ],
)
def test_decode_request(raw: bytes, expected: protocol.AnyRequest) -> None:
    request = decode_request(raw)
    assert request == expected
    assert type(request) is type(expected)


def test_list_defaults() -> None:
    request = decode_request(b'{"op":"list"}')
    assert isinstance(request, ListPage)
    assert request.after is None
    assert request.limit == 500
    assert request.id is None


def test_decode_put() -> None:
    raw = line({"op": "put", "id": 3, "copy": msgspec.to_builtins(ALIEN)})
    request = decode_request(raw)
    assert isinstance(request, Put)
    assert request.id == 3
    assert request.copy == ALIEN


def test_decode_put_as_in_the_documentation() -> None:
    raw = (
        b'{"id": 3, "op": "put", "copy": {"key": "alien\\u001f1979", "movie": '
        b'{"title": "Alien", "year": 1979}, "rev": "1-53117294e52fb071"}}'
    )
    request = decode_request(raw)
    assert isinstance(request, Put)
    assert request.copy == first_copy(Movie(title="Alien", year=1979))


BAD_INPUTS: list[tuple[str, bytes, str, protocol.RequestId]] = [
    # not JSON at all, or not one JSON value in UTF-8
    ("empty", b"", protocol.BAD_JSON, None),
    ("blank", b"   ", protocol.BAD_JSON, None),
    ("text", b"hello", protocol.BAD_JSON, None),
    ("truncated", b'{"op":"hello"', protocol.BAD_JSON, None),
    ("single quotes", b"{'op':'hello'}", protocol.BAD_JSON, None),
    ("trailing garbage", b'{"op":"hello"} x', protocol.BAD_JSON, None),
    ("two objects", b'{"op":"hello"}{"op":"hello"}', protocol.BAD_JSON, None),
    # msgspec stops at the first invalid member; what follows it is still not JSON
    ("truncated after an unknown op", b'{"op":"zap","id":1', protocol.BAD_JSON, None),
    ("truncated after an empty op", b'{"op":""', protocol.BAD_JSON, None),
    ("truncated after a bad member", b'{"op":"get","id":1,"title":5', protocol.BAD_JSON, None),
    ("malformed after a bad member", b'{"op":"get","id":1,"title":5,}', protocol.BAD_JSON, None),
    ("invalid utf-8 outside strings", b"\xff", protocol.BAD_JSON, None),
    (
        "invalid utf-8 in a string",
        b'{"op":"hello","id":1,"client":"\xff\xfe"}',
        protocol.BAD_JSON,
        None,
    ),
    ("utf-8 surrogate bytes", b'{"op":"get","title":"\xed\xa0\x80"}', protocol.BAD_JSON, None),
    ("escaped lone surrogate", b'{"op":"get","id":1,"title":"\\ud800"}', protocol.BAD_JSON, None),
    ("invalid utf-8 in an unknown op", b'{"op":"zap","id":"\xff"}', protocol.BAD_JSON, None),
    (
        "invalid utf-8 after a bad field",
        b'{"op":"get","title":5,"x":"\xff"}',
        protocol.BAD_JSON,
        None,
    ),
    (
        "nested too deeply",
        b'{"op":"hello","client":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        protocol.BAD_JSON,
        None,
    ),
    (
        "nested too deeply after an unknown op",
        b'{"op":"zap","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        protocol.BAD_JSON,
        None,
    ),
    # JSON, but not an object (as the server tests pin it; see docs/protocol.md)
    ("array", b"[1, 2, 3]", protocol.BAD_REQUEST, None),
    ("string", b'"hello"', protocol.BAD_REQUEST, None),
    ("number", b"42", protocol.BAD_REQUEST, None),
    ("null", b"null", protocol.BAD_REQUEST, None),
    # objects that are not requests
    ("no op", line({"id": 3, "title": "Alien"}), protocol.BAD_REQUEST, 3),
    ("empty object", b"{}", protocol.BAD_REQUEST, None),
    ("op of the wrong type", line({"op": 5, "id": 2}), protocol.BAD_REQUEST, 2),
    ("op null", line({"op": None, "id": "n"}), protocol.BAD_REQUEST, "n"),
    ("unknown op", line({"op": "frobnicate", "id": 5}), protocol.UNKNOWN_OP, 5),
    ("unknown op, string id", line({"op": "GET", "id": "x"}), protocol.UNKNOWN_OP, "x"),
    ("unknown op, no id", line({"op": "delete"}), protocol.UNKNOWN_OP, None),
    ("unknown op, bad id", line({"op": "delete", "id": [1]}), protocol.UNKNOWN_OP, None),
    ("missing title", line({"op": "get", "id": "five"}), protocol.BAD_REQUEST, "five"),
    ("title not text", line({"op": "get", "id": 4, "title": 42}), protocol.BAD_REQUEST, 4),
    (
        "year a bool",
        line({"op": "get", "id": 7, "title": "x", "year": True}),
        protocol.BAD_REQUEST,
        7,
    ),
    (
        "year text",
        line({"op": "get", "id": 7, "title": "x", "year": "1979"}),
        protocol.BAD_REQUEST,
        7,
    ),
    (
        "year a float",
        line({"op": "get", "id": 7, "title": "x", "year": 1979.0}),
        protocol.BAD_REQUEST,
        7,
    ),
    ("unknown member", line({"op": "hello", "id": 8, "surprise": 1}), protocol.BAD_REQUEST, 8),
    ("misspelt member", line({"op": "get", "id": 8, "titel": "x"}), protocol.BAD_REQUEST, 8),
    ("limit text", line({"op": "list", "id": 9, "limit": "ten"}), protocol.BAD_REQUEST, 9),
    # a number no float holds: the line cannot be read, so not even its id
    ("limit out of range", b'{"op":"list","id":9,"limit":1e400}', protocol.BAD_REQUEST, None),
    ("unknown op, number out of range", b'{"op":"zap","x":1e400}', protocol.UNKNOWN_OP, None),
    ("put without copy", line({"op": "put", "id": 12}), protocol.BAD_REQUEST, 12),
    (
        "copy of the wrong shape",
        line({"op": "put", "id": 13, "copy": {"key": "k"}}),
        protocol.BAD_REQUEST,
        13,
    ),
    (
        "copy with an unknown member",
        line({"op": "put", "id": 14, "copy": {**msgspec.to_builtins(ALIEN), "colour": 1}}),
        protocol.BAD_REQUEST,
        14,
    ),
    (
        "movie with an unknown member",
        line(
            {
                "op": "put",
                "id": 15,
                "copy": {**msgspec.to_builtins(ALIEN), "movie": {"title": "x", "colour": 1}},
            }
        ),
        protocol.BAD_REQUEST,
        15,
    ),
    # ids of the wrong type are not echoed
    ("id a bool", line({"op": "get", "id": True, "title": "x"}), protocol.BAD_REQUEST, None),
    ("id a float", line({"op": "hello", "id": 1.5}), protocol.BAD_REQUEST, None),
    ("id a whole float", line({"op": "hello", "id": 1.0}), protocol.BAD_REQUEST, None),
    ("id a list", line({"op": "hello", "id": [1]}), protocol.BAD_REQUEST, None),
    ("id an object", line({"op": "hello", "id": {"n": 1}}), protocol.BAD_REQUEST, None),
    (
        "id a bool, unknown member",
        line({"op": "hello", "id": False, "x": 1}),
        protocol.BAD_REQUEST,
        None,
    ),
]


@pytest.mark.parametrize(
    ("raw", "code", "request_id"),
    [pytest.param(raw, code, rid, id=what) for what, raw, code, rid in BAD_INPUTS],
)
def test_bad_requests(raw: bytes, code: str, request_id: protocol.RequestId) -> None:
    with pytest.raises(RequestError) as info:
        decode_request(raw)
    error = info.value
    assert error.code == code
    assert error.request_id == request_id
    assert type(error.request_id) is type(request_id)
    assert error.message
    assert str(error) == error.message
    assert error.code in ERROR_CODES


def test_unknown_op_lists_the_accepted_ops() -> None:
    with pytest.raises(RequestError) as info:
        decode_request(b'{"op":"frobnicate","id":5}')
    assert info.value.message == f"unknown op 'frobnicate'; accepted: {', '.join(OPS)}"


def test_missing_op_lists_the_accepted_ops() -> None:
    with pytest.raises(RequestError) as info:
        decode_request(b'{"id":5}')
    assert ", ".join(OPS) in info.value.message


def test_bad_request_names_the_member() -> None:
    with pytest.raises(RequestError) as info:
        decode_request(b'{"op":"get","id":4,"title":42}')
    assert "$.title" in info.value.message
    with pytest.raises(RequestError) as info:
        decode_request(b'{"op":"get","id":4,"titel":"x"}')
    assert "titel" in info.value.message


# --- encoding replies ---------------------------------------------------------------------------


def test_encode_ok_shape() -> None:
    encoded = encode_ok(7, GetResult(copies=[]))
    assert encoded.endswith(b"\n")
    assert encoded.count(b"\n") == 1
    assert json.loads(encoded) == {"ok": True, "id": 7, "result": {"copies": []}}


def test_encode_ok_with_a_string_id_and_a_struct() -> None:
    result = HelloResult(protocol=1, name="alpha", server_id="abc", movies=2, software="x")
    assert json.loads(encode_ok("req-1", result)) == {
        "ok": True,
        "id": "req-1",
        "result": {
            "protocol": 1,
            "name": "alpha",
            "server_id": "abc",
            "movies": 2,
            "software": "x",
            "digest": "",
            "tombstones": 0,
            "access": "read-write",
        },
    }


def test_encode_error_shape() -> None:
    encoded = encode_error(7, protocol.BAD_REQUEST, "Expected `str`, got `int` - at `$.title`")
    assert encoded.endswith(b"\n")
    assert encoded.count(b"\n") == 1
    assert json.loads(encoded) == {
        "ok": False,
        "id": 7,
        "error": {"code": "bad_request", "message": "Expected `str`, got `int` - at `$.title`"},
    }


def test_an_unprompted_error_has_no_id() -> None:
    reply = json.loads(encode_error(None, protocol.LINE_TOO_LONG, "too long"))
    assert reply == {"ok": False, "error": {"code": "line_too_long", "message": "too long"}}


def test_put_result_omits_current_unless_given() -> None:
    assert json.loads(encode_ok(1, PutResult(status="applied")))["result"] == {"status": "applied"}
    stale = json.loads(encode_ok(1, PutResult(status="stale", current=ALIEN)))["result"]
    assert stale["status"] == "stale"
    assert msgspec.convert(stale["current"], Copy) == ALIEN


def test_replies_decode() -> None:
    raw = decode_reply(encode_ok(4, ListResult(copies=[ALIEN], next="alien\x1f1979")).rstrip())
    assert raw.ok is True
    assert raw.id == 4
    assert raw.error is None
    page = decode_result(raw.result, ListResult)
    assert page == ListResult(copies=[ALIEN], next="alien\x1f1979")

    raw = decode_reply(encode_error("x", protocol.INTERNAL, "see log"))
    assert raw.ok is False
    assert raw.id == "x"
    assert raw.error == protocol.ErrorBody(code="internal", message="see log")


@given(st.none() | st.integers() | st.text(), st.sampled_from(ERROR_CODES), st.text())
def test_any_error_reply_is_one_line_with_one_shape(
    request_id: protocol.RequestId, code: str, message: str
) -> None:
    encoded = encode_error(request_id, code, message)
    assert encoded.count(b"\n") == 1
    assert encoded.endswith(b"\n")
    reply = json.loads(encoded)
    expected: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message}}
    if request_id is not None:
        expected["id"] = request_id
    assert reply == expected
    assert LineFramer().feed(encoded) == [encoded.rstrip(b"\n")]


def test_error_codes_are_distinct_snake_case() -> None:
    assert len(set(ERROR_CODES)) == len(ERROR_CODES)
    for code in ERROR_CODES:
        assert code.replace("_", "").isalpha()
        assert code == code.lower()


# --- round trips --------------------------------------------------------------------------------

ids = st.none() | st.integers() | st.text(max_size=20)
texts = st.text(max_size=30)
movies = st.builds(
    Movie,
    title=st.text(min_size=1, max_size=30).filter(lambda t: t.strip() and "\x00" not in t),
    year=st.none() | st.integers(MIN_YEAR, MAX_YEAR),
    cast=st.lists(st.text(max_size=10).filter(lambda t: "\x00" not in t), max_size=3),
    rating=st.none() | st.floats(0, 10),
    extra=st.dictionaries(
        st.sampled_from(["country", "language", "awards"]),
        st.text(max_size=10).filter(lambda t: "\x00" not in t)
        | st.integers()
        | st.booleans()
        | st.floats(allow_nan=False, allow_infinity=False),
        max_size=2,
    ),
).map(validate)


@st.composite
def copies(draw: st.DrawFn) -> Copy:
    copy = first_copy(draw(movies), now=draw(st.floats(0, 2e9)))
    if draw(st.booleans()):
        copy = child([copy], copy.movie, deleted=draw(st.booleans()), now=copy.written_at + 1)
    return copy


requests = st.one_of(
    st.builds(Hello, id=ids, client=st.none() | texts),
    st.builds(Get, id=ids, title=texts, year=st.none() | st.integers()),
    st.builds(Put, id=ids, copy=copies()),
    st.builds(ListPage, id=ids, after=st.none() | texts, limit=st.integers()),
)


@given(requests)
@settings(max_examples=200)
def test_any_request_round_trips(request: protocol.AnyRequest) -> None:
    encoded = encode_request(request)
    assert encoded.count(b"\n") == 1
    assert encoded.endswith(b"\n")
    decoded = decode_request(encoded.rstrip(b"\n"))
    assert decoded == request
    assert type(decoded) is type(request)
    assert json.loads(encoded)["op"] == type(request).__struct_config__.tag


@given(st.lists(requests, max_size=6), st.data())
@settings(max_examples=100)
def test_pipelined_requests_survive_any_chunking(
    batch: list[protocol.AnyRequest], data: st.DataObject
) -> None:
    stream = b"".join(encode_request(r) for r in batch)
    framer = LineFramer()
    decoded = [decode_request(x) for c in chunked(stream, data) for x in framer.feed(c)]
    assert decoded == batch
    assert framer.pending == 0


@given(ids, st.sampled_from((*OPS, "zap", "HELLO", "")), st.dictionaries(texts, texts, max_size=3))
@settings(max_examples=200)
def test_the_id_of_a_refused_object_is_echoed(
    request_id: protocol.RequestId, op: str, members: dict[str, str]
) -> None:
    raw = msgspec.json.encode({**members, "op": op, "id": request_id})
    outcome = decode_or_error(raw)
    if isinstance(outcome, RequestError):
        assert outcome.code in (protocol.BAD_REQUEST, protocol.UNKNOWN_OP)
        assert outcome.request_id == request_id
    else:
        assert outcome.id == request_id


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values | st.dictionaries(st.sampled_from(["op", "id", "title", "copy"]), json_values))
@settings(max_examples=150)
def test_any_json_is_a_request_or_a_request_error(value: Any) -> None:
    outcome = decode_or_error(json.dumps(value).encode())
    if isinstance(outcome, RequestError):
        assert outcome.code in (protocol.BAD_REQUEST, protocol.UNKNOWN_OP, protocol.BAD_JSON)
    else:
        assert isinstance(outcome, Hello | Get | Put | ListPage)


@given(st.binary(max_size=60) | requests.map(encode_request), st.data())
@settings(max_examples=300)
def test_any_bytes_are_a_request_or_a_request_error(raw: bytes, data: st.DataObject) -> None:
    if raw and data.draw(st.booleans()):  # corrupt a valid line somewhere
        at = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=3)) + raw[at + 1 :]
    outcome = decode_or_error(raw)
    if isinstance(outcome, RequestError):
        assert outcome.code in ERROR_CODES


# --- line framing -------------------------------------------------------------------------------


def chunked(stream: bytes, data: st.DataObject) -> list[bytes]:
    """`stream` cut at arbitrary places (empty chunks included)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def feed_all(framer: LineFramer, chunks: list[bytes], into: list[bytes]) -> None:
    for chunk in chunks:
        into.extend(framer.feed(chunk))


def test_one_line() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"op":"hello"}\n') == [b'{"op":"hello"}']
    assert framer.pending == 0


def test_a_line_split_across_chunks() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"op":') == []
    assert framer.pending == 6
    assert framer.feed(b'"hello"') == []
    assert framer.pending == 13
    assert framer.feed(b"}\n{") == [b'{"op":"hello"}']
    assert framer.pending == 1
    assert framer.feed(b"}\n") == [b"{}"]
    assert framer.pending == 0


def test_a_newline_alone() -> None:
    framer = LineFramer()
    assert framer.feed(b"abc") == []
    assert framer.feed(b"\n") == [b"abc"]


def test_several_lines_in_one_chunk() -> None:
    framer = LineFramer()
    assert framer.feed(b"a\nbb\nccc\ndd") == [b"a", b"bb", b"ccc"]
    assert framer.pending == 2
    assert framer.feed(b"\n") == [b"dd"]


def test_crlf_and_blank_lines() -> None:
    framer = LineFramer()
    assert framer.feed(b"a\r\n\n\r\n   \n\t\nb\n\r\r\n c \r\n") == [b"a", b"b", b" c "]


def test_lines_are_bytes() -> None:
    (first,) = LineFramer().feed(b"abc\n")
    assert type(first) is bytes


def test_empty_chunks() -> None:
    framer = LineFramer()
    assert framer.feed(b"") == []
    assert framer.feed(b"x") == []
    assert framer.feed(b"") == []
    assert framer.pending == 1


def test_a_partial_line_at_end_of_stream_is_pending() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"op":"hello"}\n{"op":"he') == [b'{"op":"hello"}']
    assert framer.pending == len(b'{"op":"he')


@pytest.mark.parametrize("limit", [1, 10, 100])
def test_a_line_exactly_at_the_limit_is_accepted(limit: int) -> None:
    framer = LineFramer(limit)
    assert framer.feed(b"x" * limit + b"\n") == [b"x" * limit]
    assert framer.feed(b"y" * limit) == []  # a partial line at the limit waits
    assert framer.pending == limit
    assert framer.feed(b"\n") == [b"y" * limit]


@pytest.mark.parametrize(
    "chunks",
    [
        [b"x" * 11 + b"\n"],  # complete line, one byte over
        [b"x" * 11],  # partial line, already over
        [b"x" * 6, b"x" * 5],  # over before its end arrives
        [b"x" * 10, b"x"],
        [b"ok\n" + b"x" * 11],  # over in the rest after a newline
        [b"ok\n" + b"x" * 11 + b"\nok\n"],
        [b"ok\n", b"x" * 5, b"x" * 6 + b"\n"],
    ],
)
def test_one_byte_over_the_limit_raises(chunks: list[bytes]) -> None:
    framer = LineFramer(10)
    with pytest.raises(LineTooLong) as info:
        feed_all(framer, chunks, [])
    assert info.value.limit == 10
    assert "10 bytes" in str(info.value)


def test_the_default_limit_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_LINE == 1 << 20
    framer = LineFramer()
    assert framer.feed(b"x" * DEFAULT_MAX_LINE + b"\n") == [b"x" * DEFAULT_MAX_LINE]
    with pytest.raises(LineTooLong):
        LineFramer().feed(b"x" * (DEFAULT_MAX_LINE + 1))


segments = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=12)


def reference_lines(stream: bytes) -> tuple[list[bytes], int]:
    *complete, rest = stream.split(b"\n")
    return [x.rstrip(b"\r") for x in complete if x.strip()], len(rest)


@given(segments, st.booleans(), st.data())
@settings(max_examples=300)
def test_any_chunking_yields_the_same_lines(
    parts: list[bytes], finished: bool, data: st.DataObject
) -> None:
    stream = b"\n".join(parts) + (b"\n" if finished else b"")
    framer = LineFramer(12)
    lines: list[bytes] = []
    for chunk in chunked(stream, data):
        lines.extend(framer.feed(chunk))
    expected, pending = reference_lines(stream)
    assert lines == expected
    assert framer.pending == pending
    whole = LineFramer(12)
    assert whole.feed(stream) == expected
    assert whole.pending == pending


@given(segments, st.binary(min_size=11, max_size=30), segments, st.data())
@settings(max_examples=200)
def test_a_long_line_raises_under_any_chunking(
    before: list[bytes], long: bytes, after: list[bytes], data: st.DataObject
) -> None:
    long = long.replace(b"\n", b"x")
    before = [line[:10] for line in before]  # within the limit: the long line is the first over
    stream = b"\n".join([*before, long, *after])
    framer = LineFramer(10)
    lines: list[bytes] = []
    pieces = chunked(stream, data)
    with pytest.raises(LineTooLong) as info:
        feed_all(framer, pieces, lines)
    # Every complete line ahead of the long one comes out, in order: returned by earlier feeds
    # or carried by the refusal.
    expected, _ = reference_lines(b"\n".join(before) + b"\n" if before else b"")
    assert lines + info.value.before == expected
