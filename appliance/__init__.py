"""netboot-appliance: a boot server serving NixOS generations over TFTP and root disks over iSCSI (LIO)."""

__version__ = "0.1.0"
