"""Direct tests of ``CredentialSlot`` (client contract 1) and ``Timers``."""

from __future__ import annotations

from tunnelproof.session.actions import CancelTimer, SetTimer
from tunnelproof.session.credential_slot import CredentialSlot
from tunnelproof.session.credentials import Credential
from tunnelproof.session.timers import Timer, Timers

WALL = 1_800_000_000.0


def cred(window: float = 60.0) -> Credential:
    return Credential(
        kind="ephemeral_token",
        secret="auth_tokens/t",
        ws_base="ws://127.0.0.1:9",
        expires_at=WALL + 1800,
        new_session_expires_at=WALL + window,
    )


def test_only_the_request_in_flight_is_answered() -> None:
    slot = CredentialSlot()
    first = slot.requested()
    assert slot.abandoned() == first and slot.request is None
    second = slot.requested()
    assert not slot.answered(first), "an abandoned request's answer is ignored"
    assert slot.answered(second) and slot.request is None
    assert not slot.answered(second), "answered once"


def test_reuse_is_counted_per_attempt_until_the_handshake_completes() -> None:
    slot = CredentialSlot()
    slot.fetched(cred())
    assert not slot.tried
    slot.used()
    assert slot.tried and not slot.reused, "the first attempt with a fresh token"
    slot.used()
    assert slot.reused
    slot.spent()
    assert slot.usable(WALL) is None, "a completed handshake spends the token"


def test_a_token_is_usable_only_within_its_new_session_window() -> None:
    slot = CredentialSlot()
    slot.fetched(cred(window=60.0))
    assert slot.usable(WALL + 57) is not None
    assert slot.usable(WALL + 58.5) is None, "2 s to spare for the handshake"


def test_refused_and_discarded_tokens_are_never_offered_again() -> None:
    slot = CredentialSlot()
    slot.fetched(cred())
    slot.used()
    slot.refused()
    assert slot.usable(WALL) is None
    slot.fetched(cred())
    slot.discard()
    assert slot.usable(WALL) is None and not slot.tried


def test_a_replaced_or_cancelled_timer_does_not_fire() -> None:
    timers = Timers()
    first = timers.set(Timer.RETRY, 1.0)
    second = timers.set(Timer.RETRY, 2.0)
    assert isinstance(first, SetTimer) and first.serial != second.serial
    assert timers.fired("retry", first.serial) is None, "replaced"
    assert timers.fired("retry", second.serial) is Timer.RETRY
    assert Timer.RETRY not in timers
    timers.set(Timer.CLOSE, 3.0)
    assert timers.cancel(Timer.CLOSE) == CancelTimer("close")
    assert timers.cancel(Timer.CLOSE) is None, "nothing to tell the driver twice"
    assert timers.fired("no-such-timer", 1) is None
