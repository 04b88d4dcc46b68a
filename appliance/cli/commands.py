"""One function per ``netboot`` command: load what it needs, call the packages, print."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from ..boot import Generated, StoreFile
from ..boot.gather import store_roots
from ..config import Config, config_path_from, load_config
from ..config.load import config_warnings, file_problems
from ..control import operations
from ..control.health import read_health_file, text_lines, to_json
from ..control.resolver import kernel_paths
from ..control.snapshot import HostSnapshot, build_host_snapshot
from ..control.state import HostState, State, StateStore
from ..errors import ConfigError, UsageError
from ..nix import register_generation
from .output import emit_json, table, when


def _config(args: argparse.Namespace, check_files: bool = True) -> Config:
    return load_config(config_path_from(args.config), check_files=check_files)


def _store(config: Config) -> StateStore:
    return StateStore(config.server.state_dir)


def _host_snapshot(config: Config, name: str, state: State | None = None, generation: int | None = None) -> HostSnapshot:
    host = config.host(name)
    state = state if state is not None else _store(config).load()
    return build_host_snapshot(config, host, state.host(name), generation=generation)


# -- check ---------------------------------------------------------------------------

def check(args: argparse.Namespace) -> int:
    path = config_path_from(args.config)
    problems: list[str] = []
    warnings: list[str] = []
    config = None
    try:
        config = load_config(path, check_files=False)
        if not args.no_files:
            problems += [str(p) for p in file_problems(config)]
        warnings += [str(w) for w in config_warnings(config, check_files=not args.no_files)]
    except ConfigError as exc:
        problems += [str(p) for p in exc.problems]
    if config is not None and not args.no_files:
        store = _store(config)
        if (state_problem := store.problem()) is not None:
            problems.append(f"state: {state_problem}")
        for corrupt in store.corrupt_files():
            problems.append(f"state: a damaged state file is kept as {corrupt} (inspect it, then delete it)")
    if args.json:
        emit_json({"config": str(path), "ok": not problems, "problems": problems, "warnings": warnings})
        return 2 if problems else 0
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        print(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
    else:
        hosts = len(config.hosts) if config else 0
        print(f"{path}: ok ({hosts} host{'s' if hosts != 1 else ''})")
    return 2 if problems else 0


# -- generations / tree / cat --------------------------------------------------------

def generations(args: argparse.Namespace) -> int:
    config = _config(args)
    snap = _host_snapshot(config, args.host)
    gens = []
    for g in reversed(snap.profile.generations):
        marks = [m for m, on in (("current", g.number == snap.profile.current),
                                 (f"served ({snap.selection.reason})", g.number == snap.selection.number)) if on]
        gens.append({
            "number": g.number, "created": g.created, "label": g.label,
            "toplevel": str(g.toplevel) if g.toplevel else None, "valid": g.valid,
            "problems": list(g.problems), "current": g.number == snap.profile.current,
            "served": g.number == snap.selection.number, "marks": marks,
        })
    if args.json:
        emit_json({"host": args.host, "profile": str(snap.profile.path), "current": snap.profile.current,
                   "served": snap.selection.number, "reason": snap.selection.reason,
                   "problems": list(snap.profile.problems), "generations": gens})
        return 0
    rows = [(g["number"], when(g["created"]), g["label"],
             "valid" if g["valid"] else "INVALID: " + "; ".join(g["problems"]),
             ", ".join(g["marks"]), g["toplevel"] or "-") for g in gens]
    print(table(rows, ("GEN", "DATE", "LABEL", "STATUS", "", "TOPLEVEL")))
    for p in snap.profile.problems:
        print(f"warning: {p}", file=sys.stderr)
    if snap.selection.note:
        print(f"note: {snap.selection.note}", file=sys.stderr)
    return 0


def _source_info(source: StoreFile | Generated) -> tuple[str, int]:
    if isinstance(source, StoreFile):
        try:
            return str(source.path), source.path.stat().st_size
        except OSError:
            return str(source.path), -1
    return "generated", len(source.data)


def tree(args: argparse.Namespace) -> int:
    config = _config(args)
    snap = _host_snapshot(config, args.host, generation=args.generation)
    items = sorted(snap.tree.files.items())
    if args.json:
        emit_json({"host": args.host, "generation": snap.tree.generation, "reason": snap.selection.reason,
                   "files": {p: {"source": _source_info(s)[0], "size": _source_info(s)[1]} for p, s in items}})
        return 0
    print(f"# {args.host}: generation {snap.tree.generation} ({snap.selection.reason}), {len(items)} files")
    print(table([(p, _source_info(s)[1], _source_info(s)[0]) for p, s in items], ("PATH", "SIZE", "SOURCE")))
    return 0


def cat(args: argparse.Namespace) -> int:
    config = _config(args)
    snap = _host_snapshot(config, args.host, generation=args.generation)
    path = args.path.lstrip("/")
    source = snap.tree.get(path) or snap.tree.get(snap.host.tftp_prefix + path)
    if source is None:
        raise UsageError(f"{args.host}: no file {args.path!r} in the boot tree (see: netboot tree {args.host})")
    out = sys.stdout.buffer
    if isinstance(source, Generated):
        out.write(source.data)
    else:
        with open(source.path, "rb") as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
    out.flush()
    return 0


# -- state-changing commands ----------------------------------------------------------

def _change(args: argparse.Namespace, what) -> State:
    """Apply ``what(state, snapshot, now)`` under the state lock; the daemon picks it up via inotify."""
    config = _config(args)
    store = _store(config)
    host = config.host(args.host)

    def change(state: State) -> State:
        snap = build_host_snapshot(config, host, state.host(host.name))
        return what(state, snap, time.time())

    new = store.update(change)
    after = build_host_snapshot(config, host, new.host(host.name))
    print(f"{host.name}: serving generation {after.selection.number} ({after.selection.reason})")
    return new


def pin(args: argparse.Namespace) -> int:
    _change(args, lambda st, snap, now: operations.pin(st, args.host, snap.profile, args.generation, now))
    return 0


def unpin(args: argparse.Namespace) -> int:
    _change(args, lambda st, snap, now: operations.unpin(st, args.host, now))
    return 0


def rollback(args: argparse.Namespace) -> int:
    _change(args, lambda st, snap, now: operations.rollback(st, args.host, snap.profile, snap.selection, now))
    return 0


def trial(args: argparse.Namespace) -> int:
    _change(args, lambda st, snap, now: operations.start_trial(st, args.host, snap.profile, args.generation,
                                                               snap.selection, now))
    return 0


def confirm(args: argparse.Namespace) -> int:
    _change(args, lambda st, snap, now: operations.confirm(st, args.host, snap.selection, snap.profile.current, now))
    return 0


def register(args: argparse.Namespace) -> int:
    config = _config(args)
    host = config.host(args.host)
    number = register_generation(host.profile, Path(args.storepath), store_roots(config))
    print(f"{host.name}: registered {args.storepath} as generation {number}")
    return 0


# -- status ---------------------------------------------------------------------------

def status(args: argparse.Namespace) -> int:
    config = _config(args)
    store = _store(config)
    state = store.load()
    names = [config.host(args.host).name] if args.host else list(config.hosts)
    sessions = _iscsi_sessions(config)
    hosts = {}
    for name in names:
        snap = _host_snapshot(config, name, state)
        hs = state.host(name)
        iscsi = config.hosts[name].iscsi
        hosts[name] = {
            "boot": snap.host.boot.name,
            "served": snap.selection.number,
            "reason": snap.selection.reason,
            "note": snap.selection.note,
            "current": snap.profile.current,
            "pin": hs.pin,
            "trial": None if hs.trial is None else {"generation": hs.trial.generation, "started": hs.trial.started,
                                                    "kernel_served_at": hs.trial.kernel_served_at},
            "last_known_good": hs.last_known_good,
            "generations": len(snap.profile.generations),
            "invalid_generations": [g.number for g in snap.profile.generations if not g.valid],
            "last_boot_events": store.recent_events(name, limit=5),
            "history": [h for h in state.history if h.get("host") == name][-5:],
            "iscsi": None if iscsi is None else {
                "target": config.iscsi.target_iqn(name),
                "initiator": iscsi.initiator,
                "session": sessions.get(config.iscsi.target_iqn(name)) if sessions is not None else "unknown",
            },
        }
    corrupt = [str(p) for p in store.corrupt_files()]
    health = read_health_file(store.dir)     # None: no daemon running
    if args.json:
        emit_json({"hosts": hosts, "corrupt_state_files": corrupt,
                   "iscsi": health.details.get("iscsi") if health is not None and config.iscsi.enable else None,
                   "degraded": health.degraded() if health is not None else {},
                   "health": to_json(health)["components"] if health is not None else None})
        return 0
    rows = []
    for name, h in hosts.items():
        trial_text = f"trial {h['trial']['generation']}" if h["trial"] else ""
        iscsi_text = "-" if h["iscsi"] is None else _session_text(h["iscsi"]["session"])
        last = h["last_boot_events"][-1] if h["last_boot_events"] else None
        last_text = f"{when(last.get('time'))} {last.get('path')} ({last.get('outcome')})" if last else "-"
        rows.append((name, h["boot"], h["served"] if h["served"] is not None else "-", h["reason"],
                     h["last_known_good"] if h["last_known_good"] is not None else "-", trial_text, iscsi_text, last_text))
    print(table(rows, ("HOST", "BOOT", "SERVED", "WHY", "LKG", "TRIAL", "ISCSI", "LAST TRANSFER")))
    for name, h in hosts.items():
        if h["note"]:
            print(f"note: {name}: {h['note']}")
        for ev in h["history"][-3:]:
            print(f"  {name}: {when(ev.get('time'))} {ev.get('event')} {ev.get('generation')}: {ev.get('reason')}")
    for c in corrupt:
        print(f"warning: corrupt state file set aside: {c}", file=sys.stderr)
    for line in text_lines(health) if health is not None else ():
        print(line)
    return 0


def _session_text(session: object) -> str:
    if session == "unknown":
        return "unknown"
    return "logged in" if session else "no session"


def _iscsi_sessions(config: Config) -> dict | None:
    """target IQN → list of sessions, or None where LIO cannot be read."""
    if not config.iscsi.enable:
        return None
    from ..iscsi.sessions import ISCSI_FABRIC, read_sessions

    if not ISCSI_FABRIC.is_dir():
        return None            # no LIO here (or not loaded yet): unknown, not "no session"
    try:
        return read_sessions()
    except (OSError, ValueError):  # status must work whatever configfs holds
        return None


# -- state show / repair -----------------------------------------------------------------

def _host_state_json(hs: HostState, source: str) -> dict:
    trial = None if hs.trial is None else {"generation": hs.trial.generation, "previous": hs.trial.previous,
                                           "started": hs.trial.started,
                                           "kernel_served_at": hs.trial.kernel_served_at}
    return {"pin": hs.pin, "trial": trial, "last_known_good": hs.last_known_good, "from": source}


def _host_state_text(hs: HostState) -> str:
    parts = [f"pin {hs.pin}" if hs.pin is not None else "",
             f"trial {hs.trial.generation}" if hs.trial is not None else "",
             f"last-known-good {hs.last_known_good}" if hs.last_known_good is not None else ""]
    return ", ".join(p for p in parts if p) or "following"


def state_show(args: argparse.Namespace) -> int:
    store = _store(_config(args, check_files=False))
    problem = store.problem()
    if problem is None:
        state = store.load()
        readable = None
        hosts = {n: _host_state_json(hs, "file") for n, hs in sorted(state.hosts.items())}
    else:
        readable = store.readable()
        state = readable.state
        hosts = {n: _host_state_json(hs, readable.sources.get(n, "file")) for n, hs in sorted(state.hosts.items())}
    copies = [str(p) for p in store.corrupt_files()]
    if args.json:
        emit_json({"file": str(store.path), "ok": problem is None, "problem": problem, "hosts": hosts,
                   "history_entries": len(state.history),
                   "dropped": list(readable.salvage.dropped) if readable else [],
                   "complete": readable.salvage.complete if readable else True,
                   "last_good_copy": readable.last_good if readable else None, "corrupt_copies": copies})
        return 0
    print(f"{store.path}: {'ok' if problem is None else 'DAMAGED'}")
    if problem is not None:
        print(f"  {problem}")
    rows = [(n, _host_state_text(hs), hosts[n]["from"]) for n, hs in sorted(state.hosts.items())]
    print(table(rows, ("HOST", "STATE", "FROM")))
    print(f"{len(state.history)} history entries")
    if readable is not None:
        for item in readable.salvage.dropped:
            print(f"cannot be read: {item}")
        if not readable.last_good:
            print(f"no last good copy ({store.last_good_path})")
        print("'netboot state repair' writes the state above and keeps the damaged file aside")
    for c in copies:
        print(f"damaged copy kept: {c}")
    return 0


def state_repair(args: argparse.Namespace) -> int:
    store = _store(_config(args, check_files=False))
    result = store.repair()
    if result is None:
        print(f"{store.path} is valid: nothing to repair")
        return 0
    readable, copy = result
    print(f"{store.path} repaired; the damaged file is kept as {copy}")
    by_source: dict[str, list[str]] = {}
    for name, hs in sorted(readable.state.hosts.items()):
        by_source.setdefault(readable.sources.get(name, "file"), []).append(f"{name} ({_host_state_text(hs)})")
    for source, label in (("file", "kept from the file"), ("file+last-good", "kept, completed from the last good copy"),
                          ("last-good", "restored from the last good copy")):
        if by_source.get(source):
            print(f"{label}: {', '.join(by_source[source])}")
    for item in readable.salvage.dropped:
        print(f"could not be read: {item}")
    if not readable.last_good and readable.salvage.dropped:
        print(f"no last good copy to restore from: what could not be read is lost (the damaged file is {copy})")
    return 0


# -- doctor ---------------------------------------------------------------------------

def doctor(args: argparse.Namespace) -> int:
    from ..doctor import diagnose, gather, render_text

    findings = diagnose(gather(config_path_from(args.config), args.host))
    ok = not any(f.status == "error" for f in findings)
    if args.json:
        emit_json({"ok": ok, "findings": [f.as_json() for f in findings]})
    else:
        print(render_text(findings))
    return 0 if ok else 1


# -- iscsi / serve / demo / shell -----------------------------------------------------

def iscsi(args: argparse.Namespace) -> int:
    from ..iscsi import commands as iscsi_commands

    config = _config(args)
    return getattr(iscsi_commands, f"cmd_{args.iscsi_action}")(config, args)


def serve(args: argparse.Namespace) -> int:
    from ..control.daemon import run_daemon

    return run_daemon(config_path_from(args.config))


def demo(args: argparse.Namespace) -> int:
    from ..demo import build_demo

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="netboot-demo-"))
    layout = build_demo(root, port=args.port)
    config = load_config(layout.config)
    print(f"demo store and config in {root}")
    print(f"  config: {layout.config}")
    for name, host in config.hosts.items():
        snap = build_host_snapshot(config, host, _store(config).load().host(name))
        print(f"\n{name} ({host.boot.name}, generation {snap.selection.number}):")
        for p in _demo_highlights(snap):
            print(f"  curl -s -o {os.path.basename(p)} tftp://127.0.0.1:{args.port}/{p}")
    print(f"\nmore: netboot -c {layout.config} tree HOST | generations HOST | pin HOST N | status")
    if args.print_only:
        return 0
    from ..control.daemon import run_daemon

    def ready() -> None:     # printed once the port is bound: the curl commands above work from now on
        print(f"\nserving TFTP on 127.0.0.1:{args.port} (Ctrl-C stops)\n", flush=True)

    return run_daemon(layout.config, on_ready=ready)


def _demo_highlights(snap: HostSnapshot) -> list[str]:
    """The files worth fetching by hand: what starts a boot, generated files, kernel, initrd."""
    kernels = kernel_paths(snap)
    top = [p for p, source in sorted(snap.tree.files.items()) if "/generations/" not in p
           and (isinstance(source, Generated) or p in kernels or p.rsplit("/", 1)[-1] == "initrd"
                or snap.host.boot.starts_boot(snap.host, p))]
    return top + sorted(kernels - set(top))[:1]


def shell(args: argparse.Namespace) -> int:
    from ..shell import run_shell

    return run_shell(_config(args), args.script)
