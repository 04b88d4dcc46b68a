"""Opening served files: containment at open time, FIFOs, file-descriptor exhaustion."""

from __future__ import annotations

import os
import resource

import pytest

from appliance.content import AccessDenied, DirectoryProvider, FileContent, FileNotFound, OutOfResources
from appliance.content.provider import open_resolved

CLIENT = ("127.0.0.1", 40000)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "file").write_bytes(b"inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"outside")
    return root, outside


def read_all(content) -> bytes:
    try:
        return content.read_at(0, content.size)
    finally:
        content.close()


def test_resolved_open_serves_the_validated_file(tree):
    root, _ = tree
    assert read_all(FileContent.resolved(os.path.realpath(root / "pkg" / "file"))) == b"inside"


def test_directory_replaced_by_a_symlink_after_validation_is_refused(tree):
    root, outside = tree
    validated = os.path.realpath(root / "pkg" / "file")
    os.rename(root / "pkg", root / "pkg.aside")
    os.symlink(outside, root / "pkg")
    with pytest.raises(AccessDenied, match="replaced"):
        FileContent.resolved(validated)


def test_file_replaced_by_a_symlink_after_validation_is_refused(tree):
    root, outside = tree
    validated = os.path.realpath(root / "pkg" / "file")
    os.unlink(validated)
    os.symlink(outside / "file", validated)
    with pytest.raises(AccessDenied):
        FileContent.resolved(validated)


def test_directory_provider_refuses_a_swap_between_check_and_open(tree, monkeypatch):
    root, outside = tree
    provider = DirectoryProvider(root)
    assert read_all(provider.open(CLIENT, "pkg/file")) == b"inside"
    real_realpath = os.path.realpath

    def realpath_then_swap(path, *args, **kw):
        # The check sees the real directory; the swap happens right after it.
        result = real_realpath(path, *args, **kw)
        if str(path).endswith("pkg/file") and not os.path.islink(root / "pkg"):
            os.rename(root / "pkg", root / "pkg.aside")
            os.symlink(outside, root / "pkg")
        return result

    monkeypatch.setattr(os.path, "realpath", realpath_then_swap)
    with pytest.raises(AccessDenied):
        provider.open(CLIENT, "pkg/file")


def test_relative_or_dotdot_paths_are_not_resolved_paths(tree):
    for bad in ("pkg/file", "/a/../b"):
        with pytest.raises(ValueError):
            open_resolved(bad)


def test_missing_file_and_fifo(tree):
    root, _ = tree
    with pytest.raises(FileNotFound):
        FileContent.resolved(os.path.realpath(root) + "/pkg/missing")
    os.mkfifo(root / "pkg" / "fifo")
    with pytest.raises(FileNotFound, match="not a regular file"):   # and it did not block
        FileContent(root / "pkg" / "fifo")


def test_running_out_of_file_descriptors_is_not_file_not_found(tree):
    root, _ = tree
    path = root / "pkg" / "file"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    try:
        with pytest.raises(OSError):
            for _ in range(300):
                held.append(os.dup(0))
        with pytest.raises(OutOfResources):
            FileContent(path)
        with pytest.raises(OutOfResources):
            FileContent.resolved(os.path.realpath(path))
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert read_all(FileContent(path)) == b"inside"
