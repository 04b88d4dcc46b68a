"""Request-head parsing and byte ranges (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.http import BadRequest, ByteRange, parse_head, parse_range


def test_parse_head_decodes_target_and_connection():
    r = parse_head(b"GET /pc/a%20b?x=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert (r.method, r.raw_path, r.keep_alive, r.headers["host"]) == ("GET", b"/pc/a b", False, "h")
    assert parse_head(b"HEAD / HTTP/1.0\n\n").keep_alive is False
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive is True
    assert parse_head(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").keep_alive is True


@pytest.mark.parametrize("header, size, expected", [
    (None, 10, None),
    ("bytes=0-4", 10, ByteRange(0, 4)),
    ("bytes=5-", 10, ByteRange(5, 9)),
    ("bytes=-3", 10, ByteRange(7, 9)),
    ("bytes=-30", 10, ByteRange(0, 9)),
    ("bytes=8-100", 10, ByteRange(8, 9)),
    ("bytes=0-1,4-5", 10, None),            # several ranges: whole file
    ("items=0-1", 10, None),                # other unit: ignored
    ("bytes=5-2", 10, None),                # invalid: ignored
    ("bytes=x-2", 10, None),
    ("bytes=-", 10, None),
])
def test_ranges(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header, size", [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=-5", 0)])
def test_unsatisfiable_ranges_are_416(header, size):
    with pytest.raises(BadRequest) as info:
        parse_range(header, size)
    assert info.value.status == 416


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40) | st.from_regex(r"bytes=\s*[0-9²³¹]{0,30}-[0-9²³¹]{0,30}", fullmatch=True),
       st.integers(0, 10**12))
def test_any_range_header_is_a_range_inside_the_file_the_whole_file_or_416(header, size):
    """What a client sends never becomes an exception the server did not plan for, nor bytes past the end."""
    try:
        wanted = parse_range(header, size)
    except BadRequest as exc:
        assert exc.status == 416
        return
    assert wanted is None or 0 <= wanted.start <= wanted.end < size
