"""A Raspberry Pi 5 netboots from ``netboot serve`` over real TFTP (the bootloader emulator).

QEMU has no BCM2712 machine, so the Pi 5 is proven by the EEPROM
bootloader's request sequence (``tests/peers/pi_bootloader.py``) against the
real daemon: the files it reads from ``config.txt`` must be there and be the
generation's.
"""

from __future__ import annotations

import pytest

from peers.pi_bootloader import PI5_MISSING_PROBES, Pi4Bootloader, Pi5Bootloader, TftpFailure

PI5 = "pi5"
PI5_PREFIX = "2c-cf-67-01-02-03/"


def test_pi5_boots_the_current_generation(store, daemon):
    pi = Pi5Bootloader(("127.0.0.1", store.port), prefix=PI5_PREFIX)
    result = pi.boot()
    top = store.toplevel(PI5, 2)
    assert result.missing == list(PI5_MISSING_PROBES)
    config = result.files["config.txt"].decode()
    assert "kernel=kernel_2712.img" in config.splitlines()
    assert result.tsize["config.txt"] == len(result.files["config.txt"])
    assert result.files["kernel_2712.img"] == store.kernel_bytes(PI5, 2)
    assert result.files["initrd"] == (top / "initrd").read_bytes()
    assert result.files["cmdline.txt"].decode().startswith(store.init_of(PI5, 2) + " ")
    assert result.files["bcm2712-rpi-5-b.dtb"] == (top / "dtbs" / "broadcom" / "bcm2712-rpi-5-b.dtb").read_bytes()
    assert result.files["overlays/vc4-kms-v3d.dtbo"] == (store.layout.firmware / "overlays" / "vc4-kms-v3d.dtbo").read_bytes()


def test_pi5_variants_get_their_device_trees(store, daemon):
    for board in ("bcm2712-rpi-500.dtb", "bcm2712-rpi-cm5-cm5io.dtb"):
        result = Pi5Bootloader(("127.0.0.1", store.port), prefix=PI5_PREFIX).boot(board_dtb=board)
        assert result.files[board]


def test_a_pi5_has_no_firmware_stage_to_fetch(store, daemon):
    with pytest.raises(TftpFailure) as exc:
        Pi4Bootloader(("127.0.0.1", store.port), prefix=PI5_PREFIX).boot()
    assert exc.value.code == 1      # start4.elf: file not found, at once
