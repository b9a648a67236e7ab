"""The README's examples run as written (extracted from README.md, not copied)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import cli_env

README = Path(__file__).resolve().parents[2] / "README.md"


def example(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- readme-example: {name} -->\s*```python\n(.*?)```", text, flags=re.DOTALL
    )
    assert match, f"README example {name!r} not found"
    return match.group(1)


def test_client_example_is_short() -> None:
    lines = [line for line in example("client").splitlines() if line.strip()]
    assert len(lines) <= 22
    backend = [line for line in example("backend").splitlines() if line.strip()]
    assert len(backend) <= 10


@pytest.mark.e2e
def test_client_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "client_example.py"
    script.write_text(example("client"))
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Nice to meet you, Ada." in proc.stdout
    assert "[back after" in proc.stdout  # the crash between the questions
    assert 'You first said: "My name is Ada."' in proc.stdout


def test_backend_example_mounts_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    monkeypatch.setenv("TUNNELPROOF_UPSTREAM_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("TUNNELPROOF_API_KEY", raising=False)
    namespace: dict[str, object] = {}
    exec(compile(example("backend"), "README-backend", "exec"), namespace)
    app = namespace["app"]
    with TestClient(app) as client:  # type: ignore[arg-type]
        # No user: 401 from the route (the user check comes before anything else).
        assert client.post("/api/live/token").status_code == 401
        # A user but no API key configured: 500 "Server misconfigured", as documented.
        response = client.post("/api/live/token", headers={"x-demo-user": "ada"})
        assert response.status_code == 500


@pytest.mark.e2e
@pytest.mark.slow  # make test runs this example as written, in a pytest of its own, twice:
# tests/testing/test_pytest_plugin.py (pytest-asyncio and anyio), so it is make chaos's here
async def test_fixtures_example_runs(emulator, emulator_tunnel) -> None:
    # The example is a pytest test using the plugin's fixtures: run it with the real ones.
    namespace: dict[str, object] = {}
    exec(compile(example("fixtures"), "README-fixtures", "exec"), namespace)
    test = namespace["test_assistant_remembers_through_a_tunnel"]
    await test(emulator, emulator_tunnel)  # type: ignore[operator]
