"""Refusals at the app's call: a send that could never be delivered is dropped at once.

Two kinds of message would otherwise be accepted (``sent`` or ``queued``) and then lost
in a misleading way, or kill the session:

* **Too large for the outbox.** A single message bigger than the outbox's byte bound
  (:attr:`OutboxLimits.max_bytes`), or an audio chunk longer than its audio bound, could
  never be queued or kept for replay: while connected it went out unreplayable, while
  queued it was refused as "outbox full". It is refused in every phase, with a reason
  that names the bound.
* **An answer to no open tool call** (:meth:`ToolCalls.refusal`): Google closes 1007 on it.
  Answers to calls a reconnect cancelled keep their own rule: those ids are stripped,
  and a message left with no answer is refused.

No I/O, no state of its own: the machine's ``_accept`` calls :func:`screen` first.
"""

from __future__ import annotations

from tunnelproof.protocol.casing import get_field
from tunnelproof.session.outbox import Outbox
from tunnelproof.session.outgoing import MessageKind, Outgoing
from tunnelproof.session.tool_calls import ToolCalls


def oversized(item: Outgoing, outbox: Outbox) -> str | None:
    """Why ``item`` alone exceeds the outbox's bounds, or ``None``."""
    limits = outbox.limits
    if item.kind is MessageKind.AUDIO:
        if item.audio_ms > limits.max_audio_ms:
            return (
                f"audio chunk of {item.audio_ms:.0f} ms is longer than the outbox holds "
                f"(max_audio_ms={limits.max_audio_ms:g}); send shorter chunks"
            )
        return None
    if item.size > limits.max_bytes:
        return (
            f"message of {item.size} bytes is larger than the outbox holds "
            f"(max_bytes={limits.max_bytes}): it could never be queued or replayed"
        )
    return None


def _queued_answers(outbox: Outbox) -> set[str]:
    return {i for q in outbox.pending if q.kind is MessageKind.TOOL_RESPONSE for i in q.tool_ids}


def screen(item: Outgoing, tools: ToolCalls, outbox: Outbox) -> tuple[Outgoing, str | None]:
    """``(item to send, None)``, answers to cancelled calls stripped; or ``(item, reason)``."""
    too_big = oversized(item, outbox)
    if too_big is not None:
        return item, too_big
    if item.kind is not MessageKind.TOOL_RESPONSE:
        return item, None
    body = next(iter(item.message.body.values()))
    responses = get_field(body, "functionResponses")
    count = len(responses) if isinstance(responses, list) else 0
    refused = tools.refusal(item.tool_ids, count, _queued_answers(outbox))
    if refused is not None:
        return item, refused
    cancelled = tools.cancelled_among(item.tool_ids)
    if not cancelled:
        return item, None
    trimmed = item.without_tool_ids(cancelled)
    if trimmed is None:
        return item, (
            "the tool call was cancelled by a reconnect (the resumed session "
            f"never saw {', '.join(sorted(cancelled))})"
        )
    return trimmed, None
