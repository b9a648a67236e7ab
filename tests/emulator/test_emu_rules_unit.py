"""The sans-I/O rule modules, with an injected clock and no sockets."""

from __future__ import annotations

import pytest

from tunnelproof.emulator import brain
from tunnelproof.emulator.audio import VoiceDetector, encode_speech, silence, synthesize, transcribe
from tunnelproof.emulator.auth import authenticate
from tunnelproof.emulator.errors import HttpRefusal
from tunnelproof.emulator.messages import check_setup_fields, validate_setup
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.sessions import Entry, HandleProblem, HandleRefused, SessionStore
from tunnelproof.emulator.tokens import (
    MASK_ERROR,
    TokenLedger,
    TokenRejected,
    apply_token_setup,
    parse_field_mask,
)
from tunnelproof.protocol.close_codes import REASON_UNREGISTERED_CALLER
from tunnelproof.protocol.endpoints import AuthForm, Method
from tunnelproof.protocol.errors import CloseRefusal

from .emu_helpers import FakeClock

SETUP = {"model": "models/gemini-3.8-live", "generationConfig": {"responseModalities": ["TEXT"]}}


# -- tokens -------------------------------------------------------------------------------


def test_token_uses_new_sessions_resumes_and_strict_mode() -> None:
    clock, policy = FakeClock(), EmulatorPolicy()
    ledger = TokenLedger(policy, clock)
    token = ledger.create({"uses": 2})
    ledger.admit(token, "c1", resume=False)
    ledger.admit(token, "c2", resume=True)
    ledger.admit(token, "c3", resume=True)
    assert token.uses_consumed == 1
    ledger.admit(token, "c4", resume=False)
    with pytest.raises(TokenRejected):
        ledger.admit(token, "c5", resume=False)
    policy.strict_token_uses = True
    with pytest.raises(TokenRejected):
        ledger.check_upgrade(token.name)  # exhausted: refused before setup in strict mode
    assert [u.consumed_use for u in token.history] == [True, False, False, True]


def test_token_windows_follow_the_clock() -> None:
    clock = FakeClock()
    ledger = TokenLedger(EmulatorPolicy(), clock)
    token = ledger.create({"uses": 0})
    clock.advance(59.9)
    ledger.admit(token, "a", resume=False)
    clock.advance(0.2)  # past newSessionExpireTime
    with pytest.raises(TokenRejected):
        ledger.admit(token, "b", resume=False)
    ledger.admit(token, "c", resume=True)
    clock.advance(1800)
    with pytest.raises(TokenRejected):
        ledger.check_upgrade(token.name)
    with pytest.raises(TokenRejected):
        ledger.check_upgrade("auth_tokens/unknown")


def test_new_session_window_never_outlives_the_token() -> None:
    clock = FakeClock()
    ledger = TokenLedger(EmulatorPolicy(), clock)
    from datetime import UTC, datetime

    soon = datetime.fromtimestamp(clock.now + 10, UTC).isoformat()
    token = ledger.create({"expireTime": soon})  # default new-session window would be 60 s
    assert token.new_session_expire_time == token.expire_time == clock.now + 10


def test_mask_paths_are_camelised_and_deduplicated() -> None:
    mask = "model,generationConfig.temperature,generationConfig.temperature,generation_config.top_k"
    assert parse_field_mask(mask) == (
        "model",
        "generationConfig.temperature",
        "generationConfig.topK",
    )
    assert parse_field_mask("") == ()
    assert parse_field_mask(None) is None


def test_mask_must_cover_every_present_field() -> None:
    ledger = TokenLedger(EmulatorPolicy(), FakeClock())
    with pytest.raises(HttpRefusal) as info:
        ledger.create({"bidiGenerateContentSetup": SETUP, "fieldMask": "model"})
    assert (info.value.code, info.value.message) == (400, MASK_ERROR)
    ledger.create({"bidiGenerateContentSetup": SETUP, "fieldMask": "model,generationConfig"})


