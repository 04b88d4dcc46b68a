"""The I/O edges on this host: kernel checks, backing files, sessions, commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import appliance.iscsi as iscsi
from appliance.app import App, emit
from appliance.config.model import Config, IscsiConfig, ListenAddress
from appliance.errors import IscsiError, LioUnavailable
from appliance.iscsi.lio import KernelPaths, ensure_backing_file, prepare_kernel
from appliance.iscsi.observe import parse_acl_info
from appliance.iscsi.sessions import read_sessions

from .test_plan import TWO


def test_public_surface():
    for name in iscsi.__all__:
        assert hasattr(iscsi, name), name
    assert callable(iscsi.iscsi_plan) and callable(iscsi.iscsi_apply)


# -- kernel preparation ----------------------------------------------------------------

def _paths(tmp_path: Path, filesystems: str, mounts: str = "") -> KernelPaths:
    (tmp_path / "filesystems").write_text(filesystems)
    (tmp_path / "mounts").write_text(mounts)
    (tmp_path / "module").mkdir(exist_ok=True)
    (tmp_path / "config").mkdir(exist_ok=True)
    return KernelPaths(proc_filesystems=tmp_path / "filesystems", proc_mounts=tmp_path / "mounts",
                       sys_module=tmp_path / "module", configfs=tmp_path / "config", dbroot=tmp_path / "etc-target")


def _runner(results: dict[str, tuple[int, str]], calls: list[list[str]]):
    def run(argv):
        calls.append(argv)
        code, err = results.get(argv[-1] if argv[0] == "modprobe" else argv[0], (0, ""))
        return subprocess.CompletedProcess(argv, code, "", err)
    return run


def test_no_configfs_says_so(tmp_path):
    calls: list = []
    paths = _paths(tmp_path, "nodev\tsysfs\nnodev\tproc\n")
    run = _runner({"configfs": (1, "modprobe: FATAL: Module configfs not found in directory /lib/modules/6.1.0")}, calls)
    with pytest.raises(LioUnavailable) as err:
        prepare_kernel(paths, run)
    assert "no configfs" in str(err.value) and "Module configfs not found" in str(err.value)
    assert calls == [["modprobe", "configfs"]]


def test_missing_target_module_is_named(tmp_path):
    calls: list = []
    paths = _paths(tmp_path, "nodev\tconfigfs\n", f"configfs {tmp_path / 'config'} configfs rw 0 0\n")
    run = _runner({"iscsi_target_mod": (1, "modprobe: FATAL: Module iscsi_target_mod not found")}, calls)
    with pytest.raises(LioUnavailable) as err:
        prepare_kernel(paths, run)
    assert "kernel module iscsi_target_mod cannot be loaded" in str(err.value)


def test_configfs_is_mounted_when_needed_and_dbroot_created(tmp_path):
    calls: list = []
    paths = _paths(tmp_path, "nodev\tconfigfs\n")
    (tmp_path / "config" / "target").mkdir()
    prepare_kernel(paths, _runner({}, calls))
    assert ["mount", "-t", "configfs", "configfs", str(tmp_path / "config")] in calls
    assert paths.dbroot.is_dir()


@pytest.mark.skipif(Path("/sys/kernel/config/target").is_dir(), reason="this machine has LIO")
def test_on_this_host_without_lio_the_commands_say_what_is_missing(tmp_path, capsys):
    with pytest.raises(LioUnavailable) as err:
        iscsi.iscsi_plan(TWO, secrets=lambda p: f"a-secret-value-{p.name}")
    assert "kernel LIO is not available" in str(err.value)
    secret = tmp_path / "chap"
    secret.write_text("a-secret-value\n")
    mutual = tmp_path / "mutual"
    mutual.write_text("a-mutual-value\n")
    from dataclasses import replace
    from .test_plan import CHAP, config, host
    cfg = config(host("pi-desktop", chap=replace(CHAP, secret_file=secret, mutual_secret_file=mutual)))
    code = emit(App(cfg).iscsi_plan())
    out = capsys.readouterr()
    assert code == 1
    assert "kernel LIO is not available" in out.err
    print(out.err)


def test_disabled_iscsi_touches_nothing(capsys):
    cfg = Config(iscsi=IscsiConfig(enable=False, portals=(ListenAddress("0.0.0.0", 3260),)))
    app = App(cfg)
    for operation in (app.iscsi_plan, app.iscsi_apply, app.iscsi_status):
        assert emit(operation()) == 0
        assert "disabled" in capsys.readouterr().out
    assert emit(app.iscsi_status(), as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == {"enabled": False, "hosts": {}}
    assert iscsi.iscsi_apply(cfg).disabled


# -- backing files ---------------------------------------------------------------------

def test_backing_file_is_created_sparse_and_never_truncated(tmp_path):
    f = tmp_path / "lun.img"
    assert ensure_backing_file(f, 64 << 20) == "created"
    st = os.stat(f)
    assert st.st_size == 64 << 20 and st.st_blocks * 512 < (1 << 20)   # sparse
    with open(f, "r+b") as h:
        h.write(b"data")
    assert ensure_backing_file(f, 32 << 20) == "kept"        # larger: left alone
    assert os.stat(f).st_size == 64 << 20 and f.read_bytes()[:4] == b"data"
    with pytest.raises(IscsiError, match="needs --allow-destroy"):
        ensure_backing_file(f, 128 << 20)                     # smaller: refused without grow
    assert ensure_backing_file(f, 128 << 20, grow=True) == "grown"
    assert os.stat(f).st_size == 128 << 20 and f.read_bytes()[:4] == b"data"


def test_a_backing_file_that_cannot_be_made_full_size_is_not_left_behind_empty(tmp_path):
    # A file system that refuses the size (EFBIG: its maximum file size, here a process
    # limit) used to leave a 0-byte file at the path; the next plan then wanted to "grow"
    # it with --allow-destroy.  The file appears at its path complete or not at all.
    f = tmp_path / "lun.img"
    code = ("import resource, signal, sys\n"
            "from pathlib import Path\n"
            "from appliance.errors import IscsiError\n"
            "from appliance.iscsi.lio import ensure_backing_file\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
            "try:\n"
            "    ensure_backing_file(Path(sys.argv[1]), 64 << 20)\n"
            "except IscsiError as exc:\n"
            "    print('refused:', exc)\n")
    out = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("refused:"), out.stdout + out.stderr
    assert not f.exists() and os.listdir(tmp_path) == []
    assert ensure_backing_file(f, 64 << 20) == "created" and os.listdir(tmp_path) == ["lun.img"]


def test_a_file_that_appeared_where_the_plan_said_new_sparse_file_is_not_exported(tmp_path):
    # The plan (and the "done" line) said "new sparse file": exporting someone's file that
    # appeared in between — possibly larger, cut to the first `size` bytes — is not that.
    f = tmp_path / "lun.img"
    f.write_bytes(b"someone's data")
    with pytest.raises(IscsiError, match="appeared since the plan"):
        ensure_backing_file(f, 64 << 20, new=True)
    assert f.read_bytes() == b"someone's data"
    fresh = tmp_path / "fresh.img"
    assert ensure_backing_file(fresh, 64 << 20, new=True) == "created"


def test_backing_path_swapped_for_a_fifo_or_device_after_the_plan_is_refused_at_once(tmp_path):
    # Between observing and applying, the path may have become something else: a FIFO
    # without a reader used to block the apply (holding the apply lock) for ever, and a
    # device node was opened, "grown" and handed to fileio.
    fifo = tmp_path / "lun.img"
    os.mkfifo(fifo)
    outcome: list[BaseException | str] = []

    def call() -> None:
        try:
            outcome.append(ensure_backing_file(fifo, 64 << 20))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))   # let the blocked open return
        worker.join(10)
        pytest.fail("ensure_backing_file blocked on a FIFO")
    assert isinstance(outcome[0], IscsiError) and "not a regular file" in str(outcome[0]), outcome
    device = tmp_path / "dev.img"
    device.symlink_to("/dev/null")
    for grow in (False, True):
        with pytest.raises(IscsiError, match="not a regular file"):
            ensure_backing_file(device, 64 << 20, grow=grow)


# -- sessions --------------------------------------------------------------------------

INFO = """InitiatorName: iqn.2026-04.net.example:pi-desktop
InitiatorAlias: 
LIO Session ID: 3   ISID: 0x23d000000   TSIH: 3  SessionType: Normal
Session State: TARG_SESS_STATE_LOGGED_IN
---------------------[iSCSI Session Values]-----------------------
  CmdSN/WR  :  CmdSN/WC  :  ExpCmdSN  :  MaxCmdSN  :     ITT    :     TTT
 0x00000014   0x00000014   0x00000014   0x00000093   0x00000013   0xffffffff
