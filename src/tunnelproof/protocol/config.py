"""``LiveConfig``: one description of a Live session.

The same object produces the client's ``setup`` message and the token service's locked
constraints (``bidiGenerateContentSetup`` + ``fieldMask``), so the two cannot disagree: a
field locked in the token always has the value the client would have sent.
``sessionResumption`` is never locked, because the client must stay free to add the newest
handle on every reconnect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tunnelproof.protocol.models import default_model, resource_name
from tunnelproof.protocol.types import JsonDict

Modality = Literal["TEXT", "AUDIO"]
Sensitivity = Literal["HIGH", "LOW"]
ActivityHandling = Literal["START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"]
TurnCoverage = Literal[
    "TURN_INCLUDES_ONLY_ACTIVITY",
    "TURN_INCLUDES_ALL_INPUT",
    "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",
]
Behavior = Literal["BLOCKING", "NON_BLOCKING"]


@dataclass(frozen=True, slots=True)
class FunctionDeclaration:
    """A tool the model may call."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None  # OpenAPI-subset schema
    behavior: Behavior | None = None

    def to_wire(self) -> JsonDict:
        """Wire form inside ``tools[].functionDeclarations``."""
        out: JsonDict = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.parameters is not None:
            out["parameters"] = dict(self.parameters)
        if self.behavior is not None:
            out["behavior"] = self.behavior
        return out


@dataclass(frozen=True, slots=True)
class VoiceActivityDetection:
    """``realtimeInputConfig.automaticActivityDetection``."""

    disabled: bool = False
    start_sensitivity: Sensitivity | None = None
    end_sensitivity: Sensitivity | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None

    def to_wire(self) -> JsonDict:
        """Wire form."""
        out: JsonDict = {"disabled": self.disabled}
        if self.start_sensitivity is not None:
            out["startOfSpeechSensitivity"] = f"START_SENSITIVITY_{self.start_sensitivity}"
        if self.end_sensitivity is not None:
            out["endOfSpeechSensitivity"] = f"END_SENSITIVITY_{self.end_sensitivity}"
        if self.prefix_padding_ms is not None:
            out["prefixPaddingMs"] = self.prefix_padding_ms
        if self.silence_duration_ms is not None:
            out["silenceDurationMs"] = self.silence_duration_ms
        return out


