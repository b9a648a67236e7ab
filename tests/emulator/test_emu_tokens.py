"""Ephemeral tokens over HTTP and WebSocket: body, defaults, errors, uses, expiry, locks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.emulator.policy import REASON_UNAUTHENTICATED
from tunnelproof.emulator.tokens import MASK_ERROR
from tunnelproof.protocol.models import EMULATOR_TEXT_MODEL
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import (
    FakeClock,
    ask,
    expect_close,
    expect_http_status,
    mint,
    mint_token,
    open_ws,
    recv,
    refused_with,
    send,
    setup,
    start,
    token_url,
)


def _at(clock_now: float, seconds: float) -> str:
    return datetime.fromtimestamp(clock_now + seconds, UTC).isoformat()


@pytest.mark.parametrize("version", ["v1", "v1alpha", "v1beta"])
async def test_mint_answers_name_only_with_defaults_in_the_ledger(
    emulator_factory: EmulatorFactory, version: str
) -> None:
    clock = FakeClock()
    emu = await emulator_factory(clock=clock)
    status, body = await mint(emu, {}, version=version)
    assert status == 200
    assert list(body) == ["name"] and body["name"].startswith("auth_tokens/")
    (token,) = emu.controls.token_ledger()
    assert token["uses"] == 1
    assert token["expire_at"] - clock.now == pytest.approx(1800)
    assert token["new_session_expire_at"] - clock.now == pytest.approx(60)


async def test_empty_body_is_accepted(emulator: EmulatorServer) -> None:
    status, body = await mint(emulator, raw=b"")
    assert status == 200 and body["name"].startswith("auth_tokens/")


async def test_mint_can_echo_times(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(token_response_echo=True))
    _, body = await mint(emu, {"uses": 3})
    assert body["uses"] == 3 and body["expireTime"].endswith("Z")


async def test_mint_needs_the_right_key(emulator: EmulatorServer) -> None:
    status, body = await mint(emulator, {}, key="wrong")
    assert status == 400
    assert body == {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
        }
    }


async def test_mint_accepts_key_query(emulator: EmulatorServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        url = f"{emulator.http_base}/v1alpha/auth_tokens?key={emulator.api_key}"
        async with http.post(url, json={}) as response:
            assert response.status == 200
        async with http.post(f"{emulator.http_base}/v1alpha/auth_tokens", json={}) as response:
            assert response.status == 403
            assert (await response.json())["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"liveConnectConstraints": {}}, 'Unknown name "liveConnectConstraints"'),
        ({"uses": -1}, "uses"),
        ({"uses": "many"}, "uses"),
        ({"expireTime": "tomorrow"}, "expire_time"),
        ({"expireTime": "2001-01-01T00:00:00Z"}, "expire_time"),
        ({"newSessionExpireTime": "2001-01-01T00:00:00Z"}, "new_session_expire_time"),
    ],
)
async def test_invalid_bodies_are_400(
    emulator: EmulatorServer, body: dict[str, object], fragment: str
) -> None:
    status, data = await mint(emulator, body)
    assert status == 400
    assert data["error"]["status"] == "INVALID_ARGUMENT"
    assert fragment in data["error"]["message"]


async def test_times_must_be_less_than_20_hours_ahead(emulator_factory: EmulatorFactory) -> None:
    clock = FakeClock()
    emu = await emulator_factory(clock=clock)
    status, _ = await mint(emu, {"expireTime": _at(clock.now, 20 * 3600 + 1)})
    assert status == 400
    status, _ = await mint(emu, {"expire_time": _at(clock.now, 19 * 3600)})
    assert status == 200


async def test_mask_missing_a_present_field_is_400(emulator: EmulatorServer) -> None:
    body = {
        "bidiGenerateContentSetup": {
            "model": "models/gemini-3.8-live",
            "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.5},
        },
        "fieldMask": "model,generationConfig.responseModalities",
    }
    status, data = await mint(emulator, body)
    assert (status, data["error"]["message"]) == (400, MASK_ERROR)
    body["fieldMask"] = "model,generationConfig.responseModalities,generationConfig.temperature"
    status, _ = await mint(emulator, body)
    assert status == 200


async def test_empty_mask_takes_the_setup_entirely_from_the_token(emulator: EmulatorServer) -> None:
    token = await mint_token(
        emulator,
        {
            "bidiGenerateContentSetup": {
                "model": "models/gemini-3.8-live",
                "generationConfig": {"responseModalities": ["AUDIO"]},
                "systemInstruction": {"parts": [{"text": "locked"}]},
            }
        },
    )
    url = token_url(emulator, token, version="v1alpha")
    # The client asks for TEXT from the emulator's text model; the lock wins entirely.
    ws, handle = await start(
        emulator,
        url,
        modality="TEXT",
        model=EMULATOR_TEXT_MODEL,
        systemInstruction={"parts": [{"text": "mine"}]},
    )
    assert handle  # the client's sessionResumption survives the lock
    (session,) = emulator.controls.sessions()
    assert session["model"] == "gemini-3.8-live"
    assert session["setup"]["systemInstruction"] == {"parts": [{"text": "locked"}]}
    assert session["setup"]["generationConfig"] == {"responseModalities": ["AUDIO"]}
    await ws.close()


async def test_nonempty_mask_overwrites_only_listed_fields(emulator: EmulatorServer) -> None:
    token = await mint_token(
        emulator,
        {
            "bidiGenerateContentSetup": {
                "model": "models/gemini-3.8-live",
                "generationConfig": {"responseModalities": ["AUDIO"]},
            },
            "fieldMask": "model,generation_config.response_modalities,generationConfig.temperature",
        },
    )
    ws, _ = await start(
        emulator,
        token_url(emulator, token, version="v1alpha"),
        model=EMULATOR_TEXT_MODEL,
        modality="TEXT",
        systemInstruction={"parts": [{"text": "mine"}]},
        generationConfig={"responseModalities": ["TEXT"], "temperature": 0.9, "topK": 3},
    )
    (session,) = emulator.controls.sessions()
    assert session["model"] == "gemini-3.8-live"
    # Listed and present in the token: overwritten. Listed but absent: cleared.
    # Not listed: the client's value stays.
    assert session["setup"]["generationConfig"] == {"responseModalities": ["AUDIO"], "topK": 3}
    assert session["setup"]["systemInstruction"] == {"parts": [{"text": "mine"}]}
    await ws.close()


async def test_single_use_token_cannot_start_a_second_session(emulator: EmulatorServer) -> None:
    token = await mint_token(emulator)
    ws, _ = await start(emulator, token_url(emulator, token))
    await ws.close()
    await emulator.controls.wait_for_open(0)
    code, reason = await refused_with(token_url(emulator, token))
    assert (code, reason) == (1008, REASON_UNAUTHENTICATED[:123])
    assert emulator.controls.token_ledger()[0]["usesConsumed"] == 1


async def test_unlimited_token_opens_many_sessions(emulator: EmulatorServer) -> None:
    token = await mint_token(emulator, {"uses": 0})
    for _ in range(3):
        ws, _ = await start(emulator, token_url(emulator, token))
        await ws.close()
    assert emulator.controls.token_ledger()[0]["usesConsumed"] == 3


async def test_three_use_token_opens_exactly_three_sessions(emulator: EmulatorServer) -> None:
    token = await mint_token(emulator, {"uses": 3})
    for _ in range(3):
        ws, _ = await start(emulator, token_url(emulator, token))
        await ws.close()
    await emulator.controls.wait_for_open(0)
    code, _ = await refused_with(token_url(emulator, token))
    assert code == 1008


async def test_strict_uses_reproduce_the_seeds_401_on_reconnect(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(EmulatorPolicy(strict_token_uses=True))
    token = await mint_token(emu)
    ws, handle = await start(emu, token_url(emu, token))
    await ws.close()
    await emu.controls.wait_for_open(0)
    assert await expect_http_status(token_url(emu, token)) == 401
    assert handle


async def test_new_session_window_closes_but_resume_still_works(
    emulator_factory: EmulatorFactory,
) -> None:
    clock = FakeClock()
    emu = await emulator_factory(EmulatorPolicy(generation_speed=0), clock=clock)  # unpaced
    token = await mint_token(emu)
    ws, _ = await start(emu, token_url(emu, token))
    _, handle, _ = await ask(ws, "remember the tunnel")
    await ws.close()
    await emu.controls.wait_for_open(0)
    clock.advance(61)  # past newSessionExpireTime (60 s), well within expireTime (30 min)
    second = await mint_token(emu, {"uses": 0})
    del second
    code, _ = await refused_with(token_url(emu, token))  # a new session: refused
    assert code == 1008
    ws = await open_ws(token_url(emu, token))
    await send(ws, setup(handle=handle))
    assert await recv(ws) == {"setupComplete": {}}
    await recv(ws)
    answer, _, _ = await ask(ws, "what did I say first")
    assert answer == 'You first said: "remember the tunnel".'
    await ws.close()


async def test_expired_token_is_refused_at_upgrade(emulator_factory: EmulatorFactory) -> None:
    clock = FakeClock()
    emu = await emulator_factory(clock=clock)
    token = await mint_token(emu, {"uses": 0})
    clock.advance(1801)
    assert await expect_http_status(token_url(emu, token)) == 401


async def test_token_expiry_ends_an_open_session(emulator: EmulatorServer) -> None:
    now = datetime.now(UTC)
    token = await mint_token(emulator, {"expireTime": (now + timedelta(seconds=1.0)).isoformat()})
    ws, _ = await start(emulator, token_url(emulator, token))
    code, reason = await expect_close(ws)
    assert (code, reason) == (1008, REASON_UNAUTHENTICATED[:123])
    event = await emulator.controls.wait_for_event("token_expired")
    assert event["token"] == token
