"""`tunnelproof demo --browser` and `tunnelproof serve --demo` start, serve the page and the
client, and stop on a signal."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx


def _interrupt(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C the command as a person would; kill it only if it ignores that for 15 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def test_demo_browser_command_serves_the_page() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tunnelproof.cli import main; main()", "demo", "--browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "open http" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        match = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        assert match, (
            f"no URL announced: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        )
        url = match.group(1)
        page = httpx.get(url, timeout=5)
        assert page.status_code == 200
        assert "/api/live/client.js" in page.text
        assert "__BEARER__" not in page.text  # filled in per run
        client = httpx.get(url + "api/live/client.js", timeout=5)
        assert client.status_code == 200
        refused = httpx.post(url + "demo/tunnel", json={"action": "explode"}, timeout=5)
        assert refused.status_code == 400
        ok = httpx.post(url + "demo/tunnel", json={"action": "restore"}, timeout=5)
        assert ok.json() == {"action": "restore", "blackholed": False}
    finally:
        _interrupt(proc)
    assert proc.returncode in (0, 130), proc.returncode


def test_serve_demo_announces_a_ready_line_and_serves_the_page() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tunnelproof.cli import main; main()", "serve", "--demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first stdout line, as `serve` promises
        assert line, proc.stderr.read() if proc.poll() is not None else "no ready line"
        ready = json.loads(line)
        assert ready["event"] == "ready"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", ready["url"])
        assert ready["demoUrl"] == ready["url"] + "/"
        assert ready["tokenUrl"] == ready["url"] + "/api/live/token"
        page = httpx.get(ready["demoUrl"], timeout=5)
        assert page.status_code == 200
        assert "/api/live/client.js" in page.text and "__BEARER__" not in page.text
        assert httpx.get(ready["url"] + "/api/live/client.js", timeout=5).status_code == 200
        anonymous = httpx.post(ready["tokenUrl"], timeout=5)
        assert anonymous.status_code == 401  # the page's bearer is per run, not open
    finally:
        _interrupt(proc)
    assert proc.returncode in (0, 130), proc.returncode


def test_serve_demo_refuses_a_public_address_and_token_service_options() -> None:
    from typer.testing import CliRunner

    from tunnelproof.cli import app

    for extra, expected in (
        (["--host", "0.0.0.0"], "not a loopback address"),
        (["--upstream", "http://127.0.0.1:9"], "drop --upstream"),
    ):
        result = CliRunner().invoke(app, ["serve", "--demo", *extra])
        assert result.exit_code == 2, (extra, result.stdout, result.stderr)
        assert expected in result.stderr
        assert result.stdout == ""
