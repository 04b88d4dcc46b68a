"""A configuration file that is not one fails cleanly: exit 2, one line, no traceback.

Deep nesting (the TOML parser recurses, so 50,000 ``[`` raise RecursionError),
huge files and binary garbage are refused by ``check`` and ``serve`` alike;
``serve`` refuses a configuration without hosts; a missing CHAP secret file is
only a warning while iSCSI is off.
"""

from __future__ import annotations

import pytest

from appliance.config import load_config
from appliance.config.load import MAX_CONFIG_BYTES, config_warnings
from appliance.errors import ConfigError

from test_config import write_valid_tree

HOSTLESS = b'[server]\nstate_dir = "/tmp/x"\n'


def bad_files() -> dict[str, tuple[bytes, str]]:
    return {
        "nested-arrays": (b"x = " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "nested too deeply"),
        "nested-inline-tables": (b"x = " + b"{a = " * 5_000 + b"1" + b"}" * 5_000 + b"\n", "nested too deeply"),
        "nested-in-a-host": (b'[hosts.pi]\ncmdline = ' + b"[" * 20_000 + b"\n", "nested too deeply"),
        "huge": (b"# " + b"x" * (MAX_CONFIG_BYTES + 10) + b"\n", "larger than"),
        "binary": (bytes(range(256)) * 64, "not"),
        "nul-bytes": (b'[server]\nstate_dir = "/tmp/x"\n\x00\x00\x00', "not valid TOML"),
    }


@pytest.mark.parametrize("kind", sorted(bad_files()))
def test_check_and_serve_refuse_a_file_that_is_not_a_config(tmp_path, netboot_cli, kind):
    content, words = bad_files()[kind]
    path = tmp_path / "appliance.toml"
    path.write_bytes(content)
    for command in (("check",), ("serve",)):
        out = netboot_cli("-c", path, *command, timeout=30)
        assert out.returncode == 2, (command, out.returncode, out.stderr[-2000:])
        assert "Traceback" not in out.stderr
        assert words in out.stderr and str(path) in out.stderr
        lines = out.stderr.strip().splitlines()
        # check prints a header plus its one problem; serve prints exactly one line.
        assert len(lines) == (2 if command == ("check",) else 1), lines
        assert all(len(line) < 500 for line in lines)


def test_load_config_raises_config_error_for_deep_nesting(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_bytes(b"x = " + b"[" * 50_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)


def test_serve_refuses_a_config_without_hosts(tmp_path, netboot_cli):
    path = tmp_path / "appliance.toml"
    path.write_bytes(HOSTLESS.replace(b"/tmp/x", str(tmp_path / "state").encode()))
    out = netboot_cli("-c", path, "serve", timeout=30)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no hosts" in lines[0] and "[hosts." in lines[0], lines
    empty = tmp_path / "empty.toml"
    empty.write_bytes(b"")
    out = netboot_cli("-c", empty, "serve", timeout=30)
    assert out.returncode == 2 and "no hosts" in out.stderr
    # check says the same as a warning: the file itself is valid.
    out = netboot_cli("-c", path, "check", "--no-files")
    assert out.returncode == 0 and "warning:" in out.stderr and "no hosts" in out.stderr


def test_missing_secret_file_is_a_warning_while_iscsi_is_off(tmp_path, netboot_cli):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text.replace("enable = true", "enable = false"))
    (tmp_path / "secrets" / "chap").unlink()
    config = load_config(path)                     # not an error
    warnings = config_warnings(config)
    assert [w.path for w in warnings] == ["hosts.pi-desktop.iscsi.chap.secret_file"]
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 0, out.stderr
    assert "warning: hosts.pi-desktop.iscsi.chap.secret_file:" in out.stderr
    assert "iSCSI is disabled" in out.stderr


def test_a_chap_secret_file_other_users_can_read_is_a_warning(tmp_path, netboot_cli):
    path, text = write_valid_tree(tmp_path)
    path.write_text(text)
    secret = tmp_path / "secrets" / "chap"
    secret.chmod(0o644)
    warnings = config_warnings(load_config(path))
    assert [w.path for w in warnings] == ["hosts.pi-desktop.iscsi.chap.secret_file"]
    assert "0644" in warnings[0].message and "chmod 600" in warnings[0].message
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 0 and "warning: hosts.pi-desktop.iscsi.chap.secret_file:" in out.stderr
    secret.chmod(0o600)
    assert config_warnings(load_config(path)) == []
    secret.chmod(0o640)     # a group (e.g. keys on NixOS) is someone else too
    assert [w.path for w in config_warnings(load_config(path))] == ["hosts.pi-desktop.iscsi.chap.secret_file"]


def test_a_deep_value_the_parser_accepts_is_echoed_briefly(tmp_path, netboot_cli):
    path = tmp_path / "appliance.toml"
    path.write_text("[server]\nstate_dir = " + "[" * 300 + "1" + "]" * 300 + "\n")
    out = netboot_cli("-c", path, "check", "--no-files")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "server.state_dir" in out.stderr
    assert all(len(line) < 500 for line in out.stderr.splitlines())


def test_a_proxy_dhcp_interface_this_machine_lacks_is_a_warning(tmp_path, netboot_cli):
    """dhcp.interface = "eht0": check says so (a warning: a bridge or USB NIC may appear later)."""
    path, text = write_valid_tree(tmp_path)
    path.write_text(text + '\n[dhcp]\nenable = true\ninterface = "eht0"\nserver_address = "10.0.4.3"\n')
    out = netboot_cli("-c", path, "check")
    assert out.returncode == 0, out.stderr
    assert "warning: dhcp.interface: this machine has no network interface 'eht0'" in out.stderr, out.stderr
    path.write_text(text + '\n[dhcp]\nenable = true\ninterface = "lo"\nserver_address = "10.0.4.3"\n')
    assert "dhcp.interface" not in netboot_cli("-c", path, "check").stderr
