"""The first request after ``netboot serve`` reports ready is answered at once, without heavy libraries.

Deciding a request needs netlink (is the client on a link, what is its MAC).
On a TCG-emulated server, importing a general netlink library (pyroute2, whose
package loads asyncio and several sub-libraries) took 10–20 s, longer than
iPXE's whole TFTP retransmission budget (about 16 s), and so did other large
libraries.  Here a ``sitecustomize`` makes each of them slow to import, as on
such a machine, and records that it was imported; a real client with a short
budget (curl) asks right after READY=1.  The daemon must answer it, and none
of those libraries may have been loaded on the way.
"""

from __future__ import annotations

import os

from .control_harness import PI_PREFIX, curl

IMPORT_SECONDS = 20.0      # how long loading each heavy library takes here
CLIENT_BUDGET = 12.0       # curl's whole budget for the file: less than one import, ample on a loaded machine
# Large libraries, and what only other commands or unconfigured listeners need.
HEAVY = ("pyroute2", "scapy", "configshell", "rtslib_fb", "appliance.app", "appliance.iscsi", "http.server")

SLOW_HEAVY_IMPORTS = """
import sys, time

class SlowHeavyImports:
    # Records, then delays, the first import of each heavy library, as compiling it does on a slow machine.
    def find_spec(self, name, path=None, target=None):
        if name in %(heavy)r:
            with open(%(record)r, "a") as record:
                record.write(name + "\\n")
            time.sleep(%(seconds)r)
        return None

sys.meta_path.insert(0, SlowHeavyImports())
"""


def test_first_request_after_ready_needs_no_heavy_library(store, make_daemon, tmp_path):
    slow = tmp_path / "slow-import"
    slow.mkdir()
    record = tmp_path / "heavy-imports"
    (slow / "sitecustomize.py").write_text(SLOW_HEAVY_IMPORTS % {
        "heavy": HEAVY, "record": str(record), "seconds": IMPORT_SECONDS})
    path = os.pathsep.join(filter(None, [str(slow), os.environ.get("PYTHONPATH")]))
    daemon = make_daemon(store.config, env={"PYTHONPATH": path}).start(timeout=IMPORT_SECONDS * len(HEAVY) + 30)
    first = curl(store.port, PI_PREFIX + "config.txt", timeout=CLIENT_BUDGET)
    assert first.ok, (f"the first request after READY=1 was not answered within {CLIENT_BUDGET} s "
                      f"(curl exit {first.rc}: {first.err}); log:\n{daemon.log()}")
    assert b"kernel" in first.data
    imported = record.read_text().split() if record.exists() else []
    assert imported == [], f"loaded before the first answer: {imported}"
