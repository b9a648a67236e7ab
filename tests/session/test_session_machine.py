"""Deterministic tests of ``SessionMachine``: one or more per client-contract point.

Time is the harness's clock, jitter comes from a seeded ``random.Random``; nothing sleeps.
Tests named ``test_seed_bug_*`` are regressions for the seed's bugs listed in issue #5.
"""

from __future__ import annotations

import pytest

from tunnelproof.protocol.client_messages import (
    FunctionResponse,
    realtime_audio,
    realtime_text,
    tool_response,
    user_text,
)
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import app_events as ev
from tunnelproof.session.actions import (
    AbortSocket,
    CheckLink,
    CloseSocket,
    FetchToken,
    SendFrame,
)
from tunnelproof.session.events import (
    CloseRequested,
    FrameReceived,
    OpenFailure,
    ReseedRequested,
    ResumeRequested,
    TokenFailure,
)
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.machine import Phase, SessionState
from tunnelproof.session.outbox import OutboxLimits
from tunnelproof.session.policy import DEFAULT_WATCHDOGS, SEED_POLICY, RetryPolicy, Watchdogs

from .session_harness import Harness

PCM_100MS = b"\x00\x00" * 1600  # 100 ms at 16 kHz


def connected(**kwargs: object) -> Harness:
    h = Harness(**kwargs)  # type: ignore[arg-type]
    h.start()
    h.connect()
    return h


def tool_call(call_id: str = "call-1") -> dict[str, object]:
    return {"functionCalls": [{"id": call_id, "name": "lights", "args": {}}]}


# -- 1. fresh credentials per attempt ------------------------------------------------------


def test_fresh_token_for_every_attempt() -> None:
    h = connected()
    h.closed(1006)
    h.advance(5)
    assert h.pending_request() is not None
    h.connect()
    secrets = [o.endpoint.url.split("access_token=")[1] for o in h.opens]
    assert len(secrets) == 2
    assert secrets[0] != secrets[1]
    assert h.m.metrics.tokens_fetched == 2


def test_token_whose_handshake_never_completed_is_reused_within_its_window() -> None:
    h = Harness()
    h.start()
    h.give_token()
    h.open_failed(OpenFailure.OFFLINE)
    h.advance(1.0)  # one probe interval
    assert len(h.token_requests) == 1, "no new fetch: the unspent token is reused"
    assert len(h.opens) == 2
    assert h.opens[0].endpoint == h.opens[1].endpoint
    assert h.m.metrics.tokens_reused == 1


def test_unspent_token_is_not_reused_after_its_new_session_window() -> None:
    h = Harness(token_window=10.0)
    h.start()
    h.give_token()
    for _ in range(30):  # ~22 s of probing
        if h.m.phase is Phase.FETCHING:
            break
        h.open_failed(OpenFailure.OFFLINE)
        h.advance(1.0)
    assert h.m.phase is Phase.FETCHING
    assert len(h.token_requests) == 2


def test_token_is_never_reused_once_the_handshake_completed() -> None:
    h = Harness()
    h.start()
    h.give_token()
    h.opened()
    h.closed(1011, "Internal error occurred.")  # closed during setup
    h.advance(5)
    assert h.m.phase is Phase.FETCHING, "a spent token must not be offered again"


def test_reused_token_rejected_with_401_gets_one_fresh_try_not_a_fatal_stop() -> None:
    h = Harness()
    h.start()
    h.give_token()
    h.open_failed(OpenFailure.OFFLINE)
    h.advance(1.0)
    assert len(h.opens) == 2  # reused
    h.open_failed(OpenFailure.HANDSHAKE, status=401)
    assert h.m.phase is Phase.FETCHING
    h.give_token()
    h.open_failed(OpenFailure.HANDSHAKE, status=401)
    assert h.m.phase is Phase.FAILED
    assert h.of(ev.Failed)[0].verdict.kind == "fatal_auth"


def test_token_source_401_is_fatal_and_says_to_sign_in() -> None:
    h = Harness()
    h.start()
    h.fail_token(TokenFailure.AUTH, "401 unauthorized")
    assert h.m.state is SessionState.FAILED
    assert "sign in" in h.of(ev.Failed)[0].advice
    h.advance(3600)
    assert h.opens == [] and len(h.token_requests) == 1


def test_token_source_429_waits_retry_after() -> None:
    h = Harness()
    h.start()
    h.fail_token(TokenFailure.RATE_LIMITED, "429", retry_after=7.0)
    delay = h.of(ev.Reconnecting)[-1].delay
    assert 7.0 <= delay <= 7.5
    h.advance(6.9)
    assert len(h.token_requests) == 1
    h.advance(0.7)
    assert len(h.token_requests) == 2


