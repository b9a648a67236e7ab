"""The four auth forms, and wrong method/credential combinations refused as Google does."""

from __future__ import annotations

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.close_codes import REASON_API_KEY_INVALID, REASON_UNREGISTERED_CALLER
from tunnelproof.protocol.endpoints import Method
from tunnelproof.testing.emulator_fixtures import EmulatorFactory

from .emu_helpers import (
    expect_http_status,
    mint_token,
    refused_with,
    start,
    token_url,
    ws_url,
)


@pytest.mark.parametrize("version", ["v1", "v1alpha", "v1beta"])
@pytest.mark.parametrize("double_slash", [False, True])
async def test_api_key_query_on_every_version_and_path_form(
    emulator: EmulatorServer, version: str, double_slash: bool
) -> None:
    url = ws_url(emulator, version=version, query="key=emulator-key", double_slash=double_slash)
    ws, handle = await start(emulator, url)
    assert handle
    (conn,) = emulator.controls.connections()
    assert (conn["version"], conn["auth_form"]) == (version, "key_query")
    await ws.close()


async def test_api_key_header(emulator: EmulatorServer) -> None:
    ws, _ = await start(emulator, ws_url(emulator), headers={"x-goog-api-key": "emulator-key"})
    assert emulator.controls.connections()[0]["auth_form"] == "key_header"
    await ws.close()


@pytest.mark.parametrize("encode", [True, False])
async def test_token_query_encoded_or_not(emulator: EmulatorServer, encode: bool) -> None:
    token = await mint_token(emulator)
    ws, _ = await start(emulator, token_url(emulator, token, encode=encode, version="v1alpha"))
    (conn,) = emulator.controls.connections()
    assert (conn["auth_form"], conn["token"]) == ("token_query", token)
    await ws.close()


async def test_token_authorization_header(emulator: EmulatorServer) -> None:
    token = await mint_token(emulator)
    url = ws_url(emulator, version="v1alpha", method=Method.CONSTRAINED)
    ws, _ = await start(emulator, url, headers={"Authorization": f"Token {token}"})
    assert emulator.controls.connections()[0]["auth_form"] == "token_header"
    await ws.close()


async def test_sdk_sends_token_in_both_headers(emulator: EmulatorServer) -> None:
    token = await mint_token(emulator)
    url = ws_url(emulator, version="v1alpha", method=Method.CONSTRAINED)
    headers = {"x-goog-api-key": token, "Authorization": f"Token {token}"}
    ws, _ = await start(emulator, url, headers=headers)
    assert emulator.controls.connections()[0]["token"] == token
    await ws.close()


async def test_wrong_api_key_closes_1007_key_not_valid(emulator: EmulatorServer) -> None:
    code, reason = await refused_with(ws_url(emulator, query="key=wrong"))
    assert (code, reason) == (1007, REASON_API_KEY_INVALID)


async def test_token_passed_as_key_is_not_a_valid_key(emulator: EmulatorServer) -> None:
    token = await mint_token(emulator)
    code, reason = await refused_with(ws_url(emulator, query=f"key={token}"))
    assert (code, reason) == (1007, REASON_API_KEY_INVALID)


async def test_token_on_plain_method_is_an_unregistered_caller(emulator: EmulatorServer) -> None:
    token = await mint_token(emulator)
    code, reason = await refused_with(ws_url(emulator, query=f"access_token={token}"))
    assert (code, reason) == (1008, REASON_UNREGISTERED_CALLER)
    code, reason = await refused_with(ws_url(emulator), headers={"Authorization": f"Token {token}"})
    assert (code, reason) == (1008, REASON_UNREGISTERED_CALLER)


async def test_no_credential_is_an_unregistered_caller(emulator: EmulatorServer) -> None:
    code, reason = await refused_with(ws_url(emulator))
    assert (code, reason) == (1008, REASON_UNREGISTERED_CALLER)


async def test_api_key_on_constrained_method_is_refused(emulator: EmulatorServer) -> None:
    url = ws_url(emulator, method=Method.CONSTRAINED, query="key=emulator-key")
    code, reason = await refused_with(url)
    assert (code, reason) == (1008, REASON_UNREGISTERED_CALLER)


async def test_unknown_token_is_http_401_at_upgrade(emulator: EmulatorServer) -> None:
    status = await expect_http_status(token_url(emulator, "auth_tokens/nope"))
    assert status == 401
    assert emulator.controls.connections() == []


async def test_unknown_token_can_be_refused_with_a_close(emulator_factory: EmulatorFactory) -> None:
    emu = await emulator_factory(EmulatorPolicy(token_rejection="close"))
    code, reason = await refused_with(token_url(emu, "auth_tokens/nope"))
    assert code == 1008
    assert reason.startswith("Request had invalid authentication credentials.")


async def test_unknown_path_is_404(emulator: EmulatorServer) -> None:
    url = emulator.ws_base + "/ws/google.ai.generativelanguage.v2.GenerativeService.Bidi"
    assert await expect_http_status(url) == 404
