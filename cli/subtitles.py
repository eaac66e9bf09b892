"""`--subtitles srt,vtt,json` and `--word-timings [WHISPER]`: the options' parsing and checks, and the
sidecars of one take, for `synth` (`narrate` passes the same to engine.book.project_export.export_project)."""
from __future__ import annotations

from pathlib import Path

from cli.common import status

WORD_TIMINGS_HELP = ("with --subtitles vtt and/or json: also time every word (Whisper's word timestamps, mapped "
                     "back to the text): WebVTT timestamp tags and a words list per cue in the JSON. WHISPER: a "
                     "Whisper model folder or downloaded id (default: {default})")


def subtitle_formats(option: str | None) -> tuple[str, ...]:
    """"srt,vtt" -> ("srt", "vtt"); SettingsError for an unknown format (before any model loads)."""
    from engine.book.subtitles import check_formats

    return check_formats([f.strip().lower() for f in (option or "").split(",") if f.strip()])


def check_word_formats(option: str | None, formats: tuple[str, ...]) -> None:
    """SettingsError when --word-timings is given but none of the sidecars asked for can hold words."""
    from engine.book.subtitles import WORD_FORMATS
    from engine.errors import SettingsError

    if option is not None and not set(formats) & set(WORD_FORMATS):
        raise SettingsError("--word-timings writes the words into the vtt and json sidecars: add --subtitles vtt "
                            "and/or json (e.g. --subtitles srt,vtt,json).")


def word_timings_model(option: str | None, formats: tuple[str, ...], default: str) -> str | None:
    """The Whisper model of --word-timings (`option` "" = `default`), checked on disk before any model
    loads; None when word timings were not asked for. SettingsError (exit 2) when the sidecars asked
    for cannot hold words or no such Whisper model is on this computer, saying how to get one."""
    from engine.book.quality import verifier_problem
    from engine.errors import SettingsError

    check_word_formats(option, formats)
    if option is None:
        return None
    model = option or default
    if model.lower() == "none":
        raise SettingsError(f"--word-timings needs a Whisper model; give one: --word-timings {default}.")
    problem = verifier_problem(model, "asr")
    if problem:
        raise SettingsError(f"--word-timings needs a Whisper model on this computer. {problem}")
    return model


def word_timer(model: str, device: str = "auto", language: str | None = None):
    """A WordTimer (engine.book.subtitles) over the Whisper `model`, loaded now; ``language`` a Whisper
    code, or None to let Whisper detect it."""
    from engine.verify.scoring import WhisperASR
    from engine.verify.word_timestamps import word_timings

    status("Loading Whisper for the word timings…")
    asr = WhisperASR(model, device=device)

    def timer(waves, texts):
        status(f"Timing the words of {len(texts)} segment(s)…")
        return word_timings(asr, waves, texts, language)

    return timer


def write_subtitles(audio: Path, formats: tuple[str, ...], rendering, timer=None) -> None:
    """Write the sidecars of a take (engine.speech.render.Rendering) beside `audio`: one cue per segment,
    times exact from the joins; with `timer` (word_timer) the words timed too."""
    if not formats:
        return
    from engine.book.subtitles import write_take_subtitles

    texts = [segment.text for segment in rendering.segments]
    paths = write_take_subtitles(audio, formats, texts, rendering.spans, rendering.samples, word_timer=timer)
    status(f"Wrote {', '.join(str(p) for p in paths)}.")