def test_token_source_503_backs_off_and_offline_probes() -> None:
    h = Harness()
    h.start()
    h.fail_token(TokenFailure.UNAVAILABLE, "503")
    assert h.of(ev.Reconnecting)[-1].kind == "server"
    h.fire("retry")
    h.fail_token(TokenFailure.OFFLINE, "dns")
    assert h.of(ev.Reconnecting)[-1].kind == "offline"


def test_seed_bug_failed_token_fetch_keeps_the_reconnect_chain_going() -> None:
    # The seed's open() rejected inside a timer when getToken failed and nothing
    # scheduled another attempt. Here every failure schedules the next one.
    h = connected()
    h.closed(1006)
    for _ in range(50):
        h.advance(40)
        h.fail_token(TokenFailure.OFFLINE, "no network")
    h.advance(2)
    h.connect()
    assert h.m.state is SessionState.CONNECTED


def test_token_fetch_that_hangs_times_out_and_is_cancelled() -> None:
    h = Harness()
    h.start()
    h.fire("token")
    assert h.of(ev.Reconnecting)[-1].kind == "offline"
    h.advance(1)
    assert len(h.token_requests) == 2


# -- 2. handles ------------------------------------------------------------------------------


def test_keeps_the_newest_resumable_handle_and_never_a_non_resumable_one() -> None:
    h = connected()
    h.handle_update("h1")
    h.handle_update("h2")
    h.handle_update(None, resumable=False)
    h.server(sessionResumptionUpdate={"newHandle": "h3", "resumable": False})
    assert h.m.resumption_handle == "h2"
    h.closed(1006)
    h.advance(5)
    h.give_token()
    h.opened()
    assert h.setup_handle() == "h2"


def test_resumes_with_the_handle_on_every_reconnect() -> None:
    h = connected()
    for n in range(5):
        h.handle_update(f"h{n}")
        h.closed(1011, "Internal error occurred.")
        h.retry()
        h.connect()
        assert h.setup_handle() == f"h{n}"
        assert h.of(ev.Resumed)
        h.advance(11)  # stable
    assert h.m.metrics.resume_success_rate == 1.0


def test_fresh_session_asks_for_handles() -> None:
    h = connected()
    assert h.frames(1)[0]["setup"]["sessionResumption"] == {}


# -- 3. outbox ---------------------------------------------------------------------------------


def test_send_while_disconnected_is_queued_and_flushed_only_after_setup_complete() -> None:
    h = Harness()
    h.start()
    result = h.send(realtime_text("hello"))
    assert result.queued
    h.give_token()
    h.opened()
    assert [list(f) for f in h.frames()] == [["setup"]], "nothing before setupComplete"
    h.setup_complete()
    assert h.frames()[1] == realtime_text("hello")


def test_seed_bug_send_never_drops_silently() -> None:
    h = connected()
    assert h.send(realtime_text("one")).sent
    h.closed(1006)
    assert h.send(realtime_text("two")).queued
    h.feed(CloseRequested())
    h.closed(1000)
    assert h.send(realtime_text("three")).dropped
    dropped = h.of(ev.SendDropped)
    assert any(d.kind == "text" for d in dropped), "the queued text is reported on close"


def test_outbox_bounds_audio_by_duration_dropping_the_oldest() -> None:
    h = Harness(limits=OutboxLimits(max_audio_ms=500, audio_ttl=60))
    h.start()
    results = [h.send(realtime_audio(PCM_100MS)) for _ in range(8)]
    assert all(r.queued for r in results)
    assert h.m.outbox.pending_audio_ms() == pytest.approx(500)
    assert h.m.metrics.audio_ms_dropped == pytest.approx(300)
    assert not h.of(ev.SendDropped), "reported once, when the outage ends"
    h.connect()
    (dropped,) = h.of(ev.SendDropped)
    assert dropped.seqs == tuple(r.seq for r in results[:3])
    assert dropped.audio_ms == pytest.approx(300)


def test_outbox_bounds_text_by_count_and_bytes() -> None:
    h = Harness(limits=OutboxLimits(max_messages=3, max_bytes=10_000))
    h.start()
    assert [h.send(realtime_text(f"t{i}")).status for i in range(4)] == [
        "queued",
        "queued",
        "queued",
        "dropped",
    ]
    h2 = Harness(limits=OutboxLimits(max_messages=100, max_bytes=100))
    h2.start()
    assert h2.send(realtime_text("x" * 50)).queued
    big = h2.send(realtime_text("y" * 40))
    assert big.dropped and big.reason == "outbox full"


