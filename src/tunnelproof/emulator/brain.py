"""A deterministic assistant whose answers depend on the whole conversation. No I/O.

It exists to make context loss visible. Rules, tried in order on the latest entry:

* after a ``toolResponse``: "The <name> tool says: <result>."
* "what did I say first" / "first thing I said": quotes the first user utterance;
* "how many turns": "You have taken N turns so far." (user turns, this one included);
* "my name is X" / "what is my name": remembers and recalls the name;
* a declared function named in the utterance (``turn_on_the_lights`` matches "turn on the
  lights"), or "time" with a declared function whose name contains ``time``: a tool call;
* "count to N": "1, 2, ..., N." (a long answer to cut mid-generation);
* "story": a fixed long story;
* anything else: ``You said: "<utterance>".``
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunnelproof.emulator.sessions import Entry
from tunnelproof.protocol.casing import get_field

USER_SOURCES = frozenset({"clientContent", "realtimeText", "audio"})
MAX_COUNT = 2000
STORY = (
    "Once upon a time a small train carried a voice assistant through the mountains. "
    "Every time the train entered a tunnel the radio link fell silent, and every time it "
    "came out the assistant remembered exactly where the conversation had stopped, "
    "because it kept a careful handle on everything that had been said. The passengers "
    "never noticed the tunnels at all, and the conductor slept soundly every night."
)


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A function call the brain wants the client to run."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the model does next: say ``text`` or call ``call``."""

    text: str | None = None
    call: PlannedCall | None = None


def user_utterances(history: Sequence[Entry]) -> list[str]:
    """Every user utterance, oldest first."""
    return [e.text for e in history if e.role == "user" and e.source in USER_SOURCES]


def respond(history: Sequence[Entry], tools: Sequence[str] = ()) -> Answer:
    """The deterministic answer to the conversation so far."""
    if not history:
        return Answer(text="Hello! How can I help?")
    last = history[-1]
    if last.source == "toolResponse":
        return Answer(text=_tool_result_text(last))
    said = user_utterances(history)
    utterance = said[-1] if said else last.text
    low = _normalise(utterance)

    if "what did i say first" in low or "first thing i said" in low:
        return Answer(text=f'You first said: "{said[0]}".' if said else "You have said nothing.")
    if "how many turns" in low:
        return Answer(text=f"You have taken {len(said)} turns so far.")
    name = _name_told(utterance)
    if name is not None:
        return Answer(text=f"Nice to meet you, {name}.")
    if "what is my name" in low or "whats my name" in low:
        for earlier in reversed(said[:-1]):
            known = _name_told(earlier)
            if known is not None:
                return Answer(text=f"Your name is {known}.")
        return Answer(text="I don't know your name yet.")
    call = _tool_for(low, tools)
    if call is not None:
        return Answer(call=call)
    count = re.search(r"count to (\d+)", low)
    if count is not None:
        n = min(int(count.group(1)), MAX_COUNT)
        return Answer(text=", ".join(str(i) for i in range(1, n + 1)) + ".")
    if re.search(r"\bstory\b", low):
        return Answer(text=STORY)
    return Answer(text=f'You said: "{utterance}".')


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9_ ]+", "", text.lower().replace("'", "")).strip()


_NAME = re.compile(r"\bmy name is ([A-Za-z][\w-]*)", re.IGNORECASE)


def _name_told(utterance: str) -> str | None:
    match = _NAME.search(utterance)
    return match.group(1) if match else None


def _tool_for(low: str, tools: Sequence[str]) -> PlannedCall | None:
    for name in tools:
        spoken = name.replace("_", " ").lower()
        if name.lower() in low or spoken in low:
            return PlannedCall(name)
    if "time" in low:
        for name in tools:
            if "time" in name.lower():
                return PlannedCall(name)
    return None


def _tool_result_text(entry: Entry) -> str:
    name = str(entry.data.get("name", "tool"))
    response = entry.data.get("response", {})
    if isinstance(response, Mapping):
        values = {k: v for k, v in response.items() if k != "scheduling"}
        if len(values) == 1:
            (value,) = values.values()
            shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        else:
            shown = json.dumps(values, sort_keys=True)
    else:
        shown = json.dumps(response, sort_keys=True)
    return f"The {name} tool says: {shown}."


def declared_functions(setup: Mapping[str, Any]) -> list[str]:
    """Names in ``setup.tools[].functionDeclarations`` (either spelling)."""
    names: list[str] = []
    tools = get_field(setup, "tools") or []
    if not isinstance(tools, list):
        return names
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        for decl in get_field(tool, "functionDeclarations") or []:
            if isinstance(decl, Mapping) and isinstance(decl.get("name"), str):
                names.append(decl["name"])
    return names
