"""Server content as app events: model text, audio and transcriptions.

Pure translation, no decisions: the machine calls :func:`content_events` for the payload of
a ``serverContent`` message and handles the turn signals (``interrupted``,
``generationComplete``, ``turnComplete``) itself, because those move the turn tracker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunnelproof.protocol.errors import ProtocolError
from tunnelproof.protocol.server_messages import ServerContent
from tunnelproof.session import app_events as ev
from tunnelproof.session.transcript import Transcript


@dataclass(slots=True)
class ContentOutcome:
    """What one ``serverContent`` payload produced.

    ``output`` is true when it carried model output (text, audio or an output
    transcription): the reply owed has started. ``protocol_errors`` counts undecodable
    audio parts (each also reported as a ``ProtocolViolation`` event).
    """

    events: list[ev.AppEvent] = field(default_factory=list)
    output: bool = False
    protocol_errors: int = 0


def content_events(
    content: ServerContent, transcript: Transcript, *, audio_modality: bool
) -> ContentOutcome:
    """Translate ``content``'s payload to app events and record it in ``transcript``.

    Thought parts are skipped (never shown, never re-seeded). In the AUDIO modality the
    output transcription is the model's words, so it goes into the transcript.
    """
    out = ContentOutcome()
    if content.input_transcription is not None:
        transcript.user_transcription(content.input_transcription.text)
        out.events.append(
            ev.InputTranscript(
                content.input_transcription.text, content.input_transcription.finished
            )
        )
    for part in content.parts:
        if part.thought:
            continue
        if part.text is not None:
            out.output = True
            transcript.model_output(part.text)
            out.events.append(ev.TextDelta(part.text))
        elif part.inline_data is not None and part.inline_data.is_audio:
            out.output = True
            try:
                pcm = part.inline_data.decode()
            except ProtocolError as exc:
                out.protocol_errors += 1
                out.events.append(ev.ProtocolViolation(str(exc), exc.size))
                continue
            out.events.append(ev.AudioChunk(pcm, part.inline_data.mime_type))
    if content.output_transcription is not None:
        out.output = True
        if audio_modality:
            transcript.model_output(content.output_transcription.text)
        out.events.append(
            ev.OutputTranscript(
                content.output_transcription.text, content.output_transcription.finished
            )
        )
    return out
