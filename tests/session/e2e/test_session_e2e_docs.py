"""The runnable example in docs/client.md runs and prints what the doc says."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

DOC = Path(__file__).resolve().parents[3] / "docs" / "client.md"


def example_code() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Try it locally", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


async def test_the_docs_example_runs() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        example_code(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), 60)
    finally:
        if child.returncode is None:
            child.kill()
    assert child.returncode == 0, err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert lines[0] == 'You said: "My favourite colour is teal.".'
    assert 'You first said: "My favourite colour is teal.".' in lines
    assert lines[-1] == "1 reconnect(s)"