----------------------[iSCSI Connections]-------------------------
CID: 0  Connection State: TARG_CONN_STATE_LOGGED_IN
   Address 10.0.2.2 TCP  StatSN: 0x00000015
"""


def test_acl_info_parses_into_a_session():
    s = parse_acl_info("iqn.t:x", 1, INFO)
    assert s is not None and s.initiator == "iqn.2026-04.net.example:pi-desktop"
    assert s.state == "LOGGED_IN" and s.addresses == ("10.0.2.2",)
    assert parse_acl_info("iqn.t:x", 1, "No active iSCSI Session for Initiator Endpoint: iqn.x\n") is None


def test_read_sessions_walks_configfs(tmp_path):
    acl = tmp_path / "iqn.2026-11.lan.netboot:pi-desktop" / "tpgt_1" / "acls" / "iqn.2026-04.net.example:pi-desktop"
    acl.mkdir(parents=True)
    (acl / "info").write_text(INFO)
    (tmp_path / "discovery_auth").mkdir()
    assert read_sessions(tmp_path) == {"iqn.2026-11.lan.netboot:pi-desktop": [
        {"target": "iqn.2026-11.lan.netboot:pi-desktop", "tpg": 1, "initiator": "iqn.2026-04.net.example:pi-desktop",
         "state": "LOGGED_IN", "addresses": ["10.0.2.2"]}]}
    assert read_sessions(tmp_path / "absent") == {}


# -- api with a stand-in adapter ---------------------------------------------------------

class FakeAdapter:
    """Stands in for LioAdapter: observed state in, executed plans recorded."""

    def __init__(self, observed):
        self.observed = observed
        self.executed = []

    def observe(self, files=()):
        return self.observed

    def execute(self, the_plan, secrets):
        from .fake import apply_actions

        self.executed.append(the_plan)
        self.observed = apply_actions(self.observed, the_plan, secrets)
        return [a.describe() for a in the_plan.actions]

    def save(self):
        pass


def test_apply_then_status_through_the_api(tmp_path):
    from appliance.errors import DestructiveChange
    from appliance.iscsi.observe import LioObserved

    from .test_plan import SECRETS, config, host, read_secret

    adapter = FakeAdapter(LioObserved())
    lock = tmp_path / "lock"
    report = iscsi.iscsi_apply(TWO, adapter=adapter, secrets=read_secret, lock_path=lock)
    assert report.converged and len(report.done) == len(adapter.executed[0].actions) > 10
    assert str(report).endswith("changes applied")
    again = iscsi.iscsi_apply(TWO, adapter=adapter, secrets=read_secret, lock_path=lock)
    assert str(again) == "nothing to do (LIO matches the configuration)" and len(adapter.executed) == 1

    status = iscsi.iscsi_status(TWO, adapter=adapter, secrets=read_secret)
    text = json.dumps(status)
    assert status["in_sync"] and status["hosts"]["pi-desktop"]["chap"] and status["hosts"]["pi-kitchen"]["acl"]
    assert not any(secret in text for secret in SECRETS.values())
    assert not any(secret in json.dumps(report.as_json()) for secret in SECRETS.values())

    with pytest.raises(DestructiveChange) as err:
        iscsi.iscsi_apply(config(host("pi-desktop")), adapter=adapter, secrets=read_secret, lock_path=lock)
    assert err.value.plan.refusals and len(adapter.executed) == 1     # nothing applied
    assert iscsi.iscsi_plan(Config(), adapter=adapter).empty            # disabled: LIO not read


def test_automatic_apply_withholds_a_logged_in_hosts_acl_and_converges_the_others(tmp_path):
    from appliance.iscsi.observe import LioObserved

    from .test_plan import CHAP, _logged_in, config, host, read_secret

    adapter = FakeAdapter(LioObserved())
    lock = tmp_path / "lock"
    iscsi.iscsi_apply(TWO, adapter=adapter, secrets=read_secret, lock_path=lock)
    adapter.observed = _logged_in(adapter.observed)
    before = adapter.observed.target("iqn.2026-11.lan.netboot:pi-kitchen")
    typo = config(host("pi-desktop", chap=CHAP), host("pi-kitchen", initiator="iqn.2026-04.net.exmaple:pi-kitchen"),
                  host("pi-new"))
    for allow in (False, True):   # the daemon's apply is never destructive, whatever it is asked
        report = iscsi.iscsi_apply(typo, allow, adapter=adapter, secrets=read_secret, lock_path=lock, automatic=True)
        assert adapter.observed.target("iqn.2026-11.lan.netboot:pi-kitchen") == before
        assert {a.verb for a in report.withheld} >= {"delete-acl", "create-acl"}
        assert "withheld" in str(report) and "is logged in" in str(report)
        assert report.as_json()["withheld"]
    assert adapter.observed.target("iqn.2026-11.lan.netboot:pi-new") is not None
