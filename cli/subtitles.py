"""`--subtitles srt,vtt,json`: the option's parsing and the sidecars of one take, for `synth`."""
from __future__ import annotations

from pathlib import Path

from cli.common import status


def subtitle_formats(option: str | None) -> tuple[str, ...]:
    """"srt,vtt" -> ("srt", "vtt"); SettingsError for an unknown format (before any model loads)."""
    from engine.book.subtitles import check_formats

    return check_formats([f.strip().lower() for f in (option or "").split(",") if f.strip()])


def write_subtitles(audio: Path, formats: tuple[str, ...], rendering) -> None:
    """Write the sidecars of a take (engine.speech.render.Rendering) beside `audio`: one cue per segment,
    times exact from the joins."""
    if not formats:
        return
    from engine.book.subtitles import write_take_subtitles

    texts = [segment.text for segment in rendering.segments]
    paths = write_take_subtitles(audio, formats, texts, rendering.spans, rendering.samples)
    status(f"Wrote {', '.join(str(p) for p in paths)}.")
