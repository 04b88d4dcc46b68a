#!/usr/bin/env bash
# Install everything netboot-appliance and its test suite need on Debian 12.
# Idempotent and quiet; run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  python3 python3-pip python3-venv
  curl tftp-hpa atftp                      # real TFTP clients
  qemu-system-x86 qemu-system-arm qemu-utils qemu-block-extra ipxe-qemu u-boot-qemu u-boot-tools
  binutils                                 # readelf: shared-library closure of VM images
  busybox-static cpio kmod e2fsprogs       # VM images
  libiscsi-bin open-iscsi                  # real iSCSI initiators
  dnsmasq-base iproute2                    # DHCP for the end-to-end lab
  ipxe ovmf                                # iPXE network boot programs to chainload; UEFI firmware for QEMU
  nix-bin                                  # nix-instantiate, nix flake: evaluates nixos/ and flake.nix
  shellcheck                               # the generated scripts, as writeShellApplication checks them
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  for i in 1 2 3 4 5 6; do
    if $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq && \
       $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
      break
    fi
    echo "apt busy or failed, retrying ($i)..." >&2; sleep 10
  done
fi

PY=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ] && ! "$PY" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' 2>/dev/null; then
  # A project venv keeps system Python untouched.
  if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
  PY=.venv/bin/python
fi
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
echo "$PY"
