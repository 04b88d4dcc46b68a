"""Whether a request becomes a transfer (pure): RFC 1350 read requests only.

``admit(request)`` answers ``Start(path)`` or ``Refuse`` (the error to send,
if any, and the outcome to record); ``refusal(exc)`` maps the content
interface's refusals to TFTP errors.  The server adds what needs its
state: capacity (a full server drops the request, the client retransmits)
and the provider's answer.
"""

from __future__ import annotations

from typing import NamedTuple

from ..content import MAX_FILENAME_BYTES, AccessDenied, FileNotFound, RequestRefused, clean_path
from .packets import ERR_ACCESS, ERR_ILLEGAL_OP, ERR_NOT_FOUND, ERR_UNDEFINED, Request

MODES = ("octet", "netascii")   # RFC 1350; "mail" is obsolete


class Start(NamedTuple):
    """Admit the request: serve this path."""

    path: str                   # the cleaned path to ask the content provider for


class Refuse(NamedTuple):
    """Refuse the request with this TFTP error."""

    code: int                   # TFTP error code to answer with
    message: str
    path: str                   # as requested, for the record
    outcome: str | None         # the TransferRecord outcome; None: no record


def refusal(exc: RequestRefused, path: str) -> Refuse:
    if isinstance(exc, FileNotFound):
        return Refuse(ERR_NOT_FOUND, "File not found", path, "not-found")
    if isinstance(exc, AccessDenied):
        return Refuse(ERR_ACCESS, "Access violation", path, "denied")
    return Refuse(ERR_UNDEFINED, str(exc) or "Request refused", path, f"error: {exc}")


def admit(request: Request, max_filename_bytes: int = MAX_FILENAME_BYTES) -> Start | Refuse:
    name = request.filename.decode("utf-8", "replace")
    if request.is_write:
        return Refuse(ERR_ACCESS, "Read-only server", name, "denied")
    if request.mode not in MODES:
        return Refuse(ERR_ILLEGAL_OP, "Unsupported mode", name, None)
    try:
        return Start(clean_path(request.filename, max_filename_bytes))
    except RequestRefused as exc:
        return refusal(exc, name)
