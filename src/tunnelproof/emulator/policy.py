"""``EmulatorPolicy``: every duration and every behaviour of the emulator in one value.

All durations are in seconds (floats), so a test can run a "10-minute" connection in two
seconds by setting ``connection_lifetime=2.0``. Defaults follow
``shared/reference/live-api-protocol.md`` sections 2 and 5; where the reference is unsure
the default is our assumption and the field is configurable (see docs/emulator.md).

The policy is mutable on purpose: the fault controls change it while the server runs, and
every rule reads it at the moment it decides, so a change applies from the next decision.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tunnelproof.protocol.close_codes import (
    REASON_DEADLINE_EXPIRED,
    REASON_INTERNAL_ERROR,
    REASON_INVALID_ARGUMENT,
)
from tunnelproof.protocol.types import HANDLE_VALIDITY_SECONDS

# Google's standard UNAUTHENTICATED text; used where the reference records no close reason.
REASON_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential."
)

TokenRejection = Literal["http", "close"]


@dataclass(slots=True)
class EmulatorPolicy:
    """What the emulator does, and when. Every field may be changed while it runs."""

    # -- connection and session lifetimes (reference section 5) -----------------------
    connection_lifetime: float = 600.0
    """A connection is closed this long after it opened ("around 10 minutes")."""
    go_away_lead: float = 50.0
    """``goAway`` is sent this long before the lifetime ends (observed ``"50s"``)."""
    lifetime_close_code: int = 1011
    lifetime_close_reason: str = REASON_DEADLINE_EXPIRED
    session_limit_audio: float = 900.0
    """Session length without context-window compression (15 min, audio-only)."""
    session_limit_video: float = 120.0
    """Session length without compression once video was sent (2 min)."""
    session_limit_close_code: int = 1011
    session_limit_close_reason: str = REASON_DEADLINE_EXPIRED
    handle_validity: float = HANDLE_VALIDITY_SECONDS
    """Handles stay valid this long after the session's last connection ended (2 h)."""

    # -- ephemeral tokens (reference section 2) ----------------------------------------
    token_default_uses: int = 1
    token_default_expire: float = 1800.0
    token_default_new_session: float = 60.0
    token_max_ahead: float = 20 * 3600.0
    """``expireTime``/``newSessionExpireTime`` must be less than this far ahead (20 h)."""
    strict_token_uses: bool = False
    """Every connection (resumes too) consumes a use: reproduces the seed's 401 loop."""
    token_rejection: TokenRejection = "http"
    """How an unknown/expired/used token is refused at the upgrade: HTTP 401 or a close."""
    token_rejection_close_code: int = 1008
    token_rejection_close_reason: str = REASON_UNAUTHENTICATED
    token_expired_close_code: int = 1008
    """Close used when a token's ``expireTime`` passes during a session."""
    token_expired_close_reason: str = REASON_UNAUTHENTICATED
    token_response_echo: bool = False
    """Echo ``expireTime``/``newSessionExpireTime``/``uses`` in the mint response.

    Off by default: the reference reports Google answers with ``name`` only.
    """

    # -- credential errors that Google reports as close reasons (section 1.2) ----------
    api_key_invalid_close_code: int = 1007
    unregistered_caller_close_code: int = 1008
    auth_close_timeout: float = 10.0
    """A refused credential is closed after the first message, or after this long."""

    # -- resumption (section 5) --------------------------------------------------------
    invalid_handle_close_code: int = 1007
    invalid_handle_close_reason: str = REASON_INVALID_ARGUMENT
    resume_while_open_close_code: int = 1011
    resume_while_open_close_reason: str = REASON_INTERNAL_ERROR
    resume_takeover_idle: float | None = 10.0
    """A resume may take over a session whose open socket has been silent this long (nothing
    heard from it: no frame, ping or pong): the old socket is pinged, and if nothing comes
    back within ``resume_probe_timeout`` it is aborted and the resume gets in. Otherwise the
    resume is refused with ``resume_while_open_close_code``. ``None``: refuse while the old
    socket is open, however long it is silent."""
    resume_probe_timeout: float = 1.0
    """How long the ping to a silent old socket may go unanswered before it counts as dead
    (0: no ping, silence alone decides)."""
    refused_resume_close_code: int = 1011
    refused_resume_close_reason: str = REASON_INTERNAL_ERROR
    refuse_resume_after_lifetime: bool = False
    """Fault: a connection ended at its lifetime (1011) takes its session with it, so the
    resume is refused with ``invalid_handle_close_code`` (1007), as reported on 3.8."""
    resume_restores_nothing: bool = False
    """Fault: every resume is accepted but restores no history ("the model greets afresh")."""

    # -- frames -------------------------------------------------------------------------
    text_frames: bool = False
    """Send server frames as text instead of binary (binary is what Google sends)."""
    usage_metadata: bool = True
    """Send a ``usageMetadata`` message after each completed turn."""

    # -- generation pacing ------------------------------------------------------------
    text_chunk_words: int = 3
    """Words per ``modelTurn`` text part in TEXT modality."""
    text_chunk_interval: float = 0.02
    """Seconds between text chunks at ``generation_speed`` 1.0."""
    audio_chunk_duration: float = 0.04
    """Seconds of 24 kHz audio per ``inlineData`` chunk."""
    seconds_per_word: float = 0.25
    """Seconds of synthesised speech per word of the answer."""
    generation_speed: float = 1.0
    """Pacing factor: audio is sent at real time times this (0 or less = no pacing)."""
    tool_call_delay: float = 0.0
    """Seconds to wait before sending a ``toolCall``."""
    think_delay: float = 0.0
    """Seconds of silence between reading a user turn and the first output (a model that
    thinks, or a slow tool). Wall seconds, not scaled by ``generation_speed``; the
    connection stays healthy meanwhile (pings are answered, input is read)."""
    handle_delay: float = 0.04
    """Seconds between ``turnComplete`` and the ``sessionResumptionUpdate`` with the new
    handle (reported 20-70 ms). Wall seconds, not scaled by ``generation_speed``."""
    interaction_status: bool = True
    """Send ``interactionStatus`` alongside every ``turnComplete``."""
    background_reasoning: float = 0.0
    """If above 0: the model keeps reasoning this many seconds after ``turnComplete``, which
    then carries ``interactionStatus: IN_PROGRESS``; a ``serverContent`` with
    ``interactionStatus: IDLE`` ends it, and only then is the new handle issued."""
    go_away_on_connect: float | None = None
    """If set, every connection gets ``goAway`` with this ``timeLeft`` right after
    ``setupComplete`` (a server that sends goAway on every connection), then closes after it."""

    # -- response modalities (reference sections 6 and 10) ------------------------------
    modality_close_code: int = 1007
    """Close code for a setup asking a modality the model cannot answer in (TEXT on the
    audio-only Live models); the reason names the model and its modality."""

    feature_close_code: int = 1008
    """Close code for a setup asking a feature the model does not have (proactive audio
    switched off on gemini-3.8-live, affective dialog on 3.8 or 3.1, proactive audio on
    3.1); the reason is Google's recorded "Operation is not implemented, ..." text."""

    # -- audio input (automatic activity detection) ------------------------------------
    vad_energy_threshold: float = 500.0
    """RMS (s16 units) above which an input chunk counts as speech."""
    vad_silence_duration: float = 0.5
    """Audio seconds of silence that end an utterance (setup's silenceDurationMs wins)."""

    # -- pongs (fault) ---------------------------------------------------------------------
    pong_delay: float = 0.0
    withhold_pongs: bool = False

    # -- models -----------------------------------------------------------------------
    extra_models: frozenset[str] = field(default_factory=frozenset)
    """Model IDs accepted besides ``protocol.models.LIVE_MODELS``."""

    def update(self, changes: Mapping[str, Any]) -> EmulatorPolicy:
        """Set fields from ``changes`` in place (unknown names raise ``KeyError``)."""
        names = {f.name: f for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise KeyError(f"EmulatorPolicy has no field {name!r}")
            current = getattr(self, name)
            if names[name].type == "float" and type(current) is int:
                # EmulatorPolicy(generation_speed=0) holds an int: coerce by the declared
                # type, or "0.5" would be refused as "not an integer" and -1 let through.
                current = float(current)
            setattr(self, name, _coerce(name, value, current))
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (frozensets become sorted lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = sorted(value) if isinstance(value, frozenset) else value
        return out

    def go_away_at(self) -> float:
        """Seconds after opening at which ``goAway`` is due (never negative)."""
        return max(0.0, self.connection_lifetime - self.go_away_lead)


_OPTIONAL_FLOATS = frozenset({"resume_takeover_idle", "go_away_on_connect"})


def _coerce(name: str, value: Any, current: Any) -> Any:
    """Keep field types stable when values come from JSON or the command line."""
    if name in _OPTIONAL_FLOATS:
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        return _coerce(name + " (number)", value, 0.0)
    if isinstance(current, bool):
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"{name} must be a number")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        # Every float field is a duration, a pace or a threshold: a negative or non-finite
        # one would make timers fire at once or never (a hot loop or a hang), not a fault.
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        return number
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"{name} must be an integer")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(current, frozenset):
        return frozenset(value)
    return value
