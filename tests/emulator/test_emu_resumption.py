"""Resumption: when handles come, what they restore, and when resumes are refused."""

from __future__ import annotations

import asyncio

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.close_codes import REASON_INTERNAL_ERROR, REASON_INVALID_ARGUMENT
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import (
    FakeClock,
    ask,
    expect_close,
    key_url,
    open_ws,
    recv,
    recv_until,
    refused_with,
    send,
    setup,
    start,
    text_of,
)

SLOW = EmulatorPolicy(seconds_per_word=0.05)  # spoken at real time: 50 ms a word


async def _resume(emu: EmulatorServer, handle: str, **kwargs: object):  # type: ignore[no-untyped-def]
    ws = await open_ws(key_url(emu))
    await send(ws, setup(handle=handle, **kwargs))  # type: ignore[arg-type]
    assert await recv(ws) == {"setupComplete": {}}
    update = await recv(ws)
    assert update["sessionResumptionUpdate"]["resumable"] is True
    return ws, update["sessionResumptionUpdate"]["newHandle"]


async def test_a_new_handle_after_each_settled_point(emulator: EmulatorServer) -> None:
    ws, h0 = await start(emulator)
    _, h1, _ = await ask(ws, "one")
    _, h2, _ = await ask(ws, "two")
    assert len({h0, h1, h2}) == 3
    assert emulator.controls.sessions()[0]["handles"] == [h0, h1, h2]
    await ws.close()


async def test_not_resumable_while_generating(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(SLOW)
    ws, _ = await start(emu)
    await send(ws, {"realtimeInput": {"text": "count to 5"}})
    messages = await recv_until(ws, lambda m: "modelTurn" in m.get("serverContent", {}))
    assert messages[0] == {"sessionResumptionUpdate": {"resumable": False}}
    assert emu.controls.connections()[0]["generating"] is True
    await ws.close()


async def test_not_resumable_while_a_tool_call_is_pending(emulator: EmulatorServer) -> None:
    tools = [{"functionDeclarations": [{"name": "get_time"}]}]
    ws, _ = await start(emulator, tools=tools)
    await send(ws, {"realtimeInput": {"text": "what time is it?"}})
    update = await recv(ws)
    assert update == {"sessionResumptionUpdate": {"resumable": False}}
    call = (await recv(ws))["toolCall"]["functionCalls"][0]
    assert call["name"] == "get_time" and call["id"]
    assert emulator.controls.sessions()[0]["pending_calls"] == {call["id"]: "get_time"}
    await send(
        ws,
        {
            "toolResponse": {
                "functionResponses": [
                    {"id": call["id"], "name": "get_time", "response": {"time": "12:34"}}
                ]
            }
        },
    )
    messages = await recv_until(
        ws, lambda m: m.get("sessionResumptionUpdate", {}).get("resumable") is True
    )
    assert text_of(messages) == "The get_time tool says: 12:34."
    assert messages[0] == {"sessionResumptionUpdate": {"resumable": False}}
    await ws.close()


async def test_resume_restores_history_as_of_the_handle(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator)
    _, after_first, _ = await ask(ws, "first words")
    _, _, _ = await ask(ws, "second words")
    await ws.close()
    await emulator.controls.wait_for_open(0)
    assert after_first is not None
    ws, _ = await _resume(emulator, after_first)
    answer, _, _ = await ask(ws, "how many turns")
    assert answer == "You have taken 2 turns so far."  # "second words" is not in that state
    await ws.close()


async def test_drop_mid_generation_never_continues_the_answer(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(SLOW)
    ws, _ = await start(emu)
    _, before, _ = await ask(ws, "my name is Lin")
    await send(ws, {"realtimeInput": {"text": "count to 50"}})
    await emu.controls.wait_for_event("generation_chunk", count=3)
    emu.controls.abort_connection()
    code, _ = await expect_close(ws)
    assert code is None or code == 1006  # no close frame
    await emu.controls.wait_for_open(0)
    assert before is not None
    ws, _ = await _resume(emu, before)
    # Nothing of the cut answer arrives; the next message answers the next question.
    answer, _, _ = await ask(ws, "what is my name")
    assert answer == "Your name is Lin."
    history = emu.controls.history()
    assert [e["text"] for e in history if e["role"] == "user"] == [
        "my name is Lin",
        "what is my name",
    ]
    assert not any("1, 2, 3" in e["text"] for e in history)
    await ws.close()


async def test_unknown_handle_is_refused_1007_by_default(emulator: EmulatorServer) -> None:
    code, reason = await refused_with(key_url(emulator), setup(handle="no-such-handle"))
    assert (code, reason) == (1007, REASON_INVALID_ARGUMENT)


async def test_unknown_handle_code_is_configurable(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(invalid_handle_close_code=1008))
    code, _ = await refused_with(key_url(emu), setup(handle="no-such-handle"))
    assert code == 1008


async def test_handles_expire_after_the_validity_window(emulator_factory: EmulatorFactory) -> None:
    clock = FakeClock()
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0), clock=clock)  # unpaced
    ws, _ = await start(emu)
    _, handle, _ = await ask(ws, "hello")
    clock.advance(10_000)  # while connected, handles do not age
    await ws.close()
    await emu.controls.wait_for_open(0)
    clock.advance(7199)
    ws, handle2 = await _resume(emu, handle)  # 1 s before the 2 h window ends
    await ws.close()
    await emu.controls.wait_for_open(0)
    clock.advance(7200.5)
    code, _ = await refused_with(key_url(emu), setup(handle=handle2))
    assert code == 1007
    assert emu.controls.events(kind="resume_refused")[-1]["problem"] == "expired"


