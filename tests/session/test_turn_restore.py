"""A drop between ``turnComplete`` and the handle that holds the turn: nothing told twice.

Google sends the resumable handle that holds a turn some 20-70 ms after ``turnComplete``
(reference section 10). A link that drops in that window resumes from the older handle.
Before ``restore.py`` the session replayed the turn's question and the model answered it
a second time (the user heard it twice, with no event saying why). Now the completed turn
goes back as history: ``clientContent`` with the question and the model's answer and
``turnComplete: false``, never the question again. Each test here fails on the old code.
"""

from __future__ import annotations

import base64
from typing import Any

from tunnelproof.protocol.client_messages import (
    FunctionResponse,
    Turn,
    client_content,
    realtime_audio,
    realtime_text,
    tool_response,
)
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import app_events as ev
from tunnelproof.session.actions import CloseSocket

from .session_harness import Harness

PCM = b"\x01\x00" * 320  # 20 ms at 16 kHz


def history(*turns: tuple[str, str]) -> dict[str, Any]:
    return {
        "clientContent": {
            "turns": [{"role": role, "parts": [{"text": text}]} for role, text in turns],
            "turnComplete": False,
        }
    }


def connected(config: LiveConfig | None = None) -> Harness:
    h = Harness(config=config) if config is not None else Harness()
    h.start()
    h.connect()
    h.handle_update("h0")  # the state before anything was said
    return h


def answer(h: Harness, text: str, *, complete: bool = True) -> None:
    h.server(serverContent={"outputTranscription": {"text": text}})
    if complete:
        h.server(serverContent={"generationComplete": True})
        h.server(serverContent={"turnComplete": True})


def drop_and_resume(h: Harness) -> list[dict[str, Any]]:
    """Drop the link (no close frame), resume, and return what the resumed setup sent."""
    h.closed(1006)
    h.advance(0.01)
    h.connect()
    assert h.setup_handle() == "h0"
    return h.frames()[1:]


def test_a_text_answer_completed_in_the_window_is_restored_not_asked_again() -> None:
    h = connected()
    q = h.send(realtime_text("my favourite colour is teal"))
    answer(h, "Teal, noted.")
    h.clear()
    sent = drop_and_resume(h)
    assert sent == [history(("user", "my favourite colour is teal"), ("model", "Teal, noted."))]
    assert h.of(ev.TurnsRestored) == [ev.TurnsRestored(1, (q.seq,), ())]
    assert h.of(ev.Rewound) == []  # nothing was cut: nothing for the app to discard
    assert h.of(ev.Resumed)[0].replayed == 1  # the same send, in another form
    # The transcript holds the exchange once (it re-seeds a fresh session later).
    assert [t.text for t in h.m.transcript.snapshot()].count("Teal, noted.") == 1
    h.clear()
    h.handle_update("h1")  # issued after the server read the restored history
    assert h.of(ev.Delivered) == [ev.Delivered((q.seq,))]
    # A drop now replays nothing: the handle holds the restored turn.
    h.handle_update("h1")
    h.closed(1006)
    h.advance(0.01)
    h.connect()
    assert h.frames()[1:] == []


def test_a_spoken_question_is_restored_from_its_input_transcription() -> None:
    h = connected()
    chunks = [h.send(realtime_audio(PCM)) for _ in range(10)]
    h.server(serverContent={"inputTranscription": {"text": "what time is it", "finished": True}})
    answer(h, "It is noon.")
    h.clear()
    sent = drop_and_resume(h)
    assert sent == [history(("user", "what time is it"), ("model", "It is noon."))]
    seqs = tuple(c.seq for c in chunks)
    assert h.of(ev.TurnsRestored) == [ev.TurnsRestored(1, seqs, ())]
    assert h.m.metrics.audio_ms_replayed == 0  # the speech is not played to the model again
    h.handle_update("h1")
    assert h.of(ev.Delivered) == [ev.Delivered(seqs)]  # every chunk, through the restore


