"""pytest fixtures (emulator); exported through tunnelproof.testing.pytest_plugin.

* ``emulator``: a running in-process :class:`~tunnelproof.emulator.EmulatorServer` on
  plain ws with the default policy.
* ``emulator_tls``: the same over wss (``emu.ca_file`` is the CA to trust).
* ``emulator_factory``: ``await emulator_factory(policy=..., tls=..., **kwargs)`` for a
  customised one; every emulator it made is stopped after the test.
* ``emulator_process_factory``: the same for :class:`~tunnelproof.emulator.EmulatorProcess`
  (a real subprocess, for restart and crash tests); every process is stopped after the test.

All fixtures are async (run by pytest-asyncio or anyio, see
:mod:`tunnelproof.testing.async_fixtures`) and function-scoped, so tests never share state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tunnelproof.testing.async_fixtures import async_fixture

if TYPE_CHECKING:
    from tunnelproof.emulator import EmulatorPolicy, EmulatorProcess, EmulatorServer

# The plugin loads in every pytest run of a project that installs tunnelproof: the emulator
# (aiohttp and the rest) is imported when a test first asks for one of these fixtures.
EmulatorFactory = Callable[..., Awaitable["EmulatorServer"]]
EmulatorProcessFactory = Callable[..., Awaitable["EmulatorProcess"]]

__all__ = [
    "EmulatorFactory",
    "EmulatorProcessFactory",
    "emulator",
    "emulator_factory",
    "emulator_process_factory",
    "emulator_tls",
]


@async_fixture
async def emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """Start emulators with any policy; all are stopped at teardown."""
    from tunnelproof.emulator import EmulatorServer

    started: list[EmulatorServer] = []

    async def make(policy: EmulatorPolicy | None = None, **kwargs: Any) -> EmulatorServer:
        server = EmulatorServer(policy=policy, **kwargs)
        await server.start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in reversed(started):
            await server.stop()


@async_fixture
async def emulator(emulator_factory: EmulatorFactory) -> EmulatorServer:
    """A running emulator on plain ws (``emu.ws_base``) with the default policy."""
    return await emulator_factory()


@async_fixture
async def emulator_tls(emulator_factory: EmulatorFactory) -> EmulatorServer:
    """A running emulator on wss; trust ``emu.ca_file``."""
    return await emulator_factory(tls=True)


@async_fixture
async def emulator_process_factory() -> AsyncIterator[EmulatorProcessFactory]:
    """Start emulator subprocesses; all are stopped (and their temp state removed) after."""
    from tunnelproof.emulator import EmulatorProcess

    started: list[EmulatorProcess] = []

    async def make(policy: EmulatorPolicy | None = None, **kwargs: Any) -> EmulatorProcess:
        process = EmulatorProcess(policy, **kwargs)
        started.append(process)
        await process.__aenter__()
        return process

    try:
        yield make
    finally:
        for process in reversed(started):
            await process.__aexit__(None, None, None)
