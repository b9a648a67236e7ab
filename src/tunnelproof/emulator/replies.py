"""What the server sends for an answer, as data: frames plus the pauses between them.

No I/O: the connection driver sleeps ``pause_before / generation_speed`` (read at that
moment, so the speed knob works mid-answer) and sends each step's messages. Also the
builders of the other server messages, so every wire shape is in one place.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunnelproof.emulator.audio import OUTPUT_RATE, synthesize
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.protocol.durations import format_duration
from tunnelproof.protocol.types import JsonDict

AUDIO_MIME = f"audio/pcm;rate={OUTPUT_RATE}"


@dataclass(frozen=True, slots=True)
class Step:
    """Wait ``pause_before`` seconds of model time, then send ``messages``."""

    pause_before: float
    messages: tuple[JsonDict, ...]
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """An answer's frames; ``tail`` is the model time after the last step (audio playout)."""

    steps: tuple[Step, ...]
    tail: float = 0.0


def text_plan(text: str, policy: EmulatorPolicy) -> Plan:
    """TEXT modality: ``modelTurn`` text parts of ``text_chunk_words`` words."""
    words = text.split()
    size = max(1, policy.text_chunk_words)
    steps: list[Step] = []
    for i in range(0, len(words), size):
        piece = words[i : i + size]
        chunk = " ".join(piece) if i == 0 else " " + " ".join(piece)
        message = {"serverContent": {"modelTurn": {"parts": [{"text": chunk}]}}}
        steps.append(Step(policy.text_chunk_interval, (message,), tuple(piece)))
    return Plan(tuple(steps))


def audio_plan(text: str, policy: EmulatorPolicy, *, transcription: bool) -> Plan:
    """AUDIO modality: 24 kHz PCM chunks paced at real time, with output transcription."""
    chunks = synthesize(
        text, seconds_per_word=policy.seconds_per_word, chunk_seconds=policy.audio_chunk_duration
    )
    steps: list[Step] = []
    previous = 0.0
    for chunk in chunks:
        messages: list[JsonDict] = []
        if chunk.words and transcription:
            said = " ".join(chunk.words) + " "
            messages.append({"serverContent": {"outputTranscription": {"text": said}}})
        data = base64.b64encode(chunk.pcm).decode("ascii")
        part = {"inlineData": {"mimeType": AUDIO_MIME, "data": data}}
        messages.append({"serverContent": {"modelTurn": {"parts": [part]}}})
        steps.append(Step(previous, tuple(messages), chunk.words))
        # The next chunk is due when this one has played out.
        previous = len(chunk.pcm) / 2 / OUTPUT_RATE
    return Plan(tuple(steps), tail=previous)


def answer_plan(text: str, policy: EmulatorPolicy, *, modality: str, transcription: bool) -> Plan:
    """The plan for ``text`` in the session's modality."""
    if modality == "AUDIO":
        return audio_plan(text, policy, transcription=transcription)
    return text_plan(text, policy)


def _turn_complete(status: str | None) -> JsonDict:
    body: JsonDict = {"turnComplete": True}
    if status is not None:
        # "Always sent alongside turn_complete" on current models (reference section 10).
        body["interactionStatus"] = status
    return {"serverContent": body}


def turn_end(status: str | None = None) -> tuple[JsonDict, JsonDict]:
    """A normal end of turn: ``generationComplete`` then ``turnComplete``.

    ``status`` is the ``interactionStatus`` sent with ``turnComplete`` (``IDLE``, or
    ``IN_PROGRESS`` while background reasoning continues); ``None`` sends none.
    """
    return {"serverContent": {"generationComplete": True}}, _turn_complete(status)


def interrupted(status: str | None = None) -> tuple[JsonDict, JsonDict]:
    """An interrupted turn: ``interrupted`` then ``turnComplete`` (no generationComplete)."""
    return {"serverContent": {"interrupted": True}}, _turn_complete(status)


def interaction_idle() -> JsonDict:
    """The end of background reasoning: ``interactionStatus: IDLE`` on its own."""
    return {"serverContent": {"interactionStatus": "IDLE"}}


def tool_call(call_id: str, name: str, args: Mapping[str, Any]) -> JsonDict:
    """``toolCall`` with one function call."""
    return {"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": dict(args)}]}}


def go_away(time_left: float) -> JsonDict:
    """``goAway`` with a protobuf-duration ``timeLeft`` (``"50s"``)."""
    return {"goAway": {"timeLeft": format_duration(time_left)}}


def usage(prompt_tokens: int, response_tokens: int) -> JsonDict:
    """``usageMetadata`` (word counts stand in for tokens)."""
    return {
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "responseTokenCount": response_tokens,
            "totalTokenCount": prompt_tokens + response_tokens,
        }
    }


def input_transcription(text: str) -> JsonDict:
    """The transcript of one finished utterance."""
    return {"serverContent": {"inputTranscription": {"text": text, "finished": True}}}
