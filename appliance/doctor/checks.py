"""The rules of ``netboot doctor``: Facts → Findings, no I/O.

Each finding says what is wrong and the command or setting that fixes it.
Raspberry Pi EEPROM settings are those of the bootloader documentation
(raspberrypi.com, "Raspberry Pi bootloader configuration": BOOT_ORDER,
TFTP_IP, TFTP_PREFIX); what each boot style needs comes from its module
(``appliance/boot/styles``).
"""

from __future__ import annotations

import ipaddress

from dataclasses import asdict, dataclass
from fnmatch import fnmatch

from ..boot.styles import BootStyle, style_named
from .facts import Facts, HostFacts, LioFacts, PortFacts

# Kernel modules LIO needs, by what uses them.
LIO_CORE = ("target_core_mod", "iscsi_target_mod")


@dataclass(frozen=True)
class Finding:
    check: str          # "ports", "lio", "config", "host:<name>", …
    status: str         # "ok" | "warning" | "error"
    message: str
    fix: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def _ok(check: str, message: str) -> Finding:
    return Finding(check, "ok", message)


def _error(check: str, message: str, fix: str) -> Finding:
    return Finding(check, "error", message, fix)


def _warning(check: str, message: str, fix: str) -> Finding:
    return Finding(check, "warning", message, fix)


def diagnose(facts: Facts) -> list[Finding]:
    if facts.config_problems:
        findings = [_error("config", f"{facts.config_path}: {p}", f"netboot -c {facts.config_path} check")
                    for p in facts.config_problems]
        if facts.serving_pid is not None:
            findings.append(_warning("config", f"netboot serve (pid {facts.serving_pid}) keeps serving the "
                                               "configuration it loaded last", "fix the file; it is reloaded then"))
        return findings
    findings = [_ok("config", f"{facts.config_path} is valid")]
    findings += [_error("state", p, "netboot state show, then netboot state repair") for p in facts.state_problems]
    findings += [check_daemon(*problem) for problem in facts.daemon_problems]
    findings += [check_port(p, facts.server_address) for p in facts.ports]
    if facts.iscsi_enabled:
        findings += check_lio(facts.lio)
    for host in facts.hosts:
        findings += check_host(host, facts)
    return findings


# -- what the running daemon reports ------------------------------------------------

def check_daemon(component: str, state: str, reason: str) -> Finding:
    """A degraded component of the running daemon (health.json) is an error; a withheld change a warning."""
    fix = "journalctl -u netboot-appliance for when and why; netboot status shows it while it lasts"
    if state == "degraded":
        return _error(f"daemon:{component}", reason, fix)
    return _warning(f"daemon:{component}", f"{state}: {reason}", fix)


# -- ports ---------------------------------------------------------------------------

def _firewall_hint(p: PortFacts) -> str:
    return (f"open {p.proto.upper()} {p.port} to the clients: on NixOS "
            "services.netboot-appliance.openFirewall = true; with nftables "
            f"`nft add rule inet filter input {p.proto} dport {p.port} accept`; with iptables "
            f"`iptables -A INPUT -p {p.proto} --dport {p.port} -j ACCEPT`")


def check_port(p: PortFacts, server: str) -> Finding:
    what = "TFTP" if p.proto == "udp" else "iSCSI portal"
    check = f"port:{p.proto}/{p.port}"
    if not p.bound:
        if p.proto == "udp":
            fix = ("start the appliance (systemctl start netboot-appliance, or netboot serve); "
                   "binding a port below 1024 needs root or CAP_NET_BIND_SERVICE")
        else:
            fix = "netboot iscsi apply (creates the portal), and check that the address is one of this machine's"
        return _error(check, f"{what} {p.address}: nothing listens on {p.proto.upper()} port {p.port}"
                      + (f" ({p.detail})" if p.detail else ""), fix)
    if p.reachable is False:
        return _error(check, f"{what} {p.address}: listening, but a probe got no answer"
                      + (f" ({p.detail})" if p.detail else ""),
                      "another program may hold the port (ss -lunp / ss -ltnp); " + _firewall_hint(p))
    if _loopback(p.address):
        key = "server.tftp_listen" if p.proto == "udp" else "iscsi.portals"
        return _warning(check, f"{what} {p.address}: listening and answering, but on loopback only: no other "
                        "machine can reach it",
                        f"list the LAN address (or 0.0.0.0 / [::]) in {key}, unless this is a local test")
    return Finding(check, "ok", f"{what} {p.address}: listening and answering; clients must also reach it "
                   f"through the firewall", _firewall_hint(p))


def _loopback(address: str) -> bool:
    """``127.0.0.1:69`` / ``[::1]:69``: an address only this machine reaches."""
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# -- LIO -----------------------------------------------------------------------------

