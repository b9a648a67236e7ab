"""Close-code classification, with the reason texts users have reported as cases."""

from __future__ import annotations

import pytest

from tunnelproof.protocol import (
    CloseClass,
    classify_close,
    classify_handshake_status,
    truncate_reason,
)
from tunnelproof.protocol.close_codes import MAX_CLOSE_REASON_BYTES, model_not_found_reason

# (code, reason, resuming, after_go_away, expected class): verbatim reasons from the reference, section 5.
CASES = [
    (1000, "", False, True, CloseClass.EXPECTED),
    (1000, "The operation was cancelled.", False, False, CloseClass.EXPECTED),
    (None, "", False, False, CloseClass.RETRY),
    (1006, "", False, False, CloseClass.RETRY),
    (1011, "Internal error occurred.", False, False, CloseClass.RETRY),
    (1011, "Internal error encountered.", True, False, CloseClass.RETRY),
    (1011, "The service is currently unavailable.", False, False, CloseClass.RETRY),
    (1011, "Deadline expired before operation could complete.", False, False, CloseClass.EXPECTED),
    (1011, "Deadline expired before operation could complete.", False, True, CloseClass.EXPECTED),
    (
        1011,
        "Thread was cancelled when writing StartStep status to channel.; Failed to close the streaming context; "
        "status = CANCELLED:",
        False,
        False,
        CloseClass.RETRY,
    ),
    (1011, "keepalive ping timeout", False, False, CloseClass.RETRY),
    (1012, "", False, False, CloseClass.RETRY),
    (1013, "", False, False, CloseClass.RETRY),
    (1014, "", False, False, CloseClass.RETRY),
    (1007, "Request contains an invalid argument.", False, False, CloseClass.BAD_REQUEST),
    (1007, "Request contains an invalid argument.", True, False, CloseClass.BAD_RESUME),
    (
        1007,
        "Unknown name \"responseModalities\" at 'setup': Cannot find field.",
        False,
        False,
        CloseClass.BAD_REQUEST,
    ),
    (1007, "API key expired. Please renew the API key.", False, False, CloseClass.FATAL_AUTH),
    (1007, "API key expired. Please renew the API key.", True, False, CloseClass.FATAL_AUTH),
    (1007, "Invalid resource field value in the request.", False, False, CloseClass.BAD_REQUEST),
    (
        1008,
        "models/gemini-live-2.5-flash-preview is not found for API version v1beta, or is not supported for "
        "bidiGenerateContent. Call",
        False,
        False,
        CloseClass.FATAL_CONFIG,
    ),
    (
        1008,
        "Operation is not implemented, or supported, or enabled.",
        False,
        False,
        CloseClass.FATAL_CONFIG,
    ),
    (
        1008,
        "Publisher Model projects/p/models/gemini-live-2.5-flash-preview-na",
        False,
        False,
        CloseClass.FATAL_CONFIG,
    ),
    (
        1008,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
        "or other form of API.",
        False,
        False,
        CloseClass.FATAL_AUTH,
    ),
    (1008, "Session not found.", True, False, CloseClass.BAD_RESUME),
    (1008, "API key not valid. Please pass a valid API key.", False, False, CloseClass.FATAL_AUTH),
    (1002, "", False, False, CloseClass.BAD_REQUEST),
    (1009, "message too big", False, False, CloseClass.BAD_REQUEST),
    (4000, "app specific", False, False, CloseClass.RETRY),
]


@pytest.mark.parametrize(("code", "reason", "resuming", "after_go_away", "expected"), CASES)
def test_classify_close(
    code: int | None, reason: str, resuming: bool, after_go_away: bool, expected: CloseClass
) -> None:
    verdict = classify_close(code, reason, resuming=resuming, after_go_away=after_go_away)
    assert verdict.kind is expected
    assert verdict.code == code and verdict.reason == reason
    assert verdict.advice


@pytest.mark.parametrize(
    "reason",
    [
        "You exceeded your current quota, please check your plan and billing details.",
        "Resource has been exhausted (e.g. check quota).",
    ],
)
def test_quota_1011_retries_but_is_marked_throttled(reason: str) -> None:
    verdict = classify_close(1011, reason)
    assert verdict.kind is CloseClass.RETRY and verdict.throttled and not verdict.fatal


def test_retired_model_advice_names_the_replacement() -> None:
    verdict = classify_close(1008, model_not_found_reason("gemini-2.0-flash-live-001", "v1beta"))
    assert verdict.fatal
    assert "gemini-2.0-flash-live-001" in verdict.advice
    assert "gemini-3.8-live" in verdict.advice


def test_unknown_model_advice_suggests_a_current_model() -> None:
    verdict = classify_close(1008, model_not_found_reason("gemini-made-up", "v1alpha"))
    assert verdict.kind is CloseClass.FATAL_CONFIG
    assert "gemini-made-up" in verdict.advice and "TUNNELPROOF_MODEL" in verdict.advice


def test_fatal_property() -> None:
    assert classify_close(1007, "x").fatal
    assert not classify_close(1011, "x").fatal
    assert not classify_close(1007, "x", resuming=True).fatal  # bad resume: fall back, not stop


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, CloseClass.FATAL_AUTH),
        (403, CloseClass.FATAL_AUTH),
        (404, CloseClass.FATAL_CONFIG),
        (429, CloseClass.RETRY),
        (500, CloseClass.RETRY),
        (503, CloseClass.RETRY),
        (400, CloseClass.BAD_REQUEST),
    ],
)
def test_classify_handshake_status(status: int, expected: CloseClass) -> None:
    assert classify_handshake_status(status).kind is expected


def test_model_not_found_reason_is_cut_to_the_close_reason_limit() -> None:
    reason = model_not_found_reason("gemini-live-2.5-flash-preview", "v1beta")
    assert len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
    assert reason.startswith(
        "models/gemini-live-2.5-flash-preview is not found for API version v1beta"
    )


def test_truncate_reason_never_splits_a_character() -> None:
    text = "é" * 100  # 200 bytes
    cut = truncate_reason(text)
    assert len(cut.encode()) <= MAX_CLOSE_REASON_BYTES
    assert cut == "é" * 61
    assert truncate_reason("short") == "short"
