"""Requests (TFTP or HTTP) → boot-tree files: host resolution, access control, boot events.

Implements ``appliance.content.ContentProvider`` for every transport.  Lookups read one
``Snapshot`` reference per request, so a transfer keeps the files it
started with while the control loop swaps in new snapshots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

from ..boot import Generated, StoreFile
from ..boot.render import IPXE_SCRIPT, UBOOT_SCRIPT
from ..config import BootStyle, Host
from ..content import AccessDenied, BytesContent, Content, FileContent, FileNotFound, TransferRecord
from .neighbours import NeighbourTable, canonical_ip
from .snapshot import HostSnapshot, Snapshot

log = logging.getLogger(__name__)

# The first file each boot style fetches: seeing it again means a new boot.
BOOT_ENTRY = {BootStyle.RPI: ("config.txt", "start4.elf"), BootStyle.UBOOT: (UBOOT_SCRIPT,),
              BootStyle.IPXE: (IPXE_SCRIPT,)}


@dataclass(frozen=True)
class PathIndex:
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
    if gen is None:
        return set()
    d = f"{hs.host.tftp_prefix}generations/{gen}/"
    if hs.host.boot == BootStyle.RPI:
        return {hs.host.tftp_prefix + "kernel8.img", d + "kernel8.img"}
    return {d + "kernel"}


def is_boot_entry(hs: HostSnapshot, path: str) -> bool:
    names = BOOT_ENTRY[hs.host.boot]
    if hs.host.boot == BootStyle.UBOOT and path.startswith("pxelinux.cfg/"):
        return True   # U-Boot's own ``pxe`` boot target fetches the menu without boot.scr.uimg
    return path in names or any(path == hs.host.tftp_prefix + n for n in names)


class BootResolver:
    """The ``ContentProvider`` of the appliance.

    ``before_open(host, path)`` lets the control loop react to a request
    before it is served (a trial host booting again); it may swap the
    snapshot, which is then re-read.
    """

    def __init__(self, snapshot: Snapshot, neighbours: NeighbourTable,
                 before_open: Callable[[HostSnapshot, str], None] | None = None) -> None:
        self.neighbours = neighbours
        self.before_open = before_open
        self.set_snapshot(snapshot)

    def set_snapshot(self, snapshot: Snapshot) -> None:
        # One tuple assignment: readers see either the old pair or the new one.
        self._current = (snapshot, PathIndex.of(snapshot))

    @property
    def snapshot(self) -> Snapshot:
        return self._current[0]

    def locate(self, client_ip: str, path: str) -> tuple[HostSnapshot, str, str | None]:
        """(host snapshot, full path, client MAC) or FileNotFound / AccessDenied."""
        snapshot, index = self._current
        mac: str | None = None
        mac_known = False

        def client_mac() -> str | None:
            nonlocal mac, mac_known
            if not mac_known:
                mac, mac_known = self.neighbours.mac_of(client_ip), True
            return mac

        owners = index.owners.get(path, ())
        full = path
        if len(owners) != 1:
            m = client_mac()
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
        self._check_access(hs.host, client_ip, client_mac())
        return hs, full, mac

    @staticmethod
    def _check_access(host: Host, client_ip: str, mac: str | None) -> None:
        if mac is not None and host.mac is not None:
            if mac != host.mac:
                log.warning("denied %s (%s) access to host %s's files", client_ip, mac, host.name)
                raise AccessDenied(f"files of host {host.name} are not for {mac}")
            return
        if host.tftp_access == "strict":
            raise AccessDenied(f"host {host.name} is strict and the client's MAC is unknown")

    def open(self, client: tuple[str, int], path: str) -> Content:
        client_ip = canonical_ip(client[0])
        hs, full, mac = self.locate(client_ip, path)
        if self.before_open is not None:
            self.before_open(hs, full)
            hs, full, mac = self.locate(client_ip, path)   # the snapshot may have changed
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
            log.warning("refused %s to %s: %s", full, client_ip, exc)
            raise


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
    }
