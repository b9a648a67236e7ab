"""``google.protobuf.Duration`` in its JSON form: a decimal number of seconds with an ``s``."""

from __future__ import annotations

import math
import re

from tunnelproof.protocol.errors import ProtocolError

# ASCII digits only (``\d`` would also take "٣"), and no more digits than the range allows,
# so a 400-digit or 5,000-digit hostile value is a ProtocolError, not an OverflowError or
# int()'s digit-limit ValueError.
_DURATION = re.compile(r"(-?)([0-9]{1,12})(?:\.([0-9]{1,9}))?s", re.ASCII)
MAX_DURATION_SECONDS = 315_576_000_000
"""The range of ``google.protobuf.Duration``: +-10,000 years."""


def parse_duration(text: str) -> float:
    """``"50s"`` -> 50.0, ``"17.250s"`` -> 17.25.

    Raises ``ProtocolError`` for anything that is not proto-JSON duration syntax (or is out
    of the protobuf range), so a bad ``goAway.timeLeft`` is reported instead of silently
    becoming zero or raising something else.
    """
    if not isinstance(text, str):
        raise ProtocolError(f"duration must be a string like '50s', got {type(text).__name__}")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ProtocolError(f"not a protobuf duration: {text[:40]!r}")
    sign, whole, frac = match.groups()
    if int(whole) > MAX_DURATION_SECONDS:
        raise ProtocolError(
            f"duration out of range (at most {MAX_DURATION_SECONDS}s): {text[:40]!r}"
        )
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
