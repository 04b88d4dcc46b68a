"""Fixtures for the NixOS tests (helpers live in nix_helpers.py)."""

from nix_helpers import nix_eval, nix_parse  # noqa: F401  (pytest fixtures)
