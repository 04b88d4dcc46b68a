"""Transfers against a changing selection, crashes, boot events and GC roots
(README: TFTP server, Operator workflow)."""

from __future__ import annotations

import json
import os
import resource
import socket

from .control_harness import (ARM, CURL_ACCESS, PC, PC_PREFIX, PI, PI_PREFIX, RawTransfer, cli, cli_ok, curl,
                             eventually, get, sha, status)
from appliance.demo.store import add_generation, make_toplevel
from appliance.tftp.packets import Error, encode_request, parse_packet
from peers.pi_bootloader import fetch


def test_transfer_in_progress_keeps_its_generation(daemon, store):
    big = os.urandom(30 << 20)
    top3 = make_toplevel(store.layout.store, PI, "25.05.3", kernel_data=big)
    add_generation(store.profile(PI), top3)
    eventually(lambda: get(store.port, PI_PREFIX + "cmdline.txt").startswith(f"init={top3}/init".encode()),
               what="big generation 3 served")
    slow = RawTransfer(store.port, PI_PREFIX + "kernel8.img", blksize=1468)
    try:
        assert slow.tsize == len(big)
        slow.step(500)                          # 0.7 MB in, then the profile moves on
        top4 = make_toplevel(store.layout.store, PI, "25.05.4")
        add_generation(store.profile(PI), top4)
        new_kernel = (top4 / "kernel").read_bytes()
        eventually(lambda: get(store.port, PI_PREFIX + "kernel8.img") == new_kernel,
                   what="a new fetch gets generation 4")
        slow.step(500)
        os.unlink(store.link(PI, 3))            # even deleting the generation must not disturb it
        eventually(lambda: curl(store.port, PI_PREFIX + "generations/3/cmdline.txt").rc != 0,
                   what="generation 3 gone from the tree")
        got = slow.finish()
    finally:
        slow.close()
    assert len(got) == len(big)
    assert sha(got) == sha(big)


def test_kill9_mid_transfer_then_restart_resumes_the_same_selections(daemon, store, make_daemon):
    cli_ok(store.config, "pin", ARM, "1")
    cli_ok(store.config, "confirm", PC)          # last-known-good 2
    cli_ok(store.config, "trial", PI, "1")
    eventually(lambda: get(store.port, PC_PREFIX + "boot.ipxe") and
               get(store.port, PI_PREFIX + "cmdline.txt").startswith(store.init_of(PI, 1).encode()),
               what="trial served")
    before = status(store.config)["hosts"]
    state_before = store.state_file().read_bytes()
    slow = RawTransfer(store.port, PI_PREFIX + "initrd", blksize=512)
    try:
        slow.step(20)
        daemon.kill9()
    finally:
        slow.close()
    assert store.state_file().read_bytes() == state_before
    json.loads(state_before)                   # intact JSON
    daemon.start()
    after = status(store.config)["hosts"]
    for name in (PI, ARM, PC):
        for key in ("served", "reason", "pin", "trial", "last_known_good"):
            assert after[name][key] == before[name][key], (name, key)
    assert after[ARM]["pin"] == 1 and after[PC]["last_known_good"] == 2 and after[PI]["trial"]["generation"] == 1
    # the trial resumes exactly: gen 1 for this boot, reverted on the next one
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 1)
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 2)
    assert get(store.port, "52-54-00-12-34-56/generations/1/kernel")


def test_boot_events_are_listed_by_status(daemon, store):
    kernel = get(store.port, PI_PREFIX + "kernel8.img")
    get(store.port, PI_PREFIX + "cmdline.txt")
    assert curl(store.port, PI_PREFIX + "pieeprom.upd").rc != 0

    def events():
        evs = status(store.config, PI)["hosts"][PI]["last_boot_events"]
        return evs if len(evs) >= 2 else None

    evs, _ = eventually(events, what="boot events recorded")
    by_path = {e["path"]: e for e in evs}
    k = by_path[PI_PREFIX + "kernel8.img"]
    assert (k["host"], k["generation"], k["bytes"], k["outcome"]) == (PI, 2, len(kernel), "complete")
    assert k["blksize"] > 0 and k["windowsize"] >= 1 and k["retransmissions"] >= 0
    assert k["client"].startswith("127.0.0.1:") and k["duration"] >= 0
    c = by_path[PI_PREFIX + "cmdline.txt"]
    assert c["host"] == PI and c["generation"] == 2 and c["outcome"] == "complete" and c["bytes"] > 0
    # another host's events are not mixed in
    assert all(e["host"] == PI for e in evs)
    assert status(store.config, PC)["hosts"][PC]["last_boot_events"] == []


def _roots(store) -> dict[str, str]:
    d = store.layout.root / "gcroots"
    return {e: os.readlink(d / e) for e in os.listdir(d) if e.endswith(".netboot-root")}


