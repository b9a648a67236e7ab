"""What the chaos stack sees from outside the sessions while they run, and how memory is
read (``/proc``: Linux; elsewhere the figures are 0)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunnelproof.protocol.types import JsonDict


@dataclass(slots=True)
class Observed:
    """What the stack saw from outside the sessions while they ran."""

    events: list[JsonDict] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)
    refusals_consumed: int = 0
    unhandled: list[str] = field(default_factory=list)
    harness_unhandled: list[str] = field(default_factory=list)
    outbox_peak: dict[str, float] = field(default_factory=dict)
    outbox_violations: int = 0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    connected_samples: list[tuple[float, int]] = field(default_factory=list)
    emulator_peak_rss_kb: int = 0
    emulator_errors: int = 0
    client_sockets_peak: int = 0
    """Most sockets one session held open at once, sampled from the client's side."""


def rss_kb(pid: int | None = None) -> int:
    """The resident memory of ``pid`` (this process by default) in KiB; 0 if unknown."""
    return _status_kb(pid, "VmRSS")


def peak_rss_kb(pid: int | None = None) -> int:
    """The peak resident memory of ``pid`` (this process by default) in KiB; 0 if unknown."""
    return _status_kb(pid, "VmHWM")


def _status_kb(pid: int | None, field_name: str) -> int:
    path = f"/proc/{pid if pid is not None else 'self'}/status"
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0
