"""The demo's moving parts, started and stopped together: emulator, token service, tunnel.

::

    client (LiveSession) ──ws──▶ TunnelProxy ──▶ emulator (or Google, TLS end to end)
          │
          └──POST /api/live/token (Bearer demo key)──▶ `tunnelproof serve` (subprocess)
                                                         └──▶ emulator /v1alpha/auth_tokens
                                                              (or Google, key in a header)

Only the client's Live link runs through the tunnel: that is the radio link the train
loses. The token service is the app's backend; it mints from the emulator (or Google)
directly with the API key, which never reaches the client.

Against Google (``real=True``) the proxy forwards raw TCP to
``generativelanguage.googleapis.com:443``. TLS passes through it untouched, so the client
still verifies Google's certificate for Google's host name: the URL keeps the real host and
only the TCP destination is redirected to the proxy (``dial``).
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from tunnelproof.demo.processes import ReadyLineProcess
from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.close_codes import REASON_INTERNAL_ERROR
from tunnelproof.protocol.config import ContextWindowCompression, LiveConfig
from tunnelproof.protocol.endpoints import GOOGLE_HTTP_BASE, GOOGLE_WS_BASE
from tunnelproof.protocol.models import default_model
from tunnelproof.session.credentials import TokenSource
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.tokens.client import TokenServiceSource

DEMO_USER = "demo-user"
MAX_GENERATION_SPEED = 4.0
SYSTEM_INSTRUCTION = "You are a travel assistant on a train. Keep answers short."


@dataclass(frozen=True, slots=True)
class StackOptions:
    """How to build the stack.

    Attributes:
        speed: time scaling of the emulator's durations and its answers' pacing.
        audio: the user speaks (16 kHz PCM, transcribed) instead of typing. The model always
            answers in audio, as Google's current Live models do.
        real: talk to Google with ``api_key`` instead of the emulator.
        api_key: the Gemini API key (``real`` only; it stays in the token service).
        model: the Live model (default: ``TUNNELPROOF_MODEL`` or the library default).
        seed: seeds the tunnel's jitter.
        upstream_host: where the tunnel forwards in ``real`` mode (tests point it at an
            emulator with TLS).
        upstream_port: its port.
        upstream_http_base: the token service's upstream in ``real`` mode.
        ca_file: a CA to trust instead of the system store (tests only).
    """

    speed: float = 1.0
    audio: bool = False
    real: bool = False
    api_key: str | None = None
    model: str | None = None
    seed: int | None = None
    upstream_host: str = urlsplit(GOOGLE_WS_BASE).hostname or "generativelanguage.googleapis.com"
    upstream_port: int = 443
    upstream_http_base: str = GOOGLE_HTTP_BASE
    ca_file: str | None = None


def emulator_policy(speed: float) -> EmulatorPolicy:
    """The emulator's policy for a demo at ``speed``: every duration divided by it.

    Answers are paced a little slower than the emulator's default (0.1 s per three words at
    speed 1) so that a drop mid-answer really lands in the middle of one; above
    ``MAX_GENERATION_SPEED`` answers stop speeding up, for the same reason.
    """
    return EmulatorPolicy(
        connection_lifetime=600.0 / speed,
        go_away_lead=50.0 / speed,
        handle_validity=7200.0 / speed,
        session_limit_audio=900.0 / speed,
        session_limit_video=120.0 / speed,
        # Capped, so that a drop mid-answer still lands mid-answer at --speed 20.
        generation_speed=min(speed, MAX_GENERATION_SPEED),
        text_chunk_interval=0.1,
    )


def live_config(options: StackOptions) -> LiveConfig:
    """The session config, shared by the client and the token service (which locks it).

    Audio-first, as Google is: every current Live model answers in AUDIO only, so the demo
    asks for audio answers with their output transcription (the text the view shows and
    the verdict reads), and input transcription for ``--audio``'s spoken input: the
    defaults of ``LiveConfig()`` and of the token service, which locks the same values.
    Context-window compression lifts the 15-minute session limit.
    """
    return LiveConfig(
        model=options.model or default_model(),
        response_modalities=("AUDIO",),
        system_instruction=SYSTEM_INSTRUCTION,
        input_audio_transcription=True,  # only used when the user speaks (--audio)
        output_audio_transcription=True,
        compression=ContextWindowCompression(),
    )


class DemoStack:
    """Start everything with ``async with DemoStack(options) as stack``; all stop on exit."""

    def __init__(self, options: StackOptions) -> None:
        if options.real and not options.api_key:
            raise ValueError("real mode needs an API key")
        self.options = options
        self.config = live_config(options)
        self.emulator: EmulatorServer | None = None
        self.proxy: TunnelProxy | None = None
        self.token_service: ReadyLineProcess | None = None
        self.token_url = ""
        # The demo user's bearer key: a fresh random dev key per run, never a real secret.
        self.bearer_key = "demo-" + secrets.token_urlsafe(18)
        self._stack = contextlib.AsyncExitStack()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> DemoStack:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        o = self.options
        if o.real:
            upstream_host, upstream_port = o.upstream_host, o.upstream_port
        else:
            self.emulator = await self._stack.enter_async_context(
                EmulatorServer(policy=emulator_policy(o.speed))
            )
            upstream_host, upstream_port = self.emulator.host, self.emulator.port
        self.proxy = await self._stack.enter_async_context(
            TunnelProxy(upstream_host, upstream_port, seed=o.seed)
        )
        await self._start_token_service()

    async def _start_token_service(self) -> None:
        o = self.options
        cfg = self.config
        env = {
            "TUNNELPROOF_AUTH_MODE": "static",
            "TUNNELPROOF_STATIC_KEYS": f"{DEMO_USER}:{self.bearer_key}",
            "TUNNELPROOF_RESPONSE_MODALITY": cfg.modality,
            # Locked as the client asks, so that the client never sees a ConfigMismatch.
            "TUNNELPROOF_INPUT_AUDIO_TRANSCRIPTION": str(cfg.input_audio_transcription).lower(),
            "TUNNELPROOF_OUTPUT_AUDIO_TRANSCRIPTION": str(cfg.output_audio_transcription).lower(),
            "TUNNELPROOF_SYSTEM_INSTRUCTION": cfg.system_instruction or "",
            "TUNNELPROOF_MODEL": cfg.model,
            # Every reconnect fetches a token; a demo reconnects a dozen times a minute.
            "TUNNELPROOF_RATE_LIMIT": "600/minute",
            "TUNNELPROOF_LOG_LEVEL": "warning",
        }
        if o.real:
            assert o.api_key is not None
            env["TUNNELPROOF_API_KEY"] = o.api_key
            env["TUNNELPROOF_UPSTREAM_BASE_URL"] = o.upstream_http_base
            env["TUNNELPROOF_WS_BASE_URL"] = self.real_ws_base
            if o.ca_file:
                # Tests stand an emulator with a test CA in for Google; google-genai (the
                # minting client) trusts SSL_CERT_FILE.
                env["SSL_CERT_FILE"] = o.ca_file
        else:
            assert self.emulator is not None
            assert self.proxy is not None
            env["TUNNELPROOF_API_KEY"] = self.emulator.api_key
            env["TUNNELPROOF_UPSTREAM_BASE_URL"] = self.emulator.http_base
            # The tokens' wsUrl points at the tunnel: the client's Live link runs through it.
            env["TUNNELPROOF_WS_BASE_URL"] = self.proxy.url("ws")
        process = ReadyLineProcess(
            ["serve", "--host", "127.0.0.1", "--port", "0"],
            env=env,
            # The demo configures its service completely: a TUNNELPROOF_REDIS_URL or a real
            # GEMINI_API_KEY in the user's shell must not leak into it.
            drop_env_prefixes=("TUNNELPROOF_", "GEMINI_API_KEY"),
            name="token service",
        )
        self.token_service = process
        self._stack.push_async_callback(process.stop)
        ready = await process.start()
        self.token_url = str(ready["tokenUrl"])

    # -- what the client needs --------------------------------------------------------------

    @property
    def real_ws_base(self) -> str:
        """The WebSocket base clients use against Google (the real host name)."""
        host = self.options.upstream_host
        port = self.options.upstream_port
        return f"wss://{host}" + ("" if port == 443 else f":{port}")

    def token_source(self) -> TokenSource:
        """The demo user's token source: real HTTP to the local token service."""
        key = self.bearer_key
        return TokenServiceSource(self.token_url, lambda: f"Bearer {key}", timeout=5.0)

    @property
    def dial(self) -> tuple[str, int] | None:
        """Where to open TCP instead of the URL's host (``real`` mode: the tunnel)."""
        if not self.options.real or self.proxy is None:
            return None
        return self.proxy.address

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS verification for ``real`` mode: the system store, or a test CA."""
        if not self.options.real:
            return None
        if self.options.ca_file:
            return ssl.create_default_context(cafile=self.options.ca_file)
        return ssl.create_default_context()

    # -- faults -------------------------------------------------------------------------------

    def enter_tunnel(self) -> None:
        """The train enters a tunnel: the link goes half-open, bytes sent are lost."""
        assert self.proxy is not None
        self.proxy.blackhole()

    def leave_tunnel(self) -> None:
        """Out of the tunnel. Connections that lost bytes are reset (TCP cannot heal them)."""
        assert self.proxy is not None
        self.proxy.restore()

    def reset_link(self) -> None:
        """Every connection through the tunnel dies with a TCP RST."""
        assert self.proxy is not None
        self.proxy.reset()

    async def station(self, time_left: float) -> bool:
        """The server announces a planned handover (emulator only); False if it cannot."""
        if self.emulator is None:
            return False
        await self.emulator.controls.send_go_away(None, time_left=time_left)
        return True

    async def crash(self) -> str:
        """The server crashes with 1011 (emulator) or the link is reset (Google)."""
        if self.emulator is None:
            self.reset_link()
            return "link reset"
        await self.emulator.controls.close_connection(None, code=1011, reason=REASON_INTERNAL_ERROR)
        return "1011 Internal error encountered."

    # -- server-side truth (emulator only) -------------------------------------------------------

    def server_user_turns(self) -> list[str] | None:
        """Every user utterance in the newest server session's history, or ``None``."""
        if self.emulator is None:
            return None
        with contextlib.suppress(LookupError):
            history = self.emulator.controls.history()
            return [
                str(e["text"])
                for e in history
                if e["role"] == "user" and e["source"] in ("clientContent", "realtimeText", "audio")
            ]
        return []

    def tokens_minted(self) -> int | None:
        """Tokens the emulator minted so far (``None`` against Google)."""
        if self.emulator is None:
            return None
        return len(self.emulator.controls.token_ledger())

    def server_handles(self) -> int | None:
        """Resumption handles the emulator issued (all sessions)."""
        if self.emulator is None:
            return None
        return sum(len(s.get("handles", [])) for s in self.emulator.controls.sessions())

    def describe(self) -> dict[str, Any]:
        """For the JSON result: where things ran."""
        return {
            "mode": "google" if self.options.real else "emulator",
            "emulator": self.emulator.http_base if self.emulator else None,
            "tunnel": self.proxy.url("ws") if self.proxy else None,
            "tokenService": self.token_url,
            "tokenServicePid": self.token_service.pid if self.token_service else None,
            "model": self.config.model,
            "modality": self.config.modality,
        }