def test_stale_audio_is_dropped_and_counted_not_sent() -> None:
    h = Harness(limits=OutboxLimits(audio_ttl=2.0))
    h.start()
    h.send(realtime_audio(PCM_100MS))
    h.advance(3.0)
    fresh = h.send(realtime_audio(PCM_100MS))
    h.connect()
    audio_frames = [f for f in h.frames() if "realtimeInput" in f]
    assert len(audio_frames) == 1
    assert h.m.metrics.audio_ms_dropped == pytest.approx(100)
    assert fresh.queued


def test_replays_what_the_resumed_state_lacks_and_nothing_it_has() -> None:
    h = connected()
    h.send(realtime_text("before handle"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "ok"}]}, "turnComplete": True})
    h.handle_update("h1")
    h.send(realtime_text("after handle"))
    h.send(realtime_audio(PCM_100MS))
    h.closed(1006)
    h.advance(1)
    h.connect()
    sent = h.frames()
    assert h.setup_handle() == "h1"
    texts = [f["realtimeInput"].get("text") for f in sent[1:]]
    assert texts == ["after handle", None]
    resumed = h.of(ev.Resumed)[-1]
    assert resumed.replayed == 2
    assert h.m.metrics.audio_ms_replayed == pytest.approx(100)


def test_cut_off_model_turn_is_reported_as_rewound() -> None:
    h = connected()
    h.handle_update("h1")
    h.send(realtime_text("tell me a story"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "Once upon"}]}})
    h.handle_update(None, resumable=False)
    h.closed(1006)
    rewound = h.of(ev.Rewound)
    assert len(rewound) == 1
    assert rewound[0].partial_text == "Once upon"
    # the question is not in h1's state, so it is replayed: its answer comes again
    assert not rewound[0].reply_lost


def test_tool_call_lost_with_the_turn_is_cancelled_and_never_answered() -> None:
    h = connected()
    h.handle_update("h1")
    h.send(realtime_text("lights on"))
    h.server(toolCall=tool_call("call-1"))
    h.handle_update(None, resumable=False)
    h.closed(1006)
    assert h.of(ev.Rewound)[0].cancelled_tool_call_ids == ("call-1",)
    answer = h.send(tool_response([FunctionResponse("call-1", "lights", {"ok": True})]))
    assert answer.dropped and "call-1" in (answer.reason or "")
    h.advance(1)
    h.connect()
    assert not any("toolResponse" in f for f in h.frames())
    # the question itself is replayed: the resumed state (h1) does not have it
    assert realtime_text("lights on") in h.frames()


def test_tool_answer_sent_before_the_drop_is_not_replayed_into_a_session_without_the_call() -> None:
    h = connected()
    h.handle_update("h1")
    h.server(toolCall=tool_call("c9"))
    assert h.send(tool_response([FunctionResponse("c9", "lights")])).sent
    h.closed(1006)
    h.advance(1)
    h.connect()
    assert not any("toolResponse" in f for f in h.frames())
    assert any(d.kind == "tool_response" for d in h.of(ev.SendDropped))


def test_tool_call_covered_by_a_resumable_handle_survives() -> None:
    h = connected()
    h.server(toolCall=tool_call("c1"))
    h.handle_update("h2")  # the server's state includes the call
    h.closed(1006)
    assert not h.of(ev.Rewound)
    assert h.send(tool_response([FunctionResponse("c1", "lights")])).queued
    h.advance(1)
    h.connect()
    assert any("toolResponse" in f for f in h.frames())


# -- 4. goAway ------------------------------------------------------------------------------------


def test_go_away_hands_over_at_the_next_turn_boundary_with_a_prefetched_token() -> None:
    h = connected()
    h.handle_update("h1")
    h.send(realtime_text("question"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "answer"}]}})
    h.server(goAway={"timeLeft": "50s"})
    prefetch = h.actions_of(FetchToken)[-1]
    assert prefetch.prefetch
    h.give_token()
    assert not h.actions_of(CloseSocket), "not mid-turn"
    h.server(serverContent={"turnComplete": True})
    assert not h.actions_of(CloseSocket), "waits for a handle that includes the turn"
    h.handle_update("h2")
    close = h.actions_of(CloseSocket)
    assert len(close) == 1 and close[0].attempt == 1
    assert len(h.opens) == 1, "the old socket is closed before the new one opens"
    h.closed(1000)
    assert len(h.opens) == 2, "resumed at once, no backoff"
    assert len(h.token_requests) == 2, "the prefetched token was used"
    h.opened()
    assert h.setup_handle() == "h2"
    assert h.of(ev.Reconnecting)[-1].delay == 0.0