def test_gc_roots_follow_the_selection(store, make_daemon):
    gc = store.layout.root / "gcroots"
    gc.mkdir()
    (gc / "notes.txt").write_text("foreign")
    os.symlink("/nonexistent/foreign", gc / "other-tool-root")
    os.symlink(str(store.toplevel(PI, 1)), gc / "removed-host-served.netboot-root")   # stale, ours
    make_daemon(store.config).start()
    top = lambda n: str(store.toplevel(PI, n))  # noqa: E731
    roots, _ = eventually(lambda: _roots(store) if "removed-host-served.netboot-root" not in _roots(store)
                          else None, what="stale root removed at start")
    assert roots[f"{PI}-served.netboot-root"] == top(2)
    assert roots[f"{PC}-served.netboot-root"] == str(store.toplevel(PC, 2))
    assert roots[f"{ARM}-served.netboot-root"] == str(store.toplevel(ARM, 2))

    cli_ok(store.config, "pin", PI, "1")
    eventually(lambda: _roots(store).get(f"{PI}-pinned-1.netboot-root") == top(1)
               and _roots(store).get(f"{PI}-served.netboot-root") == top(1), what="pinned root")
    cli_ok(store.config, "unpin", PI)
    eventually(lambda: f"{PI}-pinned-1.netboot-root" not in _roots(store)
               and _roots(store).get(f"{PI}-served.netboot-root") == top(2), what="pinned root removed")
    cli_ok(store.config, "trial", PI, "1")
    eventually(lambda: _roots(store).get(f"{PI}-trial-1.netboot-root") == top(1), what="trial root")
    get(store.port, PI_PREFIX + "kernel8.img")
    cli_ok(store.config, "confirm", PI)
    eventually(lambda: _roots(store).get(f"{PI}-last-known-good-1.netboot-root") == top(1)
               and f"{PI}-trial-1.netboot-root" not in _roots(store), what="last-known-good root")
    # a new generation followed: served moves, LKG stays
    cli_ok(store.config, "unpin", PI)
    t3 = make_toplevel(store.layout.store, PI, "25.05.3")
    add_generation(store.profile(PI), t3)
    eventually(lambda: _roots(store).get(f"{PI}-served.netboot-root") == str(t3), what="served root moved")
    assert _roots(store)[f"{PI}-last-known-good-1.netboot-root"] == top(1)
    # foreign entries untouched
    assert (gc / "notes.txt").read_text() == "foreign"
    assert os.readlink(gc / "other-tool-root") == "/nonexistent/foreign"
    assert not [e for e in os.listdir(gc) if e.endswith(".tmp")]


def test_a_pinned_generation_outlives_its_profile_link(store, make_daemon):
    """nix-collect-garbage -d deletes old profile links; the GC root keeps the pin bootable."""
    make_daemon(store.config).start()
    cli_ok(store.config, "pin", PI, "1")
    want = store.kernel_bytes(PI, 1)
    eventually(lambda: get(store.port, PI_PREFIX + "kernel8.img") == want, what="pin 1 served")
    eventually(lambda: f"{PI}-pinned-1.netboot-root" in _roots(store), what="pinned root")
    os.unlink(store.link(PI, 1))                       # what nix-collect-garbage -d does
    # A barrier: once generation 3, added after the unlink, is served, the daemon has seen the unlink.
    top3 = make_toplevel(store.layout.store, PI, "25.05.3")
    add_generation(store.profile(PI), top3)
    eventually(lambda: curl(store.port, PI_PREFIX + "generations/3/kernel8.img").data == (top3 / "kernel").read_bytes(),
               what="generation 3 listed")
    assert get(store.port, PI_PREFIX + "kernel8.img") == want
    assert get(store.port, PI_PREFIX + "generations/1/kernel8.img") == want
    s = status(store.config, PI)["hosts"][PI]
    assert (s["served"], s["reason"]) == (1, "pin")
    gens = json.loads(cli_ok(store.config, "generations", PI, "--json"))
    assert any("kept by the appliance's GC roots" in p for p in gens["problems"])
    # Unpinning lets it go: the root is pruned and the generation disappears.
    cli_ok(store.config, "unpin", PI)
    eventually(lambda: f"{PI}-pinned-1.netboot-root" not in _roots(store), what="root pruned")
    assert [g["number"] for g in json.loads(cli_ok(store.config, "generations", PI, "--json"))["generations"]] == [3, 2]


def test_strict_access_refuses_unknown_macs_open_serves_them(store, make_daemon):
    store.write_config(store.set_host_option(PC, 'tftp_access = "strict"'))
    d = make_daemon(store.config).start()
    # loopback: the client's MAC cannot be determined
    f = curl(store.port, PC_PREFIX + "boot.ipxe")
    assert f.rc == CURL_ACCESS, f
    assert curl(store.port, "boot.ipxe").rc == CURL_ACCESS
    assert get(store.port, PI_PREFIX + "cmdline.txt")            # pi-desktop: "open" (default)
    store.write_config(store.read_config().replace('tftp_access = "strict"', 'tftp_access = "open"'))
    eventually(lambda: curl(store.port, PC_PREFIX + "boot.ipxe").ok, what="open after config change")
    assert d.alive()


