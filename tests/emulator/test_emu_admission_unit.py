"""The connection's rules, called directly: no sockets, no event loop, injected clock."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tunnelproof.emulator.admission import (
    ClientFaults,
    ConnState,
    ResumeDenied,
    ResumeRefusals,
    check_frame_allowed,
    check_token_alive,
    decide_resume,
    take_rejection,
)
from tunnelproof.emulator.inputs import (
    ActivityEnd,
    ActivityStart,
    AudioIn,
    StreamEnd,
    TextIn,
    VideoIn,
    barge_in_allowed,
    client_turns,
    realtime_action,
    tool_results,
)
from tunnelproof.emulator.messages import SetupInfo, validate_setup
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.sessions import Entry, SessionStore
from tunnelproof.protocol.errors import CloseRefusal
from tunnelproof.protocol.models import EMULATOR_TEXT_MODEL, LIVE_MODELS

from .emu_helpers import FakeClock

MODEL = "gemini-3.8-live"
SETUP = {"model": f"models/{MODEL}", "sessionResumption": {}}


def _faults() -> ClientFaults:
    return ClientFaults(ResumeRefusals())


def _store(policy: EmulatorPolicy | None = None) -> tuple[SessionStore, FakeClock]:
    clock = FakeClock()
    return SessionStore(policy or EmulatorPolicy(), clock), clock


def _never_heard(_: str) -> float:
    return float("inf")


# -- frame order, token expiry, the reject-next fault ---------------------------------------


def test_setup_first_and_only_once() -> None:
    check_frame_allowed("setup", ConnState.AWAITING_SETUP)
    check_frame_allowed("clientContent", ConnState.OPEN)
    for kind, state in [("clientContent", ConnState.AWAITING_SETUP), ("setup", ConnState.OPEN)]:
        with pytest.raises(CloseRefusal) as info:
            check_frame_allowed(kind, state)
        assert info.value.code == 1007


def test_state_knows_open_from_closed() -> None:
    assert [s.is_open for s in ConnState] == [True, True, False, False]
    assert ConnState.OPEN.value == "open"  # the JSON view keeps its strings


def test_token_expiry_is_1008_from_the_injected_time() -> None:
    policy = EmulatorPolicy()
    check_token_alive(99.9, 100.0, policy)
    check_token_alive(1e12, None, policy)  # an API key never expires
    with pytest.raises(CloseRefusal) as info:
        check_token_alive(100.0, 100.0, policy)
    assert info.value.code == 1008


def test_reject_next_client_message_fires_once_and_never_on_setup() -> None:
    faults = _faults()
    assert take_rejection(faults, "clientContent") is None
    faults.reject_next = CloseRefusal(1008, "no")
    assert take_rejection(faults, "setup") is None
    refusal = take_rejection(faults, "realtimeInput")
    assert refusal is not None and (refusal.code, refusal.reason) == (1008, "no")
    assert take_rejection(faults, "toolResponse") is None


# -- resumes --------------------------------------------------------------------------------


def test_resume_of_a_closed_session_is_granted_with_its_snapshot() -> None:
    store, _ = _store()
    session = store.start(SETUP, MODEL, None)
    session.history.append(Entry("user", "hi", "clientContent"))
    handle = store.issue_handle(session).handle
    session.history.append(Entry("user", "later", "clientContent"))
    granted = decide_resume(store, handle, MODEL, EmulatorPolicy(), _faults(), _never_heard)
    assert granted.session is session and granted.takeover is None and not granted.forget
    assert [e.text for e in granted.record.history] == ["hi"]


def test_unknown_handle_and_model_change_are_1007() -> None:
    store, _ = _store()
    session = store.start(SETUP, MODEL, None)
    handle = store.issue_handle(session).handle
    policy = EmulatorPolicy()
    with pytest.raises(ResumeDenied) as info:
        decide_resume(store, "nope", MODEL, policy, _faults(), _never_heard)
    assert (info.value.problem, info.value.refusal.code) == ("unknown", 1007)
    with pytest.raises(ResumeDenied) as info:
        decide_resume(
            store, handle, "gemini-3.1-flash-live-preview", policy, _faults(), _never_heard
        )
    assert (info.value.problem, info.value.refusal.code) == ("model_changed", 1007)


def test_a_live_old_socket_refuses_1011_and_a_silent_one_is_taken_over() -> None:
    store, _ = _store()
    session = store.start(SETUP, MODEL, None)
    store.attach(session, "old")
    handle = store.issue_handle(session).handle
    policy = EmulatorPolicy(resume_takeover_idle=5.0)
    with pytest.raises(ResumeDenied) as info:
        decide_resume(store, handle, MODEL, policy, _faults(), lambda conn: 4.9)
    assert (info.value.problem, info.value.refusal.code) == ("still_open", 1011)
    granted = decide_resume(store, handle, MODEL, policy, _faults(), lambda conn: 5.0)
    assert granted.takeover == "old" and granted.idle == 5.0
    policy.resume_takeover_idle = None  # never taken over: refused however long it is silent
    with pytest.raises(ResumeDenied):
        decide_resume(store, handle, MODEL, policy, _faults(), _never_heard)


def test_refusal_and_amnesia_faults_are_counted_down() -> None:
    store, _ = _store()
    session = store.start(SETUP, MODEL, None)
    handle = store.issue_handle(session).handle
    policy = EmulatorPolicy()
    faults = ClientFaults(ResumeRefusals(remaining=1, code=1011, reason="x"), forget_resumes=1)
    with pytest.raises(ResumeDenied) as info:
        decide_resume(store, handle, MODEL, policy, faults, _never_heard)
    assert (info.value.problem, info.value.refusal.code, faults.refusals.remaining) == (
        "fault",
        1011,
        0,
    )
    assert decide_resume(store, handle, MODEL, policy, faults, _never_heard).forget is True
    assert decide_resume(store, handle, MODEL, policy, faults, _never_heard).forget is False
    policy.resume_restores_nothing = True
    assert decide_resume(store, handle, MODEL, policy, faults, _never_heard).forget is True


def test_a_forgetful_resume_restores_an_empty_history() -> None:
    store, _ = _store()
    session = store.start(SETUP, MODEL, None)
    session.history.append(Entry("user", "my name is Ada", "clientContent"))
    record = store.issue_handle(session)
    store.resume(session, record, SETUP, forget=True)
    assert session.history == []


def test_an_ended_session_refuses_its_handles_1007() -> None:
    store, _ = _store()
    session = store.start(SETUP, MODEL, None)
    handle = store.issue_handle(session).handle
    store.end(session)  # what refuse_resume_after_lifetime does at the lifetime close
    with pytest.raises(ResumeDenied) as info:
        decide_resume(store, handle, MODEL, EmulatorPolicy(), _faults(), _never_heard)
    assert (info.value.problem, info.value.refusal.code) == ("expired", 1007)


# -- response modalities per model ----------------------------------------------------------


@pytest.mark.parametrize("model", sorted(LIVE_MODELS))
def test_every_live_model_answers_audio_only(model: str) -> None:
    policy = EmulatorPolicy()
    audio = {"model": f"models/{model}", "generationConfig": {"responseModalities": ["AUDIO"]}}
    assert validate_setup(audio, "v1beta", policy).modality == "AUDIO"
    text = {"model": f"models/{model}", "generationConfig": {"responseModalities": ["TEXT"]}}
    with pytest.raises(CloseRefusal) as info:
        validate_setup(text, "v1beta", policy)
    assert info.value.code == 1007
    assert f"models/{model}" in info.value.reason and "AUDIO only" in info.value.reason
    assert len(info.value.reason.encode()) <= 123  # whole, not truncated


def test_only_the_emulator_text_model_answers_text() -> None:
    setup = {
        "model": f"models/{EMULATOR_TEXT_MODEL}",
        "generationConfig": {"responseModalities": ["TEXT"]},
    }
    assert validate_setup(setup, "v1beta", EmulatorPolicy()).modality == "TEXT"
    policy = EmulatorPolicy(modality_close_code=1008)
    setup["model"] = f"models/{MODEL}"
    with pytest.raises(CloseRefusal) as info:
        validate_setup(setup, "v1beta", policy)
    assert info.value.code == 1008


# -- inputs ---------------------------------------------------------------------------------


def _info(manual: bool = False, model: str = MODEL) -> SetupInfo:
    setup: dict[str, object] = {"model": f"models/{model}"}
    if manual:
        setup["realtimeInputConfig"] = {"automaticActivityDetection": {"disabled": True}}
    return validate_setup(setup, "v1beta", EmulatorPolicy())


def test_client_turns_map_roles_and_completion() -> None:
    turns = client_turns(
        {
            "turns": [
                {"role": "user", "parts": [{"text": "a"}]},
                {"role": "model", "parts": [{"text": "b"}]},
            ],
            "turn_complete": True,
        }
    )
    assert [(e.role, e.text, e.source) for e in turns.entries] == [
        ("user", "a", "clientContent"),
        ("model", "b", "model"),
    ]
    assert turns.turn_complete is True
    for bad in ({"turns": "x"}, {"turns": [{"role": "system", "parts": []}]}, {"turns": [1]}):
        with pytest.raises(CloseRefusal):
            client_turns(bad)


def test_realtime_actions_and_their_refusals() -> None:
    auto, manual = _info(), _info(manual=True)
    pcm = base64.b64encode(b"\x01\x00" * 4).decode()
    audio = {"audio": {"mimeType": "audio/pcm;rate=24000", "data": pcm}}
    assert realtime_action({"text": "hi"}, auto) == TextIn("hi")
    assert realtime_action(audio, auto) == AudioIn(b"\x01\x00" * 4, 24000)
    video = {"video": {"mimeType": "image/jpeg", "data": "/9j/"}}
    assert realtime_action(video, auto) == VideoIn()
    assert realtime_action({"audioStreamEnd": True}, auto) == StreamEnd()
    assert realtime_action({"activityStart": {}}, manual) == ActivityStart()
    assert realtime_action({"activityEnd": {}}, manual) == ActivityEnd()
    refused: list[tuple[dict[str, Any], SetupInfo]] = [
        ({"activityStart": {}}, auto),
        ({"audioStreamEnd": True}, manual),
        ({"mediaChunks": [audio["audio"]]}, auto),  # gemini-3*: deprecated field refused
        ({"text": 3}, auto),
        ({"text": "a", "audioStreamEnd": True}, auto),
    ]
    for body, info in refused:
        with pytest.raises(CloseRefusal) as exc:
            realtime_action(body, info)
        assert exc.value.code == 1007, body


def test_tool_results_need_a_pending_call_each_and_apply_nothing_otherwise() -> None:
    pending = {"c1": "weather", "c2": "time"}
    results = tool_results(
        {"functionResponses": [{"id": "c1", "response": {"t": 20}}, {"id": "c2"}]}, pending
    )
    assert [(r.call_id, r.name) for r in results] == [("c1", "weather"), ("c2", "time")]
    assert results[0].entry().data == {"id": "c1", "name": "weather", "response": {"t": 20}}
    bads: list[dict[str, Any]] = [
        {"functionResponses": []},
        {"functionResponses": [{"id": "c9"}]},
        {"functionResponses": [{"id": "c1"}, {"id": "c1"}]},
    ]
    for bad in bads:
        with pytest.raises(CloseRefusal):
            tool_results(bad, pending)
    assert pending == {"c1": "weather", "c2": "time"}


def test_no_interruption_disables_barge_in() -> None:
    assert barge_in_allowed({}) is True
    no = {"realtimeInputConfig": {"activityHandling": "NO_INTERRUPTION"}}
    assert barge_in_allowed(no) is False
