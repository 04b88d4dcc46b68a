"""Nix generations (nix-env profiles, bootspec of NixOS RFC 125): reading profiles, validating
toplevels, registering new ones."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.demo.store import add_generation, edit_bootspec, make_toplevel
from appliance.errors import GenerationError, PathEscapesStore
from appliance.nix import StoreRoots, read_generation, read_profile, register_generation

PARAMS = ("console=ttyAMA0,115200", "loglevel=4", "nohibernate")


@pytest.fixture
def roots(store_dir: Path) -> StoreRoots:
    return StoreRoots.of(store_dir)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    d = Path(os.path.realpath(tmp_path)) / "profiles"
    d.mkdir()
    return d / "pi"


def relink(link: Path, target: str | Path) -> None:
    link.unlink()
    os.symlink(target, link)


def problems_text(gen) -> str:
    return " ".join(gen.problems)


# -- valid generations ---------------------------------------------------------------------


def test_bootspec_generation_fields_come_from_boot_json(store_dir, roots, profile):
    top = make_toplevel(store_dir, "pi", "25.05.1", kernel_params=PARAMS)
    # Make boot.json and the legacy files disagree: boot.json must win.
    (top / "kernel-params").write_text("legacy=1")
    doc = json.loads((top / "boot.json").read_text())
    doc["org.nixos.bootspec.v1"]["kernelParams"] = ["from=bootspec", "quiet"]
    (top / "boot.json").write_text(json.dumps(doc))
    n = add_generation(profile, top)
    gen = read_generation(profile.parent / f"pi-{n}-link", n, roots)
    assert gen.valid, gen.problems
    assert gen.number == 1
    assert gen.toplevel == top
    assert gen.kernel_params == ("from=bootspec", "quiet")
    assert gen.init == f"{top}/init"
    assert gen.kernel == Path(os.path.realpath(top / "kernel"))
    assert gen.initrd == Path(os.path.realpath(top / "initrd"))
    assert gen.kernel.read_bytes() == (top / "kernel").read_bytes()
    assert gen.label == "NixOS 25.05.1"
    assert gen.system == "aarch64-linux"
    assert gen.created > 0


def test_bootspec_kernel_path_is_used_not_the_kernel_link(store_dir, roots, profile):
    top = make_toplevel(store_dir, "pi", "1", kernel_params=PARAMS)
    other = store_dir / "zzzz-linux-other" / "Image"
    other.parent.mkdir()
    other.write_bytes(b"other kernel")
    doc = json.loads((top / "boot.json").read_text())
    doc["org.nixos.bootspec.v1"]["kernel"] = str(other)
    (top / "boot.json").write_text(json.dumps(doc))
    add_generation(profile, top)
    gen = read_profile(profile, roots).get(1)
    assert gen.valid
    assert gen.kernel == other


def test_legacy_generation_without_boot_json(store_dir, roots, profile):
    top = make_toplevel(store_dir, "pi", "24.11.7", kernel_params=PARAMS, bootspec=False)
    assert not (top / "boot.json").exists()
    add_generation(profile, top)
    gen = read_profile(profile, roots).get(1)
    assert gen.valid, gen.problems
    assert gen.kernel_params == PARAMS
    assert gen.init == f"{top}/init"
    assert gen.kernel == Path(os.path.realpath(top / "kernel"))
    assert gen.initrd == Path(os.path.realpath(top / "initrd"))
    assert gen.label == "24.11.7"


def test_legacy_generation_without_kernel_params_file(store_dir, roots, profile):
    top = make_toplevel(store_dir, "pi", "1", bootspec=False)
    (top / "kernel-params").unlink()
    add_generation(profile, top)
    gen = read_profile(profile, roots).get(1)
    assert gen.valid
    assert gen.kernel_params == ()


def test_dtbs_directory_is_resolved(store_dir, roots, profile):
    top = make_toplevel(store_dir, "pi", "1", dtbs=("broadcom/bcm2711-rpi-400.dtb",))
    add_generation(profile, top)
    gen = read_profile(profile, roots).get(1)
    assert gen.dtbs == Path(os.path.realpath(top / "dtbs"))
    assert (gen.dtbs / "broadcom" / "bcm2711-rpi-400.dtb").is_file()


# -- broken generations: listed, invalid, with a reason ---------------------------------------


def broken(store_dir, roots, profile, version: str, damage, bootspec: bool = True):
    good = make_toplevel(store_dir, "pi", "good")
    add_generation(profile, good)
    top = make_toplevel(store_dir, "pi", version, bootspec=bootspec)
    damage(top)
    add_generation(profile, top)
    prof = read_profile(profile, roots)
    assert [g.number for g in prof.generations] == [1, 2]
    assert prof.get(1).valid
    gen = prof.get(2)
    assert not gen.valid
    assert gen.problems
    assert [g.number for g in prof.valid] == [1]
    return gen


@pytest.mark.parametrize("bootspec", [True, False])
def test_missing_kernel(store_dir, roots, profile, bootspec):
    gen = broken(store_dir, roots, profile, "nokernel", lambda top: os.unlink(os.path.realpath(top / "kernel")),
                 bootspec)
    assert "kernel" in problems_text(gen)
    assert gen.kernel is None


@pytest.mark.parametrize("bootspec", [True, False])
def test_missing_initrd(store_dir, roots, profile, bootspec):
    gen = broken(store_dir, roots, profile, "noinitrd", lambda top: os.unlink(top / "initrd")
                 if not bootspec else os.unlink(os.path.realpath(top / "initrd")), bootspec)
    assert "initrd" in problems_text(gen)


@pytest.mark.parametrize("bootspec", [True, False])
def test_missing_init(store_dir, roots, profile, bootspec):
    gen = broken(store_dir, roots, profile, "noinit", lambda top: os.unlink(top / "init"), bootspec)
    assert "init" in problems_text(gen)


def test_boot_json_without_initrd(store_dir, roots, profile):
    def damage(top):
        doc = json.loads((top / "boot.json").read_text())
        del doc["org.nixos.bootspec.v1"]["initrd"]
        (top / "boot.json").write_text(json.dumps(doc))

    assert "initrd" in problems_text(broken(store_dir, roots, profile, "x", damage))


def test_kernel_that_is_a_directory(store_dir, roots, profile):
    def damage(top):
        relink(top / "kernel", top)

    gen = broken(store_dir, roots, profile, "dir", damage, bootspec=False)
    assert "kernel" in problems_text(gen) and "not a regular file" in problems_text(gen)


@pytest.mark.parametrize("text", ["{not json", '{"org.nixos.bootspec.v1": 5}', '{"other": {}}', "",
                                  '{"org.nixos.bootspec.v1": {"kernel": "/x"}}',
                                  '{"org.nixos.bootspec.v1": {"kernel": "k", "init": "i", "initrd": "r", '
                                  '"kernelParams": "quiet"}}'])
def test_malformed_boot_json(store_dir, roots, profile, text):
    gen = broken(store_dir, roots, profile, "badjson", lambda top: (top / "boot.json").write_text(text))
    assert "boot.json" in problems_text(gen)


def test_dangling_generation_link(store_dir, roots, profile):
    add_generation(profile, make_toplevel(store_dir, "pi", "1"))
    os.symlink(store_dir / "0000-nixos-system-pi-collected", profile.parent / "pi-2-link")
    prof = read_profile(profile, roots)
    gen = prof.get(2)
    assert gen is not None and not gen.valid
    assert "dangling" in problems_text(gen)
    assert prof.current == 1


def test_symlink_loop(store_dir, roots, profile):
    add_generation(profile, make_toplevel(store_dir, "pi", "1"))
    os.symlink("pi-3-link", profile.parent / "pi-2-link")
    os.symlink("pi-2-link", profile.parent / "pi-3-link")
    prof = read_profile(profile, roots)
    assert [g.number for g in prof.generations] == [1, 2, 3]
    for n in (2, 3):
        assert not prof.get(n).valid
        assert "loop" in problems_text(prof.get(n))


def test_kernel_symlink_in_a_toplevel_loops(store_dir, roots, profile):
    def damage(top):
        relink(top / "kernel", top / "kernel")

    gen = broken(store_dir, roots, profile, "loop", damage, bootspec=False)
    assert "loop" in problems_text(gen)


@pytest.mark.parametrize("bootspec", [True, False])
def test_kernel_escaping_the_store_to_etc_passwd(store_dir, roots, profile, bootspec):
    def damage(top):
        relink(top / "kernel", "/etc/passwd")
        if bootspec:
            doc = json.loads((top / "boot.json").read_text())
            doc["org.nixos.bootspec.v1"]["kernel"] = "/etc/passwd"
            (top / "boot.json").write_text(json.dumps(doc))

    gen = broken(store_dir, roots, profile, "escape", damage, bootspec)
    assert "/etc/passwd" in problems_text(gen)
    assert "outside" in problems_text(gen)
    assert gen.kernel is None


def test_kernel_in_a_sibling_directory_named_like_the_store(store_dir, roots, profile):
    evil = store_dir.parent / (store_dir.name + "-evil")
    (evil / "linux").mkdir(parents=True)
    (evil / "linux" / "Image").write_bytes(b"not from the store")

    def damage(top):
        relink(top / "kernel", evil / "linux" / "Image")

    gen = broken(store_dir, roots, profile, "sibling", damage, bootspec=False)
    assert str(evil) in problems_text(gen)
    assert "outside" in problems_text(gen)
    with pytest.raises(PathEscapesStore):
        roots.resolve(evil / "linux" / "Image")


def test_generation_link_to_a_toplevel_outside_the_store(store_dir, tmp_path, roots, profile):
    elsewhere = Path(os.path.realpath(tmp_path)) / "elsewhere"
    top = make_toplevel(elsewhere, "pi", "1")
    add_generation(profile, top)
    gen = read_profile(profile, roots).get(1)
    assert not gen.valid
    assert "outside" in problems_text(gen)


def test_initrd_escaping_via_boot_json(store_dir, roots, profile, tmp_path):
    outside = Path(os.path.realpath(tmp_path)) / "initrd"
    outside.write_bytes(b"x")

    def damage(top):
        doc = json.loads((top / "boot.json").read_text())
        doc["org.nixos.bootspec.v1"]["initrd"] = str(outside)
        (top / "boot.json").write_text(json.dumps(doc))

    gen = broken(store_dir, roots, profile, "initrd-escape", damage)
    assert "initrd" in problems_text(gen) and "outside" in problems_text(gen)


# -- what a toplevel holds becomes generated boot text: it must stay in the store and in one line --


@pytest.mark.parametrize("name", ["kernel-params", "nixos-version", "system"])
def test_toplevel_text_file_linking_out_of_the_store_is_never_read(store_dir, roots, profile, tmp_path, name):
    """A store path may hold a symlink to anywhere; its target must not end up in cmdline.txt or a
    menu sent over the network (the server reads as root: /etc/shadow would do)."""
    secret = Path(os.path.realpath(tmp_path)) / "shadow"
    secret.write_text("root:$6$SECRETHASH:19000\n")

    def damage(top):
        relink(top / name, secret)

    gen = broken(store_dir, roots, profile, "leak", damage, bootspec=False) if name == "kernel-params" else None
    if gen is not None:
        assert "kernel-params" in problems_text(gen) and "outside" in problems_text(gen)
        assert "SECRETHASH" not in problems_text(gen)
    else:
        top = make_toplevel(store_dir, "pi", "leak", bootspec=False)
        damage(top)
        add_generation(profile, top)
        gen = read_profile(profile, roots).get(1)
    assert not any("SECRETHASH" in part for part in (*gen.kernel_params, gen.label, gen.system))


def test_boot_json_linking_out_of_the_store_is_never_read(store_dir, roots, profile, tmp_path):
    outside = Path(os.path.realpath(tmp_path)) / "boot.json"

    def damage(top):
        outside.write_bytes((top / "boot.json").read_bytes())
        edit_bootspec(top, kernelParams=["from=the-store"])
        relink(top / "boot.json", outside)

    gen = broken(store_dir, roots, profile, "bootspec-leak", damage)
    assert "boot.json" in problems_text(gen) and "outside" in problems_text(gen)


@pytest.mark.parametrize("param", ["quiet\n:evil\nchain http://evil/x", "a\rb", "esc\x1b[2J", "tab\there",
                                   "nul\x00", "line\u2028sep"])
def test_kernel_param_with_a_control_character_is_refused(store_dir, roots, profile, param):
    """cmdline.txt is one line (the Pi firmware reads the first), and every menu and script line
    ends at a newline: a parameter that breaks the line would inject the rest."""
    gen = broken(store_dir, roots, profile, "ctl", lambda top: edit_bootspec(top, kernelParams=["quiet", param]))
    assert "kernel parameter" in problems_text(gen) and "control character" in problems_text(gen)
    assert "\n" not in problems_text(gen) and "\r" not in problems_text(gen)


@pytest.mark.parametrize("where", ["outside", "dangling", "bootspec"])
def test_a_path_with_a_newline_is_reported_on_one_line(store_dir, roots, profile, tmp_path, where):
    """File names inside a store path may hold any byte: a problem naming one stays one line in
    ``netboot generations`` and ``status``."""
    odd = Path(os.path.realpath(tmp_path)) / "evil\nkernel: fine"
    if where == "outside":
        odd.write_bytes(b"k")

    def damage(top):
        if where == "bootspec":
            edit_bootspec(top, kernel=str(store_dir / "x\nkernel: fine"))
        else:
            relink(top / "kernel", odd)

    gen = broken(store_dir, roots, profile, f"newline-{where}", damage, bootspec=where == "bootspec")
    assert all("\n" not in p for p in gen.problems), gen.problems


def test_kernel_param_with_spaces_from_boot_json_is_kept(store_dir, roots, profile):
    """``dyndbg="file foo.c +p"`` is one bootspec entry with spaces: legitimate, kept as written."""
    top = make_toplevel(store_dir, "pi", "dyndbg")
    edit_bootspec(top, kernelParams=['dyndbg="file foo.c +p"', "quiet"])
    add_generation(profile, top)
    gen = read_profile(profile, roots).get(1)
    assert gen.valid, gen.problems
    assert gen.kernel_params == ('dyndbg="file foo.c +p"', "quiet")


@pytest.mark.parametrize("init", ["{top}/init\nchain http://evil/x", "{top}/init extra=1", "{top}/init\t"])
def test_init_path_that_cannot_be_one_kernel_parameter_is_refused(store_dir, roots, profile, init):
    def damage(top):
        weird = init.format(top=top)
        (top / weird.rsplit("/", 1)[1]).write_text("#!/bin/sh\n")   # exists: only its name is wrong
        edit_bootspec(top, init=weird)

    gen = broken(store_dir, roots, profile, "init-name", damage)
    assert "init" in problems_text(gen)
    assert "\n" not in problems_text(gen)


@pytest.mark.parametrize("key", ["kernel", "initrd", "init"])
def test_relative_paths_in_boot_json_are_refused(store_dir, roots, profile, key, monkeypatch):
    """Bootspec paths are absolute.  A relative one would resolve against the server's working
    directory (valid or not depending on where the daemon runs), and a relative init= makes
    the kernel panic."""
    monkeypatch.chdir("/")

    def damage(top):
        doc = json.loads((top / "boot.json").read_text())
        edit_bootspec(top, **{key: doc["org.nixos.bootspec.v1"][key].lstrip("/")})

    gen = broken(store_dir, roots, profile, f"relative-{key}", damage)
    assert key in problems_text(gen) and "absolute" in problems_text(gen)


def test_init_that_is_a_directory_is_refused(store_dir, roots, profile):
    def damage(top):
        os.unlink(top / "init")
        (top / "init").mkdir()

    gen = broken(store_dir, roots, profile, "init-dir", damage, bootspec=False)
    assert "init" in problems_text(gen) and "not a regular file" in problems_text(gen)


@pytest.mark.parametrize("what", ["kernel", "initrd"])
def test_empty_kernel_or_initrd_is_refused(store_dir, roots, profile, what):
    """A zero-byte kernel or initrd (a truncated copy) never boots: listed with why, not served."""
    gen = broken(store_dir, roots, profile, f"empty-{what}",
                 lambda top: open(os.path.realpath(top / what), "wb").close())
    assert what in problems_text(gen) and "empty" in problems_text(gen)


@pytest.mark.parametrize("damage, words", [
    (lambda top: (os.unlink(top / "dtbs"), (top / "dtbs").write_bytes(b"x")), "not a directory"),
    (lambda top: (os.unlink(top / "dtbs"), os.symlink(top / "collected-dtbs", top / "dtbs")), "dangling"),
])
def test_dtbs_that_is_no_directory_is_refused(store_dir, roots, profile, damage, words):
    """A toplevel whose dtbs link is dangling (its store path is gone: a partial copy) or is not
    a directory would boot without its device trees (U-Boot's FDTDIR finds nothing, a Pi falls
    back to the firmware's): it is listed with why, not served."""
    good = make_toplevel(store_dir, "pi", "good", dtbs=("broadcom/bcm2711-rpi-400.dtb",))
    add_generation(profile, good)
    top = make_toplevel(store_dir, "pi", "bad-dtbs", dtbs=("broadcom/bcm2711-rpi-400.dtb",))
    damage(top)
    add_generation(profile, top)
    gen = read_profile(profile, roots).get(2)
    assert not gen.valid and "dtbs" in problems_text(gen) and words in problems_text(gen)


def test_huge_kernel_params_file_is_refused_without_reading_it(store_dir, roots, profile):
    """Reading is bounded: a 20 MB kernel-params file costs neither 400 MB of memory nor seconds."""
    import tracemalloc

    good = make_toplevel(store_dir, "pi", "good")
    add_generation(profile, good)
    top = make_toplevel(store_dir, "pi", "huge", bootspec=False)
    (top / "kernel-params").write_text("x=1 " * 5_000_000)
    add_generation(profile, top)
    tracemalloc.start()
    try:
        prof = read_profile(profile, roots)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    gen = prof.get(2)
    assert not gen.valid and "kernel-params" in problems_text(gen)
    assert peak < 2_000_000


def test_boot_json_that_is_not_a_regular_file_is_refused(store_dir, roots, profile):
    """A FIFO named boot.json (a test store can hold one) must not hang the reader."""
    def damage(top):
        os.unlink(top / "boot.json")
        os.mkfifo(top / "boot.json")

    gen = broken(store_dir, roots, profile, "fifo", damage)
    assert "boot.json" in problems_text(gen)


@pytest.mark.parametrize("bootspec", [True, False])
def test_label_is_one_printable_line(store_dir, roots, profile, bootspec):
    """The label is display text in menus: newlines and control characters become spaces."""
    top = make_toplevel(store_dir, "pi", "x", bootspec=bootspec)
    label = "25.05\n:evil\r\nchain http://evil/label\x1b[0m"
    if bootspec:
        edit_bootspec(top, label=label)
    else:
        (top / "nixos-version").write_text(label)
    add_generation(profile, top)
    gen = read_profile(profile, roots).get(1)
    assert gen.valid, gen.problems
    assert gen.label.isprintable() and "  " not in gen.label
    assert gen.label.startswith("25.05 :evil chain http://evil/label")


def test_a_collected_generation_is_not_valid_from_the_cache(store_dir, roots, profile):
    """The daemon memoises valid generations by link target; a store path collected since
    (a link Nix does not count as a GC root, e.g. made by register without nix) leaves the link
    dangling with the same target: it must be read as invalid again, not served from memory."""
    import shutil

    from appliance.nix import StoreCache

    cache = StoreCache()
    tops = [make_toplevel(store_dir, "pi", v) for v in ("a", "b")]
    for top in tops:
        add_generation(profile, top)
    assert [g.valid for g in read_profile(profile, roots, cache).generations] == [True, True]
    shutil.rmtree(tops[0])                                  # nix-collect-garbage
    gen = read_profile(profile, roots, cache).get(1)
    assert not gen.valid and "dangling" in problems_text(gen)
    os.unlink(os.path.realpath(tops[1] / "initrd"))        # a store path it refers to, collected
    assert not read_profile(profile, roots, cache).get(2).valid


# -- profiles ---------------------------------------------------------------------------------


def test_profile_with_gaps_is_listed_in_order(store_dir, roots, profile):
    for n in (7, 1, 3):
        add_generation(profile, make_toplevel(store_dir, "pi", f"v{n}"), number=n)
    # Unrelated entries beside the profile are ignored.
    os.symlink("/nowhere", profile.parent / "pi-0-link")
    os.symlink("/nowhere", profile.parent / "pi-x-link")
    os.symlink("/nowhere", profile.parent / "other-2-link")
    prof = read_profile(profile, roots)
    assert [g.number for g in prof.generations] == [1, 3, 7]
    assert all(g.valid for g in prof.generations)
    assert prof.get(3).label == "NixOS v3"
    assert prof.current == 3  # the last add_generation made 3 current


def test_profile_link_decides_current_and_rollback_repoints_it(store_dir, roots, profile):
    for v in ("a", "b", "c"):
        add_generation(profile, make_toplevel(store_dir, "pi", v))
    assert read_profile(profile, roots).current == 3
    # nix-env -p P --rollback: the profile link now names generation 2.
    relink(profile, "pi-2-link")
    prof = read_profile(profile, roots)
    assert prof.current == 2
    assert prof.problems == ()
    assert [g.number for g in prof.generations] == [1, 2, 3]


def test_profile_pointing_straight_at_a_store_path(store_dir, roots, profile):
    tops = [make_toplevel(store_dir, "pi", v) for v in ("a", "b")]
    for top in tops:
        add_generation(profile, top)
    relink(profile, tops[0])
    assert read_profile(profile, roots).current == 1


def test_profile_pointing_at_a_same_named_link_elsewhere_is_not_taken_for_that_number(store_dir, roots, profile,
                                                                                      tmp_path):
    """``P -> /elsewhere/P-2-link`` names no generation of P's directory: the current generation
    is what the link resolves to (here generation 1's toplevel), not P's own generation 2."""
    tops = [make_toplevel(store_dir, "pi", v) for v in ("a", "b")]
    for top in tops:
        add_generation(profile, top)
    elsewhere = Path(os.path.realpath(tmp_path)) / "elsewhere"
    elsewhere.mkdir()
    os.symlink(tops[0], elsewhere / "pi-2-link")
    relink(profile, elsewhere / "pi-2-link")
    assert read_profile(profile, roots).current == 1
    relink(profile, profile.parent / "pi-2-link")      # an absolute link into its own directory is fine
    assert read_profile(profile, roots).current == 2
    relink(profile, "./pi-1-link")                      # and so is a relative one
    assert read_profile(profile, roots).current == 1


def test_missing_profile_link(store_dir, roots, profile):
    add_generation(profile, make_toplevel(store_dir, "pi", "a"), make_current=False)
    prof = read_profile(profile, roots)
    assert prof.current is None
    assert [g.number for g in prof.generations] == [1]
    assert any("missing" in p for p in prof.problems)


def test_profile_pointing_at_a_missing_generation(store_dir, roots, profile):
    add_generation(profile, make_toplevel(store_dir, "pi", "a"))
    relink(profile, "pi-9-link")
    prof = read_profile(profile, roots)
    assert prof.current is None
    assert any("9" in p for p in prof.problems)


def test_missing_profile_directory(tmp_path, roots):
    prof = read_profile(tmp_path / "no-such-dir" / "pi", roots)
    assert prof.generations == ()
    assert prof.current is None
    assert any("does not exist" in p for p in prof.problems)


def test_empty_profile_directory_is_not_a_problem(roots, profile):
    prof = read_profile(profile, roots)
    assert prof.generations == () and prof.current is None and prof.problems == ()


# -- register ----------------------------------------------------------------------------------


def test_register_adds_the_next_generation_and_repoints_the_profile(store_dir, roots, profile):
    for n in (1, 4):
        add_generation(profile, make_toplevel(store_dir, "pi", f"v{n}"), number=n)
    relink(profile, "pi-1-link")  # even after a rollback, the new one gets max + 1
    new = make_toplevel(store_dir, "pi", "new")
    assert register_generation(profile, new, roots) == 5
    link = profile.parent / "pi-5-link"
    assert link.is_symlink() and Path(os.path.realpath(link)) == new
    assert os.readlink(profile) == "pi-5-link"
    prof = read_profile(profile, roots)
    assert prof.current == 5
    assert prof.get(5).valid and prof.get(5).toplevel == new
    # No temporary links are left beside the profile.
    assert sorted(os.listdir(profile.parent)) == ["pi", "pi-1-link", "pi-4-link", "pi-5-link"]


def test_register_into_an_empty_profile(store_dir, roots, profile):
    top = make_toplevel(store_dir, "pi", "first")
    assert register_generation(profile, top, roots) == 1
    assert read_profile(profile, roots).current == 1


def test_register_the_current_toplevel_again_is_a_no_op(store_dir, roots, profile):
    top = make_toplevel(store_dir, "pi", "a")
    assert register_generation(profile, top, roots) == 1
    before = sorted(os.listdir(profile.parent))
    assert register_generation(profile, top, roots) == 1
    assert sorted(os.listdir(profile.parent)) == before
    # Through a link to it (what `nix copy` users pass), too.
    os.symlink(top, profile.parent.parent / "result")
    assert register_generation(profile, profile.parent.parent / "result", roots) == 1
    assert sorted(os.listdir(profile.parent)) == before


def test_register_an_older_toplevel_adds_a_new_generation(store_dir, roots, profile):
    a = make_toplevel(store_dir, "pi", "a")
    b = make_toplevel(store_dir, "pi", "b")
    register_generation(profile, a, roots)
    register_generation(profile, b, roots)
    assert register_generation(profile, a, roots) == 3
    assert read_profile(profile, roots).get(3).toplevel == a


def test_register_refuses_a_path_outside_the_store(tmp_path, store_dir, roots, profile):
    outside = make_toplevel(Path(os.path.realpath(tmp_path)) / "elsewhere", "pi", "a")
    with pytest.raises(PathEscapesStore):
        register_generation(profile, outside, roots)
    evil = store_dir.parent / (store_dir.name + "-evil")
    top = make_toplevel(evil, "pi", "b")
    with pytest.raises(PathEscapesStore):
        register_generation(profile, top, roots)
    assert not profile.parent.exists() or os.listdir(profile.parent) == []


def test_register_refuses_a_toplevel_without_kernel(store_dir, roots, profile):
    top = make_toplevel(store_dir, "pi", "a", bootspec=False)
    (top / "kernel").unlink()
    with pytest.raises(GenerationError, match="kernel"):
        register_generation(profile, top, roots)
    assert os.listdir(profile.parent) == []


def test_register_refuses_a_non_directory(store_dir, roots, profile):
    f = store_dir / "aaaa-some-file"
    f.write_text("x")
    with pytest.raises(GenerationError, match="not a directory"):
        register_generation(profile, f, roots)
    with pytest.raises(GenerationError):
        register_generation(profile, store_dir / "bbbb-missing", roots)
    assert os.listdir(profile.parent) == []
