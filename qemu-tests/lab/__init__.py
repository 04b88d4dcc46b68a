"""The VM lab: a Debian kernel + busybox/Python initramfs with real kernel LIO under QEMU TCG.

- ``build_server_image(cache_dir) -> ServerImage`` (kernel, initrd), cached by input hash;
- ``build_pydeps(cache_dir) -> Path``: the project's pure-Python dependencies for the guest;
- ``ServerVM``: start, wait for the agent, ``run(cmd) -> Result``, shares, port forwards,
  extra QEMU arguments; always killed (by PID) on exit;
- ``project_vm(...)``: a ``ServerVM`` with the repository and the dependencies mounted and
  ``PYTHONPATH`` set, ready to run ``python3 -m appliance...``.
"""

from .image import ServerImage, build_pydeps, build_server_image, default_cache_dir, package_versions
from .vm import CommandFailed, Result, ServerVM, Share, VMError
from .project import REPO, project_vm

__all__ = [
    "REPO",
    "CommandFailed",
    "Result",
    "ServerImage",
    "ServerVM",
    "Share",
    "VMError",
    "build_pydeps",
    "build_server_image",
    "default_cache_dir",
    "package_versions",
    "project_vm",
]

from .initiator import Chap, Initiator, ToolResult  # noqa: E402

__all__ += ["Chap", "Initiator", "ToolResult"]
