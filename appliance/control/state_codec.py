"""``state.json`` bytes ↔ ``State``: strict decoding, and a salvage of what a damaged file still holds.

Pure (bytes in, values out).  Decoding is defensive: whatever the bytes are
(truncated, binary, not UTF-8, nested deeply enough to exhaust the parser's
recursion, the wrong types) the result is a ``State`` or a
``StateFormatError`` saying why — never another exception.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

from .state_model import HISTORY_LIMIT, HostState, State, Trial

VERSION = 1
MAX_STATE_BYTES = 8 << 20       # pins, trials and 200 history entries take a few KiB
_HOST_KEYS = {"pin", "trial", "last_known_good"}
_TRIAL_KEYS = {"generation", "previous", "started", "kernel_served_at"}
_SALVAGE_DEPTH = 3              # top level → hosts → one host → its trial


class StateFormatError(ValueError):
    """The bytes are not a state this version wrote; the message says where and why."""


def encode_state(state: State) -> bytes:
    """Hosts before history, so a file cut short still holds every pin."""
    doc = {
        "version": VERSION,
        "hosts": {n: _host_to_json(hs) for n, hs in sorted(state.hosts.items())},
        "history": list(state.history),
    }
    return json.dumps(doc, indent=1).encode()


def _host_to_json(hs: HostState) -> dict:
    out: dict = {}
    if hs.pin is not None:
        out["pin"] = hs.pin
    if hs.trial is not None:
        out["trial"] = {k: v for k, v in hs.trial._asdict().items() if v is not None}
    if hs.last_known_good is not None:
        out["last_known_good"] = hs.last_known_good
    return out


def decode_state(data: bytes) -> State:
    """Strict: the bytes hold exactly a version-1 state, or ``StateFormatError``."""
    doc = _parse_json(data)
    if not isinstance(doc, dict):
        raise StateFormatError(f"the file holds a JSON {_kind(doc)}, not a state object")
    _check_version(doc)
    unknown = set(doc) - {"version", "hosts", "history"}
    if unknown:
        raise StateFormatError(f"unknown key {sorted(unknown)[0]!r}")
    hosts_raw = doc.get("hosts")
    if not isinstance(hosts_raw, dict):
        raise StateFormatError(f"hosts: expected an object, found {_kind(hosts_raw)}")
    hosts = {name: _host(f"hosts.{name}", raw) for name, raw in hosts_raw.items()}
    history_raw = doc.get("history", [])
    if not isinstance(history_raw, list):
        raise StateFormatError(f"history: expected a list, found {_kind(history_raw)}")
    history = tuple(_history_entry(f"history[{i}]", e) for i, e in enumerate(history_raw))
    return State(hosts=hosts, history=history[-HISTORY_LIMIT:])


# -- salvage -------------------------------------------------------------------------------------

class Salvage(NamedTuple):
    """What a damaged file still says.

    ``state`` holds every field that could be read; ``dropped`` names what
    could not (``hosts.pc.pin: "one" is not a generation number``);
    ``complete`` is false when the file ended (or broke) before its end, so
    hosts after the break are unknown rather than absent.
    """

    state: State
    dropped: tuple[str, ...] = ()
    complete: bool = True
    unreadable_hosts: frozenset[str] = frozenset()


def salvage_state(data: bytes) -> Salvage:
    """Every host entry and history entry that can be read, and a list of what cannot."""
    dropped: list[str] = []
    cut: set[tuple[str, ...]] = set()
    try:
        doc: object = _parse_json(data)
        complete = True
    except StateFormatError as exc:
        doc, cut = _partial_document(data)
        complete = False
        dropped.append(str(exc))
    if not isinstance(doc, dict):
        why = dropped[0] if dropped else f"the file holds a JSON {_kind(doc)}"
        return Salvage(State(), (f"nothing readable: {why}",), False)
    if "version" in doc:
        try:
            _check_version(doc)
        except StateFormatError as exc:
            return Salvage(State(), (f"nothing readable: {exc}",), False)
    hosts: dict[str, HostState] = {}
    unreadable: set[str] = set()
    hosts_raw = doc.get("hosts", {})
    if isinstance(hosts_raw, dict):
        for name, raw in hosts_raw.items():
            hs, problems = _salvage_host(f"hosts.{name}", raw)
            if ("hosts", name) in cut:
                problems.append(f"hosts.{name}: cut short")
            dropped += problems
            if problems:
                unreadable.add(name)
            if hs != HostState() or not problems:
                hosts[name] = hs
    else:
        dropped.append(f"hosts: expected an object, found {_kind(hosts_raw)}")
        complete = False
    history = []
    history_raw = doc.get("history", [])
    if isinstance(history_raw, list):
        for i, entry in enumerate(history_raw):
            try:
                history.append(_history_entry(f"history[{i}]", entry))
            except StateFormatError:
                dropped.append(f"history[{i}]")
    else:
        dropped.append("history (not a list)")
    return Salvage(State(hosts=hosts, history=tuple(history[-HISTORY_LIMIT:])), tuple(dropped), complete,
                   frozenset(unreadable))


def _salvage_host(at: str, raw: object) -> tuple[HostState, list[str]]:
    if not isinstance(raw, dict):
        return HostState(), [f"{at}: expected an object, found {_kind(raw)}"]
    values: dict = {}
    problems = []
    for key, value in raw.items():
        try:
            values.update(_host_field(f"{at}.{key}", key, value))
        except StateFormatError as exc:
            problems.append(str(exc))
    return HostState(**values), problems


def _partial_document(data: bytes) -> tuple[object, set[tuple[str, ...]]]:
    """The leading complete members of a top-level object that breaks off (truncation, junk, nesting),
    and the key paths of the objects that were cut short inside it."""
    text = data[:MAX_STATE_BYTES].decode("utf-8", errors="replace")
    pos = _skip_space(text, 0)
    if pos >= len(text) or text[pos] != "{":
        return None, set()
    cut: set[tuple[str, ...]] = set()
    obj = _partial_object(text, pos, _SALVAGE_DEPTH, (), cut)
    return obj, cut


def _partial_object(text: str, pos: int, depth: int, at: tuple[str, ...], cut: set[tuple[str, ...]]) -> dict:
    """Members of the object at ``text[pos] == '{'`` up to the first that cannot be read."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    out: dict = {}
    pos += 1
    while True:
        pos = _skip_space(text, pos)
        if pos >= len(text):
            return out
        if text[pos] == "}":
            return out
        if text[pos] == ",":
            pos += 1
            continue
        try:
            key, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return out
        pos = _skip_space(text, pos)
        if not isinstance(key, str) or pos >= len(text) or text[pos] != ":":
            return out
        pos = _skip_space(text, pos + 1)
        try:
            out[key], pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            if depth > 0 and pos < len(text) and text[pos] == "{":
                cut.add((*at, key))
                out[key] = _partial_object(text, pos, depth - 1, (*at, key), cut)
            return out


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# -- parsing and field checks ---------------------------------------------------------------------

