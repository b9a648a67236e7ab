"""Close codes and reason texts: what each means and what a client should do.

The reason texts are verbatim from what users have reported seeing from Google (see
``shared/reference/live-api-protocol.md`` section 5). The emulator sends the same texts so
that the classifier is exercised against the real strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tunnelproof.protocol.models import migrate_model

# RFC 6455 section 5.5: a control frame payload is at most 125 bytes, two of them the code.
MAX_CLOSE_REASON_BYTES = 123

REASON_INVALID_ARGUMENT = "Request contains an invalid argument."
REASON_DEADLINE_EXPIRED = "Deadline expired before operation could complete."
REASON_INTERNAL_ERROR = "Internal error encountered."
REASON_INTERNAL_ERROR_OCCURRED = "Internal error occurred."
REASON_UNAVAILABLE = "The service is currently unavailable."
REASON_QUOTA = "You exceeded your current quota, please check your plan and billing details."
REASON_RESOURCE_EXHAUSTED = "Resource has been exhausted (e.g. check quota)."
REASON_NOT_IMPLEMENTED = "Operation is not implemented, or supported, or enabled."
REASON_API_KEY_INVALID = "API key not valid. Please pass a valid API key."
REASON_API_KEY_EXPIRED = "API key expired. Please renew the API key."
REASON_UNREGISTERED_CALLER = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API."
)
REASON_KEEPALIVE_TIMEOUT = "keepalive ping timeout"


def model_not_found_reason(model: str, version: str) -> str:
    """The 1008 text for an unknown or retired model, cut to the close-reason limit."""
    name = model if model.startswith("models/") else f"models/{model}"
    return truncate_reason(
        f"{name} is not found for API version {version}, or is not supported for "
        "bidiGenerateContent. Call ListModels to see the list of available models and "
        "their supported methods."
    )


def truncate_reason(reason: str) -> str:
    """Cut ``reason`` to 123 UTF-8 bytes without splitting a character."""
    data = reason.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


class CloseClass(StrEnum):
    """What a close means for a reconnecting client."""

    RETRY = "retry"  # transient: reconnect with backoff, resume with the handle
    EXPECTED = "expected"  # planned (after goAway, or a normal close): resume at once
    FATAL_CONFIG = "fatal_config"  # the app's configuration is wrong: stop, say what to fix
    FATAL_AUTH = "fatal_auth"  # credentials rejected: stop, the user must sign in again
    BAD_REQUEST = "bad_request"  # we sent something invalid: do not resend the same thing
    BAD_RESUME = "bad_resume"  # resume refused or state bad: drop handle, fresh session


@dataclass(frozen=True, slots=True)
class CloseVerdict:
    """The classification of one close, with advice a person can act on."""

    kind: CloseClass
    code: int | None
    reason: str
    advice: str
    throttled: bool = False  # quota/overload: retry, but not eagerly

    @property
    def fatal(self) -> bool:
        """True when reconnecting cannot help without a change by the app or the user."""
        return self.kind in (CloseClass.FATAL_CONFIG, CloseClass.FATAL_AUTH, CloseClass.BAD_REQUEST)


_RETRY_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014, 1015})
_PROTOCOL_MISUSE_CODES = frozenset({1002, 1003, 1009, 1010})
_AUTH_MARKERS = (
    "api key not valid",
    "api key expired",
    "unregistered callers",
    "unauthenticated",
    "permission denied",
    "permission_denied",
    "token expired",
    "token is expired",
    # Google's standard UNAUTHENTICATED text (the emulator closes expired tokens with it).
    "invalid authentication credentials",
)
_QUOTA_MARKERS = ("quota", "resource has been exhausted", "resource_exhausted", "throttled")


def classify_close(
    code: int | None,
    reason: str = "",
    *,
    resuming: bool = False,
    after_go_away: bool = False,
) -> CloseVerdict:
    """Classify a WebSocket close received from the server.

    ``code`` is ``None`` (or 1006) when the connection died without a close frame.
    ``resuming`` says the connection was opened with a resumption handle, which turns a
    1007/1008 about the request into a verdict on the handle. ``after_go_away`` says the
    server had announced the close, which makes 1000 and the deadline 1011 expected.
    """
    text = reason or ""
    low = text.lower()
    if code is None or code == 1006:
        return CloseVerdict(CloseClass.RETRY, code, text, "The connection dropped; reconnecting.")
    if any(marker in low for marker in _AUTH_MARKERS):
        return CloseVerdict(
            CloseClass.FATAL_AUTH,
            code,
            text,
            "The server rejected the credentials. Check the API key or the token service; "
            "a user token may need a new sign-in.",
        )
    if code == 1000:
        return CloseVerdict(
            CloseClass.EXPECTED, code, text, "The server closed normally; resuming."
        )
    if code == 1011 and (after_go_away or REASON_DEADLINE_EXPIRED.lower() in low):
        return CloseVerdict(
            CloseClass.EXPECTED,
            code,
            text,
            "The connection reached its lifetime limit; resuming.",
        )
    if code in _RETRY_CODES or 4000 <= code <= 4999 or code not in range(1000, 1016):
        throttled = any(marker in low for marker in _QUOTA_MARKERS)
        advice = (
            "The server is over quota or overloaded; retrying with backoff."
            if throttled
            else "The server closed the connection with an error; retrying."
        )
        return CloseVerdict(CloseClass.RETRY, code, text, advice, throttled=throttled)
    if code == 1008:
        model_hint = _model_hint(text)
        if model_hint is not None:
            return CloseVerdict(CloseClass.FATAL_CONFIG, code, text, model_hint)
        if REASON_NOT_IMPLEMENTED.lower()[:30] in low:
            return CloseVerdict(
                CloseClass.FATAL_CONFIG,
                code,
                text,
                "The model does not support a feature in this session's config "
                "(e.g. a modality, proactivity or affective dialog). "
                "Remove it or pick another model.",
            )
        if resuming:
            return CloseVerdict(
                CloseClass.BAD_RESUME,
                code,
                text,
                "The server refused the resumption handle; starting a fresh session.",
            )
        return CloseVerdict(
            CloseClass.FATAL_CONFIG,
            code,
            text,
            "The server refused this session's setup (policy violation). "
            "Check the model and config.",
        )
    if code == 1007:
        if resuming:
            return CloseVerdict(
                CloseClass.BAD_RESUME,
                code,
                text,
                "The server rejected the resumed session's state; starting a fresh session "
                "re-seeded from the transcript.",
            )
        return CloseVerdict(
            CloseClass.BAD_REQUEST,
            code,
            text,
            "The server rejected a message as invalid (a setup field, a deprecated "
            "mediaChunks, or a second setup). Fix the config or the message.",
        )
    if code in _PROTOCOL_MISUSE_CODES:
        return CloseVerdict(
            CloseClass.BAD_REQUEST,
            code,
            text,
            "The server rejected the frames we sent (protocol error or message too big).",
        )
    return CloseVerdict(CloseClass.RETRY, code, text, "Unrecognised close; retrying with backoff.")


def classify_handshake_status(status: int, reason: str = "") -> CloseVerdict:
    """Classify an HTTP status that refused the WebSocket upgrade."""
    if status in (401, 403):
        return CloseVerdict(
            CloseClass.FATAL_AUTH,
            None,
            reason,
            f"The server refused the handshake with HTTP {status}: the credential is invalid, "
            "expired or already used.",
        )
    if status == 404:
        return CloseVerdict(
            CloseClass.FATAL_CONFIG,
            None,
            reason,
            "HTTP 404 on the Live endpoint: check the base URL and API version.",
        )
    if status == 429:
        return CloseVerdict(
            CloseClass.RETRY, None, reason, "Rate limited; retrying.", throttled=True
        )
    if status >= 500:
        return CloseVerdict(CloseClass.RETRY, None, reason, f"HTTP {status}; retrying.")
    return CloseVerdict(
        CloseClass.BAD_REQUEST,
        None,
        reason,
        f"The server refused the handshake with HTTP {status}.",
    )


def _model_hint(reason: str) -> str | None:
    low = reason.lower()
    if (
        "not found for api version" not in low
        and "not supported for bidigeneratecontent" not in low
        and "publisher model" not in low
    ):
        return None
    word = reason.split()[0] if reason.split() else ""
    model = word.removeprefix("models/")
    migration = migrate_model(model) if model else None
    if migration is not None and migration.changed:
        return f"The model {model!r} is not available. {migration.explanation}"
    return (
        f"The model {model or '(unknown)'!r} is not available for the Live API on this API "
        "version. Set LiveConfig.model (or TUNNELPROOF_MODEL) to a current Live model, e.g. "
        f"{migrate_model('').model!r}."
    )