def test_lock_semantics() -> None:
    ledger = TokenLedger(EmulatorPolicy(), FakeClock())
    client = {
        "model": "models/other",
        "systemInstruction": {"parts": []},
        "sessionResumption": {"handle": "h"},
    }
    free = ledger.create({})
    assert apply_token_setup(free, client) == client
    whole = ledger.create({"bidiGenerateContentSetup": SETUP})
    assert apply_token_setup(whole, client) == {**SETUP, "sessionResumption": {"handle": "h"}}
    partial = ledger.create(
        {"bidiGenerateContentSetup": SETUP, "fieldMask": "model,generationConfig"}
    )
    merged = apply_token_setup(partial, client)
    assert merged["model"] == SETUP["model"] and merged["systemInstruction"] == {"parts": []}


# -- sessions -----------------------------------------------------------------------------


def test_handles_snapshot_history_and_expire_after_disconnect() -> None:
    clock = FakeClock()
    store = SessionStore(EmulatorPolicy(handle_validity=100), clock)
    session = store.start({**SETUP, "sessionResumption": {}}, "gemini-3.8-live", None)
    store.attach(session, "c1")
    first = store.resumption_update(session)
    assert first is not None and first["resumable"] is True
    session.history.append(Entry("user", "hi", "clientContent"))
    session.generating = True
    assert store.resumption_update(session) == {"resumable": False}
    session.generating = False
    session.pending_calls["id"] = "f"
    assert store.resumption_update(session) == {"resumable": False}
    session.pending_calls.clear()
    second = store.resumption_update(session)
    assert second is not None
    with pytest.raises(HandleRefused) as info:
        store.resolve(first["newHandle"])
    assert info.value.problem is HandleProblem.STILL_OPEN
    store.detach(session, "c1")
    resumed, record = store.resolve(first["newHandle"])
    assert resumed is session and record.history == ()
    store.resume(session, record, SETUP)
    assert session.history == [] and session.wants_updates is False
    clock.advance(100)
    with pytest.raises(HandleRefused) as info:
        store.resolve(second["newHandle"])
    assert info.value.problem is HandleProblem.EXPIRED
    with pytest.raises(HandleRefused):
        store.resolve("nope")


def test_session_deadline_depends_on_video_and_compression() -> None:
    clock = FakeClock()
    store = SessionStore(EmulatorPolicy(), clock)
    plain = store.start(SETUP, "m", None)
    assert store.session_deadline(plain) == clock.now + 900
    plain.video_seen = True
    assert store.session_deadline(plain) == clock.now + 120
    compressed = store.start({**SETUP, "contextWindowCompression": {}}, "m", None)
    assert store.session_deadline(compressed) is None


def test_store_round_trips_through_its_dump() -> None:
    clock = FakeClock()
    store = SessionStore(EmulatorPolicy(), clock)
    session = store.start({**SETUP, "sessionResumption": {}}, "m", "auth_tokens/x")
    session.history.append(Entry("user", "kept", "clientContent"))
    handle = store.issue_handle(session).handle
    again = SessionStore(EmulatorPolicy(), clock)
    again.load(store.dump())
    restored, record = again.resolve(handle)
    assert [e.text for e in record.history] == ["kept"] and restored.token_name == "auth_tokens/x"


# -- brain --------------------------------------------------------------------------------


def _user(text: str) -> Entry:
    return Entry("user", text, "clientContent")


def test_brain_rules() -> None:
    history = [_user("alpha"), Entry("model", "x", "model"), _user("what did I say first?")]
    assert brain.respond(history).text == 'You first said: "alpha".'
    assert brain.respond([_user("a"), _user("b"), _user("How many turns?")]).text == (
        "You have taken 3 turns so far."
    )
    assert (
        brain.respond([_user("my name is Ada"), _user("what's my name")]).text
        == "Your name is Ada."
    )
    assert brain.respond([_user("count to 3")]).text == "1, 2, 3."
    assert brain.respond([_user("echo me")]).text == 'You said: "echo me".'
    call = brain.respond([_user("what time is it")], ["get_current_time"]).call
    assert call is not None and call.name == "get_current_time"
    lights = brain.respond([_user("please turn on the lights")], ["turn_on_the_lights"]).call
    assert lights is not None and lights.name == "turn_on_the_lights"
    assert brain.respond([_user("what time is it")]).call is None  # no tool declared
    result = Entry("user", "", "toolResponse", {"name": "get_time", "response": {"time": "09:00"}})
    assert brain.respond([_user("time?"), result]).text == "The get_time tool says: 09:00."


