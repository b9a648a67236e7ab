"""The CLI ready line and EmulatorProcess (a real subprocess), including restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tunnelproof.emulator import EmulatorPolicy, EmulatorProcess
from tunnelproof.emulator.tls import client_context

from .emu_helpers import (
    ask,
    expect_close,
    key_url,
    mint_token,
    open_ws,
    recv,
    send,
    setup,
    start,
    token_url,
)

pytestmark = pytest.mark.e2e


async def test_cli_prints_one_ready_line_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tunnelproof"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "tunnelproof"]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        "emulator",
        "--port",
        "0",
        "--tls",
        "--state-dir",
        str(tmp_path),
        "--connection-lifetime",
        "30",
        "--set",
        "go_away_lead=5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        info = json.loads(line)
        assert set(info) >= {"http", "ws", "ca_file", "control"}
        assert info["http"].startswith("https://127.0.0.1:")
        assert info["ws"] == info["http"].replace("https://", "wss://")
        assert info["control"] == info["http"] + "/_emulator"
        assert info["ca_file"] == str(tmp_path / "emulator-ca.pem")
        assert Path(info["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        import aiohttp

        async with (
            aiohttp.ClientSession() as http,
            http.get(info["control"] + "/policy", ssl=client_context(info["ca_file"])) as response,
        ):
            policy = await response.json()
        assert (policy["connection_lifetime"], policy["go_away_lead"]) == (30.0, 5.0)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        rest = await proc.stdout.read()
        assert rest == b""  # exactly one line
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_process_serves_and_a_default_restart_loses_sessions() -> None:
    # full_cli: this one goes through `python -m tunnelproof emulator` as well.
    async with EmulatorProcess(EmulatorPolicy(generation_speed=0), full_cli=True) as emu:
        port = emu.port
        ws, _ = await start(emu)
        _, handle, _ = await ask(ws, "before the restart")
        event = await emu.controls.wait_for_connections(1)
        assert event["kind"] == "setup_complete"
        conns = await emu.controls.connections()
        assert conns[0]["state"] == "open"
        await emu.restart()
        code, _ = await expect_close(ws)
        assert code in (1001, 1006, None)
        assert emu.port == port and emu.running
        ws = await open_ws(key_url(emu))
        await send(ws, setup(handle=handle))
        code, _ = await expect_close(ws)
        assert code == 1007  # the new process never saw that handle
        assert await emu.controls.connections() != []


async def test_persisted_restart_keeps_handles_tokens_and_ca(tmp_path: Path) -> None:
    async with EmulatorProcess(
        EmulatorPolicy(generation_speed=0), tls=True, state_dir=tmp_path, persist_sessions=True
    ) as emu:
        ca_before = Path(emu.ca_file or "").read_bytes()
        token = await mint_token(emu, {"uses": 1})

        ws = await open_ws(token_url(emu, token))
        await send(ws, setup())
        assert await recv(ws) == {"setupComplete": {}}
        await recv(ws)
        _, handle, _ = await ask(ws, "remember the train")
        await emu.restart()
        assert Path(emu.ca_file or "").read_bytes() == ca_before
        ws = await open_ws(token_url(emu, token))
        await send(ws, setup(handle=handle))
        assert await recv(ws) == {"setupComplete": {}}
        await recv(ws)
        answer, _, _ = await ask(ws, "what did I say first")
        assert answer == 'You first said: "remember the train".'
        await ws.close()
        ledger = await emu.controls.token_ledger()
        assert ledger[0]["usesConsumed"] == 1


async def test_crash_restart_loses_even_persisted_state(tmp_path: Path) -> None:
    async with EmulatorProcess(state_dir=tmp_path, persist_sessions=True) as emu:
        pid = emu.pid
        ws, handle = await start(emu)
        await emu.restart(crash=True)
        assert emu.pid != pid and os.path.exists(tmp_path)
        code, _ = await expect_close(ws)
        assert code is None or code == 1006
        ws = await open_ws(key_url(emu))
        await send(ws, setup(handle=handle))
        code, _ = await expect_close(ws)
        assert code == 1007


def test_cli_policy_flags_layer_in_order() -> None:
    from tunnelproof.emulator.cli import BadSetting, build_policy

    policy = build_policy(
        policy_json='{"connection_lifetime": 5, "go_away_lead": 1}',
        settings=["go_away_lead=2", "strict_token_uses=true"],
        explicit={"connection_lifetime": 7.0, "text_frames": None},
    )
    assert (policy.connection_lifetime, policy.go_away_lead) == (7.0, 2.0)
    assert policy.strict_token_uses is True and policy.text_frames is False
    with pytest.raises(BadSetting, match="name=value"):
        build_policy(policy_json=None, settings=["no-equals-sign"], explicit={})
    with pytest.raises(BadSetting, match="no field 'nope'"):
        build_policy(policy_json=None, settings=["nope=1"], explicit={})


async def test_process_fixture_restarts_on_the_same_port(
    emulator_process_factory: object,
) -> None:
    emu = await emulator_process_factory()  # type: ignore[operator]
    port = emu.port
    await emu.restart(crash=True)
    assert emu.port == port and emu.running
    ws, _ = await start(emu)
    await ws.close()


async def test_remote_controls_reach_the_new_faults() -> None:
    async with EmulatorProcess(EmulatorPolicy(generation_speed=0)) as emu:
        ws, _ = await start(emu)
        _, handle, _ = await ask(ws, "my name is Ada")
        await ws.close()
        await emu.controls.forget_resumes(1)
        ws, _ = await start(emu, handle=handle)
        text, _, _ = await ask(ws, "what is my name")
        assert text == "I don't know your name yet."  # accepted, restored nothing
        await emu.controls.reject_next_client_message(1011, "Internal error encountered.")
        await send(ws, {"realtimeInput": {"text": "rejected"}})
        assert await expect_close(ws) == (1011, "Internal error encountered.")
        policy = await emu.controls.update_policy(think_delay=0.5, go_away_on_connect=2.0)
        assert (policy["think_delay"], policy["go_away_on_connect"]) == (0.5, 2.0)
