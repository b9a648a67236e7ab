"""The outbox's audio accounting (issue 13): audio that leaves the replay window is
remembered until confirmed, and drops during an outage are gathered for one report."""

from __future__ import annotations

import pytest

from tunnelproof.session.outbox import AudioDropLedger, Outbox, OutboxLimits
from tunnelproof.session.outgoing import ClientMessage, Outgoing

PCM_100MS = b"\x00\x00" * 1600


def audio(seq: int) -> Outgoing:
    return Outgoing.of(seq, ClientMessage.audio(PCM_100MS), 0.0)


def test_audio_leaving_the_replay_window_is_remembered_not_forgotten() -> None:
    box = Outbox(OutboxLimits(max_audio_ms=300))
    for seq in range(1, 6):
        box.mark_sent(audio(seq))
    assert [i.seq for i in box.unconfirmed] == [3, 4, 5]
    assert [a.seq for a in box.unverified] == [1, 2]
    assert sum(a.audio_ms for a in box.unverified) == pytest.approx(200)
    assert [a.seq for a in box.take_unverified()] == [1, 2]
    assert not box.unverified


def test_the_drop_ledger_reports_an_outage_once() -> None:
    ledger = AudioDropLedger()
    assert ledger.take() is None
    for seq in range(10):
        ledger.add([seq], 20.0, "audio older than its time to live")
    ledger.add([10, 11], 40.0, "outbox bound reached")
    ledger.add([], 0.0, "nothing")
    taken = ledger.take()
    assert taken is not None
    seqs, ms, reason = taken
    assert seqs == tuple(range(12)) and ms == pytest.approx(240.0)
    assert reason == "audio older than its time to live; outbox bound reached"
    assert ledger.take() is None
