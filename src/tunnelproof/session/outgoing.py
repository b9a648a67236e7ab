"""What the app sends, typed from ``send_*`` to the wire.

Each ``LiveSession.send_*`` builds a :class:`ClientMessage` with a constructor that knows
what it builds (:meth:`ClientMessage.text`, :meth:`~ClientMessage.audio`,
:meth:`~ClientMessage.content`, :meth:`~ClientMessage.tool_response`), so the kind, the
audio duration, the tool-call ids and whether a reply is due are facts, not guesses. Only a
raw dict from ``send_raw`` is *read* (:meth:`ClientMessage.from_dict`), the way the server
would read it.

The machine numbers each message and wraps it as :class:`Outgoing` (sequence number, the
encoded text frame, when the app sent it, whether some connection already carried it).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from tunnelproof.protocol import client_messages as cm
from tunnelproof.protocol.casing import get_field, to_camel
from tunnelproof.protocol.client_messages import FunctionResponse, Role, Turn
from tunnelproof.protocol.types import JsonDict


class MessageKind(StrEnum):
    """What an outgoing message is, for bounds and replay rules."""

    AUDIO = "audio"
    TEXT = "text"  # realtimeInput.text
    CLIENT_CONTENT = "client_content"
    TOOL_RESPONSE = "tool_response"
    REALTIME = "realtime"  # video, activity signals, audioStreamEnd
    RAW = "raw"


_RATE = re.compile(r"rate=(\d+)")


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One client message and what the session must know about it.

    Attributes:
        kind: what it is (bounds and replay rules differ per kind).
        body: the wire dict (camelCase), one top-level key.
        audio_ms: duration of the audio it carries.
        tool_ids: ids of the tool calls it answers.
        expects_reply: the server answers it with a model turn.
        turns: the conversation turns it adds (for the client's transcript).
    """

    kind: MessageKind
    body: JsonDict
    audio_ms: float = 0.0
    tool_ids: tuple[str, ...] = ()
    expects_reply: bool = False
    turns: tuple[Turn, ...] = ()

    @classmethod
    def text(cls, text: str) -> ClientMessage:
        """``realtimeInput.text``: the model answers it as a turn."""
        if not isinstance(text, str):
            # None went out as {"text": null}: the server closes 1007 and the session fails.
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return cls(
            MessageKind.TEXT,
            cm.realtime_text(text),
            expects_reply=True,
            turns=(Turn("user", text),),
        )

    @classmethod
    def audio(cls, pcm: bytes, *, rate: int = cm.INPUT_AUDIO_RATE) -> ClientMessage:
        """``realtimeInput.audio``: 16-bit little-endian mono PCM at ``rate`` Hz."""
        if type(rate) is not int:  # the common case costs one type check per chunk
            rate = _integral_rate(rate)
        if rate <= 0:
            raise ValueError(f"audio rate must be a positive integer (Hz), got {rate!r}")
        body = cm.realtime_audio(pcm, rate=rate)
        return cls(MessageKind.AUDIO, body, len(pcm) / (2 * rate) * 1000.0)  # per 20 ms chunk

    @classmethod
    def content(
        cls, turns: Iterable[Turn | Mapping[str, Any]], *, turn_complete: bool = True
    ) -> ClientMessage:
        """``clientContent``: turns appended to history; ``turn_complete`` asks for an answer."""
        items = list(turns)
        typed = tuple(turn for t in items for turn in _one_turn(t))
        return cls(
            MessageKind.CLIENT_CONTENT,
            cm.client_content(items, turn_complete=turn_complete),
            expects_reply=turn_complete,
            turns=typed,
        )

    @classmethod
    def tool_response(cls, responses: Sequence[FunctionResponse]) -> ClientMessage:
        """``toolResponse`` answering one or more tool calls (by id)."""
        return cls(
            MessageKind.TOOL_RESPONSE,
            cm.tool_response(responses),
            tool_ids=tuple(r.id for r in responses),
            expects_reply=True,
        )

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> ClientMessage:
        """Read an app-built client message dict (camelCase or snake_case top-level key).

        For ``send_raw`` only: everything else is typed from the start. Raises
        ``ValueError`` for a ``setup`` (the session owns it) or a dict that does not hold
        exactly one client message kind.
        """
        if len(message) != 1:
            raise ValueError(f"a client message holds exactly one kind, got {list(message)}")
        key = next(iter(message))
        kind_name = to_camel(key)
        body = message[key]
        if not isinstance(body, Mapping):
            raise ValueError(f"{kind_name} must be an object")
        msg: JsonDict = dict(message)
        if kind_name == "setup":
            raise ValueError("setup is sent by the session itself; do not send it")
        if kind_name == "realtimeInput":
            if len(body) != 1:
                # Google: exactly one field per realtimeInput; anything else is a 1007 close
                # that fails the whole session, so refuse it here, at the app's call.
                raise ValueError(
                    "realtimeInput holds exactly one field (audio, video, text, "
                    f"audioStreamEnd, activityStart or activityEnd), got {list(body)}"
                )
            return _read_realtime(msg, body)
        if kind_name == "clientContent":
            turns = tuple(t for raw in get_field(body, "turns") or [] for t in _one_turn(raw))
            complete = bool(get_field(body, "turnComplete"))
            return cls(MessageKind.CLIENT_CONTENT, msg, expects_reply=complete, turns=turns)
        if kind_name == "toolResponse":
            ids = tuple(
                str(get_field(r, "id"))
                for r in get_field(body, "functionResponses") or []
                if isinstance(r, Mapping) and get_field(r, "id")
            )
            return cls(MessageKind.TOOL_RESPONSE, msg, tool_ids=ids, expects_reply=True)
        return cls(MessageKind.RAW, msg)

    def without_tool_ids(self, ids: set[str]) -> ClientMessage | None:
        """This message minus the answers to ``ids``; ``None`` if no answer is left."""
        if self.kind is not MessageKind.TOOL_RESPONSE or not ids.intersection(self.tool_ids):
            return self
        key = next(iter(self.body))
        body = self.body[key]
        responses = [
            r
            for r in get_field(body, "functionResponses") or []
            if not (isinstance(r, Mapping) and str(get_field(r, "id")) in ids)
        ]
        if not responses:
            return None
        return replace(
            self,
            body={key: {**body, "functionResponses": responses}},
            tool_ids=tuple(i for i in self.tool_ids if i not in ids),
        )