def test_go_away_deadline_is_a_timer_not_the_next_message() -> None:
    h = connected(watchdogs=Watchdogs(go_away_margin=5.0))
    h.handle_update("h1")
    h.send(realtime_text("long story please"))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "Once"}]}})
    h.server(goAway={"timeLeft": "20s"})
    h.advance(14.9)
    assert not h.actions_of(CloseSocket)
    h.advance(0.2)  # no server message at all: the timer alone triggers the handover
    assert len(h.actions_of(CloseSocket)) == 1
    h.closed(1000)
    assert h.of(ev.Rewound)[-1].partial_text == "Once"
    h.give_token()  # the prefetch, still in flight
    assert len(h.opens) == 2


def test_seed_bug_go_away_then_close_schedules_exactly_one_reconnect() -> None:
    h = connected()
    h.handle_update("h1")
    h.server(serverContent={"modelTurn": {"parts": [{"text": "x"}]}})
    h.server(goAway={"timeLeft": "50s"})
    h.closed(1011, "Deadline expired before operation could complete.")
    h.give_token()
    assert len(h.opens) == 2
    h.opened()
    h.setup_complete()
    h.advance(120)
    assert len(h.opens) == 2, "exactly one reconnect"
    assert len(h.token_requests) == 2
    assert h.max_live_sockets == 1


def test_go_away_at_an_idle_boundary_hands_over_at_once_and_never_two_sockets() -> None:
    h = connected()
    h.handle_update("h1")
    h.server(goAway={"timeLeft": "50s"})
    assert not h.actions_of(CloseSocket), "the handover waits for its token"
    h.give_token()  # the prefetch
    assert len(h.actions_of(CloseSocket)) == 1
    # the server also closes while our close is in flight: still one reconnect
    h.closed(1000)
    h.opened()
    h.setup_complete()
    h.advance(60)
    assert len(h.opens) == 2
    assert h.max_live_sockets == 1


def test_close_handshake_that_hangs_is_aborted() -> None:
    h = connected()
    h.handle_update("h1")
    h.server(goAway={"timeLeft": "50s"})
    h.give_token()  # the prefetch: now the handover starts
    h.advance(2.5)  # close_timeout
    assert h.actions_of(AbortSocket)
    assert len(h.opens) == 2  # resumed at once with the prefetched token


# -- 5. two kinds of failure -------------------------------------------------------------------


def test_network_gone_probes_steadily_and_never_gives_up() -> None:
    h = connected()
    h.closed(1006)
    h.advance(1)
    delays = []
    for _ in range(400):  # ~5 minutes of tunnel
        if h.m.phase is Phase.FETCHING:
            h.give_token()
        h.open_failed(OpenFailure.OFFLINE)
        delays.append(h.of(ev.Reconnecting)[-1].delay)
        h.advance(h.of(ev.Reconnecting)[-1].delay)
    assert h.m.state is SessionState.RECONNECTING
    assert all(0.6 <= d <= 0.9 for d in delays)
    # the tunnel ends: the next probe connects within one interval
    if h.m.phase is Phase.FETCHING:
        h.give_token()
    h.connect()
    assert h.m.state is SessionState.CONNECTED


def test_server_errors_back_off_exponentially_with_full_jitter() -> None:
    h = connected(policy=RetryPolicy(max_attempts_per_outage=None, max_attempts_per_session=None))
    h.closed(1011, "Internal error occurred.")
    delays = [h.of(ev.Reconnecting)[-1].delay]
    for _ in range(9):
        h.advance(delays[-1])
        h.give_token()
        h.opened()
        h.closed(1011, "Internal error occurred.")
        delays.append(h.of(ev.Reconnecting)[-1].delay)
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(10)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[6:]) > 4.0, "grows well past the first ceilings"
    assert len(set(delays)) == 10, "jittered"


def test_server_failures_are_capped_per_outage() -> None:
    h = connected(policy=RetryPolicy(max_attempts_per_outage=4))
    h.closed(1011)
    for _ in range(10):
        if h.m.phase is Phase.FAILED:
            break
        h.retry()
        h.give_token()
        h.opened()
        h.closed(1011)
    assert h.m.state is SessionState.FAILED
    assert len(h.opens) == 5
    assert "resume()" in h.of(ev.Failed)[0].advice


def test_server_failures_are_capped_per_session() -> None:
    policy = RetryPolicy(max_attempts_per_outage=None, max_attempts_per_session=5, stable_after=1)
    h = connected(policy=policy)
    for _ in range(10):
        h.advance(2)  # stable each time, so the per-outage counter resets
        h.closed(1011)
        if h.m.phase is Phase.FAILED:
            break
        h.retry()
        h.connect()
    assert h.m.state is SessionState.FAILED


def test_seed_bug_counter_does_not_reset_on_socket_open() -> None:
    # A server that accepts the socket and then refuses the session: the seed reset its
    # counter on open and so retried at 1 s forever. Ours grows the delay and stops.
    h = connected()
    h.closed(1011)
    for _ in range(30):
        if h.m.phase is Phase.FAILED:
            break
        h.retry()
        h.give_token()
        h.opened()
        h.closed(1011, "Internal error occurred.")
    assert h.m.state is SessionState.FAILED


