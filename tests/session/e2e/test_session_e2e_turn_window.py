"""The tunnel starts just as the answer ends: a drop between ``turnComplete`` and the handle.

Google sends the resumable handle that holds a turn some 20-70 ms after ``turnComplete``
(reference section 10); the emulator models it (``handle_delay``, docs/emulator.md
assumption 29), and these tests widen the window to seconds so the drop surely falls in
it. The real driver, the real emulator, loopback: the link is aborted right after the
client saw the turn complete. Before ``session/restore.py`` the resumed session replayed
the question and the model answered it a second time; now the finished turn is restored
as history and nothing is said twice, while the context keeps it.
"""

from __future__ import annotations

import random

import pytest

from tunnelproof.emulator import EmulatorServer, encode_speech, silence
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev

from .session_e2e_helpers import (
    ASK_FIRST,
    CONFIG,
    EXPECTED_FIRST,
    FAST_WATCHDOGS,
    FIRST,
    EmulatorMint,
    Recorder,
    fast_policy,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

WINDOW = 5.0  # seconds between turnComplete and its handle (Google: 20-70 ms)
CHUNK = 1280  # 40 ms at 16 kHz, 16-bit


ANSWER = f'You said: "{FIRST}".'


def model_answers(emu: EmulatorServer) -> int:
    """How many times the model finished the answer to :data:`FIRST`."""
    return sum(e["text"] == ANSWER for e in emu.controls.events(kind="turn_complete"))


async def drop_in_the_window(emu: EmulatorServer, session: LiveSession, rec: Recorder) -> int:
    """Abort the link right after the client saw the turn complete; wait for the resume."""
    await rec.wait(ev.TurnComplete, timeout=20)
    assert not session.last_turn_held, "the drop must fall before the turn's handle"
    mark = rec.mark()
    emu.controls.abort_connection()  # the tunnel starts just as the answer ends
    await rec.wait(ev.Resumed, since=mark, timeout=20)
    await emu.controls.wait_for_event("client_content", timeout=10)  # the restored turn
    return mark


async def test_a_typed_question_answered_before_the_drop_is_not_answered_again() -> None:
    async with (
        EmulatorServer(policy=fast_policy(handle_delay=WINDOW)) as emu,
        LiveSession(
            CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(3)
        ) as session,
    ):
        rec = Recorder(session)
        await rec.wait(ev.Connected)
        sent = await session.send_text(FIRST)
        mark = await drop_in_the_window(emu, session, rec)
        (restored,) = rec.of(ev.TurnsRestored)
        assert restored == ev.TurnsRestored(1, (sent.seq,), ())
        assert not rec.of(ev.Rewound)
        # The resumed server holds the exchange once, as history, and said nothing anew.
        history = [(e["role"], e["text"]) for e in emu.controls.history()]
        assert history == [("user", FIRST), ("model", ANSWER)]
        assert model_answers(emu) == 1
        assert not [e for e in rec.log[mark:] if isinstance(e, ev.OutputTranscript)]
        # ... and the context kept it.
        assert await rec.ask(ASK_FIRST) == EXPECTED_FIRST
        delivered = {s for e in rec.of(ev.Delivered) for s in e.seqs}
        assert sent.seq in delivered  # a handle after the restore holds it
        assert model_answers(emu) == 1
        conns = emu.controls.connections()
        assert [c["resumed"] for c in conns] == [False, True]


async def test_a_spoken_question_is_restored_from_its_transcription_not_spoken_again() -> None:
    async with (
        EmulatorServer(policy=fast_policy(handle_delay=WINDOW)) as emu,
        LiveSession(
            CONFIG, EmulatorMint(emu), watchdogs=FAST_WATCHDOGS, rng=random.Random(5)
        ) as session,
    ):
        rec = Recorder(session)
        await rec.wait(ev.Connected)
        pcm = encode_speech(FIRST) + silence(0.8)
        for start in range(0, len(pcm), CHUNK):
            assert not (await session.send_audio(pcm[start : start + CHUNK])).dropped
        await drop_in_the_window(emu, session, rec)
        (restored,) = rec.of(ev.TurnsRestored)
        assert restored.missing == () and not restored.reasked and restored.seqs
        history = [(e["role"], e["text"], e["source"]) for e in emu.controls.history()]
        assert history[:2] == [
            ("user", FIRST, "clientContent"),  # the user's words, from the transcription
            ("model", ANSWER, "model"),
        ]
        assert model_answers(emu) == 1
        assert session.metrics.audio_ms_replayed == 0  # the speech was not played again
        assert await rec.ask(ASK_FIRST) == EXPECTED_FIRST
        delivered = {s for e in rec.of(ev.Delivered) for s in e.seqs}
        assert set(restored.seqs) <= delivered  # every chunk ends delivered
