"""Requests (TFTP or HTTP) → boot-tree files: host resolution, access control, boot events.

Implements ``appliance.content.ContentProvider`` for every transport.  Lookups read one
``Snapshot`` reference per request, so a transfer keeps the files it
started with while the control loop swaps in new snapshots; nothing here
touches the state file or rebuilds anything (the TFTP loop never waits).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, Mapping, NamedTuple

from ..boot import Generated, StoreFile
from ..config import Host
from ..content import AccessDenied, BytesContent, Content, FileContent, FileNotFound, RetryLater, TransferRecord
from ..logthrottle import LogThrottle
from .neighbours import ClientLink, NeighbourTable, canonical_ip
from .snapshot import HostSnapshot, Snapshot

log = logging.getLogger(__name__)

HOLD_RETRY = 0.2       # seconds between looks at a held request

class PathIndex(NamedTuple):
    """Every TFTP path of every host's tree → the hosts that have it."""

    owners: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, snapshot: Snapshot) -> "PathIndex":
        owners: dict[str, list[str]] = {}
        for name, hs in snapshot.hosts.items():
            for path in hs.tree.files:
                owners.setdefault(path, []).append(name)
        return cls({p: tuple(h) for p, h in owners.items()})


def kernel_paths(hs: HostSnapshot) -> set[str]:
    """The TFTP paths of the selected generation's kernel."""
    gen = hs.selection.number
    return set() if gen is None else hs.host.boot.kernel_paths(hs.host, gen)


def starts_boot(hs: HostSnapshot, path: str) -> bool:
    """A request that means the host is booting again: its style's first files or its kernel."""
    return hs.host.boot.starts_boot(hs.host, path) or path in kernel_paths(hs)


