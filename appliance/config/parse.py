"""Turn the parsed TOML document into a ``Config``, collecting every problem.

Pure: no file is read here (``load.py`` adds the file-system checks), so every
rule is unit-testable with plain dicts.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..boot.styles import STYLE_KEYS, STYLES, BootStyle, UnknownStyle, names_text, style_named, styles_reading
from ..errors import ConfigError, Problem
from . import values
from .model import (
    ChapSpec,
    Config,
    DhcpConfig,
    Firmware,
    Host,
    HostIscsi,
    IscsiConfig,
    ListenAddress,
    LunSpec,
    ServerConfig,
)

T = TypeVar("T")

_TOP_KEYS = {"server", "iscsi", "firmware", "hosts", "dhcp"}
_SERVER_KEYS = {"state_dir", "store_dir", "tftp_listen", "http_listen", "gcroots_dir", "metrics_listen",
                "tftp_give_up_after"}
_ISCSI_KEYS = {"enable", "portals", "target_prefix", "on_failure"}
_DHCP_KEYS = {"enable", "interface", "server_address", "bios_bootfile", "efi_bootfile"}
_FIRMWARE_KEYS = {"path"}
_HOST_KEYS = {
    "boot", "mac", "tftp_prefix", "serial", "profile", "cmdline", "config_txt", "firmware",
    "allow_eeprom_update", "tftp_access", "menu_timeout", "trial_confirm_after", "trial_timeout", "iscsi",
}
_HOST_ISCSI_KEYS = {"initiator", "lun", "chap"}
_LUN_KEYS = {"file", "block", "size"}
_CHAP_KEYS = {"user", "secret_file", "mutual_user", "mutual_secret_file", "secret", "mutual_secret", "password"}
_INLINE_SECRET_KEYS = ("secret", "mutual_secret", "password")


class _Problems:
    """Collects problems; ``value()`` runs a converter and records its failure."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(Problem(path, message))

    def value(self, path: str, raw: Any, convert: Callable[[Any], T], default: T) -> T:
        try:
            return convert(raw)
        except values.ValueProblem as exc:
            self.add(path, str(exc))
            return default

    def table(self, path: str, raw: Any, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.add(path, f"must be a table, not {type(raw).__name__}")
            return {}
        for key in raw:
            if key not in allowed:
                self.add(f"{path}.{key}" if path else key,
                         f"unknown key{values.did_you_mean(key, allowed)} (expected one of: {', '.join(sorted(allowed))})")
        return raw


def _typed(kind: type | tuple[type, ...], label: str) -> Callable[[Any], Any]:
    def convert(raw: Any) -> Any:
        if isinstance(raw, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise values.ValueProblem(f"{raw!r} is not {label}")
        if not isinstance(raw, kind):
            raise values.ValueProblem(f"{raw!r} is not {label}")
        return raw

    return convert


def _abs_path(raw: Any) -> Path:
    if not isinstance(raw, str) or not raw:
        raise values.ValueProblem(f"{raw!r} is not a path")
    if not raw.startswith("/"):
        raise values.ValueProblem(f"{raw!r} must be an absolute path")
    if "\0" in raw:
        raise values.ValueProblem("path contains a NUL byte")
    return Path(raw)


def _store_path(raw: Any) -> Path:
    path = _abs_path(raw)
    if any(c.isspace() for c in str(path)):
        raise values.ValueProblem(f"{raw!r} contains whitespace: init=<toplevel>/init could not go on a kernel "
                                  "command line, which splits at whitespace")
    return path


def _listen_list(p: _Problems, path: str, raw: Any, port: int) -> tuple[ListenAddress, ...]:
    if not isinstance(raw, list):
        p.add(path, f"must be a list of host:port strings, not {type(raw).__name__}")
        return ()
    out = []
    for i, item in enumerate(raw):
        parsed = p.value(f"{path}[{i}]", item, lambda v: values.parse_listen(v, port), None)
        if parsed:
            out.append(ListenAddress(*parsed))
    return tuple(out)


def _seconds(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        raise values.ValueProblem(f"{raw!r} is not a positive number of seconds")
    return float(raw)


def parse_config(doc: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a TOML document; raise ``ConfigError`` listing every problem."""
    config, problems = parse_document(doc, source)
    if problems:
        raise ConfigError(problems, str(source) if source else "")
    return config


def parse_document(doc: dict[str, Any], source: Path | None = None) -> tuple[Config, list[Problem]]:
    """Every problem of a TOML document, and the ``Config`` of what parsed: a value with a
    problem is replaced by its default, a host whose boot style is unknown left out (so
    ``check`` can look for the files the rest names; ``problem_at`` tells which values those are)."""
    p = _Problems()
    p.table("", doc, _TOP_KEYS)
    server = _parse_server(p, doc.get("server", {}))
    iscsi = _parse_iscsi(p, doc.get("iscsi", {}))
    dhcp = _parse_dhcp(p, doc.get("dhcp", {}))
    firmware = _parse_firmware(p, doc.get("firmware", {}))
    hosts_raw = p.table("hosts", doc.get("hosts", {}), set(doc["hosts"]) if isinstance(doc.get("hosts"), dict) else set())
    hosts = {}
    for name, raw in hosts_raw.items():
        host = _parse_host(p, name, raw, firmware, iscsi)
        if host is not None:
            hosts[name] = host
    _check_unique(p, hosts)
    return Config(server=server, iscsi=iscsi, firmware=firmware, hosts=hosts, source=source, dhcp=dhcp), p.items


def problem_at(key: str, problems: list[Problem]) -> bool:
    """Whether ``key`` (``hosts.pi.profile``) or a table holding it (``hosts.pi``) has a problem:
    then its value in ``parse_document``'s ``Config`` is a default, not what the file says."""
    return any(not q.path or key == q.path or key.startswith((q.path + ".", q.path + "[")) for q in problems)


def _parse_server(p: _Problems, raw: Any) -> ServerConfig:
    t = p.table("server", raw, _SERVER_KEYS)
    d = ServerConfig()
    gcroots = t.get("gcroots_dir", str(d.gcroots_dir))
    metrics = t.get("metrics_listen")
    server = ServerConfig(
        state_dir=p.value("server.state_dir", t.get("state_dir", str(d.state_dir)), _abs_path, d.state_dir),
        store_dir=p.value("server.store_dir", t.get("store_dir", str(d.store_dir)), _store_path, d.store_dir),
        tftp_listen=_listen_list(p, "server.tftp_listen", t.get("tftp_listen", ["0.0.0.0:69"]), 69),
        http_listen=_listen_list(p, "server.http_listen", t.get("http_listen", []), 80),
        gcroots_dir=None if gcroots == "" else p.value("server.gcroots_dir", gcroots, _abs_path, None),
        metrics_listen=None
        if metrics is None
        else p.value("server.metrics_listen", metrics, lambda v: ListenAddress(*values.parse_listen(v, 9469)), None),
        tftp_give_up_after=p.value("server.tftp_give_up_after", t.get("tftp_give_up_after", d.tftp_give_up_after),
                                   _give_up_seconds, d.tftp_give_up_after),
    )
    # Two sockets of one protocol on one port cannot both bind: say so now, not as "Address
    # already in use" from serve.  (TFTP is UDP, HTTP and metrics TCP: those never collide.)
    _clashing_listeners(p, [(f"server.tftp_listen[{i}]", a) for i, a in enumerate(server.tftp_listen)])
    _clashing_listeners(p, [(f"server.http_listen[{i}]", a) for i, a in enumerate(server.http_listen)]
                        + ([("server.metrics_listen", server.metrics_listen)] if server.metrics_listen else []))
    return server


def _clashing_listeners(p: _Problems, listeners: list[tuple[str, ListenAddress]]) -> None:
    def overlap(a: ListenAddress, b: ListenAddress) -> bool:
        if a.port != b.port or a.port == 0:
            return False
        x, y = ipaddress.ip_address(a.host), ipaddress.ip_address(b.host)
        # IPv6 sockets are v6-only: 0.0.0.0 and :: on one port are two sockets that both bind.
        return x == y or (x.version == y.version and (x.is_unspecified or y.is_unspecified))

    for i, (path, address) in enumerate(listeners):
        for other_path, other in listeners[:i]:
            if overlap(address, other):
                p.add(path, f"{address} is already taken by {other_path} ({other}): the second socket cannot bind")
                break


def _give_up_seconds(raw: Any) -> float:
    seconds = _seconds(raw)
    if not 1 <= seconds <= 3600:
        raise values.ValueProblem(f"{raw!r} is not in 1–3600 seconds")
    return seconds


def _parse_iscsi(p: _Problems, raw: Any) -> IscsiConfig:
    t = p.table("iscsi", raw, _ISCSI_KEYS)
    d = IscsiConfig()
    enable = p.value("iscsi.enable", t.get("enable", d.enable), _typed(bool, "true or false"), False)
    portals = _listen_list(p, "iscsi.portals", t.get("portals", []), 3260)
    for i, portal in enumerate(portals):
        if portal.port == 0:
            p.add(f"iscsi.portals[{i}]", f"{portal} has port 0 (initiators need a fixed port, usually 3260)")
    prefix = p.value("iscsi.target_prefix", t.get("target_prefix", d.target_prefix), values.check_iqn, d.target_prefix)
    if ":" in prefix:
        p.add("iscsi.target_prefix", f"{prefix!r} must not contain ':' (the host name is appended as ':<host>')")
    if enable and not portals:
        p.add("iscsi.portals", "iSCSI is enabled but no portal (ip:port) is listed")
    on_failure = t.get("on_failure", d.on_failure)
    if on_failure not in ("fail", "degraded"):
        p.add("iscsi.on_failure", f"{on_failure!r} is not fail or degraded "
                                  "(what serve does when LIO cannot be set up at start)")
        on_failure = d.on_failure
    return IscsiConfig(enable=enable, portals=portals, target_prefix=prefix, on_failure=on_failure)


def _ifname(raw: Any) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) < 16 or raw in (".", "..") \
            or any(c in raw for c in "/:\0") or any(c.isspace() for c in raw):
        raise values.ValueProblem(f"{raw!r} is not a network interface name")
    return raw


def _unicast_v4(raw: Any) -> str:
    try:
        addr = ipaddress.IPv4Address(raw) if isinstance(raw, str) else None
    except ValueError:
        addr = None
    if addr is None:
        raise values.ValueProblem(f"{raw!r} is not an IPv4 address")
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise values.ValueProblem(f"{raw!r} is not a unicast address clients can reach")
    return str(addr)


def _boot_file(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise values.ValueProblem(f"{raw!r} is not a file name")
    if not raw.isascii() or not raw.isprintable() or len(raw) > 127:
        raise values.ValueProblem(f"{raw!r} must be printable ASCII of at most 127 bytes (the BOOTP file field)")
    return raw


def _parse_dhcp(p: _Problems, raw: Any) -> DhcpConfig:
    t = p.table("dhcp", raw, _DHCP_KEYS)
    enable = p.value("dhcp.enable", t.get("enable", False), _typed(bool, "true or false"), False)
    interface = p.value("dhcp.interface", t["interface"], _ifname, None) if "interface" in t else None
    address = p.value("dhcp.server_address", t["server_address"], _unicast_v4, None) if "server_address" in t else None
    if enable and "interface" not in t:
        p.add("dhcp.interface", "missing (the proxyDHCP answers on one interface, e.g. \"eth0\")")
    if enable and "server_address" not in t:
        p.add("dhcp.server_address", "missing (the IPv4 address of this TFTP server, as clients reach it)")
    return DhcpConfig(
        enable=enable,
        interface=interface,
        server_address=address,
        bios_bootfile=p.value("dhcp.bios_bootfile", t["bios_bootfile"], _boot_file, None) if "bios_bootfile" in t else None,
        efi_bootfile=p.value("dhcp.efi_bootfile", t["efi_bootfile"], _boot_file, None) if "efi_bootfile" in t else None,
    )


def _parse_firmware(p: _Problems, raw: Any) -> dict[str, Firmware]:
    t = p.table("firmware", raw, set(raw) if isinstance(raw, dict) else set())
    out = {}
    for name, fw in t.items():
        if not isinstance(fw, dict):
            p.add(f"firmware.{name}", f"must be a table, not {type(fw).__name__}: "
                                      "[firmware.<name>] with path = \"…\" (e.g. [firmware.rpi])")
            continue
        ft = p.table(f"firmware.{name}", fw, _FIRMWARE_KEYS)
        if "path" not in ft:
            p.add(f"firmware.{name}.path", "missing")
            continue
        path = p.value(f"firmware.{name}.path", ft["path"], _abs_path, None)
        if path is not None:
            out[name] = Firmware(name=name, path=path)
    return out


def _parse_host(p: _Problems, name: str, raw: Any, firmware: dict[str, Firmware], iscsi: IscsiConfig) -> Host | None:
    at = f"hosts.{name}"
    if not isinstance(raw, dict):
        p.add(at, f"must be a table, not {type(raw).__name__}: one [hosts.<name>] table per host")
        return None
    t = p.table(at, raw, _HOST_KEYS)
    if not values.HOST_NAME.match(name):
        p.add(at, f"host name {name!r} must be lower-case letters, digits and '-' (it becomes part of IQNs and LIO names)")
    boot = p.value(f"{at}.boot", t.get("boot"), _boot_style, None)
    mac = p.value(f"{at}.mac", t["mac"], values.normalize_mac, None) if "mac" in t else None
    serial = p.value(f"{at}.serial", t["serial"], values.normalize_serial, None) if "serial" in t else None
    if "profile" not in t:
        p.add(f"{at}.profile", "missing (the Nix profile whose generations this host boots)")
    profile = p.value(f"{at}.profile", t.get("profile", "/"), _abs_path, Path("/"))

    prefix_raw = p.value(f"{at}.tftp_prefix", t.get("tftp_prefix", "mac"), _typed(str, "a string"), "mac")
    prefix_kind, prefix = "literal", ""
    if prefix_raw == "mac":
        prefix_kind = "mac"
        if mac is None and "mac" not in t:
            p.add(f"{at}.mac", 'missing (needed by tftp_prefix = "mac")')
        prefix = values.mac_dashes(mac) + "/" if mac else ""
    elif prefix_raw == "serial":
        prefix_kind = "serial"
        if serial is None and "serial" not in t:
            p.add(f"{at}.serial", 'missing (needed by tftp_prefix = "serial")')
        prefix = serial + "/" if serial else ""
    elif prefix_raw.strip("/ ").lower() in ("mac", "serial"):
        # "MAC" or "mac/" would be served as a literal directory no EEPROM asks for.
        p.add(f"{at}.tftp_prefix", f"{prefix_raw!r} would be a literal directory; did you mean "
                                   f"\"{prefix_raw.strip('/ ').lower()}\"?")
    else:
        prefix = p.value(f"{at}.tftp_prefix", prefix_raw, values.check_literal_prefix, "")
        if prefix.startswith("pxelinux.cfg/") or prefix.rstrip("/") == "pxelinux.cfg":
            p.add(f"{at}.tftp_prefix", "must not be pxelinux.cfg/ (reserved for U-Boot menus)")
    fw_name = t.get("firmware", boot.default_firmware if boot else None)
    if boot is not None:
        for key, message in boot.host_problems(t, firmware):
            p.add(f"{at}.{key}", message)
        for key in sorted(STYLE_KEYS & t.keys() - boot.host_keys):
            # The NixOS module writes config_txt = [] and allow_eeprom_update = false for every host.
            asks_nothing = (key == "config_txt" and t[key] == []) or (key == "allow_eeprom_update" and t[key] is False)
            if not asks_nothing:
                p.add(f"{at}.{key}", f"a {boot.name} host does not use {key} (only {', '.join(styles_reading(key))} "
                                     "hosts do): remove it")
    if "firmware" in t and (boot is None or (boot.default_firmware is None and "firmware" in boot.host_keys)) \
            and (not isinstance(fw_name, str) or fw_name not in firmware):
        p.add(f"{at}.firmware", f"{fw_name!r} names no [firmware.*] table")

    config_txt = p.value(f"{at}.config_txt", t.get("config_txt", []), _string_list, [])
    # Both are written into cmdline.txt, config.txt, menus and scripts, one line each.
    for i, line in enumerate(config_txt):
        if not line.isprintable():
            p.add(f"{at}.config_txt[{i}]", _control_character(line))
    cmdline = p.value(f"{at}.cmdline", t.get("cmdline", ""), _typed(str, "a string"), "")
    if not cmdline.isprintable():
        p.add(f"{at}.cmdline", _control_character(cmdline))
    host_iscsi = _parse_host_iscsi(p, at, t["iscsi"], iscsi) if "iscsi" in t else None
    if "iscsi" in t and len(iscsi.target_iqn(name)) > values.IQN_MAX:
        p.add(at, f"its target name {iscsi.target_iqn(name)!r} is longer than {values.IQN_MAX} bytes (RFC 3720): "
                  "shorten iscsi.target_prefix or the host name")
    # A CHAP host's initrd carries its secret: unless told otherwise, never hand it to a client
    # whose MAC cannot be checked.
    access = t.get("tftp_access", "strict" if host_iscsi is not None and host_iscsi.chap is not None else "open")
    if access not in ("open", "strict"):
        p.add(f"{at}.tftp_access", f"{access!r} is not open or strict")
    menu_timeout = p.value(f"{at}.menu_timeout", t.get("menu_timeout", 5), _typed(int, "a whole number of seconds"), 5)
    if isinstance(menu_timeout, int) and not 0 <= menu_timeout <= 3600:
        p.add(f"{at}.menu_timeout", f"{menu_timeout} is not in 0–3600 seconds")
    confirm_after = p.value(f"{at}.trial_confirm_after", t.get("trial_confirm_after", 120), _seconds, 120.0)
    trial_timeout = p.value(f"{at}.trial_timeout", t.get("trial_timeout", 900), _seconds, 900.0)
    if "iscsi" in t and trial_timeout <= confirm_after:
        p.add(f"{at}.trial_timeout", f"{trial_timeout:g} s is not longer than trial_confirm_after "
                                     f"({confirm_after:g} s): every trial would revert before its iSCSI session "
                                     "could confirm it")

    if boot is None:
        return None
    return Host(
        name=name,
        boot=boot,
        profile=profile,
        mac=mac,
        serial=serial,
        prefix_kind=prefix_kind,
        tftp_prefix=prefix,
        cmdline=cmdline,
        config_txt=tuple(config_txt),
        firmware=fw_name if isinstance(fw_name, str) else None,
        allow_eeprom_update=p.value(f"{at}.allow_eeprom_update", t.get("allow_eeprom_update", False), _typed(bool, "true or false"), False),
        tftp_access=access if access in ("open", "strict") else "strict",
        menu_timeout=menu_timeout,
        trial_confirm_after=confirm_after,
        trial_timeout=trial_timeout,
        iscsi=host_iscsi,
    )


def _boot_style(raw: Any) -> BootStyle:
    if raw is None:
        raise values.ValueProblem(f"missing (expected {names_text()})")
    try:
        return style_named(raw)
    except UnknownStyle as exc:
        raise values.ValueProblem(f"{exc}{values.did_you_mean(raw, STYLES)}") from None


def _string_list(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise values.ValueProblem(f"{raw!r} is not a list of strings")
    return raw


def _parse_host_iscsi(p: _Problems, at: str, raw: Any, iscsi: IscsiConfig) -> HostIscsi | None:
    at = f"{at}.iscsi"
    t = p.table(at, raw, _HOST_ISCSI_KEYS)
    if not isinstance(raw, dict):
        return None
    if "initiator" not in t:
        p.add(f"{at}.initiator", "missing (the host's initiator IQN)")
    initiator = p.value(f"{at}.initiator", t.get("initiator", ""), values.check_iqn, "") if "initiator" in t else ""
    lun = _parse_lun(p, f"{at}.lun", t.get("lun"))
    chap = _parse_chap(p, f"{at}.chap", t["chap"]) if "chap" in t else None
    if lun is None or not initiator:
        return None
    return HostIscsi(initiator=initiator, lun=lun, chap=chap)


def _parse_lun(p: _Problems, at: str, raw: Any) -> LunSpec | None:
    if raw is None:
        p.add(at, 'missing (e.g. { file = "/srv/luns/host.img", size = "32G" } or { block = "/dev/zvol/tank/host" })')
        return None
    t = p.table(at, raw, _LUN_KEYS)
    if ("file" in t) == ("block" in t):
        p.add(at, "needs exactly one of file or block")
        return None
    kind = "file" if "file" in t else "block"
    path = p.value(f"{at}.{kind}", t[kind], _abs_path, None)
    size = None
    if kind == "file":
        if "size" not in t:
            p.add(f"{at}.size", "missing (a file LUN needs its size, e.g. \"32G\")")
        else:
            size = p.value(f"{at}.size", t["size"], values.parse_size, None)
    elif "size" in t:
        p.add(f"{at}.size", "a block LUN takes the size of its device; remove size")
    if path is None:
        return None
    return LunSpec(kind=kind, path=path, size=size)


def _parse_chap(p: _Problems, at: str, raw: Any) -> ChapSpec | None:
    t = p.table(at, raw, _CHAP_KEYS)
    for key in _INLINE_SECRET_KEYS:
        if key in t:
            # Never echo the value: it is a secret.
            p.add(f"{at}.{key}", "secrets must not be written in the config: put it in a file and use secret_file / mutual_secret_file")
    user = p.value(f"{at}.user", t.get("user"), values.check_chap_user, None) if "user" in t else None
    if "user" not in t:
        p.add(f"{at}.user", "missing")
    secret_file = p.value(f"{at}.secret_file", t.get("secret_file"), _abs_path, None) if "secret_file" in t else None
    if "secret_file" not in t and "secret" not in t:
        p.add(f"{at}.secret_file", "missing")
    mutual_user = p.value(f"{at}.mutual_user", t["mutual_user"], values.check_chap_user, None) if "mutual_user" in t else None
    mutual_file = p.value(f"{at}.mutual_secret_file", t["mutual_secret_file"], _abs_path, None) if "mutual_secret_file" in t else None
    if ("mutual_user" in t) != ("mutual_secret_file" in t) and "mutual_secret" not in t:
        p.add(at, "mutual CHAP needs both mutual_user and mutual_secret_file")
    if not (user and secret_file):
        return None
    return ChapSpec(user=user, secret_file=secret_file, mutual_user=mutual_user, mutual_secret_file=mutual_file)


def _check_unique(p: _Problems, hosts: dict[str, Host]) -> None:
    def dupes(label: str, key: Callable[[Host], object], show: Callable[[object], str] = str) -> None:
        seen: dict[object, str] = {}
        for name, host in hosts.items():
            value = key(host)
            if value is None:
                continue
            if value in seen:
                p.add(f"hosts.{name}.{label}", f"{show(value)} is already used by host {seen[value]!r}")
            else:
                seen[value] = name

    dupes("mac", lambda h: h.mac)
    dupes("serial", lambda h: h.serial)
    # "" is the TFTP root: one host may live there, two would collide. A mac/serial
    # prefix is "" only when that value is already reported as broken.
    dupes("tftp_prefix", lambda h: h.tftp_prefix if h.tftp_prefix or h.prefix_kind == "literal" else None,
          lambda v: f"directory {v!r}" if v else "the TFTP root (tftp_prefix = \"\")")
    dupes("iscsi.lun", lambda h: h.iscsi.lun.path if h.iscsi else None, lambda v: f"LUN {v}")
    dupes("iscsi.initiator", lambda h: h.iscsi.initiator if h.iscsi else None, lambda v: f"initiator {v}")
    # A literal prefix may not nest inside another host's directory.
    prefixes = sorted((h.tftp_prefix, n) for n, h in hosts.items() if h.tftp_prefix)
    for b, bn in prefixes:
        for a, an in prefixes:
            if a != b and b.startswith(a):
                p.add(f"hosts.{bn}.tftp_prefix", f"{b!r} lies inside host {an!r}'s directory {a!r}")
                break


def _control_character(line: str) -> str:
    found = next(c for c in line if not c.isprintable())
    return f"must be a single line without control characters (has {found!r})"
