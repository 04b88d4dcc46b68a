"""Run a command the way systemd starts netboot-appliance.service: as root with
``CapabilityBoundingSet=`` reduced to the given capabilities and
``NoNewPrivileges=yes``.

    python3 unit_sandbox.py CAP_NET_BIND_SERVICE[,CAP_SYS_ADMIN,…] COMMAND [ARG...]

The same two prctl(2) calls systemd makes (PR_CAPBSET_DROP for every other
capability, PR_SET_NO_NEW_PRIVS), then exec: for uid 0 the kernel sets the new
permitted and effective sets to the bounding set (capabilities(7), "Capabilities
and execution of programs by root"), so the command holds exactly these.
"""

import ctypes
import os
import sys

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
# linux/capability.h
CAPABILITIES = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21}


def main() -> None:
    keep = {CAPABILITIES[name] for name in sys.argv[1].split(",") if name}
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        if cap not in keep and libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {cap}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    os.execvp(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
