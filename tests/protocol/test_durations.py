"""goAway.timeLeft durations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnelproof.protocol import ProtocolError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("50s", 50.0),
        ("17.250s", 17.25),
        ("300s", 300.0),
        ("0s", 0.0),
        ("0.5s", 0.5),
        ("1.000000001s", 1.000000001),
    ],
)
def test_parse_duration_reads_proto_json(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["50", "s", "", "fifty s", "1.2.3s", "50 ms", "1.0000000001s", "-s"]
)
def test_parse_duration_rejects_non_durations(bad: str) -> None:
    with pytest.raises(ProtocolError):
        parse_duration(bad)


def test_parse_duration_rejects_non_string() -> None:
    with pytest.raises(ProtocolError, match="must be a string"):
        parse_duration(50)  # type: ignore[arg-type]


def test_format_duration_matches_google_shape() -> None:
    assert format_duration(50) == "50s"
    assert format_duration(17.25) == "17.250s"
    with pytest.raises(ValueError, match="finite"):
        format_duration(float("inf"))


@given(st.integers(min_value=0, max_value=10**7))
def test_duration_round_trip_in_millis(millis: int) -> None:
    assert parse_duration(format_duration(millis / 1000)) == pytest.approx(millis / 1000)