def test_declared_functions_in_either_spelling() -> None:
    setup = {
        "tools": [
            {"function_declarations": [{"name": "a"}]},
            {"functionDeclarations": [{"name": "b"}]},
        ]
    }
    assert brain.declared_functions(setup) == ["a", "b"]


# -- audio --------------------------------------------------------------------------------


def test_speech_round_trip_and_pseudo_transcripts() -> None:
    assert transcribe(encode_speech("héllo wörld")) == "héllo wörld"
    noise = bytes(range(256)) * 10
    assert transcribe(noise) == transcribe(noise)
    assert transcribe(noise).startswith("(speech ")


@pytest.mark.parametrize("chunk", [1, 320, 1000, 6400])
def test_vad_result_does_not_depend_on_chunking(chunk: int) -> None:
    pcm = (
        silence(0.2)
        + encode_speech("same words")
        + silence(0.6)
        + encode_speech("again")
        + silence(0.6)
    )
    vad = VoiceDetector(threshold=500, silence=0.5)
    events = []
    for offset in range(0, len(pcm), chunk):
        events.extend(vad.feed(pcm[offset : offset + chunk]))
    assert [e for e, _ in events] == ["start", "end", "start", "end"]
    assert [transcribe(u) for e, u in events if e == "end"] == ["same words", "again"]


def test_synthesis_lines_words_up_with_chunks() -> None:
    chunks = synthesize("one two three", seconds_per_word=0.1, chunk_seconds=0.04)
    assert sum(len(c.pcm) for c in chunks) == 3 * 2400 * 2
    assert [w for c in chunks for w in c.words] == ["one", "two", "three"]
    assert chunks[0].words == ("one",)


# -- auth, frames, setup, policy ------------------------------------------------------------


def test_authenticate_is_pure() -> None:
    policy = EmulatorPolicy()
    ledger = TokenLedger(policy, FakeClock())
    token = ledger.create({})
    ok = authenticate(
        Method.CONSTRAINED,
        f"access_token={token.name}",
        {},
        api_key="k",
        ledger=ledger,
        policy=policy,
    )
    assert ok.credential is not None and ok.credential.form is AuthForm.TOKEN_QUERY
    missing = authenticate(Method.BIDI, "", {}, api_key="k", ledger=ledger, policy=policy)
    assert missing.close is not None and missing.close.reason == REASON_UNREGISTERED_CALLER
    unknown = authenticate(
        Method.CONSTRAINED,
        "",
        {"authorization": "Token auth_tokens/zzz"},
        api_key="k",
        ledger=ledger,
        policy=policy,
    )
    assert unknown.http is not None and unknown.http.code == 401


def test_setup_validation() -> None:
    # Frame decoding itself: tests/protocol/test_client_frames.py.
    info = validate_setup(
        check_setup_fields({"model": "models/gemini-3.8-live"}), "v1beta", EmulatorPolicy()
    )
    assert (info.model, info.modality, info.manual_activity) == ("gemini-3.8-live", "AUDIO", False)
    with pytest.raises(CloseRefusal) as refusal:
        validate_setup({"model": "models/gemini-2.0-flash-exp"}, "v1beta", EmulatorPolicy())
    assert refusal.value.code == 1008


def test_policy_update_coerces_and_rejects_unknown_fields() -> None:
    policy = EmulatorPolicy()
    policy.update({"connection_lifetime": "12", "strict_token_uses": "true", "extra_models": ["x"]})
    assert policy.connection_lifetime == 12.0 and policy.strict_token_uses is True
    assert policy.extra_models == frozenset({"x"})
    with pytest.raises(KeyError):
        policy.update({"nope": 1})
    assert policy.go_away_at() == 0.0  # a lead longer than the lifetime: goAway at once
    policy.update({"go_away_lead": 2})
    assert policy.go_away_at() == 10.0


