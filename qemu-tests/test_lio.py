"""Real kernel LIO in a QEMU (TCG) VM, checked from outside with a real initiator.

One VM boots for the whole module; the scenarios run in order and build on
each other (apply → access control → re-apply/restart → foreign objects →
drift → host removal), like an operator's day.  Backing files live on a
tmpfs inside the VM.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from lab import Chap, Initiator, Result, ServerVM, project_vm
from tests.helpers import eventually, free_port, poll

pytestmark = pytest.mark.vm

PREFIX = "iqn.2026-11.lan.netboot"
DESK = f"{PREFIX}:pi-desktop"
CHAPPY = f"{PREFIX}:pi-chap"
DESK_INITIATOR = "iqn.2026-04.lab.client:pi-desktop"
CHAP_INITIATOR = "iqn.2026-04.lab.client:pi-chap"
CHAP_SECRET = "chap-Secret-0123"
MUTUAL_SECRET = "mutual-Secret-987"
FOREIGN = "iqn.2003-01.org.linux-iscsi.lab:handmade"
CONF = "/tmp/lab/appliance.toml"
REDUCED_CONF = "/tmp/lab/reduced.toml"

HOST_DESK = """
[hosts.pi-desktop]
boot = "ipxe"
mac = "52:54:00:00:00:01"
profile = "/tmp/lab/profiles/pi-desktop"

[hosts.pi-desktop.iscsi]
initiator = "iqn.2026-04.lab.client:pi-desktop"
lun = { file = "/srv/luns/pi-desktop.img", size = "64M" }
"""
HOST_CHAP = """
[hosts.pi-chap]
boot = "ipxe"
mac = "52:54:00:00:00:02"
profile = "/tmp/lab/profiles/pi-chap"

[hosts.pi-chap.iscsi]
initiator = "iqn.2026-04.lab.client:pi-chap"
lun = { file = "/srv/luns/pi-chap.img", size = "32M" }
chap = { user = "pi-chap", secret_file = "/tmp/lab/secrets/pi-chap", mutual_user = "netboot", mutual_secret_file = "/tmp/lab/secrets/mutual" }
"""
BLOCKY = f"{PREFIX}:pi-block"
BLOCK_INITIATOR = "iqn.2026-04.lab.client:pi-block"
HOST_BLOCK = """
[hosts.pi-block]
boot = "ipxe"
mac = "52:54:00:00:00:03"
profile = "/tmp/lab/profiles/pi-block"

[hosts.pi-block.iscsi]
initiator = "iqn.2026-04.lab.client:pi-block"
lun = { block = "/dev/loop0" }
"""
HEADER = """
[server]
state_dir = "/tmp/lab/state"
store_dir = "/tmp/lab/store"
tftp_listen = ["127.0.0.1:6969"]

