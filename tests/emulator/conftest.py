"""Fixtures for the emulator tests: the default emulator, with answers unpaced.

Every test here is audio-first (answers are 24 kHz PCM plus ``outputTranscription``), and
audio is paced at real time by default; ``generation_speed=0`` sends it as fast as the
socket takes it so the suite stays fast. Every other policy field keeps its default, so the
strict defaults are what these tests check. Tests about pacing set their own policy.
"""

from __future__ import annotations

import pytest_asyncio

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.testing.emulator_fixtures import EmulatorFactory


def unpaced() -> EmulatorPolicy:
    """The default policy, with answers sent without pacing."""
    return EmulatorPolicy(generation_speed=0)


@pytest_asyncio.fixture
async def emulator(emulator_factory: EmulatorFactory) -> EmulatorServer:
    """A running emulator on plain ws: default policy, unpaced answers."""
    return await emulator_factory(unpaced())


@pytest_asyncio.fixture
async def emulator_tls(emulator_factory: EmulatorFactory) -> EmulatorServer:
    """The same over wss (``emu.ca_file`` is the CA to trust)."""
    return await emulator_factory(unpaced(), tls=True)
