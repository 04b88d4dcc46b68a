"""``netboot serve``: TFTP (and HTTP), the control loop and the iSCSI reconcile in one process.

Threads: the TFTP engine and the optional HTTP server run their own loops in
threads, both over the same resolver; this module's loop
waits on inotify (profiles, config, state directory), signals (SIGHUP
reload, SIGTERM/SIGINT stop), the control queue and a tick for trial
timeouts and iSCSI sessions.  Changes build a new immutable ``Snapshot``
that is swapped into the resolver in one assignment.

The TFTP thread never waits on control I/O: it decides from the snapshot
(trial reverts included, precomputed as ``TrialGuard``), and hands boot
events and its decisions to this loop through a queue; state writes,
fsyncs, rebuilds and GC-root syncs all happen here.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from ..config import Config, load_config
from ..config.load import config_warnings, require_hosts
from ..content import TransferRecord
from ..errors import ApplianceError, ConfigError, IscsiError, StateCorrupt, TftpError
from ..nix import StoreCache
from ..tftp import TftpServer, TftpStats
from ..tftp.worker import default_worker_count
from ..wakeup import WakePipe
from . import operations
from .event_budget import BootEventBudget
from .frames import FrameSources
from .gcroots import desired_roots, sync_roots
from .health import (CONFIG_COMPONENT, WITHHELD, Health, daemon_serving, remove_health_file, status_line,
                     write_health_file)
from .inotify import Inotify
from .iscsi_health import IscsiHealth
from .metrics import BootCounters, render_metrics, serve_metrics
from .neighbours import NeighbourTable
from .resolver import BootResolver, Decision, KernelServed, TrialReverted, boot_event
from .snapshot import HostSnapshot, Snapshot, TrialGuard, build_host_snapshot, build_snapshot
from .state import State, StateStore

if TYPE_CHECKING:      # imported where started: only a configured HTTP / proxyDHCP server needs them
    from ..dhcp import ProxyDhcpServer
    from ..http import HttpServer

log = logging.getLogger("netboot")

TICK = 1.0            # seconds between trial / session checks
GCROOTS_COMPONENT = "gcroots"   # GC roots that cannot be made (health)
DHCP_COMPONENT = "dhcp"         # the proxyDHCP could not start (health)
METRICS_COMPONENT = "metrics"   # the metrics endpoint could not start (health)
DEBOUNCE = 0.01       # gather a burst of inotify events (nix-env makes several)
QUEUED_EVENTS_MAX = 10000   # boot events waiting for the state directory before new ones are dropped


def sd_notify(message: str) -> None:
    """systemd's notify protocol, without depending on systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)


