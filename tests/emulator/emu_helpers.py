"""Raw-websocket helpers for the emulator tests (no SDK, so every byte is ours)."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import websockets
from websockets.asyncio.client import ClientConnection

from tunnelproof.emulator import EmulatorProcess, EmulatorServer
from tunnelproof.protocol.endpoints import Method, live_path

if TYPE_CHECKING:
    from google import genai

MODEL = "gemini-3.8-live"
TIMEOUT = 15.0
Json = dict[str, Any]
Emu = EmulatorServer | EmulatorProcess


def ws_url(
    emu: Emu,
    *,
    version: str = "v1beta",
    method: Method = Method.BIDI,
    query: str = "",
    double_slash: bool = False,
) -> str:
    _remember(emu)
    path = live_path(version, method)  # type: ignore[arg-type]
    if double_slash:
        path = "/" + path
    return emu.ws_base + path + (f"?{query}" if query else "")


def key_url(emu: Emu, **kwargs: Any) -> str:
    return ws_url(emu, query=f"key={emu.api_key}", **kwargs)


def token_url(emu: Emu, token: str, *, encode: bool = True, **kwargs: Any) -> str:
    value = token.replace("/", "%2F") if encode else token
    return ws_url(emu, method=Method.CONSTRAINED, query=f"access_token={value}", **kwargs)


CA_FILES: dict[str, str] = {}  # ws base -> CA file, so helpers can open wss URLs


def _ssl_for(url: str) -> ssl.SSLContext | None:
    for base, ca in CA_FILES.items():
        if url.startswith(base) or url.startswith(base.replace("wss://", "https://")):
            return ssl.create_default_context(cafile=ca)
    return None


def _remember(emu: Any) -> None:
    if getattr(emu, "ca_file", None):
        CA_FILES[emu.ws_base] = emu.ca_file


async def open_ws(url: str, headers: Mapping[str, str] | None = None) -> ClientConnection:
    kwargs: dict[str, Any] = {}
    context = _ssl_for(url)
    if context is not None:
        kwargs["ssl"] = context
    return await websockets.connect(
        url,
        additional_headers=dict(headers or {}),
        ping_interval=None,
        open_timeout=TIMEOUT,
        **kwargs,
    )


def setup(
    *,
    model: str = MODEL,
    modality: str = "AUDIO",
    resumption: bool = True,
    handle: str | None = None,
    transcript: bool = True,
    **extra: Any,
) -> Json:
    """A setup message: AUDIO answers with an output transcript, as every Live model gives."""
    body: Json = {
        "model": f"models/{model}",
        "generationConfig": {"responseModalities": [modality]},
    }
    if transcript:
        body["outputAudioTranscription"] = {}
    if handle is not None:
        body["sessionResumption"] = {"handle": handle}
    elif resumption:
        body["sessionResumption"] = {}
    body.update(extra)
    return {"setup": body}


async def send(ws: ClientConnection, message: Mapping[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> Json:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(raw, bytes), f"server frames must be binary, got {type(raw).__name__}"
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value


async def recv_until(
    ws: ClientConnection,
    done: Callable[[Json], bool],
    *,
    timeout: float = TIMEOUT,
    limit: int = 5000,
) -> list[Json]:
    """Messages up to and including the first for which ``done`` is true."""
    out: list[Json] = []
    async with asyncio.timeout(timeout):
        for _ in range(limit):
            message = await recv(ws, timeout)
            out.append(message)
            if done(message):
                return out
    raise AssertionError(f"no matching message in {limit} messages")


def turn_complete(message: Json) -> bool:
    return bool(message.get("serverContent", {}).get("turnComplete"))


def is_update(message: Json) -> bool:
    return "sessionResumptionUpdate" in message


def text_of(messages: list[Json]) -> str:
    """The answer's words: the output transcript (AUDIO), or text parts (the text model)."""
    parts = []
    for m in messages:
        content = m.get("serverContent", {})
        if "outputTranscription" in content:
            parts.append(content["outputTranscription"].get("text", ""))
        for part in content.get("modelTurn", {}).get("parts", []):
            if "text" in part:
                parts.append(part["text"])
    return " ".join("".join(parts).split())


