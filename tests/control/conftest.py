from __future__ import annotations

import pytest

from .control_harness import Daemon, Store, build_store


@pytest.fixture
def store(tmp_path) -> Store:
    return build_store(tmp_path / "demo")


@pytest.fixture
def make_daemon(tmp_path):
    """Factory: ``make_daemon(config)`` → a started-later Daemon, killed by PID at teardown."""
    made: list[Daemon] = []

    def make(config, env=None) -> Daemon:
        d = Daemon(config, tmp_path, env=env)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def daemon(store, make_daemon) -> Daemon:
    return make_daemon(store.config).start()


def pytest_runtest_makereport(item, call):
    """On failure, show the daemon's log (it explains most failures)."""
    if call.when != "call" or call.excinfo is None:
        return
    daemon = getattr(item, "funcargs", {}).get("daemon")
    if isinstance(daemon, Daemon):
        item.add_report_section("call", "daemon log", daemon.log())
