"""Real TFTP clients against the server: byte-identical downloads.

Peers: curl, tftp-hpa's tftp, atftp (windowsize) and tftpy's client.  They
must be installed (apt-get install -y curl tftp-hpa atftp); under CI=true a
missing binary fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import tftpy

from helpers import eventually

from .helpers import require_binary, serving

BLKSIZES = [512, 1024, 1468, 8192]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("tree")
    files = {
        "kernel.img": os.urandom(1_500_000 + 123),
        "exact.bin": os.urandom(8192 * 20),
        "empty": b"",
        "notes.txt": b"first line\nsecond line\r\nthird\n" * 200,
    }
    mapping: dict[str, object] = {}
    for name, data in files.items():
        (root / name).write_bytes(data)
        mapping[name] = str(root / name)         # served as FileContent (pread)
    return {"root": root, "files": files, "mapping": mapping}


@pytest.fixture(scope="module", params=[0, 2], ids=["one-process", "2-workers"])
def server(tree, request):
    """The same clients against the in-process loop and against transfer workers."""
    with serving(tree["mapping"], workers=request.param) as s:
        yield s


def run(cmd: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout)
    assert result.returncode == 0, (cmd, result.stdout[-2000:], result.stderr[-2000:])
    return result


# (curl 7.88 fails on empty files with any server, tftpd-hpa included: "getpeername() failed")
@pytest.mark.parametrize("name", ["kernel.img", "exact.bin"])
@pytest.mark.parametrize("blksize", BLKSIZES)
def test_curl(server, tree, tmp_path, name, blksize):
    curl = require_binary("curl")
    out = tmp_path / "out"
    run([curl, "-sS", "--max-time", "30", "--tftp-blksize", str(blksize), "-o", str(out),
         f"tftp://127.0.0.1:{server.port}/{name}"], tmp_path)
    assert out.read_bytes() == tree["files"][name]


@pytest.mark.parametrize("name", ["kernel.img", "empty"])
def test_tftp_hpa_command_line(server, tree, tmp_path, name):
    tftp = require_binary("tftp")
    run([tftp, "127.0.0.1", str(server.port), "-m", "binary", "-c", "get", name, "out"], tmp_path)
    assert (tmp_path / "out").read_bytes() == tree["files"][name]


def test_tftp_hpa_interactive_verbose(server, tree, tmp_path):
    tftp = require_binary("tftp")
    commands = "verbose\nmode octet\nget exact.bin out\nquit\n"
    result = subprocess.run([tftp, "127.0.0.1", str(server.port)], input=commands.encode(), cwd=tmp_path,
                            capture_output=True, timeout=60)
    assert b"Received" in result.stdout, result.stdout
    assert (tmp_path / "out").read_bytes() == tree["files"]["exact.bin"]


def test_tftp_hpa_netascii(server, tree, tmp_path):
    """ascii mode: the client turns our CR LF / CR NUL back into the original text."""
    tftp = require_binary("tftp")
    run([tftp, "127.0.0.1", str(server.port), "-m", "ascii", "-c", "get", "notes.txt", "out"], tmp_path)
    assert (tmp_path / "out").read_bytes() == tree["files"]["notes.txt"]


@pytest.mark.parametrize("blksize, windowsize", [(512, 1), (1468, 8), (1024, 16), (8192, 32), (1468, 64)])
def test_atftp_windowsize(server, tree, tmp_path, blksize, windowsize):
    atftp = require_binary("atftp")
    run([atftp, "--option", f"blksize {blksize}", "--option", f"windowsize {windowsize}",
         "-g", "-r", "kernel.img", "-l", "out", "127.0.0.1", str(server.port)], tmp_path)
    assert (tmp_path / "out").read_bytes() == tree["files"]["kernel.img"]
    # the record follows the client's last ACK
    matching, _ = eventually(lambda: [r for r in server.records if r.windowsize == windowsize
                                      and r.blksize == blksize], what="the transfer's record")
    assert matching[-1].outcome == "complete"


@pytest.mark.parametrize("blksize", BLKSIZES)
def test_tftpy_client(server, tree, tmp_path, blksize):
    out = tmp_path / "out"
    client = tftpy.TftpClient("127.0.0.1", server.port, options={"blksize": blksize})
    client.download("exact.bin", str(out), timeout=5)
    assert out.read_bytes() == tree["files"]["exact.bin"]


@pytest.mark.parametrize("name", ["kernel.img", "empty"])
def test_tftpy_tsize(server, tree, tmp_path, name):
    """RFC 2349: the OACK's tsize is the file's size, as the client reports it."""
    out = tmp_path / "out"
    client = tftpy.TftpClient("127.0.0.1", server.port, options={"tsize": 0})
    client.download(name, str(out), timeout=5)
    assert out.read_bytes() == tree["files"][name]
    assert int(client.context.options["tsize"]) == len(tree["files"][name])


def test_curl_verbose_reports_tsize(server, tree, tmp_path):
    """curl asks for tsize and prints the size the OACK carried."""
    curl = require_binary("curl")
    out = tmp_path / "out"
    result = run([curl, "-v", "--max-time", "30", "-o", str(out),
                  f"tftp://127.0.0.1:{server.port}/kernel.img"], tmp_path)
    assert out.read_bytes() == tree["files"]["kernel.img"]
    assert f"got option=(tsize) value=({len(tree['files']['kernel.img'])})".encode() in result.stderr, \
        result.stderr[-2000:]


def test_rollover_past_65535_blocks(tmp_path):
    """34 MB at blksize 512 = 66407 blocks: block numbers wrap 65535 → 0."""
    curl = require_binary("curl")
    size = 512 * 66400 + 77
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        block = os.urandom(1 << 20)
        written = 0
        while written < size:                      # random but cheap: a repeated 1 MiB block,
            chunk = block[: min(len(block), size - written)]   # shifted so blocks differ
            f.write(chunk[written % 4093:] + chunk[: written % 4093])
            written += len(chunk)
    with serving({"big.bin": str(source)}) as s:
        out = tmp_path / "out"
        run([curl, "-sS", "--max-time", "60", "--tftp-blksize", "512", "-o", str(out),
             f"tftp://127.0.0.1:{s.port}/big.bin"], tmp_path, timeout=90)
        assert out.stat().st_size == size
        assert out.read_bytes() == source.read_bytes()
        record = s.wait_records(1)[-1]
        assert record.outcome == "complete" and record.bytes_sent == size
