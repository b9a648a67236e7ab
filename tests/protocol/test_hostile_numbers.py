"""Hostile numbers and durations: the parser answers ``ProtocolError`` or a sane value, never
another exception.

Every number the server sends is a count, an index (int64, as a JSON number or a
proto-JSON string) or a ``goAway.timeLeft`` duration (``"50s"``). The fuzz puts numbers of
every shape in those places, both as JSON numbers written literally (400 digits, huge
exponents, ``-0``...) and as strings (``"--5"``, ``"²"``, ``"٣"``, ``"NaN"``, ``"1e999"``,
5,000 digits...), in camelCase and snake_case.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelproof.protocol import (
    GoAway,
    ProtocolError,
    SessionResumptionUpdate,
    UsageMetadata,
    parse_duration,
    parse_server_frame,
)

INT64_MAX = 2**63 - 1
INT_FIELDS = [
    ("usageMetadata", "promptTokenCount"),
    ("usageMetadata", "responseTokenCount"),
    ("usageMetadata", "totalTokenCount"),
    ("usage_metadata", "total_token_count"),
    ("sessionResumptionUpdate", "lastConsumedClientMessageIndex"),
    ("session_resumption_update", "last_consumed_client_message_index"),
]
DURATION_FIELDS = [("goAway", "timeLeft"), ("go_away", "time_left")]

WEIRD = [
    "--5",
    "-5",
    "+5",
    " 5",
    "5 ",
    "²",
    "٣",
    "５",
    "1_000",
    "0x10",
    "1e3",
    "1.5",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "1e999",
    "-1e999",
    "-0",
    "",
    "-",
    "9" * 19,
    "9" * 20,
    "9" * 400,
    "9" * 5000,
    str(INT64_MAX),
    str(INT64_MAX + 1),
    str(-(2**63)),
]
number_text = st.one_of(
    st.sampled_from(WEIRD),
    st.from_regex(r"[-+]{0,3}[0-9]{0,450}(\.[0-9]{0,12})?([eE][-+]?[0-9]{1,4})?", fullmatch=True),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Pd"]), max_size=8),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats().map(repr),
)
# What goes in the field: a JSON string, or the text written as a JSON number literal
# (which is often invalid JSON; then the frame is refused as a whole).
field_value = st.one_of(
    number_text.map(json.dumps),
    number_text,
    st.sampled_from(["1e400", "-1e400", "1" + "0" * 400, "-0", "0.0", "5.0", "true", "null"]),
)
duration_text = st.one_of(
    number_text.map(lambda t: t + "s"),
    number_text,
    st.sampled_from(["-5s", "-0.5s", "315576000001s", "315576000000s", "nans", "infs", "1e9s"]),
)


def _frame(message: str, field: str, literal: str) -> bytes:
    return f'{{"{message}": {{"{field}": {literal}}}}}'.encode()


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(INT_FIELDS), field_value)
def test_integer_fields_are_sane_or_protocol_errors(place: tuple[str, str], literal: str) -> None:
    data = _frame(*place, literal)
    try:
        frame = parse_server_frame(data)
    except ProtocolError as exc:
        assert exc.size == len(data)
        return
    (message,) = frame.messages
    if isinstance(message, UsageMetadata):
        values = [
            message.prompt_token_count,
            message.response_token_count,
            message.total_token_count,
        ]
    else:
        assert isinstance(message, SessionResumptionUpdate)
        values = [message.last_consumed_client_message_index]
    for value in values:
        assert value is None or (type(value) is int and 0 <= value <= INT64_MAX), value


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(DURATION_FIELDS), duration_text, st.booleans())
def test_durations_are_sane_or_protocol_errors(
    place: tuple[str, str], text: str, as_string: bool
) -> None:
    data = _frame(*place, json.dumps(text) if as_string else text)
    try:
        frame = parse_server_frame(data)
    except ProtocolError as exc:
        assert exc.size == len(data)
        return
    (message,) = frame.messages
    assert isinstance(message, GoAway)
    assert message.time_left is not None
    assert math.isfinite(message.time_left) and 0 <= message.time_left <= 315_576_000_000


@settings(max_examples=400, deadline=None)
@given(duration_text)
def test_parse_duration_raises_only_protocol_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ProtocolError:
        return
    assert math.isfinite(seconds) and abs(seconds) <= 315_576_000_000


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b'{"usageMetadata": {"promptTokenCount": "--5"}}', "promptTokenCount must be an integer"),
        (
            '{"sessionResumptionUpdate": {"lastConsumedClientMessageIndex": "²"}}'.encode(),
            "must be an integer",
        ),
        ('{"usageMetadata": {"totalTokenCount": "٣"}}'.encode(), "must be an integer"),
        (b'{"usageMetadata": {"totalTokenCount": "' + b"9" * 5000 + b'"}}', "must be an integer"),
        (b'{"usageMetadata": {"totalTokenCount": "-5"}}', "out of range"),
        (b'{"usageMetadata": {"totalTokenCount": 18446744073709551615}}', "out of range"),
        (b'{"goAway": {"timeLeft": "' + b"9" * 400 + b's"}}', "goAway.timeLeft: not a protobuf"),
        (b'{"goAway": {"timeLeft": "' + b"9" * 5000 + b's"}}', "goAway.timeLeft: not a protobuf"),
        (b'{"goAway": {"timeLeft": "999999999999s"}}', "out of range"),
        (b'{"goAway": {"timeLeft": "-5s"}}', "must not be negative"),
        ('{"goAway": {"timeLeft": "٣s"}}'.encode(), "not a protobuf duration"),
        (b'{"goAway": {"timeLeft": "NaNs"}}', "not a protobuf duration"),
    ],
)
def test_the_reported_hostile_numbers_are_protocol_errors(frame: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match) as caught:
        parse_server_frame(frame)
    assert caught.value.size == len(frame)


def test_good_numbers_still_parse() -> None:
    usage = parse_server_frame(
        b'{"usageMetadata": {"promptTokenCount": 15, "responseTokenCount": "25",'
        b' "totalTokenCount": 9223372036854775807}}'
    ).messages[0]
    assert isinstance(usage, UsageMetadata)
    assert (usage.prompt_token_count, usage.response_token_count) == (15, 25)
    assert usage.total_token_count == INT64_MAX
    go_away = parse_server_frame(b'{"goAway": {"timeLeft": "0.5s"}}').messages[0]
    assert isinstance(go_away, GoAway) and go_away.time_left == 0.5
    assert parse_duration("-1.5s") == -1.5  # a Duration may be negative; timeLeft may not
