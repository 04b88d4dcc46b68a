"""Pure parsers for the value types of the configuration."""

from __future__ import annotations

import re
from typing import Iterable

from .. import listen

_MAC = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
# RFC 3720 §3.2.6.3.1: iqn.YYYY-MM.reverse.domain[:identifier]; §3.2.6.2: of ASCII only
# a-z, 0-9, '-', '.' and ':' (a '/' would be a configfs subdirectory, a NUL ends the name).
_IQN = re.compile(r"^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
                  r"(:[a-z0-9.:-]+)?\Z")
IQN_MAX = 223   # bytes (RFC 3720 §3.2.6.1); the kernel refuses longer target names
# \Z, not $: `$` also matches before a trailing newline, which would reach LIO's names.
_EUI = re.compile(r"^eui\.[0-9A-Fa-f]{16}\Z")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SERIAL = re.compile(r"^(?:0x)?([0-9a-f]{8})$")
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


class ValueProblem(ValueError):
    """A value that does not parse; the message is shown after the key path."""


def normalize_mac(text: str) -> str:
    value = str(text).strip().lower()
    if not _MAC.match(value):
        raise ValueProblem(f"{text!r} is not a MAC address (expected six hex pairs, e.g. dc:a6:32:01:02:03)")
    first = int(value[:2], 16)
    if first & 1 or int(value[:2] + value[3:5] + value[6:8] + value[9:11] + value[12:14] + value[15:], 16) == 0:
        # IEEE 802: the group bit marks multicast (and broadcast); all zeros is no address either.
        raise ValueProblem(f"{text!r} is a {'group' if first & 1 else 'zero'} address, not a network card's address")
    return value.replace("-", ":")


def mac_dashes(mac: str) -> str:
    """``dc:a6:32:01:02:03`` → ``dc-a6-32-01-02-03`` (Pi EEPROM and pxelinux naming)."""
    return mac.replace(":", "-")


def check_iqn(text: str) -> str:
    value = str(text)
    if len(value) > IQN_MAX:
        raise ValueProblem(f"{text!r} is longer than {IQN_MAX} bytes (RFC 3720)")
    if value != value.lower() and value.startswith("iqn."):
        raise ValueProblem(f"{text!r} must be lower case (RFC 3720 names are case-insensitive and LIO stores them lower-cased)")
    if not (_IQN.match(value) or _EUI.match(value)):
        raise ValueProblem(f"{text!r} is not an iSCSI name (expected iqn.YYYY-MM.reverse.domain[:identifier])")
    return value


def check_chap_user(value: object) -> str:
    """A CHAP name (RFC 7143 §12.1.3 CHAP_N) as LIO stores it: one line of at most 255
    bytes, kept with "%s" (a NUL ends it); the word NULL clears it."""
    if not isinstance(value, str):
        raise ValueProblem(f"{value!r} is not a user name")
    if not value:
        raise ValueProblem("is empty (remove the chap table to turn CHAP off)")
    if value != value.strip() or not value.isprintable():
        raise ValueProblem(f"{value!r} starts or ends with a space or contains a control character")
    if len(value.encode()) > 255:
        raise ValueProblem(f"{value[:20]!r}... is longer than 255 bytes (LIO's limit)")
    if value == "NULL":
        raise ValueProblem("'NULL' is the word LIO reads as 'no user'")
    return value


def parse_size(value: object) -> int:
    """``"128G"`` → bytes (binary units, as targetcli uses); ints are bytes."""
    if isinstance(value, bool):
        raise ValueProblem(f"{value!r} is not a size")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.match(value.strip())
        if not match:
            raise ValueProblem(f"{value!r} is not a size (expected e.g. 128G, 512M, or bytes)")
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    else:
        raise ValueProblem(f"{value!r} is not a size")
    if size <= 0:
        raise ValueProblem(f"{value!r} must be larger than zero")
    if size % 512:
        raise ValueProblem(f"{value!r} ({size} bytes) is not a multiple of 512-byte blocks")
    return size


def parse_listen(value: object, default_port: int) -> tuple[str, int]:
    """``"0.0.0.0:69"``, ``"[::]:69"``, ``"10.0.4.3"`` → (host, port) (``appliance.listen``)."""
    try:
        return listen.parse_listen(value, default_port)
    except ValueError as exc:
        raise ValueProblem(str(exc)) from None


def normalize_serial(value: object) -> str:
    text = str(value).strip().lower()
    match = _SERIAL.match(text)
    if not match:
        raise ValueProblem(f"{value!r} is not a Raspberry Pi serial (8 hex digits, e.g. 9ffefdef)")
    return match.group(1)


def check_literal_prefix(value: str) -> str:
    """A literal TFTP directory: relative, no ``..``, ends with ``/`` (added if missing)."""
    text = value.strip()
    if not text:
        return ""
    if text.startswith("/") or "\\" in text or "\0" in text:
        raise ValueProblem(f"{value!r} must be a relative directory without backslashes")
    parts = [p for p in text.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueProblem(f"{value!r} must not contain '.' or '..'")
    return "/".join(parts) + "/"


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``"; did you mean cmdline?"`` for a near miss (case, '-' for '_', a letter or two), else ``""``."""
    if not isinstance(word, str):
        return ""
    import difflib   # only for a mistake: not on every start

    folded = {c.lower().replace("-", "_"): c for c in choices}
    close = difflib.get_close_matches(word.lower().replace("-", "_"), list(folded), n=1, cutoff=0.6)
    return f"; did you mean {folded[close[0]]}?" if close else ""
