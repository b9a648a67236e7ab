"""Ctrl-C (and SIGTERM) stop the demo and every process it started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from .helpers import TUNNELPROOF, alive, children, cli_env

pytestmark = pytest.mark.e2e


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_demo_and_children(sig: signal.Signals, code: int) -> None:
    proc = subprocess.Popen(
        [*TUNNELPROOF, "demo", "--json", "--speed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        # The token service subprocess exists once the stack is up; give the journey a
        # moment to be under way (any moment works: the assertion holds whenever it lands).
        wait_for(lambda: bool(children(proc.pid)), 30, "the token service child")
        kids = children(proc.pid)
        time.sleep(1.0)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert "everything was stopped" in err
    assert "Traceback" not in err
    for kid in kids:
        wait_for(lambda kid=kid: not alive(kid), 10, f"child {kid} to exit")


def test_ctrl_c_in_a_terminal_stops_everything() -> None:
    # A real Ctrl-C: the terminal sends SIGINT to the whole foreground process group while
    # the live view is drawing.
    import pexpect

    demo = pexpect.spawn(
        sys.executable,
        ["-m", "tunnelproof", "demo"],
        encoding="utf-8",
        codec_errors="replace",  # the tty discards queued output on ^C, mid-character
        timeout=30,
        dimensions=(45, 100),
        env=cli_env(),
    )
    try:
        demo.expect("CONNECTED")
        kids = children(demo.pid)
        assert kids
        demo.expect("you ›")  # the journey is under way
        demo.sendintr()
        demo.expect("interrupted; everything was stopped")
        demo.expect(pexpect.EOF)
    finally:
        demo.close(force=True)
    assert demo.exitstatus == 130
    for kid in kids:
        wait_for(lambda kid=kid: not alive(kid), 10, f"child {kid} to exit")
