"""A real stack for the browser tests: emulator, tunnel proxy, token service, Chromium page.

The page is a small harness served (through Playwright's request routing) at the token
service's own origin, so the client's default token getter POSTs the real token route
same-origin, and imports the client module from the route that serves it. Everything the
page does goes over real loopback sockets: the token route (uvicorn), then the WebSocket
through the :class:`~tunnelproof.testing.tunnel.TunnelProxy` to the emulator.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import SecretStr
from starlette.responses import HTMLResponse, Response

from tunnelproof.emulator import EmulatorPolicy, EmulatorServer
from tunnelproof.protocol.endpoints import Method, live_path
from tunnelproof.testing.tokens_fixtures import (
    DEV_BEARER_KEY,
    DEV_USER,
    RunningTokenService,
    running_token_service,
)
from tunnelproof.testing.tunnel import TunnelProxy
from tunnelproof.tokens.app import create_app
from tunnelproof.tokens.router import TokenService
from tunnelproof.tokens.settings import TokenServiceSettings

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Short watchdogs so dead links are found in test time (the Python e2e tests do the same).
FAST_WATCHDOGS = {
    "tokenTimeout": 5,
    "connectTimeout": 5,
    "probeConnectTimeout": 2,
    "setupTimeout": 5,
    "replyTimeout": 4,
    # an overdue reply asks the driver for a link check; no sign of life within this long
    # is a dead link (the default 30 s lets a thinking model be; tests scale it down)
    "linkCheckTimeout": 2,
    "closeTimeout": 1,
    "goAwayMargin": 1,
}


def chromium_path() -> str:
    """Debian's Chromium, or skip with the reason (``make system-deps`` installs it as root)."""
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip(
        "chromium is not installed (run `make system-deps` as root: apt-get install chromium)"
    )


HARNESS = """<!doctype html>
<meta charset="utf-8">
<title>tunnelproof harness</title>
<body>
<script type="module">
import { LiveSession, connectAudio } from "/api/live/client.js";
const opts = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const log = [];
window.tp = { log };
const live = new LiveSession({
  tokenRequest: { headers: { Authorization: "Bearer " + opts.bearer } },
  config: { outputAudioTranscription: true, ...(opts.config || {}) },
  conversationId: "harness",
  watchdogs: opts.watchdogs,
  policy: opts.policy,
  limits: opts.limits,
});
live.on("*", (e) => {
  const r = { ...e, at: performance.now() / 1000 };
  if (r.pcm) r.pcm = r.pcm.length;
  if (r.verdict) { r.kind = r.verdict.kind; }
  log.push(r);
});
window.live = live;
window.count = (type) => log.filter((e) => e.type === type).length;
window.ask = (text, timeoutMs = 20000) => new Promise((resolve, reject) => {
  let answer = "";
  const offs = [];
  const finish = (fn) => { offs.forEach((off) => off()); clearTimeout(timer); fn(); };
  offs.push(live.on("outputTranscript", (e) => { answer += e.text; }));
  offs.push(live.on("text", (e) => { answer += e.text; }));
  offs.push(live.on("rewound", () => { answer = ""; }));
  // Like Python's ask(): after turnComplete wait (at most 0.5 s) for the handle that holds
  // the turn; Google sends it some 20-70 ms later (a drop before it restores the turn).
  offs.push(live.on("turnComplete", () => finish(() => {
    const until = performance.now() + 500;
    const held = () => (live.lastTurnHeld || performance.now() >= until ? resolve({ result, answer }) : setTimeout(held, 10));
    held();
  })));
  const timer = setTimeout(() => finish(() => reject(new Error(`no answer to ${text} in ${timeoutMs} ms`))), timeoutMs);
  const result = live.sendText(text);
});
if (opts.audio) {
  // Microphone (16 kHz AudioWorklet) to sendAudio, model audio to a 24 kHz jitter buffer.
  live.on("connected", async () => {
    if (window.audio) return;
    window.audio = "starting";
    try {
      window.audio = await connectAudio(live, { mic: true });
    } catch (err) {
      window.audioError = String(err);
    }
  });
}
if (opts.autostart !== false) live.start();
window.harnessReady = true;
</script>
</body>
"""


SEED_HARNESS = """<!doctype html>
<meta charset="utf-8">
<title>seed harness</title>
<script type="module">
import { SeedLiveSession } from "/seed_client.js";
const opts = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const log = [];
window.tp = { log };
const stamp = (r) => log.push({ ...r, at: performance.now() / 1000 });
const getToken = async () => {
  const res = await fetch("/api/live/token", { method: "POST", headers: { Authorization: "Bearer " + opts.bearer } });
  if (!res.ok) throw new Error("token fetch failed");
  const { token } = await res.json();
  return token;
};
const seed = new SeedLiveSession(getToken, opts.wsBase, (msg) => {
  if (msg.setupComplete) stamp({ type: "setupComplete", resumed: Boolean(seed.resumptionHandle) });
  const sc = msg.serverContent;
  if (sc?.outputTranscription?.text) stamp({ type: "outputTranscript", text: sc.outputTranscription.text });
  if (sc?.turnComplete) stamp({ type: "turnComplete" });
}, { outputAudioTranscription: {} }, opts.binaryFix !== false);
window.seed = seed;
window.addEventListener("error", (e) => stamp({ type: "pageError", message: String(e.message) }));
window.count = (type) => log.filter((e) => e.type === type).length;
window.ask = (text, timeoutMs) => new Promise((resolve) => {
  const start = log.length;
  const sent = seed.send({ realtimeInput: { text } });
  const poll = setInterval(() => {
    const fresh = log.slice(start);
    if (fresh.some((e) => e.type === "turnComplete")) {
      clearInterval(poll);
      resolve({ sent, answer: fresh.filter((e) => e.type === "outputTranscript").map((e) => e.text).join("") });
    }
  }, 20);
  setTimeout(() => { clearInterval(poll); resolve({ sent, answer: null }); }, timeoutMs);
});
seed.connect();
window.harnessReady = true;
</script>
"""

