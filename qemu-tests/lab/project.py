"""A ``ServerVM`` set up to run this project: repo + dependencies shared, PYTHONPATH set."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .image import REPO, build_pydeps, build_server_image, default_cache_dir
from .vm import ServerVM, Share

__all__ = ["GUEST_DEPS", "GUEST_REPO", "REPO", "project_vm"]

GUEST_REPO = "/lab/repo"
GUEST_DEPS = "/lab/pydeps"


def project_vm(cache_dir: Path | None = None, repo: Path = REPO, hostfwd: Sequence[tuple[int, int]] = (),
               shares: Sequence[Share] = (), **kw) -> ServerVM:
    """The repository (read-only) at /lab/repo, the pip-installed dependencies at
    /lab/pydeps; commands get ``PYTHONPATH`` for both and no bytecode writes."""
    cache = cache_dir or default_cache_dir()
    image = build_server_image(cache)
    deps = build_pydeps(cache)
    env = {"PYTHONPATH": f"{GUEST_REPO}:{GUEST_DEPS}", "PYTHONDONTWRITEBYTECODE": "1",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    env.update(kw.pop("env", {}))
    return ServerVM(image, shares=[Share(repo, GUEST_REPO, readonly=True), Share(deps, GUEST_DEPS, readonly=True),
                                   *shares], hostfwd=hostfwd, env=env, **kw)
