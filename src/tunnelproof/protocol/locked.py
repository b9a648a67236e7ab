"""``LockedConfig``: what a token service locked into its tokens, and how it differs.

A token minted with ``bidiGenerateContentSetup`` + ``fieldMask`` overwrites the client's
``setup`` fields listed in the mask. When the client's :class:`LiveConfig` disagrees (a
``TEXT`` client behind a service that locks ``AUDIO``), Google silently uses the token's
values: the app waits for text and gets audio. The token route therefore tells the client
what it locked, in these fields of its JSON answer::

    {"model": "gemini-3.8-live", "responseModalities": ["AUDIO"],
     "inputAudioTranscription": true, "outputAudioTranscription": true, ...}

and the client compares (:meth:`LockedConfig.differences`) and says so
(``ConfigMismatch`` events and a WARNING log line).

Transcription is locked only when the service turns it on: a field absent from the token's
setup is absent from its mask, so the client's own setting applies. ``false`` therefore
means "not locked", and only "locked on, client off" is a difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunnelproof.protocol.config import LiveConfig
from tunnelproof.protocol.models import bare_model_id


@dataclass(frozen=True, slots=True)
class ConfigDifference:
    """One field where the client's config and the token's lock disagree."""

    field: str
    client_value: str
    locked_value: str


@dataclass(frozen=True, slots=True)
class LockedConfig:
    """The session fields a token locks (as the token route reports them)."""

    model: str
    response_modalities: tuple[str, ...]
    input_audio_transcription: bool = False
    output_audio_transcription: bool = False

    @classmethod
    def of(cls, config: LiveConfig) -> LockedConfig:
        """What a token minted from ``config`` locks (see :meth:`LiveConfig.token_constraints`)."""
        return cls(
            model=bare_model_id(config.model),
            response_modalities=tuple(config.response_modalities),
            input_audio_transcription=config.input_audio_transcription,
            output_audio_transcription=config.output_audio_transcription,
        )

    def to_json(self) -> dict[str, Any]:
        """The fields of the token route's answer (camelCase, as in ``setup``)."""
        return {
            "model": self.model,
            "responseModalities": list(self.response_modalities),
            "inputAudioTranscription": self.input_audio_transcription,
            "outputAudioTranscription": self.output_audio_transcription,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> LockedConfig | None:
        """Read the lock from a token route's answer; ``None`` if it does not say.

        An older service sends ``model`` only: the modality is then unknown and nothing is
        compared. Malformed fields raise ``ValueError`` (the answer is unusable).
        """
        model = body.get("model")
        modalities = body.get("responseModalities")
        if modalities is None:
            return None
        if not isinstance(model, str) or not model:
            raise ValueError("responseModalities without a model")
        if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
            raise ValueError("responseModalities must be a list of strings")
        flags: list[bool] = []
        for name in ("inputAudioTranscription", "outputAudioTranscription"):
            value = body.get(name, False)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a boolean")
            flags.append(value)
        return cls(bare_model_id(model), tuple(modalities), flags[0], flags[1])

    def differences(self, config: LiveConfig) -> list[ConfigDifference]:
        """Where ``config`` (the client's) disagrees with this lock, in field order."""
        out: list[ConfigDifference] = []
        client_model = bare_model_id(config.model)
        if client_model != self.model:
            out.append(ConfigDifference("model", client_model, self.model))
        if tuple(config.response_modalities) != self.response_modalities:
            out.append(
                ConfigDifference(
                    "response_modalities",
                    ",".join(config.response_modalities),
                    ",".join(self.response_modalities),
                )
            )
        for name in ("input_audio_transcription", "output_audio_transcription"):
            locked_on = getattr(self, name)
            # Only "locked on" overrides the client (see the module docstring).
            if locked_on and not getattr(config, name):
                out.append(ConfigDifference(name, "off", "on"))
        return out