def _parse_json(data: bytes) -> object:
    if len(data) > MAX_STATE_BYTES:
        raise StateFormatError(f"{len(data)} bytes, more than a state file ever holds ({MAX_STATE_BYTES})")
    if not data.strip():
        raise StateFormatError("the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateFormatError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise StateFormatError("nested too deeply to be a state file") from None
    except ValueError as exc:
        raise StateFormatError(f"not valid JSON ({exc})") from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number a state file holds")


def _check_version(doc: dict) -> None:
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        raise StateFormatError(f"version {version!r}, expected {VERSION} (written by another netboot version?)")


def _host(at: str, raw: object) -> HostState:
    if not isinstance(raw, dict):
        raise StateFormatError(f"{at}: expected an object, found {_kind(raw)}")
    values: dict = {}
    for key, value in raw.items():
        values.update(_host_field(f"{at}.{key}", key, value))
    return HostState(**values)


def _host_field(at: str, key: str, value: object) -> dict:
    if key not in _HOST_KEYS:
        raise StateFormatError(f"{at}: unknown key")
    if key == "trial":
        return {"trial": None if value is None else _trial(at, value)}
    return {key: _generation(at, value, optional=True)}


def _trial(at: str, raw: object) -> Trial:
    if not isinstance(raw, dict):
        raise StateFormatError(f"{at}: expected an object, found {_kind(raw)}")
    unknown = set(raw) - _TRIAL_KEYS
    if unknown:
        raise StateFormatError(f"{at}.{sorted(unknown)[0]}: unknown key")
    if "generation" not in raw or "started" not in raw:
        raise StateFormatError(f"{at}: needs generation and started")
    return Trial(generation=_generation(f"{at}.generation", raw["generation"]),
                 previous=_generation(f"{at}.previous", raw.get("previous"), optional=True),
                 started=_time(f"{at}.started", raw["started"]),
                 kernel_served_at=_time(f"{at}.kernel_served_at", raw.get("kernel_served_at"), optional=True))


def _history_entry(at: str, raw: object) -> dict:
    if not isinstance(raw, dict):
        raise StateFormatError(f"{at}: expected an object, found {_kind(raw)}")
    for key, check in (("host", _is_str), ("event", _is_str), ("reason", _is_str)):
        if not check(raw.get(key)):
            raise StateFormatError(f"{at}.{key}: {raw.get(key)!r} is not text")
    _time(f"{at}.time", raw.get("time"))
    _generation(f"{at}.generation", raw.get("generation"), optional=True)
    return dict(raw)


def _generation(at: str, value: object, optional: bool = False) -> int:
    if value is None and optional:
        return None  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateFormatError(f"{at}: {value!r} is not a generation number")
    return value


def _time(at: str, value: object, optional: bool = False) -> float:
    if value is None and optional:
        return None  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StateFormatError(f"{at}: {value!r} is not a time")
    return float(value)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _kind(value: object) -> str:
    return {dict: "object", list: "list", str: "string", type(None): "null", bool: "boolean"}.get(
        type(value), "number")