# -- lifetimes ----------------------------------------------------------------------------


def test_next_limit_orders_go_away_lifetime_session_and_token() -> None:
    from tunnelproof.emulator.lifetimes import go_away_time_left, next_limit

    policy = EmulatorPolicy()  # 600 s lifetime, 50 s lead
    first = next_limit(policy, age=0, go_away_sent=False)
    assert (first.what, first.delay) == ("go_away", 550)
    after = next_limit(policy, age=550, go_away_sent=True)
    assert (after.what, after.delay) == ("lifetime", 50)
    forced = next_limit(policy, age=10, go_away_sent=True, forced_close_in=3)
    assert (forced.what, forced.delay) == ("lifetime", 3)
    # After a goAway the announced time decides, even past the nominal lifetime.
    late = next_limit(policy, age=599, go_away_sent=True, forced_close_in=20)
    assert (late.what, late.delay) == ("lifetime", 20)
    session = next_limit(policy, age=0, go_away_sent=False, session_left=100)
    assert session.what == "session_limit"
    token = next_limit(policy, age=0, go_away_sent=False, session_left=100, token_left=5)
    assert (token.what, token.delay) == ("token_expired", 5)
    assert go_away_time_left(policy, age=550.004) == 50  # a late timer still says "50s"
    assert go_away_time_left(policy, age=550.9) == 50
    policy.update({"connection_lifetime": 560})  # live change at age 550: 10 s left
    assert go_away_time_left(policy, age=550) == 10


# -- replies ------------------------------------------------------------------------------


def test_text_and_audio_plans() -> None:
    from tunnelproof.emulator import replies

    policy = EmulatorPolicy(text_chunk_words=2, text_chunk_interval=0.5)
    plan = replies.text_plan("a b c", policy)
    texts = [s.messages[0]["serverContent"]["modelTurn"]["parts"][0]["text"] for s in plan.steps]
    assert texts == ["a b", " c"] and [s.pause_before for s in plan.steps] == [0.5, 0.5]
    policy = EmulatorPolicy(seconds_per_word=0.1, audio_chunk_duration=0.05)
    plan = replies.audio_plan("x y", policy, transcription=True)
    assert len(plan.steps) == 4 and plan.steps[0].pause_before == 0
    assert [s.pause_before for s in plan.steps[1:]] == [0.05, 0.05, 0.05] and plan.tail == 0.05
    assert plan.steps[0].messages[0] == {"serverContent": {"outputTranscription": {"text": "x "}}}
    silent = replies.audio_plan("x y", policy, transcription=False)
    assert all(len(s.messages) == 1 for s in silent.steps)
    assert replies.go_away(50.0) == {"goAway": {"timeLeft": "50s"}}


def test_bytes_fields_accept_both_base64_alphabets() -> None:
    from tunnelproof.emulator.messages import decode_bytes

    raw = bytes([0xFB, 0xFF, 0xBF, 0x00])
    assert decode_bytes("+/+/AA==") == raw
    assert decode_bytes("-_-_AA") == raw  # URL-safe, no padding (what google-genai sends)
    for bad in ("!!", "+_+_AA==", "A"):
        with pytest.raises(CloseRefusal):
            decode_bytes(bad)


# -- events -------------------------------------------------------------------------------


async def test_event_log_wakes_waiters_and_times_out() -> None:
    import asyncio

    from tunnelproof.emulator.events import EventLog

    log = EventLog(FakeClock())
    waiter = asyncio.ensure_future(log.wait_for("x", count=2, colour="red"))
    log.emit("x", colour="blue")
    log.emit("x", colour="red")
    await asyncio.sleep(0)
    assert not waiter.done()
    third = log.emit("x", colour="red")
    event = await asyncio.wait_for(waiter, 5)
    assert event.seq == third.seq == 3
    assert [e.seq for e in log.since(1, "x")] == [2, 3]
    with pytest.raises(TimeoutError):
        await log.wait_for("y", timeout=0.05)
