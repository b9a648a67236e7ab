"""The pytest11 plugin, as a user's project meets it: outside this repository's pytest config.

Each test writes a throw-away project (its own ``pytest.ini``, so its own rootdir and none
of this repository's ``asyncio_mode = auto``) and runs pytest on it in a subprocess with
the installed tunnelproof plugin.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

BLOCK_PYTEST_ASYNCIO = (
    'raise ImportError("pytest-asyncio is not installed (blocked by the test)")\n'
)


def readme_fixtures_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- readme-example: fixtures -->\s*```python\n(.*?)```", text, flags=re.DOTALL
    )
    assert match, "README fixtures example not found"
    return match.group(1)


def make_project(root: Path, files: dict[str, str], *, block_pytest_asyncio: bool) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")  # own rootdir, pytest's defaults
    for name, text in files.items():
        (project / name).write_text(text)
    if block_pytest_asyncio:
        # Shadows the installed package: ``import pytest_asyncio`` fails as if absent.
        shadow = root / "shadow"
        shadow.mkdir()
        (shadow / "pytest_asyncio.py").write_text(BLOCK_PYTEST_ASYNCIO)
    return project


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    shadow = project.parent / "shadow"
    if shadow.exists():
        env["PYTHONPATH"] = str(shadow)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_suite_without_pytest_asyncio_is_not_broken(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        {
            "test_plain.py": "def test_plain():\n    assert 1 + 1 == 2\n",
            "test_wants_emulator.py": "def test_sync(emulator):\n    pass\n",
        },
        block_pytest_asyncio=True,
    )
    # The blocked import really fails, so the plugin cannot lean on pytest-asyncio.
    blocked = subprocess.run(
        [sys.executable, "-c", "import pytest_asyncio"],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "shadow")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "blocked by the test" in blocked.stderr

    # One pytest run for both files (each run costs a pytest start-up): the plain test
    # passes, the plugin loads cleanly, and requesting an async fixture with no runner
    # is one sentence naming both ways, no traceback.
    run = run_pytest(project, "-p", "no:asyncio", "test_plain.py", "test_wants_emulator.py")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert re.search(r"\b1 passed, 1 error\b", run.stdout), out
    assert "Error while loading plugin" not in out
    assert (
        "tunnelproof's fixture 'emulator_factory' is async and no async test runner" in run.stdout
    )
    assert "@pytest.mark.anyio" in run.stdout
    assert "Traceback" not in out


@pytest.mark.e2e
def test_readme_fixtures_example_runs_as_written_with_pytest_asyncio(tmp_path: Path) -> None:
    example = readme_fixtures_example()
    project = make_project(tmp_path, {"test_readme.py": example}, block_pytest_asyncio=False)
    # pytest-asyncio in its default (strict) mode; anyio's plugin is there too, untouched.
    result = run_pytest(project, "-W", "error::pytest.PytestUnraisableExceptionWarning")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.e2e
def test_readme_fixtures_example_runs_with_anyio(tmp_path: Path) -> None:
    example = readme_fixtures_example()
    assert "@pytest.mark.asyncio" in example
    anyio_example = example.replace("@pytest.mark.asyncio", "@pytest.mark.anyio")
    more = """
import httpx
import pytest


@pytest.mark.anyio
async def test_tunnel_alone_and_token_service(emulator_tunnel, token_service):
    # emulator_tunnel requested without emulator; the token service mints a real token.
    assert emulator_tunnel.url("ws").startswith("ws://127.0.0.1:")
    async with httpx.AsyncClient() as client:
        response = await client.post(token_service.token_url, headers=token_service.auth_header)
    assert response.status_code == 200, response.text
    assert response.json()["token"]
"""
    project = make_project(
        tmp_path,
        {"test_readme.py": anyio_example, "test_more.py": more},
        block_pytest_asyncio=True,
    )
    result = run_pytest(project, "-p", "no:asyncio")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_loading_the_plugin_imports_no_service_or_server() -> None:
    # The plugin loads in every pytest run of a project that installs tunnelproof; the
    # emulator and the token service are imported by the fixtures that start them.
    heavy = ("fastapi", "uvicorn", "google.genai", "aiohttp", "tunnelproof.emulator")
    probe = (
        "import sys, tunnelproof.testing.pytest_plugin\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", run.stdout