def check_lio(lio: LioFacts | None) -> list[Finding]:
    if lio is None:
        return [_error("lio", "LIO state could not be read", "run netboot doctor as root")]
    findings = []
    if not lio.configfs_mounted:
        findings.append(_error("lio", "configfs is not mounted on /sys/kernel/config",
                               "modprobe configfs && mount -t configfs none /sys/kernel/config "
                               "(NixOS: sys-kernel-config.mount)"))
    missing = [m for m in LIO_CORE if m not in lio.modules] if lio.modules_readable else []
    if "target_core_mod" in missing or (lio.configfs_mounted and not lio.target_loaded):
        findings.append(_error("lio", "the LIO target core (target_core_mod) is not loaded",
                               "modprobe target_core_mod target_core_file target_core_iblock "
                               "(NixOS: services.netboot-appliance with iscsi.enable loads them at boot)"))
    elif "iscsi_target_mod" in missing:
        findings.append(_warning("lio", "iscsi_target_mod is not loaded yet",
                                 "netboot iscsi apply loads it (the kernel does, on the first iSCSI target)"))
    if lio.dbroot is not None and lio.dbroot != "/etc/target":
        findings.append(_warning("lio", f"LIO's database root is {lio.dbroot}, not /etc/target",
                                 "it can only change before iscsi_target_mod loads: don't load that module at "
                                 "boot, create /etc/target (mode 0700) and reboot"))
    if lio.plan_error:
        findings.append(_error("lio", f"the iSCSI plan cannot be computed: {lio.plan_error}",
                               "netboot iscsi plan"))
    elif lio.plan_actions:
        findings.append(_error("lio", f"LIO differs from the configuration: {len(lio.plan_actions)} pending "
                               f"change(s): " + "; ".join(lio.plan_actions[:5]), "netboot iscsi apply"))
    if lio.plan_refusals:
        findings.append(_error("lio", "changes refused to protect data or live sessions: "
                               + "; ".join(lio.plan_refusals[:5]),
                               "review netboot iscsi plan; netboot iscsi apply --allow-destroy with the host off"))
    if not findings:
        findings.append(_ok("lio", "configfs, LIO modules and targets match the configuration"))
    return findings


# -- hosts ---------------------------------------------------------------------------

def check_host(h: HostFacts, facts: Facts) -> list[Finding]:
    check = f"host:{h.name}"
    findings = []
    valid = [g for g in h.generations if g.valid]
    if not h.generations:
        findings.append(_error(check, f"no generation in profile {h.profile}"
                               + (f" ({'; '.join(h.profile_problems)})" if h.profile_problems else ""),
                               f"publish one: nixos-rebuild switch on the host (netboot.client), or "
                               f"netboot register {h.name} /nix/store/…-nixos-system-…"))
    elif not valid:
        problems = "; ".join(f"{g.number}: {', '.join(g.problems)}" for g in h.generations[-3:])
        findings.append(_error(check, f"no valid generation ({problems})",
                               f"register a complete NixOS toplevel: netboot register {h.name} STOREPATH"))
    elif h.served is None:
        findings.append(_error(check, f"no generation is served ({h.reason})",
                               f"netboot unpin {h.name}, or netboot pin {h.name} N with N in: "
                               + ", ".join(str(g.number) for g in valid)))
    else:
        invalid = [g.number for g in h.generations if not g.valid]
        findings.append(_ok(check, f"serves generation {h.served} ({h.reason}); {len(valid)} valid"
                            + (f", invalid: {invalid}" if invalid else "")))
        current = next((g for g in h.generations if g.number == h.current), None)
        if current is not None and not current.valid and h.served != current.number:
            findings.append(_warning(check, f"the profile's current generation {current.number} is not served: "
                                            f"{'; '.join(current.problems)}",
                                     f"publish a complete one (nixos-rebuild switch again), or roll the profile "
                                     f"back to what is served: nix-env -p {h.profile} --rollback"))
    if h.tree_error:
        findings.append(_error(check, f"boot tree: {h.tree_error}", f"netboot tree {h.name}"))
    style = style_named(h.boot)
    if style.default_firmware is not None or style.required_files:
        findings += _check_style_files(h, style, check)
    for key, problem in h.secret_problems:
        findings.append(_error(check, f"{key}: {problem}",
                               "write the CHAP secret (12–16 characters) into that file, owned by root, "
                               "mode 0400; the same secret goes into the client's chapConfigFile"))
    findings += _check_boot_events(h, facts, check)
    return findings


