"""`--subtitles srt,vtt,json`: the option's parsing and the sidecars of one take, for `synth`."""
from __future__ import annotations

from pathlib import Path

from cli.common import status


def subtitle_formats(option: str | None) -> tuple[str, ...]:
    """"srt,vtt" -> ("srt", "vtt"); SettingsError for an unknown format (before any model loads)."""
    from engine.book.subtitles import check_formats

    return check_formats([f.strip().lower() for f in (option or "").split(",") if f.strip()])


def write_subtitles(audio: Path, formats: tuple[str, ...], text: str, samples: int) -> None:
    """Write the sidecars of a take of `samples` samples at 16 kHz beside `audio` (one cue: the text)."""
    if not formats:
        return
    from engine.book.subtitles import write_take_subtitles

    paths = write_take_subtitles(audio, formats, text, samples)
    status(f"Wrote {', '.join(str(p) for p in paths)}.")
