"""The pure planner: create, converge, drift, ownership, data safety, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.boot.styles import style_named
from appliance.config.model import ChapSpec, Config, Host, HostIscsi, IscsiConfig, ListenAddress, LunSpec
from appliance.errors import ConfigError
from appliance.iscsi import format_plan, plan
import importlib

p = importlib.import_module("appliance.iscsi.plan")  # the package exports the function `plan` under the same name
from appliance.iscsi.desired import Portal, Secret, desired_state
from appliance.iscsi.observe import (
    AclObserved,
    BackstoreObserved,
    FileObserved,
    LioObserved,
    LunObserved,
    TargetObserved,
    TpgObserved,
)

from .fake import apply_actions

PREFIX = "iqn.2026-11.lan.netboot"
MiB = 1 << 20
SECRETS = {
    Path("/run/secrets/pi-chap"): "s3cret-pi-desktop-XYZ",
    Path("/run/secrets/pi-mutual"): "mutual-target-QWE",
}


def read_secret(path: Path) -> str:
    try:
        return SECRETS[path]
    except KeyError:
        raise FileNotFoundError(2, "No such file or directory", str(path)) from None


def host(name: str, lun: LunSpec | None = None, chap: ChapSpec | None = None, initiator: str | None = None) -> Host:
    return Host(
        name=name, boot=style_named("rpi"), profile=Path(f"/nix/var/nix/profiles/netboot/{name}"),
        iscsi=HostIscsi(
            initiator=initiator or f"iqn.2026-04.net.example:{name}",
            lun=lun or LunSpec("file", Path(f"/srv/luns/{name}.img"), 64 * MiB),
            chap=chap,
        ),
    )


CHAP = ChapSpec(user="pi-desktop", secret_file=Path("/run/secrets/pi-chap"),
                mutual_user="netboot", mutual_secret_file=Path("/run/secrets/pi-mutual"))


def config(*hosts: Host, portals=(ListenAddress("0.0.0.0", 3260),)) -> Config:
    return Config(iscsi=IscsiConfig(enable=True, portals=tuple(portals), target_prefix=PREFIX),
                  hosts={h.name: h for h in hosts})


def desired(cfg: Config):
    return desired_state(cfg, read_secret)


def converge(cfg: Config, observed: LioObserved = LioObserved(), allow_destroy: bool = False) -> LioObserved:
    the_plan = plan(desired(cfg), observed, allow_destroy)
    assert not the_plan.refusals, the_plan.refusals
    return apply_actions(observed, the_plan, read_secret)


def verbs(the_plan: p.Plan) -> list[str]:
    return [a.verb for a in the_plan.actions]


TWO = config(host("pi-desktop", chap=CHAP), host("pi-kitchen"))


# -- create and converge ---------------------------------------------------------------

def test_empty_lio_gets_everything_in_dependency_order():
    the_plan = plan(desired(config(host("pi-kitchen"))), LioObserved(files=(FileObserved(Path("/srv/luns/pi-kitchen.img"), False),)))
    assert verbs(the_plan) == [
        "create-backstore", "create-target", "create-tpg",
        "set-tpg-attribute", "set-tpg-attribute", "set-tpg-attribute",
        "create-portal", "create-lun", "create-acl", "create-mapped-lun", "enable-tpg",
    ]
    bs = the_plan.actions[0]
    assert bs == p.CreateBackstore("fileio", "netboot-pi-kitchen", Path("/srv/luns/pi-kitchen.img"), 64 * MiB, "create")
    attrs = {(a.name, a.value) for a in the_plan.actions if isinstance(a, p.SetTpgAttribute)}
    assert attrs == {("generate_node_acls", "0"), ("demo_mode_write_protect", "1"), ("authentication", "0")}
    assert p.CreateTarget(f"{PREFIX}:pi-kitchen") in the_plan.actions
    assert p.CreatePortal(f"{PREFIX}:pi-kitchen", Portal("0.0.0.0", 3260)) in the_plan.actions
    assert p.CreateAcl(f"{PREFIX}:pi-kitchen", "iqn.2026-04.net.example:pi-kitchen") in the_plan.actions
    assert not the_plan.refusals


def test_chap_host_gets_authentication_and_chap_from_files():
    the_plan = plan(desired(config(host("pi-desktop", chap=CHAP))), LioObserved())
    assert p.SetTpgAttribute(f"{PREFIX}:pi-desktop", "authentication", "1") in the_plan.actions
    chap = [a for a in the_plan.actions if isinstance(a, p.SetAclChap)]
    assert chap == [p.SetAclChap(f"{PREFIX}:pi-desktop", "iqn.2026-04.net.example:pi-desktop", "pi-desktop",
                                 Path("/run/secrets/pi-chap"), "netboot", Path("/run/secrets/pi-mutual"), "new ACL")]


def test_second_plan_after_apply_is_empty():
    observed = converge(TWO)
    again = plan(desired(TWO), observed)
    assert again.empty, format_plan(again)
    assert format_plan(again) == "iSCSI: nothing to do (LIO matches the configuration)"


def test_existing_file_of_the_right_size_is_used_not_created():
    f = FileObserved(Path("/srv/luns/pi-kitchen.img"), True, "file", 64 * MiB)
    the_plan = plan(desired(config(host("pi-kitchen"))), LioObserved(files=(f,)))
    assert the_plan.actions[0].file_action == "use"
    assert not the_plan.refusals


# -- drift -----------------------------------------------------------------------------

def _tpg_edit(observed: LioObserved, iqn: str, **changes) -> LioObserved:
    return replace(observed, targets=tuple(
        replace(t, tpgs=tuple(replace(tpg, **changes(tpg)) if callable(changes) else replace(tpg, **changes)
                              for tpg in t.tpgs)) if t.iqn == iqn else t for t in observed.targets))


def _edit_tpg(observed: LioObserved, iqn: str, fn) -> LioObserved:
    return replace(observed, targets=tuple(
        replace(t, tpgs=tuple(fn(tpg) for tpg in t.tpgs)) if t.iqn == iqn else t for t in observed.targets))


DESK = f"{PREFIX}:pi-desktop"
KITCHEN = f"{PREFIX}:pi-kitchen"


def test_deleted_acl_is_recreated_with_lun_and_chap():
    observed = _edit_tpg(converge(TWO), DESK, lambda t: replace(t, acls=()))
    the_plan = plan(desired(TWO), observed)
    assert verbs(the_plan) == ["create-acl", "create-mapped-lun", "set-acl-chap"]
    assert not the_plan.refusals
    assert plan(desired(TWO), apply_actions(observed, the_plan, read_secret)).empty


def test_changed_attribute_is_set_back():
    observed = _edit_tpg(converge(TWO), KITCHEN, lambda t: replace(
        t, attributes=tuple(sorted({**t.attribute_map, "generate_node_acls": "1"}.items()))))
    the_plan = plan(desired(TWO), observed)
    assert the_plan.actions == (p.SetTpgAttribute(KITCHEN, "generate_node_acls", "0", "1"),)


def test_missing_portal_is_created_and_extra_one_removed():
    observed = _edit_tpg(converge(TWO), KITCHEN, lambda t: replace(t, portals=(Portal("10.9.9.9", 3260),)))
    the_plan = plan(desired(TWO), observed)
    assert the_plan.actions == (p.DeletePortal(KITCHEN, Portal("10.9.9.9", 3260)),
                                p.CreatePortal(KITCHEN, Portal("0.0.0.0", 3260)))
    assert not the_plan.refusals


def test_wrong_chap_secret_is_rewritten_without_showing_it():
    observed = _edit_tpg(converge(TWO), DESK, lambda t: replace(
        t, acls=tuple(replace(a, chap_password=Secret("old-one")) for a in t.acls)))
    the_plan = plan(desired(TWO), observed)
    assert verbs(the_plan) == ["set-acl-chap"]
    assert the_plan.actions[0].reason == "secret differs"


def test_chap_left_on_an_acl_without_chap_is_cleared():
    observed = _edit_tpg(converge(TWO), KITCHEN, lambda t: replace(
        t, acls=tuple(replace(a, chap_userid="someone", chap_password=Secret("x")) for a in t.acls)))
    the_plan = plan(desired(TWO), observed)
    assert the_plan.actions == (p.SetAclChap(KITCHEN, "iqn.2026-04.net.example:pi-kitchen", "", None,
                                             reason="CHAP not configured"),)


def test_disabled_tpg_write_protected_mapping_and_stray_acl_are_fixed():
    def drift(t: TpgObserved) -> TpgObserved:
        acls = tuple(replace(a, mapped_luns=((0, 0, True),)) for a in t.acls)
        return replace(t, enabled=False, acls=acls + (AclObserved("iqn.2000-01.com.evil:intruder", ((0, 0, False),)),))
    observed = _edit_tpg(converge(TWO), KITCHEN, drift)
    the_plan = plan(desired(TWO), observed)
    assert verbs(the_plan) == ["delete-mapped-lun", "delete-acl", "create-mapped-lun", "enable-tpg"]
    assert not the_plan.refusals
    assert plan(desired(TWO), apply_actions(observed, the_plan, read_secret)).empty


def test_initiator_iqn_case_does_not_cause_drift():
    observed = _edit_tpg(converge(TWO), KITCHEN, lambda t: replace(
        t, acls=tuple(replace(a, initiator=a.initiator.upper().replace("IQN.", "iqn.")) for a in t.acls)))
    assert plan(desired(TWO), observed).empty


# -- ownership ---------------------------------------------------------------------------

FOREIGN_TARGET = TargetObserved("iqn.2003-01.org.linux-iscsi.nas:sn.1234", (
    TpgObserved(1, True, (("authentication", "0"), ("demo_mode_write_protect", "0"), ("generate_node_acls", "1")),
                (Portal("0.0.0.0", 3260),), (LunObserved(0, ("fileio", "data")),),
                (AclObserved("iqn.2026-04.net.example:pi-desktop", ((0, 0, False),)),)),))
FOREIGN_BS = BackstoreObserved("fileio", "data", "/srv/data.img", 10 * MiB)
OTHER_PREFIX = TargetObserved("iqn.2026-11.lan.netbootx:pi-desktop", ())


def test_foreign_targets_and_backstores_are_never_touched():
    observed = replace(converge(TWO), targets=converge(TWO).targets + (FOREIGN_TARGET, OTHER_PREFIX),
                       backstores=converge(TWO).backstores + (FOREIGN_BS, BackstoreObserved("block", "mydisk", "/dev/sdz", None)))
    for allow in (False, True):
        the_plan = plan(desired(TWO), observed, allow_destroy=allow)
        assert the_plan.empty, format_plan(the_plan)
    # Even when the appliance's own objects are all gone (no hosts left).
    the_plan = plan(desired(config()), observed, allow_destroy=True)
    text = json.dumps(the_plan.as_json())
    assert "linux-iscsi" not in text and "netbootx" not in text and '"data"' not in text and "mydisk" not in text


def test_backing_file_exported_by_a_foreign_backstore_is_a_conflict_even_with_allow_destroy():
    foreign = BackstoreObserved("fileio", "handmade", "/srv/luns/pi-kitchen.img", 64 * MiB)
    for allow in (False, True):
        the_plan = plan(desired(config(host("pi-kitchen"))), LioObserved(backstores=(foreign,)), allow)
        assert [r.overridable for r in the_plan.refusals] == [False]
        assert "handmade" in str(the_plan.refusals[0])


# -- data safety -----------------------------------------------------------------------

def _no_file_operations(the_plan: p.Plan) -> None:
    # Deleting LIO objects never implies touching a file: only CreateBackstore may, and
    # it never deletes or truncates (ensure_backing_file is tested separately).
    for a in the_plan.actions:
        if isinstance(a, p.CreateBackstore):
            assert a.file_action in ("create", "use", "grow")


def test_removed_host_is_refused_then_only_lio_objects_deleted():
    observed = converge(TWO)
    only_desk = config(host("pi-desktop", chap=CHAP))
    refused = plan(desired(only_desk), observed)
    assert refused.refused
    subjects = {r.subject for r in refused.refusals}
    assert subjects == {KITCHEN, "netboot-pi-kitchen"}
    assert all(r.overridable for r in refused.refusals)
    assert "needs --allow-destroy" in format_plan(refused)

    allowed = plan(desired(only_desk), observed, allow_destroy=True)
    assert not allowed.refusals
    assert allowed.actions == (
        p.DeleteTarget(KITCHEN, has_luns=True),
        p.DeleteBackstore("fileio", "netboot-pi-kitchen", "/srv/luns/pi-kitchen.img", "no host in the configuration uses it"),
    )
    assert "the backing data is kept" in allowed.actions[1].describe()
    _no_file_operations(allowed)
    after = apply_actions(observed, allowed, read_secret)
    assert plan(desired(only_desk), after).empty


def test_changed_backing_path_is_refused_then_replaced():
    observed = converge(TWO)
    moved = config(host("pi-desktop", chap=CHAP), host("pi-kitchen", LunSpec("file", Path("/srv/new/pi-kitchen.img"), 64 * MiB)))
    refused = plan(desired(moved), observed)
    assert refused.refused
    assert any("backing path changes from /srv/luns/pi-kitchen.img to /srv/new/pi-kitchen.img" in r.reason
               for r in refused.refusals)
    allowed = plan(desired(moved), observed, allow_destroy=True)
    assert verbs(allowed) == ["delete-lun", "delete-backstore", "create-backstore", "create-lun", "create-mapped-lun"]
    _no_file_operations(allowed)
    assert plan(desired(moved), apply_actions(observed, allowed, read_secret)).empty


def test_changed_size_is_refused():
    observed = converge(TWO)
    bigger = config(host("pi-desktop", chap=CHAP), host("pi-kitchen", LunSpec("file", Path("/srv/luns/pi-kitchen.img"), 128 * MiB)))
    refused = plan(desired(bigger), observed)
    assert any("size changes from 64 MiB to 128 MiB" in r.reason for r in refused.refusals)
    smaller = config(host("pi-desktop", chap=CHAP), host("pi-kitchen", LunSpec("file", Path("/srv/luns/pi-kitchen.img"), 32 * MiB)))
    assert plan(desired(smaller), observed).refused


def test_block_backstore_replacing_a_file_is_refused():
    observed = converge(TWO)
    block = config(host("pi-desktop", chap=CHAP), host("pi-kitchen", LunSpec("block", Path("/dev/zvol/tank/k"))))
    refused = plan(desired(block), observed)
    assert any("kind changes from fileio to block" in r.reason for r in refused.refusals)


def test_smaller_existing_file_is_grown_only_with_allow_destroy_larger_never_shrunk():
    small = FileObserved(Path("/srv/luns/pi-kitchen.img"), True, "file", 16 * MiB)
    cfg = config(host("pi-kitchen"))
    refused = plan(desired(cfg), LioObserved(files=(small,)))
    assert refused.refused and "grow the existing file from 16 MiB" in str(refused.refusals[0])
    grown = plan(desired(cfg), LioObserved(files=(small,)), allow_destroy=True)
    assert grown.actions[0].file_action == "grow" and not grown.refusals

    large = FileObserved(Path("/srv/luns/pi-kitchen.img"), True, "file", 256 * MiB)
    refused = plan(desired(cfg), LioObserved(files=(large,)))
    assert "never shrunk" in str(refused.refusals[0])
    allowed = plan(desired(cfg), LioObserved(files=(large,)), allow_destroy=True)
    assert allowed.actions[0].file_action == "use"


def test_missing_directory_and_non_file_are_conflicts():
    cfg = config(host("pi-kitchen"))
    nodir = FileObserved(Path("/srv/luns/pi-kitchen.img"), False, parent_exists=False)
    the_plan = plan(desired(cfg), LioObserved(files=(nodir,)), allow_destroy=True)
    assert the_plan.refused and "does not exist (share not mounted?)" in str(the_plan.refusals[0])
    adir = FileObserved(Path("/srv/luns/pi-kitchen.img"), True, "dir")
    assert plan(desired(cfg), LioObserved(files=(adir,)), allow_destroy=True).refused


def test_foreign_lun_inside_an_owned_target_is_destructive_to_remove():
    observed = _edit_tpg(converge(TWO), KITCHEN, lambda t: replace(t, luns=t.luns + (LunObserved(1, ("fileio", "data")),)))
    refused = plan(desired(TWO), observed)
    assert [a.verb for a in refused.actions] == ["delete-lun"] and refused.refused


# -- secrets ---------------------------------------------------------------------------

def test_secrets_never_appear_in_repr_format_or_json():
    d = desired(TWO)
    observed = converge(TWO)
    drifted = _edit_tpg(observed, DESK, lambda t: replace(t, acls=tuple(replace(a, chap_password=Secret("old-secret-value")) for a in t.acls)))
    plans = [plan(d, LioObserved()), plan(d, drifted)]
    texts = [repr(d), str(d), repr(observed), repr(drifted)]
    for the_plan in plans:
        texts += [repr(the_plan), format_plan(the_plan), json.dumps(the_plan.as_json())]
        texts += [a.describe() for a in the_plan.actions]
    for text in texts:
        for secret in [*SECRETS.values(), "old-secret-value"]:
            assert secret not in text
    with pytest.raises(TypeError):
        json.dumps(d.targets[0].chap.password)
    assert f"{d.targets[0].chap.password}" == "Secret(<hidden>)"


def test_unreadable_or_bad_secret_files_are_config_errors_without_values():
    cfg = config(host("pi-desktop", chap=replace(CHAP, secret_file=Path("/run/secrets/missing"))))
    with pytest.raises(ConfigError) as err:
        desired(cfg)
    assert "hosts.pi-desktop.iscsi.chap.secret_file" in str(err.value)
    padded = {Path("/run/secrets/pi-chap"): " padded ", Path("/run/secrets/pi-mutual"): "ok-secret"}
    with pytest.raises(ConfigError) as err:
        desired_state(config(host("pi-desktop", chap=CHAP)), padded.__getitem__)
    assert "whitespace" in str(err.value) and "padded" not in str(err.value)


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfeZq9-hidden-77\n", "not UTF-8"),
    (b"Zq9\x00hidden-77\n", "control character"),
    (b"Zq9\thidden-77", "control character"),
])
def test_secret_file_that_lio_cannot_take_is_a_config_error_without_its_bytes(tmp_path, content, words):
    # The kernel stores the secret with "%s": a NUL would silently cut it short; a
    # decode error's message would quote the secret's bytes.
    f = tmp_path / "chap"
    f.write_bytes(content)
    cfg = config(host("pi-desktop", chap=ChapSpec(user="pi-desktop", secret_file=f)))
    with pytest.raises(ConfigError) as err:
        desired_state(cfg)
    message = str(err.value)
    assert "hosts.pi-desktop.iscsi.chap.secret_file" in message and words in message, message
    assert "0xff" not in message and "Zq9" not in message and "hidden-77" not in message, message


def test_secret_file_naming_a_disk_image_or_a_fifo_is_refused_without_reading_it_all(tmp_path):
    # secret_file and lun swapped by mistake: the whole image was read into memory
    # (a 3 GiB file: 6 GB resident, 22 s); a FIFO blocked plan, apply and the daemon.
    image = tmp_path / "pi.img"
    with open(image, "wb") as f:
        f.truncate(3 << 30)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = ("import resource, sys\n"
            "from pathlib import Path\n"
            "from appliance.errors import ConfigError\n"
            "from appliance.iscsi.desired import _secret\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from appliance.iscsi.desired import read_secret_file\n"
            "problems = []\n"
            "_secret(read_secret_file, Path(sys.argv[1]), 'at', problems)\n"
            "print(problems[0].message)\n")
    for path, words in ((image, "larger than"), (fifo, "not a regular file")):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and words in out.stdout, out.stdout + out.stderr[-500:]


def test_one_secret_for_both_directions_is_refused():
    # RFC 7143 §12.1.3: a CHAP secret used to authenticate the initiator MUST NOT also
    # authenticate the target (a reflected challenge would log anyone in).
    same = {Path("/run/secrets/pi-chap"): "same-secret-both", Path("/run/secrets/pi-mutual"): "same-secret-both"}
    with pytest.raises(ConfigError) as err:
        desired_state(config(host("pi-desktop", chap=CHAP)), same.__getitem__)
    assert "hosts.pi-desktop.iscsi.chap.mutual_secret_file" in str(err.value)
    assert "same-secret-both" not in str(err.value)


def test_secret_file_loses_exactly_one_trailing_newline(tmp_path):
    from appliance.iscsi.desired import read_secret_file

    f = tmp_path / "s"
    f.write_text("abc\n\n")
    assert read_secret_file(f) == "abc\n"
    f.write_text("abc\n")
    assert read_secret_file(f) == "abc"
    f.write_text("abc")
    assert read_secret_file(f) == "abc"


# -- one LUN, one writer -----------------------------------------------------------------

A_IMG = Path("/srv/luns/a.img")
SAME_INODE = "inode 2049:1234"


def _file(path: str | Path, identity: str = SAME_INODE, size: int = 64 * MiB) -> FileObserved:
    return FileObserved(Path(path), True, "file", size, identity=identity)


def test_two_hosts_on_one_file_by_identity_are_a_conflict_naming_both():
    cfg = config(host("pi-desktop", LunSpec("file", A_IMG, 64 * MiB)),
                 host("pi-kitchen", LunSpec("file", Path("/srv/via-link/a.img"), 64 * MiB)))
    observed = LioObserved(files=(_file(A_IMG), _file("/srv/via-link/a.img")))
    for allow in (False, True):
        the_plan = plan(desired(cfg), observed, allow)
        conflicts = [r for r in the_plan.refusals if not r.overridable]
        assert len(conflicts) == 1, the_plan.refusals
        assert "pi-desktop" in str(conflicts[0]) and "pi-kitchen" in str(conflicts[0])


def test_foreign_backstore_on_the_same_file_under_another_name_is_a_conflict():
    foreign = BackstoreObserved("fileio", "handmade", "/srv/luns/../luns/a.img", 64 * MiB)
    observed = LioObserved(backstores=(foreign,), files=(_file(A_IMG), _file("/srv/luns/../luns/a.img")))
    for allow in (False, True):
        the_plan = plan(desired(config(host("pi-kitchen", LunSpec("file", A_IMG, 64 * MiB)))), observed, allow)
        assert [r.overridable for r in the_plan.refusals] == [False]
        assert "fileio/handmade" in str(the_plan.refusals[0])


def test_block_device_exported_by_a_foreign_backstore_through_another_node_is_a_conflict():
    by_id = Path("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4")
    foreign = BackstoreObserved("block", "nas-disk", "/dev/sdb", None)
    files = (FileObserved(by_id, True, "block", identity="block device 8:16"),
             FileObserved(Path("/dev/sdb"), True, "block", identity="block device 8:16"))
    the_plan = plan(desired(config(host("pi-kitchen", LunSpec("block", by_id)))),
                    LioObserved(backstores=(foreign,), files=files), allow_destroy=True)
    assert [r.overridable for r in the_plan.refusals] == [False]
    assert "block/nas-disk" in str(the_plan.refusals[0])


def test_owned_backstore_of_another_configured_host_on_the_same_file_is_a_conflict():
    observed = converge(config(host("pi-desktop", LunSpec("file", A_IMG, 64 * MiB))),
                        LioObserved(files=(_file(A_IMG),)))
    observed = replace(observed, files=observed.files + (_file("/srv/hard-link.img"),))
    both = config(host("pi-desktop", LunSpec("file", A_IMG, 64 * MiB)),
                  host("pi-kitchen", LunSpec("file", Path("/srv/hard-link.img"), 64 * MiB)))
    the_plan = plan(desired(both), observed, allow_destroy=True)
    conflicts = [str(r) for r in the_plan.refusals if not r.overridable]
    assert len(conflicts) == 1 and "netboot-pi-desktop" in conflicts[0] and "pi-kitchen" in conflicts[0]


def test_a_removed_hosts_backstore_may_hand_its_file_over_with_allow_destroy():
    observed = converge(config(host("pi-desktop", LunSpec("file", A_IMG, 64 * MiB))),
                        LioObserved(files=(_file(A_IMG),)))
    observed = replace(observed, files=observed.files + (_file("/srv/hard-link.img"),))
    renamed = config(host("pi-kitchen", LunSpec("file", Path("/srv/hard-link.img"), 64 * MiB)))
    refused = plan(desired(renamed), observed)
    assert refused.refusals and all(r.overridable for r in refused.refusals)
    allowed = plan(desired(renamed), observed, allow_destroy=True)
    assert not allowed.refusals
    assert verbs(allowed).index("delete-backstore") < verbs(allowed).index("create-backstore")


def test_a_renamed_host_is_not_exported_twice_while_the_old_name_is_withheld():
    # The daemon's automatic apply withholds the old name's removal; creating the new
    # name's backstore on the same file meanwhile would make two writers on one disk.
    observed = converge(config(host("pi-desktop", LunSpec("file", A_IMG, 64 * MiB))),
                        LioObserved(files=(_file(A_IMG),)))
    observed = replace(observed, files=observed.files + (_file("/srv/hard-link.img"),))
    renamed = config(host("pi-kitchen", LunSpec("file", Path("/srv/hard-link.img"), 64 * MiB)))
    kept, withheld = plan(desired(renamed), observed).split_refused()
    assert not any(isinstance(a, p.CreateBackstore) for a in kept.actions), format_plan(kept)
    assert any(isinstance(a, p.CreateBackstore) and a.name == "netboot-pi-kitchen" for a in withheld)
    refusal = next(r for r in plan(desired(renamed), observed).refusals if r.subject == "netboot-pi-kitchen")
    assert refusal.overridable and "netboot-pi-desktop" in refusal.reason


def test_owned_backstore_exported_by_a_foreign_target_is_never_deleted():
    # rtslib's StorageObject.delete() removes every LUN on it, in any target: a handmade
    # target exporting the appliance's backstore would lose its LUN, and it is a second
    # writer on the host's disk.
    observed = converge(TWO)
    foreign = TargetObserved("iqn.2003-01.org.linux-iscsi.nas:sn.1234", (
        TpgObserved(1, True, (), (), (LunObserved(3, ("fileio", "netboot-pi-kitchen")),), ()),))
    observed = replace(observed, targets=observed.targets + (foreign,))
    for cfg in (TWO, config(host("pi-desktop", chap=CHAP)),
                config(host("pi-desktop", chap=CHAP), host("pi-kitchen", LunSpec("file", Path("/srv/luns/pi-kitchen.img"), 128 * MiB)))):
        for allow in (False, True):
            the_plan = plan(desired(cfg), observed, allow)
            conflicts = [r for r in the_plan.refusals if not r.overridable]
            assert [r.subject for r in conflicts] == ["netboot-pi-kitchen"], format_plan(the_plan)
            assert "linux-iscsi.nas:sn.1234" in conflicts[0].reason
            kept, _ = the_plan.split_refused()
            assert not [a for a in kept.actions if "pi-kitchen" in a.describe()], format_plan(kept)


def test_a_backstore_left_unconfigured_by_a_killed_apply_is_replaced_without_allow_destroy():
    # kill -9 between rtslib's mkdir and its configuration leaves a backstore with no file
    # (rtslib then reads its path as "Size"): no LUN, no data; the next apply finishes the job.
    half = BackstoreObserved("fileio", "netboot-pi-kitchen", None, None, configured=False)
    the_plan = plan(desired(config(host("pi-kitchen"))),
                    LioObserved(backstores=(half,), files=(_file("/srv/luns/pi-kitchen.img"),)))
    assert not the_plan.refusals, format_plan(the_plan)
    assert verbs(the_plan)[:2] == ["delete-backstore", "create-backstore"]
    assert "interrupted" in the_plan.actions[0].describe() and "Size" not in format_plan(the_plan)
    gone = plan(desired(config()), LioObserved(backstores=(half,)))
    assert not gone.refusals and verbs(gone) == ["delete-backstore"]
    kept, withheld = gone.split_refused()
    assert verbs(kept) == ["delete-backstore"] and not withheld


def test_a_lun_path_that_is_a_broken_symlink_is_a_conflict_not_a_new_file(tmp_path):
    # A symlink into a share that is not mounted: the plan said "new sparse file" and the
    # apply then failed halfway; it is refused before anything is done.
    from appliance.iscsi.observe import observe_files

    link = tmp_path / "pi-kitchen.img"
    link.symlink_to(tmp_path / "unmounted" / "pi-kitchen.img")
    the_plan = plan(desired(config(host("pi-kitchen", LunSpec("file", link, 64 * MiB)))),
                    LioObserved(files=observe_files([link])), allow_destroy=True)
    assert [r.overridable for r in the_plan.refusals] == [False], format_plan(the_plan)
    assert "broken symlink" in the_plan.refusals[0].reason and "unmounted" in the_plan.refusals[0].reason


def test_own_backstore_named_differently_but_the_same_file_is_kept():
    observed = converge(config(host("pi-kitchen", LunSpec("file", A_IMG, 64 * MiB))),
                        LioObserved(files=(_file(A_IMG),)))
    respelled = Path("/srv/luns/../luns/a.img")
    observed = replace(observed, files=observed.files + (_file(respelled),))
    assert plan(desired(config(host("pi-kitchen", LunSpec("file", respelled, 64 * MiB)))), observed).empty


def test_observe_gives_each_name_of_a_file_one_identity_and_reads_backstore_paths(tmp_path):
    from appliance.iscsi.observe import observe

    (tmp_path / "luns").mkdir()
    (tmp_path / "luns" / "a.img").write_bytes(b"x")
    (tmp_path / "via").symlink_to(tmp_path / "luns")
    os.link(tmp_path / "luns" / "a.img", tmp_path / "b.img")

    class Root:   # the few RTSRoot members observe() reads
        storage_objects = [type("SO", (), {"plugin": "fileio", "name": "handmade", "size": 1,
                                           "udev_path": str(tmp_path / "b.img"),
                                           "is_configured": lambda self: True})()]
        targets: list = []

        def invalidate_caches(self) -> None:
            pass

    names = [tmp_path / "luns" / "a.img", tmp_path / "luns" / ".." / "luns" / "a.img", tmp_path / "via" / "a.img"]
    observed = observe(Root(), names)
    ids = {observed.identity(n) for n in [*names, tmp_path / "b.img"]}
    assert len(ids) == 1 and next(iter(ids)).startswith("inode ")
    missing = [tmp_path / "luns" / "new.img", tmp_path / "via" / "new.img"]
    observed = observe(Root(), missing)
    assert observed.identity(missing[0]) == observed.identity(missing[1])


# -- never cut a running host off ------------------------------------------------------

KITCHEN_INITIATOR = "iqn.2026-04.net.example:pi-kitchen"


def _logged_in(observed: LioObserved, iqn: str = KITCHEN) -> LioObserved:
    from appliance.iscsi.observe import SessionObserved

    return _edit_tpg(observed, iqn, lambda t: replace(t, acls=tuple(
        replace(a, session=SessionObserved(iqn, 1, a.initiator, "LOGGED_IN", ("10.0.4.7",))) for a in t.acls)))


def test_initiator_typo_would_delete_a_logged_in_hosts_acl_so_it_is_refused_and_withheld():
    observed = _logged_in(converge(TWO))
    typo = config(host("pi-desktop", chap=CHAP), host("pi-kitchen", initiator="iqn.2026-04.net.exmaple:pi-kitchen"),
                  host("pi-new"))
    the_plan = plan(desired(typo), observed)
    delete = next(a for a in the_plan.actions if isinstance(a, p.DeleteAcl))
    assert delete.destructive and delete.initiator == KITCHEN_INITIATOR
    assert f"while {KITCHEN_INITIATOR} (10.0.4.7) is logged in" in delete.describe()
    assert any(KITCHEN_INITIATOR in str(r) and "needs --allow-destroy" in str(r) for r in the_plan.refusals)
    assert "10.0.4.7" in format_plan(the_plan)

    # What an automatic apply does: nothing for the refused host, everything for the others.
    applicable, withheld = the_plan.split_refused()
    assert not applicable.refusals
    assert {a.target for a in withheld} == {KITCHEN}
    assert {"delete-acl", "create-acl", "create-mapped-lun"} <= {a.verb for a in withheld}
    assert all(getattr(a, "target", None) != KITCHEN for a in applicable.actions)
    assert any(getattr(a, "target", "").endswith(":pi-new") for a in applicable.actions)
    after = apply_actions(observed, applicable, read_secret)
    assert after.target(KITCHEN) == observed.target(KITCHEN)          # the running objects are kept

    # Without a session the same change is an ordinary fix.
    assert not plan(desired(typo), converge(TWO)).refusals


def test_portal_chap_and_mapped_lun_changes_on_a_logged_in_target_are_destructive():
    observed = _logged_in(converge(TWO))
    moved = config(host("pi-desktop", chap=CHAP), host("pi-kitchen"), portals=(ListenAddress("10.0.4.3", 3260),))
    portal = plan(desired(moved), observed)
    deletes = [a for a in portal.actions if isinstance(a, p.DeletePortal)]
    assert [a.target for a in deletes if a.destructive] == [KITCHEN]
    assert [r.subject for r in portal.refusals] == [KITCHEN]          # pi-desktop has no session

    chap = config(host("pi-desktop", chap=CHAP), host("pi-kitchen", chap=CHAP))
    refused = plan(desired(chap), observed)
    assert any(isinstance(a, p.SetAclChap) and a.destructive for a in refused.actions)
    assert any(isinstance(a, p.SetTpgAttribute) and a.destructive for a in refused.actions)
    assert {r.subject for r in refused.refusals} == {KITCHEN}

    protected = _edit_tpg(observed, KITCHEN, lambda t: replace(
        t, acls=tuple(replace(a, mapped_luns=((0, 0, True),)) for a in t.acls)))
    mapped = plan(desired(TWO), protected)
    assert [a.verb for a in mapped.actions if a.destructive] == ["delete-mapped-lun"]
    assert plan(desired(TWO), protected, allow_destroy=True).refusals == ()


def test_removing_a_logged_in_host_names_its_session():
    observed = _logged_in(converge(TWO))
    the_plan = plan(desired(config(host("pi-desktop", chap=CHAP))), observed, allow_destroy=True)
    assert "while iqn.2026-04.net.example:pi-kitchen (10.0.4.7) is logged in" in format_plan(the_plan)


def test_a_smaller_size_is_refused_and_with_allow_destroy_never_truncates():
    observed = converge(TWO)
    smaller = config(host("pi-desktop", chap=CHAP),
                     host("pi-kitchen", LunSpec("file", Path("/srv/luns/pi-kitchen.img"), 32 * MiB)))
    refused = plan(desired(smaller), observed)
    assert any("size changes from 64 MiB to 32 MiB" in str(r) for r in refused.refusals)
    assert any("never shrunk" in str(r) for r in refused.refusals)
    applicable, withheld = refused.split_refused()
    assert applicable.empty and {a.verb for a in withheld} >= {"delete-backstore", "create-backstore"}
    allowed = plan(desired(smaller), observed, allow_destroy=True)
    creates = [a for a in allowed.actions if isinstance(a, p.CreateBackstore)]
    assert [a.file_action for a in creates] == ["use"] and creates[0].current_size == 64 * MiB