def _check_style_files(h: HostFacts, style: BootStyle, check: str) -> list[Finding]:
    findings = []
    if style.default_firmware is not None and h.firmware_files is None:
        findings.append(_error(check, f"firmware directory {h.firmware_path} is missing or unreadable",
                               "set [firmware.rpi] path to the boot/ folder of the Raspberry Pi firmware "
                               "(NixOS: the module defaults it to pkgs.raspberrypifw)"))
    elif style.default_firmware is not None:
        missing = [f for f in style.firmware_files if f not in (h.firmware_files or ())]
        if missing:
            findings.append(_error(check, f"firmware {h.firmware_path} lacks {', '.join(missing)}",
                                   "point [firmware.rpi] path at a complete firmware boot/ folder"))
    if h.served is not None and not h.tree_error:
        absent = [f for f in style.required_files
                  if not any(fnmatch(p, h.tftp_prefix + f) for p in h.tree_paths)]
        if absent:
            findings.append(_error(check, f"boot tree under {h.tftp_prefix or '/'} lacks {', '.join(absent)}",
                                   f"netboot tree {h.name}; check the firmware path and the generation's dtbs/"))
    return findings


def _is_kernel(path: str, h: HostFacts) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name in h.kernel_names or name in ("kernel8.img", "kernel", "kernel_2712.img") or name.startswith("vmlinuz")


def _is_initrd(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in ("initrd", "initrd.img")


def _never_fetched_fix(h: HostFacts, facts: Facts) -> str:
    if style_named(h.boot).eeprom_netboot:
        prefix = {"mac": "TFTP_PREFIX=2 (the MAC directory)", "serial": "TFTP_PREFIX=0 (the serial number)"}.get(
            h.prefix_kind, f"TFTP_PREFIX=1, TFTP_PREFIX_STR={h.tftp_prefix}")
        return (f"in the Pi's EEPROM (rpi-eeprom-config --edit): BOOT_ORDER with 2 (network), "
                f"TFTP_IP={facts.server_address}, {prefix}; or DHCP option 66 = \"{facts.server_address}\"")
    return (f"DHCP must give this MAC next-server {facts.server_address} and a boot file "
            f"(see netboot tree {h.name}); or enable [dhcp] (proxyDHCP)")


def _check_boot_events(h: HostFacts, facts: Facts, check: str) -> list[Finding]:
    if h.served is None:
        return []
    if not h.events:
        return [_warning(check, "no boot seen: the host has not fetched anything yet",
                         _never_fetched_fix(h, facts))]
    # The last boot: from the last kernel request, or the last few transfers.
    starts = [i for i, e in enumerate(h.events) if _is_kernel(str(e.get("path", "")), h)]
    last = list(h.events[starts[-1]:] if starts else h.events)
    failed = [e for e in last if e.get("outcome") != "complete"]
    kernel = any(_is_kernel(str(e.get("path")), h) and e.get("outcome") == "complete" for e in last)
    initrd = any(_is_initrd(str(e.get("path"))) and e.get("outcome") == "complete" for e in last)
    stop = last[-1]
    where = f"last transfer {stop.get('path')} ({stop.get('outcome')}) to {stop.get('client')}"
    findings = []
    if failed and not (kernel and initrd):
        e = failed[-1]
        findings.append(_error(check, f"boot stopped: {e.get('path')} ended {e.get('outcome')} "
                               f"after {e.get('bytes')} of {e.get('size')} bytes",
                               "journalctl -u netboot-appliance for the transfer; a link or "
                               "firewall dropping UDP between the host and this server"))
    elif not kernel:
        findings.append(_error(check, f"boot stopped before the kernel: {where}",
                               f"check the boot files: netboot cat {h.name} "
                               + (f"{h.tftp_prefix}config.txt" if style_named(h.boot).eeprom_netboot else "(menu or script)")))
    elif not initrd:
        findings.append(_error(check, f"boot stopped after the kernel, the initrd was not fetched: {where}",
                               f"netboot tree {h.name}; the kernel command line: netboot cat {h.name} "
                               + (f"{h.tftp_prefix}cmdline.txt" if style_named(h.boot).eeprom_netboot else "…")))
    elif h.iscsi and h.sessions == 0:
        findings.append(_error(check, f"kernel and initrd served, but {h.target} has no iSCSI session: "
                               "the initrd did not log in",
                               f"on the host's console look for iscsiadm/iscsid errors; check the portal "
                               f"is reachable, the initiator IQN and CHAP match (netboot iscsi status)"))
    else:
        session = "" if not h.iscsi else (", iSCSI session up" if h.sessions else ", iSCSI session unknown")
        findings.append(_ok(check, f"last boot fetched kernel and initrd{session}; {where}"))
    return findings


def render_text(findings: list[Finding]) -> str:
    """One line per finding (OK / WARN / FAIL), its fix indented below problems."""
    marks = {"ok": "OK  ", "warning": "WARN", "error": "FAIL"}
    lines = []
    for f in findings:
        lines.append(f"{marks[f.status]} {f.check}: {f.message}")
        if f.fix and f.status != "ok":
            lines.append(f"     fix: {f.fix}")
    errors = sum(f.status == "error" for f in findings)
    warnings = sum(f.status == "warning" for f in findings)
    lines.append(f"{errors} problem{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}")
    return "\n".join(lines)