def test_speech_without_input_transcription_restores_the_answer_and_says_what_is_missing() -> None:
    h = connected(LiveConfig(model="gemini-3.8-live", input_audio_transcription=False))
    chunks = [h.send(realtime_audio(PCM)) for _ in range(3)]
    answer(h, "It is noon.")
    h.clear()
    sent = drop_and_resume(h)
    assert sent == [history(("model", "It is noon."))]
    (restored,) = h.of(ev.TurnsRestored)
    assert restored.seqs == tuple(c.seq for c in chunks)
    assert not restored.reasked
    assert restored.missing == ("what the user said (speech without input transcription)",)


def test_when_nothing_is_known_as_text_the_speech_is_replayed_and_the_event_says_so() -> None:
    config = LiveConfig(
        model="gemini-3.8-live", input_audio_transcription=False, output_audio_transcription=False
    )
    h = connected(config)
    [h.send(realtime_audio(PCM)) for _ in range(3)]
    audio = base64.b64encode(b"\x00\x00" * 240).decode()
    part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": audio}}
    h.server(serverContent={"modelTurn": {"parts": [part]}})
    h.server(serverContent={"turnComplete": True})
    h.clear()
    sent = drop_and_resume(h)
    assert [next(iter(f["realtimeInput"])) for f in sent] == ["audio"] * 3  # as before
    (restored,) = h.of(ev.TurnsRestored)
    assert restored.reasked and restored.seqs == ()
    assert "the model's answer (no text: turn on output transcription)" in restored.missing


def test_several_turns_completed_in_the_window_are_restored_in_order() -> None:
    h = connected()
    first = h.send(realtime_text("one"))
    answer(h, "You said one.")
    second = h.send(realtime_text("two"))  # no handle between (a server that sends it late)
    answer(h, "You said two.")
    h.clear()
    sent = drop_and_resume(h)
    assert sent == [
        history(
            ("user", "one"),
            ("model", "You said one."),
            ("user", "two"),
            ("model", "You said two."),
        )
    ]
    assert h.of(ev.TurnsRestored) == [ev.TurnsRestored(2, (first.seq, second.seq), ())]
    h.handle_update("h1")
    assert h.of(ev.Delivered) == [ev.Delivered((first.seq, second.seq))]


def test_a_tool_call_inside_the_restored_turn_is_not_cancelled_nor_its_answer_dropped() -> None:
    h = connected()
    q = h.send(realtime_text("turn on the lights"))
    h.handle_update(None, resumable=False)
    h.server(toolCall={"functionCalls": [{"id": "c1", "name": "lights", "args": {}}]})
    done = h.send(tool_response([FunctionResponse("c1", "lights", {"ok": True})]))
    assert done.sent
    answer(h, "The lights are on.")
    h.clear()
    sent = drop_and_resume(h)
    assert sent == [history(("user", "turn on the lights"), ("model", "The lights are on."))]
    assert h.of(ev.SendDropped) == []  # the tool response is covered, not dropped
    assert h.of(ev.Rewound) == []  # the call was answered: nothing to cancel or redo
    (restored,) = h.of(ev.TurnsRestored)
    assert restored.seqs == (q.seq, done.seq)
    assert restored.missing == ("tool calls c1 (only the answer's text is restored)",)
    h.handle_update("h1")
    assert h.of(ev.Delivered) == [ev.Delivered((q.seq, done.seq))]


def test_an_interrupted_turn_is_restored_and_the_cut_one_after_it_asked_again() -> None:
    h = connected()
    h.send(realtime_text("tell me a story"))
    answer(h, "Once upon a", complete=False)
    second = h.send(realtime_text("stop, what time is it"))  # barge-in
    h.server(serverContent={"interrupted": True})
    h.server(serverContent={"turnComplete": True})
    answer(h, "It is", complete=False)  # the answer to the barge-in, cut by the drop
    h.clear()
    sent = drop_and_resume(h)
    assert sent == [
        history(("user", "tell me a story"), ("model", "Once upon a")),
        {"realtimeInput": {"text": "stop, what time is it"}},  # owed: asked again
    ]
    (restored,) = h.of(ev.TurnsRestored)
    assert restored.turns == 1 and restored.missing == ()
    (rewound,) = h.of(ev.Rewound)  # only the turn the drop cut
    assert rewound.partial_text == "It is" and rewound.reasked and not rewound.reply_lost
    assert second.seq not in restored.seqs


