"""pytest plugin registered through the ``pytest11`` entry point.

Installing tunnelproof makes these fixtures available in any test suite: a running
emulator, a token service, and a tunnel (see the README). Each area keeps its fixtures in
its own module; this file only re-exports them so pytest discovers them by name.

The plugin loads in every suite of a project that installs tunnelproof, so it imports no
async test plugin: its async fixtures run under pytest-asyncio or anyio, whichever the
test uses (:mod:`tunnelproof.testing.async_fixtures`), and a suite using neither is not
affected.
"""

from tunnelproof.testing.async_fixtures import pytest_fixture_setup as pytest_fixture_setup
from tunnelproof.testing.emulator_fixtures import *  # noqa: F403
from tunnelproof.testing.tokens_fixtures import *  # noqa: F403
from tunnelproof.testing.tunnel_fixtures import *  # noqa: F403
