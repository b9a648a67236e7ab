"""Reading when to come back: ``retry-after-ms`` first when sane, else ``Retry-After``."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from websockets.datastructures import Headers

from tunnelproof.session.retry_after import (
    MAX_RETRY_AFTER_MS_SECONDS,
    parse_retry_after,
    parse_retry_after_ms,
    retry_after_from,
)

NOW = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2 ") == 2.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("inf") is None  # not a wait anybody can honour
    assert parse_retry_after("nan") is None
    later = email.utils.format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=NOW) == 30.0
    earlier = email.utils.format_datetime(NOW - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=NOW) == 0.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250", 0.25), ("1", 0.001), ("0", 0.0), (" 1500.5 ", 1.5005), ("3600000", 3600.0)],
)
def test_retry_after_ms_is_milliseconds(value: str, seconds: float) -> None:
    assert parse_retry_after_ms(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", "-5", "nan", "inf", "1e400", str(MAX_RETRY_AFTER_MS_SECONDS * 1000 + 1)],
)
def test_retry_after_ms_that_is_not_sane_is_ignored(value: str | None) -> None:
    assert parse_retry_after_ms(value) is None


def test_the_milliseconds_are_preferred_when_both_agree() -> None:
    headers = httpx.Headers({"Retry-After": "1", "retry-after-ms": "250"})
    assert retry_after_from(headers) == 0.25
    # Header names are case-insensitive, whatever the mapping (websockets' too).
    assert retry_after_from(Headers({"RETRY-AFTER": "2", "Retry-After-Ms": "1800"})) == 1.8


def test_each_header_alone_is_read() -> None:
    assert retry_after_from(httpx.Headers({"retry-after-ms": "40"})) == 0.04
    assert retry_after_from(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert retry_after_from(httpx.Headers({})) is None


def test_a_broken_ms_hint_falls_back_to_retry_after() -> None:
    assert retry_after_from(httpx.Headers({"Retry-After": "4", "retry-after-ms": "soon"})) == 4.0
    assert retry_after_from(httpx.Headers({"Retry-After": "4", "retry-after-ms": "-1"})) == 4.0


def test_ms_far_beyond_retry_after_is_not_believed() -> None:
    # Up to a second beyond it is a server rounding its seconds down; more is two headers
    # that disagree, and the standard one wins.
    assert retry_after_from(httpx.Headers({"Retry-After": "1", "retry-after-ms": "1900"})) == 1.9
    assert retry_after_from(httpx.Headers({"Retry-After": "1", "retry-after-ms": "60000"})) == 1.0
    date = email.utils.format_datetime(NOW + timedelta(seconds=10), usegmt=True)
    headers = httpx.Headers({"Retry-After": date, "retry-after-ms": "9500"})
    assert retry_after_from(headers, now=NOW) == 9.5
