"""google-genai's Live API shape on a resilient session: a one-line change for existing apps.

An app written for google-genai opens ``client.aio.live.connect(model=..., config=...)``,
sends with ``send_client_content`` / ``send_realtime_input`` / ``send_tool_response`` and
reads ``types.LiveServerMessage`` objects from ``session.receive()``. Replace that one
``connect`` call with :func:`connect` and the same code runs on a
:class:`~tunnelproof.session.LiveSession`, which survives drops, tunnels and ``goAway``
handovers, fetching a fresh token from ``tokens`` for every connection::

    async with genai_compat.connect(model=MODEL, config=config, tokens=tokens) as session:

What the app sees is what it saw before, with these differences (docs/migrating.md):

* Reconnects, resumes and handovers are invisible, except through ``on_event``, which gets
  tunnelproof's lifecycle events (``Reconnecting``, ``Resumed``, ``SendDropped``...). No
  ``session_resumption_update`` or ``go_away`` message reaches ``receive()``: the session
  handles both.
* An answer cut by a drop is followed by a message with ``server_content.interrupted``
  set (discard what was played of it, as after a barge-in); the question is replayed and
  its full answer follows.
* When the session gives up (a retired model, a revoked credential) ``receive()`` raises
  :class:`SessionFailed`, whose text says what to do; after ``close()`` it just ends.
* Only the config fields listed in :func:`live_config_from_genai` are accepted; any other
  field set raises ``ValueError`` naming it (rather than being silently ignored).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from google.genai import types
from pydantic import BaseModel

from tunnelproof.protocol.client_messages import FunctionResponse
from tunnelproof.protocol.config import ContextWindowCompression, FunctionDeclaration, LiveConfig
from tunnelproof.session import LiveSession
from tunnelproof.session import app_events as ev
from tunnelproof.session.credentials import TokenSource

__all__ = ["GenaiSession", "SessionFailed", "connect", "live_config_from_genai"]

EventHook = Callable[[ev.AppEvent], None]

# LiveConnectConfig fields passed through in their wire form: setup-level ones, and those
# that live inside generationConfig on the wire.
_SETUP_PASSTHROUGH = ("realtime_input_config", "proactivity", "explicit_vad_signal")
_GENERATION_PASSTHROUGH = ("thinking_config", "media_resolution", "seed")
_MAPPED = (
    "http_options",  # meaningless here: the token source says where to connect
    "response_modalities",
    "system_instruction",
    "speech_config",
    "input_audio_transcription",
    "output_audio_transcription",
    "temperature",
    "top_p",
    "top_k",
    "max_output_tokens",
    "enable_affective_dialog",
    "context_window_compression",
    "session_resumption",
    "tools",
)


class SessionFailed(Exception):
    """The session stopped and will not retry; ``str()`` says what to do."""


def _wire(value: Any) -> Any:
    """A google-genai model in its JSON wire form (camelCase, bytes as base64)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


def _instruction_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    content = types.Content.model_validate(value) if isinstance(value, dict) else value
    if isinstance(content, types.Part):
        content = types.Content(parts=[content])
    if not isinstance(content, types.Content):
        raise ValueError("system_instruction must be a str, Part or Content")
    texts = []
    for part in content.parts or []:
        if part.text is None:
            raise ValueError("system_instruction: only text parts are supported")
        texts.append(part.text)
    return "\n".join(texts)


def _tools(tools: Sequence[Any] | None) -> tuple[tuple[FunctionDeclaration, ...], bool]:
    declarations: list[FunctionDeclaration] = []
    search = False
    for tool in tools or []:
        tool = types.Tool.model_validate(tool) if isinstance(tool, dict) else tool
        if not isinstance(tool, types.Tool):
            raise ValueError("tools: only types.Tool objects (function declarations, search)")
        extra = sorted(
            name
            for name, value in tool
            if value is not None and name not in ("function_declarations", "google_search")
        )
        if extra:
            raise ValueError(f"tools: {', '.join(extra)} not supported by genai_compat")
        search = search or tool.google_search is not None
        for fn in tool.function_declarations or []:
            if fn.name is None:
                raise ValueError("tools: every function declaration needs a name")
            parameters = fn.parameters_json_schema
            if parameters is None and fn.parameters is not None:
                parameters = _wire(fn.parameters)
            behavior = None if fn.behavior is None else str(fn.behavior.value)
            declarations.append(
                FunctionDeclaration(fn.name, fn.description or "", parameters, behavior)  # type: ignore[arg-type]
            )
    return tuple(declarations), search


