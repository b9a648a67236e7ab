"""Prometheus metrics of the token service, in a registry of its own.

A per-service :class:`~prometheus_client.CollectorRegistry` (not the global default) lets
two services live in one process, e.g. two apps in a test, without "Duplicated timeseries".
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "TokenMetrics"]


class TokenMetrics:
    """Counters and the upstream latency histogram."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Register the metrics in ``registry`` (a fresh one by default)."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.tokens_issued = Counter(
            "tunnelproof_tokens_issued_total", "Ephemeral tokens issued", registry=self.registry
        )
        self.auth_failures = Counter(
            "tunnelproof_token_auth_failures_total",
            "Requests refused because the caller is not authenticated (401) or its origin "
            "is not allowed (403)",
            ["kind"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "tunnelproof_token_rate_limited_total",
            "Requests refused by the per-user budget (user) or mint concurrency (overload)",
            ["reason"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "tunnelproof_token_upstream_errors_total",
            "Failed upstream mint calls by kind (status, timeout, connect, bad_response)",
            ["kind"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "tunnelproof_token_upstream_latency_seconds",
            "Duration of upstream mint calls, successful or not",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        for kind in ("unauthenticated", "origin"):
            self.auth_failures.labels(kind)
        for reason in ("user", "overload", "upstream_down"):
            self.rate_limited.labels(reason)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
