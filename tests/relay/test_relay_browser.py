"""The seed's own browser client logic, in real Chromium, through the relay and a tunnel.

The page's client is the seed's (``seed/000``): a fresh token from the app backend per
connect (``getToken()`` → ``?access_token=``), the newest resumable handle in ``setup``,
reconnect on close with its backoff (1 s, 2 s, 4 s ... plus jitter), no replay. Only its
message parsing reads Blobs (Google sends binary frames; the seed's snippet shows
``JSON.parse(e.data)``, which a working client against Google cannot use as is).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest
from aiohttp import web

from .relay_helpers import AUDIO_CONFIG, fetch_ticket, relay_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PAGE = """<!doctype html><meta charset="utf-8"><title>seed client</title><script>
const SETUP = %(setup)s;
class SeedClient {
  constructor() {
    this.resumptionHandle = null; this.attempts = 0; this.maxAttempts = 6; this.base = 1000;
    this.transcript = []; this.turns = 0; this.connects = 0; this.asked = false;
    this.chain = Promise.resolve();
  }
  async getToken() { const r = await fetch("/ticket"); return r.json(); }
  async open() {
    const { token, wsUrl } = await this.getToken();
    const ws = new WebSocket(wsUrl + "?access_token=" + encodeURIComponent(token));
    ws.onopen = () => {
      this.connects++;
      ws.send(JSON.stringify({ setup: { ...SETUP,
        sessionResumption: this.resumptionHandle ? { handle: this.resumptionHandle } : {} } }));
    };
    ws.onmessage = (e) => { this.chain = this.chain.then(async () => {
      const msg = JSON.parse(e.data instanceof Blob ? await e.data.text() : e.data);
      const update = msg.sessionResumptionUpdate;
      if (update?.resumable && update.newHandle) this.resumptionHandle = update.newHandle;
      if ("goAway" in msg) { this.reconnectSoon(); return; }
      this.onMessage(ws, msg);
    }); };
    ws.onclose = () => { this.ws = null; this.reconnectSoon(); };
    this.ws = ws;
  }
  onMessage(ws, msg) {
    if (msg.setupComplete) {
      this.attempts = 0;
      if (!this.asked) {
        this.asked = true;
        ws.send(JSON.stringify({ realtimeInput: { text: "Please count to 300." } }));
      }
    }
    const content = msg.serverContent || {};
    if (content.outputTranscription?.text) this.transcript.push(content.outputTranscription.text);
    if (content.turnComplete) this.turns++;
  }
  reconnectSoon() {
    if (this.attempts >= this.maxAttempts) return;
    const delay = this.base * 2 ** this.attempts + Math.random() * 500;
    this.attempts++;
    setTimeout(() => this.open(), delay);
  }
  numbers() { return (this.transcript.join("").match(/\\d+/g) || []).map(Number); }
}
window.client = new SeedClient();
</script>"""


async def test_the_seed_browser_client_in_chromium_gets_all_300_numbers_through_a_tunnel() -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with relay_stack() as stack:
        page_app = web.Application()

        async def page(request: web.Request) -> web.Response:
            body = PAGE % {"setup": json.dumps(AUDIO_CONFIG.setup_body())}
            return web.Response(text=body, content_type="text/html")

        async def ticket(request: web.Request) -> web.Response:
            # The app's backend: it holds the user's session and asks for a relay ticket.
            token = await fetch_ticket(stack.ticket_url)
            ws_url = stack.device_ws_base + (
                "/ws/google.ai.generativelanguage.v1alpha.GenerativeService"
                ".BidiGenerateContentConstrained"
            )
            return web.json_response({"token": token, "wsUrl": ws_url})

        page_app.router.add_get("/", page)
        page_app.router.add_get("/ticket", ticket)
        runner = web.AppRunner(page_app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            async with playwright_api.async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"]
                )
                tab: Any = await browser.new_page()
                await tab.goto(f"http://127.0.0.1:{port}/")
                await tab.evaluate("client.open()")
                async with asyncio.timeout(20):
                    while await tab.evaluate("client.numbers().length") < 40:
                        await asyncio.sleep(0.01)
                stack.tunnel.blackhole(drop=True)
                await asyncio.sleep(3.0)
                stack.tunnel.restore()
                async with asyncio.timeout(30):
                    while await tab.evaluate("client.turns") < 1:
                        await asyncio.sleep(0.05)
                numbers = await tab.evaluate("client.numbers()")
                connects = await tab.evaluate("client.connects")
                await browser.close()
        finally:
            await runner.cleanup()
        assert connects >= 2, "the tunnel cut the browser's connection"
        assert numbers == list(range(1, 301))
