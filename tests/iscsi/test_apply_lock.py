"""The apply lock between two real processes: a second apply waits a bounded time for a hung one,
then fails with one line naming the lock and its holder (README: iSCSI root LUNs)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import eventually

REPO = Path(__file__).resolve().parents[2]

# An apply inside the lock: the LIO stand-in's execute() says so, then waits for ``release``
# to appear (at most 60 s), as an apply stuck on a hung configfs write or NFS share would.
HOLDER = """
import sys, time
from pathlib import Path
from appliance.iscsi import iscsi_apply
from appliance.iscsi.observe import LioObserved
from tests.iscsi.test_edge import FakeAdapter
from tests.iscsi.test_plan import TWO, read_secret

lock, release = Path(sys.argv[1]), Path(sys.argv[2])

class Hanging(FakeAdapter):
    def execute(self, the_plan, secrets):
        print("applying", flush=True)
        deadline = time.monotonic() + 60
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return super().execute(the_plan, secrets)

report = iscsi_apply(TWO, adapter=Hanging(LioObserved()), secrets=read_secret, lock_path=lock)
print(report, flush=True)
"""

# A second apply: prints what it did, or the error's exit code and line.
SECOND = """
import sys
from pathlib import Path
from appliance.errors import ApplianceError
from appliance.iscsi import iscsi_apply
from appliance.iscsi.observe import LioObserved
from tests.iscsi.test_edge import FakeAdapter
from tests.iscsi.test_plan import TWO, read_secret

adapter = FakeAdapter(LioObserved())
try:
    report = iscsi_apply(TWO, adapter=adapter, secrets=read_secret, lock_path=Path(sys.argv[1]),
                         lock_wait=float(sys.argv[2]))
except ApplianceError as exc:
    print(f"error {exc.exit_code} {len(adapter.executed)}: {exc}")
else:
    print(f"ok {len(adapter.executed)}: {report}")
"""


def _python(script: str, *args: object) -> list[str]:
    return [sys.executable, "-c", script, *map(str, args)]


@pytest.fixture
def holder(tmp_path):
    """A first apply, hung inside the lock; ``holder.release()`` lets it finish."""
    lock, release = tmp_path / "netboot-iscsi.lock", tmp_path / "release"
    proc = subprocess.Popen(_python(HOLDER, lock, release), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "applying\n", proc.stderr.read()
        proc.lock, proc.release = lock, lambda: release.touch()
        yield proc
    finally:
        release.touch()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_second_apply_gives_up_after_its_wait_naming_the_lock_and_who_holds_it(holder):
    start = time.monotonic()
    second = subprocess.run(_python(SECOND, holder.lock, 1.0), cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    took = time.monotonic() - start
    lines = second.stdout.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, (second.stdout, second.stderr)
    assert lines[0].startswith("error 1 0: "), lines            # exit 1, nothing applied
    assert str(holder.lock) in lines[0] and "1 s" in lines[0], lines
    assert f"pid {holder.pid} " in lines[0] and "python" in lines[0], lines   # who holds it
    assert took < 20, took
    # The hung apply was not disturbed: released, it completes.
    holder.release()
    out, _ = holder.communicate(timeout=30)
    assert holder.returncode == 0 and "changes applied" in out, out


def test_a_second_apply_waits_for_the_first_to_finish(holder):
    second = subprocess.Popen(_python(SECOND, holder.lock, 30), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)       # the second is waiting on the lock now (or about to)
        assert second.poll() is None, second.communicate()
        holder.release()
        out, err = second.communicate(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    # The first converged LIO's stand-in in its own process; the second saw its own, empty one and
    # applied after the lock was free.
    assert out.startswith("ok 1: ") and "changes applied" in out, (out, err)
    eventually(lambda: holder.poll() is not None, 30, "the first apply ends")


def test_flock_holders_reads_proc_locks():
    from appliance.filelock import flock_holders

    text = ("1: FLOCK  ADVISORY  WRITE 10950 fe:00:2146515 0 EOF\n"
            "1: -> FLOCK  ADVISORY  WRITE 10951 fe:00:2146515 0 EOF\n"       # a waiter, not a holder
            "2: POSIX  ADVISORY  WRITE 700 fe:00:2146515 0 EOF\n"            # fcntl locks are another kind
            "3: FLOCK  ADVISORY  WRITE 800 fe:01:2146515 0 EOF\n"            # same inode, other device
            "4: FLOCK  ADVISORY  WRITE -1 fe:00:2146515 0 EOF\n"             # a PID from another namespace
            "garbage\n")
    assert flock_holders(text, 0xfe, 0, 2146515) == [10950]
    assert flock_holders(text, 0xfe, 0, 1) == []