class Appliance:
    """The running appliance: config, state, snapshot and the TFTP server."""

    def __init__(self, config_path: Path, config: Config) -> None:
        """Wiring only: ``open()`` reads the state and the profiles and opens file descriptors."""
        self.config_path = config_path.absolute()
        self.config: Config = config
        self.store = StateStore(self.config.server.state_dir)
        self.health = Health()
        self.health.set_details(CONFIG_COMPONENT, {"path": str(self.config_path)})   # which file it serves
        self._published_status: str | None = None     # the last STATUS= sent; None until READY=1
        self.state_problem: str | None = None     # set while state.json is corrupt: writes are refused
        self.state = State()
        self.neighbours = NeighbourTable(health=self.health)
        self.cache = StoreCache()
        # From the TFTP thread to this loop: boot events and TFTP-side decisions.
        self.control: queue.SimpleQueue = queue.SimpleQueue()
        self.wake = WakePipe()
        self._unpersisted: list[Decision] = []     # decisions whose state write failed: retried each tick
        self.events_dropped = 0
        # Repeats and floods of one host's boot events are counted, not written (TFTP and HTTP threads).
        self.event_budget = BootEventBudget()
        self._event_budget_lock = threading.Lock()
        self._events_failing = False
        self.resolver: BootResolver             # set by open()
        self.tftp: TftpServer | None = None
        self.http: HttpServer | None = None
        self.dhcp: ProxyDhcpServer | None = None
        self.inotify: Inotify | None = None
        self.session_since: dict[str, float] = {}
        self.boots = BootCounters()
        self.iscsi_health = IscsiHealth()
        self._iscsi_failures_in_a_row = 0
        self._iscsi_retry_at: float | None = None     # monotonic
        self._stop = False
        self._reload = False

    @classmethod
    def open(cls, config_path: Path) -> "Appliance":
        """Load and check the config, read the state and the profiles, create the GC roots
        and open the wake pipe and inotify; ``close()`` (or ``with``) releases them."""
        config = load_config(config_path)
        require_hosts(config)
        for warning in config_warnings(config):
            log.warning("config: %s", warning)
        appliance = cls(config_path, config)
        try:
            appliance._open()
        except BaseException:
            appliance.close()
            raise
        return appliance

    def _open(self) -> None:
        self.state = self._load_state()
        snapshot = build_snapshot(self.config, self.state.hosts, self.cache)
        snapshot = Snapshot(snapshot.config, snapshot.hosts, self._trial_guards(snapshot.hosts))
        # Nothing is served yet: make the roots, and drop those left over from an
        # earlier run (a removed host, an old pin), in one pass.
        self._sync_roots(desired_roots(snapshot.hosts, self.state), prune=True)
        self.wake.open()
        self.resolver = BootResolver(snapshot, self.neighbours, on_decision=self._post)
        self.inotify = Inotify()

    def close(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None
        self.neighbours.close()
        self.wake.close()

    def __enter__(self) -> "Appliance":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- snapshots ---------------------------------------------------------------------

    def refresh(self, hosts: set[str] | None = None, settled: tuple[Decision, ...] = ()) -> None:
        """Rebuild the snapshot (all hosts, or some) and swap it in; GC roots first."""
        old = self.resolver.published
        if hosts is None or old.config is not self.config:
            built = build_snapshot(self.config, self.state.hosts, self.cache)
            snapshot = Snapshot(self.config, built.hosts, self._trial_guards(built.hosts))
        else:
            new_hosts = dict(old.hosts)
            for name in hosts:
                new_hosts[name] = build_host_snapshot(self.config, self.config.hosts[name],
                                                      self.state.host(name), cache=self.cache)
            trials = {n: g for n, g in old.trials.items() if n not in hosts}
            trials.update(self._trial_guards({n: new_hosts[n] for n in hosts}))
            snapshot = Snapshot(self.config, new_hosts, trials)
        roots = desired_roots(snapshot.hosts, self.state)
        self._sync_roots(roots, prune=False)   # before the tree is offered
        self.resolver.set_snapshot(snapshot, settled)
        self._sync_roots(roots, prune=True)    # after: old ones can go
        for name, hs in snapshot.hosts.items():
            before = old.hosts.get(name)
            if before is None or before.selection.number != hs.selection.number:
                log.info("%s: serving generation %s (%s)%s", name, hs.selection.number, hs.selection.reason,
                         f" — {hs.selection.note}" if hs.selection.note else "")

    def _sync_roots(self, roots: Mapping[str, Path], prune: bool) -> None:
        problem = sync_roots(self.config.server.gcroots_dir, roots, prune)
        if problem is None:
            self.health.ok(GCROOTS_COMPONENT)
        else:
            self.health.fail(GCROOTS_COMPONENT, f"{problem}: nix-collect-garbage may delete what a host boots next")

    def _trial_guards(self, hosts: Mapping[str, HostSnapshot]) -> dict[str, TrialGuard]:
        """For each of ``hosts`` serving a trial: the host snapshot it gets once the trial is reverted."""
        guards = {}
        for name, hs in hosts.items():
            trial = self.state.host(name).trial
            if trial is None or hs.selection.reason != "trial" or hs.selection.number != trial.generation:
                continue
            after = operations.revert_trial(self.state, name, "", 0.0).host(name)
            fallback = build_host_snapshot(self.config, hs.host, after, cache=self.cache)
            guards[name] = TrialGuard(trial.generation, trial.kernel_served_at is not None, fallback)
        return guards

    def _update_state(self, change) -> None:
        """Persist a state change (under the file lock) and adopt the result.

        While state.json is corrupt nothing is written over it: the change is
        applied to the state in memory (what is served stays right) and the
        daemon reports itself degraded until the file is repaired.
        """
        try:
            self.state = self.store.update(change)
        except StateCorrupt as exc:
            self._state_degraded(exc)
            self.state = change(self.state)

    def _load_state(self) -> State:
        """The state at start: a corrupt file does not stop the daemon (no crash loop under systemd).

        It serves what can be read from the file, completed from the last good
        copy, and refuses to write until ``netboot state repair``.
        """
        try:
            return self.store.load()
        except StateCorrupt as exc:
            self._state_degraded(exc)
            readable = self.store.readable()
            log.warning("serving the readable state: %s", ", ".join(
                f"{n} from {src}" for n, src in sorted(readable.sources.items())) or "no pins or trials")
            return readable.state

    def _reload_state(self) -> None:
        """state.json changed (a CLI command, a repair, or damage): adopt it, or keep the last good state."""
        try:
            state = self.store.load()
        except StateCorrupt as exc:
            self._state_degraded(exc)
            return
        self.state = state
        if self.state_problem is not None:
            log.warning("state file %s is readable again: state writes resume", self.store.path)
            self.state_problem = None
            self.health.ok("state")

    def _state_degraded(self, exc: StateCorrupt) -> None:
        """Report once per distinct damage (log, readiness status, metrics, ``status``)."""
        if self.state_problem == str(exc):
            return
        self.state_problem = str(exc)
        log.error("%s; serving the last good state, not writing state until repaired", exc)
        self.health.fail("state", f"{exc.path} is corrupt; run 'netboot state repair'")

    # -- from the TFTP and HTTP threads ---------------------------------------------------

    def _post(self, item: Decision | dict) -> None:
        """Queue work for the control loop and wake it (any thread)."""
        self.control.put(item)
        self.wake.wake()

    def on_transfer(self, record: TransferRecord) -> None:
        """TFTP thread: count, and queue the boot event; never touches the state directory."""
        self.resolver.transfer_finished(record)
        name = record.meta.get("host")
        if name is None:
            return
        self.boots.record(name, record.outcome, record.bytes_sent)
        with self._event_budget_lock:
            event = self.event_budget.admit(boot_event(record, time.time()), time.monotonic())
        if event is None:
            return
        if self.control.qsize() >= QUEUED_EVENTS_MAX:
            self.events_dropped += 1
            if not self._events_failing:
                self._events_failing = True
                self.health.fail("boot-events", f"{QUEUED_EVENTS_MAX} boot events waiting for the state "
                                                "directory; newer ones are dropped")
            return
        self._post(event)

    # -- the control queue (this loop) -------------------------------------------------------

    def drain_control(self) -> None:
        while True:
            try:
                item = self.control.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, dict):
                self._append_event(item)
            else:
                self._persist(item)

    def _append_event(self, event: dict) -> None:
        try:
            self.store.append_event(event)
        except ApplianceError as exc:
            self.events_dropped += 1
            if not self._events_failing:
                self._events_failing = True
                self.health.fail("boot-events", f"{exc}; boot events are dropped")
            return
        if self._events_failing:
            self._events_failing = False
            self.health.ok("boot-events")

    def _persist(self, decision: Decision) -> None:
        """Write a TFTP-side decision to the state file, then serve from the new state."""
        name = decision.host
        if isinstance(decision, TrialReverted):
            log.warning("%s: %s: reverting", name, decision.why)
            change = lambda st: operations.revert_trial(st, name, decision.why, decision.at)  # noqa: E731
        else:
            change = lambda st: operations.trial_kernel_served(st, name, decision.at)  # noqa: E731
        try:
            self._update_state(change)
        except ApplianceError as exc:
            # Still served as decided (the resolver keeps it applied); retried each tick.
            self.health.fail("state-write", f"{exc}; retrying")
            self._unpersisted.append(decision)
            return
        self.health.ok("state-write")
        self.refresh({name} if name in self.config.hosts else None, settled=(decision,))

    # -- periodic checks -------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self._iscsi_retry_at is not None and time.monotonic() >= self._iscsi_retry_at:
            self.apply_iscsi()
        retry, self._unpersisted = self._unpersisted, []
        for decision in retry:
            self._persist(decision)
        for name, host in self.config.hosts.items():
            reason = operations.trial_due(self.state, name, host.trial_timeout, now)
            if reason:
                log.warning("%s: %s: reverting", name, reason)
                self._update_state(lambda st, n=name, r=reason: operations.revert_trial(st, n, r, now))
                self.refresh({name})
        self._check_sessions(now)

    def _check_sessions(self, now: float) -> None:
        """A host whose iSCSI session stays up for trial_confirm_after has booted: confirm."""
        if not self.config.iscsi.enable or not any(h.iscsi for h in self.config.hosts.values()):
            return
        try:
            from ..iscsi.sessions import read_sessions

            sessions = read_sessions()
        except Exception as exc:  # configfs contents, a missing module: sessions cannot confirm now
            self.health.fail("iscsi-sessions", f"cannot read iSCSI sessions ({exc!r}): trials are not "
                                               "confirmed by sessions")
            return
        self.health.ok("iscsi-sessions")
        snapshot = self.resolver.published
        for name, host in self.config.hosts.items():
            if host.iscsi is None:
                continue
            logged_in = any(s.get("initiator", "").lower() == host.iscsi.initiator
                            for s in sessions.get(self.config.iscsi.target_iqn(name), []))
            if not logged_in:
                self.session_since.pop(name, None)
                continue
            since = self.session_since.setdefault(name, now)
            hs = snapshot.hosts[name]
            how = operations.session_confirms(self.state.host(name), hs.selection.number, since, now,
                                              host.trial_confirm_after)
            if how is None:
                continue
            self._update_state(lambda st, n=name, h=hs, w=how: operations.confirm(
                st, n, h.selection, h.profile.current, now, w))
            self.refresh({name})

    def render_metrics(self) -> str:
        snapshot = self.resolver.snapshot
        served = {name: hs.selection.number for name, hs in snapshot.hosts.items()}
        sessions = {name: name in self.session_since for name, h in self.config.hosts.items() if h.iscsi}
        return render_metrics(self.tftp.read_stats() if self.tftp else TftpStats(), self.boots, served, sessions,
                              self.dhcp.read_stats() if self.dhcp else None,
                              iscsi=self.iscsi_health if self.config.iscsi.enable else None,
                              health=self.health.report(), events_dropped=self.events_dropped,
                              http=self.http.read_stats() if self.http else None,
                              events_suppressed=self.event_budget.suppressed_total)

    # -- config reload / iSCSI --------------------------------------------------------------

    def reload_config(self) -> None:
        try:
            config = load_config(self.config_path)
            require_hosts(config)
        except ConfigError as exc:
            log.error("config reload rejected, keeping the running configuration:")
            for p in exc.problems:
                log.error("  %s", p)
            more = f" and {len(exc.problems) - 1} more" if len(exc.problems) > 1 else ""
            # On the STATUS= line and in health.json (``netboot check`` shows it) until a reload succeeds.
            self.health.fail(CONFIG_COMPONENT, f"reload of {self.config_path} rejected ({exc.problems[0]}{more}): "
                                               "keeps serving the configuration it loaded last", WITHHELD)
            return
        self.health.ok(CONFIG_COMPONENT)
        for key in ("tftp_listen", "http_listen"):
            if getattr(config.server, key) != getattr(self.config.server, key):
                log.warning("%s changed: takes effect after a restart", key)
        if config.dhcp != self.config.dhcp:
            log.warning("[dhcp] changed: takes effect after a restart (host changes apply now)")
        if self.tftp is not None:
            self.tftp.give_up_after = config.server.tftp_give_up_after   # for transfers starting from now
        self.config = config
        if config.server.state_dir != self.store.dir:
            remove_health_file(self.store.dir)
            self.store = StateStore(config.server.state_dir)
            self.state_problem = None
            self.health.ok("state")
            self.health.changed.set()      # publish in the new directory
            self.state = self._load_state()
        # Watch the new configuration's directories before building what they
        # feed, so a change made in between is seen, not lost.
        self._watch()
        self.refresh()
        self.apply_iscsi()
        log.info("configuration reloaded (%d hosts)", len(config.hosts))

    def apply_iscsi(self, at_start: bool = False) -> None:
        """Converge LIO without any destructive step and report the outcome (log;
        health for status, metrics and sd_notify); a failure is retried with backoff.

        ``at_start``, before anything is served: a failure (LIO cannot be opened,
        an action failed, changes had to be withheld) raises ``IscsiError`` and
        stops ``serve``, unless the operator chose ``on_failure = "degraded"``."""
        if not self.config.iscsi.enable:
            self._iscsi_retry_at = None
            self._set_iscsi_health(IscsiHealth())
            return
        from ..iscsi import iscsi_apply

        must_work = at_start and self.config.iscsi.on_failure == "fail"
        try:
            report = iscsi_apply(self.config, automatic=True)
        except ApplianceError as exc:
            if must_work:
                raise IscsiError(_not_serving(str(exc))) from exc
            self._iscsi_failures_in_a_row += 1
            health = self.iscsi_health.failed(str(exc), self._iscsi_failures_in_a_row)
            self._iscsi_retry_at = time.monotonic() + (health.retry_in or 0)
            log.warning("iSCSI: retrying in %.0f s (serving TFTP only meanwhile)", health.retry_in)
            self._set_iscsi_health(health)
            return
        if report.withheld and must_work:
            raise IscsiError(_not_serving(str(report)))
        self._iscsi_failures_in_a_row = 0
        self._iscsi_retry_at = None
        withheld = tuple(str(r) for r in report.plan.refusals) if report.withheld else ()
        (log.warning if withheld else log.info)("iSCSI: %s", report)
        self._set_iscsi_health(self.iscsi_health.applied(withheld))

    def _set_iscsi_health(self, health: IscsiHealth) -> None:
        self.iscsi_health = health
        problem = health.problem() if self.config.iscsi.enable else None
        if problem is None:
            self.health.ok("iscsi")
        else:
            state, reason, text = problem
            self.health.fail("iscsi", reason, state, text)
        self.health.set_details("iscsi", health.as_json() if self.config.iscsi.enable else None)
        self._publish_health()    # at once: a failed apply at start comes before the loop

    # -- proxyDHCP ------------------------------------------------------------------------

    def _start_dhcp(self) -> None:
        """Start the proxyDHCP thread when [dhcp] enable = true; it reads hosts from the live config."""
        settings = self.config.dhcp
        if not settings.enable:
            return
        from ..dhcp import ProxyDhcpServer

        server = ProxyDhcpServer(lambda: self.config, interface=settings.interface, on_lease=self._on_lease)
        try:
            server.run_in_thread()
        except OSError as exc:
            # Hosts that boot by it get no answer: a degradation, on STATUS= and in status (a restart retries).
            self.health.fail(DHCP_COMPONENT, f"proxyDHCP cannot listen on {settings.interface} port 67: "
                                             f"{exc.strerror or exc}; hosts that need its boot answer do not boot")
            return
        self.dhcp = server
        log.info("proxyDHCP on %s, advertising TFTP server %s", settings.interface, settings.server_address)

    def _on_lease(self, ip: str, mac: str) -> None:
        """A configured client showed its address (DHCP thread): resolve its unprefixed TFTP paths by it."""
        self.neighbours.learn(ip, mac)

    # -- the loop ------------------------------------------------------------------------

    def _watch(self) -> None:
        # The state directory must exist to be watched: CLI commands write there.
        self.store.ensure_dir()
        dirs = {h.profile.parent for h in self.config.hosts.values()}
        dirs |= {self.config_path.parent, self.config.server.state_dir}
        for d in self.inotify.watch_only(sorted(dirs)):
            log.warning("cannot watch %s (missing?)", d)

    def _on_fs_events(self, events: list) -> None:
        reload_config = refresh_all = False
        hosts: set[str] = set()
        for directory, name, _mask in events:
            if directory is None:
                refresh_all = True          # queue overflow: rebuild everything
                continue
            if directory == self.config_path.parent and name == self.config_path.name:
                reload_config = True
            if directory == self.config.server.state_dir and name == "state.json":
                self._reload_state()
                refresh_all = True
            for hname, host in self.config.hosts.items():
                if directory == host.profile.parent and name.startswith(host.profile.name):
                    hosts.add(hname)
        if reload_config:
            self.reload_config()
        elif refresh_all:
            self.refresh()
        elif hosts:
            self.refresh(hosts)

    def _watch_frames(self, ports: set[int]) -> None:
        """Learn clients' MACs from their request frames (needs CAP_NET_RAW)."""
        try:
            self.neighbours.use_frames(FrameSources(ports))
            self.health.ok("frame-capture")
        except OSError as exc:
            self.health.fail("frame-capture", f"cannot read request frames ({exc.strerror or exc}): client MACs "
                                              "come from the neighbour table and solicitations only")

    def _taken_by_a_running_daemon(self, exc: TftpError) -> TftpError:
        """The port is taken: by the daemon already serving this configuration, if there is one."""
        running = daemon_serving(self.config_path, self.store.dir)
        if not isinstance(exc.__cause__, OSError) or exc.__cause__.errno != errno.EADDRINUSE \
                or running is None or running[0] == os.getpid():
            return exc
        return TftpError(f"{exc}: netboot serve (pid {running[0]}) already serves this configuration "
                         "(systemctl reload netboot-appliance, or kill -HUP it, to reload)")

    def _publish_health(self) -> None:
        """After a change: the file for ``status``, and STATUS= for systemd (once ready:
        READY=1 carries the first STATUS)."""
        if not self.health.changed.is_set():
            return
        self.health.changed.clear()
        report = self.health.report()
        try:
            write_health_file(self.store.dir, report)
        except OSError as exc:
            log.error("cannot write the health file in %s: %s", self.store.dir, exc.strerror)
        line = status_line(report)
        if self._published_status is not None and line != self._published_status:
            self._published_status = line
            sd_notify(f"STATUS={line}")

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        """Serve until SIGTERM/SIGINT; ``on_ready`` is called once every socket is bound."""

        def on_signal(signum: int, _frame: object) -> None:
            if signum == signal.SIGHUP:
                self._reload = True
            else:
                self._stop = True
            self.wake.wake()

        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        self.store.ensure_dir()
        # Before serving: the first request must not be the one that waits for netlink.
        self.neighbours.connect()
        # TFTP answers at once; LIO is set up meanwhile (seconds under a slow CPU).
        # Boot files whose root disk is not exported yet are not served: those
        # hosts' requests wait until the apply ends, and a failed apply at start
        # stops everything as before.
        if self.config.iscsi.enable:
            self.resolver.held = frozenset(name for name, host in self.config.hosts.items() if host.iscsi)
        listen = [(a.host, a.port) for a in self.config.server.tftp_listen]
        # Transfers are pumped by one worker process per CPU; this process admits them.
        self.tftp = TftpServer(self.resolver, listen=listen, on_transfer=self.on_transfer,
                               give_up_after=self.config.server.tftp_give_up_after,
                               workers=default_worker_count())
        try:
            self.tftp.start()
        except TftpError as exc:
            raise self._taken_by_a_running_daemon(exc) from exc
        self._watch_frames({port for _, port in self.tftp.addresses})
        self.tftp.run_in_thread()
        try:
            self.apply_iscsi(at_start=True)
        except BaseException:
            self.tftp.stop()
            raise
        finally:
            self.resolver.held = frozenset()
        if self.config.server.http_listen:
            from ..http import HttpServer

            self.http = HttpServer(self.resolver, [(a.host, a.port) for a in self.config.server.http_listen],
                                   on_transfer=self.on_transfer)
            try:
                self.http.run_in_thread()
            except ApplianceError:
                self.tftp.stop()
                raise
        self._watch()
        log.info("serving TFTP on %s for %d hosts", ", ".join(f"{h}:{p}" for h, p in self.tftp.addresses),
                 len(self.config.hosts))
        if self.http is not None:
            log.info("serving HTTP on %s", ", ".join(f"{h}:{p}" for h, p in self.http.addresses))
        metrics = None
        if self.config.server.metrics_listen is not None:
            addr = self.config.server.metrics_listen
            try:
                metrics = serve_metrics(addr.host, addr.port, self.render_metrics)
            except OSError as exc:
                self.health.fail(METRICS_COMPONENT, f"metrics cannot listen on {addr}: {exc.strerror or exc}")
        self._start_dhcp()
        self.health.changed.set()     # the file says a daemon runs, even when all is well
        self._publish_health()
        self._published_status = status_line(self.health.report())
        sd_notify(f"READY=1\nSTATUS={self._published_status}")
        if on_ready is not None:
            on_ready()
        next_tick = time.monotonic()
        try:
            while not self._stop:
                timeout = max(0.0, next_tick - time.monotonic())
                readable, _, _ = select.select([self.inotify.fd, self.wake.fileno()], [], [], timeout)
                if self.wake.fileno() in readable:
                    self.wake.drain()
                self.drain_control()
                if self._reload:
                    self._reload = False
                    sd_notify("RELOADING=1")
                    self.reload_config()
                    sd_notify("READY=1")
                if self.inotify.fd in readable:
                    time.sleep(DEBOUNCE)
                    self._on_fs_events(self.inotify.read())
                if time.monotonic() >= next_tick:
                    self.tick(time.time())
                    next_tick = time.monotonic() + TICK
                self._publish_health()
        finally:
            sd_notify("STOPPING=1")
            log.info("stopping: finishing transfers")
            self.tftp.stop(drain=2.0)
            if self.http is not None:
                self.http.stop(drain=2.0)
            self.drain_control()
            remove_health_file(self.store.dir)
            if metrics is not None:
                metrics.shutdown()
            if self.dhcp is not None:
                self.dhcp.stop()
        return 0


def _not_serving(problem: str) -> str:
    return (f"iSCSI: {problem}; not serving (set [iscsi] on_failure = \"degraded\" in the config "
            "to serve TFTP without iSCSI meanwhile)")


def run_daemon(config_path: Path, on_ready: Callable[[], None] | None = None) -> int:
    with Appliance.open(config_path) as appliance:
        return appliance.run(on_ready)
