from __future__ import annotations

import os

import pytest

from .helpers import serving


@pytest.fixture(scope="module")
def payloads() -> dict[str, bytes]:
    rng_bytes = os.urandom
    return {
        "small.bin": rng_bytes(3000),
        "exact.bin": rng_bytes(1024 * 4),          # a multiple of the block size: empty last block
        "empty.bin": b"",
        "text.txt": b"line one\nline two\r\nbare cr\rend\n",
        "dir/nested.bin": rng_bytes(70000),
        "medium.bin": rng_bytes(300_000),
    }


@pytest.fixture
def served(payloads):
    with serving(payloads) as s:
        yield s


@pytest.fixture
def served_quiet(payloads):
    """A server whose retransmission timer waits at least 3 s: a test may read a short quiet
    spell after its datagram as "no answer to it" even when it is descheduled for a while."""
    with serving(payloads, timeout=5.0, min_timeout=3.0) as s:
        yield s
