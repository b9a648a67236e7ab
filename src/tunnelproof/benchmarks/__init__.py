"""Benchmarks: tunnelproof measured side by side with the alternatives, in one run.

``tunnelproof bench [NAMES...] [--quick] [--out bench/results]`` runs them (see
:mod:`tunnelproof.cli.bench`). Each benchmark is one module whose docstring is its method;
:mod:`~tunnelproof.benchmarks.harness` holds the statistics and the result schema,
:mod:`~tunnelproof.benchmarks.charts` the PNG charts, :mod:`~tunnelproof.benchmarks.simulator`
the virtual-clock simulator used for tunnels and herds too long or too large to run in real
time. Results and method: ``docs/performance.md``.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "recovery": "tunnelproof.benchmarks.recovery",
    "tunnel": "tunnelproof.benchmarks.tunnel",
    "half_open": "tunnelproof.benchmarks.half_open",
    "goaway": "tunnelproof.benchmarks.goaway",
    "streaming": "tunnelproof.benchmarks.streaming",
    "token_service": "tunnelproof.benchmarks.token_service",
    "storm": "tunnelproof.benchmarks.storm",
    "relay": "tunnelproof.benchmarks.relay",
}
"""Benchmark name → module, in run order (``storm`` uses ``token_service``'s capacity)."""

__all__ = ["BENCHMARKS"]
