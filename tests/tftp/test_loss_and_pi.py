"""Lossy links and the Raspberry Pi 4 bootloader's traffic pattern."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import tftpy

from peers.pi_bootloader import PI_MISSING_PROBES, Pi4Bootloader, fetch, probe_tsize

from .helpers import require_binary, serving
from .lossy_proxy import Impairment, LossyProxy

PREFIX = "dc-a6-32-01-02-03/"


@pytest.fixture(scope="module")
def pi_tree() -> dict[str, bytes]:
    return {
        PREFIX + "start4.elf": os.urandom(2_300_000),
        PREFIX + "fixup4.dat": os.urandom(5_400),
        PREFIX + "config.txt": b"arm_64bit=1\nkernel=kernel8.img\ninitramfs initrd followkernel\nenable_uart=1\n",
        PREFIX + "cmdline.txt": b"init=/nix/store/abc-nixos-system/init console=ttyS0 ip=dhcp\n",
        PREFIX + "kernel8.img": os.urandom(8_000_000),
        PREFIX + "initrd": os.urandom(12_000_000),
        PREFIX + "bcm2711-rpi-4-b.dtb": os.urandom(52_000),
    }


def test_pi4_bootloader_boot_sequence(pi_tree):
    with serving(pi_tree) as s:
        pi = Pi4Bootloader(s.address, prefix=PREFIX)
        started = time.monotonic()
        result = pi.boot(files=("start4.elf", "config.txt", "fixup4.dat", "bcm2711-rpi-4-b.dtb",
                                "cmdline.txt", "kernel8.img", "initrd"))
        for name, data in result.files.items():
            assert data == pi_tree[PREFIX + name], name
            assert result.durations[name] < 30, name
        assert result.tsize["start4.elf"] == len(pi_tree[PREFIX + "start4.elf"])
        assert result.missing == list(PI_MISSING_PROBES)
        assert time.monotonic() - started < 60
        records = s.wait_records(1 + len(PI_MISSING_PROBES) + 2 + 6)
        by_outcome: dict[str, list[str]] = {}
        for r in records:
            by_outcome.setdefault(r.outcome, []).append(r.path.removeprefix(PREFIX))
        assert by_outcome["early-terminate"] == ["start4.elf"]
        assert sorted(by_outcome["not-found"]) == sorted(PI_MISSING_PROBES)
        assert len(by_outcome["complete"]) == 8      # start4.elf twice (parallel) + 6 files
        assert set(by_outcome) == {"early-terminate", "not-found", "complete"}
        stats = s.server.read_stats()
        assert stats.transfers_early_terminated == 1 and stats.transfers_aborted == 0
        assert stats.errors_sent == {1: len(PI_MISSING_PROBES)}


def test_many_missing_files_are_answered_fast(pi_tree):
    with serving(pi_tree) as s:
        started = time.monotonic()
        for i in range(300):
            with pytest.raises(Exception) as info:
                fetch(s.address, f"{PREFIX}missing-{i}.bin", total_timeout=5)
            assert getattr(info.value, "code", None) == 1
        # Each answered at once: one the client had to repeat would cost its 1 s retransmission
        # timeout, 300 s in all; 0.2 s each leaves a loaded machine room.
        assert time.monotonic() - started < 60
        assert s.server.read_stats().errors_sent == {1: 300}


def test_parallel_tsize_probes_and_downloads_of_one_file(pi_tree):
    with serving(pi_tree) as s:
        pi = Pi4Bootloader(s.address, prefix=PREFIX)
        assert probe_tsize(s.address, PREFIX + "kernel8.img") == len(pi_tree[PREFIX + "kernel8.img"])
        results = pi.get_parallel("kernel8.img", 4)
        assert all(r.data == pi_tree[PREFIX + "kernel8.img"] for r in results)
        assert len({r.server_tid for r in results}) == 4


@pytest.fixture
def lossy_server():
    data = os.urandom(100_000)
    with serving({"f.bin": data, "small.bin": data[:30_000]}, timeout=1.0, min_timeout=0.05) as s:
        with LossyProxy(s.address, Impairment(drop=0.10, duplicate=0.05, reorder=0.05), seed=7) as proxy:
            yield proxy, data, s


def test_raw_client_through_lossy_proxy(lossy_server):
    proxy, data, s = lossy_server
    for blksize, windowsize in ((1468, None), (1024, 8)):
        got = fetch(proxy.address, "f.bin", blksize=blksize, windowsize=windowsize, tsize=True,
                    timeout=0.3, total_timeout=60)
        assert got.data == data
    assert proxy.counts["dropped"] > 5 and proxy.counts["duplicated"] > 2


def test_tftpy_through_lossy_proxy(lossy_server, tmp_path):
    proxy, data, s = lossy_server
    client = tftpy.TftpClient(*proxy.address, options={"blksize": 1468})
    client.download("f.bin", str(tmp_path / "out"), timeout=1, retries=20)
    assert (tmp_path / "out").read_bytes() == data


def test_curl_through_lossy_proxy(lossy_server, tmp_path):
    curl = require_binary("curl")
    proxy, data, s = lossy_server
    out = tmp_path / "out"
    # --connect-timeout 1 makes curl send timeout=1 (otherwise it asks for longer
    # retransmission waits than a test should spend on 10 % loss); a negotiated
    # timeout is used as is, so every loss costs a second: keep the file small.
    result = subprocess.run([curl, "-sS", "--max-time", "60", "--connect-timeout", "1",
                             "--tftp-blksize", "1024", "-o", str(out),
                             f"tftp://127.0.0.1:{proxy.address[1]}/small.bin"], capture_output=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data[:30_000]