[iscsi]
enable = true
portals = ["0.0.0.0:3260"]
target_prefix = "iqn.2026-11.lan.netboot"
"""


@dataclass
class Lab:
    vm: ServerVM
    initiator: Initiator
    cli: list[str]        # how to invoke `netboot` in the guest

    def netboot(self, *args: str, config: str = CONF) -> Result:
        return self.vm.run([*self.cli, "-c", config, *args], timeout=300)

    def rtslib(self, code: str) -> Result:
        prelude = "import rtslib_fb as r\nroot = r.RTSRoot()\nfm = r.FabricModule('iscsi')\n"
        return self.vm.run(["python3", "-c", prelude + code], timeout=120)

    def sha256(self, path: str) -> str:
        return self.vm.run(["sha256sum", path]).check().stdout.split()[0]


def _say(*lines: str) -> None:
    for line in lines:
        print(f"    {line.rstrip()}")


@pytest.fixture(scope="module")
def lab():
    for tool in ("qemu-system-x86_64", "iscsi-inq", "iscsi-readcapacity16", "qemu-io"):
        if shutil.which(tool) is None:
            message = f"{tool} not installed (scripts/install.sh installs it)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    port = free_port(socket.SOCK_STREAM)
    with project_vm(hostfwd=[(port, 3260)]) as vm:
        print(f"\nlab VM up in {vm.boot_seconds:.1f} s (pid {vm.pid}, iSCSI on 127.0.0.1:{port})")
        vm.run("mkdir -p /srv/luns /tmp/lab/secrets /tmp/lab/store /tmp/lab/state /tmp/lab/profiles && "
               "mount -t tmpfs -o size=512m luns /srv/luns").check()
        vm.write_file("/tmp/lab/secrets/pi-chap", CHAP_SECRET + "\n", 0o600)
        vm.write_file("/tmp/lab/secrets/mutual", MUTUAL_SECRET + "\n", 0o600)
        vm.write_file(CONF, HEADER + HOST_DESK + HOST_CHAP)
        vm.write_file(REDUCED_CONF, HEADER + HOST_CHAP)
        yield Lab(vm, Initiator(port), ["python3", "-m", "appliance.cli.main"])


# 1 -------------------------------------------------------------------------------------

def test_apply_from_empty_exports_the_lun(lab: Lab):
    started = time.monotonic()
    r = lab.netboot("iscsi", "apply")
    _say(*r.stdout.splitlines()[-4:], f"(apply took {time.monotonic() - started:.1f} s)")
    assert r.ok, r.stderr
    assert "changes applied" in r.stdout

    inq = lab.initiator.inq(DESK, DESK_INITIATOR)
    _say(*[l for l in inq.output.splitlines() if "Vendor" in l or "Product" in l])
    assert inq.ok and "LIO-ORG" in inq.output, inq.output

    cap = lab.initiator.readcapacity(DESK, DESK_INITIATOR)
    _say(f"readcapacity16 -s: {cap.output.strip()}")
    assert cap.ok and cap.output.split()[0] == str(64 << 20)

    io = lab.initiator.qemu_io(DESK, DESK_INITIATOR, ["write -P 0xa5 0 1M", "read -P 0xa5 0 1M"])
    _say(*io.output.splitlines())
    assert io.ok and "Pattern verification failed" not in io.output and "read 1048576/1048576" in io.output

    # The backing file was created sparse at the configured size.
    st = lab.vm.run("stat -c '%s %b' /srv/luns/pi-desktop.img").check().stdout.split()
    assert int(st[0]) == 64 << 20 and int(st[1]) * 512 < 8 << 20


def test_status_shows_the_logged_in_session(lab: Lab):
    argv = ["qemu-io", "--image-opts",
            f"driver=iscsi,transport=tcp,portal=127.0.0.1:{lab.initiator.port},target={DESK},lun=0,"
            f"initiator-name={DESK_INITIATOR}", "-c", "sleep 120000"]   # ms: logged in until terminated below
    holder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def logged_in() -> Result | None:
            r = lab.netboot("iscsi", "status", "--json")
            assert r.ok, r.stderr
            return r if json.loads(r.stdout)["hosts"]["pi-desktop"]["sessions"] else None

        r, _ = eventually(logged_in, 180, "the session in iscsi status", interval=0.5)
        sessions = json.loads(r.stdout)["hosts"]["pi-desktop"]["sessions"]
        _say(f"status: {json.dumps(sessions)}")
        assert sessions and sessions[0]["initiator"] == DESK_INITIATOR and sessions[0]["state"] == "LOGGED_IN"
        assert sessions[0]["addresses"] == ["10.0.2.2"]      # slirp's view of the host
        assert CHAP_SECRET not in r.stdout and MUTUAL_SECRET not in r.stdout
    finally:
        holder.terminate()   # our own qemu-io, by its Popen handle
        holder.wait(timeout=10)


# 2 -------------------------------------------------------------------------------------

def test_wrong_initiator_and_wrong_chap_are_refused(lab: Lab):
    wrong = lab.initiator.inq(DESK, "iqn.2026-04.lab.client:intruder")
    _say(f"wrong IQN: {wrong.output.strip().splitlines()[-1]}")
    assert not wrong.ok and "Authorization failure" in wrong.output

    none = lab.initiator.inq(CHAPPY, CHAP_INITIATOR)
    _say(f"no CHAP: {none.output.strip().splitlines()[-1]}")
    assert not none.ok and "Authentication failure" in none.output

    bad = lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("pi-chap", "not-the-secret1"))
    _say(f"wrong CHAP secret: {bad.output.strip().splitlines()[-1]}")
    assert not bad.ok and "Authentication failure" in bad.output

    bad_user = lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("someone", CHAP_SECRET))
    assert not bad_user.ok and "Authentication failure" in bad_user.output

    good = lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("pi-chap", CHAP_SECRET, "netboot", MUTUAL_SECRET))
    _say(f"right CHAP + mutual: {[l.strip() for l in good.output.splitlines() if 'Vendor' in l]}")
    assert good.ok and "LIO-ORG" in good.output, good.output

    bad_mutual = lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("pi-chap", CHAP_SECRET, "netboot", "not-the-target-x"))
    _say(f"wrong mutual secret expected by the initiator: rc={bad_mutual.rc} "
         f"{bad_mutual.output.strip().splitlines()[-1] if bad_mutual.output.strip() else ''}")
    assert not bad_mutual.ok

    io = lab.initiator.qemu_io(CHAPPY, CHAP_INITIATOR, ["write -P 0x3c 4M 512k", "read -P 0x3c 4M 512k"],
                               Chap("pi-chap", CHAP_SECRET))
    assert io.ok and "Pattern verification failed" not in io.output, io.output


# 3 -------------------------------------------------------------------------------------

def test_second_apply_does_nothing_and_data_survives_a_restart(lab: Lab):
    plan = lab.netboot("iscsi", "plan", "--json")
    assert plan.ok, plan.stderr
    assert json.loads(plan.stdout)["actions"] == []
    again = lab.netboot("iscsi", "apply")
    _say(again.stdout.strip())
    assert again.ok and "nothing to do" in again.stdout

    before = lab.sha256("/srv/luns/pi-desktop.img")
    # A reboot leaves LIO empty: remove the appliance's objects by hand, then apply in a fresh process.
    wipe = lab.rtslib(
        "for t in list(fm.targets):\n"
        f"    if t.wwn.startswith('{PREFIX}:'): t.delete()\n"
        "root.invalidate_caches()\n"
        "for so in list(root.storage_objects):\n"
        "    if so.name.startswith('netboot-'): so.delete()\n"
        "print(len(list(root.targets)), len(list(root.storage_objects)))\n")
    assert wipe.ok and wipe.stdout.split() == ["0", "0"], wipe.stderr
    assert not lab.initiator.inq(DESK, DESK_INITIATOR).ok

    r = lab.netboot("iscsi", "apply")
    _say(*[l for l in r.stdout.splitlines() if "backstore" in l])
    assert r.ok and "existing file" in r.stdout and "new sparse file" not in r.stdout
    assert lab.sha256("/srv/luns/pi-desktop.img") == before
    io = lab.initiator.qemu_io(DESK, DESK_INITIATOR, ["read -P 0xa5 0 1M"])
    assert io.ok and "Pattern verification failed" not in io.output, io.output
    io = lab.initiator.qemu_io(CHAPPY, CHAP_INITIATOR, ["read -P 0x3c 4M 512k"], Chap("pi-chap", CHAP_SECRET))
    assert io.ok and "Pattern verification failed" not in io.output, io.output
    assert json.loads(lab.netboot("iscsi", "plan", "--json").stdout)["actions"] == []


def test_the_longest_names_the_config_accepts_fit_lio_and_one_more_byte_does_not(lab: Lab):
    """A 63-character host name makes a 71-character backstore name; a target name may take
    223 bytes (RFC 3720).  The config refuses anything longer, before any apply starts."""
    host = "h" * 63
    iqn = "iqn.2026-11." + "a" * 60 + "." + "b" * 60 + "." + "c" * 25 + ":" + host
    assert len(iqn) == 223
    probe = lab.rtslib(
        f"so = r.FileIOStorageObject('netboot-{host}', dev='/srv/luns/long.img', size=1 << 20)\n"
        "made = []\n"
        f"for name in ('{iqn}', '{iqn}x'):\n"
        "    try:\n"
        "        t = r.Target(fm, name, mode='create')\n"
        "    except Exception as exc:\n"
        "        made.append(f'{len(name)}: refused')\n"
        "        continue\n"
        "    r.LUN(r.TPG(t, 1, mode='create'), 0, so)\n"
        "    made.append(f'{len(name)}: made')\n"
        "    t.delete()\n"
        "so.delete()\n"
        "print(made)\n")
    _say(probe.stdout.strip(), *probe.stderr.strip().splitlines()[-1:])
    assert probe.ok and probe.stdout.strip() == "['223: made', '224: refused']", probe.stdout + probe.stderr
    lab.vm.run("rm -f /srv/luns/long.img").check()   # made by this probe


def test_an_apply_killed_while_rtslib_made_a_backstore_is_finished_by_the_next(lab: Lab):
    """kill -9 between rtslib's mkdir of a backstore and its configuration leaves an
    unconfigured backstore (no file, no size) under the appliance's name."""
    before = lab.sha256("/srv/luns/pi-desktop.img")
    wipe = lab.rtslib(
        f"r.Target(fm, '{DESK}', mode='lookup').delete()\n"
        "r.FileIOStorageObject('netboot-pi-desktop').delete()\n")
    assert wipe.ok, wipe.stderr
    lab.vm.run("mkdir -p /sys/kernel/config/target/core/fileio_77/netboot-pi-desktop").check()
    plan = lab.netboot("iscsi", "plan")
    _say(*plan.stdout.splitlines(), *plan.stderr.splitlines())
    assert plan.rc in (0, 1) and "netboot-pi-desktop" in plan.stdout, plan.stderr
    r = lab.netboot("iscsi", "apply")
    _say(*r.stdout.splitlines()[-3:], *r.stderr.splitlines())
    assert r.ok, r.stderr
    assert json.loads(lab.netboot("iscsi", "plan", "--json").stdout)["actions"] == []
    assert lab.sha256("/srv/luns/pi-desktop.img") == before
    io = lab.initiator.qemu_io(DESK, DESK_INITIATOR, ["read -P 0xa5 0 1M"])
    assert io.ok and "Pattern verification failed" not in io.output, io.output