def _read_realtime(msg: JsonDict, body: Mapping[str, Any]) -> ClientMessage:
    audio = get_field(body, "audio")
    if isinstance(audio, Mapping):
        data = str(get_field(audio, "data") or "")
        match = _RATE.search(str(get_field(audio, "mimeType") or ""))
        rate = int(match.group(1)) if match else cm.INPUT_AUDIO_RATE
        if rate <= 0:  # was a ZeroDivisionError out of send_raw
            raise ValueError(f"audio rate must be a positive integer (Hz), got {rate}")
        nbytes = len(data) * 3 // 4 - (len(data) - len(data.rstrip("=")))
        return ClientMessage(MessageKind.AUDIO, msg, audio_ms=nbytes / (2 * rate) * 1000.0)
    text = get_field(body, "text")
    if isinstance(text, str):
        return ClientMessage(MessageKind.TEXT, msg, expects_reply=True, turns=(Turn("user", text),))
    ends_turn = get_field(body, "activityEnd") is not None or bool(
        get_field(body, "audioStreamEnd")
    )
    return ClientMessage(MessageKind.REALTIME, msg, expects_reply=ends_turn)


def _one_turn(raw: Turn | Mapping[str, Any] | Any) -> Iterable[Turn]:
    """The text turn in ``raw`` (a ``Turn`` or its wire dict), if it holds text."""
    if isinstance(raw, Turn):
        yield raw
        return
    if not isinstance(raw, Mapping):
        return
    role: Role = "model" if get_field(raw, "role") == "model" else "user"
    texts = [
        str(get_field(p, "text"))
        for p in get_field(raw, "parts") or []
        if isinstance(p, Mapping) and isinstance(get_field(p, "text"), str)
    ]
    if texts:
        yield Turn(role, "".join(texts))


@dataclass(slots=True)
class Outgoing:
    """One numbered message on its way: in the outbox, on the wire, or awaiting confirmation.

    ``wire`` is encoded once, when the app sent it. ``was_sent`` is true once some
    connection carried it (so sending it again is a replay); :meth:`Outbox.mark_sent
    <tunnelproof.session.outbox.Outbox.mark_sent>` sets it on the item it records, which
    the outbox owns alone (not frozen: no copy per 20 ms audio chunk). Nothing else changes.
    """

    seq: int
    message: ClientMessage
    wire: str
    created_at: float
    was_sent: bool = False

    @classmethod
    def of(cls, seq: int, message: ClientMessage, now: float) -> Outgoing:
        """Number ``message`` and encode it for the wire."""
        return cls(seq, message, cm.encode_client_message(message.body), now)

    @property
    def kind(self) -> MessageKind:
        """See :attr:`ClientMessage.kind`."""
        return self.message.kind

    @property
    def audio_ms(self) -> float:
        """See :attr:`ClientMessage.audio_ms`."""
        return self.message.audio_ms

    @property
    def tool_ids(self) -> tuple[str, ...]:
        """See :attr:`ClientMessage.tool_ids`."""
        return self.message.tool_ids

    @property
    def expects_reply(self) -> bool:
        """See :attr:`ClientMessage.expects_reply`."""
        return self.message.expects_reply

    @property
    def turns(self) -> tuple[Turn, ...]:
        """See :attr:`ClientMessage.turns`."""
        return self.message.turns

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return len(self.wire)

    def without_tool_ids(self, ids: set[str]) -> Outgoing | None:
        """This item minus the answers to ``ids``; ``None`` if nothing is left to send."""
        trimmed = self.message.without_tool_ids(ids)
        if trimmed is None:
            return None
        if trimmed is self.message:
            return self
        return replace(self, message=trimmed, wire=cm.encode_client_message(trimmed.body))


def _integral_rate(rate: object) -> int:
    """``rate`` as an int (numpy integers too); ``ValueError`` for anything else.

    nan/inf/16000.5/True went out as ``audio/pcm;rate=nan``, which the server refuses
    (1007, fatal for the session), and a nan duration defeated the outbox's audio bound:
    refused here, at the app's call.
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral):
        raise ValueError(f"audio rate must be a positive integer (Hz), got {rate!r}")
    return int(rate)
