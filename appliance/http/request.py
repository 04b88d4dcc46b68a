"""HTTP/1.x request heads and responses for a read-only file server (pure).

Only what boot firmware and download tools use: ``GET`` and ``HEAD`` with
an origin-form target (RFC 9112 §3.2.1), a single byte range (RFC 9110
§14), persistent connections.  Anything else is refused with a 4xx/5xx
status before any content is looked up; request bodies are refused
(a boot server has no use for them, and accepting them invites request
smuggling).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import unquote_to_bytes

__all__ = [
    "MAX_HEAD_BYTES",
    "BadRequest",
    "ByteRange",
    "Request",
    "find_head_end",
    "leading_empty_lines",
    "parse_head",
    "parse_range",
    "response_head",
]

MAX_HEAD_BYTES = 8192        # request line + headers; a longer head is refused with 431
MAX_HEADERS = 64

REASONS = {
    200: "OK", 206: "Partial Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 416: "Range Not Satisfiable",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_EMPTY_LINE = re.compile(rb"\n\r?\n")
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadRequest(Exception):
    """The request cannot be served; ``status`` is the answer, the connection is closed after it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str                  # "GET" | "HEAD"
    raw_path: bytes              # percent-decoded target without query; cleaning is the content layer's
    version: str                 # "HTTP/1.1" | "HTTP/1.0"
    headers: dict[str, str]      # lower-case names; repeated headers joined with ", "
    keep_alive: bool


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int                     # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def find_head_end(buffer: bytes | bytearray) -> int:
    """Index just past the blank line ending the head, or -1 while incomplete.

    The first empty line ends it, whether lines end in CRLF or a bare LF (RFC 9112
    §2.2 allows accepting bare LF), so a pipelined head is never merged into the one before.
    """
    match = _EMPTY_LINE.search(buffer)
    return match.end() if match else -1


def leading_empty_lines(buffer: bytes | bytearray) -> int:
    """How many bytes of empty lines (CRLF or bare LF) start the buffer: a server SHOULD ignore
    them before a request line (RFC 9112 §2.2), as some clients send a CRLF after a request."""
    i = 0
    while True:
        if buffer[i:i + 1] == b"\n":
            i += 1
        elif buffer[i:i + 2] == b"\r\n":
            i += 2
        else:
            return i


def parse_head(head: bytes) -> Request:
    """Parse one request head (up to and including the blank line)."""
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    if any(b"\r" in line for line in lines):
        raise BadRequest(400, "bare CR in the request head")
    if b"\0" in head:
        raise BadRequest(400, "NUL in the request head")    # RFC 9110 §5.5: reject, or replace by SP
    while lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise BadRequest(400, "empty request")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not all(parts):
        raise BadRequest(400, "request line is not METHOD TARGET VERSION")
    method_b, target, version_b = parts
    if not set(method_b) <= _TOKEN:
        raise BadRequest(400, "method is not a token")
    if version_b not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version_b.startswith(b"HTTP/"):
            raise BadRequest(505, "only HTTP/1.0 and HTTP/1.1")
        raise BadRequest(400, "not an HTTP request")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise BadRequest(400, "obsolete header line folding")
        name, sep, value = line.partition(b":")
        if not sep or not name or not set(name) <= _TOKEN:
            raise BadRequest(400, "malformed header field")
        try:
            text = value.strip(b" \t").decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise BadRequest(400, "malformed header value") from None
        key = name.decode("ascii").lower()
        if key == "host" and key in headers:
            raise BadRequest(400, "more than one Host header")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    version = version_b.decode("ascii")
    if version == "HTTP/1.1" and "host" not in headers:
        raise BadRequest(400, "HTTP/1.1 request without Host")
    if "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0"):
        raise BadRequest(400, "request bodies are not accepted")
    method = method_b.decode("ascii")
    if method not in ("GET", "HEAD"):
        raise BadRequest(405, f"method {method} not allowed")
    target = _origin_form(target)
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    try:
        raw_path = unquote_to_bytes(path.decode("ascii"))
    except UnicodeDecodeError:
        raise BadRequest(400, "target is not ASCII") from None
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return Request(method, raw_path, version, headers, keep_alive)


def _origin_form(target: bytes) -> bytes:
    """The path part of a request target; the absolute-form (``http://host/path``) must be
    accepted too (RFC 9112 §3.2.2), its authority is not needed: the files served do not depend on it."""
    if target.startswith(b"/"):
        return target
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        raise BadRequest(400, "target must be an absolute path or an http:// URL")
    slash = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    path = rest[slash:]
    return path if path.startswith(b"/") else b"/" + path


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range a ``Range`` header asks for, or None for the whole file.

    Raises ``BadRequest(416)`` when a well-formed single range cannot be
    satisfied.  Syntax errors, other units and multiple ranges are ignored
    (the whole file is sent), as RFC 9110 §14.2 permits.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not _is_position(first) or not _is_position(last):
        return None
    if first == "":
        if last == "":
            return None
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise BadRequest(416, "empty suffix range")
        return ByteRange(max(0, size - suffix), size - 1)
    start = _position(first)
    end = size - 1 if last == "" else _position(last)
    if last != "" and end < start:
        return None                     # invalid: ignored
    if start >= size:
        raise BadRequest(416, f"range starts past the end of the file ({size} bytes)")
    return ByteRange(start, min(end, size - 1))


_POSITION_DIGITS = 19               # 10**19 bytes is past any file; longer numbers mean the same


def _is_position(text: str) -> bool:
    """Empty, or a byte position: ASCII digits only (RFC 9110 §14.1.1: 1*DIGIT; str.isdigit() also takes '²')."""
    return text == "" or (text.isascii() and text.isdigit())


def _position(digits: str) -> int:
    """The value of a byte position; any number too long to matter counts as 10**19."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _POSITION_DIGITS else 10 ** _POSITION_DIGITS


def content_type(path: str) -> str:
    return "text/plain; charset=utf-8" if path.endswith((".txt", ".ipxe", ".cfg")) else "application/octet-stream"


def response_head(status: int, headers: list[tuple[str, str]], keep_alive: bool,
                  now: float | None = None) -> bytes:
    """Status line and headers, ending with the blank line."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
             f"Date: {formatdate(time.time() if now is None else now, usegmt=True)}",
             "Server: netboot"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_head(status: int, message: str, keep_alive: bool, extra: list[tuple[str, str]] = ()) -> bytes:
    """A complete small error response (head + text body)."""
    body = f"{status} {REASONS.get(status, 'Error')}: {message}\n".encode("utf-8", "replace")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *extra]
    return response_head(status, headers, keep_alive) + body
