"""Timing sidecars for exported audio: SRT, WebVTT and a JSON file, one cue per segment.

Times come from the assembly itself (engine.speech.assemble.join_segments_timed reports where each take
landed, pauses and crossfades included), never from a re-estimate. Cues tile the audio: a cue starts
where its take's audio starts (the middle of a crossfade when it overlaps the previous take; 0 for
the first) and lasts until the next cue starts (the last until the end of the file), so the silence
after a segment shows its text and there is neither gap nor overlap. SRT and WebVTT round each
boundary to the millisecond (the same boundary rounds the same way for both cues that share it);
the JSON sidecar keeps exact sample positions and where each take's sound is. numpy only.

Word timings (``add_word_timings``, when a Whisper model is on disk): Whisper hears each cue's speech
exactly as it is in the file and its words are mapped back to the cue's text (engine.verify.word_timestamps);
the JSON sidecar lists them per cue, and the WebVTT file carries them as cue timestamp tags
(``Hello <00:00:01.250>world``, the WebVTT standard's karaoke form: web players can style spoken and
coming words with ::cue(:past)/::cue(:future); players that ignore the tags show the same sentence cue). SRT has no
such form (a word per cue would replace the sentence on screen), so it keeps one cue per segment.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.audio.clip import SAMPLE_RATE
from engine.errors import OutputFileError, SettingsError

SUBTITLE_FORMATS = ("srt", "vtt", "json")
_SUFFIX = {"srt": ".srt", "vtt": ".vtt", "json": ".timings.json"}
WORD_FORMATS = ("vtt", "json")  # the sidecars that carry word timings

if TYPE_CHECKING:
    from engine.verify.word_alignment import TimedWord

# Times the words of each text in its clip (float32 16 kHz): engine.verify.word_timestamps.word_timings
# with a loaded Whisper; one list per clip, s from the clip's start, offsets into the text.
WordTimer = Callable[[Sequence[np.ndarray], Sequence[str]], Sequence[Sequence["TimedWord"]]]


@dataclass(frozen=True)
class WordMark:
    """A word of a cue and when it is spoken, in samples of the file."""

    text: str  # as in the cue's text (punctuation included)
    start: int  # first sample
    end: int  # one past the last (>= start)
    offset: int  # index of its first character in the cue's text


@dataclass(frozen=True)
class Cue:
    """One segment's stretch of an audio file, in samples."""

    start: int  # first sample shown with this text
    end: int  # one past the last
    text: str  # what is spoken (the segment's text)
    segment: str = ""  # segment id ("" for a single take)
    voice: str = ""  # display name of the voice ("" when not known)
    speech: tuple[int, int] | None = None  # [start, end) of the take's own audio (sound + room tone)
    words: tuple[WordMark, ...] | None = None  # the text's words in order, inside [start, end]; None: not timed


@dataclass(frozen=True)
class ChapterMark:
    title: str
    start: int  # samples from the start of the file
    end: int


