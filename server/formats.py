"""Audio bodies for the speech API: wav, flac, mp3, opus and pcm, whole or streamed.

All audio is mono at 16 kHz (the codec's rate). wav and flac are 16-bit PCM written by soundfile,
exactly as `main.py synth` writes its files (engine.audio.clip.write_audio), so the same take gives
the same bytes. mp3 (64 kb/s LAME) and opus (32 kb/s libopus in an Ogg container) go through the
ffmpeg binary that imageio-ffmpeg ships, as engine.book.export does. pcm is raw signed 16-bit
little-endian samples. Only wav and pcm stream: pcm as raw samples, wav with a header whose sizes
say "unknown length" (0xFFFFFFFF), which players and decoders read to the end of the stream.
"""
from __future__ import annotations

import io
import struct
import subprocess

import numpy as np
import soundfile as sf

from engine.audio.clip import SAMPLE_RATE

FORMATS = ("wav", "mp3", "flac", "opus", "pcm")
STREAMING_FORMATS = ("wav", "pcm")
MEDIA_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "opus": "audio/ogg; codecs=opus",
    "pcm": "audio/L16; rate=16000; channels=1",
}
_FFMPEG_ARGS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "32k", "-application", "voip", "-f", "ogg"],
}
_UNKNOWN_SIZE = 0xFFFFFFFF


def pcm16(wave: np.ndarray) -> bytes:
    """float32 [n] in [-1, 1] -> signed 16-bit little-endian bytes (clipped), converted by libsndfile
    exactly as in the wav and flac files."""
    buffer = io.BytesIO()
    clipped = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    sf.write(buffer, clipped, SAMPLE_RATE, format="RAW", subtype="PCM_16", endian="LITTLE")
    return buffer.getvalue()


def streaming_wav_header(sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 44-byte mono 16-bit PCM WAV header for a stream of unknown length (sizes 0xFFFFFFFF)."""
    byte_rate = sample_rate * 2
    return (b"RIFF" + struct.pack("<I", _UNKNOWN_SIZE) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, 2, 16)
            + b"data" + struct.pack("<I", _UNKNOWN_SIZE))


def encode_audio(wave: np.ndarray, fmt: str) -> bytes:
    """The whole take, float32 [n] at 16 kHz, as a file of format `fmt` (one of FORMATS).

    RuntimeError when ffmpeg fails (mp3/opus).
    """
    data = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
    if fmt == "pcm":
        return pcm16(data)
    if fmt in ("wav", "flac"):
        buffer = io.BytesIO()
        sf.write(buffer, data, SAMPLE_RATE, format=fmt.upper(), subtype="PCM_16")
        return buffer.getvalue()
    if fmt in _FFMPEG_ARGS:
        return _ffmpeg(data, _FFMPEG_ARGS[fmt])
    raise ValueError(f"unknown audio format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _ffmpeg(wave: np.ndarray, args: list[str]) -> bytes:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin",
               "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0", *args, "pipe:1"]
    result = subprocess.run(command, input=wave.astype("<f4").tobytes(), capture_output=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {result.stderr.decode(errors='replace').strip()[-300:]}")
    return result.stdout