def test_an_apply_behind_a_hung_one_gives_up_naming_the_lock_and_its_holder(lab: Lab):
    """A process stuck holding the apply lock (as a hung apply would): `netboot iscsi apply`
    waits its bounded time, then exits 1 with one line naming the lock and who holds it,
    nothing applied; once the lock is free, apply works again."""
    import re

    take = ("import fcntl, os, sys, time\n"
            "os.makedirs('/run/lock', exist_ok=True)\n"
            "fd = os.open('/run/lock/netboot-iscsi.lock', os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if sys.argv[1] == 'try' else 0))\n"
            "time.sleep(float(sys.argv[2]))\n")
    held = lab.vm.run(["/bin/sh", "-c", 'python3 -c "$1" hold 600 </dev/null >/dev/null 2>&1 & echo $!', "sh",
                       take]).check().stdout.strip()
    try:
        eventually(lambda: not lab.vm.run(["python3", "-c", take, "try", "0"]).ok, 120, "the holder took the lock")
        started = time.monotonic()
        r = lab.netboot("iscsi", "apply")
        took = time.monotonic() - started
        _say(r.stderr.strip(), f"(gave up after {took:.1f} s)")
    finally:
        lab.vm.run(["kill", held])
    lines = r.stderr.strip().splitlines()
    assert r.rc == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(rf"the iSCSI apply lock /run/lock/netboot-iscsi\.lock is held by pid {held} "
                     r"\(python3 -c import fcntl, .*\) for 30 s", lines[0]), lines
    assert "nothing was applied" in lines[0]
    assert 29 < took < 150, took
    again = lab.netboot("iscsi", "apply")
    assert again.ok and "nothing to do" in again.stdout, again.stderr


