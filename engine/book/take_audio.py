"""Check that a take's audio file is whole before it is trusted as done (opened, resumed or exported).

A take is marked done by its .json; its .flac can still be damaged afterwards (a disk error, a sync tool,
a truncated copy). Reading the header and the last block of samples catches an empty, garbage or
truncated FLAC in about a millisecond per take, without decoding the whole file.
"""
from __future__ import annotations

from pathlib import Path

import soundfile as sf

from engine.audio.clip import SAMPLE_RATE

_TAIL = 4096  # samples read at the end of the file (a truncated FLAC fails to seek or decode there)


def take_audio_problem(path: Path, duration_s: float) -> str | None:
    """Why the take audio at `path` (recorded as `duration_s` seconds long) cannot be used, or None when it is whole."""
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)):
        return f"its record gives no valid duration ({duration_s!r})"
    try:
        with sf.SoundFile(path) as audio:
            if audio.samplerate != SAMPLE_RATE or audio.channels != 1:
                return f"it is {audio.samplerate} Hz with {audio.channels} channels, not 16 kHz mono"
            if audio.frames <= 0:
                return "it holds no audio"
            if abs(audio.frames / SAMPLE_RATE - duration_s) > 0.05:
                return f"it holds {audio.frames / SAMPLE_RATE:.2f} s of audio, not the {duration_s:.2f} s recorded"
            audio.seek(max(0, audio.frames - _TAIL))
            wanted = audio.frames - audio.tell()
            if len(audio.read(wanted, dtype="float32")) != wanted:
                return "it is truncated"
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as error:
        return f"it is not readable audio ({str(error).strip() or type(error).__name__})"
    return None