async def expect_close(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int | None, str]:
    """Drain until the server closes; return its close code and reason."""
    async with asyncio.timeout(timeout):
        for _ in range(10_000):
            try:
                await ws.recv()
            except websockets.ConnectionClosed as exc:
                rcvd = exc.rcvd
                return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")
    raise AssertionError("server never closed")


async def start(
    emu: Emu,
    url: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **setup_kwargs: Any,
) -> tuple[ClientConnection, str | None]:
    """Open, send setup, read setupComplete (+ the first handle if resumption is on)."""
    ws = await open_ws(url or key_url(emu), headers)
    await send(ws, setup(**setup_kwargs))
    first = await recv(ws)
    assert first == {"setupComplete": {}}, first
    handle = None
    if setup_kwargs.get("resumption", True) or setup_kwargs.get("handle"):
        update = await recv(ws)
        assert update["sessionResumptionUpdate"]["resumable"] is True
        handle = update["sessionResumptionUpdate"]["newHandle"]
    return ws, handle


async def ask(ws: ClientConnection, text: str) -> tuple[str, str | None, list[Json]]:
    """Send a user turn; return the answer text, the handle after it, and all messages."""
    await send(
        ws,
        {
            "clientContent": {
                "turns": [{"role": "user", "parts": [{"text": text}]}],
                "turnComplete": True,
            }
        },
    )
    messages = await recv_until(ws, turn_complete)
    handle = None
    after = await recv_until(ws, is_update)
    messages.extend(after)
    update = after[-1]["sessionResumptionUpdate"]
    if update.get("resumable"):
        handle = update["newHandle"]
    return text_of(messages), handle, messages


async def mint(
    emu: Emu,
    body: Any = None,
    *,
    version: str = "v1alpha",
    key: str | None = None,
    raw: bytes | None = None,
) -> tuple[int, Json]:
    headers = {"x-goog-api-key": key if key is not None else emu.api_key}
    _remember(emu)
    context = _ssl_for(emu.http_base)
    connector = aiohttp.TCPConnector(ssl=context) if context is not None else None
    async with aiohttp.ClientSession(connector=connector) as http:
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        async with http.post(
            f"{emu.http_base}/{version}/auth_tokens", data=data, headers=headers
        ) as response:
            return response.status, await response.json()


async def mint_token(emu: Emu, body: Any = None, **kwargs: Any) -> str:
    status, data = await mint(emu, body, **kwargs)
    assert status == 200, data
    name = data["name"]
    assert isinstance(name, str)
    return name


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def expect_http_status(url: str, headers: Mapping[str, str] | None = None) -> int:
    """Open a websocket that must be refused at the upgrade; return the HTTP status."""
    try:
        ws = await open_ws(url, headers)
    except websockets.InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    raise AssertionError("the upgrade was accepted")


async def refused_with(
    url: str, message: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int | None, str]:
    """Open, send ``message`` (a setup by default), return the close the server sent."""
    ws = await open_ws(url, headers)
    await send(ws, message if message is not None else setup())
    return await expect_close(ws)


def genai_client(emu: EmulatorServer, key: str, *, api_version: str = "v1alpha") -> genai.Client:
    """A google-genai client of ``emu`` over its test CA (``key``: the API key or a token)."""
    from google import genai  # only the SDK tests pay for the import

    assert emu.ca_file is not None
    return genai.Client(
        api_key=key,
        http_options={
            "base_url": emu.http_base,
            "api_version": api_version,
            "async_client_args": {"ssl": ssl.create_default_context(cafile=emu.ca_file)},
        },
    )