def test_seed_policy_reproduces_the_seed_loop_forever_on_open_reset() -> None:
    h = connected(policy=SEED_POLICY)
    h.closed(1011)
    delays = []
    for _ in range(30):
        delays.append(h.of(ev.Reconnecting)[-1].delay)
        h.retry()
        h.give_token()
        h.opened()
        h.closed(1011)
    assert h.m.state is SessionState.RECONNECTING
    assert all(1.0 <= d <= 1.5 for d in delays[1:]), "always the shortest delay"


def test_seed_bug_gives_up_after_six_tries_only_with_the_seed_policy() -> None:
    seed = connected(policy=SEED_POLICY)
    seed.closed(1006)
    delays = []
    for _ in range(10):
        if seed.m.phase is Phase.FAILED:
            break
        delays.append(seed.of(ev.Reconnecting)[-1].delay)
        seed.advance(delays[-1])
        seed.fail_token(TokenFailure.OFFLINE)
    assert seed.m.state is SessionState.FAILED
    assert [int(d) for d in delays] == [1, 2, 4, 8, 16, 32]
    ours = connected()
    ours.closed(1006)
    for _ in range(200):
        ours.advance(5)
        ours.fail_token(TokenFailure.OFFLINE)
    assert ours.m.state is SessionState.RECONNECTING


def test_app_may_limit_offline_time() -> None:
    h = connected(policy=RetryPolicy(max_offline_seconds=30))
    h.closed(1006)
    for _ in range(100):
        if h.m.phase is Phase.FAILED:
            break
        h.advance(1)
        h.fail_token(TokenFailure.OFFLINE)
    assert h.m.state is SessionState.FAILED


def test_counter_resets_only_after_a_stable_connection() -> None:
    h = connected(policy=RetryPolicy(stable_after=10))
    for _ in range(3):
        h.closed(1011)
        h.retry()
        h.connect()
        h.advance(2)  # not stable yet
    assert h.m.retry.outage_failures == 3
    h.advance(10)
    assert h.m.retry.outage_failures == 0


def test_retry_after_from_a_429_handshake_is_honoured() -> None:
    h = Harness()
    h.start()
    h.give_token()
    h.open_failed(OpenFailure.HANDSHAKE, status=429, retry_after=12)
    assert h.of(ev.Reconnecting)[-1].delay >= 12


# -- 6. dead links --------------------------------------------------------------------------------


def test_seed_bug_setup_watchdog_aborts_a_silent_server() -> None:
    h = Harness(watchdogs=Watchdogs(setup_timeout=8))
    h.start()
    h.give_token()
    h.opened()
    h.advance(8.1)
    assert h.actions_of(AbortSocket)
    assert h.m.metrics.dead_links_detected == 1
    assert h.m.phase in (Phase.WAITING, Phase.FETCHING)


def test_seed_bug_half_open_link_is_noticed_when_a_reply_is_due() -> None:
    h = connected(watchdogs=Watchdogs(reply_timeout=10, link_check_timeout=5))
    h.send(realtime_text("are you there?"))
    h.advance(10.1)
    assert h.actions_of(CheckLink) and not h.actions_of(AbortSocket), "silence: check first"
    h.advance(5)  # no pong, no frame: no evidence of life
    aborts = h.actions_of(AbortSocket)
    assert aborts and aborts[0].attempt == 1
    assert h.m.state is SessionState.RECONNECTING


def test_reply_watchdog_has_no_false_alarm_while_the_server_is_talking_or_idle() -> None:
    h = connected(watchdogs=Watchdogs(reply_timeout=10))
    h.advance(600)  # idle for ten minutes: nothing is due, nothing fires
    h.send(realtime_text("long answer please"))
    for _ in range(20):  # a slow server: a message every 8 s
        h.advance(8)
        h.server(usageMetadata={"totalTokenCount": 1})
    h.server(serverContent={"modelTurn": {"parts": [{"text": "done"}]}, "turnComplete": True})
    h.advance(600)
    assert not h.actions_of(AbortSocket)
    assert h.m.state is SessionState.CONNECTED


def test_connect_timeout_aborts_and_probes() -> None:
    h = Harness(watchdogs=Watchdogs(connect_timeout=4))
    h.start()
    h.give_token()
    h.advance(4.1)
    assert h.actions_of(AbortSocket)
    assert h.of(ev.Reconnecting)[-1].kind == "offline"
    h.advance(1)
    # the probe reuses the unspent token with the short probe timeout
    assert h.opens[-1].timeout == 3.0 and len(h.opens) == 2


