"""``google.protobuf.Duration`` in its JSON form: a decimal number of seconds with an ``s``."""

from __future__ import annotations

import math
import re

from tunnelproof.protocol.errors import ProtocolError

_DURATION = re.compile(r"^(-?)(\d+)(?:\.(\d{1,9}))?s$")


def parse_duration(text: str) -> float:
    """``"50s"`` -> 50.0, ``"17.250s"`` -> 17.25.

    Raises ``ProtocolError`` for anything that is not proto-JSON duration syntax, so a
    bad ``goAway.timeLeft`` is reported instead of silently becoming zero.
    """
    if not isinstance(text, str):
        raise ProtocolError(f"duration must be a string like '50s', got {type(text).__name__}")
    match = _DURATION.match(text.strip())
    if match is None:
        raise ProtocolError(f"not a protobuf duration: {text[:40]!r}")
    sign, whole, frac = match.groups()
    seconds = int(whole) + (int(frac) / 10 ** len(frac) if frac else 0.0)
    return -seconds if sign else seconds


def format_duration(seconds: float) -> str:
    """50.0 -> ``"50s"``, 17.25 -> ``"17.250s"`` (the shape Google sends)."""
    if not math.isfinite(seconds):
        raise ValueError("duration must be finite")
    millis = round(seconds * 1000)
    whole, frac = divmod(abs(millis), 1000)
    sign = "-" if millis < 0 else ""
    return f"{sign}{whole}s" if frac == 0 else f"{sign}{whole}.{frac:03d}s"
