"""tunnelproof's own browser client (``/api/live/client.js``) through the relay, in Chromium.

The page is served by the token service (same origin as the relay-ticket route and the
client module); the client's default token getter POSTs ``/api/live/relay-ticket`` with the
page's bearer login and connects with ``?access_token=<ticket>``. The tunnel proxy sits
between the browser and the relay; the relay keeps the one upstream session to the
emulator open through the device's tunnel.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.chromium_stack import CHROMIUM_ARGS, FAST_WATCHDOGS, ask, chromium_path, events

from .relay_helpers import ALICE_KEY, relay_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

HARNESS = """<!doctype html>
<meta charset="utf-8">
<title>tunnelproof client through the relay</title>
<script type="module">
import { LiveSession } from "/api/live/client.js";
const opts = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const log = [];
window.tp = { log };
const live = new LiveSession({
  tokenUrl: "/api/live/relay-ticket",  // relay tickets, the getToken() -> ?access_token= dance
  tokenRequest: { headers: { Authorization: "Bearer " + opts.bearer } },
  config: { outputAudioTranscription: true },
  conversationId: "relay-harness",
  watchdogs: opts.watchdogs,
});
live.on("*", (e) => {
  const r = { ...e, at: performance.now() / 1000 };
  if (r.pcm) r.pcm = r.pcm.length;
  if (r.verdict) r.kind = r.verdict.kind;
  log.push(r);
});
window.live = live;
window.count = (type) => log.filter((e) => e.type === type).length;
window.heard = (from = 0) =>
  log.slice(from).filter((e) => e.type === "outputTranscript").map((e) => e.text).join("");
window.ask = (text, timeoutMs = 20000) => new Promise((resolve, reject) => {
  let answer = "";
  const offs = [live.on("outputTranscript", (e) => { answer += e.text; })];
  const finish = (fn) => { offs.forEach((off) => off()); clearTimeout(timer); fn(); };
  offs.push(live.on("turnComplete", () => finish(() => {
    const until = performance.now() + 500;  // the handle that holds the turn comes after it
    const held = () => (live.lastTurnHeld || performance.now() >= until ? resolve({ result, answer }) : setTimeout(held, 10));
    held();
  })));
  const timer = setTimeout(() => finish(() => reject(new Error(`no answer to ${text}`))), timeoutMs);
  const result = live.sendText(text);
});
live.start();
window.harnessReady = true;
</script>
"""

NUMBER = re.compile(r"\d+")


async def test_our_browser_client_gets_the_answer_spoken_in_its_tunnel_once_in_order() -> None:
    executable = chromium_path()
    playwright_api = pytest.importorskip("playwright.async_api")
    async with (
        relay_stack(pages={"/relay-harness.html": HARNESS}) as stack,
        playwright_api.async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page: Any = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            origin = stack.ticket_url.removesuffix("/api/live/relay-ticket")
            options = {"bearer": ALICE_KEY, "watchdogs": FAST_WATCHDOGS}
            await page.goto(f"{origin}/relay-harness.html#{quote(json.dumps(options))}")
            await page.wait_for_function("() => window.count('connected') >= 1", timeout=10_000)
            assert "teal" in (await ask(page, "My favourite colour is teal."))["answer"]

            mark: int = await page.evaluate("() => window.tp.log.length")
            await page.evaluate("() => { window.live.sendText('Please count to 200.'); }")
            await page.wait_for_function(
                f"() => (window.heard({mark}).match(/\\d+/g) || []).length >= 40", timeout=10_000
            )
            stack.tunnel.blackhole()  # mid-answer: the device's link goes silent
            await asyncio.sleep(1.0)
            # Typed inside the tunnel: written into the dead socket, or queued.
            sent = await page.evaluate("() => window.live.sendText('What did I say first?')")
            await asyncio.sleep(2.0)
            stack.tunnel.restore()
            # Two turns end after the mark: the count, then the typed question's answer.
            await page.wait_for_function(
                f"() => window.tp.log.slice({mark}).filter((e) => e.type === 'turnComplete')"
                ".length >= 2",
                timeout=20_000,
            )
            await asyncio.sleep(0.5)  # a second answer, were there one, would start by now

            heard: str = await page.evaluate(f"() => window.heard({mark})")
            counted = heard[: heard.index("teal")] if "teal" in heard else heard
            numbers = [int(n) for n in NUMBER.findall(counted)]
            resumed = await events(page, "resumed")
            dropped = await events(page, "sendDropped")
            rewound = await events(page, "rewound")
            await page.close()
        finally:
            await browser.close()
        assert errors == []
        assert resumed, "the tunnel did not make the client reconnect"
        # The relay said the resume was intact: the answer went on, nothing was rewound.
        assert rewound == [], rewound
        # The whole answer, once, in order, although the device was gone for the end of it.
        assert numbers == list(range(1, 201)), numbers
        # The message typed inside the tunnel: answered from the kept context, once.
        assert sent["status"] in ("sent", "queued"), sent
        assert heard.count("teal") == 1 and heard.count("You first said") == 1, heard[-300:]
        assert dropped == []
        said = [e["text"] for e in stack.emu.controls.events(kind="user_text")]
        assert said.count("What did I say first?") == 1, said
        # One Gemini session all along: the device's tunnel never reached it.
        assert len(stack.emu.controls.connections()) == 1
        stats = stack.relay.stats()
        assert stats["device_resumes"] >= 1 and stats["lost_to_bounds"] == 0