# -- 7. close codes ---------------------------------------------------------------------------------


def test_1011_is_retried() -> None:
    h = connected()
    h.closed(1011, "The service is currently unavailable.")
    assert h.of(ev.Reconnecting)[-1].kind == "server"


def test_1008_retired_model_is_fatal_with_the_model_to_use_and_never_loops() -> None:
    h = Harness(config=LiveConfig(model="gemini-2.0-flash-live-001"))
    h.start()
    h.give_token()
    h.opened()
    h.closed(
        1008,
        "models/gemini-2.0-flash-live-001 is not found for API version v1alpha, or is not "
        "supported for bidiGenerateContent. Call",
    )
    failed = h.of(ev.Failed)
    assert failed and failed[0].verdict.kind == "fatal_config"
    assert "gemini-3.8-live" in failed[0].advice
    h.advance(3600)
    assert len(h.opens) == 1


def test_1007_on_resume_starts_fresh_reseeded_from_the_transcript() -> None:
    h = connected()
    h.send(realtime_text("My name is Ada."))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "Hi Ada"}]}, "turnComplete": True})
    h.handle_update("h1")
    h.closed(1006)
    h.advance(1)
    h.give_token()
    h.opened()
    assert h.setup_handle() == "h1"
    h.closed(1007, "Request contains an invalid argument.")
    assert h.deleted == 1
    h.give_token()
    h.opened()
    assert h.setup_handle() is None
    h.setup_complete()
    seed = h.frames()[1]["clientContent"]
    assert seed["turnComplete"] is False
    assert [t["parts"][0]["text"] for t in seed["turns"]] == ["My name is Ada.", "Hi Ada"]
    reset = h.of(ev.ContextReset)
    assert reset and reset[0].seeded_turns == 2
    assert h.m.metrics.fresh_session_fallbacks == 1


def test_1007_on_a_fresh_session_is_fatal_not_a_loop() -> None:
    h = Harness()
    h.start()
    h.give_token()
    h.opened()
    h.closed(1007, "Request contains an invalid argument.")
    assert h.m.state is SessionState.FAILED
    h.advance(3600)
    assert len(h.opens) == 1


def test_a_resume_refused_again_and_again_falls_back_to_a_fresh_session() -> None:
    h = connected()
    h.handle_update("h1")
    h.advance(1)
    h.closed(1006)
    refused_from = h.now
    refusals = 0
    for _ in range(100):
        if h.m.phase.value == "waiting":
            h.retry()
        h.give_token()
        h.opened()
        if h.setup_handle() is None:
            break
        refusals += 1
        h.closed(1011, "Internal error encountered.")
    # a stale socket is waited out for a while (not given up after two refusals) ...
    assert refusals >= 3, refusals
    assert h.now - refused_from >= DEFAULT_WATCHDOGS.stale_socket_wait
    # ... but not forever
    assert h.setup_handle() is None
    h.setup_complete()
    reset = h.of(ev.ContextReset)
    assert reset and "refused" in reset[0].reason
    assert h.deleted == 1


def test_1000_after_go_away_is_expected_and_immediate() -> None:
    h = connected()
    h.handle_update("h1")
    h.server(serverContent={"modelTurn": {"parts": [{"text": "x"}]}})
    h.server(goAway={"timeLeft": "30s"})
    h.closed(1000)
    reconnecting = h.of(ev.Reconnecting)[-1]
    assert reconnecting.planned and reconnecting.delay == 0.0


def test_bad_request_does_not_replay_the_poison_message() -> None:
    h = connected()
    h.handle_update("h1")
    h.send({"realtimeInput": {"mediaChunks": [{"mimeType": "audio/pcm", "data": ""}]}})
    h.closed(1007, "Request contains an invalid argument.")
    # a fresh session (not resuming): the request was bad, stop and say so
    assert h.m.state is SessionState.FAILED
    assert any(d.kind == "realtime" for d in h.of(ev.SendDropped))
    h.feed(ResumeRequested())
    h.connect()
    assert not any("mediaChunks" in str(f) for f in h.frames())


# -- 8. handle store -------------------------------------------------------------------------------


def test_every_new_resumable_handle_is_saved_with_the_transcript() -> None:
    h = connected()
    h.send(realtime_text("first"))
    h.handle_update("h1")
    h.handle_update(None, resumable=False)
    h.handle_update("h2")
    assert [s.handle for s in h.saved] == ["h1", "h2"]
    assert h.saved[-1].transcript[0].text == "first"
    h.closed(1006)
    assert h.saved[-1].disconnected_at == h.wall


def test_process_restart_resumes_from_the_stored_handle() -> None:
    h = Harness()
    h.start(StoredSession("stored-h", saved_at=h.wall - 600, disconnected_at=h.wall - 300))
    h.give_token()
    h.opened()
    assert h.setup_handle() == "stored-h"
    h.setup_complete()
    assert h.of(ev.Resumed)


