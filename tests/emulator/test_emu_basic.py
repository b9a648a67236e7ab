"""The basics over raw websockets: mint, connect, ask, resume."""

from __future__ import annotations

from tunnelproof.emulator import EmulatorServer

from .emu_helpers import ask, mint_token, open_ws, recv, send, setup, start, token_url


async def test_api_key_session_answers_and_remembers(emulator: EmulatorServer) -> None:
    ws, handle = await start(emulator)
    assert handle
    answer, _, _ = await ask(ws, "my name is Ada")
    assert answer == "Nice to meet you, Ada."
    answer, _, _ = await ask(ws, "what did I say first?")
    assert answer == 'You first said: "my name is Ada".'
    await ws.close()


async def test_token_session_over_double_slash_and_resume(emulator: EmulatorServer) -> None:
    token = await mint_token(emulator, {"uses": 1})
    ws, _ = await start(emulator, token_url(emulator, token, version="v1alpha", double_slash=True))
    _, handle, _ = await ask(ws, "the first thing")
    assert handle is not None
    await ws.close()
    await emulator.controls.wait_for_open(0)
    # Same single-use token: a resume is not a use.
    ws2 = await open_ws(token_url(emulator, token, encode=False, version="v1alpha"))
    await send(ws2, setup(handle=handle))
    assert await recv(ws2) == {"setupComplete": {}}
    await recv(ws2)  # handle
    answer, _, _ = await ask(ws2, "what did I say first")
    assert answer == 'You first said: "the first thing".'
    ledger = emulator.controls.token_ledger()
    assert [c["resume"] for c in ledger[0]["connections"]] == [False, True]
    assert ledger[0]["usesConsumed"] == 1
    await ws2.close()
