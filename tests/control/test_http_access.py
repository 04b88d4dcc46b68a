"""HTTP serves the same per-host trees as TFTP, under the same access rules (client IP → MAC)."""

from __future__ import annotations

import socket
import subprocess

from helpers import free_port

from .control_harness import PC, PC_PREFIX, PI, PI_PREFIX, eventually, status
from .test_access_netns import PC_MAC, PI_MAC, STRANGER_MAC, clients  # noqa: F401 (fixture)


def http(url: str, netns: str | None = None) -> tuple[int, bytes]:
    cmd = ["curl", "-sS", "--max-time", "10", "--path-as-is", "-w", "\n%{http_code}", url]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    out = subprocess.run(cmd, capture_output=True, timeout=20).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


def with_http(store, addresses: list[str]) -> int:
    port = free_port(socket.SOCK_STREAM)
    listen = ", ".join(f'"{a}:{port}"' for a in addresses)
    text = store.read_config().replace("[server]\n", f"[server]\nhttp_listen = [{listen}]\n", 1)
    store.write_config(text)
    return port


def test_http_serves_each_host_only_its_own_tree(store, make_daemon, clients):  # noqa: F811
    pc_ns, pc_server, pc_ip = clients.add("pc", PC_MAC)
    pi_ns, pi_server, _ = clients.add("pi", PI_MAC)
    other_ns, other_server, _ = clients.add("stranger", STRANGER_MAC)
    port = with_http(store, ["127.0.0.1", pc_server, pi_server, other_server])
    d = make_daemon(store.config).start()

    # pc: unprefixed boot.ipxe resolved by its MAC, kernels from its own tree, byte-identical
    code, script = http(f"http://{pc_server}:{port}/boot.ipxe", pc_ns)
    assert code == 200 and script.startswith(b"#!ipxe") and b"host pc" in script
    code, kernel = http(f"http://{pc_server}:{port}/{PC_PREFIX}generations/2/kernel", pc_ns)
    assert (code, kernel) == (200, store.kernel_bytes(PC, 2))
    # the Pi's files by IP → MAC; pc's refused (403), prefixed or not
    assert http(f"http://{pi_server}:{port}/kernel8.img", pi_ns) == (200, store.kernel_bytes(PI, 2))
    assert http(f"http://{pi_server}:{port}/{PC_PREFIX}generations/2/initrd", pi_ns)[0] == 403
    assert http(f"http://{pi_server}:{port}/boot.ipxe", pi_ns)[0] == 403
    assert http(f"http://{pc_server}:{port}/{PI_PREFIX}initrd", pc_ns)[0] == 403
    # a MAC no host has: every host's files refused, unprefixed paths unknown
    assert http(f"http://{other_server}:{port}/{PI_PREFIX}cmdline.txt", other_ns)[0] == 403
    assert http(f"http://{other_server}:{port}/cmdline.txt", other_ns)[0] == 404
    # containment and no listings, as for TFTP
    assert http(f"http://{pc_server}:{port}/{PC_PREFIX}../{PI_PREFIX}initrd", pc_ns)[0] == 403
    assert http(f"http://{pc_server}:{port}/{PC_PREFIX}", pc_ns)[0] == 404

    # HTTP transfers are boot events like TFTP ones (written by the daemon after the transfer)
    eventually(lambda: any(e["client"].startswith(pc_ip + ":") and e["transport"] == "http"
                           and e["outcome"] == "complete" and e["path"] == f"{PC_PREFIX}generations/2/kernel"
                           for e in status(store.config, PC)["hosts"][PC]["last_boot_events"]),
               what="the HTTP kernel transfer's boot event")
    eventually(lambda: "denied" in d.log() and PI_MAC in d.log(), what="denial logged")

    # loopback (MAC unknown): open serves, strict refuses
    assert http(f"http://127.0.0.1:{port}/{PC_PREFIX}boot.ipxe")[0] == 200
    store.write_config(store.set_host_option(PC, 'tftp_access = "strict"'))
    eventually(lambda: http(f"http://127.0.0.1:{port}/{PC_PREFIX}boot.ipxe")[0] == 403,
               what="strict for unknown MACs over HTTP")
    assert http(f"http://{pc_server}:{port}/boot.ipxe", pc_ns)[0] == 200


def test_http_off_by_default_and_bad_listen_refused(store, make_daemon, netboot_cli):
    from appliance.config import load_config

    assert load_config(store.config).server.http_listen == ()
    text = store.read_config().replace("[server]\n", '[server]\nhttp_listen = ["nowhere:80"]\n', 1)
    store.write_config(text)
    r = netboot_cli("-c", str(store.config), "check")
    assert r.returncode == 2 and "server.http_listen[0]" in r.stderr + r.stdout


def test_http_counters_in_metrics(store, make_daemon):
    port = with_http(store, ["127.0.0.1"])
    metrics_port = free_port(socket.SOCK_STREAM)
    store.write_config(store.read_config().replace("[server]\n", f'[server]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n', 1))
    make_daemon(store.config).start()
    assert http(f"http://127.0.0.1:{port}/{PC_PREFIX}boot.ipxe")[0] == 200
    assert http(f"http://127.0.0.1:{port}/nope")[0] == 404
    _, text = http(f"http://127.0.0.1:{metrics_port}/metrics")
    lines = text.decode().splitlines()
    assert 'netboot_http_responses_total{status="200"} 1' in lines
    assert 'netboot_http_responses_total{status="404"} 1' in lines
    assert any(line.startswith('netboot_boot_transfers_total{host="pc",outcome="complete"}') for line in lines)


def test_a_client_asking_again_and_again_for_another_hosts_files_is_logged_once(store, make_daemon,
                                                                                 clients):  # noqa: F811
    """Every refusal is answered (403) and counted, but the journal gets one line, not one per request."""
    pi_ns, pi_server, _ = clients.add("pi", PI_MAC)
    port = with_http(store, [pi_server])
    d = make_daemon(store.config).start()
    url = f"http://{pi_server}:{port}/{PC_PREFIX}generations/2/initrd?[1-200]"     # curl's URL globbing
    out = subprocess.run(["ip", "netns", "exec", pi_ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}\n",
                          url], capture_output=True, timeout=60).stdout.split()
    assert out == [b"403"] * 200
    eventually(lambda: "denied" in d.log(), what="the denial to be logged")
    denials = [line for line in d.log().splitlines() if "denied" in line]
    assert len(denials) == 1 and PI_MAC in denials[0]
