"""The public surface other packages code against."""

from __future__ import annotations

import dataclasses
import inspect

import appliance.tftp as tftp


def test_all_names_exist_and_are_exported():
    assert sorted(tftp.__all__) == sorted(set(tftp.__all__))
    for name in tftp.__all__:
        assert hasattr(tftp, name), name
    for name in ("Content", "ContentProvider", "TransferRecord", "FileContent", "BytesContent",
                 "DictProvider", "FileNotFound", "AccessDenied", "TftpServer", "MalformedPacket"):
        assert name in tftp.__all__


def test_transfer_record_fields():
    fields = [f.name for f in dataclasses.fields(tftp.TransferRecord)]
    assert fields == ["client", "path", "meta", "bytes_sent", "size", "duration", "outcome",
                      "blksize", "windowsize"]
    assert tftp.TransferRecord.__dataclass_params__.frozen


def test_content_helpers_match_the_protocol(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    file_content = tftp.FileContent(str(path), {"host": "pi"})
    try:
        assert isinstance(file_content, tftp.Content)
        assert (file_content.size, file_content.read_at(3, 4), file_content.meta) == (10, b"3456", {"host": "pi"})
    finally:
        file_content.close()
    assert isinstance(tftp.BytesContent(b"x"), tftp.Content)
    assert isinstance(tftp.DictProvider({}), tftp.ContentProvider)
    assert list(inspect.signature(tftp.ContentProvider.open).parameters) == ["self", "client", "path"]


def test_tftp_package_does_not_import_boot_code():
    import pathlib
    import re

    for source in pathlib.Path(tftp.__file__).parent.glob("*.py"):
        text = source.read_text()
        assert not re.search(r"from \.\.(nix|boot|config|cli|iscsi)|import appliance\.(nix|boot|config)", text), source
