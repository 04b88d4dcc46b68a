"""One function per ``netboot`` command: parse nothing, compute nothing — ask the
application layer (``appliance.app``) and render its report."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ..app import App, check as check_config, doctor as diagnose, emit
from ..app.report import writing
from ..boot import Generated
from ..config import config_path_from
from ..control.resolver import kernel_paths
from ..control.snapshot import HostSnapshot
from ..demo import build_demo
from ..errors import GenerationError, UsageError


def _app(args: argparse.Namespace, check_files: bool = True) -> App:
    return App.load(config_path_from(args.config), check_files=check_files)


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def check(args: argparse.Namespace) -> int:
    return emit(check_config(config_path_from(args.config), check_files=not args.no_files), _json(args))


def generations(args: argparse.Namespace) -> int:
    return emit(_app(args).generations(args.host), _json(args))


def tree(args: argparse.Namespace) -> int:
    return emit(_app(args).tree(args.host, args.generation), _json(args))


def cat(args: argparse.Namespace) -> int:
    source = _app(args).source(args.host, args.path, args.generation)
    out = sys.stdout.buffer
    if isinstance(source, Generated):
        with writing():
            out.write(source.data)
            out.flush()
        return 0
    try:
        f = open(source.path, "rb")
    except OSError as exc:
        raise GenerationError(f"{args.host}: cannot read {source.path}: {exc.strerror}") from exc
    with f, writing():
        while chunk := f.read(1 << 20):
            out.write(chunk)
        out.flush()
    return 0


def status(args: argparse.Namespace) -> int:
    return emit(_app(args).status(args.host), _json(args))


def pin(args: argparse.Namespace) -> int:
    return emit(_app(args).pin(args.host, args.generation), _json(args))


def unpin(args: argparse.Namespace) -> int:
    return emit(_app(args).unpin(args.host), _json(args))


def rollback(args: argparse.Namespace) -> int:
    return emit(_app(args).rollback(args.host), _json(args))


def trial(args: argparse.Namespace) -> int:
    return emit(_app(args).trial(args.host, args.generation), _json(args))


def confirm(args: argparse.Namespace) -> int:
    return emit(_app(args).confirm(args.host), _json(args))


def register(args: argparse.Namespace) -> int:
    if not args.storepath:      # Path("") would be the working directory
        raise UsageError("the store path is empty: give the toplevel to register (a /nix/store/…-nixos-system-… path)")
    return emit(_app(args).register(args.host, Path(args.storepath)), _json(args))


def state_show(args: argparse.Namespace) -> int:
    return emit(_app(args, check_files=False).state_show(), _json(args))


def state_repair(args: argparse.Namespace) -> int:
    return emit(_app(args, check_files=False).state_repair(), _json(args))


def doctor(args: argparse.Namespace) -> int:
    return emit(diagnose(config_path_from(args.config), args.host), _json(args))


def iscsi(args: argparse.Namespace) -> int:
    app = _app(args)
    if args.iscsi_action == "status":
        return emit(app.iscsi_status(), _json(args))
    operation = app.iscsi_plan if args.iscsi_action == "plan" else app.iscsi_apply
    return emit(operation(args.allow_destroy), _json(args))


# The daemon's stack and configshell are imported by the commands that use them:
# every other command starts faster without them (``serve`` is in ``serve.py``).

def demo(args: argparse.Namespace) -> int:
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="netboot-demo-"))
    layout = build_demo(root, port=args.port)
    app = App.load(layout.config)
    print(f"demo store and config in {root}")
    print(f"  config: {layout.config}")
    for name, host in app.config.hosts.items():
        snap = app.host_snapshot(name)
        print(f"\n{name} ({host.boot.name}, generation {snap.selection.number}):")
        for p in _demo_highlights(snap):
            print(f"  curl -s -o {os.path.basename(p)} tftp://127.0.0.1:{args.port}/{p}")
    print(f"\nmore: netboot -c {layout.config} tree HOST | generations HOST | pin HOST N | status")
    if args.print_only:
        return 0
    from ..control.daemon import run_daemon

    def ready() -> None:     # printed once the port is bound: the curl commands above work from now on
        print(f"\nserving TFTP on 127.0.0.1:{args.port} (Ctrl-C stops)\n", flush=True)

    return run_daemon(layout.config, on_ready=ready)


def _demo_highlights(snap: HostSnapshot) -> list[str]:
    """The files worth fetching by hand: what starts a boot, generated files, kernel, initrd."""
    kernels = kernel_paths(snap)
    top = [p for p, source in sorted(snap.tree.files.items()) if "/generations/" not in p
           and (isinstance(source, Generated) or p in kernels or p.rsplit("/", 1)[-1] == "initrd"
                or snap.host.boot.starts_boot(snap.host, p))]
    return top + sorted(kernels - set(top))[:1]


def shell(args: argparse.Namespace) -> int:
    from ..shell import run_shell

    return run_shell(_app(args), args.script)