# 5 -------------------------------------------------------------------------------------

def test_foreign_target_and_backstore_are_left_alone(lab: Lab):
    made = lab.rtslib(
        "so = r.FileIOStorageObject('handmade', dev='/srv/luns/handmade.img', size=16 << 20)\n"
        f"t = r.Target(fm, '{FOREIGN}', mode='create')\n"
        "tpg = r.TPG(t, 1, mode='create')\n"
        "r.LUN(tpg, 0, so)\n"
        "r.NetworkPortal(tpg, '0.0.0.0', 3260, mode='create')\n"
        "acl = r.NodeACL(tpg, 'iqn.2026-04.lab.client:handmade', mode='create')\n"
        "r.MappedLUN(acl, 0, tpg_lun=0)\n"
        "tpg.set_attribute('authentication', '0')\n"   # LIO's default TPG wants CHAP
        "tpg.enable = True\n")
    assert made.ok, made.stderr
    plan = lab.netboot("iscsi", "plan")
    _say(plan.stdout.strip())
    assert plan.ok and "nothing to do" in plan.stdout and "handmade" not in plan.stdout
    r = lab.netboot("iscsi", "apply", "--allow-destroy")
    assert r.ok and "nothing to do" in r.stdout
    status = json.loads(lab.netboot("iscsi", "status", "--json").stdout)
    _say(f"unmanaged: {status['unmanaged_targets']} {status['unmanaged_backstores']}")
    assert status["unmanaged_targets"] == [FOREIGN] and status["unmanaged_backstores"] == ["fileio/handmade"]
    inq = lab.initiator.inq(FOREIGN, "iqn.2026-04.lab.client:handmade")
    assert inq.ok and "LIO-ORG" in inq.output


# 6 -------------------------------------------------------------------------------------

def test_deleted_acl_is_reported_and_repaired(lab: Lab):
    gone = lab.rtslib(
        f"tpg = r.TPG(r.Target(fm, '{DESK}', mode='lookup'), 1, mode='lookup')\n"
        f"r.NodeACL(tpg, '{DESK_INITIATOR}', mode='lookup').delete()\n")
    assert gone.ok, gone.stderr
    refused = lab.initiator.inq(DESK, DESK_INITIATOR)
    assert not refused.ok and "Authorization failure" in refused.output

    plan = lab.netboot("iscsi", "plan")
    _say(*plan.stdout.splitlines())
    assert plan.ok and f"create ACL {DESK_INITIATOR} on {DESK}" in plan.stdout
    r = lab.netboot("iscsi", "apply")
    assert r.ok, r.stderr
    inq = lab.initiator.inq(DESK, DESK_INITIATOR)
    assert inq.ok and "LIO-ORG" in inq.output
    io = lab.initiator.qemu_io(DESK, DESK_INITIATOR, ["read -P 0xa5 0 1M"])
    assert io.ok and "Pattern verification failed" not in io.output


