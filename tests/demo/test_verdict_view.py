"""The verdict's rules and the view's rendering, on hand-made states (no I/O)."""

from __future__ import annotations

from rich.console import Console

from tunnelproof.demo.journey import FIRST_WORDS, train_journey
from tunnelproof.demo.model import DemoState, Disruption, Utterance
from tunnelproof.demo.verdict import judge
from tunnelproof.demo.view import live_view, summary


def good_state() -> DemoState:
    journey = train_journey()
    state = DemoState(length=journey.length, elapsed=58.0, connections=6, reconnects=5)
    for i, text in enumerate(journey.utterances):
        u = Utterance(text, float(i), status="answered", answer=f"answer {i}")
        state.utterances.append(u)
    state.utterances[-1].answer = f'You first said: "{FIRST_WORDS}".'
    state.disruptions = [
        Disruption("tunnel", "tunnel 4 s", 9.0, 13.0, 13.4, "resumed", 0.4, 1, 1),
        Disruption("station", "station: goAway", 21.0, 21.0, 21.1, "handover", 0.02, 0, 1),
        Disruption("crash", "server crash (1011)", 29.0, 29.0, 29.5, "resumed", 0.5, 0, 1),
        Disruption("drop", "drop mid-answer", 36.4, 36.4, 36.8, "resumed", 0.4, 1, 1, 12),
        Disruption("tunnel", "tunnel 8 s", 44.0, 52.0, 52.2, "resumed", 0.2, 1, 1),
    ]
    return state


def server_turns(state: DemoState) -> list[str]:
    return [u.text for u in state.utterances]


def test_a_good_run_passes() -> None:
    state = good_state()
    verdict = judge(state, train_journey(), server_turns(state))
    assert verdict.ok, verdict.checks
    assert verdict.figures["maxRecoveryAfterFault"] == 0.5
    assert verdict.figures["maxTunnelRecovery"] == 0.4


def test_lost_context_fails() -> None:
    state = good_state()
    state.utterances[-1].answer = 'You first said: "Remind me to call Grace".'
    verdict = judge(state, train_journey(), server_turns(state))
    assert not verdict.ok
    assert not verdict.check("context survived").ok


def test_paraphrase_only_counts_against_google() -> None:
    state = good_state()
    state.utterances[-1].answer = "You told me you are Ada, on the train to Zurich."
    assert not judge(state, train_journey(), server_turns(state)).ok
    assert judge(state, train_journey(), None, paraphrase_ok=True).ok


def test_a_duplicate_or_missing_delivery_fails() -> None:
    state = good_state()
    turns = server_turns(state)
    verdict = judge(state, train_journey(), [*turns, turns[2]])  # replayed twice
    assert "reached the server 2 times" in verdict.check("nothing lost").detail
    verdict = judge(state, train_journey(), turns[:2] + turns[3:])  # never arrived
    assert "reached the server 0 times" in verdict.check("nothing lost").detail


def test_a_reported_drop_is_not_a_loss() -> None:
    state = good_state()
    state.utterances[3].status = "dropped"
    state.utterances[3].dropped_reason = "audio older than its time to live"
    turns = [u.text for u in state.utterances if u.status != "dropped"]
    verdict = judge(state, train_journey(), turns)
    assert verdict.ok
    assert "1 reported dropped" in verdict.check("nothing lost").detail


def test_an_unrecovered_drop_or_a_failure_fails() -> None:
    state = good_state()
    state.disruptions[-1].recovered = None
    assert not judge(state, train_journey(), server_turns(state)).check("every drop recovered").ok
    state = good_state()
    state.failed = "The model is retired."
    assert not judge(state, train_journey(), server_turns(state)).ok


def render(renderable: object, width: int = 100) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_view_and_summary_render() -> None:
    state = good_state()
    state.session_state = "connected"
    state.step_labels = [(s.at, s.kind, s.label) for s in train_journey().steps]
    state.step_index = len(state.step_labels) - 1
    text = render(live_view(state, 80), 80)
    assert "CONNECTED" in text
    assert "journey" in text
    assert "tunnel 8 s" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    out = render(summary(state, judge(state, train_journey(), server_turns(state))))
    assert "✔ context survived" in out
    assert "The conversation survived the journey." in out


def test_scaled_tunnel_labels_name_the_scaled_length() -> None:
    labels = [s.label for s in train_journey().scaled(4).steps if s.kind == "tunnel"]
    assert labels == ["tunnel 1 s", "tunnel 2 s"]
    labels = [s.label for s in train_journey().scaled(16).steps if s.kind == "tunnel"]
    assert labels == ["tunnel 0.25 s", "tunnel 0.5 s"]
    assert [s.label for s in train_journey().steps if s.kind == "tunnel"] == [
        "tunnel 4 s",
        "tunnel 8 s",
    ]


def test_a_disconnect_is_a_sentence() -> None:
    from tunnelproof.demo.runner import describe_disconnect

    handover = describe_disconnect(1000, "", planned=True)
    assert handover.startswith("handover: the client closed the old connection normally")
    assert "1000" not in handover
    assert describe_disconnect(1000, "", planned=True, ending=True).startswith(
        "the journey is over"
    )
    crash = describe_disconnect(1011, "Internal error encountered.", planned=False)
    assert crash == (
        "link lost: the server closed the connection with code 1011 (Internal error encountered.)"
    )
    assert "without a close frame" in describe_disconnect(None, "", planned=False)


def test_the_demo_session_uses_the_library_default_retry_policy() -> None:
    # The journey once ran on a compressed `stable_after`; it now shows what an app gets.
    from types import SimpleNamespace

    from tunnelproof.demo.app import _session_kwargs

    stack = SimpleNamespace(dial=None, ssl_context=lambda: None)
    kwargs = _session_kwargs(stack, 7)  # type: ignore[arg-type]
    assert "policy" not in kwargs
    assert set(kwargs) == {"rng", "connect_kwargs"}
