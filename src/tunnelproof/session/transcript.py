"""The client's own record of the conversation, for re-seeding a fresh session.

When the server refuses a resume (1007 on resume, an expired handle, or no handle yet),
the conversation would start from nothing. The client keeps its own text record of the
turns (user text it sent, model text and audio transcriptions it received) and sends it
to the fresh session as history (``clientContent`` with ``turnComplete: false``). It is
never sent on a *resumed* connection: re-sending history into a session that has it causes
1007 storms on newer models.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tunnelproof.protocol.client_messages import Role, Turn, client_content
from tunnelproof.protocol.types import JsonDict


@dataclass(slots=True)
class Transcript:
    """Turns in order, bounded to the most recent ``max_turns``."""

    max_turns: int = 200
    turns: deque[Turn] = field(default_factory=deque)
    _model_parts: list[str] = field(default_factory=list)
    _user_parts: list[str] = field(default_factory=list)

    def load(self, turns: Iterable[Turn]) -> None:
        """Replace the record with ``turns`` (restored from a handle store)."""
        self.turns = deque(turns, maxlen=None)
        self._trim()

    def add(self, role: Role, text: str) -> None:
        """Append a complete turn (e.g. a user text the app sent)."""
        self.commit_user()
        if role == "user":
            self.commit_model()
        if text:
            self.turns.append(Turn(role, text))
            self._trim()

    def user_transcription(self, text: str) -> None:
        """A piece of the user's speech, transcribed by the server."""
        self._user_parts.append(text)

    def model_output(self, text: str) -> None:
        """A piece of model text or of its audio transcription."""
        self.commit_user()
        self._model_parts.append(text)

    @property
    def partial_model_text(self) -> str:
        """Model text of the turn in progress."""
        return "".join(self._model_parts)

    def commit_user(self) -> None:
        """Close the user's transcribed turn, if any."""
        text = "".join(self._user_parts).strip()
        self._user_parts.clear()
        if text:
            self.turns.append(Turn("user", text))
            self._trim()

    def forget(self, role: Role, text: str) -> bool:
        """Remove the newest committed turn of ``role`` with exactly ``text``.

        For a sent message later reported dropped: the record must not re-seed it.
        """
        for index in range(len(self.turns) - 1, -1, -1):
            turn = self.turns[index]
            if turn.role == role and turn.text == text:
                del self.turns[index]
                return True
        return False

    def commit_model(self) -> None:
        """Close the model turn in progress (complete, interrupted or cut off)."""
        text = "".join(self._model_parts).strip()
        self._model_parts.clear()
        if text:
            self.turns.append(Turn("model", text))
            self._trim()

    def snapshot(self) -> tuple[Turn, ...]:
        """The committed turns."""
        return tuple(self.turns)

    def seed_message(self) -> JsonDict | None:
        """History for a fresh session, or ``None`` when there is nothing to seed."""
        self.commit_user()
        self.commit_model()
        if not self.turns:
            return None
        return client_content(list(self.turns), turn_complete=False)

    def _trim(self) -> None:
        while len(self.turns) > self.max_turns:
            self.turns.popleft()
