"""The seed's own browser ``LiveSession``, in real Chromium, through the relay and a tunnel.

The page runs the seed's client module (``tests/browser/seed_client.js``: the seed's
``lib/LiveSession.ts`` line by line, only its binary-frame parsing fixed, since Google sends
binary frames): a fresh token per connect (``getToken()`` → ``?access_token=``; here the
token is a relay ticket from the token service), the newest resumable handle in ``setup``,
reconnect on close with its backoff (1 s, 2 s, 4 s ... plus jitter), no replay. Only the
URL it is given changed: the relay's, through the tunnel proxy.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.chromium_stack import CHROMIUM_ARGS, chromium_path

from .relay_helpers import ALICE_KEY, relay_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SEED_CLIENT = Path(__file__).parents[1] / "browser" / "seed_client.js"

PAGE = """<!doctype html><meta charset="utf-8"><title>seed client</title>
<script type="module">
import { SeedLiveSession } from "/seed_client.js";
const opts = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const transcript = [];
let turns = 0;
// The app's getToken(): its backend route, authenticated by the page's login.
const getToken = async () => {
  const res = await fetch("/api/live/relay-ticket", {
    method: "POST", headers: { Authorization: "Bearer " + opts.bearer } });
  return (await res.json()).token;
};
const seed = new SeedLiveSession(getToken, opts.wsUrl, (msg) => {
  if (msg.setupComplete && !window.asked) {
    window.asked = true;
    seed.send({ realtimeInput: { text: "Please count to 300." } });
  }
  const content = msg.serverContent || {};
  if (content.outputTranscription?.text) transcript.push(content.outputTranscription.text);
  if (content.turnComplete) turns++;
}, { model: "models/gemini-3.8-live", outputAudioTranscription: {} });
let opens = 0;
const open = seed.open.bind(seed);
seed.open = async () => { opens++; return open(); };
window.numbers = () => (transcript.join("").match(/\\d+/g) || []).map(Number);
window.turns = () => turns;
window.opens = () => opens;
seed.connect();
</script>"""


async def test_the_seeds_own_browser_client_in_chromium_gets_all_300_numbers_through_a_tunnel() -> (
    None
):
    executable = chromium_path()
    playwright_api = pytest.importorskip("playwright.async_api")
    pages = {"/seed.html": PAGE, "/seed_client.js": SEED_CLIENT.read_text()}
    async with relay_stack(pages=pages) as stack, playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            tab: Any = await browser.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            origin = stack.ticket_url.removesuffix("/api/live/relay-ticket")
            ws_url = stack.device_ws_base + (
                "/ws/google.ai.generativelanguage.v1alpha.GenerativeService"
                ".BidiGenerateContentConstrained"
            )
            options = {"bearer": ALICE_KEY, "wsUrl": ws_url}
            await tab.goto(f"{origin}/seed.html#{quote(json.dumps(options))}")
            await tab.wait_for_function("() => window.numbers().length >= 40", timeout=20_000)
            stack.tunnel.blackhole()
            await asyncio.sleep(3.0)
            stack.tunnel.restore()
            await tab.wait_for_function("() => window.turns() >= 1", timeout=30_000)
            numbers = await tab.evaluate("window.numbers()")
            opens = await tab.evaluate("window.opens()")
        finally:
            await browser.close()
        assert errors == []
        assert opens >= 2, "the tunnel cut the browser's connection"
        assert numbers == list(range(1, 301))
