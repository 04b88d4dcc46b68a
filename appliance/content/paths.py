"""Cleaning of requested filenames (pure), the same for every transport.

Policy (all refusals are ``AccessDenied``: TFTP error 2, HTTP 403):

- the name must be UTF-8 and at most ``max_bytes`` (default 255) bytes long;
- NUL and backslash are refused (a backslash is a Windows separator some
  clients send; guessing its meaning is how traversal bugs start);
- a ``..`` component anywhere is refused (never "resolved");
- leading ``/`` is stripped — absolute names are relative to the served root,
  as with ``tftpd-hpa -s``; empty and ``.`` components (``//``, ``./``) are
  dropped.

An empty result (``/``, ``.``) is a request for no file: ``FileNotFound``.
"""

from __future__ import annotations

from .provider import AccessDenied, FileNotFound

__all__ = ["MAX_FILENAME_BYTES", "clean_path"]

MAX_FILENAME_BYTES = 255


def clean_path(raw: bytes | str, max_bytes: int = MAX_FILENAME_BYTES) -> str:
    """Return the cleaned relative path, or raise AccessDenied / FileNotFound."""
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError:
            raise AccessDenied("filename is not valid UTF-8") from None
    if len(raw) > max_bytes:
        raise AccessDenied(f"filename longer than {max_bytes} bytes")
    if b"\0" in raw:
        raise AccessDenied("filename contains NUL")
    if b"\\" in raw:
        raise AccessDenied("filename contains a backslash")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AccessDenied("filename is not valid UTF-8") from None
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise AccessDenied("filename contains '..'")
    if not parts:
        raise FileNotFound("empty filename")
    return "/".join(parts)