def test_a_restore_rejected_by_the_server_reports_every_send_it_covers() -> None:
    h = connected()
    chunks = [h.send(realtime_audio(PCM)) for _ in range(2)]
    h.server(serverContent={"inputTranscription": {"text": "hello", "finished": True}})
    answer(h, "Hi.")
    drop_and_resume(h)
    h.clear()
    h.closed(1007, "Request contains an invalid argument.")  # the server refuses it
    (dropped,) = h.of(ev.SendDropped)
    assert sorted(dropped.seqs) == [c.seq for c in chunks]


def test_a_fresh_session_is_re_seeded_and_not_restored_twice() -> None:
    h = Harness()
    h.start()
    h.connect()  # no handle ever arrives: the next session is fresh
    h.send(realtime_text("hello"))
    answer(h, "Hi there.")
    h.clear()
    h.closed(1006)
    h.advance(0.01)
    h.connect()
    assert h.of(ev.TurnsRestored) == []
    sent = h.frames()[1:]
    assert sent == [history(("user", "hello"), ("model", "Hi there."))]  # the seed, once
    assert h.of(ev.ContextReset)


def test_a_second_drop_resends_the_restore_and_a_later_window_extends_it() -> None:
    h = connected()
    h.send(realtime_text("one"))
    answer(h, "You said one.")
    drop_and_resume(h)
    # The link drops again before any handle: the restore is not held yet, so it goes again.
    assert drop_and_resume(h) == [history(("user", "one"), ("model", "You said one."))]
    h.send(realtime_text("two"))
    answer(h, "You said two.")
    h.clear()
    # A drop in the window of the next turn restores both, once each.
    assert drop_and_resume(h) == [
        history(
            ("user", "one"),
            ("model", "You said one."),
            ("user", "two"),
            ("model", "You said two."),
        )
    ]
    (restored,) = h.of(ev.TurnsRestored)
    assert restored.turns == 1 and len(restored.seqs) == 2


def test_a_handle_after_the_turn_leaves_nothing_to_restore() -> None:
    h = connected()
    h.send(client_content([Turn("user", "hello")]))
    answer(h, "Hi.")
    h.handle_update("h1")  # the turn's handle came in time
    h.clear()
    h.closed(1006)
    h.advance(0.01)
    h.connect()
    assert h.setup_handle() == "h1"
    assert h.frames()[1:] == []
    assert h.of(ev.TurnsRestored) == []


def test_an_open_tool_call_from_before_the_restored_turn_is_still_cancelled() -> None:
    # Found by the stateful model: only calls the restored sends answer are settled; a call
    # still open (made before, never answered) is not in the resumed state and is cancelled.
    h = connected()
    h.server(toolCall={"functionCalls": [{"id": "c1", "name": "lights", "args": {}}]})
    h.send(realtime_text("hello"))
    answer(h, "Hi.")
    h.clear()
    assert drop_and_resume(h) == [history(("user", "hello"), ("model", "Hi."))]
    (rewound,) = h.of(ev.Rewound)
    assert rewound.cancelled_tool_call_ids == ("c1",)
    late = h.send(tool_response([FunctionResponse("c1", "lights", {"ok": True})]))
    assert late.dropped  # never sent into a session that never saw the call


def test_a_go_away_deadline_before_the_turns_handle_restores_the_turn_on_the_handover() -> None:
    # The goAway deadline comes right after a turn; its handle does not come within the
    # grace either: the handover leaves without it, and the turn is restored, not re-asked.
    h = connected()
    q = h.send(realtime_text("hello"))
    answer(h, "Hi.")
    h.server(goAway={"timeLeft": "0s"})
    h.fire("goaway")
    h.fire("handle_grace")  # no handle came: hand over now
    assert h.actions_of(CloseSocket)[-1].reason == "goAway handover"
    h.clear()
    h.closed(1000)
    if h.pending_request() is not None:
        h.give_token()
    h.opened()
    h.setup_complete()
    assert h.setup_handle() == "h0"
    assert h.frames()[1:] == [history(("user", "hello"), ("model", "Hi."))]
    assert h.of(ev.TurnsRestored) == [ev.TurnsRestored(1, (q.seq,), ())]
