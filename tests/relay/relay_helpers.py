"""A whole relay stack on loopback for tests: emulator (Google), relay, token service with
the relay-ticket route, and a tunnel proxy between devices and the relay."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import orjson
from pydantic import SecretStr
from starlette.responses import Response
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.emulator.tls import make_tls
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.relay import DeviceAuthenticator, RelayServer, RelaySettings
from tunnelproof.session.credentials import Credential, TokenSource
from tunnelproof.testing.tokens_fixtures import running_token_service
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.tokens.app import create_app
from tunnelproof.tokens.auth import StaticKeyAuthenticator
from tunnelproof.tokens.client import TokenServiceSource
from tunnelproof.tokens.direct import ApiKeySource
from tunnelproof.tokens.router import TokenService
from tunnelproof.tokens.settings import TokenServiceSettings
from tunnelproof.tokens.tickets import TicketLedger, TicketSigner, relay_ticket_router

SECRET = "relay-ticket-secret-for-tests-0123456789"
ALICE_KEY = "alice-app-key"
BOB_KEY = "bob-app-key"
AUDIO_CONFIG = LiveConfig(
    model="gemini-3.8-live", response_modalities=("AUDIO",), output_audio_transcription=True
)
# One word per audio chunk, 20x real time: "count to 300" streams for about 4 s.
FAST_AUDIO = {"audio_chunk_duration": 0.25, "seconds_per_word": 0.25, "generation_speed": 20.0}


@dataclass
class Stack:
    """Everything running; ``ticket_url`` mints relay tickets for a bearer key."""

    emu: EmulatorServer
    relay: RelayServer
    tunnel: TunnelProxy
    ticket_url: str
    signer: TicketSigner
    ca_file: str | None = None

    @property
    def device_ws_base(self) -> str:
        """The relay as devices reach it: through the tunnel."""
        return f"{'wss' if self.ca_file else 'ws'}://127.0.0.1:{self.tunnel.port}"

    def tickets(self, key: str = ALICE_KEY) -> TokenSource:
        """A token source minting a fresh relay ticket per call, pointed at the tunnel."""
        source = TokenServiceSource(self.ticket_url, lambda: f"Bearer {key}")
        base = self.device_ws_base

        async def fetch() -> Credential:
            return replace(await source(), ws_base=base)

        return fetch


@contextlib.asynccontextmanager
async def relay_stack(
    policy: EmulatorPolicy | None = None,
    settings: RelaySettings | None = None,
    *,
    tls: bool = False,
    pages: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """Emulator + relay + token service (tickets) + tunnel in front of the relay.

    ``pages`` (path → HTML, or JavaScript for a ``.js`` path) are served by the token
    service itself, so a browser page is same-origin with the ticket route and the client
    module (``/api/live/client.js``).
    """
    material = make_tls() if tls else None
    async with EmulatorServer(policy=policy or EmulatorPolicy(**FAST_AUDIO)) as emu:
        signer = TicketSigner(SECRET)
        ledger = TicketLedger()
        authenticator = StaticKeyAuthenticator({ALICE_KEY: "alice", BOB_KEY: "bob"})
        relay = RelayServer(
            ApiKeySource(emu.api_key, ws_base=emu.ws_base),
            DeviceAuthenticator(signer=signer, consume=ledger.consume, authenticator=authenticator),
            settings=settings or RelaySettings(grace_period=30.0),
            ssl=material.context if material else None,
        )
        async with relay:
            service = TokenService(
                TokenServiceSettings(
                    api_key=SecretStr("unused-here"),
                    rate_limit="1000/minute",
                    auth_mode="static",
                    static_keys=[SecretStr(f"alice:{ALICE_KEY}")],
                    # Bearer auth (no cookies): any origin is safe; pages are same-origin.
                    allowed_origins=["*"] if pages else [],
                ),
                authenticator=authenticator,
            )
            app = create_app(service=service)
            for path, html in (pages or {}).items():
                kind = "text/javascript" if path.endswith(".js") else "text/html"
                app.add_api_route(path, _page(html, kind), include_in_schema=False)
            async with TunnelProxy("127.0.0.1", relay.port) as tunnel:
                scheme = "wss" if material else "ws"
                app.include_router(
                    relay_ticket_router(service, signer, f"{scheme}://127.0.0.1:{tunnel.port}")
                )
                async with running_token_service(service=service, app=app) as tokens:
                    yield Stack(
                        emu,
                        relay,
                        tunnel,
                        tokens.url + "/api/live/relay-ticket",
                        signer,
                        str(material.ca_file) if material else None,
                    )


def _page(body: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})

    return serve


async def fetch_ticket(url: str, key: str = ALICE_KEY, body: dict[str, Any] | None = None) -> str:
    """One ticket, the way the seed's ``getToken()`` asks for a token."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.post(url, headers={"Authorization": f"Bearer {key}"}, json=body)
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


NUMBER = re.compile(r"\d+")


class SeedStyleClient:
    """The seed's browser client's protocol behaviour, with raw WebSockets.

    A fresh token per connect (``getToken()``), the newest resumable handle in ``setup``,
    reconnect after a close with the seed's backoff (1 s, 2 s, 4 s ...), no replay, no
    watchdog. Collects the output transcription.
    """

    def __init__(self, get_url: Any, setup: dict[str, Any]) -> None:
        self.get_url = get_url  # async () -> full ws url with ?access_token=
        self.setup = setup
        self.handle: str | None = None
        self.transcript: list[str] = []
        self.turns_complete = 0
        self.connects = 0
        self.closes: list[int | None] = []
        self.text_frames = 0  # Google (and the relay) send binary frames

    def numbers(self) -> list[int]:
        return [int(n) for n in NUMBER.findall("".join(self.transcript))]

    async def run_until_turn_complete(
        self, question: str, *, timeout: float, quiet: float | None = None
    ) -> None:
        """Run until turnComplete; ``quiet``: give up (``TimeoutError``) when a reconnected
        socket stays silent that long (the answer is gone)."""
        async with asyncio.timeout(timeout):
            asked = False
            delay = 1.0
            while True:
                url = await self.get_url()
                setup = dict(self.setup)
                setup["sessionResumption"] = {"handle": self.handle} if self.handle else {}
                try:
                    async with connect(url, ping_interval=None, max_size=None) as ws:
                        self.connects += 1
                        await ws.send(orjson.dumps({"setup": setup}).decode())
                        while True:
                            wait = quiet if quiet is not None and self.connects > 1 else None
                            raw = await asyncio.wait_for(ws.recv(), wait)
                            self.text_frames += isinstance(raw, str)
                            msg = orjson.loads(raw)
                            if "setupComplete" in msg:
                                delay = 1.0
                                if not asked:
                                    asked = True
                                    text = {"realtimeInput": {"text": question}}
                                    await ws.send(orjson.dumps(text).decode())
                            update = msg.get("sessionResumptionUpdate")
                            if update and update.get("resumable") and update.get("newHandle"):
                                self.handle = update["newHandle"]
                            content = msg.get("serverContent") or {}
                            out = content.get("outputTranscription")
                            if out and out.get("text"):
                                self.transcript.append(out["text"])
                            if content.get("turnComplete"):
                                self.turns_complete += 1
                                return
                except TimeoutError:
                    raise  # quiet: the answer is gone (TimeoutError is an OSError too)
                except (ConnectionClosed, OSError) as exc:
                    code = getattr(getattr(exc, "rcvd", None), "code", None)
                    self.closes.append(code)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8.0)
