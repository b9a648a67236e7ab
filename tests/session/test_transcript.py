"""Direct tests of ``Transcript``: the client's record that re-seeds a fresh session."""

from __future__ import annotations

from tunnelproof.protocol.client_messages import Turn
from tunnelproof.session.transcript import Transcript


def test_turns_are_recorded_in_order_and_model_parts_joined() -> None:
    t = Transcript()
    t.add("user", "hello")
    t.model_output("Hi ")
    t.model_output("there")
    assert t.partial_model_text == "Hi there"
    t.add("user", "again")  # a new user turn closes the model's
    assert t.snapshot() == (Turn("user", "hello"), Turn("model", "Hi there"), Turn("user", "again"))


def test_transcribed_speech_becomes_a_user_turn_before_the_model_answers() -> None:
    t = Transcript()
    t.user_transcription("what time ")
    t.user_transcription("is it")
    t.model_output("Noon.")
    t.commit_model()
    assert t.snapshot() == (Turn("user", "what time is it"), Turn("model", "Noon."))


def test_forget_removes_only_the_newest_exact_match() -> None:
    t = Transcript()
    for text in ("a", "b", "a"):
        t.add("user", text)
    assert t.forget("user", "a")
    assert t.snapshot() == (Turn("user", "a"), Turn("user", "b"))
    assert not t.forget("model", "a")


def test_bounded_to_the_newest_turns_also_when_loaded() -> None:
    t = Transcript(max_turns=2)
    for text in ("1", "2", "3"):
        t.add("user", text)
    assert [turn.text for turn in t.snapshot()] == ["2", "3"]
    t.load([Turn("user", str(i)) for i in range(5)])
    assert [turn.text for turn in t.snapshot()] == ["3", "4"]


def test_seed_message_is_history_without_asking_for_an_answer() -> None:
    t = Transcript()
    assert t.seed_message() is None
    t.add("user", "hello")
    t.model_output("hi")  # uncommitted output is part of the seed
    seed = t.seed_message()
    assert seed == {
        "clientContent": {
            "turns": [
                {"role": "user", "parts": [{"text": "hello"}]},
                {"role": "model", "parts": [{"text": "hi"}]},
            ],
            "turnComplete": False,
        }
    }


def test_empty_and_blank_text_is_not_a_turn() -> None:
    t = Transcript()
    t.add("user", "")
    t.model_output("   ")
    t.commit_model()
    assert t.snapshot() == ()
