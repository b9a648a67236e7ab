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
"""

from tunnelproof.demo.app import DemoError, DemoOptions, DemoOutcome, run_demo

__all__ = ["DemoError", "DemoOptions", "DemoOutcome", "run_demo"]
