"""The demo page plays the train journey in Chromium; a screenshot of it is kept."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tunnelproof.demo.browser import browser_demo

from .chromium_stack import CHROMIUM_ARGS, chromium_path

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

# Set TUNNELPROOF_DEMO_SCREENSHOT=path to keep the picture (docs/browser-demo.png was made so).
SCREENSHOT_ENV = "TUNNELPROOF_DEMO_SCREENSHOT"


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


async def test_demo_page_plays_the_journey_with_context_kept(browser: Any, tmp_path: Path) -> None:
    async with browser_demo(speed=4.0) as demo:
        context = await browser.new_context(viewport={"width": 1280, "height": 820})
        try:
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(demo.url)
            await page.wait_for_function("() => window.live && window.live.state === 'connected'")
            await page.click("#journey")
            await page.wait_for_function("() => window.demo.done === true", timeout=60_000)
            result = await page.evaluate("() => window.demo")
            assert result["verdict"] is True, result
            assert "Ada" in result["name"]
            assert "Bergen" in result["first"]
            assert result["metrics"]["reconnects"] >= 3
            timeline = await page.inner_text("#timeline")
            for needle in (
                "entering a tunnel",
                "resumed with context",
                "goAway",
                "fresh single-use token",
            ):
                assert needle in timeline, needle
            assert "context kept" in await page.inner_text("#verdict")
            shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "browser-demo.png")
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert errors == []
        finally:
            await context.close()