def test_changed_attribute_and_missing_portal_are_repaired(lab: Lab):
    drift = lab.rtslib(
        f"tpg = r.TPG(r.Target(fm, '{CHAPPY}', mode='lookup'), 1, mode='lookup')\n"
        "tpg.set_attribute('authentication', '0')\n"
        "r.NetworkPortal(tpg, '0.0.0.0', 3260, mode='lookup').delete()\n")
    assert drift.ok, drift.stderr
    plan = lab.netboot("iscsi", "plan")
    _say(*plan.stdout.splitlines())
    assert "attribute authentication=1 (was 0)" in plan.stdout and "create portal 0.0.0.0:3260" in plan.stdout
    assert lab.netboot("iscsi", "apply").ok
    assert lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("pi-chap", CHAP_SECRET)).ok
    assert "Authentication failure" in lab.initiator.inq(CHAPPY, CHAP_INITIATOR).output


def test_rotated_chap_secret_is_rewritten(lab: Lab):
    rotated = "rotated-Secret-42"
    lab.vm.write_file("/tmp/lab/secrets/pi-chap", rotated + "\n", 0o600)
    try:
        plan = lab.netboot("iscsi", "plan")
        _say(*plan.stdout.splitlines())
        assert "(secret differs)" in plan.stdout
        assert rotated not in plan.stdout + plan.stderr and CHAP_SECRET not in plan.stdout + plan.stderr
        assert lab.netboot("iscsi", "apply").ok
        assert "Authentication failure" in lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("pi-chap", CHAP_SECRET)).output
        assert lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("pi-chap", rotated)).ok
    finally:
        lab.vm.write_file("/tmp/lab/secrets/pi-chap", CHAP_SECRET + "\n", 0o600)
        assert lab.netboot("iscsi", "apply").ok
    assert lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("pi-chap", CHAP_SECRET)).ok


BORROWER = "iqn.2003-01.org.linux-iscsi.lab:borrower"


def test_a_handmade_target_exporting_an_owned_backstore_is_never_cut_off(lab: Lab):
    # rtslib's StorageObject.delete() deletes every LUN on the backstore, in any target.
    made = lab.rtslib(
        f"t = r.Target(fm, '{BORROWER}', mode='create')\n"
        "r.LUN(r.TPG(t, 1, mode='create'), 7, r.FileIOStorageObject('netboot-pi-desktop'))\n")
    assert made.ok, made.stderr
    borrowed = ("t = r.Target(fm, '" + BORROWER + "', mode='lookup')\n"
                "print(sorted((l.lun, l.storage_object.name) for tpg in t.tpgs for l in tpg.luns))")
    try:
        plan = lab.netboot("iscsi", "plan", config=REDUCED_CONF)
        _say(*plan.stdout.splitlines())
        assert plan.rc == 1 and BORROWER in plan.stdout and "remove that LUN first" in plan.stdout
        refused = lab.netboot("iscsi", "apply", "--allow-destroy", config=REDUCED_CONF)
        _say(refused.stderr.strip().splitlines()[-1])
        assert refused.rc == 1 and BORROWER in refused.stderr
        assert lab.rtslib(borrowed).check().stdout.strip() == "[(7, 'netboot-pi-desktop')]"
        assert lab.initiator.inq(DESK, DESK_INITIATOR).ok          # nothing was applied

        # The edge refuses too, whatever plan it is handed (a LUN added after observing,
        # or in a fabric the planner does not read).
        edge = lab.vm.run(["python3", "-c", (
            "from appliance.iscsi import LioAdapter\n"
            "from appliance.iscsi.plan import Plan, DeleteBackstore\n"
            "from appliance.errors import IscsiError\n"
            "a = LioAdapter.open()\n"
            "try:\n"
            "    a.execute(Plan((DeleteBackstore('fileio', 'netboot-pi-desktop', None, 'test'),)), None)\n"
            "except IscsiError as e:\n"
            "    print('refused:', e)\n")], timeout=120)
        _say(edge.stdout.strip())
        assert edge.ok and "refused:" in edge.stdout and BORROWER in edge.stdout, edge.stdout + edge.stderr
        assert lab.rtslib(borrowed).check().stdout.strip() == "[(7, 'netboot-pi-desktop')]"
    finally:
        assert lab.rtslib(f"r.Target(fm, '{BORROWER}', mode='lookup').delete()\n").ok


# 4 -------------------------------------------------------------------------------------

