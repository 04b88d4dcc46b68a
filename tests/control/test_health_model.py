"""The health model: components → state, reason, since; and the views rendered from it."""

from __future__ import annotations

import os
import subprocess
import sys

from appliance.control.health import (DEGRADED, HEALTH_FILE, WITHHELD, Health, HealthReport, metric_samples,
                                      read_health_file, status_line, text_lines, to_json, write_health_file)
from appliance.control.health.model import from_json
from appliance.control.iscsi_health import IscsiHealth


def test_since_is_when_the_component_went_bad_not_the_last_report():
    r = HealthReport().failed("client-mac", "netlink: down", now=10.0)
    r = r.failed("client-mac", "netlink: still down", now=20.0)
    assert r.problems["client-mac"].since == 10.0 and r.problems["client-mac"].reason == "netlink: still down"
    assert r.failures == {"client-mac": 2}
    r = r.recovered("client-mac").failed("client-mac", "netlink: down again", now=30.0)
    assert r.problems["client-mac"].since == 30.0 and r.failures == {"client-mac": 3}
    assert r.recovered("client-mac").recovered("client-mac").problems == {}


def test_status_line_names_every_degraded_component_then_what_is_withheld():
    assert status_line(HealthReport()) == "serving"
    r = HealthReport().failed("state", "/s/state.json is corrupt; run 'netboot state repair'", 1.0)
    assert status_line(r) == "degraded: /s/state.json is corrupt; run 'netboot state repair'"
    r = r.failed("client-mac", "netlink: broken; clients are refused", 2.0)
    r = r.failed("iscsi", "iSCSI: 2 destructive changes withheld (netboot iscsi plan)", 3.0, WITHHELD)
    assert status_line(r) == ("degraded: netlink: broken; clients are refused; "
                              "/s/state.json is corrupt; run 'netboot state repair'; "
                              "iSCSI: 2 destructive changes withheld (netboot iscsi plan)")
    assert status_line(r.recovered("client-mac").recovered("state")) == \
        "serving; iSCSI: 2 destructive changes withheld (netboot iscsi plan)"


def test_withheld_is_no_failure_and_no_degraded_gauge():
    r = HealthReport().failed("iscsi", "iSCSI: 1 destructive changes withheld", 1.0, WITHHELD)
    assert r.failures == {} and r.degraded() == {}
    gauge, failures = metric_samples(r)
    assert gauge == {"iscsi": 0, "state": 0} and failures == {}
    r = r.failed("boot-events", "dropped", 2.0).recovered("boot-events")
    gauge, failures = metric_samples(r)
    assert gauge == {"boot-events": 0, "iscsi": 0, "state": 0} and failures == {"boot-events": 1}


def test_iscsi_problem_and_text_lines():
    down = IscsiHealth().failed("LIO cannot be opened", consecutive=2)
    state, reason, text = down.problem()
    assert state == DEGRADED and reason == "iSCSI unavailable (LIO cannot be opened); TFTP only, retrying in 4 s"
    r = HealthReport().failed("iscsi", reason, 1.0, state, text).failed("frame-capture", "no CAP_NET_RAW", 1.0)
    assert text_lines(r) == ["degraded: frame-capture: no CAP_NET_RAW",
                             "warning: iSCSI degraded, serving TFTP only: LIO cannot be opened "
                             "(the daemon retries every 4 s or so)"]
    assert IscsiHealth().applied(()).problem() is None
    assert IscsiHealth().applied(("a", "b")).problem()[0] == WITHHELD


def test_json_round_trip_and_rejects_garbage():
    r = (HealthReport().failed("state", "corrupt", 5.0).failed("iscsi", "held", 6.0, WITHHELD, ("w1",))
         .with_details("iscsi", {"state": "withheld", "withheld": ["w1"]}))
    assert from_json(to_json(r)) == r
    for bad in (None, [], {"components": {"x": {"state": "degraded"}}}, {"components": 3}):
        try:
            from_json(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_monitor_reports_changes_once(tmp_path):
    clock = [100.0]
    h = Health(clock=lambda: clock[0])
    h.fail("client-mac", "netlink: down")
    assert h.changed.is_set()
    h.changed.clear()
    clock[0] = 200.0
    h.fail("client-mac", "netlink: down")
    assert not h.changed.is_set() and h.report().problems["client-mac"].since == 100.0
    h.ok("client-mac")
    assert h.changed.is_set() and h.problems() == {}


def test_published_file_is_ignored_once_its_process_is_gone(tmp_path):
    r = HealthReport().failed("client-mac", "netlink: down", 1.0)
    write_health_file(tmp_path, r)
    assert read_health_file(tmp_path) == r
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    write_health_file(tmp_path, r, pid=int(gone.stdout))
    assert read_health_file(tmp_path) is None
    (tmp_path / HEALTH_FILE).write_text("{not json")
    assert read_health_file(tmp_path) is None
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
