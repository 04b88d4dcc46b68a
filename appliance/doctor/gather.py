"""Read the machine into ``Facts`` for ``netboot doctor``: the only I/O of the doctor.

Each probe is bounded (``PROBE_TIMEOUT``) and talks only to this
machine's own listening addresses.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from pathlib import Path

from ..boot.gather import store_roots
from ..config import Config, load_config
from ..config.load import declared_state_dir
from ..control.snapshot import build_host_snapshot
from ..control.health import daemon_serving, read_health_file
from ..control.state import State, StateStore
from ..errors import ApplianceError, ConfigError, StateError
from ..iscsi.desired import UnusableSecretFile, read_secret_file
from .facts import Facts, Generation, HostFacts, LioFacts, PortFacts

CONFIGFS = Path("/sys/kernel/config")
LIO_MODULES = frozenset({"configfs", "target_core_mod", "target_core_file", "target_core_iblock",
                         "iscsi_target_mod"})
# A server busy with a boot storm, or on a loaded machine, can take a second or more to answer;
# that is a late answer, not a server that is down.
PROBE_TIMEOUT = 5.0
EVENTS = 20


def gather(config_path: Path, host: str | None = None, *, proc: Path = Path("/proc"),
           configfs: Path = CONFIGFS, probe: bool = True) -> Facts:
    try:
        config = load_config(config_path, check_files=False)
    except ConfigError as exc:
        running = daemon_serving(config_path, declared_state_dir(config_path))
        return Facts(config_path=str(config_path), config_problems=tuple(str(p) for p in exc.problems),
                     serving_pid=running[0] if running else None)
    names = [config.host(host).name] if host is not None else list(config.hosts)
    store = StateStore(config.server.state_dir)
    state_problems = [p for p in (store.problem(),) if p]
    state_problems += [f"corrupt state file set aside as {c}" for c in store.corrupt_files()]
    lio = _lio(config, proc, configfs) if config.iscsi.enable else None
    sessions = _sessions(config, configfs)
    state = _served_state(store)
    health = read_health_file(store.dir)
    return Facts(
        config_path=str(config_path),
        state_problems=tuple(state_problems),
        daemon_problems=tuple((c, p.state, p.reason) for c, p in sorted(health.problems.items())) if health else (),
        iscsi_enabled=config.iscsi.enable,
        server_address=_server_address(config),
        ports=tuple(_ports(config, proc, probe)),
        lio=lio,
        hosts=tuple(_host(config, store, state, name, sessions) for name in names),
    )


def _served_state(store: StateStore) -> State:
    """What a daemon serves: the state, or what a damaged state file still says (the damage
    itself is one ``state`` finding).  Reads only: a diagnosis writes nothing."""
    try:
        return store.load() if store.problem() is None else store.readable().state
    except StateError:
        return State()


def _server_address(config: Config) -> str:
    for address in (*config.iscsi.portals, *config.server.tftp_listen):
        if not ipaddress.ip_address(address.host).is_unspecified:
            return address.host
    return "<this server's address>"


# -- ports ---------------------------------------------------------------------------

def _listening_ports(proc: Path, proto: str) -> set[int] | None:
    """Local ports with a bound UDP socket / listening TCP socket, from /proc/net."""
    ports: set[int] = set()
    seen = False
    for name in (proto, proto + "6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        seen = True
        for line in lines:
            fields = line.split()
            if len(fields) < 4:
                continue
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if proto == "udp" or fields[3] == "0A":   # 0A: TCP_LISTEN
                ports.add(port)
    return ports if seen else None


def _probe_address(host: str) -> str:
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return host


def _probe_tftp(host: str, port: int) -> tuple[bool, str]:
    """An RRQ for a file no host has: a TFTP server answers with an ERROR packet (RFC 1350)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        try:
            sock.sendto(struct.pack("!H", 1) + b"netboot-doctor-probe\0octet\0", (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError as exc:
            return False, f"probe: {exc.strerror or exc}"
    opcode = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0
    return (opcode in (3, 5, 6)), "" if opcode in (3, 5, 6) else f"probe: unexpected reply opcode {opcode}"


def _probe_tcp(host: str, port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return True, ""
    except OSError as exc:
        return False, f"probe: {exc.strerror or exc}"


def _ports(config: Config, proc: Path, probe: bool) -> list[PortFacts]:
    out = []
    udp, tcp = _listening_ports(proc, "udp"), _listening_ports(proc, "tcp")
    wanted = [("udp", a) for a in config.server.tftp_listen]
    if config.iscsi.enable:
        wanted += [("tcp", a) for a in config.iscsi.portals]
    for proto, address in wanted:
        bound_ports = udp if proto == "udp" else tcp
        bound = bound_ports is None or address.port in bound_ports
        reachable, detail = None, "" if bound_ports is not None else "/proc/net unreadable"
        if probe and bound:
            probe_fn = _probe_tftp if proto == "udp" else _probe_tcp
            reachable, detail = probe_fn(_probe_address(address.host), address.port)
        out.append(PortFacts(proto, str(address), address.port, bound, reachable, detail))
    return out


# -- LIO -----------------------------------------------------------------------------

def _lio(config: Config, proc: Path, configfs: Path) -> LioFacts:
    try:
        mounted = any(line.split()[1:3] == [str(configfs), "configfs"]
                      for line in (proc / "mounts").read_text().splitlines() if len(line.split()) > 2)
    except OSError:
        mounted = False
    try:
        modules = frozenset(line.split()[0] for line in (proc / "modules").read_text().splitlines()
                            if line.split() and line.split()[0] in LIO_MODULES)
        readable = True
    except OSError:
        modules, readable = frozenset(), False
    target = configfs / "target"
    try:
        dbroot = (target / "dbroot").read_text().strip()
    except OSError:
        dbroot = None
    actions: tuple[str, ...] | None = None
    refusals: tuple[str, ...] = ()
    error = None
    if target.is_dir():
        from ..iscsi.api import iscsi_plan

        try:
            the_plan = iscsi_plan(config)
            actions = tuple(a.describe() for a in the_plan.actions)
            refusals = tuple(str(r) for r in the_plan.refusals)
        except ApplianceError as exc:
            error = str(exc)
    return LioFacts(mounted, target.is_dir(), modules, readable, dbroot, actions, refusals, error)


def _sessions(config: Config, configfs: Path) -> dict | None:
    if not config.iscsi.enable:
        return None
    from ..iscsi.sessions import read_sessions

    fabric = configfs / "target" / "iscsi"
    if not fabric.is_dir():
        return None
    try:
        return read_sessions(fabric)
    except (OSError, ValueError):
        return None


# -- hosts ---------------------------------------------------------------------------

def _secret_problems(config: Config, name: str) -> tuple[tuple[str, str], ...]:
    host = config.hosts[name]
    if not (config.iscsi.enable and host.iscsi and host.iscsi.chap):
        return ()
    chap = host.iscsi.chap
    out = []
    for key, path in (("secret_file", chap.secret_file), ("mutual_secret_file", chap.mutual_secret_file)):
        if path is None:
            continue
        where = f"hosts.{name}.iscsi.chap.{key}"
        try:
            secret = read_secret_file(path).strip()
        except OSError as exc:
            out.append((where, f"{path} cannot be read ({exc.strerror or exc})"))
            continue
        except UnicodeDecodeError:   # its message would quote the secret's bytes
            out.append((where, f"{path} is not UTF-8 text"))
            continue
        except UnusableSecretFile as exc:
            out.append((where, str(exc)))
            continue
        if not secret:
            out.append((where, f"{path} is empty"))
        elif not 12 <= len(secret) <= 16:
            out.append((where, f"{path} holds {len(secret)} characters; many initiators only accept 12–16"))
    return tuple(out)


def _host(config: Config, store: StateStore, state: State, name: str, sessions: dict | None) -> HostFacts:
    host = config.hosts[name]
    firmware = config.firmware.get(host.firmware) if host.boot.default_firmware and host.firmware else None
    try:
        firmware_files = frozenset(os.listdir(firmware.path)) if firmware else None
    except OSError:
        firmware_files = None
    target = config.iscsi.target_iqn(name) if host.iscsi else None
    common = dict(
        name=name, boot=host.boot.name, tftp_prefix=host.tftp_prefix, profile=str(host.profile),
        prefix_kind=host.prefix_kind,
        firmware_path=str(firmware.path) if firmware else None, firmware_files=firmware_files,
        secret_problems=_secret_problems(config, name), iscsi=host.iscsi is not None, target=target,
        sessions=None if sessions is None or target is None else len(sessions.get(target, [])),
        events=tuple(store.recent_events(name, limit=EVENTS)),
    )
    try:
        snap = build_host_snapshot(config, host, state.host(name), roots=store_roots(config))
    except ApplianceError as exc:
        return HostFacts(**common, tree_error=str(exc))
    return HostFacts(
        **common,
        profile_problems=tuple(snap.profile.problems),
        generations=tuple(Generation(g.number, g.valid, tuple(g.problems)) for g in snap.profile.generations),
        current=snap.profile.current,
        served=snap.selection.number,
        reason=snap.selection.reason + (f": {snap.selection.note}" if snap.selection.note else ""),
        tree_paths=frozenset(snap.tree.files),
        kernel_names=frozenset(p.rsplit("/", 1)[-1] for p in host.boot.kernel_paths(host, snap.selection.number))
        if snap.selection.number is not None else frozenset(),
    )
