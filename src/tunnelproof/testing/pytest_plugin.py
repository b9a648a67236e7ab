"""pytest plugin registered through the ``pytest11`` entry point.

Installing tunnelproof makes these fixtures available in any test suite: a running
emulator, a token service, and a tunnel (see the README). Each area keeps its fixtures in
its own module; this file only re-exports them so pytest discovers them by name.
"""

from tunnelproof.testing.emulator_fixtures import *  # noqa: F403
from tunnelproof.testing.tokens_fixtures import *  # noqa: F403
from tunnelproof.testing.tunnel_fixtures import *  # noqa: F403
