"""Real clients through injected faults — outages of 1, 3 and 8 s, the first
1–3 ACKs of a block lost, 10 % drop/duplication/reordering both ways: every
transfer byte-identical, none given up by the server.

Client timeouts are set so the clients outlast the faults (see fault_matrix);
what is tested is that the server keeps retransmitting, with backoff, until
the link is back, and never gives up within the 30 s budget.
"""

from __future__ import annotations

import os

import pytest

from .fault_matrix import CLIENTS, SCENARIOS, download, missing_binary
from .helpers import require_binary, serving
from .lossy_proxy import LossyProxy

PAYLOAD = os.urandom(200_000)


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_client_survives_fault(scenario, client, tmp_path):
    if missing_binary(client):
        require_binary(missing_binary(client))
    with serving({"f.bin": PAYLOAD}) as s:
        with LossyProxy(s.address, SCENARIOS[scenario], seed=11) as proxy:
            outcome = download(client, proxy.address[1], "f.bin", tmp_path / "out", PAYLOAD)
        assert outcome.ok, outcome.detail
        stats = s.server.read_stats()
        assert stats.transfers_given_up == 0
        # The client's final ACK may itself be lost (the client has its file and
        # does not repeat it): then the server is still waiting for it, which is
        # no failure; any record that did arrive is a complete transfer.
        records = s.wait_records(1, timeout=3)
        assert all(r.outcome == "complete" and r.bytes_sent == len(PAYLOAD) for r in records), records
        if SCENARIOS[scenario].outage:
            assert proxy.counts["outage_dropped"] > 0
            assert stats.retransmits > 0
        if SCENARIOS[scenario].ack_losses:
            assert proxy.counts["acks_dropped"] == SCENARIOS[scenario].ack_losses
