"""What ``netboot doctor`` knows about the machine: plain, frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PortFacts:
    proto: str                  # "udp" (TFTP) | "tcp" (iSCSI portal)
    address: str                # as configured, "0.0.0.0:69"
    port: int
    bound: bool                 # a socket on this machine listens on the port
    reachable: bool | None      # answered a probe (None: not probed)
    detail: str = ""


@dataclass(frozen=True)
class LioFacts:
    configfs_mounted: bool
    target_loaded: bool         # /sys/kernel/config/target exists
    modules: frozenset[str]     # loaded kernel modules of interest
    modules_readable: bool
    dbroot: str | None
    plan_actions: tuple[str, ...] | None   # None: the plan could not be computed
    plan_refusals: tuple[str, ...] = ()
    plan_error: str | None = None


@dataclass(frozen=True)
class Generation:
    number: int
    valid: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostFacts:
    name: str
    boot: str
    tftp_prefix: str
    profile: str
    prefix_kind: str = "mac"        # "mac" | "serial" | "literal"

    profile_problems: tuple[str, ...] = ()
    generations: tuple[Generation, ...] = ()
    current: int | None = None      # what the profile link points to
    served: int | None = None
    reason: str = ""
    tree_paths: frozenset[str] = frozenset()
    kernel_names: frozenset[str] = frozenset()      # the file names the served kernel has (config.txt kernel=)
    tree_error: str | None = None
    firmware_path: str | None = None
    firmware_files: frozenset[str] | None = None   # top-level names; None: missing or unreadable
    secret_problems: tuple[tuple[str, str], ...] = ()  # (key path, problem)
    iscsi: bool = False
    target: str | None = None
    sessions: int | None = None                     # None: unknown (LIO not readable)
    events: tuple[dict, ...] = ()                   # oldest first


@dataclass(frozen=True)
class Facts:
    config_path: str
    config_problems: tuple[str, ...] = ()
    state_problems: tuple[str, ...] = ()
    daemon_problems: tuple[tuple[str, str, str], ...] = ()   # the running daemon's (component, state, reason)
    serving_pid: int | None = None      # a daemon serving this (now invalid) file's last good version
    iscsi_enabled: bool = False
    server_address: str = "<this server>"
    ports: tuple[PortFacts, ...] = ()
    lio: LioFacts | None = None
    hosts: tuple[HostFacts, ...] = field(default_factory=tuple)
