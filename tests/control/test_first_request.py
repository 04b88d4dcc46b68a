"""The first request after ``netboot serve`` reports ready is answered at once.

Deciding a request needs netlink (is the client on a link, what is its MAC).
Loading the netlink library is slow on a slow machine: on a TCG-emulated
server compiling pyroute2 took about 20 s, longer than iPXE's whole TFTP
retransmission budget (about 16 s), so the first client after a start timed
out while later ones were served.  Here the import is made slow on purpose
(a ``sitecustomize`` delays ``import pyroute2``) and a real client with a
short budget (curl) asks right after READY=1.
"""

from __future__ import annotations

import os

from .control_harness import PI_PREFIX, curl

IMPORT_SECONDS = 8.0       # how long loading the netlink library takes here
CLIENT_BUDGET = 4.0        # curl's whole budget for the file: less than the import

SLOW_NETLINK_IMPORT = """
import sys, time

class SlowNetlinkImport:
    # Delays the first import of pyroute2, as compiling it does on a slow machine.
    def find_spec(self, name, path=None, target=None):
        if name == "pyroute2":
            sys.meta_path.remove(self)
            time.sleep(%r)
        return None

sys.meta_path.insert(0, SlowNetlinkImport())
"""


def test_first_request_after_ready_does_not_wait_for_the_netlink_library(store, make_daemon, tmp_path):
    slow = tmp_path / "slow-import"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_NETLINK_IMPORT % IMPORT_SECONDS)
    path = os.pathsep.join(filter(None, [str(slow), os.environ.get("PYTHONPATH")]))
    daemon = make_daemon(store.config, env={"PYTHONPATH": path}).start(timeout=IMPORT_SECONDS + 30)
    first = curl(store.port, PI_PREFIX + "config.txt", timeout=CLIENT_BUDGET)
    assert first.ok, (f"the first request after READY=1 was not answered within {CLIENT_BUDGET} s "
                      f"(curl exit {first.rc}: {first.err}); log:\n{daemon.log()}")
    assert b"kernel" in first.data
