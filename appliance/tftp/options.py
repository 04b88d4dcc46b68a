"""Option negotiation (RFC 2347, 2348, 2349, 7440) — pure.

Policy for what clients send:

- unknown options are ignored (RFC 2347);
- a known option whose value is not a decimal integer, or is below its
  minimum (``blksize`` < 8, ``timeout`` < 1, ``windowsize`` < 1, ``tsize``
  < 0), is ignored: it is left out of the OACK and the default applies, so
  the client still gets its file;
- values above the server's maximum are clamped (``blksize`` to the
  per-client limit, ``windowsize`` to ``max_windowsize``); a ``timeout``
  above 255 is ignored;
- the same known option twice, or more than ``max_options`` options, is an
  option negotiation failure: TFTP error 8 (``OptionRefused``);
- ``tsize`` is answered with the size (the netascii-converted size for
  netascii, or left out when that is unknown).

No OACK is sent when no option was accepted (RFC 2347): data starts at once.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "BLKSIZE_MAX",
    "BLKSIZE_MIN",
    "DEFAULT_BLKSIZE",
    "MAX_OPTIONS",
    "Negotiated",
    "OptionRefused",
    "WINDOWSIZE_MAX",
    "blksize_for_mtu",
    "negotiate",
]

DEFAULT_BLKSIZE = 512
BLKSIZE_MIN, BLKSIZE_MAX = 8, 65464
TIMEOUT_MIN, TIMEOUT_MAX = 1, 255
WINDOWSIZE_MAX = 64
MAX_OPTIONS = 16
_KNOWN = ("blksize", "tsize", "timeout", "windowsize")


def blksize_for_mtu(mtu: int, *, ipv6: bool) -> int:
    """The largest blksize whose DATA packet fits one IP datagram of ``mtu``
    bytes (IP, UDP and the 4-byte TFTP header), within RFC 2348's 8..65464:
    a larger one leaves as IP fragments, which clients without reassembly
    (U-Boot built without CONFIG_IP_DEFRAG, some PXE ROMs) drop."""
    return max(BLKSIZE_MIN, min(mtu - (40 if ipv6 else 20) - 8 - 4, BLKSIZE_MAX))


class OptionRefused(ValueError):
    """The request's options cannot be negotiated: TFTP error 8."""


class Negotiated(NamedTuple):
    """The options a transfer runs with (RFC 2347-2349, RFC 7440)."""

    blksize: int
    windowsize: int
    timeout: float | None          # seconds, None = the server's default
    oack: tuple[tuple[str, str], ...]   # empty: no OACK, start with DATA 1


_LARGER_THAN_ANY_MAXIMUM = 10 ** 12


def _as_int(value: str) -> int | None:
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    # Many digits are just a large value, clamped like any other (RFC 2348);
    # only comparisons follow, so converting all of them is not needed.
    return _LARGER_THAN_ANY_MAXIMUM if len(value) > 12 else int(value)


def negotiate(options: tuple[tuple[str, str], ...], *, size: int | None,
              max_blksize: int = 1468, max_windowsize: int = WINDOWSIZE_MAX,
              max_options: int = MAX_OPTIONS) -> Negotiated:
    """Decide blksize/windowsize/timeout and the OACK for a request's options.

    ``size`` is what ``tsize`` reports (None: unknown, tsize not acknowledged).
    """
    if len(options) > max_options:
        raise OptionRefused(f"more than {max_options} options")
    seen: set[str] = set()
    for name, _ in options:
        if name in _KNOWN:
            if name in seen:
                raise OptionRefused(f"option {name} given twice")
            seen.add(name)

    blksize, windowsize, timeout = DEFAULT_BLKSIZE, 1, None
    oack: list[tuple[str, str]] = []
    max_blksize = max(BLKSIZE_MIN, min(max_blksize, BLKSIZE_MAX))
    max_windowsize = max(1, min(max_windowsize, WINDOWSIZE_MAX))
    for name, raw in options:
        value = _as_int(raw)
        if value is None or name not in _KNOWN:
            continue
        if name == "blksize" and value >= BLKSIZE_MIN:
            blksize = min(value, max_blksize)
            oack.append((name, str(blksize)))
        elif name == "windowsize" and value >= 1:
            windowsize = min(value, max_windowsize)
            oack.append((name, str(windowsize)))
        elif name == "timeout" and TIMEOUT_MIN <= value <= TIMEOUT_MAX:
            timeout = float(value)
            oack.append((name, str(value)))
        elif name == "tsize" and size is not None:
            oack.append((name, str(size)))
    return Negotiated(blksize, windowsize, timeout, tuple(oack))
