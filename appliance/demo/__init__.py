"""A throw-away Nix-store-like tree and config, for ``netboot demo`` and tests."""

from .store import DemoLayout, build_demo, make_firmware, make_toplevel, add_generation

__all__ = ["DemoLayout", "add_generation", "build_demo", "make_firmware", "make_toplevel"]
