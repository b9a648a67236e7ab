"""The token-service benchmark's CPU meter reads a process's own CPU time from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tunnelproof.benchmarks.token_service import process_cpu_seconds


def test_process_cpu_seconds_counts_a_childs_busy_time_not_its_sleep() -> None:
    # The child spins 0.5 s of CPU, says so, then sleeps. /proc counts CPU in sampled clock
    # ticks, so a child that spun exactly 0.4 s could read 0.39: it spins a margin more than
    # the 0.4 s asserted, and the sleep is measured only once it has stopped spinning.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.5\n"
            "while time.process_time() < end: pass\nprint('spun', flush=True)\n"
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "spun\n"  # bounded: the child spins 0.5 s of CPU
        busy = process_cpu_seconds(child.pid)
        assert busy >= 0.4
        time.sleep(0.3)  # sleeping costs no CPU
        assert process_cpu_seconds(child.pid) - busy < 0.1
    finally:
        child.kill()
        child.wait()
    assert process_cpu_seconds(os.getpid()) > 0
