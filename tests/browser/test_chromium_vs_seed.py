"""Ours against the seed's browser client, in the same Chromium, on the same stack.

Three journeys, each run with both clients: a connection reset, a 5 s blackhole with a
message typed inside it, and a real 5 s loss of the network (the socket is cut *and* the
token route is unreachable). ``slow``: about a minute. With
``TUNNELPROOF_BROWSER_BENCH_OUT=path.json`` the numbers are written there
(``bench/results/browser_recovery.json`` was made so).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from .chromium_stack import CHROMIUM_ARGS, Stack, chromium_path, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

NEVER = None  # not back / not answered within the wait


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    executable = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


class Client:
    """The same questions to either client's harness page."""

    def __init__(self, kind: str, page: Any) -> None:
        self.kind = kind
        self.page = page
        self.back_event = "setupComplete" if kind == "seed" else "resumed"
        self.obj = "window.seed" if kind == "seed" else "window.live"

    @classmethod
    async def open(cls, kind: str, stack: Stack, context: Any) -> Client:
        page = await (stack.open_seed_page(context) if kind == "seed" else stack.open_page(context))
        first = "setupComplete" if kind == "seed" else "connected"
        await page.wait_for_function(f"() => window.count('{first}') >= 1", timeout=10_000)
        return cls(kind, page)

    async def now(self) -> float:
        value: float = await self.page.evaluate("() => performance.now() / 1000")
        return value

    async def ask(self, text: str, timeout: float) -> str | None:
        try:
            reply: dict[str, Any] = await self.page.evaluate(
                "([t, ms]) => window.ask(t, ms)", [text, int(timeout * 1000)]
            )
        except Exception:  # ours rejects on timeout
            return NEVER
        answer: str | None = reply.get("answer")
        return answer

    async def introduce(self) -> None:
        answer = await self.ask("my name is Ada", 10)
        assert answer and "Ada" in answer, (self.kind, answer)
        await self.page.wait_for_function(f"() => {self.obj}.resumptionHandle !== null")

    async def backs(self) -> int:
        count: int = await self.page.evaluate(f"() => window.count('{self.back_event}')")
        return count

    async def back_after(self, since: float, before: int, wait: float) -> float | None:
        try:
            await self.page.wait_for_function(
                f"() => window.count('{self.back_event}') > {before}", timeout=wait * 1000
            )
        except Exception:
            return NEVER
        log = await self.page.evaluate("() => window.tp.log")
        at = [e["at"] for e in log if e["type"] == self.back_event][before]
        return float(at - since)


async def reset_journey(kind: str, browser: Any) -> dict[str, Any]:
    async with running_stack() as stack:
        context = await browser.new_context()
        try:
            c = await Client.open(kind, stack, context)
            await c.introduce()
            before = await c.backs()
            cut = await c.now()
            stack.tunnel.reset()
            back = await c.back_after(cut, before, 15)
            answer = await c.ask("what is my name?", 10) if back is not None else NEVER
            return {"back_s": back, "context_kept": bool(answer and "Ada" in answer)}
        finally:
            await context.close()


async def blackhole_journey(kind: str, browser: Any) -> dict[str, Any]:
    async with running_stack() as stack:
        context = await browser.new_context()
        try:
            c = await Client.open(kind, stack, context)
            await c.introduce()
            before = await c.backs()
            stack.tunnel.blackhole()
            await asyncio.sleep(1.0)
            typed = asyncio.ensure_future(c.ask("what is my name?", 20))
            await asyncio.sleep(4.0)
            stack.tunnel.restore()
            returned = await c.now()
            back = await c.back_after(returned, before, 15)
            answer = await typed
            return {
                "back_after_return_s": back,
                "typed_message_answered": bool(answer and "Ada" in answer),
            }
        finally:
            await context.close()


async def network_loss_journey(kind: str, browser: Any) -> dict[str, Any]:
    async with running_stack() as stack:
        context = await browser.new_context()
        try:
            c = await Client.open(kind, stack, context)
            await c.introduce()
            before = await c.backs()

            async def unreachable(route: Any) -> None:
                await route.abort("internetdisconnected")

            await context.route("**/api/live/token", unreachable)
            stack.tunnel.blackhole()
            stack.tunnel.reset()  # the socket is cut, and nothing gets through for 5 s
            await asyncio.sleep(5.0)
            await context.unroute("**/api/live/token", unreachable)
            stack.tunnel.restore()
            returned = await c.now()
            back = await c.back_after(returned, before, 15)
            answer = await c.ask("what is my name?", 10) if back is not None else NEVER
            return {"back_after_return_s": back, "context_kept": bool(answer and "Ada" in answer)}
        finally:
            await context.close()


async def binary_frames_journey(browser: Any) -> dict[str, Any]:
    """The seed exactly as written: ``JSON.parse(e.data)`` on Google's binary frames."""
    async with running_stack() as stack:
        context = await browser.new_context()
        try:
            page = await stack.open_seed_page(context, binary_fix=False)
            await asyncio.sleep(3.0)
            log = await page.evaluate("() => window.tp.log")
            return {
                "setup_complete_seen": any(e["type"] == "setupComplete" for e in log),
                "page_errors": len([e for e in log if e["type"] == "pageError"]),
            }
        finally:
            await context.close()


async def test_ours_beats_the_seed_in_chromium(browser: Any) -> None:
    results: dict[str, dict[str, Any]] = {}
    for kind in ("seed", "ours"):
        results[kind] = {
            "reset": await reset_journey(kind, browser),
            "blackhole_5s_typed_message": await blackhole_journey(kind, browser),
            "network_loss_5s": await network_loss_journey(kind, browser),
        }
    results["seed"]["binary_frames_without_the_fix"] = await binary_frames_journey(browser)
    out = os.environ.get("TUNNELPROOF_BROWSER_BENCH_OUT")
    if out:
        Path(out).write_text(json.dumps({"chromium": True, "results": results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    ours, seed = results["ours"], results["seed"]
    assert ours["reset"]["context_kept"] and ours["reset"]["back_s"] < 1.5
    assert ours["blackhole_5s_typed_message"]["typed_message_answered"]
    assert not seed["blackhole_5s_typed_message"]["typed_message_answered"]
    assert ours["network_loss_5s"]["context_kept"]
    assert ours["network_loss_5s"]["back_after_return_s"] < 1.5
    assert seed["network_loss_5s"]["back_after_return_s"] is NEVER
    assert not seed["binary_frames_without_the_fix"]["setup_complete_seen"]
