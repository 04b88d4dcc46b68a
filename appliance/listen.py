"""Listen addresses: ``"0.0.0.0:69"``, ``"[::]:69"``, ``"10.0.4.3"`` → (host, port).

The one parser for the configuration's ``*_listen`` / ``portals`` values and
the servers' own arguments; bind addresses are IP literals, never names.
"""

from __future__ import annotations

import ipaddress


def parse_listen(value: object, default_port: int | None = None) -> tuple[str, int]:
    """(host, port); without ``default_port`` the port is required.  ``ValueError`` names the problem."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not an address (expected host:port)")
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r} is not an address (expected [v6]:port)")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
    if port_text == "":
        if default_port is None:
            raise ValueError(f"{value!r} is not an address (expected host:port)")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: port {port_text!r} is not in 0–65535")
    return host, int(port_text)
