"""genai_voice_app.py moved to tunnelproof: the same app, now surviving drops and handovers.

The API key stays in your token service (`tunnelproof serve`); the app holds a user credential.
Run: TOKEN_URL=https://app.example.com/api/live/token USER_KEY=... python tunnelproof_voice_app.py
"""

import asyncio
import os
import sys
import wave

from google.genai import types

from tunnelproof import genai_compat
from tunnelproof.tokens import TokenServiceSource

MODEL = "gemini-3.8-live"
CONFIG = types.LiveConnectConfig(
    response_modalities=[types.Modality.AUDIO],
    system_instruction="You are a helpful travel assistant. Keep answers short.",
    output_audio_transcription=types.AudioTranscriptionConfig(),
    speech_config=types.SpeechConfig(
        voice_config=types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Kore")
        )
    ),
)


async def ask(session, question: str, wav: wave.Wave_write) -> str:
    """Send one question; save the spoken answer; return its transcript."""
    await session.send_client_content(
        turns=types.Content(role="user", parts=[types.Part(text=question)]), turn_complete=True
    )
    transcript = []
    async for message in session.receive():  # ends at the end of the model's turn
        content = message.server_content
        if content and content.interrupted:
            transcript.clear()  # the answer was cut off; what follows replaces it
        if content and content.output_transcription and content.output_transcription.text:
            transcript.append(content.output_transcription.text)
        if message.data:
            wav.writeframes(message.data)
    return "".join(transcript)


async def main(questions: list[str]) -> None:
    tokens = TokenServiceSource(os.environ["TOKEN_URL"], lambda: f"Bearer {os.environ['USER_KEY']}")
    with wave.open("answers.wav", "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(24_000)
        async with genai_compat.connect(model=MODEL, config=CONFIG, tokens=tokens) as session:
            for question in questions:
                print(f"you › {question}\nassistant › {await ask(session, question, wav)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["Hello! My name is Ada.", "What is my name?"]))
