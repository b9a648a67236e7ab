"""The token-service benchmark's CPU meter reads a process's own CPU time from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tunnelproof.benchmarks.token_service import process_cpu_seconds


def test_process_cpu_seconds_counts_a_childs_busy_time_not_its_sleep() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.4\n"
            "while time.process_time() < end: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        busy = 0.0
        while time.monotonic() < deadline:
            busy = process_cpu_seconds(child.pid)
            if busy >= 0.4:
                break
            time.sleep(0.05)
        assert busy >= 0.4
        time.sleep(0.3)  # sleeping costs no CPU
        assert process_cpu_seconds(child.pid) - busy < 0.1
    finally:
        child.kill()
        child.wait()
    assert process_cpu_seconds(os.getpid()) > 0
