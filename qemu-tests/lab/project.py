"""A ``ServerVM`` set up to run this project: repo + dependencies shared, PYTHONPATH set."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .image import REPO, build_pydeps, build_server_image, compile_python, default_cache_dir
from .vm import ServerVM, Share

__all__ = ["GUEST_DEPS", "GUEST_REPO", "REPO", "code_shares", "compile_project", "guest_env", "project_vm"]

GUEST_REPO = "/lab/repo"
GUEST_DEPS = "/lab/pydeps"
# What the VM runs from the repository share.
PROJECT_PACKAGES = ("appliance", "bench")


def compile_project(repo: Path = REPO) -> None:
    """Byte-compile the project into the checkout's (git-ignored) ``__pycache__`` before the
    VM starts: the share is read-only, and compiling at each start costs seconds under TCG.

    Timestamp-based, as pip and Debian install packages: the guest checks a .pyc against
    its source's mtime and size (9p passes them through), where ``checked-hash`` made it
    read and hash every source file as well, which doubled the files read over 9p at every
    start under TCG.  A stale .pyc is still never used (on the host either)."""
    compile_python([repo / name for name in PROJECT_PACKAGES], invalidation="timestamp")


def code_shares(repo: Path, deps: Path) -> list[Share]:
    """The repository and the dependencies, read-only and cached in the guest."""
    return [Share(repo, GUEST_REPO, readonly=True, cached=True), Share(deps, GUEST_DEPS, readonly=True, cached=True)]


def guest_env() -> dict[str, str]:
    """Environment for the project's commands in the VM: both shares on ``PYTHONPATH``,
    no bytecode writes (read-only shares)."""
    return {"PYTHONPATH": f"{GUEST_REPO}:{GUEST_DEPS}", "PYTHONDONTWRITEBYTECODE": "1",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}


def project_vm(cache_dir: Path | None = None, repo: Path = REPO, hostfwd: Sequence[tuple[int, int]] = (),
               shares: Sequence[Share] = (), **kw) -> ServerVM:
    """The repository (read-only, byte-compiled) at /lab/repo, the pip-installed
    dependencies at /lab/pydeps; commands get ``guest_env()``."""
    cache = cache_dir or default_cache_dir()
    image = build_server_image(cache)
    deps = build_pydeps(cache)
    compile_project(repo)
    env = guest_env()
    env.update(kw.pop("env", {}))
    return ServerVM(image, shares=[*code_shares(repo, deps), *shares], hostfwd=hostfwd, env=env, **kw)
