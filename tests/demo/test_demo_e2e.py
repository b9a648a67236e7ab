"""`tunnelproof demo` end to end: real processes, real HTTP, the whole journey, fast.

The journey runs at --speed 16 (about 4 s of journey) and the checks read its --json
result: the verdict, and the figures behind it.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from .helpers import TUNNELPROOF, alive, cli_env

pytestmark = pytest.mark.e2e


def run_demo_json(*args: str, timeout: float = 100.0) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [*TUNNELPROOF, "demo", "--json", "--seed", "7", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def check_journey(result: dict) -> None:
    verdict = result["verdict"]
    assert all(v["ok"] for v in verdict.values()), verdict
    assert result["ok"] is True
    # The last answer quotes the first thing said, after every fault.
    first = result["utterances"][0]["text"]
    assert first in result["utterances"][-1]["answer"]

    kinds = [d["kind"] for d in result["disruptions"]]
    assert kinds == ["tunnel", "station", "crash", "drop", "tunnel"]
    for tunnel in (d for d in result["disruptions"] if d["kind"] == "tunnel"):
        # The label names the tunnel's real (scaled) length: "tunnel 0.5 s" at --speed 16.
        lasted = tunnel["ended"] - tunnel["started"]
        named = float(tunnel["label"].split()[1])
        assert abs(named - lasted) < 0.25 + 0.2 * named, tunnel
    for d in result["disruptions"]:
        assert d["recovered"] is not None, d
        # Back within a few seconds of each fault's end (the tunnel's length not included).
        assert d["recoveryAfterFault"] < 8.0, d
    by_kind = {d["kind"]: d for d in result["disruptions"]}
    assert by_kind["station"]["how"] == "handover"  # goAway: planned, no backoff
    assert by_kind["crash"]["how"] == "resumed"
    assert by_kind["drop"]["cutWords"] > 0  # the link really died mid-answer
    # Words said inside a tunnel were lost on the wire and replayed after the resume.
    tunnels = [d for d in result["disruptions"] if d["kind"] == "tunnel"]
    assert all(t["how"] == "resumed" and t["replayed"] >= 1 for t in tunnels), tunnels

    # The client's LiveConfig and what the token service locks agree (no ConfigMismatch).
    assert result["configMismatches"] == []
    f = result["figures"]
    assert f["contextResets"] == 0
    assert f["reconnects"] == 5
    # A fresh token for every connection (a refused attempt may take one more), each
    # fetched over HTTP from the token service and minted by the server for it.
    assert f["connections"] == 6
    assert f["tokensFetched"] == f["tokensMinted"] >= f["connections"]
    assert f["handlesSeen"] >= 6
    assert f["messagesReplayed"] >= 3
    assert f["messagesDropped"] == 0
    assert all(u["status"] == "answered" for u in result["utterances"])


def test_demo_typed_journey_json() -> None:
    started = time.monotonic()
    code, result, stderr = run_demo_json("--speed", "16")
    assert code == 0, stderr[-2000:]
    check_journey(result)
    assert result["audio"] is False  # the user typed ...
    # ... and the model answered in audio, as Google's current models do; the answers the
    # checks read are the output transcription.
    assert result["stack"]["modality"] == "AUDIO"
    assert result["figures"]["audioReceivedSeconds"] > 5
    # The token service child was stopped with the demo.
    pid = result["stack"]["tokenServicePid"]
    assert pid and not alive(pid)
    assert time.monotonic() - started < 60


def test_demo_audio_journey_json() -> None:
    code, result, stderr = run_demo_json("--speed", "16", "--audio")
    assert code == 0, stderr[-2000:]
    check_journey(result)
    f = result["figures"]
    assert f["audioSentSeconds"] > 5
    assert f["audioReceivedSeconds"] > 5
    # Speech lost inside the tunnels was replayed (or reported dropped, never silent).
    assert f["audioReplayedMs"] > 0 or f["audioDroppedMs"] > 0
