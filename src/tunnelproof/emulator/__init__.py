"""A protocol-faithful local Live API server with fault controls.

``EmulatorServer`` runs in-process (``async with EmulatorServer(...) as emu``);
``EmulatorProcess`` runs ``python -m tunnelproof emulator`` as a real subprocess.
``EmulatorPolicy`` holds every duration and behaviour. See docs/emulator.md.
"""

from tunnelproof.emulator.audio import encode_speech, silence, transcribe
from tunnelproof.emulator.controls import EmulatorControls
from tunnelproof.emulator.policy import EmulatorPolicy
from tunnelproof.emulator.process import EmulatorProcess, EmulatorProcessError, RemoteControls
from tunnelproof.emulator.server import DEFAULT_API_KEY, EmulatorServer

__all__ = [
    "DEFAULT_API_KEY",
    "EmulatorControls",
    "EmulatorPolicy",
    "EmulatorProcess",
    "EmulatorProcessError",
    "EmulatorServer",
    "RemoteControls",
    "encode_speech",
    "silence",
    "transcribe",
]
