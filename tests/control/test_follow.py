"""Following the profiles: new, rolled-back, removed and broken generations (README: Operator workflow)."""

from __future__ import annotations

import json
import os

from .control_harness import (CURL_NOT_FOUND, PI, PI_PREFIX, cli_ok, curl, eventually, get, repoint_profile,
                             status)
from appliance.demo.store import add_generation, make_toplevel


def _serves(store, init: str, kernel: bytes):
    def check() -> bool:
        return (get(store.port, PI_PREFIX + "cmdline.txt").startswith(init.encode())
                and get(store.port, PI_PREFIX + "kernel8.img") == kernel)
    return check


def test_new_generation_is_served(daemon, store):
    assert _serves(store, store.init_of(PI, 2), store.kernel_bytes(PI, 2))()
    top = make_toplevel(store.layout.store, PI, "25.05.3", kernel_params=("console=ttyAMA0,115200",))
    n = add_generation(store.profile(PI), top)
    assert n == 3
    new_kernel = (top / "kernel").read_bytes()
    assert new_kernel != store.kernel_bytes(PI, 2)
    eventually(_serves(store, f"init={top}/init", new_kernel), what="generation 3 served")
    # and it is addressable under generations/3/
    assert get(store.port, PI_PREFIX + "generations/3/kernel8.img") == new_kernel


def test_profile_rollback_is_followed_within_a_second(daemon, store):
    top = make_toplevel(store.layout.store, PI, "25.05.3")
    add_generation(store.profile(PI), top)
    eventually(_serves(store, f"init={top}/init", (top / "kernel").read_bytes()), what="generation 3 served")
    repoint_profile(store.profile(PI), 2)       # nix-env -p P --rollback
    eventually(_serves(store, store.init_of(PI, 2), store.kernel_bytes(PI, 2)), what="rolled back to 2")
    repoint_profile(store.profile(PI), 1)       # nix-env -p P --switch-generation 1
    eventually(_serves(store, store.init_of(PI, 1), store.kernel_bytes(PI, 1)), what="switched to 1")
    assert status(store.config, PI)["hosts"][PI]["reason"] == "follow"


def test_removed_generation_disappears(daemon, store):
    top = make_toplevel(store.layout.store, PI, "25.05.3")
    add_generation(store.profile(PI), top, make_current=False)
    eventually(lambda: curl(store.port, PI_PREFIX + "generations/3/cmdline.txt").ok, what="generation 3 listed")
    os.unlink(store.link(PI, 3))                # nix-env --delete-generations 3
    eventually(lambda: curl(store.port, PI_PREFIX + "generations/3/cmdline.txt").rc == CURL_NOT_FOUND,
               what="generations/3/ gone (TFTP error 1)")
    assert curl(store.port, PI_PREFIX + "generations/3/kernel8.img").rc == CURL_NOT_FOUND
    # the rest is untouched
    assert get(store.port, PI_PREFIX + "generations/1/kernel8.img") == store.kernel_bytes(PI, 1)
    assert get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 2)


def test_broken_links_are_listed_invalid_and_valid_ones_keep_being_served(daemon, store):
    profiles, st = store.layout.profiles, store.layout.store
    # 3: half-made: the toplevel directory exists but its copy never finished
    half = st / "0123456789abcdfghijklmnpqrsvwxyz-nixos-system-pi-desktop-25.05.3"
    half.mkdir()
    (half / "nixos-version").write_text("25.05.3")
    os.symlink(half, profiles / f"{PI}-3-link")
    # 4: dangling: the store path is gone
    os.symlink(st / "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-nixos-system-pi-desktop-gone", profiles / f"{PI}-4-link")
    # 5: a symlink loop
    os.symlink(f"{PI}-5-link", profiles / f"{PI}-5-link")
    # 6: points at a toplevel outside the store
    outside = make_toplevel(store.layout.root / "elsewhere", PI, "25.05.6")
    os.symlink(outside, profiles / f"{PI}-6-link")
    repoint_profile(store.profile(PI), 5)       # the profile itself now points at the loop

    def listed():
        gens = json.loads(cli_ok(store.config, "generations", PI, "--json"))
        return gens if {3, 4, 5, 6} <= {g["number"] for g in gens["generations"] if not g["valid"]} else None

    gens, _ = eventually(listed, what="broken generations listed invalid")
    problems = {g["number"]: " ".join(g["problems"]) for g in gens["generations"]}
    assert "kernel" in problems[3]
    assert "dangling" in problems[4]
    assert "loop" in problems[5]
    assert "outside" in problems[6]
    assert gens["served"] == 2
    # The daemon keeps serving the newest valid generation, and still lists only valid ones in its tree.
    eventually(lambda: curl(store.port, PI_PREFIX + "generations/5/kernel8.img").rc == CURL_NOT_FOUND
               and get(store.port, PI_PREFIX + "kernel8.img") == store.kernel_bytes(PI, 2),
               what="still serving generation 2")
    for n in (3, 4, 6):
        assert curl(store.port, PI_PREFIX + f"generations/{n}/kernel8.img").rc == CURL_NOT_FOUND
    assert get(store.port, PI_PREFIX + "cmdline.txt").startswith(store.init_of(PI, 2).encode())
    st_json = status(store.config, PI)["hosts"][PI]
    assert st_json["served"] == 2 and sorted(st_json["invalid_generations"]) == [3, 4, 5, 6]
    assert "invalid" in st_json["note"] or "missing" in st_json["note"]
    assert daemon.alive()
    # repairing the profile is followed again
    repoint_profile(store.profile(PI), 1)
    eventually(_serves(store, store.init_of(PI, 1), store.kernel_bytes(PI, 1)), what="profile repaired")