def live_config_from_genai(model: str, config: types.LiveConnectConfigOrDict | None) -> LiveConfig:
    """tunnelproof's :class:`LiveConfig` for google-genai's ``model`` and ``LiveConnectConfig``.

    Mapped: ``response_modalities``, ``system_instruction`` (text), ``speech_config``
    (voice name, language), input/output transcription, ``temperature``, ``top_p``,
    ``top_k``, ``max_output_tokens``, ``enable_affective_dialog``,
    ``context_window_compression`` (sliding window), ``tools`` (function declarations,
    Google Search). Passed through in wire form: ``realtime_input_config``, ``proactivity``,
    ``explicit_vad_signal``, ``thinking_config``, ``media_resolution``, ``seed``.
    ``session_resumption`` may be given but not with a handle: the session manages handles
    (give :class:`~tunnelproof.session.LiveSession` a ``handle_store`` to keep them).
    Anything else raises ``ValueError`` naming the field.
    """
    if config is None:
        cfg = types.LiveConnectConfig()
    elif isinstance(config, dict):
        cfg = types.LiveConnectConfig.model_validate(config)
    else:
        cfg = config
    unknown = sorted(
        name
        for name, value in cfg
        if value is not None and name not in _MAPPED + _SETUP_PASSTHROUGH + _GENERATION_PASSTHROUGH
    )
    if unknown:
        raise ValueError(f"LiveConnectConfig.{', '.join(unknown)}: not supported by genai_compat")
    if cfg.session_resumption is not None and cfg.session_resumption.handle:
        raise ValueError(
            "LiveConnectConfig.session_resumption.handle: tunnelproof manages handles "
            "(pass a handle_store and conversation_id to keep them across restarts)"
        )
    modalities = tuple(
        str(m.value if hasattr(m, "value") else m) for m in cfg.response_modalities or []
    )
    voice = language = None
    if cfg.speech_config is not None:
        speech = cfg.speech_config
        if speech.voice_config is not None and speech.voice_config.prebuilt_voice_config:
            voice = speech.voice_config.prebuilt_voice_config.voice_name
        language = speech.language_code
    compression = None
    if cfg.context_window_compression is not None:
        window = cfg.context_window_compression
        target = window.sliding_window.target_tokens if window.sliding_window else None
        compression = ContextWindowCompression(
            trigger_tokens=window.trigger_tokens, target_tokens=target
        )
    declarations, search = _tools(cfg.tools)
    setup_extra = {
        _camel(name): _wire(getattr(cfg, name))
        for name in _SETUP_PASSTHROUGH
        if getattr(cfg, name) is not None
    }
    generation_extra = {
        _camel(name): _wire(getattr(cfg, name))
        for name in _GENERATION_PASSTHROUGH
        if getattr(cfg, name) is not None
    }
    return LiveConfig(
        model=model.removeprefix("models/"),
        response_modalities=modalities or ("AUDIO",),  # type: ignore[arg-type]
        system_instruction=_instruction_text(cfg.system_instruction),
        tools=declarations,
        google_search=search,
        input_audio_transcription=cfg.input_audio_transcription is not None,
        output_audio_transcription=cfg.output_audio_transcription is not None,
        voice_name=voice,
        language_code=language,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=int(cfg.top_k) if cfg.top_k is not None else None,
        max_output_tokens=cfg.max_output_tokens,
        enable_affective_dialog=cfg.enable_affective_dialog,
        compression=compression,
        generation_extra=generation_extra,
        setup_extra=setup_extra,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def server_message(event: ev.AppEvent) -> types.LiveServerMessage | None:
    """The ``LiveServerMessage`` google-genai would have yielded for ``event`` (or ``None``)."""
    content: types.LiveServerContent | None = None
    match event:
        case ev.TextDelta(text=text):
            content = types.LiveServerContent(
                model_turn=types.Content(role="model", parts=[types.Part(text=text)])
            )
        case ev.AudioChunk(pcm=pcm, mime_type=mime_type):
            blob = types.Blob(data=pcm, mime_type=mime_type)
            content = types.LiveServerContent(
                model_turn=types.Content(role="model", parts=[types.Part(inline_data=blob)])
            )
        case ev.OutputTranscript(text=text, finished=finished):
            content = types.LiveServerContent(
                output_transcription=types.Transcription(text=text, finished=finished)
            )
        case ev.InputTranscript(text=text, finished=finished):
            content = types.LiveServerContent(
                input_transcription=types.Transcription(text=text, finished=finished)
            )
        case ev.GenerationComplete():
            content = types.LiveServerContent(generation_complete=True)
        case ev.TurnComplete():
            content = types.LiveServerContent(turn_complete=True)
        case ev.Interrupted() | ev.Rewound():
            # A cut answer (Rewound) will not continue: to the app it is an interruption.
            content = types.LiveServerContent(interrupted=True)
        case ev.ToolCallRequested(calls=calls):
            return types.LiveServerMessage(
                tool_call=types.LiveServerToolCall(
                    function_calls=[
                        types.FunctionCall(id=c.id, name=c.name, args=dict(c.args)) for c in calls
                    ]
                )
            )
        case ev.ToolCallCancelled(ids=ids):
            return types.LiveServerMessage(
                tool_call_cancellation=types.LiveServerToolCallCancellation(ids=list(ids))
            )
        case ev.Usage(prompt_tokens=prompt, response_tokens=response, total_tokens=total):
            return types.LiveServerMessage(
                usage_metadata=types.UsageMetadata(
                    prompt_token_count=prompt,
                    response_token_count=response,
                    total_token_count=total,
                )
            )
        case _:
            return None
    return types.LiveServerMessage(server_content=content)


_RATE = re.compile(r"rate=(\d+)")


class GenaiSession:
    """google-genai's ``AsyncSession`` surface over a :class:`LiveSession` (see the module)."""

    def __init__(self, live: LiveSession, on_event: EventHook | None = None) -> None:
        self.live = live
        """The resilient session underneath (``state``, ``metrics``, ``resume()``)."""
        self._on_event = on_event

    async def send_client_content(
        self,
        *,
        turns: types.ContentListUnionDict | None = None,
        turn_complete: bool = True,
    ) -> None:
        """Append ``turns`` to the conversation (``turn_complete`` asks for an answer)."""
        items: list[Any]
        if turns is None:
            items = []
        elif isinstance(turns, list):
            items = turns
        else:
            items = [turns]
        wire = []
        for item in items:
            if isinstance(item, str):
                item = types.Content(role="user", parts=[types.Part(text=item)])
            elif isinstance(item, dict):
                item = types.Content.model_validate(item)
            wire.append(_wire(item))
        await self.live.send_client_content(wire, turn_complete=turn_complete)

    async def send_realtime_input(
        self,
        *,
        audio: types.BlobOrDict | None = None,
        text: str | None = None,
        audio_stream_end: bool | None = None,
        activity_start: types.ActivityStartOrDict | None = None,
        activity_end: types.ActivityEndOrDict | None = None,
        video: types.BlobImageUnionDict | None = None,
    ) -> None:
        """Stream input: 16-bit PCM ``audio``, ``text``, and the activity/stream markers."""
        if audio is not None:
            blob = types.Blob.model_validate(audio) if isinstance(audio, dict) else audio
            found = _RATE.search(blob.mime_type or "")
            rate = int(found.group(1)) if found else 16_000
            await self.live.send_audio(blob.data or b"", rate=rate)
        if text is not None:
            await self.live.send_text(text)
        realtime: dict[str, Any] = {}
        if audio_stream_end:
            realtime["audioStreamEnd"] = True
        if activity_start is not None:
            realtime["activityStart"] = {}
        if activity_end is not None:
            realtime["activityEnd"] = {}
        if video is not None:
            realtime["video"] = _wire(video)
        if realtime:
            await self.live.send_raw({"realtimeInput": realtime})

    async def send_tool_response(
        self, *, function_responses: types.FunctionResponseOrDict | Sequence[Any]
    ) -> None:
        """Answer the model's tool calls (each response carries the call's ``id``)."""
        items = (
            list(function_responses)
            if isinstance(function_responses, Sequence)
            else [function_responses]
        )
        answers = []
        for item in items:
            fr = types.FunctionResponse.model_validate(item) if isinstance(item, dict) else item
            if not isinstance(fr, types.FunctionResponse) or not fr.id or not fr.name:
                raise ValueError("each function response needs the id and name of its call")
            answers.append(FunctionResponse(fr.id, fr.name, dict(fr.response or {})))
        await self.live.send_tool_response(answers)

    async def receive(self) -> AsyncIterator[types.LiveServerMessage]:
        """The server's messages up to the end of the current turn, as google-genai yields them.

        Raises :class:`SessionFailed` when the session gives up; ends when it is closed.
        """
        events = self.live.events()
        try:
            async for event in events:
                if isinstance(event, ev.Failed):
                    raise SessionFailed(event.advice)
                if isinstance(event, ev.Closed):
                    return
                message = server_message(event)
                if message is None:
                    if self._on_event is not None:
                        self._on_event(event)
                    continue
                yield message
                if isinstance(event, ev.TurnComplete):
                    return
        finally:
            # The next receive() reads on from the same queue; close this reader now.
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def close(self) -> None:
        """Close the session (nothing reconnects afterwards)."""
        await self.live.close()


@contextlib.asynccontextmanager
async def connect(
    *,
    model: str,
    config: types.LiveConnectConfigOrDict | None = None,
    tokens: TokenSource,
    on_event: EventHook | None = None,
    **session_kwargs: Any,
) -> AsyncIterator[GenaiSession]:
    """Open a resilient session with google-genai's ``client.aio.live.connect`` signature.

    ``tokens`` fetches a credential for every connection (e.g.
    :class:`~tunnelproof.tokens.TokenServiceSource` for your token service); other keyword
    arguments go to :class:`~tunnelproof.session.LiveSession` (``handle_store``,
    ``conversation_id``, ``policy``...).
    """
    live_config = live_config_from_genai(model, config)
    async with LiveSession(live_config, tokens, **session_kwargs) as live:
        yield GenaiSession(live, on_event)