def test_register_refuses_bad_toplevels(store, tmp_path):
    profile_before = os.readlink(store.profile(PI))
    links_before = sorted(os.listdir(store.layout.profiles))
    # outside the store
    outside = make_toplevel(tmp_path / "elsewhere", PI, "25.05.9")
    r = cli(store.config, "register", PI, str(outside))
    assert r.returncode == 1 and "outside" in r.stderr, r.stderr
    # no kernel
    nokernel = make_toplevel(store.layout.store, PI, "25.05.8", bootspec=False)
    os.unlink(nokernel / "kernel")
    r = cli(store.config, "register", PI, str(nokernel))
    assert r.returncode == 1 and "not a bootable NixOS system" in r.stderr and "kernel" in r.stderr, r.stderr
    # not a NixOS system at all
    hello = store.layout.store / "0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.1"
    (hello / "bin").mkdir(parents=True)
    (hello / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    r = cli(store.config, "register", PI, str(hello))
    assert r.returncode == 1 and "not a bootable NixOS system" in r.stderr, r.stderr
    # a file, and a missing path
    r = cli(store.config, "register", PI, str(hello / "bin" / "hello"))
    assert r.returncode == 1 and "not a directory" in r.stderr, r.stderr
    r = cli(store.config, "register", PI, str(store.layout.store / "missing-nixos-system"))
    assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
    assert os.readlink(store.profile(PI)) == profile_before
    assert sorted(os.listdir(store.layout.profiles)) == links_before
    # and a good one is accepted as generation 3
    good = make_toplevel(store.layout.store, PI, "25.05.3")
    r = cli(store.config, "register", PI, str(good))
    assert r.returncode == 0 and "generation 3" in r.stdout
    assert os.readlink(store.profile(PI)) == f"{PI}-3-link"


def test_store_directory_swapped_for_a_symlink_after_validation_is_not_followed(daemon, store, tmp_path):
    """A path validated when the snapshot was built, then a component replaced by a
    symlink to content outside the store: refused at open time, never served."""
    kernel = get(store.port, PI_PREFIX + "kernel8.img")
    real_kernel = os.path.realpath(store.toplevel(PI, 2) / "kernel")
    package = os.path.dirname(real_kernel)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = b"outside the store - must never be served\n" * 100
    (outside / os.path.basename(real_kernel)).write_bytes(secret)
    os.rename(package, package + ".aside")
    os.symlink(outside, package)               # swap the whole package directory
    try:
        swapped = curl(store.port, PI_PREFIX + "kernel8.img")
        assert not swapped.ok and swapped.data != secret and secret not in swapped.data
        os.unlink(package)
        os.mkdir(package)                      # and the file itself replaced by a symlink
        os.symlink(outside / os.path.basename(real_kernel), real_kernel)
        swapped = curl(store.port, PI_PREFIX + "kernel8.img")
        assert not swapped.ok and secret not in swapped.data
        os.unlink(real_kernel)
        os.rmdir(package)
    finally:
        if os.path.islink(package):
            os.unlink(package)
        os.rename(package + ".aside", package)
    assert get(store.port, PI_PREFIX + "kernel8.img") == kernel   # the real file again
    assert "escap" in daemon.log() or "symlink" in daemon.log()


def test_out_of_file_descriptors_is_never_file_not_found(daemon, store):
    """The appliance's own provider under an exhausted open-file limit: the request is
    dropped (the client retries and is served once descriptors are back), never
    answered "File not found"; the operator gets one log line."""
    kernel = get(store.port, PI_PREFIX + "kernel8.img")
    soft, hard = resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (3, hard))   # no descriptor can be opened
        try:
            for name in ("kernel8.img", "cmdline.txt"):              # a store file, a generated one
                sock.sendto(encode_request(PI_PREFIX + name), ("127.0.0.1", store.port))
            # A barrier: the listening socket is read in order, so once a malformed datagram sent
            # after the requests is answered (from the listening socket: no new descriptor),
            # both requests were handled while the limit held, however busy the machine.
            sock.sendto(b"\0\x09?", ("127.0.0.1", store.port))
            sock.settimeout(30.0)
            answers = []
            while (packet := parse_packet(sock.recv(2048))) != Error(4, "Illegal TFTP operation"):
                answers.append(packet)
            sock.settimeout(1.0)
            try:
                while True:
                    answers.append(parse_packet(sock.recv(2048)))
            except socket.timeout:
                pass
            assert answers == []                  # dropped, not "File not found"
        finally:
            resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (soft, hard))
        got = fetch(("127.0.0.1", store.port), PI_PREFIX + "kernel8.img", sock=sock, timeout=0.5,
                    total_timeout=10)
    assert got.data == kernel
    assert daemon.log().count("out of file descriptors") == 1
