"""Direct tests of ``Transcript``: the client's record that re-seeds a fresh session."""

from __future__ import annotations

from tunnelproof.protocol.client_messages import Turn
from tunnelproof.session.transcript import DEFAULT_MAX_BYTES, Transcript


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


def test_bounded_by_bytes_keeping_the_newest_turns() -> None:
    t = Transcript()  # the default bound
    big = "x" * (5 * 1024 * 1024)
    for k in range(3):
        t.add("user", f"{k}{big}")
    assert t.size <= DEFAULT_MAX_BYTES
    assert sum(len(turn.text.encode()) for turn in t.snapshot()) == t.size
    (last,) = t.snapshot()
    assert last.text.endswith("x") and len(last.text) == DEFAULT_MAX_BYTES, "its end is kept"
    t.add("model", "short answer")
    assert t.snapshot()[-1] == Turn("model", "short answer")
    assert t.size <= DEFAULT_MAX_BYTES


def test_a_model_turn_in_progress_is_bounded_too() -> None:
    t = Transcript(max_bytes=1000)
    for _ in range(10_000):  # a thousand deltas a second for ten seconds, never completed
        t.model_output("delta ")
    assert len(t.partial_model_text.encode()) <= 1000
    assert t.partial_model_text.endswith("delta ")
    t.commit_model()
    assert t.size <= 1000


def test_byte_bounds_never_split_a_character() -> None:
    t = Transcript(max_bytes=7)
    t.add("user", "ééééé")  # 10 bytes
    (turn,) = t.snapshot()
    assert turn.text == "ééé" and t.size == 6


def test_forget_and_load_keep_the_byte_count() -> None:
    t = Transcript()
    t.add("user", "hello")
    t.add("user", "world")
    t.forget("user", "hello")
    assert t.size == 5
    t.load([Turn("user", "abc"), Turn("model", "de")])
    assert t.size == 5
