"""A read-only HTTP/1.1 transport for the same content the TFTP engine serves.

    request   pure request-head parsing, ranges and response heads
    server    non-blocking sockets, selector loops, sendfile, caps and timeouts
"""

from .request import BadRequest, ByteRange, Request, parse_head, parse_range
from .server import HttpServer, HttpStats

__all__ = ["BadRequest", "ByteRange", "HttpServer", "HttpStats", "Request", "parse_head", "parse_range"]
