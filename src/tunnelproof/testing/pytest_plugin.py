"""pytest plugin registered through the ``pytest11`` entry point.

Fixtures for a running emulator, token service and tunnel live here (see the README).
"""