SEED_CLIENT = Path(__file__).with_name("seed_client.js")


@dataclass
class Stack:
    """One emulator + tunnel + token service."""

    emulator: EmulatorServer
    tunnel: TunnelProxy
    service: RunningTokenService

    @property
    def origin(self) -> str:
        return self.service.url

    async def open_page(
        self,
        context: Any,
        *,
        bearer: str = DEV_BEARER_KEY,
        watchdogs: dict[str, float] | None = None,
        policy: dict[str, float] | None = None,
        limits: dict[str, float] | None = None,
        config: dict[str, Any] | None = None,
        autostart: bool = True,
        audio: bool = False,
    ) -> Any:
        """A page of ``context`` running the harness at the token service's origin."""
        options = {
            "bearer": bearer,
            "watchdogs": watchdogs or FAST_WATCHDOGS,
            "policy": policy or {},
            "limits": limits or {},
            "config": config or {},
            "autostart": autostart,
            "audio": audio,
        }
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        await page.goto(f"{self.origin}/harness.html#{quote(json.dumps(options))}")
        await page.wait_for_function("() => window.harnessReady === true", timeout=10_000)
        return page

    async def open_seed_page(self, context: Any, *, binary_fix: bool = True) -> Any:
        """A page running the seed's own LiveSession (see ``seed_client.js``)."""
        ws_base = self.tunnel.url("ws") + live_path("v1alpha", Method.CONSTRAINED)
        options = {"bearer": DEV_BEARER_KEY, "wsBase": ws_base, "binaryFix": binary_fix}
        page = await context.new_page()
        await page.goto(f"{self.origin}/seed.html#{quote(json.dumps(options))}")
        await page.wait_for_function("() => window.harnessReady === true", timeout=10_000)
        return page


@contextlib.asynccontextmanager
async def running_stack(
    policy: EmulatorPolicy | None = None, *, rate_limit: str = "1000/minute"
) -> AsyncIterator[Stack]:
    """Start an emulator, a tunnel in front of it and a token service minting through it."""
    async with EmulatorServer(
        policy or EmulatorPolicy(generation_speed=0.0), api_key="emulator-key"
    ) as emu:
        tunnel = TunnelProxy(emu.host, emu.port)
        await tunnel.start()
        try:
            settings = TokenServiceSettings(
                api_key=SecretStr("emulator-key"),
                upstream_base_url=emu.http_base,
                ws_base_url=tunnel.url("ws"),
                auth_mode="static",
                static_keys=[SecretStr(f"{DEV_USER}:{DEV_BEARER_KEY}")],
                rate_limit=rate_limit,
                # Bearer auth (no cookies), so any origin is safe; the page is same-origin anyway.
                allowed_origins=["*"],
            )
            service = TokenService(settings)
            app = create_app(service=service)

            # Served for real (not through Playwright's routing), so Chromium sees a
            # loopback page and its Local Network Access checks allow the loopback socket.
            @app.get("/harness.html", include_in_schema=False)
            async def harness() -> HTMLResponse:
                return HTMLResponse(HARNESS, headers={"Cache-Control": "no-store"})

            @app.get("/seed.html", include_in_schema=False)
            async def seed_harness() -> HTMLResponse:
                return HTMLResponse(SEED_HARNESS, headers={"Cache-Control": "no-store"})

            @app.get("/seed_client.js", include_in_schema=False)
            async def seed_client() -> Response:
                return Response(SEED_CLIENT.read_bytes(), media_type="text/javascript")

            async with running_token_service(service=service, app=app) as running:
                yield Stack(emu, tunnel, running)
        finally:
            await tunnel.stop()


async def wait_event(page: Any, kind: str, count: int = 1, timeout: float = 15.0) -> None:
    """Wait until the page's log holds ``count`` events of ``kind``."""
    await page.wait_for_function(
        f"() => window.count({json.dumps(kind)}) >= {count}", timeout=timeout * 1000
    )


async def events(page: Any, kind: str | None = None) -> list[dict[str, Any]]:
    """The page's event log (optionally one kind)."""
    log: list[dict[str, Any]] = await page.evaluate("() => window.tp.log")
    return [e for e in log if kind is None or e["type"] == kind]


async def ask(page: Any, text: str, timeout: float = 20.0) -> dict[str, Any]:
    """``sendText`` and wait for the answer: ``{"result": SendResult, "answer": str}``."""
    answer: dict[str, Any] = await page.evaluate(
        "([t, ms]) => window.ask(t, ms)", [text, int(timeout * 1000)]
    )
    return answer
