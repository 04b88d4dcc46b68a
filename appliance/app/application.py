"""The operations an operator runs, as data: the CLI and the shell only render them.

``App(config)`` holds the configuration and the state store; each method
loads what it needs, calls the packages and returns a ``Report`` (or, for
``source``, the file to print).  Errors are the typed ``ApplianceError``s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..boot import Generated, Source, StoreFile
from ..boot.gather import store_roots
from ..config import Config, load_config
from ..config.load import config_problems, config_warnings, declared_state_dir
from ..config.parse import problem_at
from ..control import operations
from ..control.health import daemon_serving, read_health_file, text_lines, to_json
from ..control.snapshot import HostSnapshot, build_host_snapshot
from ..control.state import HostState, State, StateStore
from ..doctor import diagnose, gather, render_text
from ..errors import ApplianceError, ConfigError, DestructiveChange, GenerationError, UsageError, shown
from ..iscsi.api import format_plan, iscsi_apply, iscsi_plan, iscsi_status
from ..iscsi.sessions import ISCSI_FABRIC, read_sessions
from ..nix import read_generation, register_generation
from .report import Report, Table, when

ISCSI_DISABLED = "iSCSI is disabled ([iscsi] enable = false): LIO is not touched"


def check(path: Path, check_files: bool = True) -> Report:
    """Validate the configuration (and the state, with ``check_files``): every problem, exit 2 if any."""
    warnings: list[str] = []
    try:
        config, found, missing = config_problems(path, check_files)
    except ConfigError as exc:       # not TOML at all: nothing else can be checked
        config, found, missing = None, exc.problems, []
    problems = [str(p) for p in found + missing]
    if config is not None and not found:   # defaults standing in for broken values would warn about nothing
        warnings += [str(w) for w in config_warnings(config, check_files=check_files)]
    if config is not None and check_files and not problem_at("server.state_dir", found):
        store = StateStore(config.server.state_dir)
        if (state_problem := store.problem()) is not None:
            problems.append(f"state: {state_problem}")
        for corrupt in store.corrupt_files():
            problems.append(f"state: a damaged state file is kept as {corrupt} (inspect it, then delete it)")
    # A daemon serving this file keeps what it loaded last (config reloads are all or nothing).
    running = daemon_serving(path, config.server.state_dir if config else declared_state_dir(path)) \
        if problems else None
    data = {"config": str(path), "ok": not problems, "problems": problems, "warnings": warnings,
            "running_daemon": running[0] if running else None}
    stderr = [f"warning: {w}" for w in warnings]
    text: tuple[str, ...] = ()
    if problems:
        stderr.append(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:")
        stderr += [f"  {p}" for p in problems]
        if running:
            stderr.append(f"netboot serve (pid {running[0]}) keeps serving the configuration it loaded last; "
                          "it reloads this file once it is valid")
    else:
        hosts = len(config.hosts) if config else 0
        text = (f"{path}: ok ({hosts} host{'s' if hosts != 1 else ''})",)
    return Report(data, text, tuple(stderr), 2 if problems else 0)


def doctor(path: Path, host: str | None = None) -> Report:
    """What keeps hosts from booting, each problem with its fix; exit 1 if any is an error."""
    findings = diagnose(gather(path, host))
    ok = not any(f.status == "error" for f in findings)
    return Report({"ok": ok, "findings": [f.as_json() for f in findings]}, (render_text(findings),),
                  exit_code=0 if ok else 1)


class App:
    """Operations over one configuration and its state directory."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = StateStore(config.server.state_dir)

    @classmethod
    def load(cls, path: Path, check_files: bool = True) -> "App":
        return cls(load_config(path, check_files=check_files))

    def host_snapshot(self, name: str, state: State | None = None, generation: int | None = None) -> HostSnapshot:
        """What ``name`` is served now (or ``generation``, as ``tree -g`` shows it)."""
        host = self.config.host(name)
        state = state if state is not None else self.store.load()
        return build_host_snapshot(self.config, host, state.host(name), generation=generation)

    # -- reading ------------------------------------------------------------------------

    def generations(self, name: str) -> Report:
        snap = self.host_snapshot(name)
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
        data = {"host": name, "profile": str(snap.profile.path), "current": snap.profile.current,
                "served": snap.selection.number, "reason": snap.selection.reason,
                "problems": list(snap.profile.problems), "generations": gens}
        rows = tuple((g["number"], when(g["created"]), g["label"],
                      "valid" if g["valid"] else "INVALID: " + "; ".join(g["problems"]),
                      ", ".join(g["marks"]), g["toplevel"] or "-") for g in gens)
        warnings = [f"warning: {p}" for p in snap.profile.problems]
        if snap.selection.note:
            warnings.append(f"note: {snap.selection.note}")
        return Report(data, (Table(("GEN", "DATE", "LABEL", "STATUS", "", "TOPLEVEL"), rows),), tuple(warnings))

    def tree(self, name: str, generation: int | None = None) -> Report:
        snap = self.host_snapshot(name, generation=generation)
        items = [(p, _source_info(s)) for p, s in sorted(snap.tree.files.items())]
        data = {"host": name, "generation": snap.tree.generation, "reason": snap.selection.reason,
                "files": {p: {"source": src, "size": size} for p, (src, size) in items}}
        title = f"# {name}: generation {snap.tree.generation} ({snap.selection.reason}), {len(items)} files"
        return Report(data, (title, Table(("PATH", "SIZE", "SOURCE"), tuple((p, size, src) for p, (src, size) in items))))

    def source(self, name: str, path: str, generation: int | None = None) -> Source:
        """One file of the host's tree (``cat``), by its full path or relative to the host's directory."""
        snap = self.host_snapshot(name, generation=generation)
        rel = path.lstrip("/")
        found = snap.tree.get(rel) or snap.tree.get(snap.host.tftp_prefix + rel)
        if found is None:
            raise UsageError(f"{name}: no file {shown(path)} in the boot tree (see: netboot tree {name})")
        return found

    def status(self, name: str | None = None) -> Report:
        config, store = self.config, self.store
        state = store.load()
        names = [config.host(name).name] if name is not None else list(config.hosts)
        sessions = _iscsi_sessions(config)
        hosts = {}
        for n in names:
            snap = self.host_snapshot(n, state)
            hs = state.host(n)
            iscsi = config.hosts[n].iscsi
            hosts[n] = {
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
                "last_boot_events": store.recent_events(n, limit=5),
                "history": [h for h in state.history if h.get("host") == n][-5:],
                "iscsi": None if iscsi is None else {
                    "target": config.iscsi.target_iqn(n),
                    "initiator": iscsi.initiator,
                    "session": sessions.get(config.iscsi.target_iqn(n)) if sessions is not None else "unknown",
                },
            }
        corrupt = [str(p) for p in store.corrupt_files()]
        health = read_health_file(store.dir)     # None: no daemon running
        data = {"hosts": hosts, "corrupt_state_files": corrupt,
                "iscsi": health.details.get("iscsi") if health is not None and config.iscsi.enable else None,
                "degraded": health.degraded() if health is not None else {},
                "health": to_json(health)["components"] if health is not None else None}
        rows = []
        for n, h in hosts.items():
            trial_text = f"trial {h['trial']['generation']}" if h["trial"] else ""
            iscsi_text = "-" if h["iscsi"] is None else _session_text(h["iscsi"]["session"])
            last = h["last_boot_events"][-1] if h["last_boot_events"] else None
            last_text = f"{when(last.get('time'))} {last.get('path')} ({last.get('outcome')})" if last else "-"
            rows.append((n, h["boot"], h["served"] if h["served"] is not None else "-", h["reason"],
                         h["last_known_good"] if h["last_known_good"] is not None else "-", trial_text, iscsi_text,
                         last_text))
        text: list[str | Table] = [Table(("HOST", "BOOT", "SERVED", "WHY", "LKG", "TRIAL", "ISCSI", "LAST TRANSFER"),
                                         tuple(rows))]
        for n, h in hosts.items():
            if h["note"]:
                text.append(f"note: {n}: {h['note']}")
            for ev in h["history"][-3:]:
                text.append(f"  {n}: {when(ev.get('time'))} {ev.get('event')} {ev.get('generation')}: "
                            f"{ev.get('reason')}")
        text += list(text_lines(health)) if health is not None else []
        return Report(data, tuple(text), tuple(f"warning: corrupt state file set aside: {c}" for c in corrupt))

    # -- changing what is served ------------------------------------------------------------

    def _change(self, name: str, what: Callable[[State, HostSnapshot, float], State]) -> Report:
        """Apply ``what(state, snapshot, now)`` under the state lock; a running daemon follows via inotify."""
        host = self.config.host(name)

        def change(state: State) -> State:
            snap = build_host_snapshot(self.config, host, state.host(host.name))
            return what(state, snap, time.time())

        new = self.store.update(change)
        after = build_host_snapshot(self.config, host, new.host(host.name))
        data = {"host": host.name, "served": after.selection.number, "reason": after.selection.reason}
        return Report(data, (f"{host.name}: serving generation {after.selection.number} ({after.selection.reason})",))

    def pin(self, name: str, generation: int) -> Report:
        return self._change(name, lambda st, snap, now: operations.pin(st, name, snap.profile, generation, now))

    def unpin(self, name: str) -> Report:
        return self._change(name, lambda st, snap, now: operations.unpin(st, name, now))

    def rollback(self, name: str) -> Report:
        return self._change(name, lambda st, snap, now: operations.rollback(st, name, snap.profile, snap.selection,
                                                                            now))

    def trial(self, name: str, generation: int) -> Report:
        return self._change(name, lambda st, snap, now: operations.start_trial(st, name, snap.profile, generation,
                                                                               snap.selection, now))

    def confirm(self, name: str) -> Report:
        return self._change(name, lambda st, snap, now: operations.confirm(st, name, snap.selection,
                                                                           snap.profile.current, now))

    def register(self, name: str, storepath: Path) -> Report:
        host = self.config.host(name)
        roots = store_roots(self.config)
        candidate = read_generation(storepath, 0, roots)
        refused = host.boot.generation_problems(host, candidate) if candidate.valid else ()
        if refused:   # a generation this host would never be served: add nothing
            raise GenerationError(f"{storepath} cannot be served to {host.name}: {'; '.join(refused)}")
        number = register_generation(host.profile, storepath, roots)
        return Report({"host": host.name, "storepath": str(storepath), "generation": number},
                      (f"{host.name}: registered {storepath} as generation {number}",))

    # -- the state file -------------------------------------------------------------------------

    def state_show(self) -> Report:
        store = self.store
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
        data = {"file": str(store.path), "ok": problem is None, "problem": problem, "hosts": hosts,
                "history_entries": len(state.history),
                "dropped": list(readable.salvage.dropped) if readable else [],
                "complete": readable.salvage.complete if readable else True,
                "last_good_copy": readable.last_good if readable else None, "corrupt_copies": copies}
        text: list[str | Table] = [f"{store.path}: {'ok' if problem is None else 'DAMAGED'}"]
        if problem is not None:
            text.append(f"  {problem}")
        text.append(Table(("HOST", "STATE", "FROM"),
                          tuple((n, _host_state_text(hs), hosts[n]["from"]) for n, hs in sorted(state.hosts.items()))))
        text.append(f"{len(state.history)} history entries")
        if readable is not None:
            text += [f"cannot be read: {item}" for item in readable.salvage.dropped]
            if not readable.last_good:
                text.append(f"no last good copy ({store.last_good_path})")
            text.append("'netboot state repair' writes the state above and keeps the damaged file aside")
        text += [f"damaged copy kept: {c}" for c in copies]
        return Report(data, tuple(text))

    def state_repair(self) -> Report:
        store = self.store
        result = store.repair()
        if result is None:
            return Report({"file": str(store.path), "repaired": False}, (f"{store.path} is valid: nothing to repair",))
        readable, copy = result
        text = [f"{store.path} repaired; the damaged file is kept as {copy}"]
        by_source: dict[str, list[str]] = {}
        for name, hs in sorted(readable.state.hosts.items()):
            by_source.setdefault(readable.sources.get(name, "file"), []).append(f"{name} ({_host_state_text(hs)})")
        for source, label in (("file", "kept from the file"),
                              ("file+last-good", "kept, completed from the last good copy"),
                              ("last-good", "restored from the last good copy")):
            if by_source.get(source):
                text.append(f"{label}: {', '.join(by_source[source])}")
        text += [f"could not be read: {item}" for item in readable.salvage.dropped]
        if not readable.last_good and readable.salvage.dropped:
            text.append(f"no last good copy to restore from: what could not be read is lost (the damaged file is {copy})")
        data = {"file": str(store.path), "repaired": True, "damaged_copy": str(copy),
                "sources": dict(readable.sources), "dropped": list(readable.salvage.dropped)}
        return Report(data, tuple(text))

    # -- iSCSI --------------------------------------------------------------------------------

    def iscsi_plan(self, allow_destroy: bool = False) -> Report:
        if not self.config.iscsi.enable:
            return Report({"enabled": False, "actions": [], "refusals": []}, (ISCSI_DISABLED,))
        try:
            the_plan = iscsi_plan(self.config, allow_destroy)
        except ApplianceError as exc:
            return _iscsi_failure("plan", exc)
        return Report(the_plan.as_json(), (format_plan(the_plan),), exit_code=1 if the_plan.refusals else 0)

    def iscsi_apply(self, allow_destroy: bool = False) -> Report:
        try:
            report = iscsi_apply(self.config, allow_destroy)
        except DestructiveChange as exc:
            the_plan = getattr(exc, "plan", None)
            hard = [r for r in the_plan.refusals if not r.overridable] if the_plan is not None else []
            why = ("netboot iscsi apply: refused, nothing applied: " + "; ".join(map(str, hard))
                   + " (--allow-destroy does not override this)" if hard else
                   "netboot iscsi apply: refused, nothing applied; re-run with --allow-destroy to make "
                   "these changes (LIO objects only: backing files are never deleted or truncated)")
            return Report({"error": str(exc), "kind": "DestructiveChange",
                           "plan": the_plan.as_json() if the_plan else None},
                          (format_plan(the_plan),) if the_plan is not None else (), (why,), exc.exit_code)
        except ApplianceError as exc:
            return _iscsi_failure("apply", exc)
        if report.disabled:
            return Report(report.as_json(), (ISCSI_DISABLED,))
        text = tuple(f"  done: {line}" for line in report.done) + (f"iSCSI: {report}",)
        if not report.converged:
            return Report(report.as_json(), text, ("netboot iscsi apply: LIO still differs after applying:",
                                                   format_plan(report.remaining)), 1)  # type: ignore[arg-type]
        return Report(report.as_json(), text)

    def iscsi_status(self) -> Report:
        if not self.config.iscsi.enable:
            return Report({"enabled": False, "hosts": {}}, (ISCSI_DISABLED,))
        try:
            status = iscsi_status(self.config)
        except ApplianceError as exc:
            return _iscsi_failure("status", exc)
        rows = []
        for name, h in sorted(status["hosts"].items()):
            sessions = ", ".join(f"{s['initiator']}@{'/'.join(s['addresses']) or '?'}" for s in h["sessions"]) or "-"
            rows.append((name, h["target"] if h["target_exists"] else f"{h['target']} (missing)",
                         h["lun0"] or "-", "yes" if h["acl"] else "no", "yes" if h["chap"] else "no", sessions))
        text: list[str | Table] = [Table(("HOST", "TARGET", "LUN0", "ACL", "CHAP", "SESSIONS"), tuple(rows))]
        text.append("in sync" if status["in_sync"] else f"{len(status['pending'])} changes pending (netboot iscsi plan)")
        text += [f"refused: {r}" for r in status["refusals"]]
        if status["unmanaged_targets"] or status["unmanaged_backstores"]:
            text.append("not managed (left alone): "
                        + ", ".join(status["unmanaged_targets"] + status["unmanaged_backstores"]))
        return Report(status, tuple(text))


def _iscsi_failure(command: str, exc: ApplianceError) -> Report:
    return Report({"error": str(exc), "kind": type(exc).__name__}, (), (f"netboot iscsi {command}: {exc}",),
                  exc.exit_code)


def _source_info(source: Source) -> tuple[str, int]:
    if isinstance(source, StoreFile):
        try:
            return str(source.path), source.path.stat().st_size
        except OSError:
            return str(source.path), -1
    assert isinstance(source, Generated)
    return "generated", len(source.data)


def _session_text(session: object) -> str:
    if session == "unknown":
        return "unknown"
    return "logged in" if session else "no session"


def _iscsi_sessions(config: Config) -> dict | None:
    """target IQN → list of sessions, or None where LIO cannot be read."""
    if not config.iscsi.enable or not ISCSI_FABRIC.is_dir():
        return None            # no LIO here (or not loaded yet): unknown, not "no session"
    try:
        return read_sessions()
    except (OSError, ValueError):  # status must work whatever configfs holds
        return None


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
