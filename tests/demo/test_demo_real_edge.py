"""`demo --real` up to the network edge, with an emulator over TLS standing in for Google.

What is real here: the token service gets the API key (only it), mints over https, and puts
the *real host name* in the tokens' wsUrl; the client keeps that host name in its URL (TLS
verifies the certificate against it, the Host header names it) while its TCP goes to the
tunnel proxy, which forwards raw bytes to the upstream. The emulator's test CA stands in
for the public CA store and "localhost" for generativelanguage.googleapis.com.
"""

from __future__ import annotations

import ssl

import pytest

from tunnelproof.demo.app import DemoOptions, _session_kwargs, run_demo
from tunnelproof.demo.stack import DemoStack, StackOptions
from tunnelproof.emulator import EmulatorPolicy, EmulatorServer

pytestmark = pytest.mark.e2e


def test_real_defaults_point_at_google() -> None:
    options = StackOptions(real=True, api_key="k")
    assert options.upstream_host == "generativelanguage.googleapis.com"
    assert options.upstream_port == 443
    stack = DemoStack(options)
    assert stack.real_ws_base == "wss://generativelanguage.googleapis.com"
    context = stack.ssl_context()
    assert context is not None
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


async def test_real_mode_against_tls_emulator(tmp_path) -> None:
    speed = 16.0
    policy = EmulatorPolicy(generation_speed=8.0, text_chunk_interval=0.1)
    async with EmulatorServer(policy=policy, tls=True, state_dir=tmp_path) as emu:
        assert emu.ca_file is not None
        stack_options = StackOptions(
            speed=speed,
            real=True,
            api_key=emu.api_key,
            seed=3,
            upstream_host="localhost",
            upstream_port=emu.port,
            upstream_http_base=emu.http_base,
            ca_file=emu.ca_file,
        )
        # The plumbing the client gets: dial the proxy, verify the real name with TLS.
        async with DemoStack(stack_options) as stack:
            kwargs = _session_kwargs(stack, 3)
            assert kwargs["connect_kwargs"]["host"] == "127.0.0.1"
            assert kwargs["connect_kwargs"]["port"] == stack.proxy.port
            assert kwargs["ssl"].check_hostname
            assert stack.real_ws_base == f"wss://localhost:{emu.port}"
        outcome = await run_demo(
            DemoOptions(speed=speed, json=True, real=True, api_key=emu.api_key, seed=3),
            stack_options=stack_options,
        )
        result = outcome.result
        assert outcome.exit_code == 0, result["verdict"]
        assert result["stack"]["mode"] == "google"
        kinds = [d["kind"] for d in result["disruptions"]]
        assert kinds == ["tunnel", "station", "crash", "drop", "tunnel"]
        station = result["disruptions"][1]
        assert station["how"] == "not available on Google"
        assert result["disruptions"][2]["label"] == "link reset (RST)"
        # Every connection went through the proxy with TLS to "localhost" and authenticated
        # with an ephemeral token minted by the token service (the key stayed server-side).
        ledger = emu.controls.token_ledger()
        assert len(ledger) == result["figures"]["tokensFetched"] >= 5
        assert all(c["token"] for c in emu.controls.connections())