class _Decision:
    """A decision of the TFTP side, for the control loop to persist: immutable, equal only to itself.

    Plain slotted classes, not dataclasses: defined at every start, before TFTP answers."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class KernelServed(_Decision):
    """A trial host was served its trial kernel: its next boot entry or kernel fetch is a new boot."""

    __slots__ = ("host", "generation", "at")

    def __init__(self, host: str, generation: int, at: float) -> None:
        for name, value in (("host", host), ("generation", generation), ("at", at)):
            object.__setattr__(self, name, value)


class TrialReverted(_Decision):
    """A trial host booted again before its trial was confirmed: it now gets its fallback."""

    __slots__ = ("host", "generation", "why", "at")

    def __init__(self, host: str, generation: int, why: str, at: float) -> None:
        for name, value in (("host", host), ("generation", generation), ("why", why), ("at", at)):
            object.__setattr__(self, name, value)


Decision = KernelServed | TrialReverted


def apply_decision(snapshot: Snapshot, decision: Decision) -> Snapshot:
    """The snapshot with a TFTP-side decision taken (pure); unchanged if it no longer applies."""
    guard = snapshot.trials.get(decision.host)
    if guard is None or guard.generation != decision.generation:
        return snapshot
    trials = dict(snapshot.trials)
    if isinstance(decision, KernelServed):
        if guard.kernel_served:
            return snapshot
        trials[decision.host] = guard._replace(kernel_served=True)
        return snapshot._replace(trials=trials)
    del trials[decision.host]
    hosts = dict(snapshot.hosts)
    hosts[decision.host] = guard.fallback
    return snapshot._replace(hosts=hosts, trials=trials)


class BootResolver:
    """The ``ContentProvider`` of the appliance.

    Decides from the snapshot the control loop published, never waiting on
    it: what the TFTP side learns (a trial kernel served, a trial host
    booting again) is applied to the served snapshot at once, and passed to
    ``on_decision`` for the control loop to persist.  Once it has, it
    publishes a snapshot built from the new state and ``settles`` the
    decision; until then every snapshot it publishes gets the decision
    applied on top.
    """

    def __init__(self, snapshot: Snapshot, neighbours: NeighbourTable,
                 on_decision: Callable[[Decision], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.neighbours = neighbours
        self.on_decision = on_decision
        self._clock = clock
        self._swap = threading.Lock()            # held for dictionary work only, never for I/O
        self._decisions: dict[str, Decision] = {}
        self._published = snapshot
        self._current = (snapshot, PathIndex.of(snapshot))
        # Hosts whose requests wait (RetryLater) until the daemon lifts the hold:
        # while LIO is set up at start, a host's boot files wait for its root disk.
        self.held: frozenset[str] = frozenset()
        # Refusals repeat at network speed (a client retrying, a peer probing): one line a minute per host.
        self._log = LogThrottle(log)

    def set_snapshot(self, snapshot: Snapshot, settled: Iterable[Decision] = ()) -> None:
        index = PathIndex.of(snapshot)
        with self._swap:
            for decision in settled:
                if self._decisions.get(decision.host) is decision:
                    del self._decisions[decision.host]
            self._published = snapshot
            # One tuple assignment: readers see either the old pair or the new one.
            self._current = self._derive(snapshot, index)

    def _derive(self, published: Snapshot, index: PathIndex | None = None) -> tuple[Snapshot, PathIndex]:
        """Caller holds ``_swap``."""
        served = published
        for decision in self._decisions.values():
            served = apply_decision(served, decision)
        if index is None or served.hosts is not published.hosts:
            index = PathIndex.of(served)
        return served, index

    def _decide(self, decision: Decision) -> None:
        with self._swap:
            self._decisions[decision.host] = decision
            self._current = self._derive(self._published)
        if self.on_decision is not None:
            self.on_decision(decision)

    @property
    def snapshot(self) -> Snapshot:
        """What is served now (the published snapshot with pending decisions applied)."""
        return self._current[0]

    @property
    def published(self) -> Snapshot:
        return self._published

    def locate(self, client: tuple[str, int], path: str,
               current: tuple[Snapshot, PathIndex] | None = None) -> tuple[HostSnapshot, str, str | None]:
        """(host snapshot, full path, client MAC) or FileNotFound / AccessDenied / RetryLater."""
        snapshot, index = current or self._current
        client_ip = canonical_ip(client[0])
        link: ClientLink | None = None

        def client_link() -> ClientLink:
            nonlocal link
            if link is None:
                link = self.neighbours.link_of(client_ip, client[1])
            return link

        owners = index.owners.get(path, ())
        full = path
        if len(owners) != 1:
            m = client_link().mac
            host = snapshot.config.host_by_mac(m) if m else None
            if host is None:
                if owners:
                    raise FileNotFound(f"{path}: several hosts have it and the client's MAC is unknown")
                raise FileNotFound(f"{path}: no such file")
            if host.name not in owners:
                full = host.tftp_prefix + path
                if host.name not in index.owners.get(full, ()):
                    raise FileNotFound(f"{path}: no such file for host {host.name}")
            owner = host.name
        else:
            owner = owners[0]
        hs = snapshot.hosts[owner]
        self._check_access(hs.host, client_ip, client_link())
        return hs, full, client_link().mac

    def _check_access(self, host: Host, client_ip: str, link: ClientLink) -> None:
        if host.mac is not None:
            if link.mac is not None:
                if link.mac != host.mac:
                    self._log(("denied", host.name), logging.WARNING, "denied %s (%s) access to host %s's files",
                              client_ip, link.mac, host.name)
                    raise AccessDenied(f"files of host {host.name} are not for {link.mac}")
                return
            if link.must_know:
                self._log(("unidentified", host.name), logging.WARNING,
                          "denied %s access to host %s's files: its MAC could not be learned", client_ip, host.name)
                raise AccessDenied(f"host {host.name}: the MAC of {client_ip} could not be learned")
        if host.tftp_access == "strict":
            raise AccessDenied(f"host {host.name} is strict and the client's MAC is unknown")

    def open(self, client: tuple[str, int], path: str) -> Content:
        current = self._current
        hs, full, mac = self.locate(client, path, current)
        if hs.host.name in self.held:
            raise RetryLater(HOLD_RETRY)
        guard = current[0].trials.get(hs.host.name)
        if guard is not None and guard.kernel_served and starts_boot(hs, full):
            why = f"host fetched {full} again before the trial of generation {guard.generation} was confirmed"
            self._decide(TrialReverted(hs.host.name, guard.generation, why, self._clock()))
            hs, full, mac = self.locate(client, path)   # the same request, from the fallback
        source = hs.tree.get(full)
        if source is None:
            raise FileNotFound(f"{path}: no such file")
        meta = {"host": hs.host.name, "generation": hs.tree.generation_of(full), "kernel": full in kernel_paths(hs)}
        if isinstance(source, Generated):
            return BytesContent(source.data, meta)
        assert isinstance(source, StoreFile)
        try:
            # Resolved and contained when the snapshot was built; opened without
            # following symlinks so nothing swapped in since can escape the store.
            return FileContent.resolved(source.path, meta)
        except AccessDenied as exc:
            self._log(("refused", full), logging.WARNING, "refused %s to %s: %s", full, canonical_ip(client[0]), exc)
            raise

    def transfer_finished(self, record: TransferRecord) -> None:
        """A trial kernel served completely arms the revert on the host's next boot."""
        name = record.meta.get("host")
        if not (record.meta.get("kernel") and record.outcome == "complete" and isinstance(name, str)):
            return
        guard = self._current[0].trials.get(name)
        if guard is not None and not guard.kernel_served and record.meta.get("generation") == guard.generation:
            self._decide(KernelServed(name, guard.generation, self._clock()))


def boot_event(record: TransferRecord, now: float) -> dict:
    """A TransferRecord as the boot event stored and shown by ``status``."""
    return {
        "time": now,
        "host": record.meta.get("host"),
        "generation": record.meta.get("generation"),
        "path": record.path,
        "bytes": record.bytes_sent,
        "size": record.size,
        "duration": round(record.duration, 3),
        "client": f"{record.client[0]}:{record.client[1]}",
        "outcome": record.outcome,
        "blksize": record.blksize,
        "windowsize": record.windowsize,
        "retransmissions": record.retransmissions,
        "transport": record.transport,
    }