def test_expired_stored_handle_is_dropped_and_the_session_reseeded() -> None:
    from tunnelproof.protocol.client_messages import Turn

    h = Harness()
    stored = StoredSession(
        "old",
        saved_at=h.wall - 3 * 3600,
        disconnected_at=h.wall - 2.5 * 3600,
        transcript=(Turn("user", "remember me"),),
    )
    h.start(stored)
    assert h.deleted == 1
    h.connect()
    assert h.setup_handle() is None
    assert h.frames()[1]["clientContent"]["turns"][0]["parts"][0]["text"] == "remember me"
    assert h.of(ev.ContextReset)


def test_handle_older_than_two_hours_after_disconnect_is_not_used() -> None:
    h = connected(policy=RetryPolicy(max_offline_seconds=None))
    h.handle_update("h1")
    h.closed(1006)
    for _ in range(20_000):
        h.advance(1)
        if h.m.phase is Phase.FETCHING:
            h.fail_token(TokenFailure.OFFLINE)
        if h.wall - h.saved[-1].disconnected_at > 2 * 3600 + 5:  # type: ignore[operator]
            break
    h.advance(1)
    h.give_token()
    h.opened()
    assert h.setup_handle() is None


# -- 9. events and metrics ----------------------------------------------------------------------------


def test_events_and_metrics_of_a_drop_and_resume() -> None:
    h = connected()
    h.handle_update("h1")
    assert isinstance(h.of(ev.Connected)[0], ev.Connected)
    h.closed(1006)
    h.advance(0.6)
    if h.m.phase is Phase.FETCHING:
        h.give_token()
    h.opened()
    h.advance(0.4)
    h.setup_complete()
    kinds = [type(e).__name__ for e in h.events]
    assert kinds[:4] == ["Connected", "Disconnected", "Reconnecting", "Resumed"]
    metrics = h.m.metrics
    assert metrics.reconnects == 1
    assert metrics.last_gap == pytest.approx(1.0)
    assert metrics.downtime_total == pytest.approx(1.0)
    assert metrics.resume_success_rate == 1.0
    assert metrics.tokens_fetched == 2


