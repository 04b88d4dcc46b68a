"""The control loop's inotify binding, on the real kernel."""

from __future__ import annotations

from appliance.control.inotify import Inotify


def test_rewatching_keeps_events_already_queued(tmp_path):
    """A reload re-computes the watched directories; an edit queued just before
    must still name its directory (else the config edit is lost)."""
    config_dir, profiles, gone = tmp_path / "etc", tmp_path / "profiles", tmp_path / "old"
    for d in (config_dir, profiles, gone):
        d.mkdir()
    inotify = Inotify()
    try:
        assert inotify.watch_only([config_dir, gone]) == []
        (config_dir / "appliance.toml").write_text("edited")      # queued, not read yet
        assert inotify.watch_only([config_dir, profiles, tmp_path / "missing"]) == [tmp_path / "missing"]
        (profiles / "pc-system").write_text("new")
        (gone / "ignored").write_text("x")
        events = [(d, name) for d, name, _ in inotify.read()]
        assert (config_dir, "appliance.toml") in events
        assert (profiles, "pc-system") in events
        assert all(d != gone for d, _ in events) and None not in {d for d, _ in events}
    finally:
        inotify.close()
