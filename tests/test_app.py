"""The application layer: every operation returns data; CLI and shell render it the same way."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from appliance.app import App, Report, Table, render_json, render_text
from appliance.errors import GenerationError

REPO = Path(__file__).resolve().parents[1]


def test_operations_return_reports_that_json_and_text_agree_on(demo_layout):
    app = App.load(demo_layout.config)
    gens = app.generations("pi-desktop")
    assert isinstance(gens, Report) and isinstance(gens.text[0], Table)
    assert [g["number"] for g in gens.data["generations"]] == [2, 1]
    assert [row[0] for row in gens.text[0].rows] == [2, 1]
    assert json.loads(render_json(gens))["served"] == 2

    changed = app.pin("pi-desktop", 1)
    assert changed.data == {"host": "pi-desktop", "served": 1, "reason": "pin"}
    assert render_text(changed) == "pi-desktop: serving generation 1 (pin)"
    assert app.status("pi-desktop").data["hosts"]["pi-desktop"]["pin"] == 1
    assert app.unpin("pi-desktop").data["served"] == 2
    with pytest.raises(GenerationError):
        app.pin("pi-desktop", 9)

    tree = app.tree("pi5")
    assert "2c-cf-67-01-02-03/kernel_2712.img" in tree.data["files"]
    assert tree.text[0].startswith("# pi5: generation 2 (follow)")


def test_the_shell_prints_what_the_cli_prints(demo_layout, netboot_cli, tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    cli = netboot_cli("-c", demo_layout.config, "tree", "arm-board")
    shell = netboot_cli("-c", demo_layout.config, "shell", "cd /hosts/arm-board", "tree", env=env)
    assert cli.returncode == 0 and shell.returncode == 0, cli.stderr + shell.stderr
    assert cli.stdout.strip() in shell.stdout


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"{'.' * node.level}{node.module or ''}:{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


def test_front_ends_import_no_private_names_and_not_each_other():
    app_dir = REPO / "appliance"
    shell = _imports(app_dir / "shell" / "__init__.py")
    commands = _imports(app_dir / "cli" / "commands.py")
    assert not any(i.startswith("..cli") for i in shell), shell
    assert not any(i.startswith("..shell:") and "run_shell" not in i for i in commands)
    for name in shell + commands:
        assert ":_" not in name, name                # e.g. cli.commands:_host_snapshot
    assert "argparse" not in (app_dir / "shell" / "__init__.py").read_text()
    for path in (app_dir / "app").glob("*.py"):
        assert not any(i.startswith(("..cli", "..shell")) for i in _imports(path)), path
