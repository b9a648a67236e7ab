"""Bad command-line values: one clear sentence and exit code 2, never a traceback or a hang.

Found by the hostile pass: ``tunnelproof emulator`` printed Python tracebacks for a bad
``--set``/``--policy-json``/``--port``/``--host`` and accepted negative or ``nan``
durations; ``tunnelproof demo --speed nan`` printed a traceback and then hung.
"""

from __future__ import annotations

import pytest

from .helpers import one_clear_sentence, run_cli, run_in_process


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--set", "nosuch=1"], "no field 'nosuch'"),
        (["--set", "connection_lifetime=abc"], "connection_lifetime must be a number"),
        (["--set", "token_default_uses=x"], "token_default_uses must be an integer"),
        (["--policy-json", "{bad"], "--policy-json is not valid JSON"),
        (["--policy-json", "[1]"], "--policy-json must be a JSON object"),
        (["--generation-speed", "-1"], "--generation-speed: generation_speed must be a finite"),
        (["--connection-lifetime", "nan"], "connection_lifetime must be a finite number"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--host", "256.1.1.1"], "cannot listen on 256.1.1.1"),
        (["--persist-sessions"], "--persist-sessions needs --state-dir"),
    ],
)
def test_emulator_bad_values_are_one_sentence(args: list[str], says: str) -> None:
    # In this process (typer's runner): a CLI process costs seconds of start-up. The real
    # entry point is run once below.
    proc = run_in_process("emulator", *args)
    assert proc.returncode == 2, proc.stderr
    assert says in one_clear_sentence(proc.stderr, "tunnelproof emulator: ")
    assert proc.stdout == ""  # no ready line: nothing was started


def test_emulator_bad_value_from_the_real_entry_point() -> None:
    proc = run_cli("emulator", "--set", "connection_lifetime=-5", timeout=30)
    assert proc.returncode == 2, proc.stderr
    line = one_clear_sentence(proc.stderr, "tunnelproof emulator: ")
    assert "connection_lifetime must be a finite number >= 0" in line


@pytest.mark.parametrize("speed", ["nan", "inf", "-1", "0"])
@pytest.mark.parametrize("browser", [False, True])
def test_demo_speed_must_be_positive_and_finite(speed: str, browser: bool) -> None:
    args = ["demo", "--json", "--speed", speed, *(["--browser"] if browser else [])]
    proc = run_in_process(*args)
    assert proc.returncode == 2, proc.stderr
    assert "--speed must be a positive number" in one_clear_sentence(
        proc.stderr, "tunnelproof demo: "
    )


def test_demo_nan_speed_from_the_real_entry_point() -> None:
    # It was a traceback from the view, then a process that never ended.
    proc = run_cli("demo", "--speed", "nan", timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "--speed" in one_clear_sentence(proc.stderr, "tunnelproof demo: ")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--upstream", "127.0.0.1:99999"], "port from 1 to 65535"),
        (["--upstream", "127.0.0.1:0"], "port from 1 to 65535"),
        (["--upstream", "127.0.0.1:1", "--schedule", "nan:blackhole"], "AT_S must be"),
        (["--upstream", "127.0.0.1:1", "--schedule", "-1:blackhole"], "AT_S must be"),
    ],
)
def test_tunnel_bad_values_are_usage_errors(args: list[str], says: str) -> None:
    # A port out of range and a nan/negative schedule time were accepted (the nan step
    # ran at once); typer's usage error names the option now.
    proc = run_in_process("tunnel", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and says in proc.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--listen", "256.0.0.1:0"], "cannot listen on 256.0.0.1:0"),
        (["--control", "256.0.0.1:0"], "cannot listen on 256.0.0.1:0 (--control)"),
    ],
)
def test_tunnel_unbindable_address_is_one_sentence(args: list[str], says: str) -> None:
    proc = run_in_process("tunnel", "--upstream", "127.0.0.1:1", *args)
    assert proc.returncode == 2, proc.stderr
    assert says in one_clear_sentence(proc.stderr, "tunnelproof tunnel: ")
    assert proc.stdout == ""  # no ready line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "99999"], "--port must be between 0 and 65535"),
        (["--host", "256.1.1.1"], "cannot listen on 256.1.1.1:0"),
    ],
)
def test_relay_bad_address_is_one_sentence(args: list[str], says: str) -> None:
    proc = run_in_process(
        "relay", *args, GEMINI_API_KEY="k", TUNNELPROOF_RELAY_STATIC_KEYS="alice:dev-key"
    )
    assert proc.returncode == 2, proc.stderr
    assert says in one_clear_sentence(proc.stderr, "tunnelproof relay: ")
