"""File-system side of boot trees: list firmware and dtbs into ``BootInputs``."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from ..config.model import Config, Host
from ..errors import GenerationError
from ..nix import Generation, StoreCache, StoreRoots
from .styles.base import BootInputs

MAX_FILES = 20000  # a firmware or dtbs tree is a few thousand files at most


def list_files(root: Path, roots: StoreRoots) -> tuple[tuple[str, Path], ...]:
    """Every regular file below ``root`` as (relative path, resolved path).

    Entries whose symlinks leave the allowed roots are skipped: they are
    never served.  So are names no client can ask for (a control character,
    bytes that are not UTF-8: TFTP refuses such names), which would also
    break the lines of ``netboot tree``.
    """
    out: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        # Never wander out of the allowed roots or around a directory loop.
        try:
            real_dir = roots.resolve(dirpath)
        except GenerationError:
            dirnames[:] = []
            continue
        if real_dir in seen:
            dirnames[:] = []
            continue
        seen.add(real_dir)
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not rel.isprintable():   # os.walk gives undecodable bytes as surrogates: not printable
                continue
            try:
                real = roots.resolve(os.path.join(dirpath, name))
            except GenerationError:
                continue
            if real.is_file():
                out.append((rel, real))
            if len(out) >= MAX_FILES:
                return tuple(out)
    return tuple(out)


def store_roots(config: Config) -> StoreRoots:
    return StoreRoots.of(config.server.store_dir, *(fw.path for fw in config.firmware.values()))


def gather_inputs(config: Config, host: Host, selected: Generation | None, kept: tuple[Generation, ...],
                  roots: StoreRoots | None = None, cache: StoreCache | None = None) -> BootInputs:
    roots = roots or store_roots(config)

    def listing(directory: Path) -> tuple[tuple[str, Path], ...]:
        if cache is None:
            return list_files(directory, roots)
        return cache.listing(directory, lambda: list_files(directory, roots))

    firmware: tuple[tuple[str, Path], ...] = ()
    if host.firmware and host.firmware in config.firmware:
        firmware = listing(config.firmware[host.firmware].path)
    dtbs = {g.number: listing(g.dtbs) for g in {*kept, *([selected] if selected else [])} if g.dtbs}
    return BootInputs(host=host, selected=selected, kept=kept, firmware=firmware, dtbs=dtbs,
                      http_base=http_base_url(config))


def http_base_url(config: Config) -> str | None:
    """Where clients reach the HTTP transport: the first ``http_listen`` address, or for a
    wildcard the proxyDHCP's ``server_address`` when the proxy is on, else iPXE's
    ``${next-server}``.  With a router doing DHCP and the proxy only the boot options,
    ``${next-server}`` is the router's siaddr (dnsmasq puts its own address there), not this
    machine; the proxy's server address is the one clients were told to boot from."""
    if not config.server.http_listen:
        return None
    listen = config.server.http_listen[0]
    host = listen.host
    if ipaddress.ip_address(host).is_unspecified:
        proxy = config.dhcp
        host = proxy.server_address if proxy.enable and proxy.server_address else "${next-server}"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{listen.port}"