def tile_cues(spans: Sequence[tuple[int, int]], total: int, texts: Sequence[str], *, ids: Sequence[str] = (),
              voices: Sequence[str] = (), offset: int = 0) -> list[Cue]:
    """Cues that cover [offset, offset + total) without gap or overlap, one per take with audio.

    spans[i]: where take i landed in the chapter (join_segments_timed); an empty span (a silent
    take) gets no cue. offset shifts every time (a chapter's start in a whole-book file).
    """
    cues: list[Cue] = []
    previous_end = None
    for i, (start, end) in enumerate(spans):
        if end <= start:
            continue
        boundary = 0 if previous_end is None else (start if start >= previous_end else (start + previous_end) // 2)
        if cues:
            cues[-1] = _with_end(cues[-1], boundary + offset)
        cues.append(Cue(boundary + offset, total + offset, texts[i], ids[i] if ids else "", voices[i] if voices else "",
                        (start + offset, end + offset)))
        previous_end = end
    return cues


def _with_end(cue: Cue, end: int) -> Cue:
    return dataclasses.replace(cue, end=end)


def add_word_timings(cues: Sequence[Cue], audio: np.ndarray, timer: WordTimer, *, offset: int = 0,
                     sample_rate: int = SAMPLE_RATE) -> list[Cue]:
    """The cues with their words timed. `audio` is the file's audio from sample `offset` on (a chapter
    of a whole-book file); each cue's speech (or the cue itself) is cut from it, so Whisper hears what
    the file holds, and the words' times are placed from there, clamped into the cue, never going back."""
    spans = [c.speech or (c.start, c.end) for c in cues]
    clips = [np.asarray(audio[max(a - offset, 0) : max(b - offset, 0)], dtype=np.float32) for a, b in spans]
    timed = timer(clips, [c.text for c in cues]) if cues else []
    result = []
    for cue, (first, _), words in zip(cues, spans, timed):
        marks, floor = [], cue.start
        for word in words:
            start = min(max(first + round(word.start * sample_rate), floor), cue.end)
            end = min(max(first + round(word.end * sample_rate), start), cue.end)
            marks.append(WordMark(word.text, start, end, word.offset))
            floor = end
        result.append(dataclasses.replace(cue, words=tuple(marks)))
    return result


def _clock(samples: int, sample_rate: int, separator: str) -> str:
    ms = round(samples * 1000 / sample_rate)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{ms:03d}"


def _one_line(text: str) -> str:
    return " ".join(text.replace("-->", "->").split())


def format_srt(cues: Sequence[Cue], sample_rate: int = SAMPLE_RATE) -> str:
    """SubRip: numbered cues, HH:MM:SS,mmm times."""
    blocks = [f"{n}\n{_clock(c.start, sample_rate, ',')} --> {_clock(c.end, sample_rate, ',')}\n{_one_line(c.text)}\n"
              for n, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return _one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_payload(cue: Cue, sample_rate: int) -> str:
    """The cue's text, escaped; with word timings a timestamp tag before each word that starts after the
    cue's start and the previous tag, and before its end (the WebVTT rule), at the millisecond."""
    if not cue.words:
        return _vtt_escape(cue.text)

    def ms(samples: int) -> int:
        return round(samples * 1000 / sample_rate)

    def piece(text: str) -> str:  # whitespace collapsed but kept at the edges: the pieces are joined
        return re.sub(r"\s+", " ", text).replace("-->", "->").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    text, words, last = cue.text, cue.words, ms(cue.start)
    parts = [piece(text[: words[0].offset])]
    for k, word in enumerate(words):
        if last < ms(word.start) < ms(cue.end):
            parts.append(f"<{_clock(word.start, sample_rate, '.')}>")
            last = ms(word.start)
        parts.append(piece(text[word.offset : words[k + 1].offset if k + 1 < len(words) else len(text)]))
    return "".join(parts).strip()


def format_vtt(cues: Sequence[Cue], sample_rate: int = SAMPLE_RATE) -> str:
    """WebVTT: cue ids are segment ids, the voice as a <v Name> span when known."""
    lines = ["WEBVTT", ""]
    for n, c in enumerate(cues, 1):
        voice = re.sub(r"[<>&\n]", "", c.voice).strip()
        lines += [c.segment or str(n), f"{_clock(c.start, sample_rate, '.')} --> {_clock(c.end, sample_rate, '.')}",
                  (f"<v {voice}>" if voice else "") + _vtt_payload(c, sample_rate), ""]
    return "\n".join(lines)


def format_json(cues: Sequence[Cue], total: int, chapters: Sequence[ChapterMark] = (),
                sample_rate: int = SAMPLE_RATE) -> str:
    """Exact timings: samples and seconds of every cue, its speech, its words (when timed) and the chapter marks."""
    def seconds(samples: int) -> float:
        return round(samples / sample_rate, 6)

    def words(c: Cue) -> dict:
        return {"words": [{"text": w.text, "start": w.start, "end": w.end, "start_s": seconds(w.start),
                           "end_s": seconds(w.end)} for w in c.words]} if c.words is not None else {}

    data = {
        "sample_rate": sample_rate, "samples": total, "duration_s": seconds(total),
        "chapters": [{"title": m.title, "start": m.start, "end": m.end, "start_s": seconds(m.start),
                      "end_s": seconds(m.end)} for m in chapters],
        "cues": [{"segment": c.segment, "voice": c.voice, "text": c.text, "start": c.start, "end": c.end,
                  "start_s": seconds(c.start), "end_s": seconds(c.end),
                  "speech_start": c.speech[0] if c.speech else c.start, "speech_end": c.speech[1] if c.speech else c.end}
                 | words(c) for c in cues],
    }
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The formats, checked: SettingsError naming the valid ones."""
    bad = [f for f in formats if f not in SUBTITLE_FORMATS]
    if bad:
        raise SettingsError(f"Unknown subtitle format {bad[0]!r}; use {', '.join(SUBTITLE_FORMATS)}.")
    return tuple(dict.fromkeys(formats))


def sidecar_path(audio: Path, fmt: str) -> Path:
    """book.m4b -> book.srt / book.vtt / book.timings.json."""
    return Path(audio).with_suffix(_SUFFIX[fmt])


def write_sidecars(audio: Path, formats: Sequence[str], cues: Sequence[Cue], total: int,
                   chapters: Sequence[ChapterMark] = (), sample_rate: int = SAMPLE_RATE) -> list[Path]:
    """Write the sidecars of `audio` (each to a temporary file, then renamed); returns their paths.
    OutputFileError when the folder is not writable (no sidecar is left half-written)."""
    from engine.audio.atomic import write_atomic

    written = []
    for fmt in check_formats(formats):
        path = sidecar_path(audio, fmt)
        text = {"srt": lambda: format_srt(cues, sample_rate), "vtt": lambda: format_vtt(cues, sample_rate),
                "json": lambda: format_json(cues, total, chapters, sample_rate)}[fmt]()
        try:
            write_atomic(path, text.encode("utf-8"))
        except OSError as error:
            raise OutputFileError(f"Cannot write {path}: {error.strerror or error}; choose another folder.") from None
        written.append(path)
    return written


def write_take_subtitles(audio: Path, formats: Sequence[str], texts: Sequence[str], spans: Sequence[tuple[int, int]],
                         samples: int, sample_rate: int = SAMPLE_RATE, word_timer: WordTimer | None = None) -> list[Path]:
    """Sidecars for one rendered text (e.g. `synth --subtitles srt`): a cue per segment, tiling the file;
    spans are where each segment landed (engine.speech.render.Rendering.spans). With `word_timer`, the
    words are timed on the audio read back from the file."""
    cues = tile_cues(spans, samples, texts)
    if word_timer is not None:
        from engine.audio.clip import load_audio

        cues = add_word_timings(cues, load_audio(audio, sample_rate), word_timer, sample_rate=sample_rate)
    return write_sidecars(audio, formats, cues, samples, sample_rate=sample_rate)
