"""Fixtures for the token-service tests (defined in helpers.py)."""

from .helpers import emu, jwks, rsa_keys

__all__ = ["emu", "jwks", "rsa_keys"]
