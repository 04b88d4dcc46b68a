"""The public surface other packages code against: the transport-neutral content
interface (``appliance.content``) and the TFTP engine built on it."""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re

import pytest

import appliance.content as content
import appliance.tftp as tftp


def test_all_names_exist_and_are_exported():
    for package in (content, tftp):
        assert sorted(package.__all__) == sorted(set(package.__all__))
        for name in package.__all__:
            assert hasattr(package, name), name
    for name in ("Content", "ContentProvider", "TransferRecord", "FileContent", "BytesContent",
                 "DictProvider", "FileNotFound", "AccessDenied", "RequestRefused", "clean_path"):
        assert name in content.__all__
    for name in ("TftpServer", "MalformedPacket"):
        assert name in tftp.__all__


def test_transfer_record_fields():
    fields = [f.name for f in dataclasses.fields(content.TransferRecord)]
    assert fields == ["client", "path", "meta", "bytes_sent", "size", "duration", "outcome",
                      "blksize", "windowsize", "transport", "retransmissions"]
    assert content.TransferRecord.__dataclass_params__.frozen
    refused = content.TransferRecord(client=("10.0.0.5", 80), path="a", outcome="not-found")
    assert (refused.transport, refused.meta, refused.bytes_sent, refused.size) == ("tftp", {}, 0, 0)
    with pytest.raises(TypeError):   # built by keyword only: eleven fields are too many to line up
        content.TransferRecord(("10.0.0.5", 80), "a", {}, 0, 0, 0.0, "complete")


def test_content_helpers_match_the_protocol(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    file_content = content.FileContent(str(path), {"host": "pi"})
    try:
        assert isinstance(file_content, content.Content)
        assert (file_content.size, file_content.read_at(3, 4), file_content.meta) == (10, b"3456", {"host": "pi"})
    finally:
        file_content.close()
    assert isinstance(content.BytesContent(b"x"), content.Content)
    assert isinstance(content.DictProvider({}), content.ContentProvider)
    assert list(inspect.signature(content.ContentProvider.open).parameters) == ["self", "client", "path"]


def _imports_of(package) -> str:
    return "\n".join(p.read_text() for p in pathlib.Path(package.__file__).parent.glob("*.py"))


def test_tftp_package_does_not_import_boot_code():
    text = _imports_of(tftp)
    assert not re.search(r"from \.\.(nix|boot|config|cli|iscsi|control)|import appliance\.(nix|boot|config|control)",
                         text)


def test_content_package_depends_on_no_transport_or_boot_code():
    text = _imports_of(content)
    assert not re.search(r"from \.\.\w|import appliance\.", text)
