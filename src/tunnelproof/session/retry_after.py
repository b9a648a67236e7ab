"""When a server said to come back: ``Retry-After`` and its sub-second companion.

``Retry-After`` (RFC 9110 §10.2.3) is delta-seconds or an HTTP-date: whole seconds at best.
That is too coarse for a token service that spreads a herd over slots a few milliseconds
apart, or for a restart that is over in a second (a client told ``1`` comes back a second
later whatever its slot). ``retry-after-ms`` carries the same wait in milliseconds. It is in
no RFC; it is the convention of Azure's services, and the OpenAI SDKs (``openai-python``'s
``_parse_retry_after_header``) and Azure's ``core-rest-pipeline`` read it *before*
``Retry-After``. tunnelproof's token service sends both; its clients prefer the
milliseconds when they are sane:

* a finite number, ``0 <= ms / 1000 <= MAX_RETRY_AFTER_MS_SECONDS`` (an hour);
* not more than a second beyond ``Retry-After`` when that is present too (a server that
  rounds the seconds down, as tunnelproof's did, is then still believed; two headers that
  disagree more than that are a broken server, and the standard one wins).

Anything else falls back to ``Retry-After``. How long to actually wait (a floor, jitter) is
the retry policy's business: :meth:`~tunnelproof.session.policy.RetryPolicy.shed_delay`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

RETRY_AFTER_MS = "retry-after-ms"
"""The header's name (HTTP header names are case-insensitive)."""

MAX_RETRY_AFTER_MS_SECONDS = 3600.0
"""A ``retry-after-ms`` longer than this is not believed (``Retry-After`` is used instead)."""

_MS_SLACK = 1.0  # seconds the ms hint may exceed Retry-After (a server that rounds down)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), or ``None``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    reference = now or datetime.now(when.tzinfo)
    return max(0.0, (when - reference).total_seconds())


def parse_retry_after_ms(value: str | None) -> float | None:
    """Seconds from a ``retry-after-ms`` header, or ``None`` if absent or not sane."""
    if value is None:
        return None
    try:
        ms = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(ms) or ms < 0 or ms / 1000.0 > MAX_RETRY_AFTER_MS_SECONDS:
        return None
    return ms / 1000.0


def retry_after_from(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The wait a response asks for, in seconds: ``retry-after-ms`` when it is sane (see
    the module docstring), else ``Retry-After``; ``None`` when neither says.

    ``headers`` must look names up case-insensitively (httpx's, websockets', aiohttp's
    header mappings do).
    """
    seconds = parse_retry_after(headers.get("retry-after"), now=now)
    ms = parse_retry_after_ms(headers.get(RETRY_AFTER_MS))
    if ms is None:
        return seconds
    if seconds is not None and ms > seconds + _MS_SLACK:
        return seconds
    return ms