@dataclass(frozen=True, slots=True)
class ContextWindowCompression:
    """Sliding-window compression; removes the 15/2-minute session limits."""

    trigger_tokens: int | None = None  # default: 80% of the model's context window
    target_tokens: int | None = None  # default: trigger_tokens / 2

    def to_wire(self) -> JsonDict:
        """Wire form."""
        window: JsonDict = {}
        if self.target_tokens is not None:
            window["targetTokens"] = self.target_tokens
        out: JsonDict = {"slidingWindow": window}
        if self.trigger_tokens is not None:
            out["triggerTokens"] = self.trigger_tokens
        return out


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """Everything that describes a Live session, in one immutable value.

    The default is what Google's current Live models take: ``AUDIO`` answers with output
    and input audio transcription, so the answer is also available as text
    (:func:`tunnelproof.session.ask` / ``OutputTranscript`` events). ``TEXT`` answers
    exist only on retired models (and the emulator-only ``tunnelproof-emulator-text``).

    ``generation_extra`` and ``setup_extra`` carry fields this class does not model yet
    (they are merged last, camelCase expected), so a new API field never blocks an app.
    """

    model: str = field(default_factory=default_model)
    response_modalities: tuple[Modality, ...] = ("AUDIO",)
    system_instruction: str | None = None
    tools: tuple[FunctionDeclaration, ...] = ()
    google_search: bool = False
    # Audio-first, as Google is: every current Live model answers in AUDIO only, and text
    # reaches the app through the transcriptions, so both are on by default.
    input_audio_transcription: bool = True
    output_audio_transcription: bool = True
    voice_name: str | None = None
    language_code: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    thinking_budget: int | None = None
    include_thoughts: bool | None = None
    # Per model (reference section 6): gemini-3.8-live has proactive audio always on
    # (False is refused) and no affective dialog; 3.1 has neither. Google closes 1008.
    enable_affective_dialog: bool | None = None
    proactive_audio: bool | None = None
    vad: VoiceActivityDetection | None = None
    activity_handling: ActivityHandling | None = None
    turn_coverage: TurnCoverage | None = None
    compression: ContextWindowCompression | None = None
    session_resumption: bool = True
    generation_extra: Mapping[str, Any] = field(default_factory=dict)
    setup_extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.response_modalities) != 1:
            raise ValueError("the Live API allows exactly one response modality per session")
        if self.response_modalities[0] not in ("TEXT", "AUDIO"):
            raise ValueError(f"unknown response modality {self.response_modalities[0]!r}")
        if not self.model.strip():
            raise ValueError("LiveConfig.model is empty")

    # -- wire forms -----------------------------------------------------------------

    def setup_body(self) -> JsonDict:
        """The ``BidiGenerateContentSetup`` object without ``sessionResumption``."""
        generation: JsonDict = {"responseModalities": list(self.response_modalities)}
        for name, value in (
            ("temperature", self.temperature),
            ("topP", self.top_p),
            ("topK", self.top_k),
            ("maxOutputTokens", self.max_output_tokens),
            ("enableAffectiveDialog", self.enable_affective_dialog),
        ):
            if value is not None:
                generation[name] = value
        speech: JsonDict = {}
        if self.voice_name is not None:
            speech["voiceConfig"] = {"prebuiltVoiceConfig": {"voiceName": self.voice_name}}
        if self.language_code is not None:
            speech["languageCode"] = self.language_code
        if speech:
            generation["speechConfig"] = speech
        thinking: JsonDict = {}
        if self.thinking_budget is not None:
            thinking["thinkingBudget"] = self.thinking_budget
        if self.include_thoughts is not None:
            thinking["includeThoughts"] = self.include_thoughts
        if thinking:
            generation["thinkingConfig"] = thinking
        generation.update(self.generation_extra)

        body: JsonDict = {"model": resource_name(self.model), "generationConfig": generation}
        if self.system_instruction:
            body["systemInstruction"] = {"parts": [{"text": self.system_instruction}]}
        tools: list[JsonDict] = []
        if self.tools:
            tools.append({"functionDeclarations": [t.to_wire() for t in self.tools]})
        if self.google_search:
            tools.append({"googleSearch": {}})
        if tools:
            body["tools"] = tools
        realtime: JsonDict = {}
        if self.vad is not None:
            realtime["automaticActivityDetection"] = self.vad.to_wire()
        if self.activity_handling is not None:
            realtime["activityHandling"] = self.activity_handling
        if self.turn_coverage is not None:
            realtime["turnCoverage"] = self.turn_coverage
        if realtime:
            body["realtimeInputConfig"] = realtime
        if self.compression is not None:
            body["contextWindowCompression"] = self.compression.to_wire()
        if self.input_audio_transcription:
            body["inputAudioTranscription"] = {}
        if self.output_audio_transcription:
            body["outputAudioTranscription"] = {}
        if self.proactive_audio is not None:
            body["proactivity"] = {"proactiveAudio": self.proactive_audio}
        body.update(self.setup_extra)
        return body

    def to_setup(self, handle: str | None = None) -> JsonDict:
        """The first client message. ``handle`` resumes a session; ``None`` starts a new one.

        With ``session_resumption`` on, a new session sends ``sessionResumption: {}`` so
        the server starts sending handles.
        """
        body = self.setup_body()
        if handle is not None:
            body["sessionResumption"] = {"handle": handle}
        elif self.session_resumption:
            body["sessionResumption"] = {}
        return {"setup": body}

    def token_constraints(self) -> tuple[JsonDict, str]:
        """``(bidiGenerateContentSetup, fieldMask)`` for minting a locked ephemeral token.

        The mask lists every field present (Google answers HTTP 400 when the setup has a
        field the mask leaves out). ``sessionResumption`` is in neither, so the client can
        add its handle.
        """
        body = self.setup_body()
        return body, ",".join(field_mask_paths(body))

    @property
    def modality(self) -> Modality:
        """The single response modality."""
        return self.response_modalities[0]


def field_mask_paths(setup: Mapping[str, Any]) -> list[str]:
    """Field-mask paths for a setup body: top-level names, ``generationConfig.*`` one deeper."""
    paths: list[str] = []
    for name, value in setup.items():
        if name == "generationConfig" and isinstance(value, Mapping):
            paths.extend(f"generationConfig.{inner}" for inner in value)
        else:
            paths.append(name)
    return paths