def test_removed_host_is_refused_then_removed_from_lio_only(lab: Lab):
    before = lab.sha256("/srv/luns/pi-desktop.img")
    plan = lab.netboot("iscsi", "plan", config=REDUCED_CONF)
    _say(*plan.stdout.splitlines())
    assert plan.rc == 1 and "needs --allow-destroy" in plan.stdout

    refused = lab.netboot("iscsi", "apply", config=REDUCED_CONF)
    _say(refused.stderr.strip().splitlines()[-1])
    assert refused.rc == 1 and "refused" in refused.stderr
    assert lab.initiator.inq(DESK, DESK_INITIATOR).ok          # nothing was applied

    r = lab.netboot("iscsi", "apply", "--allow-destroy", config=REDUCED_CONF)
    _say(*r.stdout.splitlines())
    assert r.ok, r.stderr
    gone = lab.initiator.inq(DESK, DESK_INITIATOR)
    _say(f"after removal: {gone.output.strip().splitlines()[-1]}")
    assert not gone.ok
    assert lab.sha256("/srv/luns/pi-desktop.img") == before
    listing = lab.rtslib("print(sorted(so.name for so in root.storage_objects)); print(sorted(t.wwn for t in root.targets))")
    assert "netboot-pi-desktop" not in listing.stdout and DESK not in listing.stdout
    assert "handmade" in listing.stdout and FOREIGN in listing.stdout   # still untouched
    assert lab.initiator.inq(CHAPPY, CHAP_INITIATOR, Chap("pi-chap", CHAP_SECRET)).ok


def test_block_device_lun(lab: Lab):
    lab.vm.run("modprobe loop && truncate -s 32M /srv/luns/block.img && "
               "losetup /dev/loop0 /srv/luns/block.img").check()
    lab.vm.write_file("/tmp/lab/block.toml", HEADER + HOST_DESK + HOST_CHAP + HOST_BLOCK)
    r = lab.netboot("iscsi", "apply", config="/tmp/lab/block.toml")
    _say(*[l for l in r.stdout.splitlines() if "backstore" in l])
    assert r.ok, r.stderr
    inq = lab.initiator.inq(BLOCKY, BLOCK_INITIATOR)
    _say(*[l for l in inq.output.splitlines() if "Vendor" in l or "Product" in l])
    assert inq.ok and "LIO-ORG" in inq.output and "IBLOCK" in inq.output
    cap = lab.initiator.readcapacity(BLOCKY, BLOCK_INITIATOR)
    assert cap.ok and cap.output.split()[0] == str(32 << 20)
    io = lab.initiator.qemu_io(BLOCKY, BLOCK_INITIATOR, ["write -P 0x5a 1M 1M", "read -P 0x5a 1M 1M"])
    assert io.ok and "Pattern verification failed" not in io.output, io.output
    again = lab.netboot("iscsi", "plan", config="/tmp/lab/block.toml")
    assert again.ok and "nothing to do" in again.stdout, again.stdout


# 7 -------------------------------------------------------------------------------------

SERVE_CONF = "/tmp/lab/serve.toml"
SERVE_HEADER = HEADER.replace('state_dir = "/tmp/lab/state"', 'state_dir = "/tmp/lab/serve-state"\ngcroots_dir = ""')


def _serve_log(lab: Lab) -> str:
    return lab.vm.run("cat /tmp/lab/serve.log").stdout


class PacedWriter:
    """qemu-io writing 64 KiB to a LUN every 50 ms, its commands fed on stdin, for as long as
    the test needs (``finish``) rather than a fixed count a slow machine can outlast."""

    MAX_WRITES = 6000          # 5 min: a bound, never reached when the test goes on

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.fed = 0
        self.output: list[str] = []
        self._enough = threading.Event()
        self._reader = threading.Thread(target=lambda: self.output.extend(self.proc.stdout))
        self._feeder = threading.Thread(target=self._feed)
        self._reader.start()
        self._feeder.start()

    def _feed(self) -> None:
        try:
            while self.fed < self.MAX_WRITES and not self._enough.is_set() and self.proc.poll() is None:
                self.proc.stdin.write(f"write -P 0x6b {(self.fed % 256) * 65536} 64k\n")
                self.proc.stdin.flush()
                self.fed += 1
                self._enough.wait(0.05)
        except OSError:         # qemu-io is gone: what it wrote says why
            pass
        finally:
            try:
                self.proc.stdin.close()     # end of input: qemu-io quits after the last command
            except OSError:
                pass

    def finish(self, more: int, timeout: float = 300) -> str:
        """Feed ``more`` writes after those fed so far, then end input; qemu-io's output."""
        target = self.fed + more
        eventually(lambda: self.fed >= target or not self._feeder.is_alive(), timeout, f"{more} more writes")
        self._enough.set()
        self._feeder.join(timeout)
        self.proc.wait(timeout)
        self._reader.join(timeout)
        return "".join(self.output)

    def kill(self) -> None:
        self._enough.set()
        if self.proc.poll() is None:
            self.proc.kill()        # our own qemu-io, by its Popen handle
            self.proc.wait(timeout=10)
        self._feeder.join(10)
        self._reader.join(10)


