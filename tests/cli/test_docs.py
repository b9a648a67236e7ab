"""docs/troubleshooting.md's close-code table says what classify_close really does."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from tunnelproof.protocol.close_codes import classify_close

DOCS = Path(__file__).resolve().parents[2] / "docs"


def close_code_rows() -> list[list[str]]:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    table = text.split("<!-- close-codes-table", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return [c for c in cells[1:] if not set(c[0]) <= {"-"}]  # skip header and rule


def test_every_row_matches_the_classifier() -> None:
    rows = close_code_rows()
    assert len(rows) >= 20
    for code_cell, reason_cell, when, klass, *_ in rows:
        code = None if code_cell == "none" else int(code_cell)
        quoted = re.fullmatch(r"`(.*)`", reason_cell)
        reason = quoted.group(1) if quoted else ""
        verdict = classify_close(
            code, reason, resuming=when == "resuming", after_go_away=when == "after goAway"
        )
        assert verdict.kind.value == klass, (code_cell, reason_cell, when, verdict)


def test_every_close_class_is_explained() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    for klass in ("retry", "expected", "fatal_config", "fatal_auth", "bad_request", "bad_resume"):
        assert f"**{klass}**" in text


def test_migrating_lists_every_retired_model() -> None:
    from tunnelproof.protocol.models import RETIRED_MODELS

    text = (DOCS / "migrating.md").read_text(encoding="utf-8")
    for model, retirement in RETIRED_MODELS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{model}`")), None)
        assert row is not None, model
        assert f"`{retirement.replacement}`" in row


def test_docs_snippets_compile() -> None:
    for name in ("migrating.md", "troubleshooting.md"):
        text = (DOCS / name).read_text(encoding="utf-8")
        for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
            # Snippets may use top-level await (they live inside your async code).
            compile(block, name, "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT


def test_no_doc_cites_a_reference_file_outside_the_repository() -> None:
    # The project's protocol notes (reference/live-api-protocol.md, measurements.md, peers)
    # are not shipped: a reader cannot open them, so no doc may send them there.
    root = DOCS.parent
    for path in [root / "README.md", *DOCS.rglob("*.md")]:
        text = path.read_text(encoding="utf-8")
        for cited in ("shared/reference", "reference/", "live-api-protocol.md", "peers.md"):
            assert cited not in text, f"{path.name} cites {cited}"


def test_the_google_genai_diff_in_migrating_is_the_real_one() -> None:
    import difflib

    text = (DOCS / "migrating.md").read_text(encoding="utf-8")
    diff = text.split("```diff\n", 1)[1].split("```", 1)[0]

    def code(name: str) -> list[str]:  # the module docstring is prose, not code
        source = (DOCS / "examples" / name).read_text(encoding="utf-8")
        return source.split('"""', 2)[2].splitlines()

    before, after = code("genai_voice_app.py"), code("tunnelproof_voice_app.py")
    shown_removed = sorted(line[1:] for line in diff.splitlines() if line.startswith("-"))
    shown_added = sorted(line[1:] for line in diff.splitlines() if line.startswith("+"))
    real = [ln for ln in difflib.ndiff(before, after) if ln[:2] in ("- ", "+ ")]
    assert sorted(ln[2:] for ln in real if ln.startswith("- ")) == shown_removed
    assert sorted(ln[2:] for ln in real if ln.startswith("+ ")) == shown_added
    # Context lines shown in the diff are really in both files.
    for line in diff.splitlines():
        if line.startswith(" ") and line != " ...":
            assert line[1:] in before and line[1:] in after, line


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_the_curl_lines_in_operations_work(emulator) -> None:
    # Run as written against a real `tunnelproof serve` (only the address differs).
    import asyncio

    from tunnelproof.demo.processes import ReadyLineProcess

    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    block = text.split("## Try it with curl", 1)[1].split("```console\n", 1)[1].split("```")[0]
    lines = [line[2:] for line in block.splitlines() if line.startswith("$ curl ")]
    assert len(lines) == 3
    service = ReadyLineProcess(
        ["serve", "--host", "127.0.0.1", "--port", "0"],
        env={
            "TUNNELPROOF_API_KEY": emulator.api_key,
            "TUNNELPROOF_UPSTREAM_BASE_URL": emulator.http_base,
            "TUNNELPROOF_AUTH_MODE": "static",
            "TUNNELPROOF_STATIC_KEYS": "alice:dev-key-1",
        },
        drop_env_prefixes=("TUNNELPROOF_", "GEMINI_API_KEY"),
        name="token service",
    )
    ready = await service.start()
    try:
        answers = []
        for line in lines:
            url = line.replace("http://127.0.0.1:8080", ready["url"])
            command = shlex.split(url, comments=True)
            command[1:1] = ["-w", "\\n%{http_code}"]
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, _err = await asyncio.wait_for(proc.communicate(), 30)
            body, status = out.decode().rsplit("\n", 1)
            answers.append((int(status), json.loads(body)))
    finally:
        await service.stop()
    (ok_status, token), (denied_status, denied), health = answers
    assert ok_status == 200
    assert token["token"].startswith("auth_tokens/")
    assert {"expiresAt", "newSessionExpiresAt", "model", "wsUrl"} <= set(token)
    assert token["wsUrl"].endswith("BidiGenerateContentConstrained")
    assert (denied_status, denied) == (401, {"error": "Unauthorized"})
    assert health == (200, {"status": "ok"})
