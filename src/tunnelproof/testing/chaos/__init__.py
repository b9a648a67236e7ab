"""The chaos soak: many concurrent sessions through every fault we know, then an audit.

Run it with ``python -m tunnelproof.testing.chaos`` (``make chaos``), or from Python::

    from tunnelproof.testing.chaos import ChaosConfig, run_chaos
    report = await run_chaos(ChaosConfig(sessions=20, steps=4))
    assert report["ok"], report["invariants"]

See ``config`` for the soak's size and its sessions' settings,
:mod:`~tunnelproof.testing.chaos.runner` for the stack (``observed``: what it sees from
outside the sessions), ``schedule`` for the fault plans, ``links`` for each session's
network path (a proxy, through a network namespace for kernel blackholes), ``driver`` for
one session's conversation, ``faults`` for how it injects its faults and ``record`` for
what it did and was told. ``verdict`` builds the report from them (``accounting``: how
delivery is judged against the server; ``ledger``/``audit``: the "unaccounted" audit of
every send and the tool's side effects); ``report`` prints and draws it.
"""

from tunnelproof.testing.chaos.config import ChaosConfig
from tunnelproof.testing.chaos.runner import run_chaos
from tunnelproof.testing.chaos.schedule import Fault, Step, plan_session

__all__ = ["ChaosConfig", "Fault", "Step", "plan_session", "run_chaos"]
