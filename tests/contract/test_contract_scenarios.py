"""The shared client-contract scenarios, run against the Python ``SessionMachine``.

``scenarios.json`` is read by this runner and by the browser machine's runner
(``tests/browser/contract.test.js`` under ``node --test``), so the two clients cannot drift
apart: a rule changed in one machine fails the other's run of the same table. Only the
public API is used: ``SessionMachine.handle()``/``send()``, the event dataclasses of
``session/events.py`` and the action dataclasses of ``session/actions.py``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from tunnelproof.protocol.client_messages import Turn
from tunnelproof.protocol.config import LiveConfig
from tunnelproof.session import actions as act
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import Credential
from tunnelproof.session.events import (
    CloseRequested,
    FrameReceived,
    LinkChecked,
    OpenFailure,
    ReseedRequested,
    ResumeRequested,
    SocketClosed,
    SocketOpened,
    SocketOpenFailed,
    Started,
    TimerFired,
    TokenFailed,
    TokenFailure,
    TokenFetched,
)
from tunnelproof.session.handle_store import StoredSession
from tunnelproof.session.machine import SessionMachine
from tunnelproof.session.outbox import OutboxLimits
from tunnelproof.session.policy import RetryPolicy, Watchdogs
from tunnelproof.session.transcript import DEFAULT_MAX_BYTES

TABLE = json.loads((Path(__file__).parent / "scenarios.json").read_text())
SCENARIOS = TABLE["scenarios"]
WALL0 = 1_800_000_000.0
MODEL = "gemini-3.8-live"

# Python event class -> the event type name both runners compare.
EVENT_TYPES = {
    ev.Connected: "connected",
    ev.Resumed: "resumed",
    ev.Reconnecting: "reconnecting",
    ev.Disconnected: "disconnected",
    ev.Rewound: "rewound",
    ev.TurnsRestored: "turnsRestored",
    ev.ContextReset: "contextReset",
    ev.GoAwayReceived: "goAway",
    ev.Failed: "failed",
    ev.SendDropped: "sendDropped",
    ev.Delivered: "delivered",
    ev.Closed: "closed",
    ev.ProtocolViolation: "protocolViolation",
    ev.TextDelta: "text",
    ev.AudioChunk: "audio",
    ev.InputTranscript: "inputTranscript",
    ev.OutputTranscript: "outputTranscript",
    ev.ToolCallRequested: "toolCall",
    ev.ToolCallCancelled: "toolCallCancelled",
    ev.GenerationComplete: "generationComplete",
    ev.TurnComplete: "turnComplete",
    ev.Interrupted: "interrupted",
    ev.Usage: "usage",
    ev.UnknownServerMessage: "unknownServerMessage",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def normalize_event(event: ev.AppEvent) -> dict[str, Any]:
    """An app event as the JSON shape both runners compare."""
    kind = EVENT_TYPES[type(event)]
    if isinstance(event, ev.Failed):
        v = event.verdict
        return {"type": kind, "kind": v.kind.value, "code": v.code, "advice": v.advice}
    if isinstance(event, ev.AudioChunk):
        return {"type": kind, "bytes": len(event.pcm), "mimeType": event.mime_type}
    if isinstance(event, ev.ToolCallRequested):
        return {"type": kind, "ids": [c.id for c in event.calls], "reissued": list(event.reissued)}
    out: dict[str, Any] = {"type": kind}
    for f in dataclasses.fields(event):
        out[_camel(f.name)] = _plain(getattr(event, f.name))
    if isinstance(event, ev.GoAwayReceived):
        del out["handoverBy"]
    return out


def normalize_action(action: act.Action, now: float) -> dict[str, Any]:
    """An action as the JSON shape both runners compare."""
    match action:
        case act.FetchToken():
            return {"type": "fetchToken", "prefetch": action.prefetch}
        case act.CancelTokenFetch():
            return {"type": "cancelTokenFetch"}
        case act.OpenSocket():
            return {"type": "openSocket"}
        case act.SendFrame():
            return {"type": "sendFrame", "message": json.loads(action.text)}
        case act.CloseSocket():
            return {"type": "closeSocket", "code": action.code, "reason": action.reason}
        case act.AbortSocket():
            return {"type": "abortSocket"}
        case act.SetTimer():
            return {"type": "setTimer", "name": action.name, "delay": round(action.at - now, 6)}
        case act.CancelTimer():
            return {"type": "cancelTimer", "name": action.name}
        case act.SaveHandle():
            return {
                "type": "saveHandle",
                "handle": action.session.handle,
                "turns": len(action.session.transcript),
            }
        case act.DeleteHandle():
            return {"type": "deleteHandle"}
        case act.CheckLink():
            return {"type": "checkLink"}
        case act.Emit():
            return {"type": "emit", "event": normalize_event(action.event)}
    raise AssertionError(f"unknown action {action!r}")


def matches(pattern: Any, actual: Any) -> bool:
    """Partial match, the same rules as the JS runner (see scenarios.json ``about``)."""
    if isinstance(pattern, dict):
        if (
            isinstance(actual, int | float)
            and not isinstance(actual, bool)
            and ("min" in pattern or "max" in pattern)
        ):
            return (
                pattern.get("min", float("-inf")) - 1e-9
                <= actual
                <= pattern.get("max", float("inf")) + 1e-9
            )
        if "contains" in pattern and isinstance(actual, str):
            return str(pattern["contains"]) in actual
        if not isinstance(actual, dict):
            return False
        if not pattern:
            return not actual
        return all(k in actual and matches(v, actual[k]) for k, v in pattern.items())
    if isinstance(pattern, list):
        return (
            isinstance(actual, list)
            and len(pattern) == len(actual)
            and all(matches(p, a) for p, a in zip(pattern, actual, strict=True))
        )
    if isinstance(pattern, float | int) and isinstance(actual, float | int):
        return abs(pattern - actual) < 1e-6
    return bool(pattern == actual)


def _kwargs(cls: type, values: dict[str, Any]) -> Any:
    return cls(**{_snake(k): v for k, v in values.items()})


class Runner:
    """Feeds one scenario's steps to a ``SessionMachine``."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        config = LiveConfig(
            model=MODEL,
            response_modalities=(scenario.get("modality", "AUDIO"),),
            session_resumption=scenario.get("sessionResumption", True),
        )
        self.machine = SessionMachine(
            config,
            policy=_kwargs(RetryPolicy, scenario.get("policy", {})),
            watchdogs=_kwargs(Watchdogs, scenario.get("watchdogs", {})),
            limits=_kwargs(OutboxLimits, scenario.get("limits", {})),
            transcript_bytes=scenario.get("transcriptBytes", DEFAULT_MAX_BYTES),
            rng=random.Random(7),
        )
        self.now = 0.0
        self.timers: dict[str, tuple[int, float]] = {}
        self.request = 0
        self.attempt = 0
        self.tokens = 0

    @property
    def wall(self) -> float:
        return WALL0 + self.now

    def _track(self, actions: list[act.Action]) -> None:
        for a in actions:
            if isinstance(a, act.FetchToken):
                self.request = a.request
            elif isinstance(a, act.OpenSocket):
                self.attempt = a.attempt
            elif isinstance(a, act.SetTimer):
                self.timers[a.name] = (a.serial, a.at)
            elif isinstance(a, act.CancelTimer):
                self.timers.pop(a.name, None)

    def step(self, step: dict[str, Any]) -> tuple[list[act.Action], str | None]:
        m = self.machine
        result: str | None = None
        if "start" in step:
            stored = step["start"].get("stored")
            event: Any = Started(
                StoredSession(
                    handle=stored["handle"],
                    saved_at=self.wall - stored["disconnectedAgo"],
                    disconnected_at=self.wall - stored["disconnectedAgo"],
                    transcript=tuple(Turn(t["role"], t["text"]) for t in stored["transcript"]),
                )
                if stored
                else None
            )
        elif "token" in step:
            self.tokens += 1
            event = TokenFetched(
                self.request,
                Credential(
                    kind="ephemeral_token",
                    secret=f"auth_tokens/t{self.tokens}",
                    ws_base="ws://127.0.0.1:9",
                    expires_at=self.wall + 1800,
                    new_session_expires_at=self.wall + 60,
                ),
            )
        elif "tokenFail" in step:
            f = step["tokenFail"]
            event = TokenFailed(
                self.request, TokenFailure(f["kind"]), f.get("message", ""), f.get("retryAfter")
            )
        elif "open" in step:
            event = SocketOpened(self.attempt)
        elif "openFail" in step:
            f = step["openFail"]
            event = SocketOpenFailed(
                self.attempt, OpenFailure(f["kind"]), f.get("status"), f.get("message", "")
            )
        elif "frame" in step:
            text = json.dumps(step["frame"])
            event = FrameReceived(self.attempt, text.encode() if step.get("binary") else text)
        elif "close" in step:
            c = step["close"]
            event = SocketClosed(self.attempt, c.get("code"), c.get("reason", ""))
        elif "fire" in step:
            serial, at = self.timers.pop(step["fire"])
            self.now = max(self.now, at)
            event = TimerFired(step["fire"], serial)
        elif "advance" in step:
            self.now += step["advance"]
            return [], None
        elif "send" in step:
            res, actions = m.send(step["send"], now=self.now, wall=self.wall)
            self._track(actions)
            return actions, res.status
        elif "linkChecked" in step:
            c = step["linkChecked"]
            event = LinkChecked(self.attempt, c["alive"], c.get("detail", ""))
        elif "closeSession" in step:
            event = CloseRequested()
        elif "resumeRequested" in step:
            event = ResumeRequested()
        elif "reseedRequested" in step:
            event = ReseedRequested()
        else:
            raise AssertionError(f"unknown step {step!r}")
        actions = m.handle(event, now=self.now, wall=self.wall)
        self._track(actions)
        return actions, result


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_contract_scenario(scenario: dict[str, Any]) -> None:
    runner = Runner(scenario)
    for index, step in enumerate(scenario["steps"]):
        actions, result = runner.step(step)
        got = [normalize_action(a, runner.now) for a in actions]
        where = f"step {index} {json.dumps(step)[:160]}\nactions: {json.dumps(got, default=str)}"
        position = 0
        for pattern in step.get("expect", []):
            while position < len(got) and not matches(pattern, got[position]):
                position += 1
            assert position < len(got), f"expected {pattern} (in order) at {where}"
            position += 1
        for pattern in step.get("absent", []):
            assert not any(matches(pattern, a) for a in got), f"unexpected {pattern} at {where}"
        if "result" in step:
            assert result == step["result"], where
        if "state" in step:
            assert runner.machine.state.value == step["state"], where
        if "handle" in step:
            assert runner.machine.resumption_handle == step["handle"], where
        for name, value in step.get("metrics", {}).items():
            assert getattr(runner.machine.metrics, _snake(name)) == value, (
                f"metric {name} at {where}"
            )


def test_table_covers_the_contract() -> None:
    covered = {point for s in SCENARIOS for point in s["contract"]}
    assert covered >= {1, 2, 3, 4, 5, 6, 7, 8, 9}
    assert len(SCENARIOS) >= 12


def test_matcher_rejects_mismatches() -> None:
    # The runner must be able to fail: these are the rules every expectation relies on.
    assert not matches({"a": 1}, {"a": 2})
    assert not matches({}, {"handle": "h"})
    assert not matches({"min": 0, "max": 0.5}, 0.6)
    assert not matches({"contains": "model"}, "no such word")
    assert not matches([1], [1, 2])
    assert matches({"a": {"min": 1}}, {"a": 3, "b": 4})
