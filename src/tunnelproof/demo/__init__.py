"""``tunnelproof demo``: a conversation surviving a train journey, all on this machine.

Modules, one concern each:

* :mod:`~tunnelproof.demo.journey` — the scripted journey (pure data);
* :mod:`~tunnelproof.demo.stack` — emulator, token service subprocess, tunnel proxy;
* :mod:`~tunnelproof.demo.processes` — child processes that never outlive the demo;
* :mod:`~tunnelproof.demo.runner` — plays the journey on a ``LiveSession``, records it;
* :mod:`~tunnelproof.demo.model` — what is recorded;
* :mod:`~tunnelproof.demo.view` — the live rich view and the summary;
* :mod:`~tunnelproof.demo.verdict` — did the promise hold;
* :mod:`~tunnelproof.demo.app` — ``run_demo`` ties them together.
* :mod:`~tunnelproof.demo.browser` — the same journey as a page (``--browser``,
  ``serve --demo``): emulator, tunnel and token service in one process.

The names below are imported on first use: importing a submodule (``demo.preflight`` for the
chat) must not start the emulator's and the token service's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunnelproof.demo.app import DemoError, DemoOptions, DemoOutcome, run_demo

__all__ = ["DemoError", "DemoOptions", "DemoOutcome", "run_demo"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tunnelproof.demo import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