async def test_resume_while_the_old_socket_is_open_is_1011(emulator: EmulatorServer) -> None:
    ws, handle = await start(emulator)
    assert handle is not None
    code, reason = await refused_with(key_url(emulator), setup(handle=handle))
    assert (code, reason) == (1011, REASON_INTERNAL_ERROR)
    # The old connection is unaffected.
    answer, _, _ = await ask(ws, "still here")
    assert answer == 'You said: "still here".'
    await ws.close()


async def test_refuse_the_next_n_resumes(emulator: EmulatorServer) -> None:
    ws, handle = await start(emulator)
    await ws.close()
    await emulator.controls.wait_for_open(0)
    assert handle is not None
    emulator.controls.refuse_resumes(2, code=1013, reason="try later")
    for _ in range(2):
        assert await refused_with(key_url(emulator), setup(handle=handle)) == (1013, "try later")
    ws, _ = await _resume(emulator, handle)
    await ws.close()


async def test_model_change_on_resume_is_refused(emulator: EmulatorServer) -> None:
    ws, handle = await start(emulator)
    await ws.close()
    await emulator.controls.wait_for_open(0)
    code, _ = await refused_with(
        key_url(emulator), setup(handle=handle, model="gemini-3.1-flash-live-preview")
    )
    assert code == 1007


async def test_pending_tool_call_is_gone_after_resume(emulator: EmulatorServer) -> None:
    tools = [{"functionDeclarations": [{"name": "get_time"}]}]
    ws, handle = await start(emulator, tools=tools)
    await send(ws, {"realtimeInput": {"text": "what time is it"}})
    call = (await recv_until(ws, lambda m: "toolCall" in m))[-1]["toolCall"]["functionCalls"][0]
    await ws.close()
    await emulator.controls.wait_for_open(0)
    assert handle is not None
    ws, _ = await _resume(emulator, handle, tools=tools)
    await send(
        ws,
        {
            "toolResponse": {
                "functionResponses": [{"id": call["id"], "name": "get_time", "response": {}}]
            }
        },
    )
    code, _ = await expect_close(ws)
    assert code == 1007  # the resumed state never saw that call id


async def test_resume_takes_over_a_half_open_socket_once_it_is_silent_and_deaf(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(resume_takeover_idle=0.6, resume_probe_timeout=0.3))
    ws, handle = await start(emu)
    assert handle is not None
    # A half-open link: the client neither sends nor reads (so it cannot answer pings).
    ws.transport.pause_reading()
    # Within the idle window the old socket still counts as alive: 1011, without a probe.
    code, _ = await refused_with(key_url(emu), setup(handle=handle))
    assert code == 1011
    assert emu.hub.events.count("probe") == 0
    # Once it has been silent long enough, the resume pings it, hears nothing, takes over.
    await asyncio.sleep(0.7)  # the rule is about elapsed silence itself
    ws2, _ = await _resume(emu, handle)
    assert emu.hub.events.count("probe", answered=False) == 1
    assert emu.hub.events.count("resume_takeover") == 1
    old = emu.controls.connections()[0]  # the first connection, the half-open one
    assert old["state"] == "aborted"  # dropped without a close frame
    await ws2.close()
    ws.transport.abort()


async def test_a_silent_but_live_old_socket_answers_the_probe_and_keeps_its_session(
    emulator_factory: EmulatorFactory,
) -> None:
    """Google refuses a resume while the old socket is open (1011, sip-to-ai#14); a client
    that is merely quiet is still open, and its WebSocket stack answers the ping."""
    emu = await emulator_factory(EmulatorPolicy(resume_takeover_idle=0.3, resume_probe_timeout=2.0))
    ws, handle = await start(emu)
    assert handle is not None
    await asyncio.sleep(0.4)
    loop = asyncio.get_running_loop()
    started = loop.time()
    code, reason = await refused_with(key_url(emu), setup(handle=handle))
    assert (code, reason) == (1011, REASON_INTERNAL_ERROR)
    assert loop.time() - started < 1.5  # refused as soon as the pong came, not at the timeout
    assert emu.hub.events.count("probe", answered=True) == 1
    assert emu.hub.events.count("resume_takeover") == 0
    # The old connection is untouched and still answers.
    text, _, _ = await ask(ws, "still here")
    assert text == 'You said: "still here".'
    await ws.close()


def test_takeover_is_on_by_default_after_ten_silent_seconds() -> None:
    policy = EmulatorPolicy()
    assert (policy.resume_takeover_idle, policy.resume_probe_timeout) == (10.0, 1.0)


def test_takeover_policy_parses_from_text() -> None:
    policy = EmulatorPolicy()
    policy.update({"resume_takeover_idle": "2.5"})
    assert policy.resume_takeover_idle == 2.5
    policy.update({"resume_takeover_idle": "none"})
    assert policy.resume_takeover_idle is None
