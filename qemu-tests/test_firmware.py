"""Real PC firmware boots from the appliance over TFTP and HTTP, on a home-network split:
dnsmasq hands out addresses only and sends IPv6 router advertisements (like a router), the
appliance's proxyDHCP gives the boot options.

- UEFI PXE: OVMF's own PXE stack (virtio-net, no option ROM) → ``ipxe.efi`` over TFTP →
  ``boot.ipxe`` → kernel and initrd over HTTP → iSCSI root → marker;
- BIOS: SeaBIOS with QEMU's iPXE ROM → ``boot.ipxe`` → kernel and initrd over HTTP;
- a client with another MAC gets none of the host's files over HTTP;
- UEFI HTTP Boot: OVMF fetches ``ipxe.efi`` from an ``http://`` URL, then as above.

The proof that HTTP carried kernel and initrd is the appliance's own boot events
(``transport``), not the console.  One server VM for the module; one client at a time.
Run with ``qemu-tests/e2e/run -k firmware`` or ``pytest qemu-tests/test_firmware.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e.clients import OVMF_CODE, ovmf_argv, x86_ipxe_argv     # noqa: E402
from e2e.harness import E2E, INTRUDER, PC, module_lab        # noqa: E402
from e2e.store import HostSpec                                 # noqa: E402

pytestmark = pytest.mark.vm

HTTP_PORT = 8080
IPXE_NBPS = Path("/usr/lib/ipxe")      # Debian's ipxe package (nixpkgs' ipxe has the same files)


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    if not (IPXE_NBPS / "ipxe.efi").exists() or not OVMF_CODE.exists():
        pytest.skip("needs Debian's ipxe and ovmf packages (scripts/install.sh)")
    # A home network: the router hands out addresses (no boot options) and IPv6 router
    # advertisements; the appliance's proxyDHCP the boot options.
    with module_lab(request, tmp_path_factory.mktemp("firmware"), dhcp_boot_options=False,
                    router_advertisements=True, http_port=HTTP_PORT, proxy_dhcp=True,
                    ipxe_firmware=IPXE_NBPS) as e2e:
        yield e2e


def _prefix(spec: HostSpec) -> str:
    return spec.mac.replace(":", "-") + "/"


def transfers(e2e: E2E, spec: HostSpec, since: float) -> dict[str, set[str]]:
    """path → transports that completed it, from the appliance's boot events."""
    out: dict[str, set[str]] = {}
    for ev in e2e.appliance.events(spec.name, since=since - 2):
        if ev["outcome"] == "complete":
            out.setdefault(ev["path"], set()).add(ev.get("transport") or "tftp")
    return out


def assert_kernel_and_initrd_over_http(e2e: E2E, started: float) -> dict[str, set[str]]:
    done = transfers(e2e, PC, started)
    gen = f"{_prefix(PC)}generations/1"
    assert done.get(f"{gen}/kernel") == {"http"}, done
    assert done.get(f"{gen}/initrd") == {"http"}, done
    assert "tftp" in done.get(f"{_prefix(PC)}boot.ipxe", set()), done
    return done


def boot_to_marker(e2e: E2E, scenario: str, argv: list[str]):
    boot = e2e.boot(scenario, PC, "marker generation 1", argv=argv)
    assert boot.outcome == "marker", boot.text()[-4000:]
    assert boot.generations() == ["1"]
    return boot


# -- UEFI PXE: OVMF → ipxe.efi (TFTP) → boot.ipxe → kernel + initrd (HTTP) → iSCSI root ------

def test_uefi_pxe_chainloads_ipxe_efi_then_loads_kernel_and_initrd_over_http(lab: E2E) -> None:
    console = lab.workdir / "uefi-pxe.console.log"
    argv = ovmf_argv(console, lab.net.client_tap, PC.mac, lab.workdir / "uefi-pxe.vars.fd")
    boot = boot_to_marker(lab, "F1 UEFI PXE (OVMF)", argv)
    done = assert_kernel_and_initrd_over_http(lab, boot.started)
    assert done.get(f"{_prefix(PC)}ipxe.efi") == {"tftp"}, done
    assert f"{_prefix(PC)}undionly.kpxe" not in done, done


# -- BIOS: SeaBIOS + QEMU's iPXE ROM → boot.ipxe → kernel + initrd (HTTP) ------------------------

def test_bios_ipxe_rom_loads_kernel_and_initrd_over_http(lab: E2E) -> None:
    console = lab.workdir / "bios-ipxe.console.log"
    argv = x86_ipxe_argv(console, lab.net.client_tap, PC.mac)
    boot = boot_to_marker(lab, "F2 BIOS iPXE ROM", argv)
    done = assert_kernel_and_initrd_over_http(lab, boot.started)
    assert not any(p.endswith((".efi", ".kpxe")) for p in done), done   # already iPXE: no chain-load


# -- a wrong MAC gets no other host's files over HTTP ------------------------------------------

def _http_status(lab: E2E, peer: str, path: str) -> str:
    url = f"http://{lab.net.server_ip}:{HTTP_PORT}/{path}"
    out = subprocess.run(["ip", "netns", "exec", peer, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          "--max-time", "30", url], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def test_another_mac_gets_none_of_the_hosts_files_over_http(lab: E2E) -> None:
    # The intruder is a configured host on its own address: its own tree is served, pc's is not.
    peer = lab.net.add_peer_namespace("intr", INTRUDER.mac, lab.ip(INTRUDER))
    try:
        own = _http_status(lab, peer, f"{_prefix(INTRUDER)}boot.ipxe")
        theirs = {name: _http_status(lab, peer, f"{_prefix(PC)}{name}")
                  for name in ("generations/1/initrd", "generations/1/kernel", "boot.ipxe", "ipxe.efi")}
    finally:
        lab.net.remove_peer_namespace(peer)
    assert own == "200", own
    assert set(theirs.values()) == {"403"}, theirs
    lab.summary.rows.append(("F3 other MAC over HTTP", f"own 200, pc's {sorted(set(theirs.values()))}",
                             "own 200, pc's 403", 0.0))


# -- UEFI HTTP Boot: OVMF fetches ipxe.efi by URL ---------------------------------------------

def test_uefi_http_boot_fetches_ipxe_efi_over_http(lab: E2E) -> None:
    console = lab.workdir / "uefi-http.console.log"
    argv = ovmf_argv(console, lab.net.client_tap, PC.mac, lab.workdir / "uefi-http.vars.fd", http_boot=True)
    boot = boot_to_marker(lab, "F4 UEFI HTTP Boot (OVMF)", argv)
    done = assert_kernel_and_initrd_over_http(lab, boot.started)
    assert done.get(f"{_prefix(PC)}ipxe.efi") == {"http"}, done
