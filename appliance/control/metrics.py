"""Prometheus text exposition of the appliance's counters (optional HTTP listener)."""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Callable, Mapping

from ..tftp import TftpStats
from .health import HealthReport, metric_samples
from .iscsi_health import IscsiHealth

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer


class BootCounters:
    """Per-host boot-event counters, fed from the TFTP and HTTP threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.transfers: dict[tuple[str, str], int] = {}   # (host, outcome) → count
        self.bytes: dict[str, int] = {}

    def record(self, host: str, outcome: str, nbytes: int) -> None:
        outcome = outcome.split(":", 1)[0]
        with self._lock:
            self.transfers[(host, outcome)] = self.transfers.get((host, outcome), 0) + 1
            self.bytes[host] = self.bytes.get(host, 0) + nbytes

    def copy(self) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        with self._lock:
            return dict(self.transfers), dict(self.bytes)


def render_metrics(stats: TftpStats, boots: BootCounters, served: Mapping[str, int | None],
                   sessions: Mapping[str, bool], dhcp: object | None = None,
                   iscsi: IscsiHealth | None = None,
                   health: HealthReport | None = None, events_dropped: int = 0,
                   http: object | None = None, events_suppressed: int = 0) -> str:
    """Pure: counters in, Prometheus text format out."""
    lines = []

    def metric(name: str, kind: str, help: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    s = asdict(stats)
    errors = s.pop("errors_sent")
    active = s.pop("sessions_active")
    for key, value in s.items():
        metric(f"netboot_tftp_{key}_total", "counter", f"TFTP {key.replace('_', ' ')}", [("", value)])
    metric("netboot_tftp_errors_sent_total", "counter", "TFTP error packets sent by code",
           [(f'{{code="{code}"}}', n) for code, n in sorted(errors.items())])
    metric("netboot_tftp_sessions_active", "gauge", "TFTP transfers in progress", [("", active)])
    transfers, nbytes = boots.copy()
    metric("netboot_boot_transfers_total", "counter", "transfers per host and outcome",
           [(f'{{host="{h}",outcome="{o}"}}', n) for (h, o), n in sorted(transfers.items())])
    metric("netboot_boot_bytes_total", "counter", "bytes served per host",
           [(f'{{host="{h}"}}', n) for h, n in sorted(nbytes.items())])
    metric("netboot_served_generation", "gauge", "generation served per host (-1: none)",
           [(f'{{host="{h}"}}', -1 if g is None else g) for h, g in sorted(served.items())])
    metric("netboot_iscsi_session_up", "gauge", "1 when the host's initiator is logged in",
           [(f'{{host="{h}"}}', int(up)) for h, up in sorted(sessions.items())])
    down, failures = metric_samples(health or HealthReport())
    metric("netboot_degraded", "gauge",
           "1 while a component runs degraded (state: state file corrupt; iscsi: TFTP only, retrying; "
           "others: see the log and status)",
           [(f'{{component="{c}"}}', int(on)) for c, on in sorted(down.items())])
    metric("netboot_component_failures_total", "counter", "failures per component",
           [(f'{{component="{c}"}}', n) for c, n in sorted(failures.items())])
    metric("netboot_boot_events_dropped_total", "counter", "boot events that could not be recorded",
           [("", events_dropped)])
    metric("netboot_boot_events_suppressed_total", "counter",
           "boot events coalesced or over a host's budget (counted on its next event)", [("", events_suppressed)])
    if iscsi is not None:
        metric("netboot_iscsi_apply_failures_total", "counter", "failed iSCSI applies (start, reload, retries)",
               [("", iscsi.failures)])
        metric("netboot_iscsi_withheld_changes", "gauge",
               "destructive iSCSI changes the daemon held back (netboot iscsi plan shows them)",
               [("", len(iscsi.withheld))])
    if http is not None:  # HttpStats: integer counters, responses by status, one gauge
        h = asdict(http)
        responses = h.pop("responses")
        active = h.pop("connections_active")
        for key, value in h.items():
            metric(f"netboot_http_{key}_total", "counter", f"HTTP {key.replace('_', ' ')}", [("", value)])
        metric("netboot_http_responses_total", "counter", "HTTP responses by status",
               [(f'{{status="{code}"}}', n) for code, n in sorted(responses.items())])
        metric("netboot_http_connections_active", "gauge", "HTTP connections open", [("", active)])
    if dhcp is not None:  # DhcpStats: flat integer counters
        for key, value in asdict(dhcp).items():
            metric(f"netboot_dhcp_{key}_total", "counter", f"proxyDHCP {key.replace('_', ' ')}", [("", value)])
    return "\n".join(lines) + "\n"


def serve_metrics(host: str, port: int, render: Callable[[], str]) -> ThreadingHTTPServer:
    # Imported here: only a configured listener needs the HTTP stack (the daemon starts faster).
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            if self.path not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # scrapes are not news

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