def test_config_typo_never_cuts_off_a_writing_host(lab: Lab):
    """The daemon applies a config save on its own: an IQN typo must not delete the ACL
    of a host that is writing to its LUN; the change is withheld and reported."""
    lab.vm.write_file(SERVE_CONF, SERVE_HEADER + HOST_DESK)
    # Start from LIO as this config wants it (earlier scenarios leave other hosts).
    assert lab.netboot("iscsi", "apply", "--allow-destroy", config=SERVE_CONF).ok
    pid = lab.vm.run(["sh", "-c", f"{' '.join(lab.cli)} -c {SERVE_CONF} serve >/tmp/lab/serve.log 2>&1 & echo $!"]
                     ).check().stdout.strip()
    writer = None
    try:
        eventually(lambda: "serving TFTP" in _serve_log(lab), 120, "serve to start", interval=1)

        writer = PacedWriter(
            ["qemu-io", "--image-opts",
             f"driver=iscsi,transport=tcp,portal=127.0.0.1:{lab.initiator.port},target={DESK},lun=0,"
             f"initiator-name={DESK_INITIATOR}"])
        eventually(lambda: writer.proc.poll() is not None or json.loads(lab.netboot(
            "iscsi", "status", "--json", config=SERVE_CONF).stdout)["hosts"]["pi-desktop"]["sessions"],
                   120, "the writer to log in", interval=0.5)
        assert writer.proc.poll() is None, "the writer exited before it logged in: " + "".join(writer.output)

        typo = (SERVE_HEADER + HOST_DESK).replace(DESK_INITIATOR, DESK_INITIATOR.replace("desktop", "destkop"))
        lab.vm.write_file(SERVE_CONF + ".new", typo)
        lab.vm.run(["mv", SERVE_CONF + ".new", SERVE_CONF]).check()     # a save, as an editor does it
        eventually(lambda: "withheld" in _serve_log(lab), 120, "the daemon to report withholding", interval=1)
        assert writer.proc.poll() is None, "the writer stopped before the config was applied; the test proves nothing"
        _say(*[l for l in _serve_log(lab).splitlines() if "withheld" in l or "reloaded" in l])

        output = writer.finish(more=100)     # and it goes on writing for 5 s after the change
        writes = writer.fed
        wrote = output.count("wrote 65536/65536 bytes")
        _say(f"writer: rc={writer.proc.returncode}, {wrote}/{writes} writes of 64 KiB, "
             f"{sum('error' in l.lower() or 'fail' in l.lower() for l in output.splitlines())} error lines")
        assert writer.proc.returncode == 0 and wrote == writes, output[-2000:]
        assert "error" not in output.lower() and "fail" not in output.lower(), output[-2000:]

        # The running objects were kept: the host's ACL is still there, a new login works.
        acls = lab.rtslib(f"tpg = r.TPG(r.Target(fm, '{DESK}', mode='lookup'), 1, mode='lookup')\n"
                          "print(sorted(a.node_wwn for a in tpg.node_acls))\n").check().stdout
        assert DESK_INITIATOR in acls, acls
        io = lab.initiator.qemu_io(DESK, DESK_INITIATOR, ["read -P 0x6b 0 1M"])
        assert io.ok and "Pattern verification failed" not in io.output, io.output

        # And the daemon says what it withheld: status (and the log above).
        status = json.loads(lab.netboot("status", "--json", config=SERVE_CONF).check().stdout)
        _say(f"status iscsi: {json.dumps(status['iscsi'])[:300]}")
        assert status["iscsi"]["state"] == "withheld"
        assert any(DESK_INITIATOR in w and "is logged in" in w for w in status["iscsi"]["withheld"])
    finally:
        if writer is not None:
            writer.kill()
        lab.vm.run(["kill", pid])


# 8 -------------------------------------------------------------------------------------

SANDBOX = "/lab/repo/qemu-tests/lab/guest/unit_sandbox.py"
HOST_HARD = """
[hosts.pi-hard]
boot = "ipxe"
mac = "52:54:00:00:00:07"
profile = "/tmp/lab/profiles/pi-hard"

[hosts.pi-hard.iscsi]
initiator = "iqn.2026-04.lab.client:pi-hard"
lun = { file = "/srv/luns/hard/pi-hard.img", size = "16M" }
chap = { user = "pi-hard", secret_file = "/tmp/lab/secrets/pi-chap" }
"""
HARD = f"{PREFIX}:pi-hard"


