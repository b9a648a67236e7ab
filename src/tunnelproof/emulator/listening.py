"""The user's side of one emulator conversation: what each input does.

:mod:`inputs` says what a ``clientContent``, ``realtimeInput`` or ``toolResponse`` body
means; this module does it: history grows, streamed audio goes through voice activity
detection (or the client's own ``activityStart``/``activityEnd``), speech is transcribed,
and :class:`~tunnelproof.emulator.answering.Answering` is asked to answer or to stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunnelproof.emulator import replies
from tunnelproof.emulator.answering import Answering
from tunnelproof.emulator.audio import VoiceDetector, transcribe
from tunnelproof.emulator.conversation import Conversation
from tunnelproof.emulator.inputs import (
    ActivityEnd,
    ActivityStart,
    AudioIn,
    StreamEnd,
    TextIn,
    VideoIn,
    barge_in_allowed,
    client_turns,
    realtime_action,
    tool_results,
)
from tunnelproof.emulator.sessions import Entry


class Listening:
    """Applies one set-up connection's client messages to its conversation."""

    def __init__(self, conv: Conversation, answering: Answering) -> None:
        self.conv = conv
        self.answering = answering
        # Manual activity: the audio between activityStart and activityEnd. Automatic: the
        # voice detector cuts the stream into utterances.
        self._manual_audio: bytearray | None = None
        self._vad: VoiceDetector | None = None
        info = conv.info
        if not info.manual_activity:
            policy = conv.hub.policy
            silence = (info.silence_ms / 1000.0) if info.silence_ms else policy.vad_silence_duration
            self._vad = VoiceDetector(policy.vad_energy_threshold, silence)

    def client_content(self, body: Mapping[str, Any]) -> None:
        """Turns appended to the history; ``turnComplete`` asks for an answer."""
        turns = client_turns(body)
        # "A message here will interrupt any current model generation."
        self.answering.interrupt()
        self.answering.end_reasoning()
        self.conv.session.history.extend(turns.entries)
        self.conv.emit(
            "client_content", turns=len(turns.entries), turn_complete=turns.turn_complete
        )
        if turns.turn_complete:
            self.answering.start()
        else:
            self.conv.spawn(self.answering.flush_then_update())

    async def realtime_input(self, body: Mapping[str, Any]) -> None:
        """One ``realtimeInput`` field: text, audio, video, stream end or activity."""
        action = realtime_action(body, self.conv.info)
        if isinstance(action, TextIn):
            self.answering.interrupt()
            self.conv.session.history.append(Entry("user", action.text, "realtimeText"))
            self.conv.emit("user_text", text=action.text)
            self.answering.start()
        elif isinstance(action, AudioIn):
            await self._audio(action.pcm, action.rate)
        elif isinstance(action, VideoIn):
            self._video()
        elif isinstance(action, StreamEnd):
            assert self._vad is not None
            for event, utterance in self._vad.flush():
                await self._vad_event(event, utterance)
        elif isinstance(action, ActivityStart):
            self._barge_in()
            self._manual_audio = bytearray()
        else:
            assert isinstance(action, ActivityEnd)
            pcm_bytes = bytes(self._manual_audio or b"")
            self._manual_audio = None
            await self._utterance(pcm_bytes)

    def tool_response(self, body: Mapping[str, Any]) -> None:
        """Results of the open tool calls; the answer goes on once none is left open."""
        session = self.conv.session
        for result in tool_results(body, session.pending_calls):
            session.pending_calls.pop(result.call_id)
            session.history.append(result.entry())
            self.conv.emit("tool_response", id=result.call_id, name=result.name)
        if not session.pending_calls:
            self.answering.start()

    def _video(self) -> None:
        session = self.conv.session
        if not session.video_seen:
            session.video_seen = True
            self.conv.emit("video_seen", session=session.id)
            self.conv.hub.wake_timers()

    async def _audio(self, pcm: bytes, rate: int) -> None:
        if self.conv.info.manual_activity:
            if self._manual_audio is not None:
                self._manual_audio.extend(pcm)
            return
        assert self._vad is not None
        for event, utterance in list(self._vad.feed(pcm, rate)):
            await self._vad_event(event, utterance)

    async def _vad_event(self, event: str, utterance: bytes) -> None:
        if event == "start":
            self.conv.emit("speech_started")
            self._barge_in()
        else:
            await self._utterance(utterance)

    def _barge_in(self) -> None:
        if barge_in_allowed(self.conv.info.setup):
            self.answering.interrupt()

    async def _utterance(self, pcm: bytes) -> None:
        text = transcribe(pcm)
        self.conv.emit("utterance", text=text, bytes=len(pcm))
        if self.conv.info.input_transcription:
            await self.conv.out.send(replies.input_transcription(text))
        self.conv.session.history.append(Entry("user", text, "audio"))
        self.answering.start()
