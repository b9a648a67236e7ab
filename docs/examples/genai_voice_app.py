"""A small google-genai Live app: typed questions, spoken answers saved as WAV, transcript shown.

Run: GEMINI_API_KEY=... python genai_voice_app.py "Hello! My name is Ada." "What is my name?"
(tests/test_genai_compat.py runs it against the emulator, with GOOGLE_GEMINI_BASE_URL.)
"""

import asyncio
import os
import sys
import wave

from google import genai
from google.genai import types

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
    client = genai.Client(api_key=os.environ["GEMINI_API_KEY"])
    with wave.open("answers.wav", "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(24_000)
        async with client.aio.live.connect(model=MODEL, config=CONFIG) as session:
            for question in questions:
                print(f"you › {question}\nassistant › {await ask(session, question, wav)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["Hello! My name is Ada.", "What is my name?"]))