def _unit_capabilities() -> list[str]:
    """CapabilityBoundingSet of netboot-appliance.service, from the NixOS module itself."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "nixos"))
    from nix_helpers import eval_harness, nix_eval_json

    return nix_eval_json(
        eval_harness() + "(h.evalSystem { modules = [ (repo + \"/nixos/appliance.nix\") {"
        " nixpkgs.overlays = [ (import (repo + \"/nixos/overlay.nix\")) ];"
        " services.netboot-appliance = { enable = true; settings.iscsi = { enable = true;"
        " portals = [ \"0.0.0.0:3260\" ]; }; }; } ]; }).config"
        ".systemd.services.netboot-appliance.serviceConfig.CapabilityBoundingSet")


def test_the_units_capability_set_applies_a_plan_and_serves(lab: Lab):
    """The unit runs as root with CAP_NET_BIND_SERVICE and CAP_SYS_ADMIN only, and
    no-new-privileges: enough to converge LIO through configfs (root owns it: no
    CAP_DAC_OVERRIDE), create a LUN file and bind TFTP's port 69. CAP_SYS_ADMIN
    is needed: the kernel checks it on LIO's CHAP attributes, even to read them."""
    caps = _unit_capabilities()
    assert caps == ["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"]
    sandbox = ["python3", SANDBOX, ",".join(caps)]
    mask = f"{(1 << 10) | (1 << 21):016x}"
    held = lab.vm.run([*sandbox, "sh", "-c", "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status"])
    _say(*held.stdout.splitlines())
    status = dict(line.split(":\t") for line in held.stdout.splitlines())
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == mask
    assert status["NoNewPrivs"] == "1"
    # Without CAP_DAC_OVERRIDE root cannot read a file it does not own with mode 0600.
    lab.vm.run("echo x > /tmp/lab/other && chown 1000 /tmp/lab/other && chmod 0600 /tmp/lab/other").check()
    assert not lab.vm.run([*sandbox, "cat", "/tmp/lab/other"]).ok
    # One capability less and reading LIO fails: CAP_SYS_ADMIN is not there for show.
    fewer = lab.vm.run(["python3", SANDBOX, "CAP_NET_BIND_SERVICE", *lab.cli, "-c", CONF, "iscsi", "plan"])
    _say(f"without CAP_SYS_ADMIN: {fewer.stderr.strip()}")
    assert not fewer.ok and "Operation not permitted" in fewer.stderr

    config = "/tmp/lab/hard.toml"
    lab.vm.run("mkdir -p /srv/luns/hard").check()   # tmpfiles' job on NixOS
    lab.vm.write_file(config, HEADER.replace("127.0.0.1:6969", "127.0.0.1:69") + HOST_DESK + HOST_CHAP + HOST_BLOCK
                      + HOST_HARD)
    r = lab.vm.run([*sandbox, *lab.cli, "-c", config, "iscsi", "apply"], timeout=300)
    _say(*r.stdout.splitlines()[-3:])
    assert r.ok, r.stderr
    assert lab.vm.run("test -f /srv/luns/hard/pi-hard.img").ok
    assert "Authentication failure" in lab.initiator.inq(HARD, "iqn.2026-04.lab.client:pi-hard").output
    inq = lab.initiator.inq(HARD, "iqn.2026-04.lab.client:pi-hard", Chap("pi-hard", CHAP_SECRET))
    assert inq.ok and "LIO-ORG" in inq.output, inq.output
    # rtslib set LIO's database root before the fabric module loaded (nothing loads it at boot here).
    assert lab.vm.run("cat /sys/kernel/config/target/dbroot").stdout.strip() == "/etc/target"

    started = lab.vm.run(f"{' '.join(sandbox)} {' '.join(lab.cli)} -c {config} serve "
                         "> /tmp/lab/serve.log 2>&1 & echo $!")
    pid = started.stdout.strip()
    try:
        def port_finding() -> dict:
            doc = lab.vm.run([*lab.cli, "-c", config, "doctor", "--json", "pi-hard"], timeout=120)
            return next(f for f in json.loads(doc.stdout)["findings"] if f["check"] == "port:udp/69")

        # Served on 127.0.0.1: answering, with doctor's warning that only this machine reaches it.
        poll(lambda: "answering" in port_finding()["message"], 120, interval=2)
        port = port_finding()
        _say(f"doctor: {port['message']}")
        assert port["status"] in ("ok", "warning") and "answering" in port["message"], \
            lab.vm.run("cat /tmp/lab/serve.log").stdout
        assert lab.vm.run(f"grep -E '^Cap(Eff|Bnd)' /proc/{pid}/status").stdout.split()[1::2] == [mask] * 2
    finally:
        lab.vm.run(f"kill {pid}")   # the serve we started, by its PID