def test_server_content_is_delivered_as_typed_events() -> None:
    h = connected()
    h.server(
        serverContent={
            "modelTurn": {
                "parts": [
                    {"text": "hi"},
                    {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAA="}},
                ]
            },
            "outputTranscription": {"text": "hi"},
        }
    )
    h.server(serverContent={"generationComplete": True})
    h.server(serverContent={"interrupted": True})
    h.server(serverContent={"turnComplete": True})
    h.server(toolCall=tool_call("c"))
    h.server(toolCallCancellation={"ids": ["c"]})
    h.server(somethingNew={"x": 1})
    names = [type(e).__name__ for e in h.events[1:]]
    assert names == [
        "TextDelta",
        "AudioChunk",
        "OutputTranscript",
        "GenerationComplete",
        "Interrupted",
        "TurnComplete",
        "ToolCallRequested",
        "ToolCallCancelled",
        "UnknownServerMessage",
    ]


def test_a_malformed_frame_is_an_event_not_a_crash() -> None:
    h = connected()
    h.feed(FrameReceived(1, b"{nope"))
    h.server(goAway={"timeLeft": "soon"})
    violations = h.of(ev.ProtocolViolation)
    assert len(violations) == 2
    assert h.m.state is SessionState.CONNECTED


# -- app close / resume ----------------------------------------------------------------------------


def test_close_is_graceful_and_final() -> None:
    h = connected()
    h.feed(CloseRequested())
    assert h.actions_of(CloseSocket)[-1].reason == "client closed"
    h.closed(1000)
    assert h.m.state is SessionState.CLOSED
    assert isinstance(h.events[-1], ev.Closed)
    h.advance(3600)
    assert len(h.opens) == 1


def test_resume_after_a_fatal_stop() -> None:
    h = Harness()
    h.start()
    h.fail_token(TokenFailure.AUTH)
    assert h.m.state is SessionState.FAILED
    queued = h.send(realtime_text("while failed"))
    assert queued.queued
    h.feed(ResumeRequested())
    h.connect()
    assert h.m.state is SessionState.CONNECTED
    assert realtime_text("while failed") in h.frames()


def test_user_text_via_client_content_is_recorded_in_the_transcript() -> None:
    h = connected()
    h.send(user_text("hello there"))
    assert h.m.transcript.snapshot()[0].text == "hello there"
    sends = [a for a in h.log if isinstance(a, SendFrame)]
    assert len(sends) == 2  # setup, then the message


def test_auth_close_after_setup_retries_with_a_fresh_token_but_not_during_setup() -> None:
    h = connected()
    h.handle_update("h1")
    reason = "Request had invalid authentication credentials. Expected OAuth 2 access token"
    h.closed(1008, reason)  # the token expired mid-connection
    assert h.m.state is SessionState.RECONNECTING
    h.retry()
    h.give_token()
    h.opened()
    h.closed(1008, reason)  # refused during setup: fatal, no loop
    assert h.m.state is SessionState.FAILED
    assert h.of(ev.Failed)[0].verdict.kind == "fatal_auth"


def test_a_herd_dropped_together_spreads_its_first_retries() -> None:
    # 500 clients dropped by the same server restart: full jitter spreads them over the
    # whole first window instead of a synchronized stampede (the seed: 1.0-1.5 s, all).
    delays = []
    for seed in range(500):
        h = connected(seed=seed)
        h.closed(1011, "The service is currently unavailable.")
        delays.append(h.of(ev.Reconnecting)[-1].delay)
    buckets = [0] * 5
    for delay in delays:
        assert 0.0 <= delay <= 0.5
        buckets[min(4, int(delay / 0.1))] += 1
    assert all(60 <= b <= 140 for b in buckets), buckets


def test_close_while_reconnecting_is_immediate_and_reports_queued_messages() -> None:
    h = connected()
    h.closed(1006)
    queued = h.send(realtime_text("lost in the tunnel"))
    assert queued.queued
    assert h.m.phase is Phase.FETCHING  # the first attempt after a drop goes at once
    h.feed(CloseRequested())
    assert h.m.state is SessionState.CLOSED
    assert isinstance(h.events[-1], ev.Closed)
    assert queued.seq in [s for d in h.of(ev.SendDropped) for s in d.seqs]
    assert h.pending_request() is None, "the token fetch was cancelled"
    h.advance(3600)
    assert len(h.opens) == 1


def test_close_while_the_socket_is_opening_aborts_it() -> None:
    h = Harness()
    h.start()
    h.give_token()
    h.feed(CloseRequested())
    assert h.actions_of(AbortSocket)
    assert h.m.state is SessionState.CLOSED


def test_a_link_that_goes_quiet_mid_answer_is_found_but_not_after_generation_complete() -> None:
    h = connected(watchdogs=Watchdogs(reply_timeout=10, link_check_timeout=5))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "Once upon"}]}})
    h.advance(15.1)  # output stopped flowing mid-answer, and the link check found nothing
    assert h.actions_of(AbortSocket)
    quiet = connected(watchdogs=Watchdogs(reply_timeout=10))
    quiet.server(serverContent={"modelTurn": {"parts": [{"text": "All done"}]}})
    quiet.server(serverContent={"generationComplete": True})
    quiet.advance(60)  # waiting for playback before turnComplete is normal
    assert not quiet.actions_of(AbortSocket)
    quiet.server(serverContent={"turnComplete": True})
    assert quiet.m.state is SessionState.CONNECTED


def test_saved_handles_of_a_reconnected_session_carry_no_stale_disconnect_time() -> None:
    h = connected()
    h.handle_update("h1")
    h.closed(1006)
    assert h.saved[-1].disconnected_at is not None
    h.advance(1)
    h.connect()
    h.advance(3 * 3600)  # a long, healthy session after the drop
    h.handle_update("h2")
    assert h.saved[-1].disconnected_at is None
    assert h.saved[-1].valid_at(h.wall)


def test_reseed_requested_closes_and_starts_a_fresh_session_seeded_from_the_transcript() -> None:
    """A resume Google accepted but that restored nothing: the app asks for a re-seed."""
    h = connected()
    h.send(realtime_text("My name is Ada."))
    h.server(serverContent={"modelTurn": {"parts": [{"text": "Hi Ada"}]}, "turnComplete": True})
    h.handle_update("h1")
    h.feed(ReseedRequested())
    assert h.deleted == 1 and h.m.resumption_handle is None
    closes = h.actions_of(CloseSocket)
    assert closes and closes[-1].code == 1000
    h.closed(1000)
    h.give_token()
    h.opened()
    assert h.setup_handle() is None
    h.setup_complete()
    seed = h.frames()[1]["clientContent"]
    assert [t["parts"][0]["text"] for t in seed["turns"]] == ["My name is Ada.", "Hi Ada"]
    reset = h.of(ev.ContextReset)
    assert reset and reset[0].seeded_turns == 2 and "asked" in reset[0].reason


def test_reseed_requested_while_closed_or_idle_does_nothing() -> None:
    h = Harness()
    h.feed(ReseedRequested())
    assert h.m.state is SessionState.IDLE and not h.actions_of(CloseSocket)
